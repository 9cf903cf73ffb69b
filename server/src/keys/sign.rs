//! Signing of RFC 7523 client assertions and RFC 9449 DPoP proofs.
//!
//! The JWS is assembled here and signed with the aws-lc-rs key that
//! [`KeyPair`] parsed once. `jsonwebtoken::encode` (version 12) parses the
//! DER key again on every call, and on RSA-2048 that parse costs more than
//! the signature (`bench/src/signing.rs` measures both).
//! The header and claims are still `jsonwebtoken` and serde types, so the
//! JWTs are byte for byte what `encode` produced.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Header;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, RSAKeyParameters, RSAKeyType,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{KeyPair, SigningAlgorithm};

/// The claims of a client assertion (RFC 7523 section 3).
#[derive(Debug, Clone, Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// A signed client assertion.
#[derive(Debug, Clone)]
pub struct SignedAssertion {
    /// The compact JWT.
    pub jwt: String,
    /// Its `jti` claim, fresh and random for every assertion.
    pub jti: String,
    /// Its `exp` claim, in Unix seconds.
    pub expires_at: u64,
}

/// A signing failure.
#[derive(Debug, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(String);

/// How far `iat` is set back from the local clock. Okta rejects an
/// assertion issued in its future, so a token endpoint whose clock runs up
/// to this much behind ours still accepts the assertion.
pub const IAT_BACKDATE: Duration = Duration::from_secs(60);

/// Signs a client assertion for `client_id`: header `alg` and `kid`;
/// `iss` and `sub` the client id; `aud` the token endpoint; `iat` now minus
/// [`IAT_BACKDATE`]; `exp` now plus `lifetime`; a random `jti`.
pub fn client_assertion(
    key: &KeyPair,
    client_id: &str,
    audience: &str,
    lifetime: Duration,
) -> Result<SignedAssertion, SignError> {
    let now = unix_now();
    let expires_at = now + lifetime.as_secs();
    let claims = AssertionClaims {
        iss: client_id,
        sub: client_id,
        aud: audience,
        iat: now.saturating_sub(IAT_BACKDATE.as_secs()),
        exp: expires_at,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let mut header = Header::new(key.algorithm().jsonwebtoken());
    header.kid = Some(key.kid().to_string());
    let jwt = sign_jwt(key, &header, &claims)?;
    Ok(SignedAssertion {
        jwt,
        jti: claims.jti,
        expires_at,
    })
}

/// The claims of a DPoP proof (RFC 9449 section 4.2).
#[derive(Debug, Clone, Serialize)]
struct ProofClaims<'a> {
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
}

/// Signs a DPoP proof for one HTTP request. The header carries only the
/// public JWK. `access_token`, when given, becomes the `ath` claim (its
/// SHA-256 hash), as resource requests need.
pub fn dpop_proof(
    key: &KeyPair,
    method: &str,
    url: &str,
    nonce: Option<&str>,
    access_token: Option<&str>,
) -> Result<String, SignError> {
    let mut header = Header::new(key.algorithm().jsonwebtoken());
    header.typ = Some("dpop+jwt".into());
    header.jwk = Some(public_jwk(key)?);
    let claims = ProofClaims {
        htm: method,
        htu: url,
        iat: unix_now(),
        jti: uuid::Uuid::new_v4().to_string(),
        nonce,
        ath: access_token.map(|token| URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))),
    };
    sign_jwt(key, &header, &claims)
}

/// Builds the compact JWS `base64url(header).base64url(claims).base64url(signature)`
/// (RFC 7515 section 7.1) of the JSON serializations of `header` and
/// `claims`, signed with `key`.
fn sign_jwt(key: &KeyPair, header: &Header, claims: &impl Serialize) -> Result<String, SignError> {
    let header_json = serde_json::to_vec(header)
        .map_err(|err| SignError(format!("the JWT header could not be serialized: {err}")))?;
    let claims_json = serde_json::to_vec(claims)
        .map_err(|err| SignError(format!("the JWT claims could not be serialized: {err}")))?;

    let mut jwt = String::new();
    URL_SAFE_NO_PAD.encode_string(header_json, &mut jwt);
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(claims_json, &mut jwt);

    let signature = key.sign(jwt.as_bytes()).map_err(|err| {
        SignError(format!(
            "aws-lc-rs returned an error for {} key {}: {err}",
            key.algorithm().as_str(),
            key.kid()
        ))
    })?;
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
    Ok(jwt)
}

/// Builds the header JWK from the key's public members only.
fn public_jwk(key: &KeyPair) -> Result<jsonwebtoken::jwk::Jwk, SignError> {
    let public = key.public_jwk();
    let algorithm = match key.algorithm() {
        SigningAlgorithm::Rs256 => AlgorithmParameters::RSA(RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: public.n.clone(),
            e: public.e.clone(),
        }),
        SigningAlgorithm::Es256 => AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
            key_type: EllipticCurveKeyType::EC,
            curve: EllipticCurve::P256,
            x: public.x.clone(),
            y: public.y.clone(),
        }),
    };
    if public.n.is_empty() && public.x.is_empty() {
        return Err(SignError("the key has no public members".into()));
    }
    Ok(jsonwebtoken::jwk::Jwk {
        common: CommonParameters::default(),
        algorithm,
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970")
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, decode};
    use registrar_api::v1::KeyAlgorithm;
    use serde_json::Value;

    fn decode_part(jwt: &str, index: usize) -> Value {
        let part = jwt.split('.').nth(index).expect("three parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    }

    #[test]
    fn assertion_has_required_claims_and_fresh_jti() {
        let key = KeyPair::generate(KeyAlgorithm::Es256).expect("key");
        let audience = "https://example.okta.com/oauth2/v1/token";
        let first =
            client_assertion(&key, "0oa1", audience, Duration::from_secs(300)).expect("signed");
        let second =
            client_assertion(&key, "0oa1", audience, Duration::from_secs(300)).expect("signed");
        assert_ne!(first.jti, second.jti);

        let header = decode_part(&first.jwt, 0);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], key.kid());
        let claims = decode_part(&first.jwt, 1);
        assert_eq!(claims["iss"], "0oa1");
        assert_eq!(claims["sub"], "0oa1");
        assert_eq!(claims["aud"], audience);
        assert_eq!(claims["jti"], first.jti.as_str());
        let iat = claims["iat"].as_u64().expect("iat");
        assert_eq!(
            claims["exp"].as_u64(),
            Some(iat + IAT_BACKDATE.as_secs() + 300)
        );
    }

    /// Returns a decoding key built from the public members of `key`'s JWK.
    fn decoding_key(key: &KeyPair) -> DecodingKey {
        let public = key.public_jwk();
        match key.algorithm() {
            SigningAlgorithm::Rs256 => {
                DecodingKey::from_rsa_components(&public.n, &public.e).expect("RSA public key")
            }
            SigningAlgorithm::Es256 => {
                DecodingKey::from_ec_components(&public.x, &public.y).expect("EC public key")
            }
        }
    }

    fn generate(algorithm: SigningAlgorithm) -> KeyPair {
        let algorithm = match algorithm {
            SigningAlgorithm::Rs256 => KeyAlgorithm::Rs2562048,
            SigningAlgorithm::Es256 => KeyAlgorithm::Es256,
        };
        KeyPair::generate(algorithm).expect("key")
    }

    #[test]
    fn assertion_verifies_against_public_jwk() {
        let audience = "https://example.okta.com/oauth2/v1/token";
        for algorithm in [SigningAlgorithm::Rs256, SigningAlgorithm::Es256] {
            let key = generate(algorithm);
            let signed =
                client_assertion(&key, "0oa1", audience, Duration::from_secs(300)).expect("signed");

            let mut validation = Validation::new(algorithm.jsonwebtoken());
            validation.set_audience(&[audience]);
            validation.set_issuer(&["0oa1"]);
            validation.sub = Some("0oa1".into());
            let decoded = decode::<Value>(&signed.jwt, &decoding_key(&key), &validation)
                .unwrap_or_else(|err| panic!("{algorithm:?} assertion does not verify: {err}"));

            let mut expected_header = Header::new(algorithm.jsonwebtoken());
            expected_header.kid = Some(key.kid().to_string());
            assert_eq!(decoded.header, expected_header, "{algorithm:?}");
            assert_eq!(decoded.claims["jti"], signed.jti.as_str(), "{algorithm:?}");
            assert_eq!(
                decoded.claims["exp"].as_u64(),
                Some(signed.expires_at),
                "{algorithm:?}"
            );
        }
    }

    #[test]
    fn proof_verifies_against_public_jwk() {
        for algorithm in [SigningAlgorithm::Rs256, SigningAlgorithm::Es256] {
            let key = generate(algorithm);
            let proof = dpop_proof(
                &key,
                "POST",
                "https://example.okta.com/oauth2/v1/token",
                Some("n1"),
                None,
            )
            .expect("proof");

            // A DPoP proof has no exp, aud or iss claim.
            let mut validation = Validation::new(algorithm.jsonwebtoken());
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            let decoded = decode::<Value>(&proof, &decoding_key(&key), &validation)
                .unwrap_or_else(|err| panic!("{algorithm:?} proof does not verify: {err}"));

            let mut expected_header = Header::new(algorithm.jsonwebtoken());
            expected_header.typ = Some("dpop+jwt".into());
            expected_header.jwk = Some(public_jwk(&key).expect("public JWK"));
            assert_eq!(decoded.header, expected_header, "{algorithm:?}");
            assert_eq!(decoded.claims["htm"], "POST", "{algorithm:?}");
            assert_eq!(decoded.claims["nonce"], "n1", "{algorithm:?}");
            assert!(decoded.claims.get("ath").is_none(), "{algorithm:?}");

            // The proof also verifies with the JWK of its own header, as a
            // token endpoint checks it.
            let header_jwk = decoded.header.jwk.expect("header JWK");
            let header_key = DecodingKey::from_jwk(&header_jwk).expect("header JWK key");
            decode::<Value>(&proof, &header_key, &validation)
                .unwrap_or_else(|err| panic!("{algorithm:?} proof does not verify: {err}"));
        }
    }

    #[test]
    fn proof_header_has_public_jwk_only() {
        let key = KeyPair::generate(KeyAlgorithm::Es256).expect("key");
        let proof = dpop_proof(
            &key,
            "GET",
            "https://org/api/v1/users",
            Some("n1"),
            Some("token"),
        )
        .expect("proof");
        let header = decode_part(&proof, 0);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["jwk"]["kty"], "EC");
        assert!(header["jwk"].get("d").is_none());
        let claims = decode_part(&proof, 1);
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["nonce"], "n1");
        assert_eq!(
            claims["ath"],
            URL_SAFE_NO_PAD.encode(Sha256::digest(b"token"))
        );
    }
}
