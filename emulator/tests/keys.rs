//! App key endpoints: `/api/v1/apps/{appId}/credentials/jwks`.

mod common;

use common::jose::{assertion, assertion_claims, rsa_public_jwk};
use common::{TestOrg, assert_oauth_error, assert_okta_error, json_body};
use okta_emulator::KeyEvent;
use reqwest::{Method, Response};
use serde_json::{Value, json};

const USERS_READ: &str = "okta.users.read";
const SUMMARY: &str = "Api validation failed: JsonWebKey";

/// Registers an app whose only key is RSA key 0 as `k0`.
async fn app(org: &TestOrg) -> String {
    org.service_app("keys", vec![rsa_public_jwk(0, "k0")], &[USERS_READ])
        .await
}

fn jwks_path(app_id: &str) -> String {
    format!("/api/v1/apps/{app_id}/credentials/jwks")
}

async fn add_key(org: &TestOrg, app_id: &str, key: &Value) -> Response {
    org.post_json(&jwks_path(app_id), key).await
}

async fn lifecycle(org: &TestOrg, app_id: &str, key_id: &str, action: &str) -> Response {
    let path = format!("{}/{key_id}/lifecycle/{action}", jwks_path(app_id));
    org.send(org.request(Method::POST, &path)).await
}

async fn list_keys(org: &TestOrg, app_id: &str) -> Vec<Value> {
    let response = org.get(&jwks_path(app_id)).await;
    assert_eq!(response.status(), 200);
    json_body(response).await["keys"]
        .as_array()
        .expect("a keys array")
        .clone()
}

/// Returns Okta's id of the key with `kid`.
async fn key_id(org: &TestOrg, app_id: &str, kid: &str) -> String {
    list_keys(org, app_id)
        .await
        .iter()
        .find(|key| key["kid"] == kid)
        .and_then(|key| key["id"].as_str())
        .expect("the kid is registered")
        .to_owned()
}

async fn token_status(org: &TestOrg, app_id: &str, key_index: usize, kid: &str) -> u16 {
    let signed = assertion(
        key_index,
        Some(kid),
        &assertion_claims(app_id, &org.token_url()),
    );
    org.client_credentials(&signed, USERS_READ, None)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn list_matches_app_object() {
    let org = TestOrg::start().await;
    let app_id = app(&org).await;
    let keys = list_keys(&org, &app_id).await;
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert!(
        key["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("pks") && id.len() == 20)
    );
    assert_eq!(key["kid"], "k0");
    assert_eq!(key["status"], "ACTIVE");
    assert_eq!(key["kty"], "RSA");
    assert!(key["created"].as_str().is_some_and(|at| at.ends_with('Z')));
    assert!(
        key["_links"]["deactivate"]["href"]
            .as_str()
            .is_some_and(|href| href.ends_with("/lifecycle/deactivate"))
    );

    let app_body = json_body(org.get(&format!("/api/v1/apps/{app_id}")).await).await;
    let embedded = &app_body["settings"]["oauthClient"]["jwks"]["keys"][0];
    assert_eq!(embedded["id"], key["id"]);
    assert_eq!(embedded["status"], "ACTIVE");

    let list_request = org
        .emulator
        .requests()
        .into_iter()
        .find(|request| request.path == jwks_path(&app_id))
        .expect("the list request is recorded");
    assert_eq!(list_request.bucket.as_deref(), Some("apps"));
}

#[tokio::test]
async fn add_get_and_sync() {
    let org = TestOrg::start().await;
    let app_id = app(&org).await;
    let mut new_key = rsa_public_jwk(1, "k1");
    new_key["alg"] = json!("RS256");

    let response = add_key(&org, &app_id, &new_key).await;
    assert_eq!(response.status(), 201);
    let added = json_body(response).await;
    assert_eq!(added["kid"], "k1");
    assert_eq!(added["alg"], "RS256");
    assert_eq!(added["status"], "ACTIVE");
    let id = added["id"].as_str().expect("id").to_owned();

    let fetched = json_body(org.get(&format!("{}/{id}", jwks_path(&app_id))).await).await;
    assert_eq!(fetched["id"], id.as_str());
    assert_eq!(fetched["n"], new_key["n"]);

    let app_body = json_body(org.get(&format!("/api/v1/apps/{app_id}")).await).await;
    let kids: Vec<&str> = app_body["settings"]["oauthClient"]["jwks"]["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|key| key["kid"].as_str())
        .collect();
    assert_eq!(kids, ["k0", "k1"]);

    let snapshot = &org.emulator.apps()[0];
    assert_eq!(snapshot.kids, ["k0", "k1"]);
    assert_eq!(snapshot.active_kids, ["k0", "k1"]);
    assert_eq!(token_status(&org, &app_id, 1, "k1").await, 200);
}

#[tokio::test]
async fn inactive_key_verifies_after_activation() {
    let org = TestOrg::start().await;
    let app_id = app(&org).await;
    let mut new_key = rsa_public_jwk(1, "k1");
    new_key["status"] = json!("INACTIVE");
    let added = json_body(add_key(&org, &app_id, &new_key).await).await;
    assert_eq!(added["status"], "INACTIVE");
    assert!(added["_links"]["activate"].is_object());
    assert!(added["_links"]["delete"].is_object());
    let id = added["id"].as_str().expect("id").to_owned();

    assert_eq!(org.emulator.apps()[0].kids, ["k0", "k1"]);
    assert_eq!(org.emulator.apps()[0].active_kids, ["k0"]);
    let signed = assertion(1, Some("k1"), &assertion_claims(&app_id, &org.token_url()));
    let response = org.client_credentials(&signed, USERS_READ, None).await;
    assert_oauth_error(
        response,
        401,
        "invalid_client",
        "The client_assertion JWT kid is invalid.",
    )
    .await;

    let response = lifecycle(&org, &app_id, &id, "activate").await;
    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await["status"], "ACTIVE");
    assert_eq!(token_status(&org, &app_id, 1, "k1").await, 200);
}

#[tokio::test]
async fn rotation_records_key_events() {
    let org = TestOrg::start().await;
    let app_id = app(&org).await;
    let old_id = key_id(&org, &app_id, "k0").await;

    let added = json_body(add_key(&org, &app_id, &rsa_public_jwk(1, "k1")).await).await;
    assert_eq!(added["status"], "ACTIVE");
    let response = lifecycle(&org, &app_id, &old_id, "deactivate").await;
    assert_eq!(response.status(), 200);
    let deactivated = json_body(response).await;
    assert_eq!(deactivated["status"], "INACTIVE");
    assert_eq!(token_status(&org, &app_id, 0, "k0").await, 401);
    assert_eq!(token_status(&org, &app_id, 1, "k1").await, 200);

    let response = org
        .delete(&format!("{}/{old_id}", jwks_path(&app_id)))
        .await;
    assert_eq!(response.status(), 204);

    let event = |kid: &str, event: &str, after: &[&str]| KeyEvent {
        app_id: app_id.clone(),
        kid: kid.to_owned(),
        event: event.to_owned(),
        active_kids_after: after.iter().map(|kid| (*kid).to_owned()).collect(),
    };
    assert_eq!(
        org.emulator.key_events(),
        [
            event("k1", "added", &["k0", "k1"]),
            event("k0", "deactivated", &["k1"]),
            event("k0", "deleted", &["k1"]),
        ]
    );
    assert_eq!(org.emulator.apps()[0].kids, ["k1"]);

    let admin = org
        .send(org.anonymous(Method::GET, "/__emulator/key-events"))
        .await;
    assert_eq!(json_body(admin).await.as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn add_rejects_kid_problems() {
    let org = TestOrg::start().await;
    let app_id = app(&org).await;

    let response = add_key(&org, &app_id, &rsa_public_jwk(1, "k0")).await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        SUMMARY,
        &["All keys in the 'jwks' must have a unique `kid`."],
    )
    .await;

    let mut no_kid = rsa_public_jwk(1, "unused");
    no_kid.as_object_mut().expect("object").remove("kid");
    let response = add_key(&org, &app_id, &no_kid).await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        SUMMARY,
        &["All keys in the 'jwks' must have a unique `kid`."],
    )
    .await;
}

#[tokio::test]
async fn add_rejects_when_existing_key_lacks_kid() {
    let org = TestOrg::start().await;
    let mut no_kid = rsa_public_jwk(0, "unused");
    no_kid.as_object_mut().expect("object").remove("kid");
    let app_id = org.service_app("no-kid", vec![no_kid], &[]).await;

    let response = add_key(&org, &app_id, &rsa_public_jwk(1, "k1")).await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        SUMMARY,
        &["Each key should have a unique kid when adding multiple keys. Use the Apps API to update the JWKS to add a kid for the existing key, or delete the existing key and re-add the key with a kid using the JWKS APIs."],
    )
    .await;
}

#[tokio::test]
async fn add_rejects_short_rsa_key() {
    let org = TestOrg::start().await;
    let app_id = app(&org).await;
    let mut modulus = vec![0xC5_u8; 128];
    modulus[127] = 0x01;
    let short =
        json!({ "kty": "RSA", "kid": "short", "e": "AQAB", "n": common::jose::b64(modulus) });
    let response = add_key(&org, &app_id, &short).await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        SUMMARY,
        &["RSA key length in the 'jwks' is less than '2,048' bits for the given key."],
    )
    .await;
}

#[tokio::test]
async fn add_rejects_51st_key() {
    let org = TestOrg::start().await;
    let app_id = app(&org).await;
    for index in 1..50 {
        let response = add_key(&org, &app_id, &rsa_public_jwk(1, &format!("k{index}"))).await;
        assert_eq!(response.status(), 201, "key {index}");
    }
    assert_eq!(list_keys(&org, &app_id).await.len(), 50);

    let response = add_key(&org, &app_id, &rsa_public_jwk(1, "k50")).await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        SUMMARY,
        &["You can't create a new key. You have reached the maximum number of keys allowed (50). To add another key, you must first delete an existing one."],
    )
    .await;
}

#[tokio::test]
async fn add_rejects_bad_status_and_body() {
    let org = TestOrg::start().await;
    let app_id = app(&org).await;
    let mut key = rsa_public_jwk(1, "k1");
    key["status"] = json!("PENDING");
    let response = add_key(&org, &app_id, &key).await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        SUMMARY,
        &["status: The value must be 'ACTIVE' or 'INACTIVE', not 'PENDING'."],
    )
    .await;

    let response = add_key(&org, &app_id, &json!(["not", "an", "object"])).await;
    assert_okta_error(
        response,
        400,
        "E0000003",
        "The request body was not well-formed.",
        &[],
    )
    .await;
}

#[tokio::test]
async fn deactivate_only_active_key_fails() {
    let org = TestOrg::start().await;
    let app_id = app(&org).await;
    let id = key_id(&org, &app_id, "k0").await;
    let response = lifecycle(&org, &app_id, &id, "deactivate").await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        SUMMARY,
        &["Can't deactivate the only active JSON Web Key when the value for `token_endpoint_auth_method` is `private_key_jwt`."],
    )
    .await;
    assert_eq!(org.emulator.apps()[0].active_kids, ["k0"]);
    assert!(org.emulator.key_events().is_empty());
}

#[tokio::test]
async fn delete_active_key_fails() {
    let org = TestOrg::start().await;
    let app_id = app(&org).await;
    let id = key_id(&org, &app_id, "k0").await;
    let response = org.delete(&format!("{}/{id}", jwks_path(&app_id))).await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        SUMMARY,
        &["You can't delete an active JSON Web Key. Deactivate the key before deleting it."],
    )
    .await;
}

#[tokio::test]
async fn unknown_key_and_app() {
    let org = TestOrg::start().await;
    let app_id = app(&org).await;
    let key_path = format!("{}/pksNOPE00000000000000", jwks_path(&app_id));
    for response in [
        org.get(&key_path).await,
        org.delete(&key_path).await,
        lifecycle(&org, &app_id, "pksNOPE00000000000000", "activate").await,
    ] {
        assert_okta_error(
            response,
            404,
            "E0000007",
            "Not found: Resource not found: pksNOPE00000000000000 (JsonWebKey)",
            &[],
        )
        .await;
    }

    let response = org.get(&jwks_path("0oaNOPE0000000000000")).await;
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
async fn encryption_key_rules() {
    let org = TestOrg::start().await;
    let app_id = app(&org).await;
    let mut enc = rsa_public_jwk(1, "enc-1");
    enc["use"] = json!("enc");
    let added = json_body(add_key(&org, &app_id, &enc).await).await;
    assert_eq!(added["status"], "ACTIVE");
    let enc_id = added["id"].as_str().expect("id").to_owned();

    let mut second = rsa_public_jwk(2, "enc-2");
    second["use"] = json!("enc");
    let response = add_key(&org, &app_id, &second).await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        SUMMARY,
        &["The client can have only one active encryption key in the 'jwks'."],
    )
    .await;

    let response = lifecycle(&org, &app_id, &enc_id, "deactivate").await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        SUMMARY,
        &["You can't deactivate the active encryption key."],
    )
    .await;

    second["status"] = json!("INACTIVE");
    let second_id = json_body(add_key(&org, &app_id, &second).await).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let response = lifecycle(&org, &app_id, &second_id, "activate").await;
    assert_eq!(response.status(), 200);
    assert_eq!(org.emulator.apps()[0].active_kids, ["k0", "enc-2"]);

    let signed = assertion(
        2,
        Some("enc-2"),
        &assertion_claims(&app_id, &org.token_url()),
    );
    let response = org.client_credentials(&signed, USERS_READ, None).await;
    assert_oauth_error(
        response,
        401,
        "invalid_client",
        "The client_assertion JWT needs to be signed using a signing key.",
    )
    .await;
}
