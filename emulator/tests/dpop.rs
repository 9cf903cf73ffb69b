//! DPoP: the nonce handshake at the token endpoint, DPoP-bound tokens on
//! `GET /api/v1/users`, and switching an app to DPoP with `PUT`.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::jose::{DpopKey, assertion, assertion_claims, rsa_public_jwk};
use common::{TestOrg, assert_oauth_error, assert_okta_error, json_body};
use okta_emulator::jwk_thumbprint;
use reqwest::Method;
use serde_json::{Value, json};

const USERS_READ: &str = "okta.users.read";

/// Registers an app with RSA key 0 as `k0`, the `okta.users.read` grant,
/// and DPoP required.
async fn dpop_app(org: &TestOrg) -> String {
    let client_id = org
        .service_app("dpop", vec![rsa_public_jwk(0, "k0")], &[USERS_READ])
        .await;
    assert!(org.emulator.set_dpop_bound(&client_id, true));
    client_id
}

fn new_assertion(org: &TestOrg, client_id: &str) -> String {
    assertion(
        0,
        Some("k0"),
        &assertion_claims(client_id, &org.token_url()),
    )
}

/// Runs the nonce handshake and returns the nonce.
async fn nonce(org: &TestOrg, client_id: &str, key: &DpopKey) -> String {
    let proof = key.proof("POST", &org.token_url(), None, None);
    let response = org
        .client_credentials(&new_assertion(org, client_id), USERS_READ, Some(&proof))
        .await;
    let headers = assert_oauth_error(
        response,
        400,
        "use_dpop_nonce",
        "Authorization server requires nonce in DPoP proof.",
    )
    .await;
    headers["dpop-nonce"]
        .to_str()
        .expect("ASCII nonce")
        .to_owned()
}

/// Gets a DPoP-bound access token for `key`.
async fn dpop_token(org: &TestOrg, client_id: &str, key: &DpopKey) -> String {
    let nonce = nonce(org, client_id, key).await;
    let proof = key.proof("POST", &org.token_url(), Some(&nonce), None);
    let response = org
        .client_credentials(&new_assertion(org, client_id), USERS_READ, Some(&proof))
        .await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

fn users_url(org: &TestOrg) -> String {
    format!("{}/api/v1/users", org.base)
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

#[tokio::test]
async fn missing_proof_is_rejected() {
    let org = TestOrg::start().await;
    let client_id = dpop_app(&org).await;
    let response = org
        .client_credentials(&new_assertion(&org, &client_id), USERS_READ, None)
        .await;
    assert_oauth_error(
        response,
        400,
        "invalid_dpop_proof",
        "The DPoP proof JWT header is missing.",
    )
    .await;
}

#[tokio::test]
async fn nonce_round_trip_issues_dpop_token() {
    let org = TestOrg::start().await;
    let client_id = dpop_app(&org).await;
    let key = DpopKey::new();

    let proof = key.proof("POST", &org.token_url(), None, None);
    let challenge = org
        .client_credentials(&new_assertion(&org, &client_id), USERS_READ, Some(&proof))
        .await;
    assert_eq!(challenge.headers()["cache-control"], "no-cache, no-store");
    let headers = assert_oauth_error(
        challenge,
        400,
        "use_dpop_nonce",
        "Authorization server requires nonce in DPoP proof.",
    )
    .await;
    let nonce = headers["dpop-nonce"].to_str().expect("ASCII").to_owned();
    assert_eq!(nonce.len(), 32);

    let proof = key.proof("POST", &org.token_url(), Some(&nonce), None);
    let response = org
        .client_credentials(&new_assertion(&org, &client_id), USERS_READ, Some(&proof))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["dpop-nonce"], nonce.as_str());
    let body = json_body(response).await;
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(body["scope"], USERS_READ);
    let claims = claims_of(body["access_token"].as_str().expect("access_token"));
    let thumbprint = jwk_thumbprint(&key.jwk).expect("an EC key has a thumbprint");
    assert_eq!(claims["cnf"], json!({ "jkt": thumbprint }));
    assert_eq!(org.emulator.issued_tokens(), 1);
}

#[tokio::test]
async fn retry_needs_new_assertion() {
    let org = TestOrg::start().await;
    let client_id = dpop_app(&org).await;
    let key = DpopKey::new();
    let signed = new_assertion(&org, &client_id);

    let proof = key.proof("POST", &org.token_url(), None, None);
    let challenge = org
        .client_credentials(&signed, USERS_READ, Some(&proof))
        .await;
    let nonce = challenge.headers()["dpop-nonce"]
        .to_str()
        .expect("ASCII")
        .to_owned();

    let proof = key.proof("POST", &org.token_url(), Some(&nonce), None);
    let response = org
        .client_credentials(&signed, USERS_READ, Some(&proof))
        .await;
    assert_oauth_error(
        response,
        401,
        "invalid_client",
        "The client_assertion token has already been used.",
    )
    .await;
}

#[tokio::test]
async fn unknown_nonce_gets_new_challenge() {
    let org = TestOrg::start().await;
    let client_id = dpop_app(&org).await;
    let key = DpopKey::new();
    let proof = key.proof("POST", &org.token_url(), Some("stale-nonce"), None);
    let response = org
        .client_credentials(&new_assertion(&org, &client_id), USERS_READ, Some(&proof))
        .await;
    let headers = assert_oauth_error(
        response,
        400,
        "use_dpop_nonce",
        "Authorization server requires nonce in DPoP proof.",
    )
    .await;
    assert!(headers.contains_key("dpop-nonce"));
}

#[tokio::test]
async fn token_request_proof_errors() {
    let org = TestOrg::start().await;
    let client_id = dpop_app(&org).await;
    let key = DpopKey::new();

    let wrong_url = key.proof("POST", &org.base, None, None);
    let wrong_method = key.proof("GET", &org.token_url(), None, None);
    let wrong_typ = key.sign(
        &json!({ "typ": "JWT", "alg": "ES256", "jwk": key.jwk }),
        &json!({ "htm": "POST", "htu": org.token_url(), "iat": common::jose::now(), "jti": "t1" }),
    );
    let cases = [
        (wrong_url, "'htu' claim in the DPoP proof JWT is invalid."),
        (
            wrong_method,
            "'htm' claim in the DPoP proof JWT is invalid.",
        ),
        (wrong_typ, "'typ' must be 'dpop+jwt' in the DPoP proof JWT."),
        ("garbage".to_owned(), "The DPoP proof JWT cannot be parsed."),
    ];
    for (proof, description) in cases {
        let response = org
            .client_credentials(&new_assertion(&org, &client_id), USERS_READ, Some(&proof))
            .await;
        assert_oauth_error(response, 400, "invalid_dpop_proof", description).await;
    }
}

#[tokio::test]
async fn dpop_header_ignored_for_bearer_app() {
    let org = TestOrg::start().await;
    let client_id = org
        .service_app("bearer", vec![rsa_public_jwk(0, "k0")], &[USERS_READ])
        .await;
    let key = DpopKey::new();
    let proof = key.proof("POST", &org.token_url(), None, None);
    let response = org
        .client_credentials(&new_assertion(&org, &client_id), USERS_READ, Some(&proof))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await["token_type"], "Bearer");
}

#[tokio::test]
async fn dpop_token_reads_users_with_proof() {
    let org = TestOrg::start().await;
    let client_id = dpop_app(&org).await;
    let key = DpopKey::new();
    let token = dpop_token(&org, &client_id, &key).await;

    let proof = key.proof("GET", &users_url(&org), None, Some(&token));
    let response = org.users(&format!("DPoP {token}"), Some(&proof)).await;
    assert_eq!(response.status(), 200);

    let query_proof = key.proof("GET", &users_url(&org), None, Some(&token));
    let response = org
        .send(
            org.http
                .get(format!("{}?limit=5", users_url(&org)))
                .header("Authorization", format!("DPoP {token}"))
                .header("DPoP", query_proof),
        )
        .await;
    assert_eq!(response.status(), 200, "htu leaves out the query");

    let response = org.users(&format!("DPoP {token}"), Some(&proof)).await;
    assert_oauth_error(
        response,
        400,
        "invalid_dpop_proof",
        "The DPoP proof JWT has already been used.",
    )
    .await;
}

#[tokio::test]
async fn dpop_token_resource_errors() {
    let org = TestOrg::start().await;
    let client_id = dpop_app(&org).await;
    let key = DpopKey::new();
    let token = dpop_token(&org, &client_id, &key).await;

    let response = org.users(&format!("DPoP {token}"), None).await;
    let headers = assert_oauth_error(
        response,
        400,
        "invalid_request",
        "The resource request requires a DPoP proof.",
    )
    .await;
    let challenge = headers["www-authenticate"].to_str().expect("ASCII");
    assert!(
        challenge.starts_with("DPoP error=\"invalid_request\""),
        "{challenge}"
    );

    let proof = key.proof("GET", &users_url(&org), None, Some(&token));
    let response = org.users(&format!("Bearer {token}"), Some(&proof)).await;
    assert_oauth_error(
        response,
        400,
        "invalid_request",
        "The resource request must use the DPoP authentication scheme when using a DPoP bound token.",
    )
    .await;

    let wrong_ath = key.proof("GET", &users_url(&org), None, Some("another-token"));
    let response = org.users(&format!("DPoP {token}"), Some(&wrong_ath)).await;
    assert_oauth_error(
        response,
        400,
        "invalid_dpop_proof",
        "'ath' claim in the DPoP proof does not match the presented access_token.",
    )
    .await;

    let no_ath = key.proof("GET", &users_url(&org), None, None);
    let response = org.users(&format!("DPoP {token}"), Some(&no_ath)).await;
    assert_oauth_error(
        response,
        400,
        "invalid_dpop_proof",
        "'ath' claim in the DPoP proof does not match the presented access_token.",
    )
    .await;

    let other_key = DpopKey::new();
    let foreign = other_key.proof("GET", &users_url(&org), None, Some(&token));
    let response = org.users(&format!("DPoP {token}"), Some(&foreign)).await;
    assert_oauth_error(
        response,
        400,
        "invalid_dpop_proof",
        "The access_token is not bound to the provided DPoP proof.",
    )
    .await;

    let response = org.users("DPoP unknown-token", Some(&foreign)).await;
    assert_okta_error(response, 401, "E0000011", "Invalid token provided", &[]).await;
}

#[tokio::test]
async fn put_app_sets_dpop_flag() {
    let org = TestOrg::start().await;
    let client_id = org
        .service_app("put", vec![rsa_public_jwk(0, "k0")], &[USERS_READ])
        .await;
    let path = format!("/api/v1/apps/{client_id}");
    let mut app = json_body(org.get(&path).await).await;
    assert_eq!(
        app["settings"]["oauthClient"]["dpop_bound_access_tokens"],
        false
    );

    app["settings"]["oauthClient"]["dpop_bound_access_tokens"] = json!(true);
    app["label"] = json!("put-renamed");
    app["status"] = json!("INACTIVE");
    let response = org.send(org.request(Method::PUT, &path).json(&app)).await;
    assert_eq!(response.status(), 200);
    let replaced = json_body(response).await;
    assert_eq!(
        replaced["settings"]["oauthClient"]["dpop_bound_access_tokens"],
        true
    );
    assert_eq!(replaced["label"], "put-renamed");
    assert_eq!(replaced["status"], "ACTIVE", "system fields are ignored");
    assert_eq!(
        replaced["settings"]["oauthClient"]["jwks"],
        app["settings"]["oauthClient"]["jwks"]
    );

    let snapshot = org.emulator.apps();
    assert!(snapshot[0].dpop_bound);
    let bucket = org
        .emulator
        .requests()
        .last()
        .and_then(|r| r.bucket.clone());
    assert_eq!(bucket.as_deref(), Some("app_by_id"));

    let response = org
        .client_credentials(&new_assertion(&org, &client_id), USERS_READ, None)
        .await;
    assert_oauth_error(
        response,
        400,
        "invalid_dpop_proof",
        "The DPoP proof JWT header is missing.",
    )
    .await;
}

#[tokio::test]
async fn put_app_validation() {
    let org = TestOrg::start().await;
    let client_id = org.register("put-checks").await;
    let path = format!("/api/v1/apps/{client_id}");
    let app = json_body(org.get(&path).await).await;

    let mut changed_type = app.clone();
    changed_type["settings"]["oauthClient"]["application_type"] = json!("web");
    let response = org
        .send(org.request(Method::PUT, &path).json(&changed_type))
        .await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        "Api validation failed: settings.oauthClient",
        &["'application_type' can't be changed after the app is created: it is 'service', not 'web'."],
    )
    .await;

    let mut no_label = app.clone();
    no_label.as_object_mut().expect("object").remove("label");
    let response = org
        .send(org.request(Method::PUT, &path).json(&no_label))
        .await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        "Api validation failed: label",
        &["label: Label must be specified"],
    )
    .await;

    let mut no_name = app.clone();
    no_name["name"] = json!("");
    let response = org
        .send(org.request(Method::PUT, &path).json(&no_name))
        .await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        "Api validation failed: name",
        &["name: The field cannot be left blank"],
    )
    .await;

    let mut no_grants = app.clone();
    no_grants["settings"]["oauthClient"]
        .as_object_mut()
        .expect("object")
        .remove("grant_types");
    let response = org
        .send(org.request(Method::PUT, &path).json(&no_grants))
        .await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        "Api validation failed: settings.oauthClient",
        &["grant_types: The field cannot be left blank"],
    )
    .await;

    let response = org
        .send(
            org.request(Method::PUT, "/api/v1/apps/0oaNOPE0000000000000")
                .json(&app),
        )
        .await;
    assert_okta_error(
        response,
        404,
        "E0000007",
        "Not found: Resource not found: 0oaNOPE0000000000000 (AppInstance)",
        &[],
    )
    .await;
}

#[tokio::test]
async fn set_dpop_bound_unknown_app() {
    let org = TestOrg::start().await;
    assert!(!org.emulator.set_dpop_bound("0oaNOPE0000000000000", true));
}
