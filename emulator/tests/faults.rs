//! Fault injection through the Rust API and `/__emulator/faults`, checked
//! with reqwest.

mod common;

use std::time::{Duration, Instant};

use common::{TestOrg, json_body, next_link, service_client};
use okta_emulator::{Fault, FaultEndpoint, FaultKind, RateLimits};
use reqwest::Method;
use serde_json::json;

fn once(endpoint: FaultEndpoint, kind: FaultKind) -> Fault {
    Fault::times(endpoint, kind, 1)
}

#[tokio::test]
async fn status_fault_answers_without_applying() {
    let org = TestOrg::start().await;
    org.emulator
        .add_fault(once(
            FaultEndpoint::CreateClient,
            FaultKind::Status { status: 503 },
        ))
        .expect("valid fault");

    let response = org
        .post_json("/oauth2/v1/clients", &service_client("faulty"))
        .await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("x-rate-limit-remaining"));
    let body = json_body(response).await;
    assert_eq!(body["errorCode"], "E0000009");
    assert!(org.emulator.apps().is_empty());

    // The count is spent: the next create goes through.
    org.register("faulty").await;
    assert_eq!(org.emulator.apps().len(), 1);
    let faults = org.emulator.faults();
    assert_eq!(faults[0].fired, 1);
}

#[tokio::test]
async fn reset_before_commit_changes_nothing() {
    let org = TestOrg::start().await;
    org.emulator
        .add_fault(once(
            FaultEndpoint::CreateClient,
            FaultKind::ResetBeforeCommit,
        ))
        .expect("valid fault");

    let error = org
        .request(Method::POST, "/oauth2/v1/clients")
        .json(&service_client("lost"))
        .send()
        .await
        .expect_err("the connection is reset");
    assert!(!error.is_status(), "{error:?}");
    assert!(org.emulator.apps().is_empty());
    let recorded = org.emulator.requests();
    assert_eq!(recorded[0].status, 0);
    assert_eq!(recorded[0].fault.as_deref(), Some("reset_before_commit"));
}

#[tokio::test]
async fn reset_after_commit_applies_then_drops() {
    let org = TestOrg::start().await;
    let id = org.register("granted").await;
    org.emulator
        .add_fault(once(
            FaultEndpoint::CreateGrant,
            FaultKind::ResetAfterCommit,
        ))
        .expect("valid fault");

    let grant = json!({ "scopeId": "okta.users.read", "issuer": org.base });
    let error = org
        .request(Method::POST, &format!("/api/v1/apps/{id}/grants"))
        .json(&grant)
        .send()
        .await
        .expect_err("the connection is reset after the grant");
    assert!(!error.is_status(), "{error:?}");

    // The grant was applied although no response arrived.
    assert_eq!(org.emulator.apps()[0].granted_scopes, ["okta.users.read"]);
    let recorded = org.emulator.requests();
    let last = recorded.last().expect("recorded");
    assert_eq!(last.status, 201);
    assert_eq!(last.fault.as_deref(), Some("reset_after_commit"));

    // Other connections keep working.
    let listed = org.get(&format!("/api/v1/apps/{id}/grants")).await;
    assert_eq!(listed.status(), 200);
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let org = TestOrg::start().await;
    org.emulator
        .add_fault(once(
            FaultEndpoint::ListApps,
            FaultKind::Latency { millis: 300 },
        ))
        .expect("valid fault");
    let started = Instant::now();
    let response = org.get("/api/v1/apps").await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn burst_answers_429_with_no_remaining() {
    let org = TestOrg::start().await;
    org.emulator
        .add_fault(Fault::times(
            FaultEndpoint::Token,
            FaultKind::RateLimitBurst,
            2,
        ))
        .expect("valid fault");
    for _ in 0..2 {
        let response = org
            .send(
                org.anonymous(Method::POST, "/oauth2/v1/token")
                    .form(&[("grant_type", "client_credentials")]),
            )
            .await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["x-rate-limit-remaining"], "0");
        assert_eq!(json_body(response).await["errorCode"], "E0000047");
    }
    let third = org
        .send(
            org.anonymous(Method::POST, "/oauth2/v1/token")
                .form(&[("grant_type", "client_credentials")]),
        )
        .await;
    assert_ne!(third.status(), 429);
    // Injected bursts are not requests beyond the budget.
    assert_eq!(org.emulator.over_budget_requests(), 0);
}

#[tokio::test]
async fn over_budget_requests_are_counted() {
    let org = TestOrg::start_with(RateLimits {
        apps: 1,
        ..RateLimits::default()
    })
    .await;
    assert_eq!(org.get("/api/v1/apps").await.status(), 200);
    assert_eq!(org.get("/api/v1/apps").await.status(), 429);
    assert_eq!(org.emulator.over_budget_requests(), 1);
}

#[tokio::test]
async fn header_faults_change_headers() {
    let org = TestOrg::start().await;
    org.emulator
        .add_fault(once(
            FaultEndpoint::ListApps,
            FaultKind::SkewDate { seconds: -3600 },
        ))
        .expect("valid fault");
    org.emulator
        .add_fault(once(FaultEndpoint::GetApp, FaultKind::OmitRateLimitHeaders))
        .expect("valid fault");
    org.emulator
        .add_fault(once(
            FaultEndpoint::ListGrants,
            FaultKind::DuplicateRateLimitHeaders,
        ))
        .expect("valid fault");
    let id = org.register("headers").await;

    let skewed = org.get("/api/v1/apps").await;
    let date = skewed.headers()["date"].to_str().expect("ASCII").to_owned();
    let reset: i64 = skewed.headers()["x-rate-limit-reset"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("a number");
    let date = time::PrimitiveDateTime::parse(
        &date,
        time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ),
    )
    .expect("an HTTP date")
    .assume_utc()
    .unix_timestamp();
    assert!(reset - date >= 3600, "reset {reset}, date {date}");

    let omitted = org.get(&format!("/api/v1/apps/{id}")).await;
    assert_eq!(omitted.status(), 200);
    assert!(!omitted.headers().contains_key("x-rate-limit-limit"));
    assert!(!omitted.headers().contains_key("x-rate-limit-reset"));

    let duplicated = org.get(&format!("/api/v1/apps/{id}/grants")).await;
    let remaining: Vec<u64> = duplicated
        .headers()
        .get_all("x-rate-limit-remaining")
        .iter()
        .map(|value| value.to_str().expect("ASCII").parse().expect("a number"))
        .collect();
    assert_eq!(remaining.len(), 2);
    assert_eq!(remaining[1], remaining[0] + 1);
}

#[tokio::test]
async fn empty_first_page_links_to_the_apps() {
    let org = TestOrg::start().await;
    org.register("paged-a").await;
    org.register("paged-b").await;
    org.emulator
        .add_fault(once(FaultEndpoint::ListApps, FaultKind::EmptyFirstPage))
        .expect("valid fault");

    let first = org.get("/api/v1/apps?q=paged&limit=5").await;
    assert_eq!(first.status(), 200);
    let next = next_link(&first).expect("a next link");
    assert_eq!(json_body(first).await, json!([]));
    assert!(next.contains("after="), "{next}");

    let second = org.get_url(&next).await;
    assert_eq!(second.status(), 200);
    assert!(next_link(&second).is_none());
    let labels: Vec<String> = json_body(second)
        .await
        .as_array()
        .expect("an array")
        .iter()
        .map(|app| app["label"].as_str().expect("a label").to_owned())
        .collect();
    assert_eq!(labels, ["paged-a", "paged-b"]);
}

#[tokio::test]
async fn probability_one_fires_every_time() {
    let org = TestOrg::start().await;
    org.emulator
        .add_fault(Fault::with_probability(
            FaultEndpoint::Users,
            FaultKind::Status { status: 500 },
            1.0,
        ))
        .expect("valid fault");
    for _ in 0..3 {
        assert_eq!(org.get("/api/v1/users").await.status(), 500);
    }
    org.emulator.clear_faults();
    assert_eq!(org.get("/api/v1/users").await.status(), 200);
}

#[tokio::test]
async fn admin_endpoint_installs_lists_and_clears() {
    let org = TestOrg::start().await;
    let added = org
        .send(
            org.anonymous(Method::POST, "/__emulator/faults").json(
                &json!({"endpoint": "list_apps", "kind": "status", "status": 502, "count": 1}),
            ),
        )
        .await;
    assert_eq!(added.status(), 201);
    assert_eq!(json_body(added).await["id"], 1);

    assert_eq!(org.get("/api/v1/apps").await.status(), 502);
    let listed = org
        .send(org.anonymous(Method::GET, "/__emulator/faults"))
        .await;
    let listed = json_body(listed).await;
    assert_eq!(listed[0]["fired"], 1);
    assert_eq!(listed[0]["endpoint"], "list_apps");

    let invalid = org
        .send(
            org.anonymous(Method::POST, "/__emulator/faults").json(
                &json!({"endpoint": "list_apps", "kind": "status", "status": 404, "count": 1}),
            ),
        )
        .await;
    assert_eq!(invalid.status(), 400);
    let unknown = org
        .send(
            org.anonymous(Method::POST, "/__emulator/faults")
                .json(&json!({"endpoint": "nowhere", "kind": "latency", "millis": 1, "count": 1})),
        )
        .await;
    assert_eq!(unknown.status(), 400);

    let cleared = org
        .send(org.anonymous(Method::DELETE, "/__emulator/faults"))
        .await;
    assert_eq!(cleared.status(), 204);
    assert!(org.emulator.faults().is_empty());
}
