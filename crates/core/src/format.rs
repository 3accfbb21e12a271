//! Reading resources from JSON and YAML (one or many documents) and writing them back, with limits
//! that keep hostile input (alias bombs, deep nesting, huge documents) from costing more than a refusal.

use serde_json::Value;

/// Why a document could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FormatError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("the document is empty")]
    Empty,
    #[error("too many documents: at most {0}")]
    TooManyDocuments(usize),
}

/// Deepest nesting accepted; Kuma resources need fewer than 12 levels.
pub const MAX_DEPTH: usize = 64;
/// Most documents in one multi-document YAML stream.
pub const MAX_DOCUMENTS: usize = 1000;

fn yaml_options() -> serde_saphyr::options::Options {
    let mut budget = serde_saphyr::budget::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_nodes = 1_000_000;
    budget.max_events = 2_000_000;
    budget.max_documents = MAX_DOCUMENTS;
    budget.max_total_scalar_bytes = 32 * 1024 * 1024;
    budget.max_recorded_anchor_events = 100_000;
    budget.max_recorded_anchor_bytes = 4 * 1024 * 1024;
    let mut o = serde_saphyr::options::Options::default();
    o.budget = Some(budget);
    o
}

/// Parses one JSON document.
pub fn parse_json(bytes: &[u8]) -> Result<Value, FormatError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(FormatError::Empty);
    }
    // serde_json refuses nesting deeper than 128 by itself. Opaque fields (a Mesh's `logging`,
    // `routing`, …) are kept as written, so hold JSON to the YAML budget too: otherwise a resource
    // accepted as JSON could not be read back from the YAML `meshctl get -o yaml` prints.
    let v: Value = serde_json::from_slice(bytes).map_err(|e| FormatError::Json(e.to_string()))?;
    if depth(&v) > MAX_DEPTH {
        return Err(FormatError::Json(format!(
            "nesting deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(v)
}

/// Nesting of lists and maps: 0 for a scalar, 1 for a flat list or map. At most serde_json's own
/// limit (128) deep, so the recursion is bounded.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Parses exactly one YAML document.
pub fn parse_yaml(text: &str) -> Result<Value, FormatError> {
    let mut docs = parse_yaml_documents(text)?;
    match docs.len() {
        0 => Err(FormatError::Empty),
        1 => Ok(docs.remove(0)),
        _ => Err(FormatError::Yaml(
            "expected one document, found several".into(),
        )),
    }
}

/// Parses a stream of YAML documents separated by `---`, skipping empty ones.
pub fn parse_yaml_documents(text: &str) -> Result<Vec<Value>, FormatError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, yaml_options())
        .map_err(|e| FormatError::Yaml(first_line(&e.to_string())))?;
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    if docs.len() > MAX_DOCUMENTS {
        return Err(FormatError::TooManyDocuments(MAX_DOCUMENTS));
    }
    Ok(docs)
}

/// Renders a value as YAML.
pub fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_else(|e| format!("# could not render YAML: {e}\n"))
}

fn first_line(s: &str) -> String {
    // saphyr's messages carry a source snippet after the first line; keep the error itself.
    s.lines().next().unwrap_or(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_multi_document() {
        let docs = parse_yaml_documents("type: Mesh\nname: a\n---\n---\ntype: Mesh\nname: b\n")
            .expect("valid");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["name"], "b");
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut y = String::from("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
        let mut prev = 'a';
        for c in 'b'..='k' {
            y.push_str(&format!("{c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
            prev = c;
        }
        assert!(parse_yaml(&y).is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let y = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_yaml(&y).is_err());
        let j = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_json(j.as_bytes()).is_err());
    }

    /// Regression (tests/bad_input.rs, reproduced by the `resource` fuzz target's round trip): a
    /// Mesh nested 100 levels deep in an opaque field was accepted as JSON, but the YAML printed
    /// for it (`meshctl get -o yaml`) could not be parsed back.
    #[test]
    fn json_and_yaml_accept_the_same_depth() {
        let nested = |n: usize, maps: bool| {
            let mut v = Value::from(1);
            for _ in 0..n {
                v = if maps {
                    serde_json::json!({ "k": v })
                } else {
                    Value::Array(vec![v])
                };
            }
            serde_json::json!({"type": "Mesh", "name": "a", "logging": v})
        };
        for maps in [false, true] {
            let mut accepted = 0;
            for n in 1..=130 {
                let doc = nested(n, maps);
                let json = parse_json(doc.to_string().as_bytes());
                let yaml = parse_yaml(&to_yaml(&doc));
                assert_eq!(json.is_ok(), yaml.is_ok(), "depth {n}: {json:?} / {yaml:?}");
                if let Ok(v) = json {
                    assert_eq!(v, doc);
                    accepted = n;
                }
            }
            assert!(accepted >= 12, "Kuma resources need about 12 levels");
            assert!(accepted < MAX_DEPTH, "deeper documents are refused");
        }
        let err = parse_json(nested(100, false).to_string().as_bytes()).expect_err("too deep");
        assert!(
            err.to_string().contains("nesting deeper than 64 levels"),
            "{err}"
        );
    }

    #[test]
    fn empty_documents() {
        assert!(matches!(parse_json(b"  "), Err(FormatError::Empty)));
        assert!(matches!(parse_yaml(""), Err(FormatError::Empty)));
    }
}
