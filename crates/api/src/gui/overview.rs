//! The overview: counts at a glance (meshes, zones online and offline, dataplanes, certificates
//! expiring within 24 h, backends with errors), this control plane's version and instance, and
//! everything that needs attention with its fix.

use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::{
    Ctx, GlobalLink, ZoneRefusal,
    dataplanes::SOON,
    fleet::DpRow,
    hints,
    layout::{Nav, fmt_time, relative},
    meshes::{self, MeshInfo},
    timeline::CertTimes,
    zones::{self, ZoneInfo, ZoneState},
};
use crate::ServerInfo;

/// Everything the overview is computed from.
pub struct Input<'a> {
    pub info: &'a ServerInfo,
    pub meshes: &'a [MeshInfo],
    /// `None` on a zone's console.
    pub zones: Option<&'a [ZoneInfo]>,
    pub refusals: &'a [ZoneRefusal],
    pub link: Option<&'a GlobalLink>,
    pub rows: &'a [&'a DpRow],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attention {
    pub bad: bool,
    pub what: String,
    pub fix: Option<String>,
    pub link: Option<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverviewView {
    pub mode: String,
    pub version: String,
    pub instance: String,
    pub zone: Option<String>,
    pub store: String,
    pub meshes: usize,
    /// Online and offline (enabled) zones, at global.
    pub zones: Option<(usize, usize)>,
    /// Connected to global, at a federated zone.
    pub link_up: Option<bool>,
    pub dataplanes: usize,
    pub online: usize,
    pub expiring: usize,
    pub expired: usize,
    pub overdue: usize,
    pub backends_with_errors: usize,
    pub attention: Vec<Attention>,
}

pub fn model(i: &Input<'_>, now: DateTime<Utc>) -> OverviewView {
    let mut attention = Vec::new();
    let zones = i.zones.map(|zs| {
        let rows: Vec<zones::ZoneRow> = zs.iter().map(|z| zones::row(z, now)).collect();
        for r in rows.iter().filter(|r| r.state == ZoneState::Offline) {
            let since = r
                .disconnected
                .or(r.last_sync)
                .map(|t| format!(" (last seen {})", relative(t, now)))
                .unwrap_or_else(|| " (never connected)".into());
            attention.push(Attention {
                bad: true,
                what: format!("Zone {} is offline{since}", r.name),
                fix: Some(
                    "check that the zone control plane runs and reaches global's sync port; a \
                     refused stream is listed on the Zones page"
                        .into(),
                ),
                link: Some(("/gui/zones".into(), "Zones".into())),
            });
        }
        let online = rows.iter().filter(|r| r.state == ZoneState::Online).count();
        let offline = rows
            .iter()
            .filter(|r| r.state == ZoneState::Offline)
            .count();
        (online, offline)
    });
    for r in i.refusals {
        attention.push(Attention {
            bad: true,
            what: format!(
                "Global refused zone {:?}: {} (last {})",
                r.zone,
                r.reason,
                fmt_time(r.last)
            ),
            fix: hints::zone_fix(&r.zone, &r.reason),
            link: Some(("/gui/zones".into(), "Zones".into())),
        });
    }
    if let Some(l) = i.link
        && !l.connected
    {
        let zone = i.info.zone.clone().unwrap_or_default();
        let e = l
            .last_error
            .clone()
            .unwrap_or_else(|| "not connected yet".into());
        attention.push(Attention {
            bad: true,
            what: format!("This zone is not connected to global: {e}"),
            fix: hints::zone_fix(&zone, &e),
            link: Some(("/gui/zones".into(), "Global".into())),
        });
    }
    let issues = meshes::backend_issues(i.meshes, i.rows);
    let mut failing: Vec<(&str, &str)> = issues
        .iter()
        .filter(|x| x.failing)
        .map(|x| (x.mesh.as_str(), x.backend.as_str()))
        .collect();
    failing.sort();
    failing.dedup();
    for x in &issues {
        attention.push(Attention {
            bad: x.failing,
            what: format!("Mesh {} backend {}: {}", x.mesh, x.backend, x.what),
            fix: x.fix.clone(),
            link: Some((
                format!("/gui/meshes/{}", super::layout::q(&x.mesh)),
                format!("Mesh {}", x.mesh),
            )),
        });
    }
    let (mut expiring, mut expired, mut overdue, mut online) = (0, 0, 0, 0);
    for r in i.rows {
        if r.online {
            online += 1;
        }
        let Some(m) = &r.mtls else { continue };
        let Some(exp) = m.certificate_expiration_time else {
            continue;
        };
        if exp <= now {
            expired += 1;
        } else if exp - now < SOON {
            expiring += 1;
        }
        let issued = m
            .certificate
            .as_ref()
            .map(|c| c.not_before)
            .or(m.last_certificate_regeneration);
        if exp > now
            && (CertTimes {
                expires: exp,
                issued,
            })
            .renewal_overdue(now)
        {
            overdue += 1;
        }
    }
    if expired > 0 {
        attention.push(Attention {
            bad: true,
            what: format!("{expired} dataplane certificate{} expired and not replaced", if expired == 1 { " has" } else { "s have" }),
            fix: Some("see the last error on each dataplane: the backend is failing or the dataplane is gone".into()),
            link: Some(("/gui/dataplanes?expiring=1".into(), "Dataplanes".into())),
        });
    }
    if overdue > 0 {
        attention.push(Attention {
            bad: false,
            what: format!(
                "{overdue} certificate{} past {} renewal time: rotation is stalled",
                if overdue == 1 { " is" } else { "s are" },
                if overdue == 1 { "its" } else { "their" }
            ),
            fix: Some(
                "the mesh's expiry timeline shows which; their dataplanes' last error says why"
                    .into(),
            ),
            link: Some(("/gui/dataplanes?expiring=1".into(), "Dataplanes".into())),
        });
    }
    attention.sort_by_key(|a| !a.bad);
    OverviewView {
        mode: i.info.mode.to_string(),
        version: i.info.version.to_string(),
        instance: i.info.instance_id.clone(),
        zone: i.info.zone.clone(),
        store: i.info.store.clone(),
        meshes: i.meshes.len(),
        zones,
        link_up: i.link.map(|l| l.connected),
        dataplanes: i.rows.len(),
        online,
        expiring,
        expired,
        overdue,
        backends_with_errors: failing.len(),
        attention,
    }
}

fn card(href: &str, class: &str, n: impl std::fmt::Display, label: &str, id: &str) -> Markup {
    html! {
        a class=(format!("card {class}")) href=(href) id=(id) {
            div class="n" { (n) }
            div class="label" { (label) }
        }
    }
}

pub fn render(v: &OverviewView) -> Markup {
    let cls = |bad: bool, warn: bool| {
        if bad {
            "bad"
        } else if warn {
            "warn"
        } else {
            "ok"
        }
    };
    html! {
        h1 { "Overview" }
        div class="cards" {
            (card("/gui/meshes", "", v.meshes, "meshes", "count-meshes"))
            @if let Some((on, off)) = v.zones {
                (card("/gui/zones", cls(false, false), on, "zones online", "count-zones-online"))
                (card("/gui/zones", cls(off > 0, false), off, "zones offline", "count-zones-offline"))
            }
            @if let Some(up) = v.link_up {
                (card("/gui/zones", cls(!up, false), if up { "Connected" } else { "Disconnected" }, "link to global", "link-global"))
            }
            (card("/gui/dataplanes", "", v.dataplanes, &format!("dataplanes ({} online)", v.online), "count-dataplanes"))
            (card("/gui/dataplanes?expiring=1", cls(v.expired > 0, v.overdue > 0), v.expiring, "certificates expiring < 24 h", "count-expiring"))
            (card("/gui/meshes", cls(v.backends_with_errors > 0, false), v.backends_with_errors, "backends with errors", "count-backend-errors"))
        }
        h2 { "Needs attention" }
        @if v.attention.is_empty() {
            p class="muted" id="attention-none" { "Nothing: every zone is online, every backend works and every certificate is on schedule." }
        }
        @for a in &v.attention {
            div class=(if a.bad { "problem" } else { "problem warn" }) {
                p class="what" { (a.what)
                    @if let Some((href, text)) = &a.link { " — " a href=(href) { (text) } } }
                @if let Some(f) = &a.fix { p class="fix" { strong { "Fix: " } (f) } }
            }
        }
        h2 { "This control plane" }
        div class="panel" {
            dl class="kv" id="control-plane" {
                dt { "Mode" } dd { (v.mode) @if let Some(z) = &v.zone { " (zone " (z) ")" } }
                dt { "Version" } dd { code { (v.version) } }
                dt { "Instance" } dd { code { (v.instance) } }
                dt { "Store" } dd { (v.store) }
            }
        }
    }
}

pub async fn handler(ctx: Ctx) -> Response {
    let meshes = match meshes::load(&ctx.s).await {
        Ok(m) => m,
        Err(e) => return ctx.store_error(e),
    };
    let zones = if ctx.s.info.zone.is_none() {
        match zones::load(&ctx.s).await {
            Ok(z) => Some(z),
            Err(e) => return ctx.store_error(e),
        }
    } else {
        None
    };
    let fleet = match ctx.console.fleet(&ctx.s).await {
        Ok(f) => f,
        Err(e) => return ctx.store_error(e),
    };
    let refusals = ctx.console.sync().refusals();
    let link = ctx.console.sync().global_link();
    let now = ctx.now;
    let v = fleet.with_rows(|rows| {
        let rows: Vec<&DpRow> = rows.collect();
        model(
            &Input {
                info: &ctx.s.info,
                meshes: &meshes,
                zones: zones.as_deref(),
                refusals: &refusals,
                link: link.as_ref(),
                rows: &rows,
            },
            now,
        )
    });
    ctx.page("Overview", Nav::Overview, render(&v))
}

/// The sign-in page's content; never anything from the store.
pub fn login_body(reason: Option<&str>, next: &str, loopback_admin: bool, zone: bool) -> Markup {
    html! {
        div class="login" {
            h1 { "Sign in to the console" }
            @if let Some(r) = reason {
                (super::layout::problem(r, Some("paste a current user token below")))
            }
            p { "The console shows what the REST API shows its admin. From another machine it needs a user token:" }
            pre { code { "meshctl generate user-token --name YOUR-NAME --valid-for 8h" } }
            @if zone {
                p class="muted" { "Run it against the global control plane: zones accept the tokens global issues." }
            }
            form method="post" action="/gui/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "User token" }
                textarea id="token" name="token" autocomplete="off" spellcheck="false" required {}
                p { button type="submit" { "Sign in" } }
            }
            @if loopback_admin {
                p class="muted" { "On the control plane's own machine, open the console at http://127.0.0.1:<api port>/gui: a direct loopback client is the admin." }
            }
            p class="muted" { "The token is kept in an HttpOnly cookie for this console only; a link with ?token=… signs in once and drops it from the address." }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::model::{
        MeshSpec, MtlsInsight,
        mesh_validation::{
            BackendValidation, MeshValidationSpec, ValidationIssue, ValidationOutcome,
        },
    };

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    fn info() -> ServerInfo {
        ServerInfo {
            product: "Meshplane",
            version: "0.1.0",
            instance_id: "global-7f".into(),
            mode: "global",
            zone: None,
            store: "postgres".into(),
        }
    }

    fn vault_mesh(name: &str) -> MeshSpec {
        let r = meshplane_core::model::Resource::from_universal(&serde_json::json!({
            "type": "Mesh", "name": name, "mtls": {"enabledBackend": "vault-1", "backends": [
                {"name": "vault-1", "type": "vault", "conf": {"fromCp": {"address": "http://v:8200", "pki": "pki", "role": "r",
                    "auth": {"token": {"secret": "vault-token"}}}}}]}}))
        .expect("mesh");
        match r.spec {
            meshplane_core::model::Spec::Mesh(m) => m,
            _ => unreachable!(),
        }
    }

    fn dp(name: &str, expires: i64, error: Option<&str>) -> DpRow {
        DpRow {
            mesh: "default".into(),
            name: name.into(),
            display: name.into(),
            online: true,
            services: vec!["web".into()],
            mtls: Some(MtlsInsight {
                certificate_expiration_time: Some(at(expires)),
                last_certificate_regeneration: Some(at(expires - 86_400)),
                issued_backend: Some("vault-1".into()),
                last_error: error.map(str::to_string),
                last_error_time: error.map(|_| at(-1)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn counts_and_what_needs_attention() {
        let meshes = vec![
            MeshInfo {
                name: "default".into(),
                spec: vault_mesh("default"),
                modified: None,
                validation: Some(MeshValidationSpec {
                    backends: vec![BackendValidation {
                        name: "vault-1".into(),
                        backend_type: "vault".into(),
                        time: at(-100),
                        outcome: ValidationOutcome::Ok,
                        stored: true,
                        warnings: vec!["Vault at http://v:8200 issued the test certificate without a KeyUsage extension.".into()],
                        errors: vec![],
                    }],
                }),
            },
            MeshInfo {
                name: "payments".into(),
                spec: vault_mesh("payments"),
                modified: None,
                validation: Some(MeshValidationSpec {
                    backends: vec![BackendValidation {
                        name: "vault-1".into(),
                        backend_type: "vault".into(),
                        time: at(-50),
                        outcome: ValidationOutcome::Failed,
                        stored: false,
                        warnings: vec![],
                        errors: vec![ValidationIssue {
                            field: "mtls.backends[0].conf".into(),
                            reason: "Vault at http://v:8200 has no role \"r\" in mount \"pki\": unknown role".into(),
                        }],
                    }],
                }),
            },
        ];
        let zones = vec![ZoneInfo {
            name: "west".into(),
            enabled: true,
            insight: None,
        }];
        let rows_owned = [
            dp("a", 3600, None),       // expiring, overdue (issued 23 h ago)
            dp("b", 2 * 86_400, None), // fine
            dp("c", -10, Some("Vault at http://v:8200 is sealed")), // expired, failing
        ];
        let rows: Vec<&DpRow> = rows_owned.iter().collect();
        let info = info();
        let v = model(
            &Input {
                info: &info,
                meshes: &meshes,
                zones: Some(&zones),
                refusals: &[],
                link: None,
                rows: &rows,
            },
            at(0),
        );
        assert_eq!(v.meshes, 2);
        assert_eq!(v.zones, Some((0, 1)));
        assert_eq!(v.dataplanes, 3);
        assert_eq!((v.expiring, v.expired, v.overdue), (1, 1, 1));
        assert_eq!(
            v.backends_with_errors, 2,
            "payments' failed validation and default's sealed Vault"
        );
        let whats: Vec<&str> = v.attention.iter().map(|a| a.what.as_str()).collect();
        assert!(
            whats
                .iter()
                .any(|w| w.contains("Zone west is offline (never connected)")),
            "{whats:?}"
        );
        assert!(whats.iter().any(|w| w.contains("has no role")), "{whats:?}");
        assert!(
            whats
                .iter()
                .any(|w| w.contains("could not get a certificate")),
            "{whats:?}"
        );
        let key_usage = v
            .attention
            .iter()
            .find(|a| a.what.contains("KeyUsage"))
            .expect("warning listed");
        assert!(!key_usage.bad);
        assert!(
            key_usage
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("DigitalSignature,KeyAgreement,KeyEncipherment"))
        );
        assert!(v.attention.first().is_some_and(|a| a.bad), "failures first");
        let html = render(&v).into_string();
        assert!(html.contains("global-7f") && html.contains("0.1.0"));
        assert!(html.contains("certificates expiring &lt; 24 h"));
    }

    #[test]
    fn the_login_page_holds_no_data() {
        let html = login_body(
            Some("user token refused: token has expired"),
            "/gui/zones",
            true,
            false,
        )
        .into_string();
        assert!(html.contains("token has expired"));
        assert!(html.contains(r#"name="next" value="/gui/zones""#));
        assert!(html.contains("meshctl generate user-token"));
    }
}
