//! RegisterService through the SDK: a fleet of instances starting at once
//! ends with one app per service and exactly the requested grants.

use std::collections::HashMap;

use registrar_api::v1::{RegisterServiceRequest, ScopeOutcome};
use registrar_sdk::Client;
use registrar_tests::{TestEnv, create_request};
use tonic::Code;

/// The scopes service number `index` asks for.
fn scopes_of(index: usize) -> Vec<&'static str> {
    match index % 3 {
        0 => vec!["okta.users.read"],
        1 => vec!["okta.users.read", "okta.apps.read"],
        _ => vec!["okta.groups.read", "okta.logs.read", "okta.apps.read"],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_of_200_instances_makes_20_apps() {
    let env = TestEnv::start().await;
    let endpoint = format!("http://{}", env.address);

    let mut tasks = Vec::new();
    for instance in 0..200 {
        let service = instance % 20;
        let endpoint = endpoint.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("fleet-service-{service:02}");
            let identity = Client::connect(endpoint)
                .await?
                .register(&name, &scopes_of(service))
                .await?;
            Ok::<_, registrar_sdk::Error>((name, identity))
        }));
    }

    let mut client_ids: HashMap<String, String> = HashMap::new();
    let mut created = 0;
    for task in tasks {
        let (name, identity) = task.await.expect("task").expect("registration succeeds");
        assert!(identity.grants().iter().all(|grant| {
            grant.outcome == ScopeOutcome::Granted as i32
                || grant.outcome == ScopeOutcome::AlreadyGranted as i32
        }));
        if identity.created() {
            created += 1;
        }
        let known = client_ids
            .entry(name)
            .or_insert_with(|| identity.client_id().to_string());
        assert_eq!(known, identity.client_id(), "one service got two apps");
    }
    assert_eq!(created, 20);
    assert_eq!(client_ids.len(), 20);

    let apps = env.emulator.apps();
    assert_eq!(apps.len(), 20);
    for app in apps {
        let service: usize = app
            .label
            .trim_start_matches("fleet-service-")
            .parse()
            .expect("service number");
        let mut expected = scopes_of(service);
        expected.sort_unstable();
        let mut granted = app.granted_scopes.clone();
        granted.sort();
        assert_eq!(granted, expected, "{}", app.label);
    }
    // Each scope was posted once.
    let expected_posts: usize = (0..20).map(|service| scopes_of(service).len()).sum();
    assert_eq!(env.count_requests("POST", "/grants"), expected_posts);
    env.stop().await;
}

#[tokio::test]
async fn registration_is_idempotent_and_adds_missing_scopes() {
    let env = TestEnv::start().await;
    let first = Client::connect(format!("http://{}", env.address))
        .await
        .expect("connect")
        .register("billing-worker", &["okta.users.read"])
        .await
        .expect("first registration");
    assert!(first.created());
    let token = first
        .access_token(&["okta.users.read"])
        .await
        .expect("token");
    assert_eq!(token.token_type, "Bearer");

    // A restarted instance confirms the app and adds a scope it now needs.
    let second = Client::connect(format!("http://{}", env.address))
        .await
        .expect("connect")
        .register("billing-worker", &["okta.users.read", "okta.groups.read"])
        .await
        .expect("second registration");
    assert!(!second.created());
    assert_eq!(second.client_id(), first.client_id());
    let outcomes: Vec<i32> = second.grants().iter().map(|grant| grant.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            ScopeOutcome::AlreadyGranted as i32,
            ScopeOutcome::Granted as i32
        ]
    );
    assert_eq!(env.emulator.apps().len(), 1);
    assert_eq!(env.count_requests("POST", "/oauth2/v1/clients"), 1);
    env.stop().await;
}

#[tokio::test]
async fn registration_rejects_foreign_app_and_bad_input() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();

    // An app of that name exists, but with the caller's keys.
    client
        .create_service_app(create_request("foreign-service"))
        .await
        .expect("create");
    let status = client
        .register_service(RegisterServiceRequest {
            service_name: "foreign-service".into(),
            scope_ids: vec!["okta.users.read".into()],
            key: None,
            dpop_bound: false,
        })
        .await
        .expect_err("foreign app");
    assert_eq!(status.code(), Code::AlreadyExists, "{}", status.message());
    assert!(
        status.message().starts_with("service_name:"),
        "{}",
        status.message()
    );

    let status = client
        .register_service(RegisterServiceRequest {
            service_name: String::new(),
            scope_ids: vec!["okta.users.read".into()],
            key: None,
            dpop_bound: false,
        })
        .await
        .expect_err("empty name");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("service_name:"),
        "{}",
        status.message()
    );
    let status = client
        .register_service(RegisterServiceRequest {
            service_name: "svc".into(),
            scope_ids: vec![],
            key: None,
            dpop_bound: false,
        })
        .await
        .expect_err("no scopes");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("scope_ids:"),
        "{}",
        status.message()
    );
    env.stop().await;
}
