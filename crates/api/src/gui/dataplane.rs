//! A dataplane's page: where it runs, its tags, and its certificate as read from the certificate
//! (subject, SANs, issuer chain, validity), with the last rotation and the last error.

use axum::{extract::Path, http::StatusCode, response::Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use meshplane_core::model::certificate::CertificateSummary;

use super::{
    Ctx,
    dataplanes::{DpLine, line},
    fleet::DpRow,
    hints,
    layout::{Nav, badge, fmt_time, problem, q, relative, when},
};

#[derive(Clone, Debug, PartialEq)]
pub struct DataplaneView {
    pub line: DpLine,
    pub address: String,
    pub tags: Vec<(String, String)>,
    pub certificate: Option<CertificateSummary>,
    pub last_error_time: Option<DateTime<Utc>>,
    pub supported_backends: Vec<String>,
    pub fix: Option<String>,
}

pub fn model(r: &DpRow, now: DateTime<Utc>) -> DataplaneView {
    let l = line(r, now);
    let fix = l.last_error.as_deref().and_then(hints::backend_fix);
    DataplaneView {
        address: r.address.clone(),
        tags: r
            .tags
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
            .collect(),
        certificate: r.mtls.as_ref().and_then(|m| m.certificate.clone()),
        last_error_time: r.mtls.as_ref().and_then(|m| m.last_error_time),
        supported_backends: r
            .mtls
            .as_ref()
            .map(|m| m.supported_backends.clone())
            .unwrap_or_default(),
        fix,
        line: l,
    }
}

pub fn render(v: &DataplaneView, now: DateTime<Utc>) -> Markup {
    let l = &v.line;
    html! {
        h1 { "Dataplane " (l.display) " "
            @if l.online { (badge("ok", "online")) } @else { (badge("off", "offline")) } }
        @if let Some(e) = &l.last_error {
            (problem(&format!("The last certificate request failed{}: {e}",
                v.last_error_time.map(|t| format!(" ({})", fmt_time(t))).unwrap_or_default()),
                v.fix.as_deref()))
            @if l.expires.is_some_and(|x| x > now) {
                p class="muted" { "It keeps being served its current certificate until that expires; the zone retries with backoff." }
            }
        }
        div class="panel" {
            dl class="kv" {
                dt { "Mesh" } dd { a href=(format!("/gui/meshes/{}", q(&l.mesh))) { (l.mesh) } }
                dt { "Zone" } dd { (l.zone.as_deref().unwrap_or("—")) }
                dt { "Name" } dd { code { (l.name) } }
                dt { "Address" } dd { code { (v.address) } }
                dt { "Services" } dd { @for s in &l.services { code { (s) } " " } }
                dt { "Tags" } dd { @for (k, val) in &v.tags { code { (k) "=" (val) } " " } }
            }
        }
        h2 { "Certificate" }
        div class="panel" {
            dl class="kv" id="certificate" {
                dt { "SPIFFE ID" } dd { @for id in &l.spiffe_ids { code { (id) } br; } }
                dt { "Issued by backend" } dd { @if let Some(b) = &l.backend { code { (b) } } @else { "—" } }
                dt { "Expires" } dd { (when(l.expires, now))
                    @if l.overdue { " " (badge("warn", "renewal overdue")) } }
                dt { "Last rotation" } dd { (when(l.last_rotation, now)) }
                dt { "Rotations" } dd { (l.rotations) }
                dt { "Backends it trusts" } dd { @for b in &v.supported_backends { code { (b) } " " } }
            }
        }
        @match &v.certificate {
            None => {
                p class="muted" { "The zone has not reported this certificate's contents (it does with every new certificate)." }
            }
            Some(c) => {
                div class="panel" {
                    dl class="kv" id="parsed" {
                        dt { "Subject" } dd { code { (c.subject) } }
                        dt { "Subject alternative names" } dd { @for s in &c.sans { code { (s) } br; } }
                        dt { "Issuer" } dd { code { (c.issuer) } }
                        dt { "Serial" } dd { code { (c.serial) } }
                        dt { "Valid from" } dd { (fmt_time(c.not_before)) }
                        dt { "Valid until" } dd { (fmt_time(c.not_after)) " (" (relative(c.not_after, now)) ")" }
                    }
                }
                h3 { "Issuer chain" }
                @if c.chain.is_empty() {
                    p class="muted" { "The backend returned no chain with the certificate; peers verify it against the mesh's trust bundle." }
                } @else {
                    table class="chain" {
                        thead { tr { th { "#" } th { "Subject" } th { "Issuer" } th { "Expires" } } }
                        tbody {
                            @for (i, e) in c.chain.iter().enumerate() {
                                tr { td { (i + 1) } td { code { (e.subject) } } td { code { (e.issuer) } } td { (fmt_time(e.not_after)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn handler(ctx: Ctx, Path((mesh, name)): Path<(String, String)>) -> Response {
    let fleet = match ctx.console.fleet(&ctx.s).await {
        Ok(f) => f,
        Err(e) => return ctx.store_error(e),
    };
    let Some(row) = fleet.get(&mesh, &name) else {
        return ctx.error(
            StatusCode::NOT_FOUND,
            &format!("There is no dataplane {name:?} in mesh {mesh:?}"),
            Some("it may have been deregistered; see the Dataplanes page"),
        );
    };
    let v = model(&row, ctx.now);
    ctx.page(
        &format!("Dataplane {}", row.display),
        Nav::Dataplanes,
        render(&v, ctx.now),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::model::{MtlsInsight, certificate::ChainEntry};

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    #[test]
    fn shows_what_the_certificate_says() {
        let r = DpRow {
            mesh: "default".into(),
            name: "east.web-1".into(),
            display: "web-1".into(),
            zone: Some("east".into()),
            services: vec!["web".into()],
            address: "10.0.0.1".into(),
            tags: [("kuma.io/service".to_string(), vec!["web".to_string()])].into(),
            online: true,
            mtls: Some(MtlsInsight {
                certificate_expiration_time: Some(at(3600)),
                last_certificate_regeneration: Some(at(-60)),
                certificate_regenerations: 4,
                issued_backend: Some("vault-1".into()),
                supported_backends: vec!["vault-1".into()],
                last_error: Some("Vault at http://v:8200 is sealed".into()),
                last_error_time: Some(at(-5)),
                certificate: Some(CertificateSummary {
                    subject: "CN=web.mesh".into(),
                    issuer: "CN=Vault Intermediate".into(),
                    serial: "0abc".into(),
                    not_before: at(-60),
                    not_after: at(3600),
                    sans: vec!["URI:spiffe://default/web".into()],
                    chain: vec![ChainEntry {
                        subject: "CN=Vault Intermediate".into(),
                        issuer: "CN=Vault Root".into(),
                        not_after: at(86_400 * 365),
                    }],
                }),
            }),
            ..Default::default()
        };
        let v = model(&r, at(0));
        assert_eq!(v.line.spiffe_ids, ["spiffe://default/web"]);
        assert!(v.fix.as_deref().is_some_and(|f| f.contains("unseal")));
        let html = render(&v, at(0)).into_string();
        for want in [
            "CN=web.mesh",
            "URI:spiffe://default/web",
            "CN=Vault Intermediate",
            "CN=Vault Root",
            "0abc",
            "is sealed",
            "Fix: ",
            "keeps being served",
        ] {
            assert!(html.contains(want), "{want} in {html}");
        }
    }
}
