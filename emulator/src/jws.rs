//! Compact JSON Web Signatures (RFC 7515): parsing, and verifying RSA and
//! ECDSA signatures against a public JWK with aws-lc-rs.
//!
//! Client assertions and DPoP proofs may use the algorithms Okta lists for
//! both: `RS256`, `RS384`, `RS512` (RSASSA-PKCS1-v1_5) and `ES256`,
//! `ES384`, `ES512` (ECDSA on P-256, P-384 and P-521).

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::jwk::KeyParams;

/// A signature algorithm the emulator verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// ECDSA on P-521 with SHA-512.
    Es512,
}

impl Algorithm {
    /// Parses a JOSE `alg` value. Returns `None` for `none`, the HMAC
    /// algorithms and every other value the emulator does not verify.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Self::Rs256),
            "RS384" => Some(Self::Rs384),
            "RS512" => Some(Self::Rs512),
            "ES256" => Some(Self::Es256),
            "ES384" => Some(Self::Es384),
            "ES512" => Some(Self::Es512),
            _ => None,
        }
    }

    /// Returns the JOSE `alg` value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
        }
    }

    /// Checks that a key can verify this algorithm: an RSA key for `RS*`,
    /// and an EC key on the matching curve for `ES*`.
    pub(crate) fn fits(self, key: &KeyParams) -> bool {
        match (self, key) {
            (Self::Rs256 | Self::Rs384 | Self::Rs512, KeyParams::Rsa { .. }) => true,
            (Self::Es256, KeyParams::Ec { crv, .. }) => crv == "P-256",
            (Self::Es384, KeyParams::Ec { crv, .. }) => crv == "P-384",
            (Self::Es512, KeyParams::Ec { crv, .. }) => crv == "P-521",
            _ => false,
        }
    }
}

/// A compact JWS split into its parts, with the header and payload decoded
/// as JSON objects.
#[derive(Debug, Clone)]
pub(crate) struct CompactJws {
    /// The JOSE header.
    pub(crate) header: Map<String, Value>,
    /// The payload, a JWT claims set.
    pub(crate) claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl CompactJws {
    /// Splits `token` into header, payload and signature. Returns `None`
    /// unless it has exactly three base64url parts, the first two are JSON
    /// objects, and the signature is not empty.
    pub(crate) fn parse(token: &str) -> Option<Self> {
        let mut parts = token.trim().split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        if signature.is_empty() {
            return None;
        }
        Some(Self {
            header: decode_object(header)?,
            claims: decode_object(payload)?,
            signing_input: format!("{header}.{payload}"),
            signature,
        })
    }

    /// Returns a header member if it is a string.
    pub(crate) fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// Returns a claim if it is a string.
    pub(crate) fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Returns a claim if it is a whole number, as JWT NumericDate claims
    /// are. A number with a fraction is rounded down.
    pub(crate) fn claim_seconds(&self, name: &str) -> Option<i64> {
        let value = self.claims.get(name)?;
        value
            .as_i64()
            .or_else(|| value.as_f64().filter(|v| v.is_finite()).map(|v| v as i64))
    }

    /// Checks the signature with `alg` and `key`. The caller checks first
    /// that the key fits the algorithm.
    pub(crate) fn verify(&self, alg: Algorithm, key: &KeyParams) -> bool {
        verify_signature(alg, key, self.signing_input.as_bytes(), &self.signature)
    }
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(members) => Some(members),
        _ => None,
    }
}

/// Verifies a signature over `message`. Returns false when the key does
/// not fit the algorithm, its parameters cannot be decoded, or the
/// signature does not match.
pub(crate) fn verify_signature(
    alg: Algorithm,
    key: &KeyParams,
    message: &[u8],
    signature_bytes: &[u8],
) -> bool {
    if !alg.fits(key) {
        return false;
    }
    match key {
        KeyParams::Rsa { n, e } => {
            let (Some(n), Some(e)) = (decode_unsigned(n), decode_unsigned(e)) else {
                return false;
            };
            let params = match alg {
                Algorithm::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Algorithm::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                _ => &signature::RSA_PKCS1_2048_8192_SHA256,
            };
            RsaPublicKeyComponents { n, e }
                .verify(params, message, signature_bytes)
                .is_ok()
        }
        KeyParams::Ec { x, y, .. } => {
            let (Ok(x), Ok(y)) = (URL_SAFE_NO_PAD.decode(x), URL_SAFE_NO_PAD.decode(y)) else {
                return false;
            };
            let algorithm = match alg {
                Algorithm::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
                Algorithm::Es512 => &signature::ECDSA_P521_SHA512_FIXED,
                _ => &signature::ECDSA_P256_SHA256_FIXED,
            };
            // The uncompressed SEC 1 point: 0x04, then x and y.
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            UnparsedPublicKey::new(algorithm, point)
                .verify(message, signature_bytes)
                .is_ok()
        }
    }
}

/// Decodes a base64url big-endian integer without its leading zero bytes,
/// which aws-lc-rs rejects. Returns `None` for bad base64url or zero.
fn decode_unsigned(value: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
    let first = bytes.iter().position(|byte| *byte != 0)?;
    Some(bytes[first..].to_vec())
}

/// Encodes bytes as base64url without padding, as every JWS part is.
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    fn ec_key_and_params() -> (EcdsaKeyPair, KeyParams) {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect("P-256 key generation succeeds");
        let point = pair.public_key().as_ref().to_vec();
        let params = KeyParams::Ec {
            crv: "P-256".into(),
            x: b64(&point[1..33]),
            y: b64(&point[33..65]),
        };
        (pair, params)
    }

    fn sign_es256(pair: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature = pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("signing succeeds");
        format!("{input}.{}", b64(signature.as_ref()))
    }

    #[test]
    fn parse_and_verify_es256() {
        let (pair, params) = ec_key_and_params();
        let token = sign_es256(&pair, &json!({ "alg": "ES256" }), &json!({ "iat": 5 }));

        let jws = CompactJws::parse(&token).expect("a well-formed JWS");
        assert_eq!(jws.header_str("alg"), Some("ES256"));
        assert_eq!(jws.claim_seconds("iat"), Some(5));
        assert!(jws.verify(Algorithm::Es256, &params));
        assert!(!jws.verify(Algorithm::Es384, &params), "curve mismatch");
    }

    #[test]
    fn tampered_payload_fails() {
        let (pair, params) = ec_key_and_params();
        let token = sign_es256(&pair, &json!({ "alg": "ES256" }), &json!({ "sub": "a" }));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(json!({ "sub": "b" }).to_string()),
            parts[2]
        );
        let jws = CompactJws::parse(&forged).expect("still well-formed");
        assert!(!jws.verify(Algorithm::Es256, &params));
    }

    #[test]
    fn parse_rejects_malformed_tokens() {
        let header = b64(r#"{"alg":"RS256"}"#);
        let payload = b64(r#"{"sub":"x"}"#);
        for token in [
            String::new(),
            "abc".to_owned(),
            format!("{header}.{payload}"),
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln.extra"),
            format!("{}.{payload}.c2ln", b64("[1]")),
            format!("{header}.{}.c2ln", b64("not json")),
            format!("{header}.{payload}.!!!"),
        ] {
            assert!(CompactJws::parse(&token).is_none(), "{token}");
        }
    }

    #[test]
    fn algorithm_names_round_trip() {
        for name in ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"] {
            let alg = Algorithm::from_name(name).expect(name);
            assert_eq!(alg.name(), name);
        }
        for name in ["none", "HS256", "PS256", "EdDSA", "rs256"] {
            assert_eq!(Algorithm::from_name(name), None, "{name}");
        }
    }

    #[test]
    fn leading_zeros_are_stripped() {
        assert_eq!(decode_unsigned(&b64([0, 0, 1, 2])), Some(vec![1, 2]));
        assert_eq!(decode_unsigned(&b64([0, 0])), None);
    }
}
