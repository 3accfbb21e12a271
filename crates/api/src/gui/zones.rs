//! The zones page: at global, each zone online or offline with its sync counters, versions and
//! the streams global refused; at a zone, its own link to global.

use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use meshplane_core::{
    model::{ResourceKind, Spec, ZONE_INSIGHT_MAX_AGE, ZoneInsightSpec, zone::KdsCounters},
    store::ListQuery,
};

use super::{
    Ctx, GlobalLink, ZoneRefusal, hints,
    layout::{Nav, badge, fmt_time, problem, when},
};
use crate::ApiState;

/// A Zone and what global knows of its streams.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneInfo {
    pub name: String,
    pub enabled: bool,
    pub insight: Option<ZoneInsightSpec>,
}

pub async fn load(s: &ApiState) -> Result<Vec<ZoneInfo>, meshplane_core::manager::ManagerError> {
    let zones = s.manager.list(&ListQuery::all(ResourceKind::Zone)).await?;
    let insights = s
        .manager
        .list(&ListQuery::all(ResourceKind::ZoneInsight))
        .await?;
    let mut out = Vec::new();
    for rec in &zones.items {
        let Ok(r) = rec.to_resource() else { continue };
        let Spec::Zone(z) = r.spec else { continue };
        let insight = insights
            .items
            .iter()
            .find(|i| i.key.name == rec.key.name)
            .and_then(|i| i.to_resource().ok())
            .and_then(|i| match i.spec {
                Spec::ZoneInsight(z) => Some(z),
                _ => None,
            });
        out.push(ZoneInfo {
            name: rec.key.name.clone(),
            enabled: z.is_enabled(),
            insight,
        });
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Online,
    Offline,
    Disabled,
}

/// One row of the zones table.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneRow {
    pub name: String,
    pub state: ZoneState,
    /// When the newest stream was established.
    pub last_connected: Option<DateTime<Utc>>,
    pub disconnected: Option<DateTime<Utc>>,
    /// The newest stream's last counter update (a sync's acknowledgement, or a heartbeat).
    pub last_sync: Option<DateTime<Utc>>,
    pub totals: KdsCounters,
    pub version: String,
    pub global_instance: String,
    pub zone_instance: String,
}

pub fn row(z: &ZoneInfo, now: DateTime<Utc>) -> ZoneRow {
    let sub = z.insight.as_ref().and_then(|i| i.subscriptions.last());
    let online = z
        .insight
        .as_ref()
        .is_some_and(|i| i.is_online_at(now, ZONE_INSIGHT_MAX_AGE));
    ZoneRow {
        name: z.name.clone(),
        state: if !z.enabled {
            ZoneState::Disabled
        } else if online {
            ZoneState::Online
        } else {
            ZoneState::Offline
        },
        last_connected: sub.map(|s| s.connect_time),
        disconnected: sub.and_then(|s| s.disconnect_time),
        last_sync: sub.and_then(|s| s.status.last_update_time),
        totals: sub.map(|s| s.status.total).unwrap_or_default(),
        version: sub.map(|s| s.version.meshplane.clone()).unwrap_or_default(),
        global_instance: sub
            .map(|s| s.global_instance_id.clone())
            .unwrap_or_default(),
        zone_instance: sub.map(|s| s.zone_instance_id.clone()).unwrap_or_default(),
    }
}

/// The zones page's model.
#[derive(Clone, Debug, PartialEq)]
pub struct ZonesView {
    pub rows: Vec<ZoneRow>,
    pub refusals: Vec<(ZoneRefusal, Option<String>)>,
}

pub fn model(zones: &[ZoneInfo], refusals: &[ZoneRefusal], now: DateTime<Utc>) -> ZonesView {
    let mut rows: Vec<ZoneRow> = zones.iter().map(|z| row(z, now)).collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    ZonesView {
        rows,
        refusals: refusals
            .iter()
            .map(|r| (r.clone(), hints::zone_fix(&r.zone, &r.reason)))
            .collect(),
    }
}

pub fn state_badge(s: ZoneState) -> Markup {
    match s {
        ZoneState::Online => badge("ok", "Online"),
        ZoneState::Offline => badge("bad", "Offline"),
        ZoneState::Disabled => badge("off", "Disabled"),
    }
}

pub fn render(v: &ZonesView, now: DateTime<Utc>) -> Markup {
    html! {
        h1 { "Zones" }
        @if v.rows.is_empty() {
            p class="muted" { "No zone has connected yet. A zone appears here as soon as it connects with a zone token (meshctl generate zone-token --zone NAME)." }
        } @else {
            table id="zones" {
                thead { tr {
                    th { "Zone" } th { "Status" } th { "Last connected" } th { "Last sync" }
                    th class="num" { "KDS sent" } th class="num" { "acked" } th class="num" { "rejected" }
                    th { "Zone CP version" } th { "Served by" }
                } }
                tbody {
                    @for r in &v.rows {
                        tr data-zone=(r.name) {
                            td { strong { (r.name) } }
                            td { (state_badge(r.state))
                                @if let (ZoneState::Offline, Some(d)) = (r.state, r.disconnected) {
                                    " " span class="muted" { "disconnected " (super::layout::relative(d, now)) }
                                }
                            }
                            td { (when(r.last_connected, now)) }
                            td { (when(r.last_sync, now)) }
                            td class="num" { (r.totals.responses_sent) }
                            td class="num" { (r.totals.responses_acknowledged) }
                            td class=(if r.totals.responses_rejected > 0 { "num bad" } else { "num" }) { (r.totals.responses_rejected) }
                            td { @if r.version.is_empty() { span class="muted" { "—" } } @else { code { (r.version) } } }
                            td { code { (r.global_instance) } }
                        }
                    }
                }
            }
        }
        @if !v.refusals.is_empty() {
            h2 { "Refused connections" }
            p class="muted" { "Streams this global replica refused since it started, until the zone connects again." }
            @for (r, fix) in &v.refusals {
                (problem(
                    &format!("Zone {:?} was refused: {} ({} time{}, last {}, from {})",
                        r.zone, r.reason, r.count, if r.count == 1 { "" } else { "s" }, fmt_time(r.last), r.peer),
                    fix.as_deref(),
                ))
            }
        }
    }
}

/// What a zone's console shows instead: its own link to global.
pub fn render_link(link: Option<&GlobalLink>, zone: &str, now: DateTime<Utc>) -> Markup {
    html! {
        h1 { "Global" }
        @match link {
            None => {
                p { "This zone runs standalone: it has no global control plane and owns its Meshes itself." }
            }
            Some(l) => {
                div class="panel" {
                    dl class="kv" id="global-link" {
                        dt { "Status" }
                        dd { @if l.connected { (badge("ok", "Connected")) } @else { (badge("bad", "Disconnected")) } }
                        dt { "Global" } dd { code { (l.address) } }
                        dt { "Connected since" } dd { (when(l.connected_since, now)) }
                        dt { "Global instance" } dd { @if let Some(g) = &l.global_instance { code { (g) } } @else { "—" } }
                        dt { "In sync" } dd { @if l.synced_once { "yes: holds global's Meshes and Secrets" } @else { "not yet" } }
                        dt { "Last push from global" } dd { (when(l.last_sync, now)) }
                        dt { "Connections since start" } dd { (l.connects) }
                    }
                }
                @if let Some(e) = &l.last_error {
                    @if !l.connected {
                        (problem(&format!("The link to global is down since {}: {e}",
                            l.last_error_time.map(fmt_time).unwrap_or_default()),
                            hints::zone_fix(zone, e).as_deref()))
                    }
                }
            }
        }
    }
}

pub async fn handler(ctx: Ctx) -> Response {
    if ctx.s.info.zone.is_some() {
        let link = ctx.console.sync().global_link();
        let zone = ctx.s.info.zone.clone().unwrap_or_default();
        let body = render_link(link.as_ref(), &zone, ctx.now);
        return ctx.page("Global", Nav::Zones, body);
    }
    let zones = match load(&ctx.s).await {
        Ok(z) => z,
        Err(e) => return ctx.store_error(e),
    };
    let refusals = ctx.console.sync().refusals();
    let v = model(&zones, &refusals, ctx.now);
    ctx.page("Zones", Nav::Zones, render(&v, ctx.now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::model::zone::{KdsSubscription, KdsSubscriptionStatus, ZoneVersion};

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    fn zone(name: &str, connect: i64, seen: i64, gone: Option<i64>) -> ZoneInfo {
        ZoneInfo {
            name: name.into(),
            enabled: true,
            insight: Some(ZoneInsightSpec {
                subscriptions: vec![KdsSubscription {
                    id: "s".into(),
                    global_instance_id: "global-1".into(),
                    zone_instance_id: format!("{name}-1"),
                    connect_time: at(connect),
                    disconnect_time: gone.map(at),
                    last_seen_time: Some(at(seen)),
                    status: KdsSubscriptionStatus {
                        last_update_time: Some(at(seen)),
                        total: KdsCounters {
                            responses_sent: 4,
                            responses_acknowledged: 3,
                            responses_rejected: 1,
                        },
                        stat: Default::default(),
                    },
                    version: ZoneVersion {
                        meshplane: "0.1.0".into(),
                    },
                }],
            }),
        }
    }

    #[test]
    fn online_offline_and_disabled() {
        let now = at(0);
        let mut disabled = zone("c", -100, -1, None);
        disabled.enabled = false;
        let zones = vec![
            zone("west", -100, -90, None),
            zone("east", -100, -2, None),
            zone("gone", -100, -50, Some(-50)),
            disabled,
            ZoneInfo {
                name: "new".into(),
                enabled: true,
                insight: None,
            },
        ];
        let v = model(&zones, &[], now);
        let states: Vec<(&str, ZoneState)> =
            v.rows.iter().map(|r| (r.name.as_str(), r.state)).collect();
        assert_eq!(
            states,
            [
                ("c", ZoneState::Disabled),
                ("east", ZoneState::Online),
                ("gone", ZoneState::Offline),
                ("new", ZoneState::Offline),
                ("west", ZoneState::Offline),
            ],
            "west's stream went silent for longer than the liveness bound"
        );
        let east = &v.rows[1];
        assert_eq!(east.totals.responses_rejected, 1);
        assert_eq!(east.version, "0.1.0");
        assert_eq!(east.last_sync, Some(at(-2)));
        let html = render(&v, now).into_string();
        assert!(html.contains("Online") && html.contains("Offline") && html.contains("Disabled"));
    }

    #[test]
    fn refusals_come_with_their_fix() {
        let r = ZoneRefusal {
            zone: "east".into(),
            peer: "127.0.0.1:4000".into(),
            reason: "zone token refused: token was revoked".into(),
            first: at(-10),
            last: at(-5),
            count: 3,
        };
        let v = model(&[], std::slice::from_ref(&r), at(0));
        assert!(
            v.refusals[0]
                .1
                .as_deref()
                .is_some_and(|f| f.contains("meshctl generate zone-token --zone east"))
        );
        let html = render(&v, at(0)).into_string();
        assert!(html.contains("token was revoked (3 times"), "{html}");
    }

    #[test]
    fn a_zone_shows_its_link() {
        let link = GlobalLink {
            address: "grpcs://global:5685".into(),
            connected: false,
            last_error: Some(
                "global refused the stream: Unauthenticated: zone token refused: token was revoked"
                    .into(),
            ),
            last_error_time: Some(at(-3)),
            ..Default::default()
        };
        let html = render_link(Some(&link), "east", at(0)).into_string();
        assert!(html.contains("Disconnected"));
        assert!(html.contains("token was revoked"));
        assert!(html.contains("meshctl generate zone-token --zone east"));
        assert!(
            render_link(None, "east", at(0))
                .into_string()
                .contains("standalone")
        );
    }
}
