//! Rendering: JSON, YAML, and kumactl-like tables with an AGE column.

use chrono::{DateTime, Utc};
use meshplane_core::model::ResourceKind;
use serde_json::Value;

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn print_yaml(v: &Value) {
    print!("{}", meshplane_core::format::to_yaml(v));
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// "3m", "2h", "5d" since the resource was created.
pub fn age(v: &Value) -> String {
    let Ok(t) = s(v, "creationTime").parse::<DateTime<Utc>>() else {
        return "-".into();
    };
    let secs = (Utc::now() - t).num_seconds().max(0);
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

fn mtls(v: &Value) -> String {
    let Some(m) = v.get("mtls") else {
        return "off".into();
    };
    let enabled = m
        .get("enabledBackend")
        .and_then(Value::as_str)
        .unwrap_or("");
    if enabled.is_empty() {
        return "off".into();
    }
    let t = m
        .get("backends")
        .and_then(Value::as_array)
        .and_then(|bs| bs.iter().find(|b| s(b, "name") == enabled))
        .map(|b| s(b, "type").to_string())
        .unwrap_or_default();
    format!("{t}/{enabled}")
}

fn tags(v: &Value) -> String {
    let mut out: Vec<String> = Vec::new();
    for inbound in v
        .pointer("/networking/inbound")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = inbound.get("tags").and_then(Value::as_object) {
            for (k, val) in t {
                let pair = format!("{k}={}", val.as_str().unwrap_or(""));
                if !out.contains(&pair) {
                    out.push(pair);
                }
            }
        }
    }
    out.join(" ")
}

pub fn print_table(kind: ResourceKind, items: &[Value]) {
    let (header, rows): (Vec<&str>, Vec<Vec<String>>) = match kind {
        ResourceKind::Mesh => (
            vec!["NAME", "mTLS", "BACKENDS", "AGE"],
            items
                .iter()
                .map(|v| {
                    let n = v
                        .pointer("/mtls/backends")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    vec![s(v, "name").into(), mtls(v), n.to_string(), age(v)]
                })
                .collect(),
        ),
        ResourceKind::Secret => (
            vec!["MESH", "NAME", "AGE"],
            items
                .iter()
                .map(|v| vec![s(v, "mesh").into(), s(v, "name").into(), age(v)])
                .collect(),
        ),
        ResourceKind::Zone => (
            vec!["NAME", "ENABLED", "AGE"],
            items
                .iter()
                .map(|v| {
                    let enabled = v.get("enabled").and_then(Value::as_bool).unwrap_or(true);
                    vec![s(v, "name").into(), enabled.to_string(), age(v)]
                })
                .collect(),
        ),
        ResourceKind::Dataplane => (
            vec!["MESH", "NAME", "TAGS", "AGE"],
            items
                .iter()
                .map(|v| vec![s(v, "mesh").into(), s(v, "name").into(), tags(v), age(v)])
                .collect(),
        ),
        _ => (
            vec!["NAME", "AGE"],
            items
                .iter()
                .map(|v| vec![s(v, "name").into(), age(v)])
                .collect(),
        ),
    };
    print_rows(&header, &rows);
}

pub fn print_rows(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", parts.join("   ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}
