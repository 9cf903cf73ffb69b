//! Key material: generation of key pairs, the master key that encrypts them
//! at rest, and signing of client assertions and DPoP proofs.
//!
//! Private key bytes live only in [`KeyPair`] (zeroized on drop, redacted
//! `Debug`) and, encrypted, in the store.

pub mod import;
pub mod master;
pub mod sign;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use registrar_api::v1::{Jwk, KeyAlgorithm};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use zeroize::Zeroizing;

use crate::jwk;

/// A signing algorithm of a key the registrar holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256; the key is PKCS#1 DER.
    Rs256,
    /// ECDSA on P-256 with SHA-256; the key is PKCS#8 DER.
    Es256,
}

impl SigningAlgorithm {
    /// Returns the JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }

    /// Parses a JWS `alg` name the registrar generates keys for.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }

    fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

/// A failure to generate or load a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Key generation failed.
    #[error("key generation failed: {0}")]
    Generate(String),
    /// Stored key bytes could not be parsed.
    #[error("a stored private key is malformed: {0}")]
    Malformed(String),
}

/// A private key the registrar holds, with its public JWK. The kid is the
/// RFC 7638 thumbprint, so new key material always gets a new kid.
pub struct KeyPair {
    algorithm: SigningAlgorithm,
    private_der: Zeroizing<Vec<u8>>,
    public: Jwk,
    signing_key: SigningKey,
}

/// The private key parsed once by aws-lc-rs, so that a signature does not
/// pay for parsing the DER again. AWS-LC allocates the key with
/// `OPENSSL_malloc`, and its `OPENSSL_free` overwrites each allocation with
/// zeros before freeing it (`crypto/mem.c` in aws-lc-sys 0.47), so dropping
/// the key clears it as `Zeroizing` clears `private_der`.
enum SigningKey {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ecdsa(aws_lc_rs::signature::EcdsaKeyPair),
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.public.kid)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl KeyPair {
    /// Generates a key pair. RSA generation takes tens of milliseconds or
    /// more, so call it from a blocking task.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        match algorithm {
            KeyAlgorithm::Unspecified | KeyAlgorithm::Rs2562048 => generate_rsa(2048),
            KeyAlgorithm::Rs2563072 => generate_rsa(3072),
            KeyAlgorithm::Rs2564096 => generate_rsa(4096),
            KeyAlgorithm::Es256 => generate_p256(),
        }
    }

    /// Rebuilds a key pair from its stored parts.
    pub fn from_parts(
        algorithm: SigningAlgorithm,
        private_der: Zeroizing<Vec<u8>>,
        public: Jwk,
    ) -> Result<Self, KeyError> {
        let signing_key = match algorithm {
            SigningAlgorithm::Rs256 => aws_lc_rs::rsa::KeyPair::from_der(&private_der)
                .map(SigningKey::Rsa)
                .map_err(|err| KeyError::Malformed(format!("invalid PKCS#1 RSA key: {err}")))?,
            SigningAlgorithm::Es256 => aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &private_der,
            )
            .map(SigningKey::Ecdsa)
            .map_err(|err| KeyError::Malformed(format!("invalid PKCS#8 P-256 key: {err}")))?,
        };
        Ok(Self {
            algorithm,
            private_der,
            public,
            signing_key,
        })
    }

    /// Returns the signing algorithm.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// Returns the key id, the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    /// Returns the public JWK, with kid, use and alg set.
    pub fn public_jwk(&self) -> &Jwk {
        &self.public
    }

    /// Returns the private key DER (PKCS#1 for RSA, PKCS#8 for EC), for
    /// encryption into the store.
    pub fn private_der(&self) -> &[u8] {
        &self.private_der
    }

    /// Returns the private key in PKCS#8 PEM, for delivery to callers that
    /// sign their own assertions.
    pub fn private_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::{LineEnding, SecretDocument};

        let malformed = |err: &dyn std::fmt::Display| KeyError::Malformed(err.to_string());
        let document = match self.algorithm {
            SigningAlgorithm::Rs256 => rsa::RsaPrivateKey::from_pkcs1_der(&self.private_der)
                .map_err(|err| malformed(&err))?
                .to_pkcs8_der()
                .map_err(|err| malformed(&err))?,
            SigningAlgorithm::Es256 => SecretDocument::try_from(self.private_der.as_slice())
                .map_err(|err| malformed(&err))?,
        };
        document
            .to_pem("PRIVATE KEY", LineEnding::LF)
            .map_err(|err| malformed(&err))
    }

    /// Signs `message` with RSASSA-PKCS1-v1_5 SHA-256 (RS256) or with ECDSA
    /// P-256 SHA-256 (ES256), and returns the JWS signature bytes: the
    /// modulus-length signature for RSA, and `r || s` (64 bytes) for ECDSA.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match &self.signing_key {
            SigningKey::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &rng,
                    message,
                    &mut signature,
                )?;
                Ok(signature)
            }
            SigningKey::Ecdsa(key) => Ok(key.sign(&rng, message)?.as_ref().to_vec()),
        }
    }
}

fn generate_rsa(bits: usize) -> Result<KeyPair, KeyError> {
    let mut rng = rsa::rand_core::OsRng;
    let private = rsa::RsaPrivateKey::new(&mut rng, bits)
        .map_err(|err| KeyError::Generate(err.to_string()))?;
    let der = private
        .to_pkcs1_der()
        .map_err(|err| KeyError::Generate(err.to_string()))?;
    let public = Jwk {
        kty: "RSA".into(),
        r#use: "sig".into(),
        alg: "RS256".into(),
        n: URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
        e: URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
        ..Jwk::default()
    };
    finish(
        SigningAlgorithm::Rs256,
        Zeroizing::new(der.as_bytes().to_vec()),
        public,
    )
}

fn generate_p256() -> Result<KeyPair, KeyError> {
    let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let der = secret
        .to_pkcs8_der()
        .map_err(|err| KeyError::Generate(err.to_string()))?;
    let public = p256_public_jwk(&secret).map_err(KeyError::Generate)?;
    finish(
        SigningAlgorithm::Es256,
        Zeroizing::new(der.as_bytes().to_vec()),
        public,
    )
}

/// Returns the public JWK of a P-256 key, without a kid.
pub(crate) fn p256_public_jwk(secret: &p256::SecretKey) -> Result<Jwk, String> {
    let point = secret.public_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err("the P-256 public key has no coordinates".into());
    };
    Ok(Jwk {
        kty: "EC".into(),
        r#use: "sig".into(),
        alg: "ES256".into(),
        crv: "P-256".into(),
        x: URL_SAFE_NO_PAD.encode(x),
        y: URL_SAFE_NO_PAD.encode(y),
        ..Jwk::default()
    })
}

fn finish(
    algorithm: SigningAlgorithm,
    der: Zeroizing<Vec<u8>>,
    mut public: Jwk,
) -> Result<KeyPair, KeyError> {
    public.kid = jwk::thumbprint(&public)
        .ok_or_else(|| KeyError::Generate("the public key is incomplete".into()))?;
    KeyPair::from_parts(algorithm, der, public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_key_is_valid_and_kid_is_thumbprint() {
        let key = KeyPair::generate(KeyAlgorithm::Rs2562048).expect("generated");
        assert_eq!(key.algorithm(), SigningAlgorithm::Rs256);
        jwk::validate_jwk("key", key.public_jwk()).expect("valid public JWK");
        assert_eq!(
            Some(key.kid().to_string()),
            jwk::thumbprint(key.public_jwk())
        );
        let printed = format!("{key:?}");
        assert!(printed.contains("redacted"), "{printed}");
        assert!(!printed.contains(&URL_SAFE_NO_PAD.encode(&key.private_der()[..16])));
    }

    #[test]
    fn ec_key_is_valid() {
        let key = KeyPair::generate(KeyAlgorithm::Es256).expect("generated");
        assert_eq!(key.public_jwk().crv, "P-256");
        jwk::validate_jwk("key", key.public_jwk()).expect("valid public JWK");
    }

    #[test]
    fn private_keys_export_as_pkcs8_pem() {
        use rsa::pkcs8::{DecodePrivateKey, SecretDocument};

        let rsa_key = KeyPair::generate(KeyAlgorithm::Rs2562048).expect("generated");
        let pem = rsa_key.private_pkcs8_pem().expect("PEM");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let parsed = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).expect("PKCS#8 parses");
        assert_eq!(
            parsed.to_pkcs1_der().expect("DER").as_bytes(),
            rsa_key.private_der()
        );

        let ec_key = KeyPair::generate(KeyAlgorithm::Es256).expect("generated");
        let pem = ec_key.private_pkcs8_pem().expect("PEM");
        let (label, document) = SecretDocument::from_pem(&pem).expect("PEM parses");
        assert_eq!(label, "PRIVATE KEY");
        assert_eq!(document.as_bytes(), ec_key.private_der());
    }

    #[test]
    fn new_material_gets_new_kid() {
        let first = KeyPair::generate(KeyAlgorithm::Es256).expect("generated");
        let second = KeyPair::generate(KeyAlgorithm::Es256).expect("generated");
        assert_ne!(first.kid(), second.kid());
    }
}
