//! Apps API: `/api/v1/apps`.

mod common;

use common::{TestOrg, assert_okta_error, json_body, links, next_link, rsa_key};
use reqwest::Method;
use serde_json::{Value, json};

fn labels(body: &Value) -> Vec<String> {
    body.as_array()
        .expect("a JSON array")
        .iter()
        .map(|app| app["label"].as_str().expect("label").to_owned())
        .collect()
}

#[tokio::test]
async fn list_pages_follow_next_links() {
    let org = TestOrg::start().await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(org.register(&format!("app-{i}")).await);
    }

    let first = org.get("/api/v1/apps?limit=2").await;
    assert_eq!(first.status(), 200);
    let first_links = links(&first);
    assert_eq!(first_links.len(), 2, "{first_links:?}");
    assert_eq!(
        first_links[0],
        format!("<{}/api/v1/apps?limit=2>; rel=\"self\"", org.base)
    );
    assert_eq!(
        first_links[1],
        format!(
            "<{}/api/v1/apps?after={}&limit=2>; rel=\"next\"",
            org.base, ids[1]
        )
    );
    let next = next_link(&first).expect("page 2 follows");
    assert_eq!(labels(&json_body(first).await), ["app-1", "app-2"]);

    let second = org.get_url(&next).await;
    assert_eq!(second.status(), 200);
    let next = next_link(&second).expect("page 3 follows");
    assert_eq!(labels(&json_body(second).await), ["app-3", "app-4"]);

    let third = org.get_url(&next).await;
    assert_eq!(third.status(), 200);
    assert_eq!(next_link(&third), None);
    assert_eq!(links(&third).len(), 1);
    assert_eq!(labels(&json_body(third).await), ["app-5"]);
}

#[tokio::test]
async fn list_keeps_q_in_links() {
    let org = TestOrg::start().await;
    for label in ["svc-a", "other", "SVC-b", "svc-c"] {
        org.register(label).await;
    }

    let first = org.get("/api/v1/apps?q=svc&limit=2").await;
    let next = next_link(&first).expect("more svc apps follow");
    assert!(
        next.starts_with(&format!("{}/api/v1/apps?q=svc&after=", org.base)),
        "{next}"
    );
    assert!(next.ends_with("&limit=2"), "{next}");
    assert_eq!(labels(&json_body(first).await), ["svc-a", "SVC-b"]);

    let second = org.get_url(&next).await;
    assert_eq!(next_link(&second), None);
    assert_eq!(labels(&json_body(second).await), ["svc-c"]);
}

#[tokio::test]
async fn list_q_matches_name() {
    let org = TestOrg::start().await;
    org.register("billing").await;
    let body = json_body(org.get("/api/v1/apps?q=oidc").await).await;
    assert_eq!(labels(&body), ["billing"]);
    let body = json_body(org.get("/api/v1/apps?q=zzz").await).await;
    assert_eq!(body, json!([]));
}

#[tokio::test]
async fn list_default_limit_is_twenty() {
    let org = TestOrg::start().await;
    org.register("only").await;
    let response = org.get("/api/v1/apps").await;
    assert_eq!(
        links(&response),
        [format!("<{}/api/v1/apps?limit=20>; rel=\"self\"", org.base)]
    );
}

#[tokio::test]
async fn list_clamps_large_limit() {
    let org = TestOrg::start().await;
    let response = org.get("/api/v1/apps?limit=500").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        links(&response),
        [format!(
            "<{}/api/v1/apps?limit=200>; rel=\"self\"",
            org.base
        )]
    );
}

#[tokio::test]
async fn list_rejects_bad_cursor_and_limit() {
    let org = TestOrg::start().await;
    assert_okta_error(
        org.get("/api/v1/apps?after=0oaNOPE000000000000&limit=2")
            .await,
        400,
        "E0000029",
        "Invalid paging request.",
        &["Invalid cursor."],
    )
    .await;
    assert_okta_error(
        org.get("/api/v1/apps?limit=abc").await,
        400,
        "E0000001",
        "Api validation failed: limit",
        &["limit: The value 'abc' is not a whole number."],
    )
    .await;
}

#[tokio::test]
async fn list_filter_by_status() {
    let org = TestOrg::start().await;
    let active = org.register("stays-active").await;
    let inactive = org.register("goes-inactive").await;
    org.deactivate(&inactive).await;

    let body = json_body(
        org.get("/api/v1/apps?filter=status%20eq%20%22ACTIVE%22")
            .await,
    )
    .await;
    assert_eq!(body.as_array().map(Vec::len), Some(1));
    assert_eq!(body[0]["id"], active.as_str());

    let body = json_body(
        org.get("/api/v1/apps?filter=status%20eq%20%22INACTIVE%22")
            .await,
    )
    .await;
    assert_eq!(body[0]["id"], inactive.as_str());

    let response = org
        .get("/api/v1/apps?filter=user.id%20eq%20%2200u1%22")
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(json_body(response).await["errorCode"], "E0000031");
}

#[tokio::test]
async fn delete_requires_deactivation() {
    let org = TestOrg::start().await;
    let id = org.register("to-delete").await;
    let path = format!("/api/v1/apps/{id}");

    assert_okta_error(
        org.delete(&path).await,
        403,
        "E0000056",
        "Delete application forbidden.",
        &["The application must be deactivated before deletion."],
    )
    .await;
    assert_eq!(
        org.emulator.apps().len(),
        1,
        "a rejected delete keeps the app"
    );

    let deactivate = org
        .send(org.request(Method::POST, &format!("{path}/lifecycle/deactivate")))
        .await;
    assert_eq!(deactivate.status(), 200);
    assert_eq!(json_body(deactivate).await, json!({}));
    let app = json_body(org.get(&path).await).await;
    assert_eq!(app["status"], "INACTIVE");
    assert_eq!(
        app["_links"]["activate"]["href"],
        format!("{}{path}/lifecycle/activate", org.base)
    );

    let deleted = org.delete(&path).await;
    assert_eq!(deleted.status(), 204);
    assert_okta_error(
        org.get(&path).await,
        404,
        "E0000007",
        &format!("Not found: Resource not found: {id} (AppInstance)"),
        &[],
    )
    .await;
    assert!(org.emulator.apps().is_empty());
}

#[tokio::test]
async fn activate_restores_active() {
    let org = TestOrg::start().await;
    let id = org.register("flip").await;
    org.deactivate(&id).await;
    let response = org
        .send(org.request(
            Method::POST,
            &format!("/api/v1/apps/{id}/lifecycle/activate"),
        ))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(org.emulator.apps()[0].status, "ACTIVE");
}

#[tokio::test]
async fn unknown_app_is_app_instance_404() {
    let org = TestOrg::start().await;
    let missing = "0oaMISSING0000000000";
    let summary = format!("Not found: Resource not found: {missing} (AppInstance)");
    let requests = [
        org.request(Method::GET, &format!("/api/v1/apps/{missing}")),
        org.request(Method::DELETE, &format!("/api/v1/apps/{missing}")),
        org.request(
            Method::POST,
            &format!("/api/v1/apps/{missing}/lifecycle/activate"),
        ),
        org.request(
            Method::POST,
            &format!("/api/v1/apps/{missing}/lifecycle/deactivate"),
        ),
        org.request(Method::GET, &format!("/api/v1/apps/{missing}/grants")),
    ];
    for request in requests {
        assert_okta_error(org.send(request).await, 404, "E0000007", &summary, &[]).await;
    }
}

fn apps_api_service_app(label: &str) -> Value {
    json!({
        "name": "oidc_client",
        "label": label,
        "signOnMode": "OPENID_CONNECT",
        "credentials": { "oauthClient": { "autoKeyRotation": true, "token_endpoint_auth_method": "private_key_jwt" } },
        "settings": {
            "oauthClient": {
                "application_type": "service",
                "grant_types": ["client_credentials"],
                "response_types": ["token"],
                "jwks": { "keys": [rsa_key("k1")] }
            }
        }
    })
}

#[tokio::test]
async fn create_through_apps_api() {
    let org = TestOrg::start().await;
    let response = org
        .post_json("/api/v1/apps", &apps_api_service_app("apps-api"))
        .await;
    assert_eq!(response.status(), 200);
    let app = json_body(response).await;
    assert_eq!(app["status"], "ACTIVE");
    assert_eq!(app["settings"]["oauthClient"]["consent_method"], "TRUSTED");
    assert_eq!(
        app["settings"]["oauthClient"]["jwks"]["keys"][0]["kid"],
        "k1"
    );

    let id = app["id"].as_str().expect("id");
    let client = json_body(org.get(&format!("/oauth2/v1/clients/{id}")).await).await;
    assert_eq!(client["client_name"], "apps-api");
}

#[tokio::test]
async fn create_inactive_with_activate_false() {
    let org = TestOrg::start().await;
    let response = org
        .post_json(
            "/api/v1/apps?activate=false",
            &apps_api_service_app("later"),
        )
        .await;
    assert_eq!(json_body(response).await["status"], "INACTIVE");
}

#[tokio::test]
async fn create_validation_uses_okta_format() {
    let org = TestOrg::start().await;
    let mut request = apps_api_service_app("");
    assert_okta_error(
        org.post_json("/api/v1/apps", &request).await,
        400,
        "E0000001",
        "Api validation failed: label",
        &["label: Label must be specified"],
    )
    .await;

    request["label"] = json!("grants");
    request["settings"]["oauthClient"]["grant_types"] = json!(["authorization_code"]);
    request["settings"]["oauthClient"]["response_types"] = json!(["token"]);
    assert_okta_error(
        org.post_json("/api/v1/apps", &request).await,
        400,
        "E0000001",
        "Api validation failed: settings.oauthClient",
        &[
            "'grant_types' must contain 'client_credentials' when 'application_type' is 'service'.",
            "'grant_types' may only contain 'client_credentials' when 'application_type' is 'service'.",
        ],
    )
    .await;

    let mut request = apps_api_service_app("keys");
    request["settings"]["oauthClient"]["jwks"]["keys"] = json!([rsa_key("same"), rsa_key("same")]);
    assert_okta_error(
        org.post_json("/api/v1/apps", &request).await,
        400,
        "E0000001",
        "Api validation failed: JsonWebKey",
        &["All keys in the 'jwks' must have a unique `kid`."],
    )
    .await;
}
