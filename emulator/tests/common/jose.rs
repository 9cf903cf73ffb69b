//! Test-only signing: RSA and P-256 keys generated once per test binary,
//! compact JWS signing, client assertions and DPoP proofs.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RSA_PKCS1_SHA384,
    RSA_PKCS1_SHA512, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Number of RSA keys the tests share.
const RSA_KEY_COUNT: usize = 3;

/// Encodes bytes as base64url without padding.
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Returns the current system time in epoch seconds.
pub(crate) fn now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit in i64")
}

/// Returns one of the shared 2048-bit RSA keys, generated on first use.
pub(crate) fn rsa_key(index: usize) -> &'static RsaKeyPair {
    static KEYS: OnceLock<Vec<RsaKeyPair>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        (0..RSA_KEY_COUNT)
            .map(|_| RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation succeeds"))
            .collect()
    });
    &keys[index]
}

/// Builds the public JWK of a shared RSA key with the given kid.
pub(crate) fn rsa_public_jwk(index: usize, kid: &str) -> Value {
    let public = rsa_key(index).public_key();
    json!({
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "e": b64(public.exponent().big_endian_without_leading_zero()),
        "n": b64(public.modulus().big_endian_without_leading_zero()),
    })
}

/// Signs `claims` with a shared RSA key. `header` must name an `RS*` alg.
pub(crate) fn sign_rsa(index: usize, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let encoding = match header["alg"].as_str() {
        Some("RS384") => &RSA_PKCS1_SHA384,
        Some("RS512") => &RSA_PKCS1_SHA512,
        _ => &RSA_PKCS1_SHA256,
    };
    let pair = rsa_key(index);
    let mut signature = vec![0; pair.public_modulus_len()];
    pair.sign(
        encoding,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .expect("RSA signing succeeds");
    format!("{input}.{}", b64(signature))
}

/// Builds `header.payload.signature` with an arbitrary signature, for
/// tokens whose algorithm the emulator must reject before verifying.
pub(crate) fn unsigned_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}", signing_input(header, claims), b64(signature))
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string()), b64(claims.to_string()))
}

/// Builds the claims of a valid client assertion: `iat` now, `exp` in 5
/// minutes and a fresh `jti`.
pub(crate) fn assertion_claims(client_id: &str, token_url: &str) -> Value {
    let now = now();
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + 300,
        "jti": uuid_like(),
    })
}

/// Signs a client assertion with RS256, a shared RSA key and `kid`.
pub(crate) fn assertion(index: usize, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({ "alg": "RS256", "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    sign_rsa(index, &header, claims)
}

/// Returns a random 32-character hex string for `jti` values.
pub(crate) fn uuid_like() -> String {
    let mut bytes = [0_u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Computes `ath` for an access token.
pub(crate) fn ath(access_token: &str) -> String {
    b64(Sha256::digest(access_token.as_bytes()))
}

/// A P-256 key for DPoP proofs.
pub(crate) struct DpopKey {
    pair: EcdsaKeyPair,
    /// The public JWK sent in each proof's header.
    pub(crate) jwk: Value,
}

impl DpopKey {
    /// Generates a new key.
    pub(crate) fn new() -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect("P-256 key generation succeeds");
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64(&point[1..33]),
            "y": b64(&point[33..65]),
        });
        Self { pair, jwk }
    }

    /// Signs a proof with the given header and claims.
    pub(crate) fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("ECDSA signing succeeds");
        format!("{input}.{}", b64(signature.as_ref()))
    }

    /// Builds a proof for `method` and `url`, with an optional nonce and
    /// access-token hash.
    pub(crate) fn proof(
        &self,
        method: &str,
        url: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> String {
        let mut claims = json!({ "htm": method, "htu": url, "iat": now(), "jti": uuid_like() });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        if let Some(token) = access_token {
            claims["ath"] = json!(ath(token));
        }
        self.sign(&self.header(), &claims)
    }

    /// Builds the proof header: `typ`, `alg` and the public `jwk`.
    pub(crate) fn header(&self) -> Value {
        json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk })
    }
}
