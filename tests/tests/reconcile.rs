//! Reconciliation at start-up: a create that Okta committed but whose
//! response was lost is adopted by the restarted registrar, and a later
//! RegisterService returns that app instead of creating a second one.

use std::time::Duration;

use okta_emulator::{Fault, FaultEndpoint, FaultKind};
use registrar_api::v1::{
    GenerateKey, ListServiceAppsRequest, RegisterServiceRequest, ScopeOutcome,
};
use registrar_server::auth::Caller;
use registrar_server::store::Store;
use registrar_tests::{Options, TestEnv};

const SERVICE: &str = "lost-create-service";

fn register_request() -> RegisterServiceRequest {
    RegisterServiceRequest {
        service_name: SERVICE.into(),
        scope_ids: vec!["okta.users.read".into(), "okta.apps.read".into()],
        key: Some(GenerateKey::default()),
        dpop_bound: false,
    }
}

/// Waits until the emulator has responded to a request with this method and
/// path, for at most 10 s.
async fn wait_for_request(env: &TestEnv, method: &str, path: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while env.count_requests(method, path) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {method} {path} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_adopts_app_of_lost_create() {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let mut env = TestEnv::start_with(Options {
        data_dir: Some(data_dir.path().to_path_buf()),
        ..Options::default()
    })
    .await;

    // The create commits in the emulator but the registrar sees a
    // connection reset. The delay keeps the create in flight until the
    // lookup by name is broken too, so the registrar cannot adopt the app
    // at once and the intent stays pending.
    env.emulator
        .add_fault(Fault::times(
            FaultEndpoint::CreateClient,
            FaultKind::Latency { millis: 1000 },
            1,
        ))
        .expect("latency fault");
    env.emulator
        .add_fault(Fault::times(
            FaultEndpoint::CreateClient,
            FaultKind::ResetAfterCommit,
            1,
        ))
        .expect("reset fault");
    let mut client = env.client.clone();
    let first = tokio::spawn(async move { client.register_service(register_request()).await });
    wait_for_request(&env, "GET", "/api/v1/apps").await;
    env.emulator
        .add_fault(Fault::times(
            FaultEndpoint::ListApps,
            FaultKind::Status { status: 503 },
            1000,
        ))
        .expect("lookup fault");
    let failed = first
        .await
        .expect("task")
        .expect_err("the create's outcome is unknown");
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    assert_eq!(env.count_requests("POST", "/oauth2/v1/clients"), 1);
    assert_eq!(env.emulator.apps().len(), 1, "the emulator committed it");

    env.emulator.clear_faults();
    env.crash_and_restart().await;

    // The restarted registrar reconciles before serving, so once a call
    // succeeds the app is adopted.
    env.client
        .list_service_apps(ListServiceAppsRequest::default())
        .await
        .expect("the restarted registrar serves");
    let database = format!("sqlite://{}/registrar.db", data_dir.path().display());
    let store = Store::open(&database).await.expect("store");
    let okta_app = env.emulator.apps().remove(0);
    let record = store
        .app_by_name(SERVICE)
        .await
        .expect("read")
        .expect("the app is recorded");
    assert_eq!(record.client_id, okta_app.id);
    assert_eq!(record.owner.as_deref(), Some(Caller::UNAUTHENTICATED_ID));
    assert!(
        store.pending_intents().await.expect("read").is_empty(),
        "no intent stays pending"
    );

    let response = env
        .client
        .register_service(register_request())
        .await
        .expect("register after the restart")
        .into_inner();
    let app = response.app.expect("app");
    assert_eq!(app.client_id, okta_app.id);
    assert!(!response.created, "the adopted app is not created again");
    for grant in &response.grants {
        assert_eq!(
            grant.outcome,
            ScopeOutcome::Granted as i32,
            "{}",
            grant.scope_id
        );
    }
    assert_eq!(env.count_requests("POST", "/oauth2/v1/clients"), 1);
    let apps = env.emulator.apps();
    assert_eq!(apps.len(), 1, "one app per name");
    let mut granted = apps[0].granted_scopes.clone();
    granted.sort();
    assert_eq!(granted, vec!["okta.apps.read", "okta.users.read"]);
    // The generated key was attached, so the app is usable.
    assert_eq!(apps[0].kids.len(), 1);
    drop(store);
    env.stop().await;
}
