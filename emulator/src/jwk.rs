//! Validation of public JSON Web Keys (RFC 7517) as Okta accepts them for an
//! app's `jwks`, and the JWK thumbprint of RFC 7638.
//!
//! The error sentences follow the style of Okta's JWKS error causes. Okta
//! documents the texts for a duplicate `kid`, a missing `kid` among several
//! keys and an RSA key under 2048 bits. The other texts are the emulator's
//! own.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Maximum number of keys an app may have.
pub(crate) const MAX_KEYS: usize = 50;

/// Minimum RSA modulus size in bits.
const MIN_RSA_BITS: usize = 2048;

/// JWK members that only private or symmetric keys have.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A validated public key, with only the members Okta stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicJwk {
    /// The `kid`, if the key has one.
    pub(crate) kid: Option<String>,
    /// The `use`: `sig`, `enc`, or `None` when absent.
    pub(crate) key_use: Option<String>,
    /// The `alg`, kept for verifying signatures but not echoed by Okta.
    pub(crate) alg: Option<String>,
    /// The key type and its public parameters.
    pub(crate) params: KeyParams,
}

/// Public parameters of a key, base64url-encoded as in the JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyParams {
    /// `kty: RSA` with modulus `n` and exponent `e`.
    Rsa { n: String, e: String },
    /// `kty: EC` on curve `crv` with coordinates `x` and `y`.
    Ec { crv: String, x: String, y: String },
}

impl PublicJwk {
    /// Returns the `kty` value.
    pub(crate) fn kty(&self) -> &'static str {
        match self.params {
            KeyParams::Rsa { .. } => "RSA",
            KeyParams::Ec { .. } => "EC",
        }
    }

    /// Builds the key as Okta echoes it: `kty`, `kid`, `use` (null when
    /// absent) and the public parameters, without `alg`.
    pub(crate) fn echo_json(&self) -> Map<String, Value> {
        let mut members = Map::new();
        members.insert("kty".into(), json!(self.kty()));
        members.insert("kid".into(), json!(self.kid));
        members.insert("use".into(), json!(self.key_use));
        match &self.params {
            KeyParams::Rsa { n, e } => {
                members.insert("e".into(), json!(e));
                members.insert("n".into(), json!(n));
            }
            KeyParams::Ec { crv, x, y } => {
                members.insert("crv".into(), json!(crv));
                members.insert("x".into(), json!(x));
                members.insert("y".into(), json!(y));
            }
        }
        members
    }
}

/// A reason a JWK or a JWKS is rejected. `Display` gives the sentence used
/// in error bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JwkError {
    /// More than [`MAX_KEYS`] keys.
    #[error("The 'jwks' contains {0} keys, but an app can have at most {MAX_KEYS} keys.")]
    TooManyKeys(usize),
    /// Two keys share a `kid`, or one of several keys has no `kid`.
    #[error("All keys in the 'jwks' must have a unique `kid`.")]
    KidNotUnique,
    /// An entry of `keys` is not a JSON object.
    #[error("Each key in the 'jwks' must be a JSON object.")]
    NotAnObject,
    /// A private or symmetric key member is present.
    #[error("A key in the 'jwks' contains the private key member '{0}'. Send only the public key.")]
    PrivateMember(&'static str),
    /// `kty` is absent.
    #[error("Each key in the 'jwks' must have a 'kty' member.")]
    MissingKty,
    /// `kty` is neither `RSA` nor `EC`.
    #[error("The 'kty' of a key in the 'jwks' must be 'RSA' or 'EC', not '{0}'.")]
    UnsupportedKty(String),
    /// A member that must be a string is not one.
    #[error("The '{0}' member of a key in the 'jwks' must be a string.")]
    NotAString(&'static str),
    /// A required member is absent.
    #[error("A key in the 'jwks' with kty '{kty}' must have the '{member}' member.")]
    MissingMember {
        /// The key type.
        kty: &'static str,
        /// The absent member.
        member: &'static str,
    },
    /// A member is not base64url without padding.
    #[error("The '{0}' member of a key in the 'jwks' is not valid base64url without padding.")]
    InvalidBase64(&'static str),
    /// The RSA modulus is shorter than 2048 bits.
    #[error("RSA key length in the 'jwks' is less than '2,048' bits for the given key.")]
    RsaKeyTooShort,
    /// The RSA exponent is empty or zero.
    #[error("The 'e' member of an RSA key in the 'jwks' must not be zero.")]
    RsaExponentZero,
    /// `crv` is not a supported curve.
    #[error("The 'crv' of an EC key in the 'jwks' must be 'P-256', 'P-384' or 'P-521', not '{0}'.")]
    UnsupportedCurve(String),
    /// An EC coordinate has the wrong length for its curve.
    #[error(
        "The '{member}' member of an EC key in the 'jwks' must encode {expected} bytes for curve '{crv}'."
    )]
    WrongCoordinateLength {
        /// `x` or `y`.
        member: &'static str,
        /// The curve name.
        crv: String,
        /// The coordinate length the curve requires.
        expected: usize,
    },
    /// `use` is neither `sig` nor `enc`.
    #[error("The 'use' of a key in the 'jwks' must be 'sig' or 'enc', not '{0}'.")]
    InvalidUse(String),
    /// An EC key has `use: enc`.
    #[error("Only RSA keys in the 'jwks' can have the 'use' value 'enc'.")]
    EncryptionKeyNotRsa,
}

/// Validates a whole JWKS: every key, the key count, and `kid` uniqueness.
/// Returns the first problem found.
pub(crate) fn validate_jwks(keys: &[Value]) -> Result<Vec<PublicJwk>, JwkError> {
    if keys.len() > MAX_KEYS {
        return Err(JwkError::TooManyKeys(keys.len()));
    }
    let parsed = keys
        .iter()
        .map(validate_jwk)
        .collect::<Result<Vec<_>, _>>()?;

    if parsed.len() > 1 {
        let mut kids = Vec::with_capacity(parsed.len());
        for key in &parsed {
            let kid = key.kid.as_deref().ok_or(JwkError::KidNotUnique)?;
            if kids.contains(&kid) {
                return Err(JwkError::KidNotUnique);
            }
            kids.push(kid);
        }
    }
    Ok(parsed)
}

/// Validates one public key.
pub(crate) fn validate_jwk(key: &Value) -> Result<PublicJwk, JwkError> {
    let members = key.as_object().ok_or(JwkError::NotAnObject)?;
    if let Some(private) = PRIVATE_MEMBERS
        .into_iter()
        .find(|name| members.contains_key(*name))
    {
        return Err(JwkError::PrivateMember(private));
    }

    let kty = optional_string(members, "kty")?.ok_or(JwkError::MissingKty)?;
    let kid = optional_string(members, "kid")?;
    let key_use = optional_string(members, "use")?;
    let alg = optional_string(members, "alg")?;

    let params = match kty.as_str() {
        "RSA" => rsa_params(members)?,
        "EC" => ec_params(members)?,
        _ => return Err(JwkError::UnsupportedKty(kty)),
    };

    match key_use.as_deref() {
        None | Some("sig") => {}
        Some("enc") if matches!(params, KeyParams::Rsa { .. }) => {}
        Some("enc") => return Err(JwkError::EncryptionKeyNotRsa),
        Some(other) => return Err(JwkError::InvalidUse(other.to_owned())),
    }

    Ok(PublicJwk {
        kid,
        key_use,
        alg,
        params,
    })
}

fn rsa_params(members: &Map<String, Value>) -> Result<KeyParams, JwkError> {
    let n = required_string(members, "RSA", "n")?;
    let e = required_string(members, "RSA", "e")?;
    let modulus = decode(&n, "n")?;
    let exponent = decode(&e, "e")?;

    if bit_length(&modulus) < MIN_RSA_BITS {
        return Err(JwkError::RsaKeyTooShort);
    }
    if bit_length(&exponent) == 0 {
        return Err(JwkError::RsaExponentZero);
    }
    Ok(KeyParams::Rsa { n, e })
}

fn ec_params(members: &Map<String, Value>) -> Result<KeyParams, JwkError> {
    let crv = required_string(members, "EC", "crv")?;
    let coordinate_len = match crv.as_str() {
        "P-256" => 32,
        "P-384" => 48,
        "P-521" => 66,
        _ => return Err(JwkError::UnsupportedCurve(crv)),
    };

    let x = required_string(members, "EC", "x")?;
    let y = required_string(members, "EC", "y")?;
    // NOTE: the coordinates are checked for length only, not for lying on
    // the curve.
    for (member, value) in [("x", &x), ("y", &y)] {
        if decode(value, member)?.len() != coordinate_len {
            return Err(JwkError::WrongCoordinateLength {
                member,
                crv,
                expected: coordinate_len,
            });
        }
    }
    Ok(KeyParams::Ec { crv, x, y })
}

/// Reads a member that may be absent or null but otherwise must be a string.
fn optional_string(
    members: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, JwkError> {
    match members.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(JwkError::NotAString(name)),
    }
}

fn required_string(
    members: &Map<String, Value>,
    kty: &'static str,
    name: &'static str,
) -> Result<String, JwkError> {
    optional_string(members, name)?.ok_or(JwkError::MissingMember { kty, member: name })
}

/// Decodes strict base64url: no padding, no characters outside the URL-safe
/// alphabet, and no non-zero trailing bits.
fn decode(value: &str, member: &'static str) -> Result<Vec<u8>, JwkError> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| JwkError::InvalidBase64(member))
}

/// Counts the bits of a big-endian unsigned integer, ignoring leading zeros.
fn bit_length(big_endian: &[u8]) -> usize {
    let significant = big_endian
        .iter()
        .position(|byte| *byte != 0)
        .map_or(&[][..], |first| &big_endian[first..]);
    match significant.first() {
        None => 0,
        Some(top) => (significant.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

/// Computes the JWK thumbprint of RFC 7638: the base64url-encoded SHA-256
/// of the key's required members, serialized as JSON in lexicographic order
/// without whitespace.
///
/// Supports `kty` `RSA` (`e`, `n`), `EC` (`crv`, `x`, `y`), `OKP` (`crv`,
/// `x`) and `oct` (`k`). Returns `None` for another `kty` or when a required
/// member is absent or not a string.
pub fn jwk_thumbprint(jwk: &Value) -> Option<String> {
    let kty = jwk.get("kty")?.as_str()?;
    let required: &[&str] = match kty {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "oct" => &["k", "kty"],
        _ => return None,
    };

    let mut canonical = String::from("{");
    for (index, name) in required.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if index > 0 {
            canonical.push(',');
        }
        // Serializing a `str` cannot fail, and it applies JSON escaping.
        canonical.push_str(&serde_json::to_string(name).ok()?);
        canonical.push(':');
        canonical.push_str(&serde_json::to_string(value).ok()?);
    }
    canonical.push('}');

    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

#[cfg(test)]
mod tests;
