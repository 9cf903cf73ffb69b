//! Reconciliation at start-up: the restarted registrar settles the Okta
//! calls whose response was lost. A create that Okta committed is adopted,
//! and a later RegisterService returns that app instead of creating a
//! second one. A grant, revoke or delete that Okta applied is recorded, and
//! one that Okta did not apply leaves its intent failed. The generated key
//! of a create that Okta did not apply is deleted.

use std::path::Path;
use std::time::Duration;

use okta_emulator::{Fault, FaultEndpoint, FaultKind};
use registrar_api::v1::{
    DeleteServiceAppRequest, GenerateKey, GrantScopesRequest, ListGrantsRequest,
    ListServiceAppsRequest, RegisterServiceRequest, RevokeScopesRequest, ScopeOutcome,
};
use registrar_server::auth::Caller;
use registrar_server::keys::master::MasterKey;
use registrar_server::okta::retry::DEFAULT_MAX_RETRIES;
use registrar_server::store::{
    IntentKind, IntentState, KeyPurpose, SealedKey, Store, StoredIntent,
};
use registrar_tests::{Options, TestEnv, create_request};

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

/// Opens the SQLite store of a registrar whose directory is `data_dir`.
async fn open_store(data_dir: &Path) -> Store {
    let database = format!("sqlite://{}/registrar.db", data_dir.display());
    Store::open(&database).await.expect("store")
}

/// Starts an emulator and a registrar whose store lies in `data_dir`.
async fn start_env(data_dir: &Path) -> TestEnv {
    TestEnv::start_with(Options {
        data_dir: Some(data_dir.to_path_buf()),
        ..Options::default()
    })
    .await
}

/// Installs a fault and returns its id.
fn add_fault(env: &TestEnv, endpoint: FaultEndpoint, kind: FaultKind, count: u32) -> u64 {
    env.emulator
        .add_fault(Fault::times(endpoint, kind, count))
        .expect("valid fault")
}

/// Waits until the fault with this id has fired, for at most 10 s. A fault
/// fires when the emulator receives the request, before any latency fault
/// delays it.
async fn wait_for_fault(env: &TestEnv, fault_id: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let fired = env
            .emulator
            .faults()
            .iter()
            .any(|fault| fault.id == fault_id && fault.fired > 0);
        if fired {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fault {fault_id} did not fire within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates a service app with the sample JWKS and returns its client id.
async fn create_app(env: &TestEnv, client_name: &str) -> String {
    env.client
        .clone()
        .create_service_app(create_request(client_name))
        .await
        .expect("create")
        .into_inner()
        .app
        .expect("app")
        .client_id
}

/// Grants one scope and returns the grant id.
async fn grant_scope(env: &TestEnv, client_id: &str, scope_id: &str) -> String {
    let results = env
        .client
        .clone()
        .grant_scopes(GrantScopesRequest {
            client_id: client_id.into(),
            scope_ids: vec![scope_id.into()],
            issuer: String::new(),
        })
        .await
        .expect("grant")
        .into_inner()
        .results;
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].outcome,
        ScopeOutcome::Granted as i32,
        "{results:?}"
    );
    results[0].grant_id.clone()
}

/// Returns the only pending intent, which must be of this kind.
async fn only_pending_intent(store: &Store, kind: IntentKind) -> StoredIntent {
    let mut pending = store.pending_intents().await.expect("read");
    assert_eq!(pending.len(), 1, "one pending intent: {pending:?}");
    let stored = pending.remove(0);
    assert_eq!(stored.intent.kind, kind, "{stored:?}");
    stored
}

/// Returns the state of the intent with this id.
async fn intent_state(store: &Store, intent_id: i64) -> IntentState {
    store
        .intent(intent_id)
        .await
        .expect("read")
        .expect("the intent is kept")
        .state
}

/// Crashes the registrar, clears the faults and starts a new registrar,
/// then waits until it serves. The registrar reconciles before serving, so
/// every pending intent it could settle is settled on return.
async fn restart_after_crash(env: &mut TestEnv) {
    env.emulator.clear_faults();
    env.crash_and_restart().await;
    env.client
        .list_service_apps(ListServiceAppsRequest::default())
        .await
        .expect("the restarted registrar serves");
}

/// Returns how many attempts the registrar makes at an Okta call that it
/// may retry: the first and the default number of retries.
fn attempts_per_call() -> u32 {
    DEFAULT_MAX_RETRIES + 1
}

/// Revokes `scope_id` while every attempt of the grant's DELETE fails with
/// `kind`, and returns the RPC's error. A delay on the grant listing that
/// precedes the DELETE keeps the listing clear of the DELETE's fault.
async fn revoke_with_faulty_delete(
    env: &TestEnv,
    client_id: &str,
    scope_id: &str,
    kind: FaultKind,
) -> tonic::Status {
    let listing = add_fault(
        env,
        FaultEndpoint::ListGrants,
        FaultKind::Latency { millis: 500 },
        1,
    );
    let mut client = env.client.clone();
    let request = RevokeScopesRequest {
        client_id: client_id.into(),
        scope_ids: vec![scope_id.into()],
    };
    let revoke = tokio::spawn(async move { client.revoke_scopes(request).await });
    wait_for_fault(env, listing).await;
    add_fault(env, FaultEndpoint::Grants, kind, attempts_per_call());
    revoke
        .await
        .expect("task")
        .expect_err("the revoke's outcome is unknown")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_records_lost_revoke() {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let mut env = start_env(data_dir.path()).await;
    let client_id = create_app(&env, "lost-revoke-service").await;
    let grant_id = grant_scope(&env, &client_id, "okta.users.read").await;
    grant_scope(&env, &client_id, "okta.apps.read").await;

    // The first DELETE removes the grant, and the registrar gets a
    // connection reset on it and on every retry.
    let failed = revoke_with_faulty_delete(
        &env,
        &client_id,
        "okta.users.read",
        FaultKind::ResetAfterCommit,
    )
    .await;
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    let delete_path = format!("/api/v1/apps/{client_id}/grants/{grant_id}");
    assert_eq!(
        env.count_requests("DELETE", &delete_path),
        attempts_per_call() as usize
    );
    let okta_app = env.okta_app(&client_id).expect("the app exists");
    assert_eq!(
        okta_app.granted_scopes,
        vec!["okta.apps.read"],
        "the emulator applied the revoke"
    );
    let store = open_store(data_dir.path()).await;
    let intent = only_pending_intent(&store, IntentKind::Revoke).await;
    assert_eq!(intent.intent.grant_id, grant_id);
    assert_eq!(
        store.granted_scopes(&client_id).await.expect("read"),
        vec!["okta.apps.read", "okta.users.read"],
        "the store still records the grant before the restart"
    );

    restart_after_crash(&mut env).await;

    assert_eq!(intent_state(&store, intent.id).await, IntentState::Done);
    assert_eq!(
        store.granted_scopes(&client_id).await.expect("read"),
        vec!["okta.apps.read"]
    );
    let active = store.active_grants(&client_id).await.expect("read");
    assert!(
        active.iter().all(|(_, id)| *id != grant_id),
        "the revoked grant is not active: {active:?}"
    );
    assert!(store.pending_intents().await.expect("read").is_empty());
    let okta_app = env.okta_app(&client_id).expect("the app exists");
    assert_eq!(okta_app.granted_scopes, vec!["okta.apps.read"]);
    drop(store);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_fails_unapplied_revoke() {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let mut env = start_env(data_dir.path()).await;
    let client_id = create_app(&env, "unapplied-revoke-service").await;
    let grant_id = grant_scope(&env, &client_id, "okta.users.read").await;

    // Every DELETE is cut before the emulator runs it, which the registrar
    // cannot tell from a lost response.
    let failed = revoke_with_faulty_delete(
        &env,
        &client_id,
        "okta.users.read",
        FaultKind::ResetBeforeCommit,
    )
    .await;
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    let store = open_store(data_dir.path()).await;
    let intent = only_pending_intent(&store, IntentKind::Revoke).await;
    assert_eq!(intent.intent.grant_id, grant_id);

    restart_after_crash(&mut env).await;

    assert_eq!(intent_state(&store, intent.id).await, IntentState::Failed);
    assert_eq!(
        store.active_grants(&client_id).await.expect("read"),
        vec![("okta.users.read".to_string(), grant_id.clone())]
    );
    let okta_app = env.okta_app(&client_id).expect("the app exists");
    assert_eq!(okta_app.granted_scopes, vec!["okta.users.read"]);

    // The failed intent leaves the scope revocable.
    let results = env
        .client
        .revoke_scopes(RevokeScopesRequest {
            client_id: client_id.clone(),
            scope_ids: vec!["okta.users.read".into()],
        })
        .await
        .expect("revoke after the restart")
        .into_inner()
        .results;
    assert_eq!(
        results[0].outcome,
        ScopeOutcome::Revoked as i32,
        "{results:?}"
    );
    assert!(
        store
            .granted_scopes(&client_id)
            .await
            .expect("read")
            .is_empty()
    );
    drop(store);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_records_lost_delete() {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let mut env = start_env(data_dir.path()).await;
    let client_id = create_app(&env, "lost-delete-service").await;

    // The delay on the deactivation keeps it clear of the reset, which
    // then hits the DELETE and each of its retries. The first DELETE
    // removes the app.
    let deactivation = add_fault(
        &env,
        FaultEndpoint::AppLifecycle,
        FaultKind::Latency { millis: 500 },
        1,
    );
    let mut client = env.client.clone();
    let request = DeleteServiceAppRequest {
        client_id: client_id.clone(),
    };
    let delete = tokio::spawn(async move { client.delete_service_app(request).await });
    wait_for_fault(&env, deactivation).await;
    add_fault(
        &env,
        FaultEndpoint::AppLifecycle,
        FaultKind::ResetAfterCommit,
        attempts_per_call(),
    );
    let failed = delete
        .await
        .expect("task")
        .expect_err("the delete's outcome is unknown");
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    let app_path = format!("/api/v1/apps/{client_id}");
    assert_eq!(
        env.count_requests("DELETE", &app_path),
        attempts_per_call() as usize
    );
    assert!(
        env.okta_app(&client_id).is_none(),
        "the emulator deleted it"
    );
    let store = open_store(data_dir.path()).await;
    let intent = only_pending_intent(&store, IntentKind::DeleteApp).await;
    assert_eq!(intent.intent.client_id, client_id);
    let record = store
        .app(&client_id)
        .await
        .expect("read")
        .expect("recorded");
    assert!(!record.deleted, "not marked deleted before the restart");

    restart_after_crash(&mut env).await;

    assert_eq!(intent_state(&store, intent.id).await, IntentState::Done);
    let record = store
        .app(&client_id)
        .await
        .expect("read")
        .expect("recorded");
    assert!(record.deleted, "the store marks the app deleted");
    assert!(env.okta_app(&client_id).is_none());
    drop(store);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_fails_delete_lost_at_deactivation() {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let mut env = start_env(data_dir.path()).await;
    let client_id = create_app(&env, "deactivated-service").await;

    // The first deactivation commits and every attempt loses its
    // response, so the registrar never sends the DELETE.
    add_fault(
        &env,
        FaultEndpoint::AppLifecycle,
        FaultKind::ResetAfterCommit,
        attempts_per_call(),
    );
    let failed = env
        .client
        .delete_service_app(DeleteServiceAppRequest {
            client_id: client_id.clone(),
        })
        .await
        .expect_err("the delete's outcome is unknown");
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    let app_path = format!("/api/v1/apps/{client_id}");
    assert_eq!(env.count_requests("DELETE", &app_path), 0);
    let okta_app = env.okta_app(&client_id).expect("the app exists");
    assert_eq!(okta_app.status, "INACTIVE");
    let store = open_store(data_dir.path()).await;
    let intent = only_pending_intent(&store, IntentKind::DeleteApp).await;

    restart_after_crash(&mut env).await;

    // An app still in Okta, even deactivated, means the delete was not
    // applied.
    assert_eq!(intent_state(&store, intent.id).await, IntentState::Failed);
    let record = store
        .app(&client_id)
        .await
        .expect("read")
        .expect("recorded");
    assert!(!record.deleted, "the app is not marked deleted");
    let okta_app = env.okta_app(&client_id).expect("the app exists");
    assert_eq!(okta_app.status, "INACTIVE");

    // A second delete finishes the job without deactivating again.
    let deactivations = env.count_requests("POST", "/lifecycle/deactivate");
    env.client
        .delete_service_app(DeleteServiceAppRequest {
            client_id: client_id.clone(),
        })
        .await
        .expect("delete after the restart");
    assert_eq!(
        env.count_requests("POST", "/lifecycle/deactivate"),
        deactivations
    );
    assert!(env.okta_app(&client_id).is_none());
    let record = store
        .app(&client_id)
        .await
        .expect("read")
        .expect("recorded");
    assert!(record.deleted);
    drop(store);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_records_lost_grant() {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let mut env = start_env(data_dir.path()).await;
    let client_id = create_app(&env, "lost-grant-service").await;

    // The grant commits and the registrar gets a connection reset. The
    // delay keeps the grant in flight until the listing of grants, with
    // which the registrar looks for a lost grant, fails too.
    let grant_fault = add_fault(
        &env,
        FaultEndpoint::CreateGrant,
        FaultKind::Latency { millis: 1000 },
        1,
    );
    add_fault(
        &env,
        FaultEndpoint::CreateGrant,
        FaultKind::ResetAfterCommit,
        1,
    );
    let mut client = env.client.clone();
    let request = GrantScopesRequest {
        client_id: client_id.clone(),
        scope_ids: vec!["okta.users.read".into()],
        issuer: String::new(),
    };
    let grant = tokio::spawn(async move { client.grant_scopes(request).await });
    wait_for_fault(&env, grant_fault).await;
    add_fault(
        &env,
        FaultEndpoint::ListGrants,
        FaultKind::Status { status: 503 },
        1000,
    );
    let failed = grant
        .await
        .expect("task")
        .expect_err("the grant's outcome is unknown");
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    assert_eq!(env.count_requests("POST", "/grants"), 1);
    let okta_app = env.okta_app(&client_id).expect("the app exists");
    assert_eq!(
        okta_app.granted_scopes,
        vec!["okta.users.read"],
        "the emulator applied the grant"
    );
    let store = open_store(data_dir.path()).await;
    let intent = only_pending_intent(&store, IntentKind::Grant).await;
    assert_eq!(intent.intent.scope_id, "okta.users.read");
    assert!(
        store
            .granted_scopes(&client_id)
            .await
            .expect("read")
            .is_empty()
    );

    restart_after_crash(&mut env).await;

    assert_eq!(intent_state(&store, intent.id).await, IntentState::Done);
    let okta_grants = env
        .client
        .list_grants(ListGrantsRequest {
            client_id: client_id.clone(),
        })
        .await
        .expect("list grants")
        .into_inner()
        .grants;
    assert_eq!(okta_grants.len(), 1, "{okta_grants:?}");
    assert_eq!(
        store.active_grants(&client_id).await.expect("read"),
        vec![(
            "okta.users.read".to_string(),
            okta_grants[0].grant_id.clone()
        )]
    );
    assert_eq!(env.count_requests("POST", "/grants"), 1, "no second grant");
    drop(store);
    env.stop().await;
}

/// Returns the status of every private key in the SQLite store of
/// `data_dir`, by key id.
async fn private_key_statuses(data_dir: &Path) -> Vec<(String, String)> {
    let url = format!("sqlite://{}/registrar.db", data_dir.display());
    let pool = sqlx::sqlite::SqlitePool::connect(&url)
        .await
        .expect("open the store");
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT key_id, status FROM private_keys ORDER BY key_id")
            .fetch_all(&pool)
            .await
            .expect("read private keys");
    pool.close().await;
    rows
}

/// Stores a pending private key the way a create does, sealed with
/// `master_key`, and dates it `age_secs` back.
async fn insert_pending_key(data_dir: &Path, master_key: &MasterKey, key_id: &str, age_secs: i64) {
    let store = open_store(data_dir).await;
    store
        .insert_pending_key(&SealedKey {
            key_id: key_id.into(),
            purpose: KeyPurpose::Assertion,
            kid: key_id.into(),
            algorithm: "ES256".into(),
            public_jwk: "{}".into(),
            sealed: master_key.encrypt(b"a private key", key_id.as_bytes()),
        })
        .await
        .expect("insert a pending key");
    drop(store);
    let url = format!("sqlite://{}/registrar.db", data_dir.display());
    let pool = sqlx::sqlite::SqlitePool::connect(&url)
        .await
        .expect("open the store");
    sqlx::query("UPDATE private_keys SET created_at = created_at - $1 WHERE key_id = $2")
        .bind(age_secs)
        .bind(key_id)
        .execute(&pool)
        .await
        .expect("date the key back");
    pool.close().await;
}

/// A create that never reached Okta keeps its generated key until a
/// restart finds no such app. Okta's search may lag behind a create, so a
/// restart within five minutes leaves the intent pending. A later restart
/// fails the intent and deletes the key. A restart also deletes a pending key
/// that a crash left two hours ago, and keeps a recent one, which may belong
/// to a call in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_discards_keys_of_unapplied_creates() {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let master_key = MasterKey::random();
    let mut env = TestEnv::start_with(Options {
        data_dir: Some(data_dir.path().to_path_buf()),
        master_key: Some(master_key.clone()),
        ..Options::default()
    })
    .await;
    add_fault(
        &env,
        FaultEndpoint::CreateClient,
        FaultKind::ResetBeforeCommit,
        1000,
    );
    let failed = env
        .client
        .clone()
        .register_service(register_request())
        .await
        .expect_err("every create attempt is reset");
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    assert!(env.emulator.apps().is_empty());
    let store = open_store(data_dir.path()).await;
    let intent = only_pending_intent(&store, IntentKind::CreateApp).await;
    let key_id = intent.intent.key_id.clone().expect("a generated key");
    assert_eq!(
        private_key_statuses(data_dir.path()).await,
        vec![(key_id.clone(), "pending".to_string())],
        "the key is kept while the create's outcome is unknown"
    );
    insert_pending_key(data_dir.path(), &master_key, "crash-leftover", 2 * 3600).await;
    insert_pending_key(data_dir.path(), &master_key, "recent", 60).await;

    restart_after_crash(&mut env).await;

    assert_eq!(intent_state(&store, intent.id).await, IntentState::Pending);
    assert_eq!(
        private_key_statuses(data_dir.path()).await,
        vec![
            (key_id, "pending".to_string()),
            ("recent".to_string(), "pending".to_string())
        ],
        "a young create keeps its key"
    );

    date_back_intent(data_dir.path(), intent.id, 10 * 60).await;
    restart_after_crash(&mut env).await;

    assert_eq!(intent_state(&store, intent.id).await, IntentState::Failed);
    assert_eq!(
        private_key_statuses(data_dir.path()).await,
        vec![("recent".to_string(), "pending".to_string())]
    );
    drop(store);
    env.stop().await;
}

/// Dates an intent `age_secs` back.
async fn date_back_intent(data_dir: &Path, intent_id: i64, age_secs: i64) {
    let url = format!("sqlite://{}/registrar.db", data_dir.display());
    let pool = sqlx::sqlite::SqlitePool::connect(&url)
        .await
        .expect("open the store");
    sqlx::query("UPDATE intents SET created_at = created_at - $1 WHERE id = $2")
        .bind(age_secs * 1000)
        .bind(intent_id)
        .execute(&pool)
        .await
        .expect("date the intent back");
    pool.close().await;
}

/// A create whose first attempt may have been applied stays unknown, even
/// when a later attempt fails for certain: that failure does not prove that
/// the first one made no app. The intent stays pending and the generated
/// key is kept for the reconciliation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certain_failure_after_lost_create_stays_unknown() {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let mut options = Options {
        data_dir: Some(data_dir.path().to_path_buf()),
        ..Options::default()
    };
    // One-second windows keep the waits after each 429 short.
    options.emulator.rate_limits.window = Duration::from_secs(1);
    let env = TestEnv::start_with(options).await;
    // The slow lookup leaves time to arm the 429s before the create is
    // posted again.
    add_fault(
        &env,
        FaultEndpoint::ListApps,
        FaultKind::Latency { millis: 500 },
        1,
    );
    let reset = add_fault(
        &env,
        FaultEndpoint::CreateClient,
        FaultKind::ResetBeforeCommit,
        1,
    );
    let mut client = env.client.clone();
    let call = tokio::spawn(async move { client.register_service(register_request()).await });
    wait_for_fault(&env, reset).await;
    add_fault(
        &env,
        FaultEndpoint::CreateClient,
        FaultKind::RateLimitBurst,
        1000,
    );
    let failed = call
        .await
        .expect("task")
        .expect_err("every later attempt gets a 429");
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    assert!(
        env.count_requests("POST", "/oauth2/v1/clients") >= 2,
        "the create was posted again"
    );

    let store = open_store(data_dir.path()).await;
    let intent = only_pending_intent(&store, IntentKind::CreateApp).await;
    let key_id = intent.intent.key_id.clone().expect("a generated key");
    assert_eq!(
        private_key_statuses(data_dir.path()).await,
        vec![(key_id, "pending".to_string())],
        "the key is kept while the create's outcome is unknown"
    );
    drop(store);
    env.stop().await;
}

/// A create left pending at a restart, because Okta's search may lag, is
/// failed once a later create of the name makes the app. Its key is
/// deleted, and the new app's key is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_create_supersedes_unfinished_one() {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let mut env = start_env(data_dir.path()).await;
    add_fault(
        &env,
        FaultEndpoint::CreateClient,
        FaultKind::ResetBeforeCommit,
        1000,
    );
    env.client
        .clone()
        .register_service(register_request())
        .await
        .expect_err("every create attempt is reset");
    let store = open_store(data_dir.path()).await;
    let unfinished = only_pending_intent(&store, IntentKind::CreateApp).await;
    restart_after_crash(&mut env).await;
    assert_eq!(
        intent_state(&store, unfinished.id).await,
        IntentState::Pending,
        "a young create stays pending"
    );

    let app = env
        .client
        .clone()
        .register_service(register_request())
        .await
        .expect("the create goes through")
        .into_inner()
        .app
        .expect("app");

    assert_eq!(
        intent_state(&store, unfinished.id).await,
        IntentState::Failed
    );
    assert!(store.pending_intents().await.expect("read").is_empty());
    let statuses = private_key_statuses(data_dir.path()).await;
    assert_eq!(statuses.len(), 1, "only the new app's key: {statuses:?}");
    assert_eq!(statuses[0].1, "active", "{statuses:?}");
    assert_ne!(
        Some(&statuses[0].0),
        unfinished.intent.key_id.as_ref(),
        "the unfinished create's key is deleted"
    );
    assert_eq!(env.emulator.apps().len(), 1);
    assert_eq!(env.emulator.apps()[0].id, app.client_id);
    drop(store);
    env.stop().await;
}
