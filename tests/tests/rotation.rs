//! Key rotation, caller-managed keys and the rotation watch stream, against
//! the emulator's app key endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use okta_emulator::RateLimits;
use registrar_api::v1::{
    AddKeyRequest, DeleteServiceAppRequest, GenerateKey, GetAccessTokenRequest, KeyAlgorithm,
    RegisterServiceRequest, RetireKeyRequest, RotateKeyRequest, RotationPhase,
    SignClientAssertionRequest, WatchRotationsRequest, WatchRotationsResponse,
};
use registrar_tests::{Options, TestEnv, create_request, sample_jwks};
use tokio_stream::StreamExt;
use tonic::{Code, Streaming};

async fn register(env: &TestEnv, name: &str) -> String {
    let mut client = env.client.clone();
    client
        .register_service(RegisterServiceRequest {
            service_name: name.into(),
            scope_ids: vec!["okta.users.read".into()],
            key: Some(GenerateKey {
                algorithm: KeyAlgorithm::Es256 as i32,
            }),
            dpop_bound: false,
        })
        .await
        .expect("register")
        .into_inner()
        .app
        .expect("app")
        .client_id
}

async fn watch(env: &TestEnv, client_ids: &[&str]) -> Streaming<WatchRotationsResponse> {
    let mut client = env.new_client().await;
    client
        .watch_rotations(WatchRotationsRequest {
            client_ids: client_ids.iter().map(ToString::to_string).collect(),
            include_private_keys: false,
        })
        .await
        .expect("watch")
        .into_inner()
}

async fn next_message(stream: &mut Streaming<WatchRotationsResponse>) -> WatchRotationsResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a watch message within 10 s")
        .expect("the stream is open")
        .expect("a message, not an error")
}

/// Reads messages until the app's rotation has finished, checking that
/// revisions only increase; returns the last message.
async fn until_rotation_done(
    stream: &mut Streaming<WatchRotationsResponse>,
    mut revision: u64,
) -> WatchRotationsResponse {
    loop {
        let message = next_message(stream).await;
        assert!(
            message.revision > revision,
            "revision {} after {revision}",
            message.revision
        );
        revision = message.revision;
        if message.apps[0].phase == RotationPhase::Unspecified as i32 {
            return message;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_token_load_never_fails() {
    let env = TestEnv::start_with(Options {
        emulator: okta_emulator::Config {
            rate_limits: RateLimits {
                token: 1_000_000,
                ..RateLimits::default()
            },
            ..okta_emulator::Config::new(registrar_tests::API_TOKEN)
        },
        ..Options::default()
    })
    .await;
    let client_id = register(&env, "rotating-service").await;
    let mut stream = watch(&env, &[&client_id]).await;
    let first = next_message(&mut stream).await;
    let old_kid = first.apps[0].signing_kid.clone();
    assert!(!old_kid.is_empty());

    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..50 {
        let mut client = env.new_client().await;
        let (stop, issued, client_id) = (stop.clone(), issued.clone(), client_id.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let request = GetAccessTokenRequest {
                    client_id: client_id.clone(),
                    scopes: vec!["okta.users.read".into()],
                    force_refresh: true,
                };
                client.get_access_token(request).await?;
                issued.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, tonic::Status>(())
        }));
    }

    let mut client = env.client.clone();
    let rotated = client
        .rotate_key(RotateKeyRequest {
            client_id: client_id.clone(),
        })
        .await
        .expect("rotate")
        .into_inner()
        .state
        .expect("state");
    assert_eq!(rotated.phase, RotationPhase::NewKeyAdded as i32);
    assert_eq!(
        rotated.signing_kid, old_kid,
        "signing waits for the propagation delay"
    );
    assert_eq!(rotated.keys.len(), 2);
    let last = until_rotation_done(&mut stream, first.revision).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker
            .await
            .expect("worker")
            .expect("no token request failed");
    }
    assert!(
        issued.load(Ordering::Relaxed) > 50,
        "the workers fetched tokens during the rotation"
    );

    let new_kid = last.apps[0].signing_kid.clone();
    assert_ne!(new_kid, old_kid);
    assert_eq!(last.apps[0].keys.len(), 1);
    assert_eq!(last.apps[0].keys[0].kid, new_kid);

    // Okta saw both keys active together before the old one left.
    let events = env.emulator.key_events();
    let added = events
        .iter()
        .find(|event| event.kid == new_kid && event.event == "added")
        .expect("new key added");
    assert!(added.active_kids_after.contains(&old_kid), "{events:?}");
    assert!(added.active_kids_after.contains(&new_kid), "{events:?}");
    assert!(
        events
            .iter()
            .any(|event| event.kid == old_kid && event.event == "deleted")
    );
    let app = env.okta_app(&client_id).expect("app");
    assert_eq!(app.kids, vec![new_kid.clone()]);
    assert_eq!(app.active_kids, vec![new_kid]);
    env.stop().await;
}

#[tokio::test]
async fn watch_sends_state_at_once_and_only_own_changes() {
    let mut env = TestEnv::start().await;
    let watched = register(&env, "watched-service").await;
    let other = register(&env, "other-service").await;

    let mut stream = watch(&env, &[&watched]).await;
    let first = next_message(&mut stream).await;
    assert_eq!(first.apps.len(), 1);
    assert_eq!(first.apps[0].client_id, watched);
    assert_eq!(first.apps[0].keys.len(), 1);
    assert_eq!(first.apps[0].phase, RotationPhase::Unspecified as i32);

    // A whole rotation of another app sends nothing on this stream.
    let mut other_stream = watch(&env, &[&other]).await;
    let other_first = next_message(&mut other_stream).await;
    let mut client = env.client.clone();
    client
        .rotate_key(RotateKeyRequest {
            client_id: other.clone(),
        })
        .await
        .expect("rotate other");
    until_rotation_done(&mut other_stream, other_first.revision).await;
    let quiet = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(quiet.is_err(), "unexpected message: {quiet:?}");

    // A second rotation while one runs is refused.
    client
        .rotate_key(RotateKeyRequest {
            client_id: watched.clone(),
        })
        .await
        .expect("rotate watched");
    let busy = client
        .rotate_key(RotateKeyRequest {
            client_id: watched.clone(),
        })
        .await
        .expect_err("rotation running");
    assert_eq!(busy.code(), Code::FailedPrecondition);
    let done = until_rotation_done(&mut stream, first.revision).await;

    // The stream ends on shutdown; a new one starts with the current state.
    env.restart().await;
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream ends on shutdown");
    assert!(!matches!(ended, Some(Ok(_))), "{ended:?}");
    let mut reconnected = watch(&env, &[&watched]).await;
    let current = next_message(&mut reconnected).await;
    assert_eq!(current.revision, done.revision);
    let mut client = env.client.clone();
    client
        .rotate_key(RotateKeyRequest {
            client_id: watched.clone(),
        })
        .await
        .expect("rotate after restart");
    let after = next_message(&mut reconnected).await;
    assert!(after.revision > current.revision);

    // Unknown apps and bad lists.
    let mut client = env.client.clone();
    let status = client
        .watch_rotations(WatchRotationsRequest {
            client_ids: vec!["0oaUnknownApp0000000".into()],
            include_private_keys: false,
        })
        .await
        .expect_err("unknown app");
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .watch_rotations(WatchRotationsRequest::default())
        .await
        .expect_err("empty list");
    assert_eq!(status.code(), Code::InvalidArgument);
    env.stop().await;
}

#[tokio::test]
async fn crash_mid_rotation_resumes_after_restart() {
    let mut env = TestEnv::start_with(Options {
        rotation: registrar_server::rotation::RotationSettings {
            propagation_delay: Duration::from_millis(200),
            grace_period: Duration::from_secs(3),
            key_lifetime: None,
        },
        ..Options::default()
    })
    .await;
    let client_id = register(&env, "crashing-service").await;
    let mut stream = watch(&env, &[&client_id]).await;
    let first = next_message(&mut stream).await;
    let old_kid = first.apps[0].signing_kid.clone();

    let mut client = env.client.clone();
    client
        .rotate_key(RotateKeyRequest {
            client_id: client_id.clone(),
        })
        .await
        .expect("rotate");
    // Wait until signing switched: both keys are in Okta, the old one waits
    // for the grace period.
    loop {
        let message = next_message(&mut stream).await;
        if message.apps[0].phase == RotationPhase::SigningSwitched as i32 {
            break;
        }
    }
    assert_eq!(env.okta_app(&client_id).expect("app").active_kids.len(), 2);

    env.crash_and_restart().await;
    let mut stream = watch(&env, &[&client_id]).await;
    let resumed = next_message(&mut stream).await;
    assert_eq!(resumed.apps[0].phase, RotationPhase::SigningSwitched as i32);
    let done = until_rotation_done(&mut stream, resumed.revision).await;
    let new_kid = done.apps[0].signing_kid.clone();
    assert_ne!(new_kid, old_kid);

    // Every key left in Okta is one the registrar can sign with.
    let app = env.okta_app(&client_id).expect("app");
    assert_eq!(app.kids, vec![new_kid.clone()]);
    let mut client = env.client.clone();
    let assertion = client
        .sign_client_assertion(SignClientAssertionRequest { client_id })
        .await
        .expect("assertion after restart")
        .into_inner();
    assert_eq!(assertion.kid, new_kid);
    env.stop().await;
}

#[tokio::test]
async fn caller_managed_keys_add_and_retire() {
    let env = TestEnv::start().await;
    let mut client = env.client.clone();
    let app = client
        .create_service_app(create_request("own-keys"))
        .await
        .expect("create")
        .into_inner()
        .app
        .expect("app");
    let mut second = sample_jwks().keys.remove(0);
    let mut modulus = URL_SAFE_NO_PAD.decode(&second.n).expect("modulus");
    let last = modulus.len() - 1;
    modulus[last] ^= 0x02;
    second.n = URL_SAFE_NO_PAD.encode(modulus);
    second.kid = "k2".into();

    let add = AddKeyRequest {
        client_id: app.client_id.clone(),
        key: Some(second.clone()),
    };
    let added = client
        .add_key(add.clone())
        .await
        .expect("add")
        .into_inner()
        .key
        .expect("key");
    assert!(
        added.okta_key_id.starts_with("pks"),
        "{}",
        added.okta_key_id
    );
    client
        .add_key(add)
        .await
        .expect("adding the same key again succeeds");
    let okta = env.okta_app(&app.client_id).expect("app");
    assert_eq!(okta.active_kids, vec!["O4O".to_string(), "k2".to_string()]);

    let retire = |kid: &str| RetireKeyRequest {
        client_id: app.client_id.clone(),
        kid: kid.into(),
    };
    client.retire_key(retire("O4O")).await.expect("retire");
    client
        .retire_key(retire("O4O"))
        .await
        .expect("retiring again succeeds");
    assert_eq!(
        env.okta_app(&app.client_id).expect("app").kids,
        vec!["k2".to_string()]
    );
    let last_key = client
        .retire_key(retire("k2"))
        .await
        .expect_err("only active key");
    assert_eq!(
        last_key.code(),
        Code::FailedPrecondition,
        "{}",
        last_key.message()
    );

    // A kid reused for other key material is refused.
    let reused = client
        .add_key(AddKeyRequest {
            client_id: app.client_id.clone(),
            key: Some(registrar_api::v1::Jwk {
                kid: "k2".into(),
                ..sample_jwks().keys.remove(0)
            }),
        })
        .await
        .expect_err("kid reused");
    assert_eq!(reused.code(), Code::FailedPrecondition);

    // The registrar's own signing key is rotated, not retired.
    let held = register(&env, "held-keys").await;
    let mut stream = watch(&env, &[&held]).await;
    let kid = next_message(&mut stream).await.apps[0].signing_kid.clone();
    let status = client
        .retire_key(RetireKeyRequest {
            client_id: held,
            kid,
        })
        .await
        .expect_err("signing key");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("RotateKey"),
        "{}",
        status.message()
    );
    env.stop().await;
}

#[tokio::test]
async fn automatic_rotation_starts_near_half_the_key_lifetime() {
    let env = TestEnv::start_with(Options {
        rotation: registrar_server::rotation::RotationSettings {
            propagation_delay: Duration::from_millis(100),
            grace_period: Duration::from_millis(300),
            key_lifetime: Some(Duration::from_secs(4)),
        },
        ..Options::default()
    })
    .await;
    let client_id = register(&env, "aging-service").await;
    let mut stream = watch(&env, &[&client_id]).await;
    let first = next_message(&mut stream).await;
    let old_kid = first.apps[0].signing_kid.clone();

    // Half of 4 s, ±10 %: between 1.8 s and 2.2 s after creation.
    let scheduled = first.apps[0]
        .next_rotation
        .expect("a rotation is scheduled");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let ahead = scheduled.seconds as f64 + f64::from(scheduled.nanos) / 1e9 - now;
    assert!((0.0..=2.3).contains(&ahead), "scheduled {ahead} s ahead");

    let mut revision = first.revision;
    let done = loop {
        let message = next_message(&mut stream).await;
        assert!(message.revision > revision);
        revision = message.revision;
        if message.apps[0].signing_kid != old_kid
            && message.apps[0].phase == RotationPhase::Unspecified as i32
        {
            break message;
        }
    };
    assert_eq!(done.apps[0].keys.len(), 1);
    assert!(
        done.apps[0].next_rotation.is_some(),
        "the next rotation is scheduled"
    );
    assert_eq!(
        env.okta_app(&client_id).expect("app").kids,
        vec![done.apps[0].signing_kid.clone()]
    );
    env.stop().await;
}

#[tokio::test]
async fn delete_mid_rotation_ends_it() {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let env = TestEnv::start_with(Options {
        data_dir: Some(data_dir.path().to_path_buf()),
        ..Options::default()
    })
    .await;
    let client_id = register(&env, "deleted-mid-rotation").await;
    let mut client = env.client.clone();
    client
        .rotate_key(RotateKeyRequest {
            client_id: client_id.clone(),
        })
        .await
        .expect("rotate");
    client
        .delete_service_app(DeleteServiceAppRequest {
            client_id: client_id.clone(),
        })
        .await
        .expect("delete");

    let database = format!("sqlite://{}/registrar.db", data_dir.path().display());
    let store = registrar_server::store::Store::open(&database)
        .await
        .expect("store");
    assert_eq!(store.rotation(&client_id).await.expect("read"), None);
    assert!(
        store
            .app(&client_id)
            .await
            .expect("read")
            .expect("recorded")
            .deleted
    );

    // Past the propagation delay, no step of the ended rotation runs.
    let key_requests = env.count_requests("GET", "/keys");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(env.count_requests("GET", "/keys"), key_requests);

    // A second delete finds the app gone.
    let again = client
        .delete_service_app(DeleteServiceAppRequest {
            client_id: client_id.clone(),
        })
        .await
        .expect_err("deleted already");
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
    drop(store);
    env.stop().await;
}
