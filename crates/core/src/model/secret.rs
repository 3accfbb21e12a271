//! `Secret` (mesh-scoped) and `GlobalSecret`: base64 `data`, never shown in listings or logs.

use std::fmt;

use base64::Engine;
use serde::{Serialize, Serializer};

use crate::{
    decode::{Decoder, Obj},
    validation::FieldPath,
};

/// The largest secret Meshplane accepts, decoded. Certificates, keys and tokens fit many times over.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// A secret's bytes. `Debug` never prints them.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretData(Vec<u8>);

impl SecretData {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretData(<{} bytes redacted>)", self.0.len())
    }
}

impl Serialize for SecretData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretSpec {
    pub data: SecretData,
}

impl SecretSpec {
    pub(crate) fn decode(d: &mut Decoder, o: &mut Obj<'_>) -> Option<Self> {
        let path = o.path().field("data");
        let text = o.req_string(d, "data")?;
        let cleaned: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        match base64::engine::general_purpose::STANDARD.decode(cleaned) {
            Ok(bytes) if bytes.is_empty() => {
                d.violation(&path, "cannot be empty");
                None
            }
            Ok(bytes) if bytes.len() > MAX_SECRET_BYTES => {
                d.violation(
                    &path,
                    format!("cannot be larger than {MAX_SECRET_BYTES} bytes"),
                );
                None
            }
            Ok(bytes) => Some(Self {
                data: SecretData(bytes),
            }),
            Err(_) => {
                d.violation(&path, "has to be valid base64");
                None
            }
        }
    }
}

/// Only for tests and fixtures that build paths by hand.
pub fn data_path() -> FieldPath {
    FieldPath::root().field("data")
}
