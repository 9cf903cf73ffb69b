//! Scope consent grants: `/api/v1/apps/{appId}/grants`.

mod common;

use common::{TestOrg, assert_okta_error, json_body};
use serde_json::{Value, json};

async fn grant(org: &TestOrg, app_id: &str, scope: &str) -> reqwest::Response {
    let body = json!({ "scopeId": scope, "issuer": org.base });
    org.post_json(&format!("/api/v1/apps/{app_id}/grants"), &body)
        .await
}

#[tokio::test]
async fn grant_create_returns_okta_shape() {
    let org = TestOrg::start().await;
    let app_id = org.register("granted").await;
    let response = grant(&org, &app_id, "okta.users.read").await;
    assert_eq!(response.status(), 201);
    let body = json_body(response).await;

    let grant_id = body["id"].as_str().expect("id");
    assert!(
        grant_id.starts_with("oag") && grant_id.len() == 20,
        "{grant_id}"
    );
    assert_eq!(body["status"], "ACTIVE");
    assert_eq!(body["issuer"], org.base.as_str());
    assert_eq!(body["clientId"], app_id.as_str());
    assert_eq!(body["scopeId"], "okta.users.read");
    assert_eq!(body["source"], "ADMIN");
    assert_eq!(body["createdBy"]["type"], "User");
    assert!(
        body["createdBy"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("00u"))
    );
    assert_eq!(body["created"], body["lastUpdated"]);
    assert_eq!(
        body["_embedded"],
        json!({ "scope": { "id": "okta.users.read" } })
    );

    let app_url = format!("{}/api/v1/apps/{app_id}", org.base);
    assert_eq!(
        body["_links"]["app"],
        json!({ "href": app_url, "title": "granted" })
    );
    assert_eq!(
        body["_links"]["self"],
        json!({ "href": format!("{app_url}/grants/{grant_id}"), "hints": { "allow": ["GET", "DELETE"] } })
    );
    assert_eq!(
        body["_links"]["client"]["href"],
        format!("{}/oauth2/v1/clients/{app_id}", org.base)
    );
}

#[tokio::test]
async fn grant_list_get_and_revoke() {
    let org = TestOrg::start().await;
    let app_id = org.register("lifecycle").await;
    let first = json_body(grant(&org, &app_id, "okta.users.read").await).await;
    let second = json_body(grant(&org, &app_id, "okta.apps.manage").await).await;
    let first_id = first["id"].as_str().expect("id");

    let list = json_body(org.get(&format!("/api/v1/apps/{app_id}/grants")).await).await;
    let scopes: Vec<&Value> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|g| &g["scopeId"])
        .collect();
    assert_eq!(
        scopes,
        [&json!("okta.users.read"), &json!("okta.apps.manage")]
    );
    assert!(
        list[0].get("_embedded").is_none(),
        "no expand, no _embedded"
    );

    let expanded = json_body(
        org.get(&format!("/api/v1/apps/{app_id}/grants?expand=scope"))
            .await,
    )
    .await;
    assert_eq!(expanded[1]["_embedded"]["scope"]["id"], "okta.apps.manage");

    let path = format!("/api/v1/apps/{app_id}/grants/{first_id}");
    let fetched = org.get(&path).await;
    assert_eq!(fetched.status(), 200);
    assert_eq!(json_body(fetched).await["scopeId"], "okta.users.read");

    let revoked = org.delete(&path).await;
    assert_eq!(revoked.status(), 204);
    assert_okta_error(
        org.get(&path).await,
        404,
        "E0000007",
        &format!("Not found: Resource not found: {first_id} (OAuth2ScopeConsentGrant)"),
        &[],
    )
    .await;
    assert_okta_error(
        org.delete(&path).await,
        404,
        "E0000007",
        &format!("Not found: Resource not found: {first_id} (OAuth2ScopeConsentGrant)"),
        &[],
    )
    .await;

    let list = json_body(org.get(&format!("/api/v1/apps/{app_id}/grants")).await).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["id"], second["id"]);
    assert_eq!(org.emulator.apps()[0].granted_scopes, ["okta.apps.manage"]);
}

#[tokio::test]
async fn grant_duplicate_scope_rejected() {
    let org = TestOrg::start().await;
    let app_id = org.register("dup").await;
    assert_eq!(grant(&org, &app_id, "okta.users.read").await.status(), 201);
    assert_okta_error(
        grant(&org, &app_id, "okta.users.read").await,
        400,
        "E0000001",
        "Api validation failed: scopeId",
        &["The scope has already been granted."],
    )
    .await;
    assert_eq!(org.emulator.apps()[0].granted_scopes, ["okta.users.read"]);
}

#[tokio::test]
async fn grant_rejects_bad_scope() {
    let org = TestOrg::start().await;
    let app_id = org.register("scopes").await;
    for scope in [
        "profile",
        "openid",
        "okta.users.fly",
        "okta.myAccount.email.read",
    ] {
        assert_okta_error(
            grant(&org, &app_id, scope).await,
            400,
            "E0000001",
            "Api validation failed: scopeId",
            &[],
        )
        .await;
    }
}

#[tokio::test]
async fn grant_issuer_must_be_org_url() {
    let org = TestOrg::start().await;
    let app_id = org.register("issuer").await;
    let path = format!("/api/v1/apps/{app_id}/grants");

    for issuer in [
        "https://example.okta.com",
        &format!("{}/oauth2/default", org.base),
    ] {
        let body = json!({ "scopeId": "okta.users.read", "issuer": issuer });
        assert_okta_error(
            org.post_json(&path, &body).await,
            400,
            "E0000001",
            "Api validation failed: issuer",
            &[],
        )
        .await;
    }

    let with_slash = json!({ "scopeId": "okta.users.read", "issuer": format!("{}/", org.base) });
    let response = org.post_json(&path, &with_slash).await;
    assert_eq!(response.status(), 201);
    assert_eq!(json_body(response).await["issuer"], org.base.as_str());
}

#[tokio::test]
async fn grant_requires_both_fields() {
    let org = TestOrg::start().await;
    let app_id = org.register("fields").await;
    let path = format!("/api/v1/apps/{app_id}/grants");

    assert_okta_error(
        org.post_json(&path, &json!({ "issuer": org.base })).await,
        400,
        "E0000001",
        "Api validation failed: scopeId",
        &["scopeId: The field cannot be left blank"],
    )
    .await;
    assert_okta_error(
        org.post_json(
            &path,
            &json!({ "scopeId": "okta.users.read", "issuer": "" }),
        )
        .await,
        400,
        "E0000001",
        "Api validation failed: issuer",
        &["issuer: The field cannot be left blank"],
    )
    .await;
    assert_okta_error(
        org.post_json(&path, &json!({})).await,
        400,
        "E0000001",
        "Api validation failed: scopeId",
        &[
            "scopeId: The field cannot be left blank",
            "issuer: The field cannot be left blank",
        ],
    )
    .await;
}

#[tokio::test]
async fn grant_on_unknown_app_is_404() {
    let org = TestOrg::start().await;
    let missing = "0oaMISSING0000000000";
    assert_okta_error(
        grant(&org, missing, "okta.users.read").await,
        404,
        "E0000007",
        &format!("Not found: Resource not found: {missing} (AppInstance)"),
        &[],
    )
    .await;
}

#[tokio::test]
async fn deleting_app_removes_grants() {
    let org = TestOrg::start().await;
    let app_id = org.register("gone").await;
    let grant_id = json_body(grant(&org, &app_id, "okta.users.read").await).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    org.deactivate(&app_id).await;
    assert_eq!(
        org.delete(&format!("/api/v1/apps/{app_id}")).await.status(),
        204
    );

    let response = org
        .get(&format!("/api/v1/apps/{app_id}/grants/{grant_id}"))
        .await;
    assert_eq!(response.status(), 404);
    assert!(
        json_body(response).await["errorSummary"]
            .as_str()
            .is_some_and(|summary| summary.ends_with("(AppInstance)"))
    );
}
