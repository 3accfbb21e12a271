//! Encryption at rest for secret kinds (Secret, GlobalSecret, DataplaneCertificate): envelope
//! encryption wrapped around any `ResourceStore`. Each record's spec is sealed with its own random
//! AES-256-GCM data key, bound to the record's identity (so ciphertexts cannot be swapped between
//! records); the data key is sealed with the configured key-encryption key. Rotating the KEK only
//! re-wraps data keys. A database dump alone reveals no secret.

use std::{path::Path, sync::Arc};

use async_trait::async_trait;
use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    ListQuery, ListResult, Record, ResourceStore, Selection, StoreError, Subscription, WriteOp,
    WriteResult,
};
use crate::model::{ResourceKey, ResourceKind};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// The field an encrypted spec is stored under.
const ENVELOPE: &str = "meshplaneEncrypted";

/// Why a key could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{source_name}: {reason}")]
    Invalid { source_name: String, reason: String },
}

/// A key-encryption key and its id (the first 8 bytes of its SHA-256, hex).
#[derive(Clone)]
pub struct Kek {
    id: String,
    key: Arc<LessSafeKey>,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", self.id)
    }
}

impl Kek {
    /// Parses base64 of exactly 32 bytes (`openssl rand -base64 32`). `source_name` names the flag or
    /// file in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, KeyError> {
        let bad = |reason: &str| KeyError::Invalid {
            source_name: source_name.to_string(),
            reason: reason.to_string(),
        };
        let raw = B64
            .decode(text.trim())
            .map_err(|_| bad("is not base64 (make one with: openssl rand -base64 32)"))?;
        if raw.len() != 32 {
            return Err(bad(&format!("must decode to 32 bytes, not {}", raw.len())));
        }
        let id = hex::encode(&Sha256::digest(&raw)[..8]);
        let key =
            UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| bad("is not a valid AES-256 key"))?;
        Ok(Self {
            id,
            key: Arc::new(LessSafeKey::new(key)),
        })
    }

    pub fn from_file(path: &Path, flag: &str) -> Result<Self, KeyError> {
        let name = format!("{flag} {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::Invalid {
            source_name: name.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &name)
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The key that encrypts new writes, and older keys still accepted for reading.
#[derive(Clone, Debug)]
pub struct Keyring {
    primary: Kek,
    older: Vec<Kek>,
}

impl Keyring {
    pub fn new(primary: Kek, older: Vec<Kek>) -> Self {
        Self { primary, older }
    }

    pub fn primary_id(&self) -> &str {
        self.primary.id()
    }

    fn find(&self, id: &str) -> Option<&Kek> {
        std::iter::once(&self.primary)
            .chain(&self.older)
            .find(|k| k.id == id)
    }
}

fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| StoreError::Internal("the system random generator failed".into()))?;
    Ok(b)
}

fn aad(key: &ResourceKey) -> Vec<u8> {
    format!("{}\u{0}{}\u{0}{}", key.kind.name(), key.mesh, key.name).into_bytes()
}

fn seal(
    k: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let mut buf = plain.to_vec();
    k.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .map_err(|_| StoreError::Internal("encryption failed".into()))?;
    Ok(buf)
}

fn open(
    k: &LessSafeKey,
    nonce: &[u8],
    aad: &[u8],
    sealed: &[u8],
    what: &ResourceKey,
) -> Result<Vec<u8>, StoreError> {
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| corrupt(what, "bad nonce"))?;
    let mut buf = sealed.to_vec();
    let plain = k
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| corrupt(what, "decryption failed: wrong key or tampered data"))?;
    Ok(plain.to_vec())
}

fn corrupt(key: &ResourceKey, reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: key.clone(),
        reason: reason.to_string(),
    }
}

/// The id of the key that sealed a stored spec, or `None` for plaintext.
fn envelope_kid(spec: &Value) -> Option<&str> {
    spec.get(ENVELOPE)
        .and_then(|e| e.get("kid"))
        .and_then(Value::as_str)
}

pub struct EncryptedStore {
    inner: Arc<dyn ResourceStore>,
    keys: Keyring,
}

impl EncryptedStore {
    pub fn new(inner: Arc<dyn ResourceStore>, keys: Keyring) -> Self {
        Self { inner, keys }
    }

    fn encrypts(kind: ResourceKind) -> bool {
        kind.is_secret()
    }

    fn seal_spec(&self, key: &ResourceKey, spec: &Value) -> Result<Value, StoreError> {
        let dek_bytes: [u8; 32] = random()?;
        let dek = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &dek_bytes)
                .map_err(|_| StoreError::Internal("bad data key".into()))?,
        );
        let (n1, n2): ([u8; NONCE_LEN], [u8; NONCE_LEN]) = (random()?, random()?);
        let plain = serde_json::to_vec(spec).map_err(|e| StoreError::Internal(e.to_string()))?;
        let ct = seal(&dek, n1, &aad(key), &plain)?;
        let wrapped = seal(&self.keys.primary.key, n2, b"meshplane-dek", &dek_bytes)?;
        Ok(
            json!({ENVELOPE: {"v": 1, "kid": self.keys.primary.id, "dek": B64.encode(wrapped), "dekNonce": B64.encode(n2), "nonce": B64.encode(n1), "ct": B64.encode(ct)}}),
        )
    }

    fn open_spec(&self, key: &ResourceKey, spec: Value) -> Result<Value, StoreError> {
        let Some(env) = spec.get(ENVELOPE) else {
            // Written before encryption was turned on; re-wrapped by `rewrap`.
            return Ok(spec);
        };
        let field = |n: &str| -> Result<Vec<u8>, StoreError> {
            env.get(n)
                .and_then(Value::as_str)
                .and_then(|s| B64.decode(s).ok())
                .ok_or_else(|| corrupt(key, &format!("envelope field {n} is missing")))
        };
        let kid = env.get("kid").and_then(Value::as_str).unwrap_or_default();
        let kek = self.keys.find(kid).ok_or_else(|| corrupt(key, &format!("encrypted with key {kid}, which is not configured (add it with --encryption-old-key-file)")))?;
        let dek_bytes = open(
            &kek.key,
            &field("dekNonce")?,
            b"meshplane-dek",
            &field("dek")?,
            key,
        )?;
        let dek = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &dek_bytes).map_err(|_| corrupt(key, "bad data key"))?,
        );
        let plain = open(&dek, &field("nonce")?, &aad(key), &field("ct")?, key)?;
        serde_json::from_slice(&plain)
            .map_err(|e| corrupt(key, &format!("decrypted spec is not JSON: {e}")))
    }

    fn open_record(&self, mut r: Record) -> Result<Record, StoreError> {
        if Self::encrypts(r.key.kind) {
            r.spec = self.open_spec(&r.key, std::mem::take(&mut r.spec))?;
        }
        Ok(r)
    }

    /// Re-encrypts every secret record not sealed with the primary key (older key or plaintext).
    /// Safe to run on every replica at once: a concurrent write wins and is already sealed.
    pub async fn rewrap(&self) -> Result<usize, StoreError> {
        let mut done = 0;
        for kind in ResourceKind::ALL.into_iter().filter(|k| Self::encrypts(*k)) {
            for rec in self.inner.list(&ListQuery::all(kind)).await?.items {
                if envelope_kid(&rec.spec) == Some(self.keys.primary_id()) {
                    continue;
                }
                let plain = self.open_spec(&rec.key, rec.spec.clone())?;
                let op = WriteOp::Update {
                    key: rec.key.clone(),
                    expected_version: rec.version,
                    spec: self.seal_spec(&rec.key, &plain)?,
                    labels: rec.labels.clone(),
                };
                match self.inner.write(vec![op]).await {
                    Ok(_) => done += 1,
                    Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(done)
    }
}

#[async_trait]
impl ResourceStore for EncryptedStore {
    async fn get(&self, key: &ResourceKey) -> Result<Option<Record>, StoreError> {
        self.inner
            .get(key)
            .await?
            .map(|r| self.open_record(r))
            .transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<ListResult, StoreError> {
        let r = self.inner.list(query).await?;
        let items = r
            .items
            .into_iter()
            .map(|x| self.open_record(x))
            .collect::<Result<_, _>>()?;
        Ok(ListResult {
            items,
            total: r.total,
        })
    }

    async fn snapshot(&self, selection: &Selection) -> Result<Vec<Record>, StoreError> {
        self.inner
            .snapshot(selection)
            .await?
            .into_iter()
            .map(|r| self.open_record(r))
            .collect()
    }

    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        let mut sealed = Vec::with_capacity(ops.len());
        for op in ops {
            sealed.push(match op {
                WriteOp::Create {
                    key,
                    spec,
                    labels,
                    owner,
                } if Self::encrypts(key.kind) => {
                    let spec = self.seal_spec(&key, &spec)?;
                    WriteOp::Create {
                        key,
                        spec,
                        labels,
                        owner,
                    }
                }
                WriteOp::Update {
                    key,
                    expected_version,
                    spec,
                    labels,
                } if Self::encrypts(key.kind) => {
                    let spec = self.seal_spec(&key, &spec)?;
                    WriteOp::Update {
                        key,
                        expected_version,
                        spec,
                        labels,
                    }
                }
                WriteOp::Upsert {
                    key,
                    spec,
                    labels,
                    owner,
                } if Self::encrypts(key.kind) => {
                    let spec = self.seal_spec(&key, &spec)?;
                    WriteOp::Upsert {
                        key,
                        spec,
                        labels,
                        owner,
                    }
                }
                other => other,
            });
        }
        let results = self.inner.write(sealed).await?;
        results
            .into_iter()
            .map(|r| r.map(|rec| self.open_record(rec)).transpose())
            .collect()
    }

    fn subscribe(&self) -> Subscription {
        self.inner.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn describe(&self) -> String {
        format!(
            "{}, secrets encrypted with key {}",
            self.inner.describe(),
            self.keys.primary_id()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ResourceStoreExt, conformance, memory::MemoryStore};

    fn key() -> Kek {
        Kek::parse(&B64.encode([7u8; 32]), "test").expect("key")
    }

    fn other_key() -> Kek {
        Kek::parse(&B64.encode([9u8; 32]), "test").expect("key")
    }

    #[tokio::test]
    async fn conforms_like_any_store() {
        conformance::run_all(Arc::new(EncryptedStore::new(
            Arc::new(MemoryStore::new()),
            Keyring::new(key(), vec![]),
        )))
        .await;
    }

    #[tokio::test]
    async fn secrets_are_sealed_underneath_and_rotation_rewraps() {
        let raw: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        let enc = EncryptedStore::new(raw.clone(), Keyring::new(key(), vec![]));
        let mesh = ResourceKey::mesh("m");
        let secret = ResourceKey::in_mesh(ResourceKind::Secret, "m", "s");
        enc.write(vec![
            WriteOp::Create {
                key: mesh.clone(),
                spec: json!({}),
                labels: Default::default(),
                owner: None,
            },
            WriteOp::Create {
                key: secret.clone(),
                spec: json!({"data": "c2VjcmV0LXZhbHVl"}),
                labels: Default::default(),
                owner: Some(mesh.clone()),
            },
        ])
        .await
        .expect("write");
        let underneath = raw.get(&secret).await.expect("get").expect("stored");
        let text = underneath.spec.to_string();
        assert!(
            !text.contains("c2VjcmV0LXZhbHVl"),
            "the raw store must not hold the secret: {text}"
        );
        assert_eq!(envelope_kid(&underneath.spec), Some(key().id()));
        assert_eq!(
            raw.get(&mesh).await.expect("get").expect("mesh").spec,
            json!({}),
            "non-secret kinds stay plain"
        );
        assert_eq!(
            enc.get(&secret).await.expect("get").expect("secret").spec,
            json!({"data": "c2VjcmV0LXZhbHVl"})
        );

        // Swapping ciphertexts between records is detected (the key is bound in).
        let other = ResourceKey::in_mesh(ResourceKind::Secret, "m", "t");
        raw.write(vec![WriteOp::Create {
            key: other.clone(),
            spec: underneath.spec.clone(),
            labels: Default::default(),
            owner: Some(mesh.clone()),
        }])
        .await
        .expect("raw");
        assert!(matches!(
            enc.get(&other).await,
            Err(StoreError::Corrupt { .. })
        ));
        raw.write(vec![WriteOp::Delete {
            key: other,
            expected_version: None,
        }])
        .await
        .expect("cleanup");

        // Rotation: the new key is primary, the old one only decrypts; rewrap moves everything over.
        let rotated = EncryptedStore::new(raw.clone(), Keyring::new(other_key(), vec![key()]));
        assert_eq!(
            rotated
                .get_resource(&secret)
                .await
                .expect("old key still reads")
                .map(|(r, _)| r.meta.name),
            Some("s".into())
        );
        assert_eq!(rotated.rewrap().await.expect("rewrap"), 1);
        assert_eq!(
            envelope_kid(&raw.get(&secret).await.expect("get").expect("s").spec),
            Some(other_key().id())
        );
        // Without the old key, only re-wrapped records are readable.
        let only_new = EncryptedStore::new(raw, Keyring::new(other_key(), vec![]));
        assert!(only_new.get(&secret).await.expect("readable").is_some());
    }

    #[test]
    fn key_errors_name_the_source() {
        let e = Kek::parse("short", "--encryption-key-file /k")
            .expect_err("bad")
            .to_string();
        assert!(
            e.starts_with("--encryption-key-file /k: is not base64"),
            "{e}"
        );
        let e = Kek::parse(&B64.encode([1u8; 16]), "MESHPLANE_ENCRYPTION_KEY")
            .expect_err("short")
            .to_string();
        assert_eq!(
            e,
            "MESHPLANE_ENCRYPTION_KEY: must decode to 32 bytes, not 16"
        );
    }
}
