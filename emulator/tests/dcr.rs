//! Dynamic Client Registration: `/oauth2/v1/clients`.

mod common;

use common::{
    RSA_N, TestOrg, assert_invalid_metadata, assert_okta_error, ec_key, json_body, links,
    next_link, rsa_key, service_client,
};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn register_service_client_echoes_okta_shape() {
    let org = TestOrg::start().await;
    let response = org
        .post_json("/oauth2/v1/clients", &service_client("billing-sync"))
        .await;
    assert_eq!(response.status(), 201);
    let body = json_body(response).await;

    let client_id = body["client_id"].as_str().expect("client_id");
    assert_eq!(client_id.len(), 20);
    assert!(client_id.starts_with("0oa"));
    assert!(
        body["client_id_issued_at"]
            .as_i64()
            .is_some_and(|at| at > 1_700_000_000)
    );
    assert_eq!(body["client_name"], "billing-sync");
    assert_eq!(body["application_type"], "service");
    assert_eq!(body["grant_types"], json!(["client_credentials"]));
    assert_eq!(body["response_types"], json!(["token"]));
    assert_eq!(body["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(body["redirect_uris"], json!([]));
    assert_eq!(body["client_uri"], Value::Null);
    assert_eq!(body["logo_uri"], Value::Null);
    assert!(body.get("client_secret").is_none());
    assert_eq!(
        body["jwks"],
        json!({ "keys": [ { "kty": "RSA", "kid": "k-2026-01", "use": "sig", "e": "AQAB", "n": RSA_N } ] })
    );
}

#[tokio::test]
async fn register_echoes_null_use_and_drops_alg() {
    let org = TestOrg::start().await;
    let mut request = service_client("no-use");
    request["jwks"]["keys"][0]
        .as_object_mut()
        .expect("object")
        .remove("use");
    let body = json_body(org.post_json("/oauth2/v1/clients", &request).await).await;
    let key = &body["jwks"]["keys"][0];
    assert_eq!(key["use"], Value::Null);
    assert!(key.get("alg").is_none(), "{key}");
}

#[tokio::test]
async fn register_ec_key() {
    let org = TestOrg::start().await;
    let mut request = service_client("ec");
    request["jwks"]["keys"] = json!([ec_key("e1")]);
    let response = org.post_json("/oauth2/v1/clients", &request).await;
    assert_eq!(response.status(), 201);
    let key = json_body(response).await["jwks"]["keys"][0].clone();
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["x"], common::EC_X);
    assert_eq!(key["y"], common::EC_Y);
}

#[tokio::test]
async fn register_secret_client_returns_secret_once() {
    let org = TestOrg::start().await;
    let request = json!({
        "client_name": "secret-app",
        "application_type": "service",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic"
    });
    let body = json_body(org.post_json("/oauth2/v1/clients", &request).await).await;
    assert_eq!(body["client_secret"].as_str().map(str::len), Some(40));
    assert_eq!(body["client_secret_expires_at"], 0);

    let id = body["client_id"].as_str().expect("client_id");
    let fetched = json_body(org.get(&format!("/oauth2/v1/clients/{id}")).await).await;
    assert!(fetched.get("client_secret").is_none(), "{fetched}");
}

#[tokio::test]
async fn registered_client_is_an_oidc_app() {
    let org = TestOrg::start().await;
    let id = org.register("billing-sync").await;
    let response = org.get(&format!("/api/v1/apps/{id}")).await;
    assert_eq!(response.status(), 200);
    let app = json_body(response).await;

    assert_eq!(app["id"], id.as_str());
    assert_eq!(app["name"], "oidc_client");
    assert_eq!(app["label"], "billing-sync");
    assert_eq!(app["status"], "ACTIVE");
    assert_eq!(app["signOnMode"], "OPENID_CONNECT");
    let created = app["created"].as_str().expect("created");
    assert_eq!(created.len(), 24, "{created}");
    assert!(created.ends_with('Z'), "{created}");

    let oauth = &app["settings"]["oauthClient"];
    assert_eq!(oauth["application_type"], "service");
    assert_eq!(oauth["grant_types"], json!(["client_credentials"]));
    assert_eq!(oauth["response_types"], json!(["token"]));
    assert_eq!(oauth["dpop_bound_access_tokens"], false);
    assert_eq!(oauth["consent_method"], "REQUIRED");
    let key = &oauth["jwks"]["keys"][0];
    assert!(
        key["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("pks") && id.len() == 20)
    );
    assert_eq!(key["status"], "ACTIVE");
    assert_eq!(key["kid"], "k-2026-01");
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["n"], RSA_N);

    let credentials = &app["credentials"]["oauthClient"];
    assert_eq!(credentials["client_id"], id.as_str());
    assert_eq!(credentials["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(credentials["autoKeyRotation"], true);

    let app_url = format!("{}/api/v1/apps/{id}", org.base);
    assert_eq!(
        app["_links"]["clientCredentials"][0]["href"],
        format!("{app_url}/credentials/jwks")
    );
    assert_eq!(
        app["_links"]["deactivate"]["href"],
        format!("{app_url}/lifecycle/deactivate")
    );
}

/// Cases of `(name, request changes, expected description)`.
fn validation_cases() -> Vec<(&'static str, Value, &'static str)> {
    let short_n = base64_url(&[0xC5_u8; 128]);
    let fifty_one: Vec<Value> = (0..51).map(|i| rsa_key(&format!("k{i}"))).collect();
    vec![
        (
            "blank name",
            json!({ "client_name": "  " }),
            "`client_name`: The field can't be left blank.",
        ),
        (
            "missing name",
            json!({ "client_name": null }),
            "`client_name`: The field can't be left blank.",
        ),
        (
            "service without client_credentials",
            json!({ "grant_types": [] }),
            "'grant_types' must contain 'client_credentials' when 'application_type' is 'service'.",
        ),
        (
            "service with extra grant",
            json!({ "grant_types": ["client_credentials", "implicit"] }),
            "'grant_types' may only contain 'client_credentials' when 'application_type' is 'service'.",
        ),
        (
            "web response and grant mismatch",
            json!({
                "application_type": "web",
                "grant_types": ["client_credentials"],
                "response_types": ["token"],
                "token_endpoint_auth_method": "client_secret_basic",
                "jwks": null
            }),
            "'grant_types' must contain 'implicit' when 'response_types' contains 'token'. 'grant_types' must contain 'authorization_code' when 'application_type' is 'web'.",
        ),
        (
            "several violations",
            json!({ "client_name": "", "grant_types": ["authorization_code"] }),
            "`client_name`: The field can't be left blank. 'grant_types' must contain 'client_credentials' when 'application_type' is 'service'. 'grant_types' may only contain 'client_credentials' when 'application_type' is 'service'.",
        ),
        (
            "private_key_jwt without keys",
            json!({ "jwks": null }),
            "'jwks' or 'jwks_uri' is required when 'token_endpoint_auth_method' is 'private_key_jwt'.",
        ),
        (
            "duplicate kid",
            json!({ "jwks": { "keys": [rsa_key("same"), ec_key("same")] } }),
            "All keys in the 'jwks' must have a unique `kid`.",
        ),
        (
            "missing kid among several keys",
            json!({ "jwks": { "keys": [rsa_key("a"), { "kty": "RSA", "e": "AQAB", "n": RSA_N }] } }),
            "All keys in the 'jwks' must have a unique `kid`.",
        ),
        (
            "short RSA key",
            json!({ "jwks": { "keys": [{ "kty": "RSA", "kid": "s", "e": "AQAB", "n": short_n }] } }),
            "RSA key length in the 'jwks' is less than '2,048' bits for the given key.",
        ),
        (
            "padded base64",
            json!({ "jwks": { "keys": [{ "kty": "RSA", "kid": "p", "e": "AQAB=", "n": RSA_N }] } }),
            "The 'e' member of a key in the 'jwks' is not valid base64url without padding.",
        ),
        (
            "unknown kty",
            json!({ "jwks": { "keys": [{ "kty": "oct", "kid": "o", "x": "AQAB" }] } }),
            "The 'kty' of a key in the 'jwks' must be 'RSA' or 'EC', not 'oct'.",
        ),
        (
            "private member",
            json!({ "jwks": { "keys": [{ "kty": "RSA", "kid": "d", "e": "AQAB", "n": RSA_N, "d": "AQAB" }] } }),
            "A key in the 'jwks' contains the private key member 'd'. Send only the public key.",
        ),
        (
            "more than fifty keys",
            json!({ "jwks": { "keys": fifty_one } }),
            "The 'jwks' contains 51 keys, but an app can have at most 50 keys.",
        ),
    ]
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn register_validation_errors() {
    let org = TestOrg::start().await;
    for (name, changes, description) in validation_cases() {
        let mut request = service_client("validation");
        for (field, value) in changes.as_object().expect("changes are an object") {
            request[field] = value.clone();
        }
        let response = org.post_json("/oauth2/v1/clients", &request).await;
        assert_eq!(response.status(), 400, "{name}");
        let body = json_body(response).await;
        assert_eq!(
            body,
            json!({ "error": "invalid_client_metadata", "error_description": description }),
            "{name}"
        );
    }
    assert!(
        org.emulator.apps().is_empty(),
        "no invalid client was created"
    );
}

#[tokio::test]
async fn register_rejects_malformed_body() {
    let org = TestOrg::start().await;
    let not_json = org
        .request(Method::POST, "/oauth2/v1/clients")
        .header("Content-Type", "application/json")
        .body("{not json");
    assert_okta_error(
        org.send(not_json).await,
        400,
        "E0000003",
        "The request body was not well-formed.",
        &[],
    )
    .await;

    let wrong_type = json!({ "client_name": "x", "grant_types": "client_credentials" });
    assert_okta_error(
        org.post_json("/oauth2/v1/clients", &wrong_type).await,
        400,
        "E0000003",
        "The request body was not well-formed.",
        &[],
    )
    .await;
}

#[tokio::test]
async fn register_accepts_jwks_uri() {
    let org = TestOrg::start().await;
    let mut request = service_client("uri");
    request["jwks"] = Value::Null;
    request["jwks_uri"] = json!("https://keys.example.com/jwks.json");
    let response = org.post_json("/oauth2/v1/clients", &request).await;
    assert_eq!(response.status(), 201);
    let body = json_body(response).await;
    assert_eq!(body["jwks_uri"], "https://keys.example.com/jwks.json");
    assert!(body.get("jwks").is_none());
}

#[tokio::test]
async fn unknown_client_is_public_client_app_404() {
    let org = TestOrg::start().await;
    let missing = "0oaMISSING0000000000";
    for method in [Method::GET, Method::DELETE] {
        let response = org
            .send(org.request(method, &format!("/oauth2/v1/clients/{missing}")))
            .await;
        assert_okta_error(
            response,
            404,
            "E0000007",
            &format!("Not found: Resource not found: {missing} (PublicClientApp)"),
            &[],
        )
        .await;
    }
}

#[tokio::test]
async fn delete_client_removes_app_without_deactivation() {
    let org = TestOrg::start().await;
    let id = org.register("short-lived").await;
    let response = org.delete(&format!("/oauth2/v1/clients/{id}")).await;
    assert_eq!(response.status(), 204);
    assert_eq!(response.text().await.expect("body"), "");

    assert_eq!(
        org.get(&format!("/oauth2/v1/clients/{id}")).await.status(),
        404
    );
    assert_eq!(org.get(&format!("/api/v1/apps/{id}")).await.status(), 404);
    assert!(org.emulator.apps().is_empty());
}

#[tokio::test]
async fn list_clients_pages_and_filters() {
    let org = TestOrg::start().await;
    for name in ["alpha-1", "beta", "Alpha-2", "alpha-3"] {
        org.register(name).await;
    }

    let first = org.get("/oauth2/v1/clients?q=alpha&limit=2").await;
    assert_eq!(first.status(), 200);
    let self_link = format!(
        "<{}/oauth2/v1/clients?q=alpha&limit=2>; rel=\"self\"",
        org.base
    );
    assert_eq!(links(&first)[0], self_link);
    let next = next_link(&first).expect("a second page follows");
    let names: Vec<String> = json_body(first)
        .await
        .as_array()
        .expect("array")
        .iter()
        .map(|client| client["client_name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(names, ["alpha-1", "Alpha-2"]);

    let second = org.get_url(&next).await;
    assert_eq!(second.status(), 200);
    assert_eq!(next_link(&second), None);
    let body = json_body(second).await;
    assert_eq!(body.as_array().map(Vec::len), Some(1));
    assert_eq!(body[0]["client_name"], "alpha-3");
    assert!(body[0].get("client_secret").is_none());
}

#[tokio::test]
async fn register_rejects_unknown_application_type() {
    let org = TestOrg::start().await;
    let mut request = service_client("x");
    request["application_type"] = json!("daemon");
    assert_invalid_metadata(
        org.post_json("/oauth2/v1/clients", &request).await,
        "'application_type' must be 'browser', 'native', 'service' or 'web', not 'daemon'.",
    )
    .await;
}
