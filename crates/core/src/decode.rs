//! Decoding of untrusted JSON values into typed resources, collecting every violation with its field path.
//!
//! serde's derive stops at the first error and loses the path; users of `kumactl apply` expect the whole
//! list at once, so resources are decoded by hand through these helpers.

use serde_json::{Map, Value};

use crate::validation::{FieldPath, ValidationError};

/// Collects violations while a value is decoded.
#[derive(Default)]
pub struct Decoder {
    errors: ValidationError,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn violation(&mut self, path: &FieldPath, reason: impl Into<String>) {
        self.errors.add(path, reason);
    }

    /// A violation in Kuma's words (`reason`) with what Meshplane says beyond them (`detail`).
    pub fn violation_detailed(
        &mut self,
        path: &FieldPath,
        reason: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.errors.add_detailed(path, reason, detail);
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn finish(self) -> Result<(), ValidationError> {
        self.errors.into_result()
    }

    /// Returns `value` when no violation was recorded, every violation otherwise.
    pub fn finish_with<T>(self, value: Option<T>) -> Result<T, ValidationError> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => {
                let mut errors = self.errors;
                if errors.is_empty() {
                    // A decoder returned None without saying why: a bug, but never a silent accept.
                    errors.add("", "BUG: resource rejected without a reason");
                }
                Err(errors)
            }
        }
    }

    /// Opens `v` as an object, recording a violation when it is something else.
    pub fn object<'v>(&mut self, v: &'v Value, path: &FieldPath) -> Option<Obj<'v>> {
        match v {
            Value::Object(map) => Some(Obj {
                map,
                path: path.clone(),
                taken: Vec::new(),
            }),
            other => {
                self.violation(path, format!("must be an object, not {}", kind_of(other)));
                None
            }
        }
    }

    pub fn string(&mut self, v: &Value, path: &FieldPath) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.violation(path, format!("must be a string, not {}", kind_of(other)));
                None
            }
        }
    }

    pub fn bool(&mut self, v: &Value, path: &FieldPath) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                self.violation(path, format!("must be a boolean, not {}", kind_of(other)));
                None
            }
        }
    }

    /// Any JSON number, kept as written so that `80` and `80.0` read back as they were applied.
    pub fn number(&mut self, v: &Value, path: &FieldPath) -> Option<serde_json::Number> {
        match v {
            Value::Number(n) => Some(n.clone()),
            other => {
                self.violation(path, format!("must be a number, not {}", kind_of(other)));
                None
            }
        }
    }

    pub fn u32(&mut self, v: &Value, path: &FieldPath) -> Option<u32> {
        match v.as_u64().map(u32::try_from) {
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                self.violation(path, "must be at most 4294967295");
                None
            }
            None => {
                self.violation(
                    path,
                    format!("must be a non-negative integer, not {}", kind_of(v)),
                );
                None
            }
        }
    }

    pub fn array<'v>(&mut self, v: &'v Value, path: &FieldPath) -> Option<&'v Vec<Value>> {
        match v {
            Value::Array(a) => Some(a),
            other => {
                self.violation(path, format!("must be a list, not {}", kind_of(other)));
                None
            }
        }
    }

    /// A list whose elements are decoded by `f`; `None` when it is not a list or any element failed.
    pub fn list<'v, T>(
        &mut self,
        v: &'v Value,
        path: &FieldPath,
        mut f: impl FnMut(&mut Decoder, &'v Value, &FieldPath) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = self.array(v, path)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match f(self, item, &path.index(i)) {
                Some(t) => out.push(t),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A map of strings to strings (labels, tags).
    pub fn string_map(
        &mut self,
        v: &Value,
        path: &FieldPath,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        self.map_of_strings(v, path, false)
    }

    /// A tag map whose null values read as empty strings, as Kuma's decoder reads them; only for
    /// maps whose empty values Kuma's rules then refuse (`tag value must be non-empty`), so a
    /// null never reads back as `""`.
    pub fn tag_map(
        &mut self,
        v: &Value,
        path: &FieldPath,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        self.map_of_strings(v, path, true)
    }

    fn map_of_strings(
        &mut self,
        v: &Value,
        path: &FieldPath,
        null_is_empty: bool,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let Value::Object(map) = v else {
            self.violation(
                path,
                format!("must be a map of strings, not {}", kind_of(v)),
            );
            return None;
        };
        let mut out = std::collections::BTreeMap::new();
        let mut ok = true;
        for (k, val) in map {
            match val {
                Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                Value::Null if null_is_empty => {
                    out.insert(k.clone(), String::new());
                }
                other => {
                    ok = false;
                    self.violation(
                        &path.key(k),
                        format!("must be a string, not {}", kind_of(other)),
                    );
                }
            }
        }
        ok.then_some(out)
    }
}

/// An object being decoded: every key read is remembered, and the rest are reported as unknown.
pub struct Obj<'v> {
    map: &'v Map<String, Value>,
    path: FieldPath,
    taken: Vec<&'v str>,
}

impl<'v> Obj<'v> {
    pub fn path(&self) -> &FieldPath {
        &self.path
    }

    /// The value at `key` and its path, or `None` when absent or null. Marks the key as known.
    pub fn field(&mut self, key: &str) -> Option<(&'v Value, FieldPath)> {
        let (k, v) = self.map.get_key_value(key)?;
        self.taken.push(k.as_str());
        if v.is_null() {
            None
        } else {
            Some((v, self.path.field(key)))
        }
    }

    /// Marks a key as known without reading it (fields the server sets, such as `creationTime`).
    pub fn ignore(&mut self, key: &str) {
        if let Some((k, _)) = self.map.get_key_value(key) {
            self.taken.push(k.as_str());
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    pub fn opt_string(&mut self, d: &mut Decoder, key: &str) -> Option<String> {
        let (v, p) = self.field(key)?;
        d.string(v, &p)
    }

    pub fn opt_bool(&mut self, d: &mut Decoder, key: &str) -> Option<bool> {
        let (v, p) = self.field(key)?;
        d.bool(v, &p)
    }

    pub fn opt_u32(&mut self, d: &mut Decoder, key: &str) -> Option<u32> {
        let (v, p) = self.field(key)?;
        d.u32(v, &p)
    }

    /// A required string: absent or empty gives Kuma's "has to be defined".
    pub fn req_string(&mut self, d: &mut Decoder, key: &str) -> Option<String> {
        self.req_string_or(d, key, "has to be defined")
    }

    /// A required string whose absence Kuma words as `reason` (its validators differ by section).
    pub fn req_string_or(&mut self, d: &mut Decoder, key: &str, reason: &str) -> Option<String> {
        match self.field(key) {
            Some((v, p)) => {
                let s = d.string(v, &p)?;
                if s.is_empty() {
                    d.violation(&p, reason);
                    None
                } else {
                    Some(s)
                }
            }
            None => {
                d.violation(&self.path.field(key), reason);
                None
            }
        }
    }

    /// An optional nested value decoded by `f`.
    pub fn opt_with<T>(
        &mut self,
        d: &mut Decoder,
        key: &str,
        f: impl FnOnce(&mut Decoder, &'v Value, &FieldPath) -> Option<T>,
    ) -> Option<T> {
        let (v, p) = self.field(key)?;
        f(d, v, &p)
    }

    /// A required nested value decoded by `f`; absent gives "has to be defined".
    pub fn req_with<T>(
        &mut self,
        d: &mut Decoder,
        key: &str,
        f: impl FnOnce(&mut Decoder, &'v Value, &FieldPath) -> Option<T>,
    ) -> Option<T> {
        match self.field(key) {
            Some((v, p)) => f(d, v, &p),
            None => {
                d.violation(&self.path.field(key), "has to be defined");
                None
            }
        }
    }

    /// A list whose elements are decoded by `f`; `None` when absent or when any element failed.
    pub fn opt_list<T>(
        &mut self,
        d: &mut Decoder,
        key: &str,
        f: impl FnMut(&mut Decoder, &'v Value, &FieldPath) -> Option<T>,
    ) -> Option<Vec<T>> {
        let (v, p) = self.field(key)?;
        d.list(v, &p, f)
    }

    /// Keys not read so far, with their values, in document order (for opaque pass-through fields).
    pub fn take_rest(&mut self, allowed: &[&str]) -> Map<String, Value> {
        self.take_where(|k| allowed.contains(&k))
    }

    /// Every key not read so far, with its value: for objects whose unknown keys Kuma keeps and
    /// never reads (a logging or tracing backend's `conf`), so they read back as applied.
    pub fn take_unread(&mut self) -> Map<String, Value> {
        self.take_where(|_| true)
    }

    fn take_where(&mut self, keep: impl Fn(&str) -> bool) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in self.map {
            if keep(k) && !self.taken.contains(&k.as_str()) {
                self.taken.push(k.as_str());
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }

    /// Reports every key that was never read as an unknown field.
    pub fn finish(self, d: &mut Decoder) {
        for k in self.map.keys() {
            if !self.taken.contains(&k.as_str()) {
                d.violation(&self.path.field(k), "unknown field");
            }
        }
    }
}

/// A short name for a JSON value's kind, for messages.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_missing_and_mistyped_fields_are_all_reported() {
        let v = json!({"a": 1, "b": "x", "bogus": true});
        let mut d = Decoder::new();
        let mut o = d
            .object(&v, &FieldPath::root().field("spec"))
            .expect("object");
        assert_eq!(o.opt_string(&mut d, "a"), None);
        assert_eq!(o.req_string(&mut d, "b").as_deref(), Some("x"));
        assert_eq!(o.req_string(&mut d, "c"), None);
        o.finish(&mut d);
        let errs = d.finish().expect_err("three violations");
        let fields: Vec<_> = errs
            .violations
            .iter()
            .map(|v| (v.field.as_str(), v.reason.as_str()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("spec.a", "must be a string, not a number"),
                ("spec.c", "has to be defined"),
                ("spec.bogus", "unknown field"),
            ]
        );
    }

    #[test]
    fn unread_keys_are_kept_and_numbers_as_written() {
        let v = json!({"path": "", "n": 80, "f": 80.0, "kept": {"a": [1]}});
        let mut d = Decoder::new();
        let mut o = d
            .object(&v, &FieldPath::root().field("conf"))
            .expect("object");
        assert_eq!(o.req_string_or(&mut d, "path", "cannot be empty"), None);
        let n = o
            .opt_with(&mut d, "n", |d, v, p| d.number(v, p))
            .expect("n");
        let f = o
            .opt_with(&mut d, "f", |d, v, p| d.number(v, p))
            .expect("f");
        assert_eq!((n.to_string(), f.to_string()), ("80".into(), "80.0".into()));
        assert_eq!(Value::Object(o.take_unread()), json!({"kept": {"a": [1]}}));
        o.finish(&mut d);
        let errs = d.finish().expect_err("the empty path");
        assert_eq!(errs.to_string(), "conf.path: cannot be empty");
    }

    #[test]
    fn null_counts_as_absent() {
        let v = json!({"a": null});
        let mut d = Decoder::new();
        let mut o = d.object(&v, &FieldPath::root()).expect("object");
        assert_eq!(o.opt_string(&mut d, "a"), None);
        o.finish(&mut d);
        assert!(d.finish().is_ok());
    }
}
