//! The registrar under Okta's rate limits and faults: concurrent
//! registrations stay inside a small budget, lost creates and grants are
//! resolved without duplicates, and a spent budget reaches the caller as
//! RESOURCE_EXHAUSTED or UNAVAILABLE with a retry delay.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use okta_emulator::{Fault, FaultEndpoint, FaultKind, RateLimits};
use registrar_api::v1::{GenerateKey, KeyAlgorithm, RegisterServiceRequest, ScopeOutcome};
use registrar_server::okta::PacingSettings;
use registrar_server::okta::retry::RetryPolicy;
use registrar_tests::{API_TOKEN, Options, TestEnv, create_request};
use tonic::Code;
use tonic_types::StatusExt;

/// The scopes that service number `index` requests.
fn scopes_of(index: usize) -> Vec<String> {
    let scopes: &[&str] = match index % 3 {
        0 => &["okta.users.read"],
        1 => &["okta.users.read", "okta.apps.read"],
        _ => &["okta.groups.read", "okta.logs.read", "okta.apps.read"],
    };
    scopes.iter().map(|scope| scope.to_string()).collect()
}

fn register_request(index: usize) -> RegisterServiceRequest {
    RegisterServiceRequest {
        service_name: format!("limited-service-{index:03}"),
        scope_ids: scopes_of(index),
        // P-256 keys are cheap to generate, which keeps the test fast.
        key: Some(GenerateKey {
            algorithm: KeyAlgorithm::Es256 as i32,
        }),
        dpop_bound: false,
    }
}

/// Budgets per one-second window: Okta's per-minute defaults scaled down
/// so that 100 services need many windows.
fn small_budgets() -> RateLimits {
    RateLimits {
        window: Duration::from_secs(1),
        apps: 40,
        app_by_id: 60,
        clients: 20,
        token: 100,
        other: 100,
    }
}

fn large_budgets() -> RateLimits {
    RateLimits {
        window: Duration::from_secs(60),
        apps: 100_000,
        app_by_id: 100_000,
        clients: 100_000,
        token: 100_000,
        other: 100_000,
    }
}

/// Builds options with these budgets and the registrar's default pacing,
/// which leaves half of each bucket to other clients.
fn options_with(rate_limits: RateLimits) -> Options {
    Options {
        emulator: okta_emulator::Config {
            rate_limits,
            ..okta_emulator::Config::new(API_TOKEN)
        },
        okta_pacing: PacingSettings::default(),
        ..Options::default()
    }
}

/// Registers services `0..services`, `calls_per_service` calls each, all
/// at once, and returns the client id each call got, by service.
async fn register_all(
    env: &TestEnv,
    services: usize,
    calls_per_service: usize,
) -> HashMap<String, Vec<String>> {
    let mut tasks = Vec::new();
    for call in 0..services * calls_per_service {
        let index = call % services;
        let mut client = env.client.clone();
        tasks.push(tokio::spawn(async move {
            let request = register_request(index);
            let name = request.service_name.clone();
            let response = client.register_service(request).await;
            (name, response)
        }));
    }
    let mut client_ids: HashMap<String, Vec<String>> = HashMap::new();
    for task in tasks {
        let (name, response) = task.await.expect("registration task joins");
        let response = match response {
            Ok(response) => response.into_inner(),
            Err(status) => panic!("registering {name} failed: {status:?}"),
        };
        for grant in &response.grants {
            assert!(
                grant.outcome == ScopeOutcome::Granted as i32
                    || grant.outcome == ScopeOutcome::AlreadyGranted as i32,
                "{name}: {grant:?}"
            );
        }
        let client_id = response.app.expect("an app").client_id;
        client_ids.entry(name).or_default().push(client_id);
    }
    client_ids
}

/// Checks that every service has one app with exactly its scopes.
fn assert_one_app_per_service(env: &TestEnv, services: usize) {
    let apps = env.emulator.apps();
    assert_eq!(apps.len(), services);
    for app in apps {
        let index: usize = app
            .label
            .trim_start_matches("limited-service-")
            .parse()
            .expect("service number");
        let mut expected = scopes_of(index);
        expected.sort();
        let mut granted = app.granted_scopes.clone();
        granted.sort();
        assert_eq!(granted, expected, "{}", app.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_stay_within_budget() {
    let env = TestEnv::start_with(options_with(small_budgets())).await;
    let started = Instant::now();

    let client_ids = tokio::time::timeout(Duration::from_secs(120), register_all(&env, 100, 3))
        .await
        .expect("300 registrations finish within 120 s");
    let elapsed = started.elapsed();

    assert_eq!(client_ids.len(), 100);
    for (name, ids) in &client_ids {
        assert_eq!(ids.len(), 3, "{name}");
        assert!(ids.iter().all(|id| id == &ids[0]), "{name} got two apps");
    }
    assert_one_app_per_service(&env, 100);
    let requests = env.okta_requests();
    assert_eq!(env.emulator.over_budget_requests(), 0);
    assert!(requests.iter().all(|request| request.status != 429));
    eprintln!(
        "300 registrations took {:.1} s and {} Okta requests",
        elapsed.as_secs_f64(),
        requests.len()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_creates_and_grants_are_resolved() {
    let env = TestEnv::start_with(options_with(large_budgets())).await;
    for endpoint in [FaultEndpoint::CreateClient, FaultEndpoint::CreateGrant] {
        env.emulator
            .add_fault(Fault::with_probability(
                endpoint,
                FaultKind::ResetAfterCommit,
                0.3,
            ))
            .expect("valid fault");
    }

    let client_ids = tokio::time::timeout(Duration::from_secs(120), register_all(&env, 100, 1))
        .await
        .expect("100 registrations finish within 120 s");

    assert_eq!(client_ids.len(), 100);
    assert_one_app_per_service(&env, 100);
    let fired: u64 = env.emulator.faults().iter().map(|fault| fault.fired).sum();
    assert!(fired > 0, "no fault fired");
    // A create after a lost one is sent only when the lookup found nothing,
    // which never happens here, so there is one create per service.
    assert_eq!(env.count_requests("POST", "/oauth2/v1/clients"), 100);
    env.stop().await;
}

#[tokio::test]
async fn pacing_uses_okta_clock_not_local_clock() {
    let env = TestEnv::start_with(options_with(RateLimits {
        window: Duration::from_secs(1),
        apps: 6,
        app_by_id: 6,
        clients: 4,
        token: 100,
        other: 100,
    }))
    .await;
    // Okta's clock is two hours behind: waits measured against the local
    // clock would be negative and send requests into a spent budget.
    env.emulator.set_clock_offset(-7200);

    let client_ids = tokio::time::timeout(Duration::from_secs(60), register_all(&env, 6, 1))
        .await
        .expect("6 registrations finish within 60 s");
    assert_eq!(client_ids.len(), 6);
    assert_eq!(env.emulator.over_budget_requests(), 0);
    env.stop().await;
}

#[tokio::test]
async fn retry_limit_zero_fails_at_once() {
    let mut options = options_with(large_budgets());
    options.okta_pacing = PacingSettings {
        retry: RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        },
        ..PacingSettings::default()
    };
    let env = TestEnv::start_with(options).await;
    env.emulator
        .add_fault(Fault::times(
            FaultEndpoint::ListApps,
            FaultKind::Status { status: 503 },
            1,
        ))
        .expect("valid fault");

    let mut client = env.client.clone();
    let status = client
        .create_service_app(create_request("no-retries"))
        .await
        .expect_err("the 503 is not retried");
    assert_eq!(status.code(), Code::Unavailable);
    let delay = status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay);
    assert!(
        delay.is_some_and(|delay| delay >= Duration::from_secs(1)),
        "{delay:?}"
    );
    assert_eq!(env.count_requests("GET", "/api/v1/apps"), 1);
    assert!(env.emulator.apps().is_empty());
    env.stop().await;
}

#[tokio::test]
async fn default_retries_ride_out_faults() {
    // One-second windows keep the wait after the injected 429 short.
    let env = TestEnv::start_with(options_with(RateLimits {
        window: Duration::from_secs(1),
        ..large_budgets()
    }))
    .await;
    // Each fault is on its own endpoint, because all faults that match a
    // request fire on it together.
    for (endpoint, kind) in [
        (FaultEndpoint::ListApps, FaultKind::Status { status: 503 }),
        (FaultEndpoint::CreateClient, FaultKind::ResetBeforeCommit),
        (FaultEndpoint::GetApp, FaultKind::RateLimitBurst),
        (
            FaultEndpoint::ListGrants,
            FaultKind::DuplicateRateLimitHeaders,
        ),
        (
            FaultEndpoint::CreateGrant,
            FaultKind::Status { status: 502 },
        ),
    ] {
        env.emulator
            .add_fault(Fault::times(endpoint, kind, 1))
            .expect("valid fault");
    }

    let mut client = env.client.clone();
    let response = client
        .register_service(register_request(1))
        .await
        .expect("registration succeeds after retries")
        .into_inner();
    assert!(response.created);
    assert_one_app_per_service(&env, 1);
    // The reset create changed nothing, so the lookup found no app and the
    // create was sent again.
    assert_eq!(env.count_requests("POST", "/oauth2/v1/clients"), 2);
    assert!(env.emulator.faults().iter().all(|fault| fault.fired == 1));
    env.stop().await;
}

#[tokio::test]
async fn spent_budget_past_deadline_is_resource_exhausted() {
    let env = TestEnv::start_with(options_with(RateLimits {
        window: Duration::from_secs(60),
        clients: 2,
        ..large_budgets()
    }))
    .await;
    let mut client = env.client.clone();
    client
        .create_service_app(create_request("first-of-two"))
        .await
        .expect("the first create fits the budget");

    // Half of a budget of 2 is 1 create per minute, so the second must
    // wait for the window, which ends after the call's deadline.
    let mut request = tonic::Request::new(create_request("second-of-two"));
    request.set_timeout(Duration::from_secs(3));
    let started = Instant::now();
    let status = client
        .create_service_app(request)
        .await
        .expect_err("the budget is spent");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let delay = status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a retry delay");
    assert!(delay >= Duration::from_secs(1), "{delay:?}");
    assert!(delay <= Duration::from_secs(61), "{delay:?}");
    assert_eq!(env.emulator.over_budget_requests(), 0);
    assert_eq!(env.count_requests("POST", "/oauth2/v1/clients"), 1);
    env.stop().await;
}
