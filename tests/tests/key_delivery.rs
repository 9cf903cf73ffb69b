//! Key delivery: with `--deliver-private-keys`, WatchRotations carries each
//! app's private signing key to callers that ask, and the SDK keeps getting
//! tokens from Okta with it while the registrar is down, across rotations.

use std::time::Duration;

use registrar_sdk::v1::{AppKeyState, RotateKeyRequest, RotationPhase, WatchRotationsRequest};
use registrar_sdk::{Client, Error, ServiceIdentity};
use registrar_tests::{Options, TestEnv};
use tokio::sync::watch;
use tonic::Code;

const SCOPES: &[&str] = &["okta.users.read"];
const TOKEN_PATH: &str = "/oauth2/v1/token";

/// How long a test waits for a key state change.
const WAIT: Duration = Duration::from_secs(30);

async fn start_delivering() -> TestEnv {
    TestEnv::start_with(Options {
        deliver_private_keys: true,
        ..Options::default()
    })
    .await
}

async fn register_with_keys(env: &TestEnv, service_name: &str) -> ServiceIdentity {
    Client::connect(format!("http://{}", env.address))
        .await
        .expect("connect")
        .with_key_delivery()
        .register(service_name, SCOPES)
        .await
        .expect("register with key delivery")
}

/// Calls the emulator's users endpoint with a token, as a resource server
/// call, and returns the HTTP status.
async fn resource_status(env: &TestEnv, access_token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/api/v1/users", env.org_url))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("resource request")
        .status()
        .as_u16()
}

/// Waits until a rotation has finished, and returns the final state.
async fn until_rotation_done(changes: &mut watch::Receiver<AppKeyState>) -> AppKeyState {
    loop {
        tokio::time::timeout(WAIT, changes.changed())
            .await
            .expect("a key state change within 30 s")
            .expect("the watch is running");
        let state = changes.borrow_and_update().clone();
        if state.phase() == RotationPhase::Unspecified {
            return state;
        }
    }
}

#[tokio::test]
async fn key_delivery_off_by_default() {
    let env = TestEnv::start().await;
    let error = Client::connect(format!("http://{}", env.address))
        .await
        .expect("connect")
        .with_key_delivery()
        .register("delivery-off-service", SCOPES)
        .await
        .expect_err("the registrar does not deliver keys");
    let Error::Watch { status, .. } = &error else {
        panic!("expected a watch error, got {error}");
    };
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("include_private_keys")
            && status.message().contains("--deliver-private-keys"),
        "{status:?}"
    );

    // The same app watched without keys works, and carries no key.
    let identity = Client::connect(format!("http://{}", env.address))
        .await
        .expect("connect")
        .register("delivery-off-service", SCOPES)
        .await
        .expect("register");
    let state = identity.key_state();
    assert!(state.signing_key.is_none());
    assert_eq!(
        state.token_endpoint,
        format!("{}{TOKEN_PATH}", env.org_url),
        "the state names the token endpoint"
    );
    let error = identity
        .client_assertion()
        .expect_err("no key to sign with");
    assert!(matches!(error, Error::NoDeliveredKey { .. }), "{error}");
    identity.close().await;
    env.stop().await;
}

#[tokio::test]
async fn key_only_for_requesting_callers() {
    let env = start_delivering().await;
    let identity = register_with_keys(&env, "asked-service").await;
    let state = identity.key_state();
    let key = state.signing_key.clone().expect("the key is delivered");
    assert_eq!(key.kid, state.signing_kid);
    assert_eq!(key.alg, "RS256");
    assert!(key.pkcs8_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));

    // Debug output of the state and the identity leaves the key out.
    let body_line = key.pkcs8_pem.lines().nth(1).expect("a PEM body line");
    for debug in [format!("{state:?}"), format!("{identity:?}")] {
        assert!(!debug.contains(body_line), "{debug}");
        assert!(!debug.contains("BEGIN PRIVATE KEY"), "{debug}");
    }

    // A watcher that does not ask gets no key from the same registrar.
    let mut stream = env
        .new_client()
        .await
        .watch_rotations(WatchRotationsRequest {
            client_ids: vec![identity.client_id().to_string()],
            include_private_keys: false,
        })
        .await
        .expect("watch")
        .into_inner();
    let message = stream.message().await.expect("message").expect("first");
    assert!(message.apps[0].signing_key.is_none());
    assert_eq!(message.apps[0].signing_kid, state.signing_kid);
    identity.close().await;
    env.stop().await;
}

#[tokio::test]
async fn tokens_while_registrar_down() {
    let mut env = start_delivering().await;
    let identity = register_with_keys(&env, "outage-service").await;

    // With the registrar up, tokens come from it.
    let token = identity.access_token(SCOPES).await.expect("token");
    assert_eq!(resource_status(&env, &token.access_token).await, 200);
    let before = env.count_requests("POST", TOKEN_PATH);

    env.stop_registrar().await;

    // Down: the SDK signs with the delivered key and requests a token from Okta.
    let token = identity
        .access_token(SCOPES)
        .await
        .expect("token without the registrar");
    assert_eq!(token.token_type, "Bearer");
    assert!(!token.cached);
    assert_eq!(token.scopes, SCOPES);
    assert_eq!(resource_status(&env, &token.access_token).await, 200);
    assert_eq!(env.count_requests("POST", TOKEN_PATH), before + 1);

    // The next call is served from the SDK's cache, and a refresh requests
    // a new token from Okta.
    let again = identity.access_token(SCOPES).await.expect("cached token");
    assert!(again.cached);
    assert_eq!(again.access_token, token.access_token);
    assert_eq!(env.count_requests("POST", TOKEN_PATH), before + 1);
    let refreshed = identity
        .refresh_access_token(SCOPES)
        .await
        .expect("refreshed token");
    assert_ne!(refreshed.access_token, token.access_token);
    assert_eq!(env.count_requests("POST", TOKEN_PATH), before + 2);

    // Each locally signed assertion is new: Okta would refuse a replay.
    let first = identity.client_assertion().expect("assertion");
    let second = identity.client_assertion().expect("assertion");
    assert_ne!(first, second);

    // A scope the app was not granted: Okta's error (consent_required, as
    // for any scope without a grant) reaches the caller.
    let error = identity
        .access_token(&["okta.groups.manage"])
        .await
        .expect_err("scope not granted");
    let Error::LocalToken { detail, .. } = &error else {
        panic!("expected a local token error, got {error}");
    };
    assert!(detail.contains("HTTP 400"), "{detail}");
    assert!(detail.contains("consent_required"), "{detail}");
    assert!(!detail.contains(&token.access_token));
    env.stop().await;
}

#[tokio::test]
async fn delivered_key_follows_rotation() {
    let mut env = start_delivering().await;
    let identity = register_with_keys(&env, "rotated-delivery-service").await;
    let old_kid = identity.key_state().signing_kid;
    let mut changes = identity.changes();
    changes.borrow_and_update();

    env.client
        .clone()
        .rotate_key(RotateKeyRequest {
            client_id: identity.client_id().to_string(),
        })
        .await
        .expect("rotate");
    let state = until_rotation_done(&mut changes).await;
    assert_ne!(state.signing_kid, old_kid);
    let key = state.signing_key.expect("the new key is delivered");
    assert_eq!(key.kid, state.signing_kid);
    let app = env
        .okta_app(identity.client_id())
        .expect("the app is in the emulator");
    assert_eq!(
        app.kids,
        std::slice::from_ref(&state.signing_kid),
        "only the new key is left"
    );

    // With the old key gone from Okta, a token proves the SDK signs with
    // the new one.
    env.stop_registrar().await;
    let token = identity
        .access_token(SCOPES)
        .await
        .expect("token with the rotated key");
    assert_eq!(resource_status(&env, &token.access_token).await, 200);
    env.stop().await;
}

#[tokio::test]
async fn key_delivery_turned_on_later() {
    let env = start_delivering().await;
    let client = Client::connect(format!("http://{}", env.address))
        .await
        .expect("connect");
    let identity = client
        .clone()
        .register("late-delivery-service", SCOPES)
        .await
        .expect("register");
    assert!(identity.key_state().signing_key.is_none());

    // The shared stream reopens with the request for keys.
    let mut changes = identity.changes();
    let _client = client.with_key_delivery();
    tokio::time::timeout(WAIT, changes.wait_for(|state| state.signing_key.is_some()))
        .await
        .expect("the key arrives within 30 s")
        .expect("the watch is running");
    assert!(identity.client_assertion().is_ok());
    identity.close().await;
    env.stop().await;
}
