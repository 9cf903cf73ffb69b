//! The registrar authenticated to Okta as its own OAuth service app instead
//! of with an API token: the main job with Bearer and DPoP-bound tokens,
//! a missing scope, a too weak admin role, and a token that expires.

use std::time::{Duration, Instant};

use registrar_api::v1::{
    CreateServiceAppRequest, DeleteServiceAppRequest, GenerateKey, GetAccessTokenRequest,
    GrantScopesRequest, KeyAlgorithm, ListGrantsRequest, RevokeScopesRequest, RotateKeyRequest,
    create_service_app_request::KeySource,
};
use registrar_tests::oauth::RegistrarApp;
use registrar_tests::{Options, TestEnv, create_request};
use tonic::Code;

async fn start(app: RegistrarApp) -> TestEnv {
    TestEnv::start_with(Options {
        registrar_app: Some(app),
        ..Options::default()
    })
    .await
}

fn grant_request(client_id: &str, scopes: &[&str]) -> GrantScopesRequest {
    GrantScopesRequest {
        client_id: client_id.to_string(),
        scope_ids: scopes.iter().map(ToString::to_string).collect(),
        issuer: String::new(),
    }
}

/// Counts the emulator's requests with this method and path suffix whose
/// response had this status; an empty method matches every method.
fn count_with_status(env: &TestEnv, method: &str, suffix: &str, status: u16) -> usize {
    env.okta_requests()
        .iter()
        .filter(|request| {
            (method.is_empty() || request.method == method)
                && request.path.ends_with(suffix)
                && request.status == status
        })
        .count()
}

/// Runs create, grant, list, revoke, token, rotation and delete through
/// the gRPC API.
async fn run_main_job(env: &TestEnv) {
    let mut client = env.client.clone();

    let app = client
        .create_service_app(create_request("OAuth Managed Service"))
        .await
        .expect("create succeeds")
        .into_inner()
        .app
        .expect("app returned");
    assert!(env.okta_app(&app.client_id).is_some());

    client
        .grant_scopes(grant_request(
            &app.client_id,
            &["okta.users.read", "okta.apps.read"],
        ))
        .await
        .expect("grant succeeds");
    let grants = client
        .list_grants(ListGrantsRequest {
            client_id: app.client_id.clone(),
        })
        .await
        .expect("list succeeds")
        .into_inner()
        .grants;
    let mut scopes: Vec<_> = grants.iter().map(|grant| grant.scope_id.clone()).collect();
    scopes.sort();
    assert_eq!(scopes, ["okta.apps.read", "okta.users.read"]);

    client
        .revoke_scopes(RevokeScopesRequest {
            client_id: app.client_id.clone(),
            scope_ids: vec!["okta.apps.read".into()],
        })
        .await
        .expect("revoke succeeds");
    let granted = env.okta_app(&app.client_id).expect("app").granted_scopes;
    assert_eq!(granted, ["okta.users.read"]);

    // A generated-key app: a token for it, then a rotation of its key,
    // which changes keys of an app that holds a grant.
    let generated = client
        .create_service_app(CreateServiceAppRequest {
            client_name: "OAuth Generated Key".into(),
            key_source: Some(KeySource::GenerateKey(GenerateKey {
                algorithm: KeyAlgorithm::Es256 as i32,
            })),
            dpop_bound: false,
        })
        .await
        .expect("create with a generated key")
        .into_inner()
        .app
        .expect("app");
    client
        .grant_scopes(grant_request(&generated.client_id, &["okta.users.read"]))
        .await
        .expect("grant to the generated-key app");
    let token = client
        .get_access_token(GetAccessTokenRequest {
            client_id: generated.client_id.clone(),
            scopes: vec!["okta.users.read".into()],
            force_refresh: false,
        })
        .await
        .expect("token for the generated-key app")
        .into_inner();
    assert_eq!(token.token_type, "Bearer");
    assert_eq!(token.scopes, ["okta.users.read"]);

    let old_kid = generated.keys[0].kid.clone();
    client
        .rotate_key(RotateKeyRequest {
            client_id: generated.client_id.clone(),
        })
        .await
        .expect("rotation starts");
    wait_for_key_deleted(env, &old_kid).await;
    let rotated = env.okta_app(&generated.client_id).expect("app");
    assert_eq!(rotated.kids.len(), 1);
    assert_ne!(rotated.kids[0], old_kid);

    for client_id in [&app.client_id, &generated.client_id] {
        client
            .delete_service_app(DeleteServiceAppRequest {
                client_id: client_id.clone(),
            })
            .await
            .expect("delete succeeds");
        assert!(env.okta_app(client_id).is_none());
    }
}

/// Waits until the rotation task removed the old key from Okta.
async fn wait_for_key_deleted(env: &TestEnv, kid: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let deleted = env
            .emulator
            .key_events()
            .iter()
            .any(|event| event.kid == kid && event.event == "deleted");
        if deleted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the old key {kid} was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn main_job_with_bearer_token() {
    let env = start(RegistrarApp::default()).await;
    run_main_job(&env).await;

    // Every management call carried a valid access token.
    assert_eq!(count_with_status(&env, "", "", 401), 0);
    let first_token = env
        .okta_requests()
        .into_iter()
        .find(|request| request.path == "/oauth2/v1/token")
        .expect("a token request");
    assert_eq!(first_token.status, 200);
    env.stop().await;
}

#[tokio::test]
async fn main_job_with_dpop_bound_token() {
    let env = start(RegistrarApp {
        dpop_bound: true,
        ..RegistrarApp::default()
    })
    .await;
    run_main_job(&env).await;

    // The first token request without a proof got invalid_dpop_proof, the
    // one with a proof use_dpop_nonce, the third the token.
    let token_requests: Vec<u16> = env
        .okta_requests()
        .iter()
        .filter(|request| request.path == "/oauth2/v1/token")
        .map(|request| request.status)
        .take(3)
        .collect();
    assert_eq!(token_requests, [400, 400, 200]);
    env.stop().await;
}

#[tokio::test]
async fn missing_grant_scope_is_named() {
    let mut app = RegistrarApp::default();
    app.granted_scopes
        .retain(|scope| scope != "okta.appGrants.manage");
    let env = start(app).await;
    let mut client = env.client.clone();
    let created = client
        .create_service_app(create_request("Scope Check"))
        .await
        .expect("create succeeds without okta.appGrants.manage")
        .into_inner()
        .app
        .expect("app");

    let status = client
        .grant_scopes(grant_request(&created.client_id, &["okta.users.read"]))
        .await
        .expect_err("grant fails");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("okta.appGrants.manage"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("registrar's own credential"),
        "{}",
        status.message()
    );
    assert!(
        env.okta_app(&created.client_id)
            .expect("app")
            .granted_scopes
            .is_empty()
    );
    env.stop().await;
}

/// A create that Okta rejects, here for a missing scope of the registrar's
/// own credential, deletes the key generated for it: only an app could use
/// it.
#[tokio::test]
async fn rejected_create_keeps_no_key() {
    let mut app = RegistrarApp::default();
    app.granted_scopes
        .retain(|scope| scope != "okta.clients.register");
    app.requested_scopes
        .retain(|scope| scope != "okta.clients.register");
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let env = TestEnv::start_with(Options {
        registrar_app: Some(app),
        data_dir: Some(data_dir.path().to_path_buf()),
        ..Options::default()
    })
    .await;
    let status = env
        .client
        .clone()
        .create_service_app(CreateServiceAppRequest {
            client_name: "Rejected Create".into(),
            key_source: Some(KeySource::GenerateKey(GenerateKey::default())),
            dpop_bound: false,
        })
        .await
        .expect_err("create fails");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("okta.clients.register"),
        "{}",
        status.message()
    );

    let url = format!("sqlite://{}/registrar.db", data_dir.path().display());
    let pool = sqlx::sqlite::SqlitePool::connect(&url)
        .await
        .expect("open the store");
    let (keys,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM private_keys")
        .fetch_one(&pool)
        .await
        .expect("count private keys");
    assert_eq!(keys, 0, "the generated key is deleted");
    let (failed,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM intents WHERE kind = 'create_app' AND state = 'failed'",
    )
    .fetch_one(&pool)
    .await
    .expect("count intents");
    assert_eq!(failed, 1, "the create's intent is failed");
    pool.close().await;
    env.stop().await;
}

#[tokio::test]
async fn app_admin_role_cannot_grant() {
    let env = start(RegistrarApp {
        role: Some("APP_ADMIN".into()),
        ..RegistrarApp::default()
    })
    .await;
    let mut client = env.client.clone();
    let created = client
        .create_service_app(create_request("Role Check"))
        .await
        .expect("an app admin may create apps")
        .into_inner()
        .app
        .expect("app");

    let status = client
        .grant_scopes(grant_request(&created.client_id, &["okta.users.read"]))
        .await
        .expect_err("grant fails");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("Super Admin"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("SUPER_ADMIN"),
        "{}",
        status.message()
    );
    env.stop().await;
}

#[tokio::test]
async fn no_admin_role_is_explained() {
    let env = start(RegistrarApp {
        role: None,
        ..RegistrarApp::default()
    })
    .await;
    let mut client = env.client.clone();
    let status = client
        .create_service_app(create_request("No Role"))
        .await
        .expect_err("create fails");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("SUPER_ADMIN"),
        "{}",
        status.message()
    );
    env.stop().await;
}

#[tokio::test]
async fn expired_token_is_replaced() {
    let mut options = Options {
        registrar_app: Some(RegistrarApp::default()),
        ..Options::default()
    };
    options.emulator.access_token_lifetime = Duration::from_secs(100);
    let env = TestEnv::start_with(options).await;
    let mut client = env.client.clone();
    client
        .create_service_app(create_request("Before Expiry"))
        .await
        .expect("first create");

    // 150 s later by the emulator's clock the 100 s token is expired,
    // although the registrar still treats it as fresh: the 401 makes it get
    // a new one and repeat the call. New client assertions, valid for 300
    // s, still pass the emulator's clock.
    env.emulator.set_clock_offset(150);
    client
        .create_service_app(create_request("After Expiry"))
        .await
        .expect("create after the token expired");
    // Whichever call came first after the jump got the 401.
    assert_eq!(count_with_status(&env, "", "", 401), 1);
    assert_eq!(count_with_status(&env, "POST", "/oauth2/v1/token", 200), 2);
    env.stop().await;
}

#[tokio::test]
async fn short_lived_token_is_refreshed_ahead() {
    let mut options = Options {
        registrar_app: Some(RegistrarApp::default()),
        ..Options::default()
    };
    options.emulator.access_token_lifetime = Duration::from_secs(2);
    let env = TestEnv::start_with(options).await;
    let mut client = env.client.clone();
    client
        .create_service_app(create_request("Short Token One"))
        .await
        .expect("first create");
    tokio::time::sleep(Duration::from_secs(3)).await;
    client
        .create_service_app(create_request("Short Token Two"))
        .await
        .expect("second create");

    // The registrar refreshed before the call, so no call got a 401.
    assert_eq!(count_with_status(&env, "", "", 401), 0);
    assert!(count_with_status(&env, "POST", "/oauth2/v1/token", 200) >= 2);
    env.stop().await;
}
