//! Dataplane tokens on the dataplane server: every call names its dataplane by its token, and a token
//! for one identity can never act for another.

use meshplane_core::tokens::{DataplaneClaims, TokenKind, Tokens};
use tonic::{Status, metadata::MetadataMap};

/// Verifies the bearer token and returns its claims.
pub async fn dataplane(tokens: &Tokens, md: &MetadataMap) -> Result<DataplaneClaims, Status> {
    let Some(v) = md.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(Status::unauthenticated(
            "a dataplane token is required (authorization: Bearer <token>)",
        ));
    };
    let token = v.strip_prefix("Bearer ").unwrap_or(v).trim();
    match tokens
        .verify::<DataplaneClaims>(TokenKind::Dataplane, token)
        .await
    {
        Ok(v) => Ok(v.claims),
        Err(e) => {
            tracing::warn!(reason = %e, "dataplane refused: invalid dataplane token");
            Err(Status::unauthenticated(format!(
                "dataplane token refused: {e}"
            )))
        }
    }
}
