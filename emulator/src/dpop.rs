//! DPoP proof validation (RFC 9449) for token requests and resource
//! requests, with the `error_description` texts of Okta's OAuth error
//! catalogue. Every failure is 400 `invalid_dpop_proof`.

use axum::http::{HeaderMap, HeaderName};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::errors::OAuthError;
use crate::jwk::{self, jwk_thumbprint};
use crate::jws::{Algorithm, CompactJws};
use crate::oauth_state::OAuthState;

/// The `DPoP` request header, which carries the proof.
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The `DPoP-Nonce` response header.
pub(crate) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// Maximum age of a proof's `iat`, in seconds.
const MAX_PROOF_AGE_SECONDS: i64 = 300;

pub(crate) const MISSING: &str = "The DPoP proof JWT header is missing.";
const MULTIPLE: &str = "Multiple DPoP proof JWT headers are not allowed.";
const BAD_TYP: &str = "'typ' must be 'dpop+jwt' in the DPoP proof JWT.";
const BAD_ALG: &str = "The DPoP proof JWT signature algorithm is invalid.";
const UNPARSABLE: &str = "The DPoP proof JWT cannot be parsed.";
const BAD_SIGNATURE: &str = "The DPoP proof JWT signature is invalid.";
const BAD_HTM: &str = "'htm' claim in the DPoP proof JWT is invalid.";
const BAD_HTU: &str = "'htu' claim in the DPoP proof JWT is invalid.";
const BAD_IAT: &str = "'iat' claim in the DPoP proof JWT is invalid.";
const IN_FUTURE: &str = "The DPoP proof JWT is issued in the future.";
const TOO_OLD: &str = "The DPoP proof JWT is issued more than five minutes in the past.";
const EXPIRED: &str = "The DPoP proof JWT is expired.";
const BAD_JTI: &str = "'jti' claim in the DPoP proof JWT is invalid.";
const REPLAYED: &str = "The DPoP proof JWT has already been used.";
const BAD_ATH: &str = "'ath' claim in the DPoP proof does not match the presented access_token.";

/// The request a proof must match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExpectedRequest<'a> {
    /// The HTTP method, compared with `htm`.
    pub(crate) method: &'a str,
    /// The request URL without query or fragment, compared with `htu`.
    pub(crate) url: &'a str,
    /// The presented access token, whose hash `ath` must carry. `None` at
    /// the token endpoint.
    pub(crate) access_token: Option<&'a str>,
}

/// Times a proof is checked against, in epoch seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProofTimes {
    /// The emulator's current time.
    pub(crate) now: i64,
    /// How far in the future `iat` may be.
    pub(crate) leeway: i64,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidProof {
    /// RFC 7638 thumbprint of the proof's key, for `cnf.jkt`.
    pub(crate) jkt: String,
    /// The `nonce` claim, if present.
    pub(crate) nonce: Option<String>,
}

/// Builds 400 `invalid_dpop_proof`.
pub(crate) fn invalid_proof(description: &str) -> OAuthError {
    OAuthError::bad_request("invalid_dpop_proof", description)
}

/// Returns the `DPoP` header, `None` when absent, or an error when the
/// request has several.
pub(crate) fn proof_header(headers: &HeaderMap) -> Result<Option<&str>, OAuthError> {
    let mut values = headers.get_all(DPOP).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid_proof(MULTIPLE));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| invalid_proof(UNPARSABLE))
}

/// Validates a proof: header, signature by the embedded key, `htm`, `htu`,
/// `iat`, `exp`, `ath` and `jti`, in that order. A proof that passes
/// spends its `jti`. The caller checks `nonce`.
pub(crate) fn validate(
    proof: &str,
    expected: ExpectedRequest<'_>,
    times: ProofTimes,
    state: &mut OAuthState,
) -> Result<ValidProof, OAuthError> {
    let jws = CompactJws::parse(proof).ok_or_else(|| invalid_proof(UNPARSABLE))?;
    if jws.header_str("typ") != Some("dpop+jwt") {
        return Err(invalid_proof(BAD_TYP));
    }
    let alg = jws
        .header_str("alg")
        .and_then(Algorithm::from_name)
        .ok_or_else(|| invalid_proof(BAD_ALG))?;
    // NOTE: Okta's catalogue has no text for a `jwk` header that is absent,
    // invalid or contains private members; the emulator reports it as
    // unparsable.
    let jwk_value = jws
        .header
        .get("jwk")
        .filter(|value| value.is_object())
        .ok_or_else(|| invalid_proof(UNPARSABLE))?;
    let key = jwk::validate_jwk(jwk_value).map_err(|_| invalid_proof(UNPARSABLE))?;
    if !alg.fits(&key.params) {
        return Err(invalid_proof(BAD_ALG));
    }
    if !jws.verify(alg, &key.params) {
        return Err(invalid_proof(BAD_SIGNATURE));
    }

    if jws.claim_str("htm") != Some(expected.method) {
        return Err(invalid_proof(BAD_HTM));
    }
    let htu = jws.claim_str("htu").map(without_query_and_fragment);
    if htu != Some(expected.url) {
        return Err(invalid_proof(BAD_HTU));
    }
    let iat = check_times(&jws, times)?;
    if let Some(access_token) = expected.access_token
        && jws.claim_str("ath") != Some(access_token_hash(access_token).as_str())
    {
        return Err(invalid_proof(BAD_ATH));
    }

    let jti = jws
        .claim_str("jti")
        .filter(|jti| !jti.is_empty())
        .ok_or_else(|| invalid_proof(BAD_JTI))?;
    let forget_after = iat + MAX_PROOF_AGE_SECONDS + times.leeway;
    if !state.spend_proof_jti(jti, forget_after, times.now) {
        return Err(invalid_proof(REPLAYED));
    }

    let jkt = jwk_thumbprint(jwk_value).ok_or_else(|| invalid_proof(UNPARSABLE))?;
    Ok(ValidProof {
        jkt,
        nonce: jws.claim_str("nonce").map(str::to_owned),
    })
}

/// Checks `iat` and an optional `exp`, and returns `iat`.
fn check_times(jws: &CompactJws, times: ProofTimes) -> Result<i64, OAuthError> {
    let iat = jws
        .claim_seconds("iat")
        .ok_or_else(|| invalid_proof(BAD_IAT))?;
    if iat > times.now + times.leeway {
        return Err(invalid_proof(IN_FUTURE));
    }
    if iat < times.now - MAX_PROOF_AGE_SECONDS {
        return Err(invalid_proof(TOO_OLD));
    }
    if jws.claims.get("exp").is_some_and(|exp| !exp.is_null()) {
        match jws.claim_seconds("exp") {
            Some(exp) if exp > times.now => {}
            _ => return Err(invalid_proof(EXPIRED)),
        }
    }
    Ok(iat)
}

/// Computes `ath`: base64url of the SHA-256 of the access token.
pub(crate) fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// Removes the query and fragment, which RFC 9449 says `htu` comparison
/// ignores.
fn without_query_and_fragment(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

#[cfg(test)]
mod tests;
