//! Kuma's DataSource: where a credential or certificate comes from (`secret`, `file`, `inline`, `inlineString`).

use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use crate::{decode::Decoder, validation::FieldPath};

/// Exactly one source of bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DataSource {
    /// A mesh-scoped Secret of the mesh being configured.
    Secret(String),
    /// A file on the control plane's host.
    File(String),
    /// Base64 bytes, kept as written so the resource round-trips unchanged.
    Inline(String),
    /// Raw text.
    InlineString(String),
}

const SOURCES: [&str; 4] = ["secret", "file", "inline", "inlineString"];

/// Kuma's reason when no source is set; it leaves out `inlineString`, which it accepts.
const CHOOSE: &str = "data source has to be chosen. Available sources: secret, file, inline";

impl DataSource {
    pub fn decode(d: &mut Decoder, v: &Value, path: &FieldPath) -> Option<Self> {
        let mut o = d.object(v, path)?;
        let set: Vec<&str> = SOURCES.iter().copied().filter(|k| o.contains(k)).collect();
        let out = match set.as_slice() {
            [] => {
                d.violation_detailed(path, CHOOSE, "inlineString (text) is accepted too");
                None
            }
            [one] => {
                let one = *one;
                let s = o.opt_string(d, one);
                match s {
                    Some(s) if s.is_empty() => {
                        d.violation(&path.field(one), "cannot be empty");
                        None
                    }
                    Some(s) => match one {
                        "secret" => Some(Self::Secret(s)),
                        "file" => Some(Self::File(s)),
                        "inline" => {
                            if base64::engine::general_purpose::STANDARD
                                .decode(s.trim())
                                .is_err()
                            {
                                d.violation(&path.field(one), "has to be valid base64");
                                None
                            } else {
                                Some(Self::Inline(s))
                            }
                        }
                        _ => Some(Self::InlineString(s)),
                    },
                    None => None,
                }
            }
            many => {
                for k in many {
                    o.ignore(k);
                }
                d.violation(
                    path,
                    format!(
                        "only one data source can be set, found: {}",
                        many.join(", ")
                    ),
                );
                None
            }
        };
        o.finish(d);
        out
    }

    /// The Secret this source names, if any (to protect it from deletion).
    pub fn secret_name(&self) -> Option<&str> {
        match self {
            Self::Secret(s) => Some(s),
            _ => None,
        }
    }

    /// Which variant this is, for messages that must not carry the value.
    pub fn describe(&self) -> String {
        match self {
            Self::Secret(s) => format!("secret {s:?}"),
            Self::File(p) => format!("file {p:?}"),
            Self::Inline(_) => "inline value".into(),
            Self::InlineString(_) => "inlineString value".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(v: Value) -> Result<DataSource, Vec<(String, String)>> {
        let mut d = Decoder::new();
        let r = DataSource::decode(&mut d, &v, &FieldPath::from("conf.cert"));
        d.finish_with(r).map_err(|e| {
            e.violations
                .into_iter()
                .map(|v| (v.field, v.reason))
                .collect()
        })
    }

    #[test]
    fn each_variant() {
        assert_eq!(
            decode(json!({"secret": "s"})),
            Ok(DataSource::Secret("s".into()))
        );
        assert_eq!(
            decode(json!({"file": "/f"})),
            Ok(DataSource::File("/f".into()))
        );
        assert_eq!(
            decode(json!({"inline": "aGk="})),
            Ok(DataSource::Inline("aGk=".into()))
        );
        assert_eq!(
            decode(json!({"inlineString": "hi"})),
            Ok(DataSource::InlineString("hi".into()))
        );
        assert_eq!(
            serde_json::to_value(DataSource::InlineString("x".into())).ok(),
            Some(json!({"inlineString": "x"}))
        );
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(
            decode(json!({})),
            Err(vec![("conf.cert".into(), CHOOSE.into())])
        );
        assert_eq!(
            decode(json!({"secret": ""})),
            Err(vec![("conf.cert.secret".into(), "cannot be empty".into())])
        );
        assert_eq!(
            decode(json!({"inline": "!!"})),
            Err(vec![(
                "conf.cert.inline".into(),
                "has to be valid base64".into()
            )])
        );
        assert_eq!(
            decode(json!({"secret": "a", "file": "b"})),
            Err(vec![(
                "conf.cert".into(),
                "only one data source can be set, found: secret, file".into()
            )])
        );
        assert_eq!(
            decode(json!({"secret": "a", "bogus": 1})),
            Err(vec![("conf.cert.bogus".into(), "unknown field".into())])
        );
    }
}
