use super::*;

/// The 2048-bit RSA modulus of the example key in RFC 7638 section 3.1.
const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

/// The P-256 public key of RFC 7517 appendix A.1.
const EC_X: &str = "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4";
const EC_Y: &str = "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM";

fn rsa_key(kid: &str) -> Value {
    json!({ "kty": "RSA", "kid": kid, "e": "AQAB", "n": RFC7638_N, "use": "sig", "alg": "RS256" })
}

fn ec_key(kid: &str) -> Value {
    json!({ "kty": "EC", "kid": kid, "crv": "P-256", "x": EC_X, "y": EC_Y })
}

#[test]
fn thumbprint_matches_rfc7638_vector() {
    let key = json!({
        "kty": "RSA",
        "n": RFC7638_N,
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    assert_eq!(
        jwk_thumbprint(&key).as_deref(),
        Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
}

#[test]
fn thumbprint_ignores_optional_members() {
    let mut key = ec_key("a");
    let without_kid = jwk_thumbprint(&key);
    key["kid"] = json!("b");
    key["use"] = json!("sig");
    assert!(without_kid.is_some());
    assert_eq!(jwk_thumbprint(&key), without_kid);
}

#[test]
fn thumbprint_rejects_unknown_kty_and_missing_member() {
    assert_eq!(jwk_thumbprint(&json!({ "kty": "XYZ", "n": "a" })), None);
    assert_eq!(jwk_thumbprint(&json!({ "kty": "RSA", "e": "AQAB" })), None);
    assert_eq!(
        jwk_thumbprint(&json!({ "kty": "RSA", "e": 3, "n": "a" })),
        None
    );
}

#[test]
fn valid_rsa_key_keeps_public_members() {
    let key = validate_jwk(&rsa_key("k1")).expect("a 2048-bit RSA key is valid");
    assert_eq!(key.kid.as_deref(), Some("k1"));
    assert_eq!(key.key_use.as_deref(), Some("sig"));
    assert_eq!(key.alg.as_deref(), Some("RS256"));

    let echo = Value::Object(key.echo_json());
    assert_eq!(
        echo,
        json!({ "kty": "RSA", "kid": "k1", "use": "sig", "e": "AQAB", "n": RFC7638_N })
    );
}

#[test]
fn echo_shows_null_use_and_kid() {
    let key = validate_jwk(&json!({ "kty": "RSA", "e": "AQAB", "n": RFC7638_N }))
        .expect("a key without kid and use is valid");
    let echo = key.echo_json();
    assert_eq!(echo["use"], Value::Null);
    assert_eq!(echo["kid"], Value::Null);
}

#[test]
fn valid_ec_key() {
    let key = validate_jwk(&ec_key("e1")).expect("a P-256 key is valid");
    assert_eq!(key.kty(), "EC");
    assert_eq!(key.echo_json()["crv"], "P-256");
}

#[test]
fn rejects_short_rsa_modulus() {
    let short = URL_SAFE_NO_PAD.encode([0xC5_u8; 128]);
    let key = json!({ "kty": "RSA", "e": "AQAB", "n": short });
    assert_eq!(validate_jwk(&key), Err(JwkError::RsaKeyTooShort));
}

#[test]
fn leading_zero_bytes_do_not_count() {
    let mut modulus = vec![0_u8];
    modulus.extend([0x7F_u8; 256]);
    let key = json!({ "kty": "RSA", "e": "AQAB", "n": URL_SAFE_NO_PAD.encode(&modulus) });
    // 0x7F has 7 significant bits, so the modulus has 2047 bits.
    assert_eq!(validate_jwk(&key), Err(JwkError::RsaKeyTooShort));
}

#[test]
fn rejects_bad_base64() {
    let padded = format!("{RFC7638_N}==");
    let cases = [
        ("n", json!({ "kty": "RSA", "e": "AQAB", "n": padded })),
        ("n", json!({ "kty": "RSA", "e": "AQAB", "n": "abc+def/" })),
        ("e", json!({ "kty": "RSA", "e": "AQAB=", "n": RFC7638_N })),
        (
            "x",
            json!({ "kty": "EC", "crv": "P-256", "x": "not base64!", "y": EC_Y }),
        ),
    ];
    for (member, key) in cases {
        assert_eq!(
            validate_jwk(&key),
            Err(JwkError::InvalidBase64(member)),
            "{key}"
        );
    }
}

#[test]
fn rejects_private_members() {
    for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        let mut key = rsa_key("k1");
        key[member] = json!("AQAB");
        assert_eq!(
            validate_jwk(&key),
            Err(JwkError::PrivateMember(member)),
            "{member}"
        );
    }
}

#[test]
fn rejects_kty_problems() {
    assert_eq!(
        validate_jwk(&json!({ "kty": "oct2" })),
        Err(JwkError::UnsupportedKty("oct2".into()))
    );
    assert_eq!(
        validate_jwk(&json!({ "e": "AQAB" })),
        Err(JwkError::MissingKty)
    );
    assert_eq!(validate_jwk(&json!("RSA")), Err(JwkError::NotAnObject));
}

#[test]
fn rejects_missing_rsa_members() {
    assert_eq!(
        validate_jwk(&json!({ "kty": "RSA", "e": "AQAB" })),
        Err(JwkError::MissingMember {
            kty: "RSA",
            member: "n"
        })
    );
}

#[test]
fn rejects_bad_ec_curve_and_length() {
    let mut key = ec_key("e1");
    key["crv"] = json!("secp256k1");
    assert_eq!(
        validate_jwk(&key),
        Err(JwkError::UnsupportedCurve("secp256k1".into()))
    );

    let mut key = ec_key("e1");
    key["crv"] = json!("P-384");
    assert_eq!(
        validate_jwk(&key),
        Err(JwkError::WrongCoordinateLength {
            member: "x",
            crv: "P-384".into(),
            expected: 48
        })
    );
}

#[test]
fn rejects_bad_use() {
    let mut key = rsa_key("k1");
    key["use"] = json!("wrap");
    assert_eq!(validate_jwk(&key), Err(JwkError::InvalidUse("wrap".into())));

    let mut key = rsa_key("k1");
    key["use"] = json!("enc");
    assert!(validate_jwk(&key).is_ok());

    let mut key = ec_key("e1");
    key["use"] = json!("enc");
    assert_eq!(validate_jwk(&key), Err(JwkError::EncryptionKeyNotRsa));
}

#[test]
fn jwks_requires_unique_kids() {
    let duplicate = [rsa_key("same"), ec_key("same")];
    assert_eq!(validate_jwks(&duplicate), Err(JwkError::KidNotUnique));

    let missing = [
        rsa_key("a"),
        json!({ "kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y }),
    ];
    assert_eq!(validate_jwks(&missing), Err(JwkError::KidNotUnique));

    let single_without_kid = [json!({ "kty": "RSA", "e": "AQAB", "n": RFC7638_N })];
    assert!(validate_jwks(&single_without_kid).is_ok());
}

#[test]
fn jwks_allows_fifty_keys_but_not_fifty_one() {
    let fifty: Vec<_> = (0..50).map(|i| rsa_key(&format!("k{i}"))).collect();
    assert_eq!(validate_jwks(&fifty).map(|keys| keys.len()), Ok(50));

    let fifty_one: Vec<_> = (0..51).map(|i| rsa_key(&format!("k{i}"))).collect();
    assert_eq!(validate_jwks(&fifty_one), Err(JwkError::TooManyKeys(51)));
}

#[test]
fn bit_length_counts_significant_bits() {
    assert_eq!(bit_length(&[]), 0);
    assert_eq!(bit_length(&[0, 0]), 0);
    assert_eq!(bit_length(&[1]), 1);
    assert_eq!(bit_length(&[0, 0x80, 0]), 16);
}
