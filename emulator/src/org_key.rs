//! The org's own signing key, which signs the access tokens the emulator
//! issues, and `GET /oauth2/v1/keys`, which publishes its public half.
//!
//! The key is a 2048-bit RSA key generated on first use, so emulators that
//! never issue a token do not pay for key generation.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::errors::OktaError;
use crate::jws::b64;
use crate::{Shared, ids};

/// An RSA key pair with its `kid`.
pub(crate) struct OrgKey {
    kid: String,
    pair: RsaKeyPair,
}

impl std::fmt::Debug for OrgKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The key could not be generated or could not sign.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the org signing key failed: {0}")]
pub(crate) struct KeyError(&'static str);

impl OrgKey {
    /// Generates a new 2048-bit key with a random `kid`.
    pub(crate) fn generate() -> Result<Self, KeyError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| KeyError("RSA key generation failed"))?;
        Ok(Self {
            kid: ids::signing_key_id(),
            pair,
        })
    }

    /// Signs `claims` as a compact JWS with `RS256` and this key's `kid`.
    pub(crate) fn sign_jwt(&self, claims: &Value) -> Result<String, KeyError> {
        let header = json!({ "kid": self.kid, "alg": "RS256" });
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| KeyError("RS256 signing failed"))?;
        Ok(format!("{input}.{}", b64(signature)))
    }

    /// Builds the public JWK as `/oauth2/v1/keys` lists it.
    pub(crate) fn public_jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "kid": self.kid,
            "use": "sig",
            "e": b64(public.exponent().big_endian_without_leading_zero()),
            "n": b64(public.modulus().big_endian_without_leading_zero()),
        })
    }
}

/// `GET /oauth2/v1/keys`: the org's public signing keys as a JWKS.
pub(crate) async fn keys(State(shared): State<Arc<Shared>>) -> Response {
    match shared.org_key() {
        Ok(key) => Json(json!({ "keys": [key.public_jwk()] })).into_response(),
        Err(error) => {
            tracing::error!(%error, "no org signing key");
            OktaError::internal().into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwk::validate_jwk;
    use crate::jws::{Algorithm, CompactJws};

    #[test]
    fn signed_jwt_verifies_with_public_jwk() {
        let key = OrgKey::generate().expect("key generation succeeds");
        let token = key
            .sign_jwt(&json!({ "sub": "0oa1" }))
            .expect("signing succeeds");

        let jws = CompactJws::parse(&token).expect("a well-formed JWS");
        assert_eq!(jws.header_str("kid"), Some(key.kid.as_str()));
        let public = validate_jwk(&key.public_jwk()).expect("a valid public JWK");
        assert!(jws.verify(Algorithm::Rs256, &public.params));
        assert_eq!(jws.claim_str("sub"), Some("0oa1"));
    }
}
