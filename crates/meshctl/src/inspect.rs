//! `meshctl inspect zones | dataplanes`: resources joined with their insights.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use meshplane_core::model::{ZoneInsightSpec, zone::ZONE_INSIGHT_MAX_AGE};
use serde_json::Value;

use crate::{
    args::OutputFormat,
    client::{CliError, Client},
    output,
};

#[derive(Debug, Subcommand)]
pub enum Inspect {
    /// Zones with their sync status (global only).
    Zones,
    /// Dataplanes with their certificate status.
    Dataplanes,
}

fn ago(t: Option<&str>) -> String {
    let Some(t) = t.and_then(|t| t.parse::<DateTime<Utc>>().ok()) else {
        return "never".into();
    };
    let secs = (Utc::now() - t).num_seconds();
    if secs < 0 {
        let s = -secs;
        return match s {
            0..=59 => format!("in {s}s"),
            60..=3599 => format!("in {}m", s / 60),
            3600..=86399 => format!("in {}h", s / 3600),
            _ => format!("in {}d", s / 86400),
        };
    }
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// Core's liveness rule (the one the global applies before deleting a Zone) on an overview's
/// `zoneInsight`; an insight this meshctl cannot read counts as offline.
fn online(insight: &Value, now: DateTime<Utc>) -> bool {
    serde_json::from_value::<ZoneInsightSpec>(insight.clone())
        .is_ok_and(|z| z.is_online_at(now, ZONE_INSIGHT_MAX_AGE))
}

pub async fn run(
    client: &Client,
    what: Inspect,
    mesh: &str,
    out: OutputFormat,
) -> Result<(), CliError> {
    let (path, zones) = match what {
        Inspect::Zones => ("/zones/_overview".to_string(), true),
        Inspect::Dataplanes => (format!("/meshes/{mesh}/dataplanes/_overview"), false),
    };
    let items = client.list(&path).await?;
    match out {
        OutputFormat::Json => output::print_json(&Value::Array(items)),
        OutputFormat::Yaml => output::print_yaml(&Value::Array(items)),
        OutputFormat::Table if zones => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|z| {
                    let ins = z.get("zoneInsight").cloned().unwrap_or(Value::Null);
                    let last = ins
                        .get("subscriptions")
                        .and_then(Value::as_array)
                        .and_then(|s| s.last())
                        .cloned()
                        .unwrap_or(Value::Null);
                    let total = last
                        .pointer("/status/total")
                        .cloned()
                        .unwrap_or(Value::Null);
                    let n = |k: &str| {
                        total
                            .get(k)
                            .and_then(Value::as_u64)
                            .unwrap_or(0)
                            .to_string()
                    };
                    vec![
                        z.get("name").and_then(Value::as_str).unwrap_or("").into(),
                        if online(&ins, Utc::now()) {
                            "Online".into()
                        } else {
                            "Offline".into()
                        },
                        ago(last.get("connectTime").and_then(Value::as_str)),
                        n("responsesSent"),
                        n("responsesAcknowledged"),
                        n("responsesRejected"),
                        last.pointer("/version/meshplane")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .into(),
                    ]
                })
                .collect();
            output::print_rows(
                &[
                    "NAME",
                    "STATUS",
                    "LAST CONNECTED AGO",
                    "SENT",
                    "ACKED",
                    "REJECTED",
                    "ZONE-CP-VERSION",
                ],
                &rows,
            );
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|d| {
                    let labels = d.get("labels").cloned().unwrap_or(Value::Null);
                    let name = labels
                        .get("kuma.io/display-name")
                        .and_then(Value::as_str)
                        .or_else(|| d.get("name").and_then(Value::as_str))
                        .unwrap_or("");
                    let zone = labels
                        .get("kuma.io/zone")
                        .and_then(Value::as_str)
                        .unwrap_or("-");
                    // A gateway's service is its gateway's tag.
                    let services: Vec<&str> = d
                        .pointer("/dataplane/networking/inbound")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .chain(d.pointer("/dataplane/networking/gateway"))
                        .filter_map(|i| i.pointer("/tags/kuma.io~1service").and_then(Value::as_str))
                        .collect();
                    let mtls = d
                        .pointer("/dataplaneInsight/mTLS")
                        .cloned()
                        .unwrap_or(Value::Null);
                    let s = |k: &str| mtls.get(k).and_then(Value::as_str);
                    vec![
                        d.get("mesh").and_then(Value::as_str).unwrap_or("").into(),
                        name.into(),
                        zone.into(),
                        services.join(","),
                        s("issuedBackend").unwrap_or("-").into(),
                        s("certificateExpirationTime").map_or("-".into(), |t| ago(Some(t))),
                        s("lastCertificateRegeneration").map_or("-".into(), |t| ago(Some(t))),
                        mtls.get("certificateRegenerations")
                            .and_then(Value::as_u64)
                            .unwrap_or(0)
                            .to_string(),
                        s("lastError").unwrap_or("-").chars().take(60).collect(),
                    ]
                })
                .collect();
            output::print_rows(
                &[
                    "MESH",
                    "NAME",
                    "ZONE",
                    "SERVICE",
                    "BACKEND",
                    "CERT EXPIRATION",
                    "CERT REGENERATED AGO",
                    "CERT REGENERATIONS",
                    "LAST ERROR",
                ],
                &rows,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use serde_json::json;

    #[test]
    fn zone_status_follows_the_core_rule() {
        let now = Utc::now();
        let ins = |seen: DateTime<Utc>| {
            json!({"subscriptions": [{
                "id": "s", "globalInstanceId": "global-1", "zoneInstanceId": "east-1",
                "connectTime": (now - TimeDelta::hours(1)).to_rfc3339(),
                "lastSeenTime": seen.to_rfc3339(),
                "status": {"total": {"responsesSent": 3}, "stat": {}},
                "version": {"meshplane": "0.1.0"}
            }]})
        };
        assert!(online(&ins(now - TimeDelta::seconds(5)), now));
        let stale = ins(now - TimeDelta::seconds(60));
        assert!(!online(&stale, now));
        let spec: ZoneInsightSpec = serde_json::from_value(stale).expect("an insight");
        assert!(!spec.is_online_at(now, ZONE_INSIGHT_MAX_AGE));
        assert!(!online(&json!({}), now));
        let mut gone = ins(now);
        gone["subscriptions"][0]["disconnectTime"] = json!(now.to_rfc3339());
        assert!(!online(&gone, now));
    }
}
