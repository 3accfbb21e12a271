//! Content versions: a SHA-256 over canonical JSON of labels and spec, so that equal content has
//! equal versions on every replica and after every restart.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Writes `v` with object keys sorted, so the digest does not depend on key order.
fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            out.push(b'{');
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical(&m[k.as_str()], out);
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
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

pub fn version_of(labels: &BTreeMap<String, String>, spec: &Value) -> String {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"l");
    for (k, v) in labels {
        canonical(&Value::String(k.clone()), &mut buf);
        buf.push(b'=');
        canonical(&Value::String(v.clone()), &mut buf);
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
}
