//! Validation results in Kuma's shape: a list of `{field, reason}` violations, all collected at once.

use std::fmt;

/// A dotted field path as Kuma prints it: `mtls.backends[0].conf.cert`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// The path of the resource itself (prints as an empty string).
    pub fn root() -> Self {
        Self(String::new())
    }

    /// The path of a named child field.
    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// The path of an element of a list.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// The path of a map entry whose key is not a plain identifier (`tags["kuma.io/service"]`).
    pub fn key(&self, k: &str) -> Self {
        Self(format!("{}[{k:?}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for FieldPath {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// One reason a resource is not valid, at one field. `reason` is Kuma's wording where Kuma has
/// one for the same violation; what Meshplane says beyond it goes in `detail`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub field: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Every violation found in one resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub violations: Vec<Violation>,
}

/// (field, reason) pairs, in order, as one error (what a backend's loader reports).
impl<F: fmt::Display, R: Into<String>> FromIterator<(F, R)> for ValidationError {
    fn from_iter<I: IntoIterator<Item = (F, R)>>(pairs: I) -> Self {
        let mut e = Self::new();
        for (field, reason) in pairs {
            e.add(field, reason);
        }
        e
    }
}

impl ValidationError {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(field: impl fmt::Display, reason: impl Into<String>) -> Self {
        let mut e = Self::new();
        e.add(field, reason);
        e
    }

    pub fn add(&mut self, field: impl fmt::Display, reason: impl Into<String>) {
        self.violations.push(Violation {
            field: field.to_string(),
            reason: reason.into(),
            detail: None,
        });
    }

    /// A violation whose `reason` is Kuma's and whose `detail` says more.
    pub fn add_detailed(
        &mut self,
        field: impl fmt::Display,
        reason: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.violations.push(Violation {
            field: field.to_string(),
            reason: reason.into(),
            detail: Some(detail.into()),
        });
    }

    pub fn extend(&mut self, other: ValidationError) {
        self.violations.extend(other.violations);
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// `Ok(())` when nothing was found, the whole list otherwise.
    pub fn into_result(self) -> Result<(), ValidationError> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for v in &self.violations {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            if v.field.is_empty() {
                write!(f, "{}", v.reason)?;
            } else {
                write!(f, "{}: {}", v.field, v.reason)?;
            }
            if let Some(d) = &v.detail {
                write!(f, " ({d})")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_as_kuma_does() {
        let p = FieldPath::root()
            .field("mtls")
            .field("backends")
            .index(0)
            .field("conf");
        assert_eq!(p.as_str(), "mtls.backends[0].conf");
        assert_eq!(
            FieldPath::root()
                .field("tags")
                .key("kuma.io/service")
                .as_str(),
            "tags[\"kuma.io/service\"]"
        );
    }

    #[test]
    fn display_joins_every_violation() {
        let mut e = ValidationError::new();
        e.add("name", "cannot be longer than 63 characters");
        e.add(
            "mtls.enabledBackend",
            "has to be set to one of the backends in the mesh",
        );
        assert_eq!(
            e.to_string(),
            "name: cannot be longer than 63 characters; mtls.enabledBackend: has to be set to one of the backends in the mesh"
        );
        let mut e = ValidationError::new();
        e.add_detailed("a", "has to be a valid format", "for example 24h");
        assert_eq!(
            e.to_string(),
            "a: has to be a valid format (for example 24h)"
        );
        assert!(e.into_result().is_err());
        assert!(ValidationError::new().into_result().is_ok());
    }
}
