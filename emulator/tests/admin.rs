//! The request log and the `/__emulator/` endpoints.

mod common;

use common::{TestOrg, json_body};
use okta_emulator::RecordedRequest;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn requests_are_recorded_in_order() {
    let org = TestOrg::start().await;
    let id = org.register("recorded").await;
    org.get("/api/v1/apps?limit=1&q=rec").await;
    org.send(org.anonymous(Method::GET, "/api/v1/apps")).await;

    let recorded = org.emulator.requests();
    assert_eq!(
        recorded,
        [
            RecordedRequest {
                method: "POST".into(),
                path: "/oauth2/v1/clients".into(),
                query: None,
                status: 201,
                bucket: Some("clients".into()),
                fault: None,
            },
            RecordedRequest {
                method: "GET".into(),
                path: "/api/v1/apps".into(),
                query: Some("limit=1&q=rec".into()),
                status: 200,
                bucket: Some("apps".into()),
                fault: None,
            },
            RecordedRequest {
                method: "GET".into(),
                path: "/api/v1/apps".into(),
                query: None,
                status: 401,
                bucket: Some("apps".into()),
                fault: None,
            },
        ]
    );
    assert_eq!(org.emulator.apps()[0].id, id);
}

#[tokio::test]
async fn admin_endpoints_skip_auth_and_log() {
    let org = TestOrg::start().await;
    let id = org.register("admin").await;
    let grant = json!({ "scopeId": "okta.apps.read", "issuer": org.base });
    org.post_json(&format!("/api/v1/apps/{id}/grants"), &grant)
        .await;

    let apps = org
        .send(org.anonymous(Method::GET, "/__emulator/apps"))
        .await;
    assert_eq!(apps.status(), 200);
    assert!(apps.headers().get("x-rate-limit-limit").is_none());
    assert_eq!(
        json_body(apps).await,
        json!([{
            "id": id,
            "label": "admin",
            "status": "ACTIVE",
            "application_type": "service",
            "kids": ["k-2026-01"],
            "active_kids": ["k-2026-01"],
            "granted_scopes": ["okta.apps.read"],
            "dpop_bound": false,
        }])
    );

    let requests = org
        .send(org.anonymous(Method::GET, "/__emulator/requests"))
        .await;
    assert_eq!(requests.status(), 200);
    let body = json_body(requests).await;
    assert_eq!(body.as_array().map(Vec::len), Some(2));
    assert_eq!(
        body[1],
        json!({
            "method": "POST",
            "path": format!("/api/v1/apps/{id}/grants"),
            "query": null,
            "status": 201,
            "bucket": "apps",
        })
    );
    assert_eq!(org.emulator.requests().len(), 2);
}

#[tokio::test]
async fn org_url_is_set_while_serving() {
    let org = TestOrg::start().await;
    // A completed request proves that serve() has started.
    org.get("/api/v1/apps").await;
    assert_eq!(org.emulator.org_url().as_deref(), Some(org.base.as_str()));
    org.stop().await;
}
