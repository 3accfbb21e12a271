//! Content versions: a SHA-256 over canonical JSON of labels and spec, so that equal content has
//! equal versions on every replica and after every restart.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Writing JSON into a Vec cannot fail: the writer is infallible and every key is a string.
const INFALLIBLE: &str = "JSON into a Vec<u8> cannot fail";

/// Writes `v` with object keys sorted, so the digest does not depend on key order. Keys and
/// scalars are written by serde_json straight into `out`: global computes this for every record of
/// a reconnecting zone, and copying each key into a `Value` first cost an allocation per key.
fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            out.push(b'{');
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect(INFALLIBLE);
                out.push(b':');
                canonical(x, out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(x, out);
            }
            out.push(b']');
        }
        other => serde_json::to_writer(&mut *out, other).expect(INFALLIBLE),
    }
}

pub fn version_of(labels: &BTreeMap<String, String>, spec: &Value) -> String {
    let mut buf = Vec::with_capacity(1024);
    buf.extend_from_slice(b"l");
    for (k, v) in labels {
        serde_json::to_writer(&mut buf, k).expect(INFALLIBLE);
        buf.push(b'=');
        serde_json::to_writer(&mut buf, v).expect(INFALLIBLE);
        buf.push(b';');
    }
    buf.extend_from_slice(b"s");
    canonical(spec, &mut buf);
    hex::encode(Sha256::digest(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_content_does() {
        let l = BTreeMap::new();
        let a = version_of(
            &l,
            &serde_json::from_str::<Value>(r#"{"a":1,"b":{"x":[1,2],"y":"z"}}"#).expect("json"),
        );
        let b = version_of(
            &l,
            &serde_json::from_str::<Value>(r#"{"b":{"y":"z","x":[1,2]},"a":1}"#).expect("json"),
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            version_of(&l, &json!({"a": 2, "b": {"x": [1, 2], "y": "z"}}))
        );
        let labelled = BTreeMap::from([("k".to_string(), "v".to_string())]);
        assert_ne!(
            a,
            version_of(&labelled, &json!({"a": 1, "b": {"x": [1, 2], "y": "z"}}))
        );
    }

    /// The form hashed is part of the protocol (zones and globals of different releases compare
    /// versions): it is what the first implementation wrote, which built a `Value` per key.
    #[test]
    fn the_canonical_form_is_unchanged() {
        fn first(v: &Value, out: &mut String) {
            match v {
                Value::Object(m) => {
                    let mut keys: Vec<&String> = m.keys().collect();
                    keys.sort();
                    let parts: Vec<String> = keys
                        .into_iter()
                        .map(|k| {
                            let mut x = String::new();
                            first(&m[k.as_str()], &mut x);
                            format!("{}:{x}", Value::String(k.clone()))
                        })
                        .collect();
                    out.push_str(&format!("{{{}}}", parts.join(",")));
                }
                Value::Array(a) => {
                    let parts: Vec<String> = a
                        .iter()
                        .map(|x| {
                            let mut s = String::new();
                            first(x, &mut s);
                            s
                        })
                        .collect();
                    out.push_str(&format!("[{}]", parts.join(",")));
                }
                other => out.push_str(&other.to_string()),
            }
        }
        let labels = BTreeMap::from([
            ("kuma.io/zone".to_string(), "east \"1\"".to_string()),
            ("ünïcode\n".to_string(), "\u{1}tab\t".to_string()),
        ]);
        let spec = json!({
            "z": [1, -2, 3.5, 1e300, u64::MAX, null, true, {"b": "x\"y", "a": []}],
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]},
            "é": "\u{7f}\u{2028}",
            "": {}
        });
        let mut expected = String::from("l");
        for (k, v) in &labels {
            expected.push_str(&format!(
                "{}={};",
                Value::String(k.clone()),
                Value::String(v.clone())
            ));
        }
        expected.push('s');
        first(&spec, &mut expected);
        assert_eq!(
            version_of(&labels, &spec),
            hex::encode(Sha256::digest(expected.as_bytes()))
        );
    }
}
