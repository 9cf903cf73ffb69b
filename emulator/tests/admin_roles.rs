//! Access tokens on the management endpoints: the scope table, admin roles
//! of service apps, and `/oauth2/v1/clients/{clientId}/roles`.

mod common;

use common::jose::{assertion, assertion_claims, rsa_public_jwk};
use common::{TestOrg, assert_okta_error, json_body};
use reqwest::{Method, Response};
use serde_json::{Value, json};

const ALL_SCOPES: &[&str] = &[
    "okta.clients.register",
    "okta.apps.read",
    "okta.apps.manage",
    "okta.appGrants.read",
    "okta.appGrants.manage",
];

/// Registers an admin app with RSA key 0, grants it `scopes`, assigns
/// `role` when given, and returns a Bearer token for `scopes`.
async fn admin_token(org: &TestOrg, scopes: &[&str], role: Option<&str>) -> (String, String) {
    let client_id = org
        .service_app("admin", vec![rsa_public_jwk(0, "k0")], scopes)
        .await;
    if let Some(role) = role {
        org.emulator
            .assign_admin_role(&client_id, role)
            .expect("role assigned");
    }
    let signed = assertion(
        0,
        Some("k0"),
        &assertion_claims(&client_id, &org.token_url()),
    );
    let response = org
        .client_credentials(&signed, &scopes.join(" "), None)
        .await;
    assert_eq!(response.status(), 200);
    let token = json_body(response).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    (client_id, token)
}

async fn with_bearer(org: &TestOrg, method: Method, path: &str, token: &str) -> Response {
    let request = org
        .anonymous(method, path)
        .header("Authorization", format!("Bearer {token}"))
        .header("Accept", "application/json");
    org.send(request).await
}

async fn post_with_bearer(org: &TestOrg, path: &str, token: &str, body: &Value) -> Response {
    let request = org
        .anonymous(Method::POST, path)
        .header("Authorization", format!("Bearer {token}"))
        .json(body);
    org.send(request).await
}

fn grant_body(org: &TestOrg, scope: &str) -> Value {
    json!({ "scopeId": scope, "issuer": org.base })
}

#[tokio::test]
async fn super_admin_token_manages_apps_and_grants() {
    let org = TestOrg::start().await;
    let (_, token) = admin_token(&org, ALL_SCOPES, Some("SUPER_ADMIN")).await;
    let target = org.register("target").await;

    let response = with_bearer(&org, Method::GET, "/api/v1/apps", &token).await;
    assert_eq!(response.status(), 200);
    let path = format!("/api/v1/apps/{target}/grants");
    let response =
        post_with_bearer(&org, &path, &token, &grant_body(&org, "okta.users.read")).await;
    assert_eq!(response.status(), 201);
    let response = with_bearer(&org, Method::GET, &path, &token).await;
    assert_eq!(response.status(), 200);
    let body = json!({
        "client_name": "by-token",
        "application_type": "service",
        "grant_types": ["client_credentials"],
        "response_types": ["token"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": { "keys": [rsa_public_jwk(1, "k1")] },
    });
    let response = post_with_bearer(&org, "/oauth2/v1/clients", &token, &body).await;
    assert_eq!(response.status(), 201);
    org.stop().await;
}

#[tokio::test]
async fn missing_scope_gets_empty_403_with_challenge() {
    let org = TestOrg::start().await;
    let scopes = ["okta.apps.read", "okta.apps.manage"];
    let (_, token) = admin_token(&org, &scopes, Some("SUPER_ADMIN")).await;
    let target = org.register("target").await;

    let path = format!("/api/v1/apps/{target}/grants");
    let response =
        post_with_bearer(&org, &path, &token, &grant_body(&org, "okta.users.read")).await;
    assert_eq!(response.status(), 403);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ASCII header")
        .to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains("scope=\"okta.appGrants.manage\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(response.text().await.expect("body").is_empty());

    // Reading grants needs okta.appGrants.read, which is missing too.
    let response = with_bearer(&org, Method::GET, &path, &token).await;
    assert_eq!(response.status(), 403);
    org.stop().await;
}

#[tokio::test]
async fn token_without_role_gets_e0000006() {
    let org = TestOrg::start().await;
    let (_, token) = admin_token(&org, ALL_SCOPES, None).await;
    let response = with_bearer(&org, Method::GET, "/api/v1/apps", &token).await;
    assert_okta_error(
        response,
        403,
        "E0000006",
        "You do not have permission to perform the requested action",
        &[],
    )
    .await;
    org.stop().await;
}

#[tokio::test]
async fn app_admin_cannot_grant_or_change_keys_of_granted_app() {
    let org = TestOrg::start().await;
    let (_, token) = admin_token(&org, ALL_SCOPES, Some("APP_ADMIN")).await;
    let plain = org.register("plain").await;
    let granted = org.register("granted").await;
    org.grant(&granted, "okta.users.read").await;

    // Reads and key changes of an app without grants are allowed.
    let response = with_bearer(&org, Method::GET, "/api/v1/apps", &token).await;
    assert_eq!(response.status(), 200);
    let key = rsa_public_jwk(2, "k2");
    let response = post_with_bearer(
        &org,
        &format!("/api/v1/apps/{plain}/credentials/jwks"),
        &token,
        &key,
    )
    .await;
    assert_eq!(response.status(), 201);
    let response = with_bearer(
        &org,
        Method::GET,
        &format!("/api/v1/apps/{granted}/grants"),
        &token,
    )
    .await;
    assert_eq!(response.status(), 200);

    // Grants and key changes of an app that holds grants need a Super Admin.
    let response = post_with_bearer(
        &org,
        &format!("/api/v1/apps/{plain}/grants"),
        &token,
        &grant_body(&org, "okta.users.read"),
    )
    .await;
    assert_okta_error(
        response,
        403,
        "E0000006",
        "You do not have permission to perform the requested action",
        &[],
    )
    .await;
    let response = post_with_bearer(
        &org,
        &format!("/api/v1/apps/{granted}/credentials/jwks"),
        &token,
        &key,
    )
    .await;
    assert_okta_error(
        response,
        403,
        "E0000006",
        "You do not have permission to perform the requested action",
        &[],
    )
    .await;
    org.stop().await;
}

#[tokio::test]
async fn role_endpoint_assigns_and_lists() {
    let org = TestOrg::start().await;
    let client_id = org
        .service_app("roles", vec![rsa_public_jwk(0, "k0")], &[])
        .await;
    let path = format!("/oauth2/v1/clients/{client_id}/roles");

    let response = org
        .post_json(&path, &json!({ "type": "HELP_DESK_ADMIN" }))
        .await;
    assert_eq!(response.status(), 201);
    let body = json_body(response).await;
    assert_eq!(body["id"], "JBCUYUC7IRCVGS27IFCE2SKO");
    assert_eq!(body["type"], "HELP_DESK_ADMIN");
    assert_eq!(body["label"], "Help Desk Administrator");
    assert_eq!(body["status"], "ACTIVE");
    assert_eq!(body["assignmentType"], "CLIENT");
    assert_eq!(
        body["_links"]["assignee"]["href"],
        format!("{}/oauth2/v1/clients/{client_id}", org.base)
    );

    let response = org
        .post_json(&path, &json!({ "type": "HELP_DESK_ADMIN" }))
        .await;
    assert_okta_error(
        response,
        409,
        "E0000090",
        "The role specified is already assigned to the user.",
        &[],
    )
    .await;
    let response = org.post_json(&path, &json!({ "type": "NOBODY" })).await;
    assert_okta_error(
        response,
        400,
        "E0000001",
        "Api validation failed: type",
        &["type: The value is not a standard admin role type."],
    )
    .await;

    let listed = json_body(org.get(&path).await).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    // Only service apps get roles, and the endpoint needs the API token.
    let web = org
        .post_json(
            "/oauth2/v1/clients",
            &json!({
                "client_name": "web",
                "application_type": "web",
                "redirect_uris": ["https://app.example/cb"],
            }),
        )
        .await;
    let web_id = json_body(web).await["client_id"]
        .as_str()
        .expect("client_id")
        .to_owned();
    let response = org
        .post_json(
            &format!("/oauth2/v1/clients/{web_id}/roles"),
            &json!({ "type": "SUPER_ADMIN" }),
        )
        .await;
    assert_okta_error(
        response,
        400,
        "E0000227",
        "Roles can only be granted to service application type",
        &[],
    )
    .await;
    let response = org.send(org.anonymous(Method::GET, &path)).await;
    assert_okta_error(response, 401, "E0000011", "Invalid token provided", &[]).await;
    org.stop().await;
}
