//! Properties of RFC 7638 thumbprints and of the conversion between the
//! proto `Jwk` and Okta's JSON, over generated RSA and EC keys.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::sample::Index;
use registrar_api::v1::Jwk;
use registrar_server::jwk;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Generates a valid RSA public key: an odd modulus of 2048 to 4096 bits with its top
/// bit set, and a common exponent.
fn rsa_key() -> impl Strategy<Value = Jwk> {
    let modulus = (256usize..=512).prop_flat_map(|len| prop::collection::vec(any::<u8>(), len));
    let exponent = prop::sample::select(vec!["AQAB", "Aw", "EQ"]);
    (modulus, exponent).prop_map(|(mut modulus, exponent)| {
        modulus[0] |= 0x80;
        let last = modulus.len() - 1;
        modulus[last] |= 1;
        Jwk {
            kty: "RSA".into(),
            n: URL_SAFE_NO_PAD.encode(&modulus),
            e: exponent.into(),
            ..Jwk::default()
        }
    })
}

/// Generates a valid EC public key with coordinates of the right length for the curve.
/// The point is random, which validation allows (it does not check that
/// the point is on the curve).
fn ec_key() -> impl Strategy<Value = Jwk> {
    prop::sample::select(vec![("P-256", 32usize), ("P-384", 48), ("P-521", 66)]).prop_flat_map(
        |(curve, len)| {
            (
                prop::collection::vec(any::<u8>(), len),
                prop::collection::vec(any::<u8>(), len),
            )
                .prop_map(move |(x, y)| Jwk {
                    kty: "EC".into(),
                    crv: curve.into(),
                    x: URL_SAFE_NO_PAD.encode(x),
                    y: URL_SAFE_NO_PAD.encode(y),
                    ..Jwk::default()
                })
        },
    )
}

/// Generates a valid public key with optional `kid`, `use` and `alg` members.
fn public_key() -> impl Strategy<Value = Jwk> {
    let optional = (
        prop::option::of("[A-Za-z0-9._-]{1,40}"),
        any::<bool>(),
        any::<bool>(),
    );
    (prop_oneof![rsa_key(), ec_key()], optional).prop_map(|(mut key, (kid, with_use, with_alg))| {
        key.kid = kid.unwrap_or_default();
        if with_use {
            key.r#use = "sig".into();
        }
        if with_alg {
            key.alg = match key.crv.as_str() {
                "" => "RS256",
                "P-256" => "ES256",
                "P-384" => "ES384",
                _ => "ES512",
            }
            .into();
        }
        key
    })
}

/// Computes the thumbprint independently: SHA-256 of the required members
/// serialised with sorted names and no whitespace (RFC 7638 section 3).
fn reference_thumbprint(key: &Jwk) -> String {
    let mut members = BTreeMap::new();
    members.insert("kty", key.kty.as_str());
    if key.kty == "RSA" {
        members.insert("n", &key.n);
        members.insert("e", &key.e);
    } else {
        members.insert("crv", &key.crv);
        members.insert("x", &key.x);
        members.insert("y", &key.y);
    }
    let canonical = serde_json::to_string(&members).expect("a map of strings serialises");
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Writes a JSON object by hand with its members in the given order and
/// the given whitespace around every token.
fn object_text(members: &[(String, Value)], space: &str) -> String {
    let parts: Vec<String> = members
        .iter()
        .map(|(name, value)| {
            format!(
                "{space}{}{space}:{space}{value}{space}",
                Value::from(name.as_str())
            )
        })
        .collect();
    format!("{space}{{{}}}{space}", parts.join(","))
}

/// Generates a subset of the members that Okta adds to the keys it returns, or that a JWK may carry
/// without changing its key material.
fn extra_members() -> impl Strategy<Value = Vec<(String, Value)>> {
    let all = vec![
        ("id".to_string(), Value::from("pks1a2b3c4d5e6f7g8h9")),
        ("status".to_string(), Value::from("ACTIVE")),
        (
            "created".to_string(),
            Value::from("2026-01-01T00:00:00.000Z"),
        ),
        ("key_ops".to_string(), serde_json::json!(["verify"])),
        ("x5t#S256".to_string(), Value::from("ignored")),
        (
            "_links".to_string(),
            serde_json::json!({"self": {"href": "https://example.okta.com"}}),
        ),
    ];
    prop::sample::subsequence(all.clone(), 0..=all.len())
}

proptest! {
    #[test]
    fn thumbprint_matches_reference(key in public_key()) {
        prop_assert_eq!(jwk::thumbprint(&key), Some(reference_thumbprint(&key)));
    }

    #[test]
    fn thumbprint_ignores_order_whitespace_and_extras(
        key in public_key(),
        extras in extra_members(),
        order in any::<Index>(),
        space in prop::sample::select(vec!["", " ", "\n", "\t ", "\r\n  "]),
    ) {
        let expected = jwk::thumbprint(&key).expect("a generated key has a thumbprint");
        let mut members: Vec<(String, Value)> = match jwk::to_okta_json(&key) {
            Value::Object(object) => object.into_iter().collect(),
            other => panic!("to_okta_json returned {other}"),
        };
        members.extend(extras);
        // Rotate the members by a random amount, then swap two of them, so
        // that every member can land first.
        let shift = order.index(members.len());
        members.rotate_left(shift);
        let last = members.len() - 1;
        members.swap(0, last);

        let text = object_text(&members, space);
        let value: Value = serde_json::from_str(&text).expect("the hand-written object parses");
        let read = jwk::from_okta_json(&value);
        prop_assert_eq!(read.thumbprint, expected);
    }

    #[test]
    fn equal_keys_equal_thumbprints(key in public_key(), kid in "[a-z0-9]{0,10}") {
        let relabelled = Jwk { kid, r#use: String::new(), alg: String::new(), ..key.clone() };
        prop_assert_eq!(jwk::thumbprint(&key), jwk::thumbprint(&relabelled));
    }

    #[test]
    fn different_keys_different_thumbprints(a in public_key(), b in public_key()) {
        let same_material = a.kty == b.kty && a.n == b.n && a.e == b.e
            && a.crv == b.crv && a.x == b.x && a.y == b.y;
        prop_assume!(!same_material);
        prop_assert_ne!(jwk::thumbprint(&a), jwk::thumbprint(&b));
    }

    #[test]
    fn one_flipped_bit_changes_thumbprint(key in rsa_key(), bit in 1usize..2040) {
        let mut modulus = URL_SAFE_NO_PAD.decode(&key.n).expect("generated modulus decodes");
        let byte = modulus.len() - 1 - bit / 8;
        modulus[byte] ^= 1 << (bit % 8);
        let other = Jwk { n: URL_SAFE_NO_PAD.encode(&modulus), ..key.clone() };
        prop_assert_ne!(jwk::thumbprint(&key), jwk::thumbprint(&other));
    }

    #[test]
    fn generated_keys_are_valid(key in public_key()) {
        prop_assert_eq!(jwk::validate_jwk("key", &key), Ok(()));
    }

    #[test]
    fn okta_json_round_trip(key in public_key(), extras in extra_members()) {
        // The text Okta would send back: the registered members plus its own.
        let mut json = jwk::to_okta_json(&key);
        let object = json.as_object_mut().expect("to_okta_json returns an object");
        for (name, value) in extras {
            object.insert(name, value);
        }
        let text = serde_json::to_string(&json).expect("JSON serialises");
        let value: Value = serde_json::from_str(&text).expect("JSON parses");

        let read = jwk::from_okta_json(&value);
        prop_assert_eq!(read.jwk.as_ref(), Some(&key));
        prop_assert_eq!(&read.kid, &key.kid);
        prop_assert_eq!(Some(read.thumbprint), jwk::thumbprint(&key));
    }

    #[test]
    fn okta_null_use_reads_as_empty(key in public_key()) {
        let mut json = jwk::to_okta_json(&key);
        json["use"] = Value::Null;
        let read = jwk::from_okta_json(&json).jwk.expect("from_okta_json sets the JWK");
        prop_assert_eq!(read, Jwk { r#use: String::new(), ..key });
    }

    #[test]
    fn validate_jwk_never_panics(
        kty in prop::sample::select(vec!["RSA", "EC", "", "oct"]),
        members in prop::collection::vec(".{0,80}", 14),
    ) {
        let key = Jwk {
            kty: kty.into(),
            kid: members[0].clone(),
            r#use: members[1].clone(),
            alg: members[2].clone(),
            n: members[3].clone(),
            e: members[4].clone(),
            crv: members[5].clone(),
            x: members[6].clone(),
            y: members[7].clone(),
            d: members[8].clone(),
            p: members[9].clone(),
            q: members[10].clone(),
            dp: members[11].clone(),
            dq: members[12].clone(),
            qi: members[13].clone(),
        };
        if let Err(error) = jwk::validate_jwk("key", &key) {
            prop_assert!(error.field.starts_with("key."), "{}", error.field);
            prop_assert!(error.to_string().len() <= 1024);
        }
        let _ = jwk::thumbprint(&key);
    }
}
