//! The dataplanes table: filtered by mesh, zone, service, "expiring soon" and "with errors", and
//! paginated on the server, so a fleet of 10,000 is one walk over the in-memory index and a page of
//! rows on the wire.

use std::collections::BTreeSet;

use axum::{extract::Query, response::Response};
use chrono::{DateTime, TimeDelta, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Ctx,
    fleet::DpRow,
    layout::{Nav, badge, q, when},
    timeline::CertTimes,
};

pub const DEFAULT_SIZE: usize = 50;
pub const MAX_SIZE: usize = 500;
/// "Expiring soon": within this long (Kuma's default certificate lifetime).
pub const SOON: TimeDelta = TimeDelta::hours(24);

/// The query string, as typed (bad numbers fall back to defaults rather than fail the page).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DpQuery {
    pub mesh: Option<String>,
    pub zone: Option<String>,
    pub service: Option<String>,
    pub expiring: Option<String>,
    pub errors: Option<String>,
    pub offset: Option<String>,
    pub size: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub mesh: Option<String>,
    pub zone: Option<String>,
    /// A substring of any of its services.
    pub service: Option<String>,
    pub expiring: bool,
    pub errors: bool,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl DpQuery {
    pub fn filter(&self) -> Filter {
        let on = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty() && v != "0");
        Filter {
            mesh: nonempty(&self.mesh),
            zone: nonempty(&self.zone),
            service: nonempty(&self.service),
            expiring: on(&self.expiring),
            errors: on(&self.errors),
        }
    }

    pub fn window(&self) -> (usize, usize) {
        let size = self
            .size
            .as_deref()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .map_or(DEFAULT_SIZE, |n| n.min(MAX_SIZE));
        let offset = self
            .offset
            .as_deref()
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(0);
        (offset, size)
    }
}

impl Filter {
    pub fn matches(&self, r: &DpRow, now: DateTime<Utc>) -> bool {
        if self.mesh.as_ref().is_some_and(|m| &r.mesh != m) {
            return false;
        }
        if self
            .zone
            .as_ref()
            .is_some_and(|z| r.zone.as_ref() != Some(z))
        {
            return false;
        }
        if let Some(s) = &self.service
            && !r.services.iter().any(|x| x.contains(s.as_str()))
        {
            return false;
        }
        let expires = r.mtls.as_ref().and_then(|m| m.certificate_expiration_time);
        if self.expiring && expires.is_none_or(|t| t - now >= SOON) {
            return false;
        }
        if self.errors && r.mtls.as_ref().is_none_or(|m| m.last_error.is_none()) {
            return false;
        }
        true
    }

    /// The query string for this filter (for pagination links), without offset.
    pub fn query(&self, size: usize) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.mesh {
            parts.push(format!("mesh={}", q(m)));
        }
        if let Some(z) = &self.zone {
            parts.push(format!("zone={}", q(z)));
        }
        if let Some(s) = &self.service {
            parts.push(format!("service={}", q(s)));
        }
        if self.expiring {
            parts.push("expiring=1".into());
        }
        if self.errors {
            parts.push("errors=1".into());
        }
        if size != DEFAULT_SIZE {
            parts.push(format!("size={size}"));
        }
        parts.join("&")
    }
}

/// One row as the table shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpLine {
    pub mesh: String,
    pub name: String,
    pub display: String,
    pub zone: Option<String>,
    pub services: Vec<String>,
    pub spiffe_ids: Vec<String>,
    pub online: bool,
    pub backend: Option<String>,
    pub expires: Option<DateTime<Utc>>,
    pub overdue: bool,
    pub last_rotation: Option<DateTime<Utc>>,
    pub rotations: u64,
    pub last_error: Option<String>,
}

/// The identities a dataplane's certificate proves: as read from it, or (before the zone reported
/// it) the `spiffe://<mesh>/<service>` Kuma gives each service.
pub fn spiffe_ids(r: &DpRow) -> Vec<String> {
    if let Some(c) = r.mtls.as_ref().and_then(|m| m.certificate.as_ref()) {
        let ids: Vec<String> = c.spiffe_ids().into_iter().map(str::to_string).collect();
        if !ids.is_empty() {
            return ids;
        }
    }
    r.services
        .iter()
        .map(|s| format!("spiffe://{}/{s}", r.mesh))
        .collect()
}

pub fn line(r: &DpRow, now: DateTime<Utc>) -> DpLine {
    let m = r.mtls.as_ref();
    let expires = m.and_then(|m| m.certificate_expiration_time);
    let issued = m.and_then(|m| {
        m.certificate
            .as_ref()
            .map(|c| c.not_before)
            .or(m.last_certificate_regeneration)
    });
    DpLine {
        mesh: r.mesh.clone(),
        name: r.name.clone(),
        display: r.display.clone(),
        zone: r.zone.clone(),
        services: r.services.clone(),
        spiffe_ids: spiffe_ids(r),
        online: r.online,
        backend: m.and_then(|m| m.issued_backend.clone()),
        expires,
        overdue: expires.is_some_and(|e| CertTimes { expires: e, issued }.renewal_overdue(now)),
        last_rotation: m.and_then(|m| m.last_certificate_regeneration),
        rotations: m.map_or(0, |m| m.certificate_regenerations),
        last_error: m.and_then(|m| m.last_error.clone()),
    }
}

/// One page of the filtered table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpPage {
    pub filter: Filter,
    pub total: usize,
    pub offset: usize,
    pub size: usize,
    pub lines: Vec<DpLine>,
    /// Every zone and mesh seen, for the filter's choices.
    pub zones: Vec<String>,
    pub meshes: Vec<String>,
}

/// Filters `rows` and keeps `offset..offset+size`; only the page's rows are turned into lines.
pub fn page<'a>(
    rows: impl Iterator<Item = &'a DpRow>,
    filter: Filter,
    offset: usize,
    size: usize,
    now: DateTime<Utc>,
) -> DpPage {
    let (mut total, mut lines) = (0, Vec::new());
    let (mut zones, mut meshes) = (BTreeSet::new(), BTreeSet::new());
    for r in rows {
        if let Some(z) = &r.zone {
            zones.insert(z.clone());
        }
        meshes.insert(r.mesh.clone());
        if !filter.matches(r, now) {
            continue;
        }
        if total >= offset && lines.len() < size {
            lines.push(line(r, now));
        }
        total += 1;
    }
    DpPage {
        filter,
        total,
        offset,
        size,
        lines,
        zones: zones.into_iter().collect(),
        meshes: meshes.into_iter().collect(),
    }
}

pub fn dataplane_href(mesh: &str, name: &str) -> String {
    format!("/gui/meshes/{}/dataplanes/{}", q(mesh), q(name))
}

fn select(name: &str, label: &str, current: Option<&String>, options: &[String]) -> Markup {
    html! {
        label { (label)
            select name=(name) {
                option value="" selected[current.is_none()] { "all" }
                @for o in options {
                    option value=(o) selected[current == Some(o)] { (o) }
                }
            }
        }
    }
}

pub fn render(p: &DpPage, now: DateTime<Utc>) -> Markup {
    let f = &p.filter;
    let base = f.query(p.size);
    let link = |offset: usize| {
        if base.is_empty() {
            format!("/gui/dataplanes?offset={offset}")
        } else {
            format!("/gui/dataplanes?{base}&offset={offset}")
        }
    };
    let last = (p.offset + p.lines.len()).min(p.total);
    html! {
        h1 { "Dataplanes" }
        form class="filters" method="get" action="/gui/dataplanes" {
            (select("mesh", "Mesh", f.mesh.as_ref(), &p.meshes))
            (select("zone", "Zone", f.zone.as_ref(), &p.zones))
            label { "Service" input type="text" name="service" value=[f.service.as_deref()] placeholder="any"; }
            label class="check" { input type="checkbox" name="expiring" value="1" checked[f.expiring]; "expiring within 24 h" }
            label class="check" { input type="checkbox" name="errors" value="1" checked[f.errors]; "with errors" }
            @if p.size != DEFAULT_SIZE { input type="hidden" name="size" value=(p.size); }
            button type="submit" { "Filter" }
        }
        div class="pager" {
            span id="range" { @if p.total == 0 { "no dataplane matches" } @else { (p.offset + 1) "–" (last) " of " (p.total) } }
            @if p.offset > 0 { a rel="prev" href=(link(p.offset.saturating_sub(p.size))) { "← previous" } }
            @if last < p.total { a rel="next" href=(link(last)) { "next →" } }
        }
        table id="dataplanes" {
            thead { tr {
                th { "Dataplane" } th { "Mesh" } th { "Zone" } th { "SPIFFE ID" } th { "Backend" }
                th { "Certificate expires" } th { "Last rotation" } th class="num" { "Rotations" } th { "Last error" }
            } }
            tbody {
                @for l in &p.lines {
                    tr data-dataplane=(l.name) {
                        td {
                            a href=(dataplane_href(&l.mesh, &l.name)) { (l.display) }
                            " " @if l.online { (badge("ok", "online")) } @else { (badge("off", "offline")) }
                        }
                        td { (l.mesh) }
                        td { (l.zone.as_deref().unwrap_or("—")) }
                        td { @for id in &l.spiffe_ids { code { (id) } br; } }
                        td { @if let Some(b) = &l.backend { code { (b) } } @else { span class="muted" { "—" } } }
                        td {
                            (when(l.expires, now))
                            @if l.expires.is_some_and(|e| e <= now) { " " (badge("bad", "expired")) }
                            @else if l.overdue { " " (badge("warn", "renewal overdue")) }
                        }
                        td { (when(l.last_rotation, now)) }
                        td class="num" { (l.rotations) }
                        td { @if let Some(e) = &l.last_error { span class="bad" { (e) } } @else { span class="muted" { "—" } } }
                    }
                }
            }
        }
    }
}

pub async fn handler(ctx: Ctx, Query(query): Query<DpQuery>) -> Response {
    let fleet = match ctx.console.fleet(&ctx.s).await {
        Ok(f) => f,
        Err(e) => return ctx.store_error(e),
    };
    let (offset, size) = query.window();
    let filter = query.filter();
    let now = ctx.now;
    let p = fleet.with_rows(|rows| page(rows, filter, offset, size, now));
    ctx.page("Dataplanes", Nav::Dataplanes, render(&p, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::model::MtlsInsight;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    fn row(i: usize) -> DpRow {
        let zone = if i.is_multiple_of(2) { "east" } else { "west" };
        DpRow {
            mesh: if i.is_multiple_of(3) {
                "payments".into()
            } else {
                "default".into()
            },
            name: format!("{zone}.dp-{i:05}"),
            display: format!("dp-{i:05}"),
            zone: Some(zone.into()),
            services: vec![if i.is_multiple_of(5) {
                "web".into()
            } else {
                "backend".into()
            }],
            online: true,
            mtls: Some(MtlsInsight {
                // Every tenth expires within the hour; the rest in two days.
                certificate_expiration_time: Some(if i.is_multiple_of(10) {
                    at(1800)
                } else {
                    at(2 * 86_400)
                }),
                last_certificate_regeneration: Some(at(-3600)),
                certificate_regenerations: 2,
                issued_backend: Some("vault-1".into()),
                last_error: i
                    .is_multiple_of(7)
                    .then(|| "Vault at http://v is sealed".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ten_thousand_filter_and_paginate_on_the_server() {
        let rows: Vec<DpRow> = (0..10_000).map(row).collect();
        let now = at(0);
        let all = page(rows.iter(), Filter::default(), 0, DEFAULT_SIZE, now);
        assert_eq!(all.total, 10_000);
        assert_eq!(all.lines.len(), DEFAULT_SIZE);
        assert_eq!(all.zones, ["east", "west"]);
        assert_eq!(all.meshes, ["default", "payments"]);

        let q = DpQuery {
            mesh: Some("default".into()),
            zone: Some("east".into()),
            service: Some("web".into()),
            expiring: Some("1".into()),
            offset: Some("10".into()),
            size: Some("20".into()),
            ..Default::default()
        };
        let (offset, size) = q.window();
        let p = page(rows.iter(), q.filter(), offset, size, now);
        // East (i even), default (i not a multiple of 3), web (of 5), expiring (of 10): multiples of 10 that are not multiples of 3.
        let want = (0..10_000usize)
            .filter(|i| i.is_multiple_of(10) && !i.is_multiple_of(3))
            .count();
        assert_eq!(p.total, want);
        assert_eq!(p.lines.len(), 20);
        assert!(p.lines.iter().all(|l| l.mesh == "default"
            && l.zone.as_deref() == Some("east")
            && l.services == ["web"]));
        assert_eq!(p.lines[0].spiffe_ids, ["spiffe://default/web"]);

        let errors = DpQuery {
            errors: Some("1".into()),
            ..Default::default()
        };
        let e = page(rows.iter(), errors.filter(), 0, 5, now);
        assert_eq!(
            e.total,
            (0..10_000usize).filter(|i| i.is_multiple_of(7)).count()
        );

        let html = render(&p, now).into_string();
        assert!(html.contains(&format!("11–30 of {want}")), "range shown");
        assert!(
            html.contains("offset=30") && html.contains("offset=0"),
            "next and previous links"
        );
        assert!(
            html.contains("mesh=default&amp;zone=east&amp;service=web&amp;expiring=1&amp;size=20")
        );
    }

    #[test]
    fn bad_numbers_fall_back() {
        let q = DpQuery {
            offset: Some("-3".into()),
            size: Some("100000".into()),
            ..Default::default()
        };
        assert_eq!(q.window(), (0, MAX_SIZE));
        let q = DpQuery {
            size: Some("0".into()),
            ..Default::default()
        };
        assert_eq!(q.window(), (0, DEFAULT_SIZE));
    }

    #[test]
    fn a_line_reads_the_certificate_when_reported() {
        let mut r = row(1);
        let mut mtls = r.mtls.clone().unwrap_or_default();
        mtls.certificate = Some(meshplane_core::model::certificate::CertificateSummary {
            sans: vec![
                "URI:spiffe://default/backend".into(),
                "URI:kuma://version/v1".into(),
            ],
            not_before: at(-86_000),
            not_after: at(400),
            ..Default::default()
        });
        mtls.certificate_expiration_time = Some(at(400));
        r.mtls = Some(mtls);
        let l = line(&r, at(0));
        assert_eq!(l.spiffe_ids, ["spiffe://default/backend"]);
        assert!(
            l.overdue,
            "issued a day ago, 400 s left: past its renewal time"
        );
        assert_eq!(l.rotations, 2);
    }
}
