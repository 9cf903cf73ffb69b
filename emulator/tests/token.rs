//! Token endpoint: client assertions, scopes, the clock offset, rate
//! limits, and Bearer tokens on `GET /api/v1/users`.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::jose::{self, assertion, assertion_claims, rsa_public_jwk};
use common::{TOKEN, TestOrg, assert_oauth_error, assert_okta_error, json_body};
use okta_emulator::{Config, RateLimits};
use reqwest::Method;
use serde_json::{Value, json};

const USERS_READ: &str = "okta.users.read";

/// Registers an app with one key (shared RSA key 0, kid `k0`) and the
/// `okta.users.read` grant.
async fn one_key_app(org: &TestOrg) -> String {
    org.service_app("svc", vec![rsa_public_jwk(0, "k0")], &[USERS_READ])
        .await
}

/// Registers an app with two keys (RSA keys 0 and 1, kids `k0` and `k1`).
async fn two_key_app(org: &TestOrg) -> String {
    let keys = vec![rsa_public_jwk(0, "k0"), rsa_public_jwk(1, "k1")];
    org.service_app("svc2", keys, &[USERS_READ]).await
}

/// Sends an assertion for `okta.users.read` and expects `invalid_client`
/// with `description`.
async fn assert_rejected(org: &TestOrg, signed: &str, description: &str) {
    let response = org.client_credentials(signed, USERS_READ, None).await;
    assert_oauth_error(response, 401, "invalid_client", description).await;
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[tokio::test]
async fn valid_assertion_token_reads_users() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );

    let response = org.client_credentials(&signed, USERS_READ, None).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["cache-control"], "no-cache, no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert!(headers.get("x-rate-limit-limit").is_some());
    let body = json_body(response).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], USERS_READ);
    let access_token = body["access_token"].as_str().expect("access_token");

    let claims = claims_of(access_token);
    assert_eq!(claims["ver"], 1);
    assert_eq!(claims["iss"], org.base.as_str());
    assert_eq!(claims["aud"], org.base.as_str());
    assert_eq!(claims["sub"], client_id.as_str());
    assert_eq!(claims["cid"], client_id.as_str());
    assert_eq!(claims["scp"], json!([USERS_READ]));
    assert!(
        claims["jti"]
            .as_str()
            .is_some_and(|jti| jti.starts_with("AT."))
    );
    assert_eq!(claims.get("cnf"), None);

    let users = org.users(&format!("Bearer {access_token}"), None).await;
    assert_eq!(users.status(), 200);
    let users = json_body(users).await;
    assert_eq!(users.as_array().map(Vec::len), Some(1));
    assert_eq!(users[0]["status"], "ACTIVE");
    assert_eq!(org.emulator.issued_tokens(), 1);
}

#[tokio::test]
async fn access_token_signed_by_org_key() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    let signed = assertion(0, None, &assertion_claims(&client_id, &org.token_url()));
    let body = json_body(org.client_credentials(&signed, USERS_READ, None).await).await;
    let token = body["access_token"].as_str().expect("access_token");
    let header_part = token.split('.').next().expect("a header");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_part).expect("base64url"))
            .expect("JSON header");

    let keys = json_body(
        org.send(org.anonymous(Method::GET, "/oauth2/v1/keys"))
            .await,
    )
    .await;
    assert_eq!(keys["keys"][0]["kid"], header["kid"]);
    assert_eq!(header["alg"], "RS256");
}

#[tokio::test]
async fn kid_may_be_omitted_with_one_key() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    let signed = assertion(0, None, &assertion_claims(&client_id, &org.token_url()));
    let response = org.client_credentials(&signed, USERS_READ, None).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn kid_missing_with_two_keys() {
    let org = TestOrg::start().await;
    let client_id = two_key_app(&org).await;
    let signed = assertion(0, None, &assertion_claims(&client_id, &org.token_url()));
    assert_rejected(&org, &signed, "The client_assertion JWT kid is invalid.").await;

    let signed = assertion(
        1,
        Some("k1"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    let response = org.client_credentials(&signed, USERS_READ, None).await;
    assert_eq!(response.status(), 200, "the second key verifies too");
}

#[tokio::test]
async fn unknown_kid_is_invalid() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    let signed = assertion(
        0,
        Some("k9"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    assert_rejected(&org, &signed, "The client_assertion JWT kid is invalid.").await;
}

#[tokio::test]
async fn inactive_key_kid_is_invalid() {
    let org = TestOrg::start().await;
    let client_id = two_key_app(&org).await;
    let keys = json_body(
        org.get(&format!("/api/v1/apps/{client_id}/credentials/jwks"))
            .await,
    )
    .await;
    let key_id = keys["keys"][1]["id"].as_str().expect("key id").to_owned();
    let path = format!("/api/v1/apps/{client_id}/credentials/jwks/{key_id}/lifecycle/deactivate");
    let response = org.send(org.request(Method::POST, &path)).await;
    assert_eq!(response.status(), 200);

    let signed = assertion(
        1,
        Some("k1"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    assert_rejected(&org, &signed, "The client_assertion JWT kid is invalid.").await;
}

#[tokio::test]
async fn audience_must_be_token_url() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    for aud in [org.base.clone(), format!("{}/", org.token_url())] {
        let mut claims = assertion_claims(&client_id, &org.token_url());
        claims["aud"] = json!(aud);
        let signed = assertion(0, Some("k0"), &claims);
        assert_rejected(
            &org,
            &signed,
            "The audience claim for client_assertion must be the endpoint invoked for the request.",
        )
        .await;
    }
}

#[tokio::test]
async fn expiry_rules() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    let now = jose::now();
    let cases = [
        (json!(now - 1), "The client_assertion token is expired."),
        (
            json!(now + 3700),
            "The client_assertion token has an expiration too far into the future.",
        ),
        (
            Value::Null,
            "The client_assertion must contain the 'exp' claim as seconds since epoch.",
        ),
        (
            json!("soon"),
            "The client_assertion must contain the 'exp' claim as seconds since epoch.",
        ),
    ];
    for (exp, description) in cases {
        let mut claims = assertion_claims(&client_id, &org.token_url());
        claims["exp"] = exp;
        let signed = assertion(0, Some("k0"), &claims);
        assert_rejected(&org, &signed, description).await;
    }
}

#[tokio::test]
async fn iat_in_future_is_rejected() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    let mut claims = assertion_claims(&client_id, &org.token_url());
    claims["iat"] = json!(jose::now() + 60);
    let signed = assertion(0, Some("k0"), &claims);
    assert_rejected(
        &org,
        &signed,
        "The client_assertion token must be issued before the current time.",
    )
    .await;
}

#[tokio::test]
async fn replayed_jti_is_rejected() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    let first = org.client_credentials(&signed, USERS_READ, None).await;
    assert_eq!(first.status(), 200);
    assert_rejected(
        &org,
        &signed,
        "The client_assertion token has already been used.",
    )
    .await;
    assert_eq!(org.emulator.issued_tokens(), 1);
}

#[tokio::test]
async fn jti_spent_by_failed_scope_request() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    let response = org
        .client_credentials(&signed, "okta.groups.read", None)
        .await;
    assert_eq!(response.status(), 400);
    assert_rejected(
        &org,
        &signed,
        "The client_assertion token has already been used.",
    )
    .await;
}

#[tokio::test]
async fn wrong_key_signature_is_invalid() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    let signed = assertion(
        2,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    assert_rejected(&org, &signed, "The client_assertion signature is invalid.").await;
}

#[tokio::test]
async fn none_and_hmac_algorithms_rejected() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    let claims = assertion_claims(&client_id, &org.token_url());
    for alg in ["none", "HS256"] {
        let header = json!({ "alg": alg, "kid": "k0" });
        let token = jose::unsigned_token(&header, &claims, b"signature");
        assert_rejected(
            &org,
            &token,
            "The client_assertion JWT signature algorithm is invalid.",
        )
        .await;
    }
}

#[tokio::test]
async fn other_rsa_algorithms_verify() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    for alg in ["RS384", "RS512"] {
        let header = json!({ "alg": alg, "kid": "k0" });
        let signed = jose::sign_rsa(0, &header, &assertion_claims(&client_id, &org.token_url()));
        let response = org.client_credentials(&signed, USERS_READ, None).await;
        assert_eq!(response.status(), 200, "{alg}");
    }
}

#[tokio::test]
async fn issuer_and_subject_checks() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;

    let mut claims = assertion_claims(&client_id, &org.token_url());
    claims["sub"] = json!("0oaSOMEONEELSE0000000");
    let signed = assertion(0, Some("k0"), &claims);
    assert_rejected(
        &org,
        &signed,
        "The subject claim for client_assertion is not a valid client_id.",
    )
    .await;

    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims("0oaUNKNOWN0000000000", &org.token_url()),
    );
    assert_rejected(
        &org,
        &signed,
        "The issuer claim for client_assertion is not a valid client_id.",
    )
    .await;
}

#[tokio::test]
async fn malformed_credentials() {
    let org = TestOrg::start().await;
    one_key_app(&org).await;
    assert_rejected(
        &org,
        "not-a-jwt",
        "The parsing of the client_assertion failed.",
    )
    .await;

    let response = org
        .token_request(
            &[("grant_type", "client_credentials"), ("scope", USERS_READ)],
            None,
        )
        .await;
    assert_oauth_error(
        response,
        401,
        "invalid_client",
        "No client credentials found.",
    )
    .await;

    let response = org
        .token_request(
            &[
                ("grant_type", "client_credentials"),
                ("scope", USERS_READ),
                ("client_assertion_type", "urn:example:other"),
                ("client_assertion", "x.y.z"),
            ],
            None,
        )
        .await;
    assert_oauth_error(
        response,
        400,
        "invalid_request",
        "The client_assertion_type is invalid.",
    )
    .await;
}

#[tokio::test]
async fn credentials_in_query_rejected() {
    let org = TestOrg::start().await;
    let url = format!("{}?client_assertion=abc", org.token_url());
    let response = org
        .send(
            org.http
                .post(url)
                .form(&[("grant_type", "client_credentials")]),
        )
        .await;
    assert_oauth_error(
        response,
        400,
        "invalid_request",
        "Client credentials cannot be supplied via query parameters.",
    )
    .await;
}

#[tokio::test]
async fn client_secret_is_not_accepted() {
    let org = TestOrg::start().await;
    let body = json!({
        "client_name": "secret-app",
        "application_type": "service",
        "token_endpoint_auth_method": "client_secret_basic",
    });
    let client = json_body(org.post_json("/oauth2/v1/clients", &body).await).await;
    let client_id = client["client_id"].as_str().expect("client_id");
    let secret = client["client_secret"].as_str().expect("client_secret");

    let response = org
        .send(
            org.http
                .post(org.token_url())
                .basic_auth(client_id, Some(secret))
                .form(&[("grant_type", "client_credentials"), ("scope", USERS_READ)]),
        )
        .await;
    assert_oauth_error(
        response,
        401,
        "invalid_client",
        "Client Credentials requests to the Org Authorization Server must use the private_key_jwt token_endpoint_auth_method.",
    )
    .await;
}

#[tokio::test]
async fn inactive_app_is_rejected() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    org.deactivate(&client_id).await;
    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    assert_rejected(
        &org,
        &signed,
        "Client authentication failed. Either the client or the client credentials are invalid.",
    )
    .await;
}

#[tokio::test]
async fn scope_rules() {
    let org = TestOrg::start().await;
    let client_id = org
        .service_app(
            "scopes",
            vec![rsa_public_jwk(0, "k0")],
            &[USERS_READ, "okta.apps.read"],
        )
        .await;
    let cases = [
        ("", "invalid_scope", "No scopes were requested."),
        (
            "openid okta.users.read",
            "invalid_scope",
            "Cannot request 'openid' scopes using client credentials.",
        ),
        (
            "okta.groups.read",
            "consent_required",
            "You are not allowed any of the requested scopes.",
        ),
    ];
    for (scope, error, description) in cases {
        let signed = assertion(
            0,
            Some("k0"),
            &assertion_claims(&client_id, &org.token_url()),
        );
        let response = org.client_credentials(&signed, scope, None).await;
        assert_oauth_error(response, 400, error, description).await;
    }

    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    let response = org
        .client_credentials(
            &signed,
            "okta.groups.read okta.apps.read okta.users.read",
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["scope"], "okta.apps.read okta.users.read");
    let token = body["access_token"].as_str().expect("access_token");
    assert_eq!(
        claims_of(token)["scp"],
        json!(["okta.apps.read", "okta.users.read"])
    );
}

#[tokio::test]
async fn clock_ahead_accepts_real_clock_assertion() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    org.emulator.set_clock_offset(30);
    assert_eq!(org.emulator.clock_offset(), 30);

    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    let response = org.client_credentials(&signed, USERS_READ, None).await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    let claims = claims_of(body["access_token"].as_str().expect("access_token"));
    let iat = claims["iat"].as_i64().expect("iat");
    assert!(
        (iat - jose::now() - 30).abs() <= 2,
        "iat {iat} follows the emulator clock"
    );
}

#[tokio::test]
async fn clock_behind_needs_iat_leeway() {
    // With the default 5 s leeway, an `iat` of the real clock is 30 s in
    // the emulator's future.
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    org.emulator.set_clock_offset(-30);
    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    assert_rejected(
        &org,
        &signed,
        "The client_assertion token must be issued before the current time.",
    )
    .await;

    let mut without_iat = assertion_claims(&client_id, &org.token_url());
    without_iat.as_object_mut().expect("object").remove("iat");
    let signed = assertion(0, Some("k0"), &without_iat);
    let response = org.client_credentials(&signed, USERS_READ, None).await;
    assert_eq!(response.status(), 200, "exp alone fits the shifted clock");
}

#[tokio::test]
async fn clock_behind_within_configured_leeway() {
    let mut config = Config::new(TOKEN);
    config.iat_leeway = Duration::from_secs(60);
    let org = TestOrg::start_with_config(config).await;
    let client_id = one_key_app(&org).await;
    org.emulator.set_clock_offset(-30);

    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    let response = org.client_credentials(&signed, USERS_READ, None).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn clock_endpoint_sets_offset() {
    let org = TestOrg::start().await;
    let response = org
        .send(
            org.anonymous(Method::POST, "/__emulator/clock")
                .json(&json!({ "offset_seconds": -45 })),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["offset_seconds"], -45);
    assert_eq!(org.emulator.clock_offset(), -45);

    let bad = org
        .send(
            org.anonymous(Method::POST, "/__emulator/clock")
                .json(&json!({ "offset_seconds": "soon" })),
        )
        .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn expired_token_is_invalid() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    let body = json_body(org.client_credentials(&signed, USERS_READ, None).await).await;
    let token = body["access_token"].as_str().expect("access_token");

    org.emulator.set_clock_offset(3600);
    let response = org.users(&format!("Bearer {token}"), None).await;
    assert_okta_error(response, 401, "E0000011", "Invalid token provided", &[]).await;

    let response = org.users("Bearer not-a-token", None).await;
    assert_okta_error(response, 401, "E0000011", "Invalid token provided", &[]).await;
}

#[tokio::test]
async fn missing_scope_is_forbidden() {
    let org = TestOrg::start().await;
    let client_id = org
        .service_app(
            "apps-only",
            vec![rsa_public_jwk(0, "k0")],
            &["okta.apps.read"],
        )
        .await;
    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    let body = json_body(
        org.client_credentials(&signed, "okta.apps.read", None)
            .await,
    )
    .await;
    let token = body["access_token"].as_str().expect("access_token");

    let response = org.users(&format!("Bearer {token}"), None).await;
    assert_eq!(response.status(), 403);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"okta.users.read\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("resource=\"/api/v1/users\""),
        "{challenge}"
    );
    assert_eq!(response.text().await.expect("body"), "");
}

#[tokio::test]
async fn users_token_lacks_apps_scope() {
    let org = TestOrg::start().await;
    let client_id = one_key_app(&org).await;
    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    let body = json_body(org.client_credentials(&signed, USERS_READ, None).await).await;
    let token = body["access_token"].as_str().expect("access_token");

    let apps = org
        .send(
            org.anonymous(Method::GET, "/api/v1/apps")
                .header("Authorization", format!("Bearer {token}")),
        )
        .await;
    // The apps list accepts access tokens too, but only with an apps scope.
    assert_eq!(apps.status(), 403);
    let challenge = apps.headers()["www-authenticate"]
        .to_str()
        .expect("ASCII header")
        .to_owned();
    assert!(
        challenge.contains("scope=\"okta.apps.read\""),
        "{challenge}"
    );

    let ssws = org.get("/api/v1/users").await;
    assert_eq!(ssws.status(), 200, "the API token still works");
}

#[tokio::test]
async fn token_bucket_429_uses_okta_format() {
    let limits = RateLimits {
        token: 1,
        ..RateLimits::default()
    };
    let org = TestOrg::start_with(limits).await;
    let client_id = one_key_app(&org).await;
    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    let first = org.client_credentials(&signed, USERS_READ, None).await;
    assert_eq!(first.status(), 200);

    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    let second = org.client_credentials(&signed, USERS_READ, None).await;
    assert_eq!(second.headers()["x-rate-limit-remaining"], "0");
    assert_okta_error(
        second,
        429,
        "E0000047",
        "API call exceeded rate limit due to too many requests.",
        &[],
    )
    .await;
    let buckets: Vec<Option<String>> = org
        .emulator
        .requests()
        .into_iter()
        .filter(|request| request.path == "/oauth2/v1/token")
        .map(|request| request.bucket)
        .collect();
    assert_eq!(buckets, [Some("token".into()), Some("token".into())]);
}
