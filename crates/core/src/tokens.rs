//! Zone, dataplane and user tokens: ES256 JWTs signed with keys kept as GlobalSecrets at global.
//! Private signing keys never leave global; zones receive public keys (`*-signing-public-key-N`) and
//! revocation lists by sync, so they can verify dataplane and user tokens themselves.

mod cache;

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Duration,
};

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    model::{Meta, Resource, ResourceKey, ResourceKind, SecretData, SecretSpec, Spec},
    store::{ResourceStore, ResourceStoreExt, StoreError, WriteOp},
};

/// The three token families. Each has its own keys and revocation list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    Zone,
    Dataplane,
    User,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Zone => "zone-token",
            Self::Dataplane => "dataplane-token",
            Self::User => "user-token",
        }
    }

    /// GlobalSecret holding the private signing key `kid` (global only, never synced).
    pub fn signing_key_name(self, kid: u32) -> String {
        format!("{}-signing-key-{kid}", self.prefix())
    }

    /// GlobalSecret holding the public key `kid` (what zones receive).
    pub fn public_key_name(self, kid: u32) -> String {
        format!("{}-signing-public-key-{kid}", self.prefix())
    }

    /// GlobalSecret listing revoked token ids, comma separated.
    pub fn revocations_name(self) -> String {
        format!("{}-revocations", self.prefix())
    }

    pub fn all() -> [TokenKind; 3] {
        [Self::Zone, Self::Dataplane, Self::User]
    }
}

/// Parses `<prefix>-signing-key-<kid>` into its kind and kid.
pub fn parse_signing_key_name(name: &str) -> Option<(TokenKind, u32)> {
    TokenKind::all().into_iter().find_map(|k| {
        let rest = name.strip_prefix(&format!("{}-signing-key-", k.prefix()))?;
        rest.parse().ok().map(|kid| (k, kid))
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneClaims {
    pub zone: String,
    #[serde(default)]
    pub scope: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneClaims {
    pub mesh: String,
    pub name: String,
    /// Tags the dataplane must carry (`kuma.io/service`); empty means any.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserClaims {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Envelope<C> {
    #[serde(flatten)]
    claims: C,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    /// Which family the token belongs to; a zone token is never accepted as a dataplane token.
    typ: String,
}

/// A verified token's claims and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified<C> {
    pub claims: C,
    pub jti: String,
    pub expires_at: i64,
}

/// Why a token was refused. Never contains the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed: {0}")]
    Malformed(String),
    #[error("token is signed with an unknown key (kid {0:?})")]
    UnknownKey(String),
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token was revoked")]
    Revoked,
    #[error("token is a {found} token, not a {expected} token")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("could not read token keys: {0}")]
    Store(String),
    #[error("could not make a signing key: {0}")]
    KeyGen(String),
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

fn secret_bytes(r: &Resource) -> Option<Vec<u8>> {
    match &r.spec {
        Spec::Secret(s) | Spec::GlobalSecret(s) => Some(s.data.bytes().to_vec()),
        _ => None,
    }
}

/// Derives the public key PEM from a signing key PEM.
pub fn public_key_pem(private_pem: &str) -> Result<String, TokenError> {
    let kp =
        rcgen::KeyPair::from_pem(private_pem).map_err(|e| TokenError::KeyGen(e.to_string()))?;
    Ok(kp.public_key_pem())
}

/// Issues and verifies tokens against the keys in a store. At global the store holds private keys;
/// at a zone it holds the synced public keys.
#[derive(Clone)]
pub struct Tokens {
    store: Arc<dyn ResourceStore>,
    cache: Arc<cache::VerifyCache>,
}

impl Tokens {
    pub fn new(store: Arc<dyn ResourceStore>) -> Self {
        let cache = Arc::new(cache::VerifyCache::new(store.subscribe()));
        Self { store, cache }
    }

    /// The current signing key of a family, created on first use. Returns (kid, private PEM).
    pub async fn signing_key(&self, kind: TokenKind) -> Result<(u32, String), TokenError> {
        let keys = self
            .store
            .list_all(ResourceKind::GlobalSecret, None)
            .await?;
        let newest = keys
            .iter()
            .filter_map(|r| {
                parse_signing_key_name(&r.key.name)
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, kid)| (kid, r))
            })
            .max_by_key(|(kid, _)| *kid);
        if let Some((kid, rec)) = newest {
            let r = rec.to_resource()?;
            let pem = secret_bytes(&r)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| TokenError::KeyGen("signing key is not PEM".into()))?;
            return Ok((kid, pem));
        }
        self.create_signing_key(kind, 1).await
    }

    /// Adds the next signing key of a family (rotation): new tokens are signed with it, tokens of
    /// older keys keep verifying until their key's GlobalSecret is deleted. Returns the new kid.
    pub async fn rotate_signing_key(&self, kind: TokenKind) -> Result<u32, TokenError> {
        let keys = self
            .store
            .list_all(ResourceKind::GlobalSecret, None)
            .await?;
        let newest = keys
            .iter()
            .filter_map(|r| {
                parse_signing_key_name(&r.key.name)
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, kid)| kid)
            })
            .max()
            .unwrap_or(0);
        let (kid, _) = self.create_signing_key(kind, newest + 1).await?;
        Ok(kid)
    }

    /// Adds a new signing key `kid` (rotation): new tokens use it, old tokens verify until removed.
    pub async fn create_signing_key(
        &self,
        kind: TokenKind,
        kid: u32,
    ) -> Result<(u32, String), TokenError> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| TokenError::KeyGen(e.to_string()))?;
        let pem = kp.serialize_pem();
        let r = Resource::new(
            Meta {
                name: kind.signing_key_name(kid),
                ..Default::default()
            },
            Spec::GlobalSecret(SecretSpec {
                data: SecretData::new(pem.clone().into_bytes()),
            }),
        );
        match self.store.write(vec![WriteOp::create(&r, None)]).await {
            Ok(_) => Ok((kid, pem)),
            // Another replica made it first: use theirs.
            Err(StoreError::AlreadyExists(_)) => Box::pin(self.signing_key(kind)).await,
            Err(e) => Err(e.into()),
        }
    }

    pub async fn issue<C: Serialize>(
        &self,
        kind: TokenKind,
        claims: C,
        valid_for: Duration,
    ) -> Result<String, TokenError> {
        let (kid, pem) = self.signing_key(kind).await?;
        let key = EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| TokenError::KeyGen(e.to_string()))?;
        let now = Utc::now().timestamp();
        let secs = i64::try_from(valid_for.as_secs()).unwrap_or(i64::MAX / 2);
        let env = Envelope {
            claims,
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            nbf: now - 5,
            exp: now.saturating_add(secs),
            typ: kind.prefix().to_string(),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, &env, &key).map_err(|e| TokenError::KeyGen(e.to_string()))
    }

    /// The public key PEM for `kid`: from the private key at global, from the synced public key at a zone.
    async fn public_key(&self, kind: TokenKind, kid: u32) -> Result<Option<String>, TokenError> {
        let private = ResourceKey::global(ResourceKind::GlobalSecret, kind.signing_key_name(kid));
        if let Some((r, _)) = self.store.get_resource(&private).await? {
            let pem = secret_bytes(&r)
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            return public_key_pem(&pem).map(Some);
        }
        let public = ResourceKey::global(ResourceKind::GlobalSecret, kind.public_key_name(kid));
        Ok(self
            .store
            .get_resource(&public)
            .await?
            .and_then(|(r, _)| secret_bytes(&r))
            .and_then(|b| String::from_utf8(b).ok()))
    }

    /// The verification key `kid` of a family, from the cache or the store.
    async fn decoding_key(
        &self,
        kind: TokenKind,
        kid: u32,
        kid_text: &str,
    ) -> Result<Arc<DecodingKey>, TokenError> {
        let (cached, generation) = self.cache.key(kind, kid);
        if let Some(key) = cached {
            return Ok(key);
        }
        let pem = self
            .public_key(kind, kid)
            .await?
            .ok_or_else(|| TokenError::UnknownKey(kid_text.to_string()))?;
        let key = Arc::new(
            DecodingKey::from_ec_pem(pem.as_bytes())
                .map_err(|e| TokenError::Malformed(e.to_string()))?,
        );
        self.cache.put_key(kind, kid, key.clone(), generation);
        Ok(key)
    }

    /// The revoked token ids of a family, from the cache or the store.
    async fn revoked_set(&self, kind: TokenKind) -> Result<Arc<HashSet<String>>, TokenError> {
        let (cached, generation) = self.cache.revoked(kind);
        if let Some(set) = cached {
            return Ok(set);
        }
        let set: Arc<HashSet<String>> = Arc::new(self.revoked(kind).await?.into_iter().collect());
        self.cache.put_revoked(kind, set.clone(), generation);
        Ok(set)
    }

    pub async fn revoked(&self, kind: TokenKind) -> Result<Vec<String>, TokenError> {
        let key = ResourceKey::global(ResourceKind::GlobalSecret, kind.revocations_name());
        let text = self
            .store
            .get_resource(&key)
            .await?
            .and_then(|(r, _)| secret_bytes(&r))
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        Ok(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Adds a token id to its family's revocation list.
    pub async fn revoke(&self, kind: TokenKind, jti: &str) -> Result<(), TokenError> {
        let key = ResourceKey::global(ResourceKind::GlobalSecret, kind.revocations_name());
        for _ in 0..10 {
            let current = self.store.get_resource(&key).await?;
            let mut list = match &current {
                Some((r, _)) => secret_bytes(r)
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default(),
                None => String::new(),
            };
            if list.split(',').any(|s| s.trim() == jti) {
                return Ok(());
            }
            if !list.is_empty() {
                list.push(',');
            }
            list.push_str(jti);
            let r = Resource::new(
                Meta {
                    name: kind.revocations_name(),
                    ..Default::default()
                },
                Spec::GlobalSecret(SecretSpec {
                    data: SecretData::new(list.into_bytes()),
                }),
            );
            let op = match current {
                Some((_, v)) => WriteOp::update(&r, v),
                None => WriteOp::create(&r, None),
            };
            match self.store.write(vec![op]).await {
                Ok(_) => {
                    self.cache.invalidate();
                    return Ok(());
                }
                Err(StoreError::Conflict { .. } | StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(TokenError::Store(
            "revocation list kept changing; try again".into(),
        ))
    }

    pub async fn verify<C: DeserializeOwned>(
        &self,
        kind: TokenKind,
        token: &str,
    ) -> Result<Verified<C>, TokenError> {
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let (cached, generation) = self.cache.signed(kind, &digest);
        let payload = match cached {
            Some(p) => p,
            None => {
                let p: Arc<str> = self.verify_signature(kind, token).await?.into();
                self.cache.put_signed(kind, digest, p.clone(), generation);
                p
            }
        };
        let env: Envelope<C> =
            serde_json::from_str(&payload).map_err(|e| TokenError::Malformed(e.to_string()))?;
        // On every use: a signature checked earlier does not keep an expired token valid.
        let now = Utc::now().timestamp();
        if env.exp < now - LEEWAY_SECS {
            return Err(TokenError::Expired);
        }
        if env.nbf > now + LEEWAY_SECS {
            return Err(TokenError::NotYetValid);
        }
        if env.typ != kind.prefix() {
            return Err(TokenError::WrongType {
                expected: kind.prefix(),
                found: env.typ,
            });
        }
        if self.revoked_set(kind).await?.contains(&env.jti) {
            return Err(TokenError::Revoked);
        }
        Ok(Verified {
            claims: env.claims,
            jti: env.jti,
            expires_at: env.exp,
        })
    }

    /// Checks the token's signature and time claims; returns its payload as JSON text.
    async fn verify_signature(&self, kind: TokenKind, token: &str) -> Result<String, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::ES256 {
            return Err(TokenError::Malformed(format!(
                "unsupported algorithm {:?}",
                header.alg
            )));
        }
        let kid_text = header.kid.unwrap_or_default();
        let kid: u32 = kid_text
            .parse()
            .map_err(|_| TokenError::UnknownKey(kid_text.clone()))?;
        let key = self.decoding_key(kind, kid, &kid_text).await?;
        let mut v = Validation::new(Algorithm::ES256);
        v.leeway = LEEWAY_SECS as u64;
        v.validate_nbf = true;
        v.required_spec_claims = ["exp", "nbf", "jti"]
            .into_iter()
            .map(String::from)
            .collect();
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token, key.as_ref(), &v).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    other => TokenError::Malformed(format!("{other:?}")),
                }
            })?;
        Ok(data.claims.to_string())
    }
}

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: i64 = 30;

/// The id (`jti`) of a token, read without verifying it (to revoke a token one holds).
pub fn token_id(token: &str) -> Result<String, TokenError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| TokenError::Malformed("not a JWT".into()))?;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed("payload is not base64url".into()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| TokenError::Malformed(e.to_string()))?;
    v.get("jti")
        .and_then(|j| j.as_str())
        .map(str::to_string)
        .ok_or_else(|| TokenError::Malformed("no jti".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn tokens() -> Tokens {
        Tokens::new(Arc::new(MemoryStore::new()))
    }

    #[tokio::test]
    async fn issue_verify_revoke() {
        let t = tokens();
        let tok = t
            .issue(
                TokenKind::Zone,
                ZoneClaims {
                    zone: "east".into(),
                    scope: vec!["cp".into()],
                },
                Duration::from_secs(60),
            )
            .await
            .expect("issue");
        let v: Verified<ZoneClaims> = t.verify(TokenKind::Zone, &tok).await.expect("valid");
        assert_eq!(v.claims.zone, "east");
        assert_eq!(token_id(&tok).expect("jti"), v.jti);
        let err = t
            .verify::<DataplaneClaims>(TokenKind::Dataplane, &tok)
            .await
            .expect_err("wrong family");
        assert!(
            matches!(
                err,
                TokenError::UnknownKey(_) | TokenError::WrongType { .. }
            ),
            "{err:?}"
        );
        t.revoke(TokenKind::Zone, &v.jti).await.expect("revoke");
        assert_eq!(
            t.verify::<ZoneClaims>(TokenKind::Zone, &tok).await,
            Err(TokenError::Revoked)
        );
    }

    /// A token whose signature was verified once is answered from the cache, and its time claims
    /// are still judged on every use.
    #[tokio::test]
    async fn a_verified_token_is_cached_and_still_expires() {
        let t = tokens();
        let claims = ZoneClaims {
            zone: "east".into(),
            scope: vec!["cp".into()],
        };
        let tok = t
            .issue(TokenKind::Zone, claims.clone(), Duration::from_secs(60))
            .await
            .expect("issue");
        t.verify::<ZoneClaims>(TokenKind::Zone, &tok)
            .await
            .expect("valid");
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(tok.as_bytes()).into();
        let (cached, generation) = t.cache.signed(TokenKind::Zone, &digest);
        let payload = cached.expect("the verified payload is cached");
        // The cached payload as it will be in two minutes: expired beyond the leeway.
        let mut env: serde_json::Value = serde_json::from_str(&payload).expect("json");
        env["exp"] = serde_json::json!(Utc::now().timestamp() - LEEWAY_SECS - 1);
        t.cache
            .put_signed(TokenKind::Zone, digest, env.to_string().into(), generation);
        assert_eq!(
            t.verify::<ZoneClaims>(TokenKind::Zone, &tok).await,
            Err(TokenError::Expired)
        );
        env["exp"] = serde_json::json!(Utc::now().timestamp() + 60);
        env["nbf"] = serde_json::json!(Utc::now().timestamp() + LEEWAY_SECS + 5);
        t.cache
            .put_signed(TokenKind::Zone, digest, env.to_string().into(), generation);
        assert_eq!(
            t.verify::<ZoneClaims>(TokenKind::Zone, &tok).await,
            Err(TokenError::NotYetValid)
        );
        // A tampered token is not the cached one: its signature is checked and refused.
        let mut forged = tok.clone();
        forged.pop();
        forged.push(if tok.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(
            t.verify::<ZoneClaims>(TokenKind::Zone, &forged).await,
            Err(TokenError::BadSignature | TokenError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn cached_keys_and_revocations_follow_writes_made_elsewhere() {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        // Two holders of one store, as two replicas (or the API and the token service) are.
        let (a, b) = (Tokens::new(store.clone()), Tokens::new(store.clone()));
        let claims = || ZoneClaims {
            zone: "east".into(),
            scope: vec!["cp".into()],
        };
        let tok = a
            .issue(TokenKind::Zone, claims(), Duration::from_secs(60))
            .await
            .expect("issue");
        let v: Verified<ZoneClaims> = a.verify(TokenKind::Zone, &tok).await.expect("valid");
        a.verify::<ZoneClaims>(TokenKind::Zone, &tok)
            .await
            .expect("valid again, from the cache");
        b.revoke(TokenKind::Zone, &v.jti).await.expect("revoke");
        assert_eq!(
            a.verify::<ZoneClaims>(TokenKind::Zone, &tok).await,
            Err(TokenError::Revoked),
            "a revocation written by another holder is seen"
        );

        let tok2 = a
            .issue(TokenKind::Zone, claims(), Duration::from_secs(60))
            .await
            .expect("issue");
        a.verify::<ZoneClaims>(TokenKind::Zone, &tok2)
            .await
            .expect("valid");
        let key = ResourceKey::global(
            ResourceKind::GlobalSecret,
            TokenKind::Zone.signing_key_name(1),
        );
        let current = store
            .get(&key)
            .await
            .expect("get")
            .expect("the signing key");
        store
            .write(vec![WriteOp::Delete {
                key,
                expected_version: Some(current.version),
            }])
            .await
            .expect("delete the key");
        assert!(
            matches!(
                a.verify::<ZoneClaims>(TokenKind::Zone, &tok2).await,
                Err(TokenError::UnknownKey(_))
            ),
            "a deleted key no longer verifies"
        );
    }

    #[tokio::test]
    async fn rotated_keys_sign_new_tokens_and_old_ones_still_verify() {
        let t = tokens();
        let old = t
            .issue(
                TokenKind::Zone,
                ZoneClaims {
                    zone: "a".into(),
                    scope: vec![],
                },
                Duration::from_secs(60),
            )
            .await
            .expect("old");
        assert_eq!(
            t.rotate_signing_key(TokenKind::Zone).await.expect("rotate"),
            2
        );
        let new = t
            .issue(
                TokenKind::Zone,
                ZoneClaims {
                    zone: "a".into(),
                    scope: vec![],
                },
                Duration::from_secs(60),
            )
            .await
            .expect("new");
        assert_eq!(
            jsonwebtoken::decode_header(&new)
                .expect("header")
                .kid
                .as_deref(),
            Some("2")
        );
        t.verify::<ZoneClaims>(TokenKind::Zone, &old)
            .await
            .expect("old key still verifies");
        t.verify::<ZoneClaims>(TokenKind::Zone, &new)
            .await
            .expect("new key verifies");
    }

    #[tokio::test]
    async fn expired_and_tampered() {
        let t = tokens();
        let claims = UserClaims {
            name: "admin".into(),
            groups: vec![],
        };
        let key = t.signing_key(TokenKind::User).await.expect("key").1;
        let env = Envelope {
            claims,
            jti: "j".into(),
            iat: 0,
            nbf: 0,
            exp: 100,
            typ: "user-token".into(),
        };
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("1".into());
        let old = jsonwebtoken::encode(
            &h,
            &env,
            &EncodingKey::from_ec_pem(key.as_bytes()).expect("key"),
        )
        .expect("encode");
        assert_eq!(
            t.verify::<UserClaims>(TokenKind::User, &old).await,
            Err(TokenError::Expired)
        );
        let good = t
            .issue(
                TokenKind::User,
                UserClaims {
                    name: "a".into(),
                    groups: vec![],
                },
                Duration::from_secs(60),
            )
            .await
            .expect("issue");
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, br#"{"name":"root","groups":[],"jti":"x","iat":0,"nbf":0,"exp":9999999999,"typ":"user-token"}"#);
        parts[1] = &forged;
        assert_eq!(
            t.verify::<UserClaims>(TokenKind::User, &parts.join("."))
                .await,
            Err(TokenError::BadSignature)
        );
        assert!(matches!(
            t.verify::<UserClaims>(TokenKind::User, "garbage").await,
            Err(TokenError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn zone_side_verifies_with_public_key_only() {
        let global = tokens();
        let tok = global
            .issue(
                TokenKind::Dataplane,
                DataplaneClaims {
                    mesh: "m".into(),
                    name: "dp".into(),
                    tags: BTreeMap::new(),
                },
                Duration::from_secs(60),
            )
            .await
            .expect("issue");
        let (_, private) = global.signing_key(TokenKind::Dataplane).await.expect("key");
        let zone_store = Arc::new(MemoryStore::new());
        let public = Resource::new(
            Meta {
                name: TokenKind::Dataplane.public_key_name(1),
                ..Default::default()
            },
            Spec::GlobalSecret(SecretSpec {
                data: SecretData::new(public_key_pem(&private).expect("pub").into_bytes()),
            }),
        );
        zone_store
            .write(vec![WriteOp::create(&public, None)])
            .await
            .expect("sync");
        let zone = Tokens::new(zone_store);
        let v: Verified<DataplaneClaims> = zone
            .verify(TokenKind::Dataplane, &tok)
            .await
            .expect("zone verifies");
        assert_eq!(v.claims.name, "dp");
    }
}
