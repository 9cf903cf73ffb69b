//! Authentication, unknown paths, wrong methods and Okta's response headers.

mod common;

use common::{TOKEN, TestOrg, assert_okta_error};
use reqwest::Method;

#[tokio::test]
async fn missing_or_wrong_token_is_e0000011() {
    let org = TestOrg::start().await;
    let requests = [
        org.anonymous(Method::GET, "/api/v1/apps"),
        org.anonymous(Method::GET, "/oauth2/v1/clients")
            .header("Authorization", "SSWS wrong-token"),
        org.anonymous(Method::GET, "/api/v1/apps")
            .header("Authorization", format!("Bearer {TOKEN}")),
        org.anonymous(Method::POST, "/oauth2/v1/clients")
            .header("Authorization", "SSWS"),
    ];
    for request in requests {
        assert_okta_error(
            org.send(request).await,
            401,
            "E0000011",
            "Invalid token provided",
            &[],
        )
        .await;
    }
    assert!(org.emulator.apps().is_empty());
}

#[tokio::test]
async fn unknown_path_is_e0000008() {
    let org = TestOrg::start().await;
    for path in ["/api/v1/unknown", "/oauth2/v1/nothing", "/"] {
        assert_okta_error(
            org.get(path).await,
            404,
            "E0000008",
            "The requested path was not found",
            &[],
        )
        .await;
    }
}

#[tokio::test]
async fn wrong_method_is_e0000022() {
    let org = TestOrg::start().await;
    let requests = [
        org.request(Method::PATCH, "/api/v1/apps"),
        org.request(Method::DELETE, "/oauth2/v1/clients"),
        org.request(Method::GET, "/api/v1/apps/0oa1/lifecycle/activate"),
    ];
    for request in requests {
        assert_okta_error(
            org.send(request).await,
            405,
            "E0000022",
            "The endpoint does not support the provided HTTP method",
            &[],
        )
        .await;
    }
}

#[tokio::test]
async fn every_response_has_okta_headers() {
    let org = TestOrg::start().await;
    let app_id = org.register("headers").await;
    let requests = [
        ("apps", org.request(Method::GET, "/api/v1/apps")),
        (
            "app_by_id",
            org.request(Method::GET, &format!("/api/v1/apps/{app_id}")),
        ),
        (
            "apps",
            org.request(Method::GET, &format!("/api/v1/apps/{app_id}/grants")),
        ),
        ("clients", org.request(Method::GET, "/oauth2/v1/clients")),
        ("other", org.request(Method::GET, "/api/v1/users")),
        ("apps", org.anonymous(Method::GET, "/api/v1/apps")),
        ("apps", org.request(Method::PATCH, "/api/v1/apps")),
    ];
    for (bucket, request) in requests {
        let response = org.send(request).await;
        let headers = response.headers();
        let context = format!("{bucket} {}", response.url());
        for name in [
            "x-okta-request-id",
            "date",
            "x-rate-limit-limit",
            "x-rate-limit-remaining",
            "x-rate-limit-reset",
        ] {
            assert!(headers.contains_key(name), "{name} missing on {context}");
        }
        let limit = headers["x-rate-limit-limit"].to_str().expect("ASCII");
        let expected = match bucket {
            "apps" | "clients" => "100",
            _ => "600",
        };
        assert_eq!(limit, expected, "{context}");
    }

    let recorded = org.emulator.requests();
    let buckets: Vec<Option<&str>> = recorded.iter().map(|r| r.bucket.as_deref()).collect();
    assert_eq!(
        buckets,
        [
            Some("clients"),
            Some("apps"),
            Some("app_by_id"),
            Some("apps"),
            Some("clients"),
            Some("other"),
            Some("apps"),
            Some("apps"),
        ]
    );
}

#[tokio::test]
async fn json_bodies_have_content_type() {
    let org = TestOrg::start().await;
    let response = org.get("/api/v1/apps").await;
    assert_eq!(response.headers()["content-type"], "application/json");
}
