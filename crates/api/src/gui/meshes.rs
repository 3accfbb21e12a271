//! The meshes page and a mesh's page: each mTLS backend, which one is enabled, how its last
//! validation went (Vault's own words and the fix), where Vault is and which PKI path (never a
//! token or a key: DataSources are shown by where they point), the trust bundle's roots with their
//! expiry, and the certificate-expiry timeline.

use std::collections::BTreeMap;

use axum::{extract::Path, http::StatusCode, response::Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use meshplane_core::{
    manager::ManagerError,
    model::{
        Backend, BackendConf, DataSource, MeshSpec, ResourceKind, Spec,
        ca_conf::VaultAuth,
        certificate::CertificateSummary,
        mesh_validation::{MeshValidationSpec, ValidationOutcome},
    },
    store::ListQuery,
};

use super::{
    Ctx,
    fleet::DpRow,
    hints,
    layout::{Nav, badge, fmt_span, fmt_time, problem, q, relative},
    timeline,
};
use crate::ApiState;

#[derive(Clone, Debug, PartialEq)]
pub struct MeshInfo {
    pub name: String,
    pub spec: MeshSpec,
    pub modified: Option<DateTime<Utc>>,
    pub validation: Option<MeshValidationSpec>,
}

pub async fn load(s: &ApiState) -> Result<Vec<MeshInfo>, ManagerError> {
    let meshes = s.manager.list(&ListQuery::all(ResourceKind::Mesh)).await?;
    let validations = s
        .manager
        .list(&ListQuery::all(ResourceKind::MeshValidation))
        .await?;
    let mut out = Vec::new();
    for rec in &meshes.items {
        let Ok(r) = rec.to_resource() else { continue };
        let Spec::Mesh(spec) = r.spec else { continue };
        let validation = validations
            .items
            .iter()
            .find(|v| v.key.name == rec.key.name)
            .and_then(|v| v.to_resource().ok())
            .and_then(|v| match v.spec {
                Spec::MeshValidation(v) => Some(v),
                _ => None,
            });
        out.push(MeshInfo {
            name: rec.key.name.clone(),
            spec,
            modified: r.meta.modification_time,
            validation,
        });
    }
    Ok(out)
}

/// Something wrong with a backend, as the overview and the mesh page list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendIssue {
    pub mesh: String,
    pub backend: String,
    /// `true` for a problem that stops certificates (a failure), `false` for a warning.
    pub failing: bool,
    pub what: String,
    pub fix: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

/// Failed validations, validation warnings and issuance errors, per backend of each stored Mesh.
pub fn backend_issues(meshes: &[MeshInfo], rows: &[&DpRow]) -> Vec<BackendIssue> {
    let mut out = Vec::new();
    for m in meshes {
        for b in m.spec.backends() {
            if let Some(v) = m.validation.as_ref().and_then(|v| v.backend(&b.name)) {
                let when = fmt_time(v.time);
                for e in &v.errors {
                    let refused = if v.stored {
                        ""
                    } else {
                        " (that write was refused; the stored configuration is unchanged)"
                    };
                    out.push(BackendIssue {
                        mesh: m.name.clone(),
                        backend: b.name.clone(),
                        failing: true,
                        what: format!(
                            "validation failed at {when}{refused}: {}: {}",
                            e.field, e.reason
                        ),
                        fix: hints::backend_fix(&e.reason),
                        at: Some(v.time),
                    });
                }
                if v.stored {
                    for w in &v.warnings {
                        out.push(BackendIssue {
                            mesh: m.name.clone(),
                            backend: b.name.clone(),
                            failing: false,
                            what: format!("validated at {when} with a warning: {w}"),
                            fix: hints::backend_fix(w),
                            at: Some(v.time),
                        });
                    }
                }
            }
            // Dataplanes whose last attempt with this backend failed.
            let failing: Vec<&&DpRow> = rows
                .iter()
                .filter(|r| r.mesh == m.name)
                .filter(|r| {
                    r.mtls.as_ref().is_some_and(|t| {
                        t.last_error.is_some()
                            && (t.issued_backend.as_deref() == Some(b.name.as_str())
                                || (t.issued_backend.is_none()
                                    && m.spec.enabled_backend().map(|e| &e.name) == Some(&b.name)))
                    })
                })
                .collect();
            if let Some(latest) = failing
                .iter()
                .filter_map(|r| r.mtls.as_ref())
                .max_by_key(|t| t.last_error_time)
            {
                let msg = latest.last_error.clone().unwrap_or_default();
                out.push(BackendIssue {
                    mesh: m.name.clone(),
                    backend: b.name.clone(),
                    failing: true,
                    what: format!(
                        "{} dataplane{} could not get a certificate; the latest error{}: {msg}",
                        failing.len(),
                        if failing.len() == 1 { "" } else { "s" },
                        latest
                            .last_error_time
                            .map(|t| format!(" ({})", fmt_time(t)))
                            .unwrap_or_default()
                    ),
                    fix: hints::backend_fix(&msg),
                    at: latest.last_error_time,
                });
            }
        }
    }
    out
}

/// One line per DataSource: where it points, never what it holds.
pub fn source(ds: &DataSource) -> String {
    match ds {
        DataSource::Secret(n) => format!("Secret {n:?}"),
        DataSource::File(p) => format!("file {p}"),
        DataSource::Inline(_) | DataSource::InlineString(_) => {
            "inline in the Mesh (not shown)".to_string()
        }
    }
}

/// A URL without any `user:password@` part.
fn without_userinfo(addr: &str) -> String {
    match addr.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => addr.to_string(),
    }
}

/// A backend's settings as label/value pairs for its card.
pub fn settings(b: &Backend) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("Type", b.backend_type.name().to_string()),
        (
            "Certificate lifetime",
            fmt_span(chrono::TimeDelta::from_std(b.dp_cert_expiration()).unwrap_or_default()),
        ),
    ];
    match &b.conf {
        Some(BackendConf::Vault(v)) => {
            let f = &v.from_cp;
            out.push(("Vault address", without_userinfo(&f.address)));
            if let Some(ns) = &f.namespace {
                out.push(("Namespace", ns.clone()));
            }
            out.push(("PKI path", f.pki.clone()));
            out.push(("Role", f.role.clone()));
            out.push((
                "Auth",
                match &f.auth {
                    Some(VaultAuth::Token(ds)) => format!("token from {}", source(ds)),
                    Some(VaultAuth::Tls(t)) => format!(
                        "TLS client certificate from {}, key from {}",
                        source(&t.client_cert),
                        source(&t.client_key)
                    ),
                    Some(VaultAuth::Aws(a)) => format!(
                        "AWS {}{}",
                        match a.auth_type {
                            Some(meshplane_core::model::ca_conf::AwsAuthType::Ec2) => "EC2",
                            _ => "IAM",
                        },
                        a.role
                            .as_ref()
                            .map(|r| format!(", role {r}"))
                            .unwrap_or_default()
                    ),
                    None => "none".to_string(),
                },
            ));
            if let Some(cn) = &f.common_name {
                out.push(("Common name template", cn.to_string()));
            }
            if let Some(tls) = &f.tls {
                if let Some(ca) = &tls.ca_cert {
                    out.push(("Vault CA", source(ca)));
                }
                if tls.skip_verify == Some(true) {
                    out.push(("TLS verification", "skipped (skipVerify)".into()));
                }
            }
            if f.csr.is_some() {
                out.push((
                    "Key",
                    "made here, signed through <pki>/sign/<role> (csr)".into(),
                ));
            }
        }
        Some(BackendConf::AcmPca(a)) => {
            out.push(("Private CA", a.arn.clone()));
            if let Some(e) = &a.endpoint {
                out.push(("Endpoint", without_userinfo(e)));
            }
            out.push((
                "Auth",
                match &a.auth {
                    Some(c) => format!(
                        "access key from {}, secret from {}",
                        source(&c.aws_credentials.access_key),
                        source(&c.aws_credentials.access_key_secret)
                    ),
                    None => "the AWS SDK's default credential chain".into(),
                },
            ));
            if let Some(cn) = &a.common_name {
                out.push(("Common name template", cn.to_string()));
            }
            out.push((
                "Trusted root",
                match &a.ca_cert {
                    Some(ds) => source(ds),
                    None => "GetCertificateAuthorityCertificate".into(),
                },
            ));
        }
        Some(BackendConf::Provided(p)) => {
            out.push(("CA certificate", source(&p.cert)));
            out.push(("CA key", source(&p.key)));
        }
        Some(BackendConf::Builtin(_)) | None => {
            if b.backend_type == meshplane_core::model::BackendType::Builtin {
                out.push((
                    "CA certificate",
                    "Secret generated with the Mesh (<mesh>.ca-builtin-cert-<backend>)".into(),
                ));
            }
        }
    }
    out
}

/// The meshes list's model: one line per Mesh.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshLine {
    pub name: String,
    pub enabled: Option<String>,
    pub backends: Vec<(String, String)>,
    pub dataplanes: usize,
    pub expiring: usize,
    pub failing: usize,
    pub warnings: usize,
}

pub fn lines(meshes: &[MeshInfo], rows: &[&DpRow], now: DateTime<Utc>) -> Vec<MeshLine> {
    let issues = backend_issues(meshes, rows);
    let day = chrono::TimeDelta::hours(24);
    meshes
        .iter()
        .map(|m| {
            let mine: Vec<&&DpRow> = rows.iter().filter(|r| r.mesh == m.name).collect();
            MeshLine {
                name: m.name.clone(),
                enabled: m.spec.enabled_backend().map(|b| b.name.clone()),
                backends: m
                    .spec
                    .backends()
                    .iter()
                    .map(|b| (b.name.clone(), b.backend_type.name().to_string()))
                    .collect(),
                dataplanes: mine.len(),
                expiring: mine
                    .iter()
                    .filter_map(|r| r.mtls.as_ref()?.certificate_expiration_time)
                    .filter(|t| *t > now && *t - now < day)
                    .count(),
                failing: issues
                    .iter()
                    .filter(|i| i.mesh == m.name && i.failing)
                    .count(),
                warnings: issues
                    .iter()
                    .filter(|i| i.mesh == m.name && !i.failing)
                    .count(),
            }
        })
        .collect()
}

pub fn render_list(lines: &[MeshLine]) -> Markup {
    html! {
        h1 { "Meshes" }
        table id="meshes" {
            thead { tr { th { "Mesh" } th { "mTLS" } th { "Backends" } th class="num" { "Dataplanes" } th class="num" { "Expiring < 24 h" } th { "Backend status" } } }
            tbody {
                @for l in lines {
                    tr data-mesh=(l.name) {
                        td { a href=(format!("/gui/meshes/{}", q(&l.name))) { strong { (l.name) } } }
                        td { @match &l.enabled { Some(e) => { (badge("ok", "on")) " " code { (e) } }, None => { (badge("off", "off")) } } }
                        td { @for (n, t) in &l.backends { code { (n) } " (" (t) ") " } }
                        td class="num" { a href=(format!("/gui/dataplanes?mesh={}", q(&l.name))) { (l.dataplanes) } }
                        td class="num" { (l.expiring) }
                        td {
                            @if l.failing > 0 { (badge("bad", &format!("{} failing", l.failing))) " " }
                            @if l.warnings > 0 { (badge("warn", &format!("{} warning{}", l.warnings, if l.warnings == 1 { "" } else { "s" }))) }
                            @if l.failing == 0 && l.warnings == 0 { (badge("ok", "ok")) }
                        }
                    }
                }
            }
        }
    }
}

/// Roots of one backend, or why they could not be read.
pub type Roots = Result<Vec<CertificateSummary>, String>;

/// A mesh page's model.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshView {
    pub name: String,
    pub backends: Vec<BackendCard>,
    pub issues: Vec<BackendIssue>,
    pub timeline: timeline::Timeline,
    pub dataplanes: usize,
    /// Validation is global's job in a federated zone: say so rather than show nothing.
    pub validated_elsewhere: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BackendCard {
    pub name: String,
    pub enabled: bool,
    pub settings: Vec<(&'static str, String)>,
    pub validation: Option<(ValidationOutcome, DateTime<Utc>, bool)>,
    pub roots: Roots,
    pub dataplanes: usize,
}

pub fn mesh_view(
    m: &MeshInfo,
    rows: &[&DpRow],
    roots: &BTreeMap<String, Roots>,
    validated_elsewhere: bool,
    now: DateTime<Utc>,
) -> MeshView {
    let mine: Vec<&DpRow> = rows.iter().copied().filter(|r| r.mesh == m.name).collect();
    let enabled = m.spec.enabled_backend().map(|b| b.name.clone());
    let certs: Vec<timeline::CertTimes> = mine
        .iter()
        .filter_map(|r| {
            let t = r.mtls.as_ref()?;
            Some(timeline::CertTimes {
                expires: t.certificate_expiration_time?,
                issued: t
                    .certificate
                    .as_ref()
                    .map(|c| c.not_before)
                    .or(t.last_certificate_regeneration),
            })
        })
        .collect();
    MeshView {
        name: m.name.clone(),
        backends: m
            .spec
            .backends()
            .iter()
            .map(|b| BackendCard {
                name: b.name.clone(),
                enabled: enabled.as_deref() == Some(b.name.as_str()),
                settings: settings(b),
                validation: m
                    .validation
                    .as_ref()
                    .and_then(|v| v.backend(&b.name))
                    .map(|v| (v.outcome, v.time, v.stored)),
                roots: roots
                    .get(&b.name)
                    .cloned()
                    .unwrap_or_else(|| Err("not read".into())),
                dataplanes: mine
                    .iter()
                    .filter(|r| {
                        r.mtls.as_ref().and_then(|t| t.issued_backend.as_deref())
                            == Some(b.name.as_str())
                    })
                    .count(),
            })
            .collect(),
        issues: backend_issues(std::slice::from_ref(m), &mine),
        timeline: timeline::model(&certs, now),
        dataplanes: mine.len(),
        validated_elsewhere,
    }
}

fn validation_badge(
    v: Option<(ValidationOutcome, DateTime<Utc>, bool)>,
    now: DateTime<Utc>,
) -> Markup {
    html! {
        @match v {
            Some((ValidationOutcome::Ok, t, true)) => { (badge("ok", "validated")) " " span class="muted" { (relative(t, now)) } }
            Some((ValidationOutcome::Ok, t, false)) => { (badge("warn", "passed in a refused write")) " " span class="muted" { (relative(t, now)) } }
            Some((ValidationOutcome::Failed, t, _)) => { (badge("bad", "validation failed")) " " span class="muted" { (relative(t, now)) } }
            Some((ValidationOutcome::Skipped, t, _)) => { (badge("warn", "not validated (skipValidation)")) " " span class="muted" { (relative(t, now)) } }
            None => { span class="muted" { "no validation recorded" } }
        }
    }
}

pub fn render_mesh(v: &MeshView, now: DateTime<Utc>) -> Markup {
    html! {
        h1 { "Mesh " (v.name) }
        p { a href=(format!("/gui/dataplanes?mesh={}", q(&v.name))) { (v.dataplanes) " dataplanes" } }
        @for i in &v.issues {
            div class=(if i.failing { "problem" } else { "problem warn" }) {
                p class="what" { "Backend " code { (i.backend) } ": " (i.what) }
                @if let Some(f) = &i.fix { p class="fix" { strong { "Fix: " } (f) } }
            }
        }
        h2 { "mTLS backends" }
        @if v.backends.is_empty() {
            p class="muted" { "This Mesh has no mTLS backend: its dataplanes get no certificate." }
        }
        @for b in &v.backends {
            div class="panel backend" data-backend=(b.name) {
                h3 {
                    code { (b.name) } " "
                    @if b.enabled { (badge("ok", "enabled")) } @else { (badge("off", "not enabled")) }
                    " "
                    @if v.validated_elsewhere { span class="muted" { "validated by global" } } @else { (validation_badge(b.validation, now)) }
                }
                dl class="kv" {
                    @for (k, val) in &b.settings { dt { (k) } dd { (val) } }
                    dt { "Dataplanes holding its certificate" } dd { (b.dataplanes) }
                }
                h3 { "Trust bundle roots" }
                @match &b.roots {
                    Ok(roots) if roots.is_empty() => { p class="muted" { "none returned" } }
                    Ok(roots) => {
                        table class="roots" {
                            thead { tr { th { "Subject" } th { "Serial" } th { "Expires" } } }
                            tbody {
                                @for r in roots {
                                    tr {
                                        td { code { (r.subject) } }
                                        td { code { (r.serial) } }
                                        td { (fmt_time(r.not_after)) " (" (relative(r.not_after, now)) ")" }
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => { (problem(&format!("The roots could not be read: {e}"), hints::backend_fix(e).as_deref())) }
                }
            }
        }
        h2 { "Certificate expiry" }
        @if v.timeline.total == 0 {
            p class="muted" { "No dataplane of this mesh holds a certificate yet." }
        } @else {
            (timeline::svg(&v.timeline))
        }
    }
}

pub async fn list_handler(ctx: Ctx) -> Response {
    let meshes = match load(&ctx.s).await {
        Ok(m) => m,
        Err(e) => return ctx.store_error(e),
    };
    let fleet = match ctx.console.fleet(&ctx.s).await {
        Ok(f) => f,
        Err(e) => return ctx.store_error(e),
    };
    let now = ctx.now;
    let l = fleet.with_rows(|rows| lines(&meshes, &rows.collect::<Vec<_>>(), now));
    let body = render_list(&l);
    ctx.page("Meshes", Nav::Meshes, body)
}

pub async fn mesh_handler(ctx: Ctx, Path(name): Path<String>) -> Response {
    let meshes = match load(&ctx.s).await {
        Ok(m) => m,
        Err(e) => return ctx.store_error(e),
    };
    let Some(m) = meshes.into_iter().find(|m| m.name == name) else {
        return ctx.error(
            StatusCode::NOT_FOUND,
            &format!("There is no Mesh {name:?}"),
            Some("pick one on the Meshes page"),
        );
    };
    let fleet = match ctx.console.fleet(&ctx.s).await {
        Ok(f) => f,
        Err(e) => return ctx.store_error(e),
    };
    let mut roots = BTreeMap::new();
    for b in m.spec.backends() {
        roots.insert(
            b.name.clone(),
            ctx.console.inner.roots.roots(&ctx.s, &m.name, b).await,
        );
    }
    let elsewhere = ctx.s.manager.mode() == meshplane_core::manager::Mode::FederatedZone;
    let now = ctx.now;
    let v = fleet.with_rows(|rows| {
        let mine: Vec<&DpRow> = rows.filter(|r| r.mesh == m.name).collect();
        mesh_view(&m, &mine, &roots, elsewhere, now)
    });
    ctx.page(
        &format!("Mesh {name}"),
        Nav::Meshes,
        render_mesh(&v, ctx.now),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::model::{
        MtlsInsight, Resource,
        mesh_validation::{BackendValidation, ValidationIssue},
    };

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    fn spec(v: serde_json::Value) -> MeshSpec {
        match Resource::from_universal(&v).expect("mesh").spec {
            Spec::Mesh(m) => m,
            _ => unreachable!(),
        }
    }

    fn two_backends() -> MeshSpec {
        spec(
            serde_json::json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "vault-1", "backends": [
                {"name": "vault-1", "type": "vault", "conf": {"fromCp": {
                    "address": "https://ops:hunter2@vault.example:8200", "pki": "kmesh-pki-default", "role": "dataplane-proxies",
                    "tls": {"caCert": {"inlineString": "-----BEGIN CERTIFICATE-----\nsecret-looking\n-----END CERTIFICATE-----"}},
                    "auth": {"token": {"inlineString": "hvs.THE-TOKEN-ITSELF"}}}}},
                {"name": "ca-2", "type": "provided", "conf": {"cert": {"secret": "ca-2-cert"}, "key": {"file": "/etc/meshplane/ca-2.key"}}}
            ]}}),
        )
    }

    #[test]
    fn settings_say_where_credentials_are_never_what_they_are() {
        let m = two_backends();
        let vault = settings(&m.backends()[0]);
        let text = format!("{vault:?}");
        assert!(text.contains("https://vault.example:8200"), "{text}");
        assert!(text.contains("kmesh-pki-default") && text.contains("dataplane-proxies"));
        assert!(
            text.contains("token from inline in the Mesh (not shown)"),
            "{text}"
        );
        for hidden in ["hunter2", "ops:", "THE-TOKEN-ITSELF", "secret-looking"] {
            assert!(!text.contains(hidden), "{hidden} shown: {text}");
        }
        let provided = format!("{:?}", settings(&m.backends()[1]));
        assert!(
            provided.contains("Secret \\\"ca-2-cert\\\"")
                && provided.contains("file /etc/meshplane/ca-2.key"),
            "{provided}"
        );
    }

    #[test]
    fn a_mesh_page_joins_validation_issuance_and_roots() {
        let m = MeshInfo {
            name: "default".into(),
            spec: two_backends(),
            modified: None,
            validation: Some(MeshValidationSpec {
                backends: vec![
                    BackendValidation {
                        name: "vault-1".into(),
                        backend_type: "vault".into(),
                        time: at(-600),
                        outcome: ValidationOutcome::Ok,
                        stored: true,
                        warnings: vec![],
                        errors: vec![],
                    },
                    BackendValidation {
                        name: "ca-2".into(),
                        backend_type: "provided".into(),
                        time: at(-60),
                        outcome: ValidationOutcome::Failed,
                        stored: false,
                        warnings: vec![],
                        errors: vec![ValidationIssue {
                            field: "mtls.backends[1].conf.cert".into(),
                            reason: "could not load data: secret \"ca-2-cert\" not found".into(),
                        }],
                    },
                ],
            }),
        };
        let rows: Vec<DpRow> = (0..3)
            .map(|i| DpRow {
                mesh: "default".into(),
                name: format!("dp-{i}"),
                mtls: Some(MtlsInsight {
                    issued_backend: Some("vault-1".into()),
                    certificate_expiration_time: Some(at(3600 * (i + 1))),
                    last_certificate_regeneration: Some(at(-60)),
                    last_error: (i == 2)
                        .then(|| "Vault at https://vault.example:8200 is sealed".into()),
                    last_error_time: (i == 2).then(|| at(-5)),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        let refs: Vec<&DpRow> = rows.iter().collect();
        let roots: BTreeMap<String, Roots> = [
            (
                "vault-1".to_string(),
                Ok(vec![CertificateSummary {
                    subject: "CN=Root".into(),
                    not_after: at(86_400),
                    ..Default::default()
                }]),
            ),
            (
                "ca-2".to_string(),
                Err("secret \"ca-2-cert\" not found".into()),
            ),
        ]
        .into();
        let v = mesh_view(&m, &refs, &roots, false, at(0));
        assert_eq!(v.dataplanes, 3);
        assert!(v.backends[0].enabled && !v.backends[1].enabled);
        assert_eq!(v.backends[0].dataplanes, 3);
        assert_eq!(v.timeline.total, 3);
        assert_eq!(v.issues.len(), 2, "{:?}", v.issues);
        assert!(v.issues.iter().any(|i| {
            i.backend == "vault-1"
                && i.what
                    .starts_with("1 dataplane could not get a certificate")
                && i.fix.as_deref().is_some_and(|f| f.contains("unseal"))
        }));
        assert!(v.issues.iter().any(|i| {
            i.backend == "ca-2"
                && i.what.contains("the stored configuration is unchanged")
                && i.fix
                    .as_deref()
                    .is_some_and(|f| f.contains("create the Secret"))
        }));
        let html = render_mesh(&v, at(0)).into_string();
        for want in [
            "CN=Root",
            "The roots could not be read",
            "validated",
            "validation failed",
            "<svg",
        ] {
            assert!(html.contains(want), "{want}");
        }
        let lines = lines(std::slice::from_ref(&m), &refs, at(0));
        assert_eq!((lines[0].failing, lines[0].expiring), (2, 3));
        // In a federated zone, validation is global's: the page says so instead of a badge.
        let zone = render_mesh(&mesh_view(&m, &refs, &roots, true, at(0)), at(0)).into_string();
        assert!(zone.contains("validated by global"));
    }
}
