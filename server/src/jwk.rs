//! Public JSON Web Keys: validation of caller-supplied keys, conversion
//! between the proto message and Okta's JSON, and RFC 7638 thumbprints.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use registrar_api::v1::{Jwk, Jwks, KeyStatus, PublicKey};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::validate::{self, InvalidArgument};

/// The maximum number of keys Okta stores for one app.
pub const MAX_KEYS: usize = 50;
/// The smallest RSA modulus Okta accepts, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits. Larger keys are slow to verify
/// and no Okta documentation mentions them.
pub const MAX_RSA_BITS: usize = 8192;
/// How much of an invalid member value an error message repeats, in
/// characters, so that a huge value cannot make a huge `grpc-message`.
const MAX_ECHO_CHARS: usize = 40;

/// Validates a caller-supplied JWKS. The error names the key by index and
/// the member at fault, and never echoes a private member's value.
pub fn validate_jwks(field: &str, jwks: &Jwks) -> Result<(), InvalidArgument> {
    if jwks.keys.is_empty() {
        return Err(InvalidArgument::new(
            format!("{field}.keys"),
            "is empty; supply at least one public key",
        ));
    }
    if jwks.keys.len() > MAX_KEYS {
        return Err(InvalidArgument::new(
            format!("{field}.keys"),
            format!(
                "has {} keys; Okta stores at most {MAX_KEYS} keys per app",
                jwks.keys.len()
            ),
        ));
    }

    let mut kids = HashSet::new();
    let mut thumbprints = HashSet::new();
    for (index, key) in jwks.keys.iter().enumerate() {
        let key_field = format!("{field}.keys[{index}]");
        validate_jwk(&key_field, key)?;
        if key.kid.is_empty() && jwks.keys.len() > 1 {
            return Err(InvalidArgument::new(
                format!("{key_field}.kid"),
                "is missing; every key needs a kid when the JWKS holds more than one key",
            ));
        }
        if !key.kid.is_empty() && !kids.insert(key.kid.as_str()) {
            return Err(InvalidArgument::new(
                format!("{key_field}.kid"),
                format!(
                    "{:?} is used by another key; kids must be unique",
                    validate::truncate(&key.kid, MAX_ECHO_CHARS)
                ),
            ));
        }
        let thumbprint = thumbprint(key).expect("a validated key has its thumbprint members");
        if !thumbprints.insert(thumbprint) {
            return Err(InvalidArgument::new(
                key_field,
                "is the same key material as an earlier key; remove the duplicate",
            ));
        }
    }
    Ok(())
}

/// Validates one public JWK.
pub fn validate_jwk(field: &str, key: &Jwk) -> Result<(), InvalidArgument> {
    let private_members = [
        ("d", &key.d),
        ("p", &key.p),
        ("q", &key.q),
        ("dp", &key.dp),
        ("dq", &key.dq),
        ("qi", &key.qi),
    ];
    if let Some((name, _)) = private_members.iter().find(|(_, value)| !value.is_empty()) {
        return Err(InvalidArgument::new(
            format!("{field}.{name}"),
            "is a private key member; send only the public key (kty, kid, use, alg and n, e or crv, x, y) and keep the private key secret",
        ));
    }

    validate::kid(&format!("{field}.kid"), &key.kid)?;
    match key.r#use.as_str() {
        "" | "sig" => {}
        "enc" => {
            return Err(InvalidArgument::new(
                format!("{field}.use"),
                "is \"enc\"; service apps sign client assertions, so use \"sig\" or leave it empty",
            ));
        }
        other => {
            return Err(InvalidArgument::new(
                format!("{field}.use"),
                format!(
                    "{:?} is not a key use; use \"sig\" or leave it empty",
                    validate::truncate(other, MAX_ECHO_CHARS)
                ),
            ));
        }
    }

    match key.kty.as_str() {
        "RSA" => validate_rsa(field, key),
        "EC" => validate_ec(field, key),
        "" => Err(InvalidArgument::new(
            format!("{field}.kty"),
            "is missing; use \"RSA\" or \"EC\"",
        )),
        other => Err(InvalidArgument::new(
            format!("{field}.kty"),
            format!(
                "{:?} is not a supported key type; use \"RSA\" or \"EC\"",
                validate::truncate(other, MAX_ECHO_CHARS)
            ),
        )),
    }
}

fn validate_rsa(field: &str, key: &Jwk) -> Result<(), InvalidArgument> {
    for (name, value) in [("crv", &key.crv), ("x", &key.x), ("y", &key.y)] {
        if !value.is_empty() {
            return Err(InvalidArgument::new(
                format!("{field}.{name}"),
                "is an EC member but kty is \"RSA\"; remove it",
            ));
        }
    }
    if !matches!(key.alg.as_str(), "" | "RS256" | "RS384" | "RS512") {
        return Err(InvalidArgument::new(
            format!("{field}.alg"),
            format!(
                "{:?} does not fit an RSA key; use RS256, RS384 or RS512",
                validate::truncate(&key.alg, MAX_ECHO_CHARS)
            ),
        ));
    }

    let modulus = decode_member(field, "n", &key.n)?;
    if modulus.first() == Some(&0) {
        return Err(InvalidArgument::new(
            format!("{field}.n"),
            "has a leading zero byte; RFC 7518 requires the minimal encoding, so drop the leading zero",
        ));
    }
    let bits = bit_length(&modulus);
    if bits < MIN_RSA_BITS {
        return Err(InvalidArgument::new(
            format!("{field}.n"),
            format!("is a {bits}-bit RSA modulus; Okta requires at least {MIN_RSA_BITS} bits"),
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(InvalidArgument::new(
            format!("{field}.n"),
            format!("is a {bits}-bit RSA modulus; the maximum is {MAX_RSA_BITS} bits"),
        ));
    }
    if modulus.last().is_some_and(|byte| byte % 2 == 0) {
        return Err(InvalidArgument::new(
            format!("{field}.n"),
            "is even, so it is not an RSA modulus",
        ));
    }

    let exponent = decode_member(field, "e", &key.e)?;
    if exponent.first() == Some(&0) {
        return Err(InvalidArgument::new(
            format!("{field}.e"),
            "has a leading zero byte; RFC 7518 requires the minimal encoding, such as \"AQAB\"",
        ));
    }
    let exponent_odd = exponent.last().is_some_and(|byte| byte % 2 == 1);
    if bit_length(&exponent) < 2 || exponent.len() > 8 || !exponent_odd {
        return Err(InvalidArgument::new(
            format!("{field}.e"),
            "is not a valid RSA public exponent; it is usually \"AQAB\" (65537)",
        ));
    }
    Ok(())
}

fn validate_ec(field: &str, key: &Jwk) -> Result<(), InvalidArgument> {
    for (name, value) in [("n", &key.n), ("e", &key.e)] {
        if !value.is_empty() {
            return Err(InvalidArgument::new(
                format!("{field}.{name}"),
                "is an RSA member but kty is \"EC\"; remove it",
            ));
        }
    }
    let (coordinate_len, alg) = match key.crv.as_str() {
        "P-256" => (32, "ES256"),
        "P-384" => (48, "ES384"),
        "P-521" => (66, "ES512"),
        "" => {
            return Err(InvalidArgument::new(
                format!("{field}.crv"),
                "is missing; use \"P-256\", \"P-384\" or \"P-521\"",
            ));
        }
        other => {
            return Err(InvalidArgument::new(
                format!("{field}.crv"),
                format!(
                    "{:?} is not a supported curve; use \"P-256\", \"P-384\" or \"P-521\"",
                    validate::truncate(other, MAX_ECHO_CHARS)
                ),
            ));
        }
    };
    if !key.alg.is_empty() && key.alg != alg {
        return Err(InvalidArgument::new(
            format!("{field}.alg"),
            format!(
                "{:?} does not fit curve {}; use {alg}",
                validate::truncate(&key.alg, MAX_ECHO_CHARS),
                key.crv
            ),
        ));
    }
    // NOTE: the point is not checked to lie on the curve; Okta rejects such a
    // key when it is registered or used.
    for (name, value) in [("x", &key.x), ("y", &key.y)] {
        let bytes = decode_member(field, name, value)?;
        if bytes.len() != coordinate_len {
            return Err(InvalidArgument::new(
                format!("{field}.{name}"),
                format!(
                    "decodes to {} bytes; a {} coordinate has {coordinate_len} bytes",
                    bytes.len(),
                    key.crv
                ),
            ));
        }
    }
    Ok(())
}

fn decode_member(field: &str, name: &str, value: &str) -> Result<Vec<u8>, InvalidArgument> {
    if value.is_empty() {
        return Err(InvalidArgument::new(
            format!("{field}.{name}"),
            "is missing",
        ));
    }
    URL_SAFE_NO_PAD.decode(value).map_err(|_| {
        InvalidArgument::new(
            format!("{field}.{name}"),
            "is not valid base64url; encode it with the URL-safe alphabet and no '=' padding (RFC 7515)",
        )
    })
}

fn bit_length(bytes: &[u8]) -> usize {
    let Some(first) = bytes.iter().position(|byte| *byte != 0) else {
        return 0;
    };
    let leading = bytes[first].leading_zeros() as usize;
    (bytes.len() - first) * 8 - leading
}

/// Computes the RFC 7638 JWK SHA-256 thumbprint, base64url without padding.
/// Returns `None` when a required member is missing.
pub fn thumbprint(key: &Jwk) -> Option<String> {
    // The members in lexicographic order, as RFC 7638 section 3.2 requires;
    // serde_json writes them without whitespace.
    let canonical = match key.kty.as_str() {
        "RSA" if !key.n.is_empty() && !key.e.is_empty() => {
            format!(
                r#"{{"e":{},"kty":"RSA","n":{}}}"#,
                json!(key.e),
                json!(key.n)
            )
        }
        "EC" if !key.crv.is_empty() && !key.x.is_empty() && !key.y.is_empty() => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            json!(key.crv),
            json!(key.x),
            json!(key.y)
        ),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// Converts a validated public key into the JSON that Okta's registration
/// endpoint accepts. Empty members are left out.
pub fn to_okta_json(key: &Jwk) -> Value {
    let mut object = Map::new();
    let members = [
        ("kty", &key.kty),
        ("kid", &key.kid),
        ("use", &key.r#use),
        ("alg", &key.alg),
        ("n", &key.n),
        ("e", &key.e),
        ("crv", &key.crv),
        ("x", &key.x),
        ("y", &key.y),
    ];
    for (name, value) in members {
        if !value.is_empty() {
            object.insert(name.to_string(), Value::String(value.clone()));
        }
    }
    Value::Object(object)
}

/// Converts one of Okta's key objects into a [`PublicKey`], keeping only
/// public members. Okta echoes `use` as `null` and may leave out `alg`.
pub fn from_okta_json(value: &Value) -> PublicKey {
    let member = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let jwk = Jwk {
        kty: member("kty"),
        kid: member("kid"),
        r#use: member("use"),
        alg: member("alg"),
        n: member("n"),
        e: member("e"),
        crv: member("crv"),
        x: member("x"),
        y: member("y"),
        ..Jwk::default()
    };
    let status = match member("status").as_str() {
        "ACTIVE" => KeyStatus::Active,
        "INACTIVE" => KeyStatus::Inactive,
        _ => KeyStatus::Unspecified,
    };
    PublicKey {
        kid: jwk.kid.clone(),
        thumbprint: thumbprint(&jwk).unwrap_or_default(),
        okta_key_id: member("id"),
        status: status as i32,
        jwk: Some(jwk),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RSA key of RFC 7638 section 3.1.
    fn rfc7638_key() -> Jwk {
        Jwk {
            kty: "RSA".into(),
            kid: "2011-04-29".into(),
            alg: "RS256".into(),
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
            e: "AQAB".into(),
            ..Jwk::default()
        }
    }

    #[test]
    fn thumbprint_matches_rfc7638() {
        assert_eq!(
            thumbprint(&rfc7638_key()).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn thumbprint_ignores_kid_and_alg() {
        let mut key = rfc7638_key();
        let before = thumbprint(&key);
        key.kid = "other".into();
        key.alg = String::new();
        assert_eq!(thumbprint(&key), before);
    }

    #[test]
    fn bit_length_counts_from_first_set_bit() {
        assert_eq!(bit_length(&[0, 0x01]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[0, 0]), 0);
    }

    #[test]
    fn valid_key_passes() {
        assert_eq!(validate_jwk("jwks.keys[0]", &rfc7638_key()), Ok(()));
    }

    #[test]
    fn private_member_rejected_without_echo() {
        let key = Jwk {
            d: "c2VjcmV0LXByaXZhdGUtZXhwb25lbnQ".into(),
            ..rfc7638_key()
        };
        let err = validate_jwk("jwks.keys[0]", &key).expect_err("private member");
        assert_eq!(err.field, "jwks.keys[0].d");
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn short_modulus_rejected() {
        let key = Jwk {
            n: URL_SAFE_NO_PAD.encode([0xC1u8; 128]),
            ..rfc7638_key()
        };
        let err = validate_jwk("k", &key).expect_err("1024-bit key");
        assert_eq!(err.field, "k.n");
        assert!(err.message.contains("1024-bit"), "{err}");
    }

    #[test]
    fn leading_zero_rejected() {
        let mut modulus = URL_SAFE_NO_PAD.decode(rfc7638_key().n).expect("modulus");
        modulus.insert(0, 0);
        let key = Jwk {
            n: URL_SAFE_NO_PAD.encode(modulus),
            ..rfc7638_key()
        };
        assert_eq!(
            validate_jwk("k", &key).expect_err("leading zero").field,
            "k.n"
        );
        let key = Jwk {
            e: "AAEAAQ".into(),
            ..rfc7638_key()
        };
        assert_eq!(
            validate_jwk("k", &key).expect_err("leading zero").field,
            "k.e"
        );
    }

    #[test]
    fn long_member_values_are_shortened() {
        let key = Jwk {
            kty: "K".repeat(10_000),
            ..rfc7638_key()
        };
        let err = validate_jwk("k", &key).expect_err("unknown kty");
        assert_eq!(err.field, "k.kty");
        assert!(err.message.len() < 200, "{} bytes", err.message.len());
        let key = Jwk {
            alg: "A".repeat(10_000),
            ..rfc7638_key()
        };
        let err = validate_jwk("k", &key).expect_err("unknown alg");
        assert_eq!(err.field, "k.alg");
        assert!(err.message.len() < 200, "{} bytes", err.message.len());
    }

    #[test]
    fn padded_base64_rejected() {
        let key = Jwk {
            e: "AQAB=".into(),
            ..rfc7638_key()
        };
        let err = validate_jwk("k", &key).expect_err("padding");
        assert_eq!(err.field, "k.e");
        assert!(err.message.contains("base64url"), "{err}");
    }

    #[test]
    fn ec_key_checks_coordinates() {
        let good = Jwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: URL_SAFE_NO_PAD.encode([1u8; 32]),
            y: URL_SAFE_NO_PAD.encode([2u8; 32]),
            ..Jwk::default()
        };
        assert_eq!(validate_jwk("k", &good), Ok(()));
        let short = Jwk {
            y: URL_SAFE_NO_PAD.encode([2u8; 31]),
            ..good.clone()
        };
        assert_eq!(validate_jwk("k", &short).expect_err("short").field, "k.y");
        let wrong_alg = Jwk {
            alg: "ES384".into(),
            ..good
        };
        assert_eq!(
            validate_jwk("k", &wrong_alg).expect_err("alg").field,
            "k.alg"
        );
    }

    #[test]
    fn jwks_rules() {
        let empty = Jwks { keys: vec![] };
        assert_eq!(
            validate_jwks("jwks", &empty).expect_err("empty").field,
            "jwks.keys"
        );

        let no_kid = Jwk {
            kid: String::new(),
            ..rfc7638_key()
        };
        let mut other = rfc7638_key();
        other.n = other.n.replacen('0', "1", 1);
        let two = Jwks {
            keys: vec![other, no_kid.clone()],
        };
        assert_eq!(
            validate_jwks("jwks", &two).expect_err("kid").field,
            "jwks.keys[1].kid"
        );

        let single = Jwks { keys: vec![no_kid] };
        assert_eq!(validate_jwks("jwks", &single), Ok(()));

        let duplicate = Jwks {
            keys: vec![rfc7638_key(), rfc7638_key()],
        };
        let err = validate_jwks("jwks", &duplicate).expect_err("duplicate kid");
        assert_eq!(err.field, "jwks.keys[1].kid");
    }

    #[test]
    fn okta_json_round_trip() {
        let key = rfc7638_key();
        let mut json = to_okta_json(&key);
        assert!(json.get("d").is_none());
        json["status"] = Value::String("ACTIVE".into());
        json["id"] = Value::String("pks123".into());
        json["use"] = Value::Null;
        let public = from_okta_json(&json);
        assert_eq!(public.kid, "2011-04-29");
        assert_eq!(public.okta_key_id, "pks123");
        assert_eq!(public.status, KeyStatus::Active as i32);
        assert_eq!(
            public.thumbprint,
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
