//! Loading of a private key from PEM: the key of the registrar's own Okta
//! service app, which an operator generates and registers in Okta.
//!
//! Accepted forms are PKCS#8 (`PRIVATE KEY`) with an RSA or EC P-256 key,
//! PKCS#1 (`RSA PRIVATE KEY`) and SEC1 (`EC PRIVATE KEY`). Encrypted PEM is
//! rejected, because the registrar has no passphrase to decrypt it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use registrar_api::v1::Jwk;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::SecretDocument;
use rsa::traits::PublicKeyParts;
use zeroize::Zeroizing;

use super::{KeyError, KeyPair, SigningAlgorithm};
use crate::jwk;

/// The smallest RSA modulus Okta accepts for app keys, in bits.
const MIN_RSA_BITS: usize = 2048;

/// Loads a private key from PEM text. The key id is `kid` when given, else
/// the RFC 7638 thumbprint of the public key, which is the kid the
/// registrar gives the keys it generates. Errors never contain key bytes.
pub fn key_pair_from_pem(pem: &str, kid: Option<&str>) -> Result<KeyPair, KeyError> {
    let malformed = |detail: String| KeyError::Malformed(detail);
    // Checked before parsing, because the DER of an encrypted key does not
    // parse as a private key.
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(malformed(
            "the key is encrypted; store it unencrypted in a file only the registrar can read"
                .into(),
        ));
    }
    let (label, document) = SecretDocument::from_pem(pem.trim())
        .map_err(|err| malformed(format!("the file is not a PEM private key ({err})")))?;
    let (algorithm, der, mut public) = match label {
        "RSA PRIVATE KEY" => {
            let key = rsa::RsaPrivateKey::from_pkcs1_der(document.as_bytes())
                .map_err(|err| malformed(format!("invalid PKCS#1 RSA key: {err}")))?;
            rsa_parts(&key)?
        }
        "EC PRIVATE KEY" => {
            let key = p256::SecretKey::from_sec1_der(document.as_bytes()).map_err(|_| {
                malformed("invalid SEC1 EC key; only P-256 keys are supported".into())
            })?;
            p256_parts(&key)?
        }
        "PRIVATE KEY" => {
            if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_der(document.as_bytes()) {
                rsa_parts(&key)?
            } else if let Ok(key) = p256::SecretKey::from_pkcs8_der(document.as_bytes()) {
                p256_parts(&key)?
            } else {
                return Err(malformed(
                    "the PKCS#8 key is neither RSA nor EC P-256; use one of those".into(),
                ));
            }
        }
        other => {
            return Err(malformed(format!(
                "unsupported PEM label {other:?}; use PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY"
            )));
        }
    };
    public.kid = match kid {
        Some(kid) => kid.to_string(),
        None => jwk::thumbprint(&public)
            .ok_or_else(|| malformed("the public key is incomplete".into()))?,
    };
    KeyPair::from_parts(algorithm, der, public)
}

type KeyParts = (SigningAlgorithm, Zeroizing<Vec<u8>>, Jwk);

fn rsa_parts(key: &rsa::RsaPrivateKey) -> Result<KeyParts, KeyError> {
    let bits = key.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(KeyError::Malformed(format!(
            "the RSA key has {bits} bits; Okta needs at least {MIN_RSA_BITS}"
        )));
    }
    let der = key
        .to_pkcs1_der()
        .map_err(|err| KeyError::Malformed(err.to_string()))?;
    let public = Jwk {
        kty: "RSA".into(),
        r#use: "sig".into(),
        alg: "RS256".into(),
        n: URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        e: URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        ..Jwk::default()
    };
    Ok((
        SigningAlgorithm::Rs256,
        Zeroizing::new(der.as_bytes().to_vec()),
        public,
    ))
}

fn p256_parts(key: &p256::SecretKey) -> Result<KeyParts, KeyError> {
    let der = key
        .to_pkcs8_der()
        .map_err(|err| KeyError::Malformed(err.to_string()))?;
    let public = super::p256_public_jwk(key).map_err(KeyError::Malformed)?;
    Ok((
        SigningAlgorithm::Es256,
        Zeroizing::new(der.as_bytes().to_vec()),
        public,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use registrar_api::v1::KeyAlgorithm;
    use rsa::pkcs8::LineEnding;

    #[test]
    fn pkcs8_keys_keep_their_thumbprint() {
        for algorithm in [KeyAlgorithm::Rs2562048, KeyAlgorithm::Es256] {
            let generated = KeyPair::generate(algorithm).expect("generated");
            let pem = generated.private_pkcs8_pem().expect("PEM");
            let loaded = key_pair_from_pem(&pem, None).expect("loads");
            assert_eq!(loaded.kid(), generated.kid());
            assert_eq!(loaded.public_jwk(), generated.public_jwk());
        }
    }

    #[test]
    fn pkcs1_rsa_key_loads_with_given_kid() {
        let generated = KeyPair::generate(KeyAlgorithm::Rs2562048).expect("generated");
        let key = rsa::RsaPrivateKey::from_pkcs1_der(generated.private_der()).expect("DER");
        let pem = key.to_pkcs1_pem(LineEnding::LF).expect("PEM");
        let loaded = key_pair_from_pem(&pem, Some("registrar-1")).expect("loads");
        assert_eq!(loaded.kid(), "registrar-1");
        assert_eq!(loaded.algorithm(), SigningAlgorithm::Rs256);
    }

    #[test]
    fn sec1_ec_key_loads() {
        let key = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let pem = key.to_sec1_pem(LineEnding::LF).expect("PEM");
        let loaded = key_pair_from_pem(&pem, None).expect("loads");
        assert_eq!(loaded.algorithm(), SigningAlgorithm::Es256);
    }

    #[test]
    fn bad_input_is_rejected_without_key_bytes() {
        let error = key_pair_from_pem("not a key", None).expect_err("rejected");
        assert!(error.to_string().contains("PEM"), "{error}");
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let error = key_pair_from_pem(encrypted, None).expect_err("rejected");
        assert!(error.to_string().contains("encrypted"), "{error}");
    }
}
