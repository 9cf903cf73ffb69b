use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use super::*;
use crate::jws::b64;

const URL: &str = "http://127.0.0.1:1/oauth2/v1/token";
const NOW: i64 = 1_800_000_000;

struct ProofKey {
    pair: EcdsaKeyPair,
    jwk: Value,
}

impl ProofKey {
    fn new() -> Self {
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

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("signing succeeds");
        format!("{input}.{}", b64(signature.as_ref()))
    }

    fn header(&self) -> Value {
        json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk })
    }

    fn proof(&self, claims: &Value) -> String {
        self.sign(&self.header(), claims)
    }
}

fn claims(jti: &str) -> Value {
    json!({ "htm": "POST", "htu": URL, "iat": NOW, "jti": jti })
}

fn token_request() -> ExpectedRequest<'static> {
    ExpectedRequest {
        method: "POST",
        url: URL,
        access_token: None,
    }
}

fn times() -> ProofTimes {
    ProofTimes {
        now: NOW,
        leeway: 5,
    }
}

fn rejection(proof: &str, expected: ExpectedRequest<'_>) -> String {
    let mut state = OAuthState::default();
    validate(proof, expected, times(), &mut state)
        .expect_err("the proof is invalid")
        .description()
        .to_owned()
}

#[test]
fn valid_proof_returns_thumbprint() {
    let key = ProofKey::new();
    let mut state = OAuthState::default();
    let mut with_nonce = claims("a");
    with_nonce["nonce"] = json!("n1");
    let valid = validate(
        &key.proof(&with_nonce),
        token_request(),
        times(),
        &mut state,
    )
    .expect("a valid proof");
    assert_eq!(Some(valid.jkt), jwk_thumbprint(&key.jwk));
    assert_eq!(valid.nonce.as_deref(), Some("n1"));
}

#[test]
fn replayed_jti_is_rejected() {
    let key = ProofKey::new();
    let proof = key.proof(&claims("same"));
    let mut state = OAuthState::default();
    validate(&proof, token_request(), times(), &mut state).expect("first use");
    let error = validate(&proof, token_request(), times(), &mut state).expect_err("replay");
    assert_eq!(error.description(), REPLAYED);
}

#[test]
fn header_problems_are_rejected() {
    let key = ProofKey::new();
    let body = claims("h");

    let wrong_typ = json!({ "typ": "JWT", "alg": "ES256", "jwk": key.jwk });
    assert_eq!(
        rejection(&key.sign(&wrong_typ, &body), token_request()),
        BAD_TYP
    );

    let hmac = json!({ "typ": "dpop+jwt", "alg": "HS256", "jwk": key.jwk });
    assert_eq!(rejection(&key.sign(&hmac, &body), token_request()), BAD_ALG);

    let mut private = key.jwk.clone();
    private["d"] = json!("AAAA");
    let with_private = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": private });
    assert_eq!(
        rejection(&key.sign(&with_private, &body), token_request()),
        UNPARSABLE
    );

    let other = ProofKey::new();
    let foreign_key = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": other.jwk });
    assert_eq!(
        rejection(&key.sign(&foreign_key, &body), token_request()),
        BAD_SIGNATURE
    );

    assert_eq!(rejection("not-a-jwt", token_request()), UNPARSABLE);
}

#[test]
fn claim_problems_are_rejected() {
    let key = ProofKey::new();
    let cases = [
        ("htm", json!("GET"), BAD_HTM),
        ("htu", json!("http://127.0.0.1:1/oauth2/v1/token/"), BAD_HTU),
        ("iat", json!("yesterday"), BAD_IAT),
        ("iat", json!(NOW + 60), IN_FUTURE),
        ("iat", json!(NOW - 301), TOO_OLD),
        ("exp", json!(NOW), EXPIRED),
        ("jti", json!(""), BAD_JTI),
    ];
    for (claim, value, expected) in cases {
        let mut body = claims(&format!("c-{claim}"));
        body[claim] = value;
        assert_eq!(
            rejection(&key.proof(&body), token_request()),
            expected,
            "{claim}"
        );
    }
}

#[test]
fn htu_ignores_query() {
    let key = ProofKey::new();
    let mut body = claims("q");
    body["htu"] = json!(format!("{URL}?x=1"));
    let mut state = OAuthState::default();
    validate(&key.proof(&body), token_request(), times(), &mut state).expect("query is ignored");
}

#[test]
fn ath_must_match_token() {
    let key = ProofKey::new();
    let resource = ExpectedRequest {
        method: "GET",
        url: "http://127.0.0.1:1/api/v1/users",
        access_token: Some("token-1"),
    };
    let mut body = json!({
        "htm": "GET",
        "htu": resource.url,
        "iat": NOW,
        "jti": "r1",
        "ath": access_token_hash("token-2"),
    });
    assert_eq!(rejection(&key.proof(&body), resource), BAD_ATH);

    body["ath"] = json!(access_token_hash("token-1"));
    let mut state = OAuthState::default();
    validate(&key.proof(&body), resource, times(), &mut state).expect("matching ath");
}

#[test]
fn multiple_headers_are_rejected() {
    let mut headers = HeaderMap::new();
    assert_eq!(proof_header(&headers).expect("no header"), None);
    headers.append(DPOP, "a".parse().expect("ASCII"));
    assert_eq!(proof_header(&headers).expect("one header"), Some("a"));
    headers.append(DPOP, "b".parse().expect("ASCII"));
    let error = proof_header(&headers).expect_err("two headers");
    assert_eq!(error.description(), MULTIPLE);
}
