//! The SDK's key state watch: `ServiceIdentity::key_state` and `changes`
//! against a running registrar, one shared stream per client, reconnects
//! across registrar restarts, and `close`.
//!
//! A restarted registrar listens on a new port, so the restart tests put a
//! TCP proxy with a fixed address in front of it and point the proxy at the
//! new registrar.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registrar_sdk::v1::{AppKeyState, RotateKeyRequest, RotationPhase};
use registrar_sdk::{Client, ServiceIdentity};
use registrar_tests::TestEnv;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Code;

const SCOPES: &[&str] = &["okta.users.read"];

/// How long a test waits for the SDK to see a change.
const WAIT: Duration = Duration::from_secs(30);

/// A TCP proxy on 127.0.0.1 that forwards each connection to a target the
/// test can change.
struct Proxy {
    address: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("bound address");
        let target = Arc::new(Mutex::new(target));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let target = Arc::clone(&target);
            let connections = Arc::clone(&connections);
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let upstream = *target.lock().expect("target lock");
                    let connection = tokio::spawn(async move {
                        // A refused upstream connection closes the inbound
                        // one, which the client sees as the server being
                        // unavailable.
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections
                        .lock()
                        .expect("connections lock")
                        .push(connection);
                }
            }
        });
        Self {
            address,
            target,
            connections,
            accept,
        }
    }

    /// Sends new connections to `target` and cuts the open ones, as the
    /// exit of the old registrar's process would.
    fn retarget(&self, target: SocketAddr) {
        *self.target.lock().expect("target lock") = target;
        for connection in self.connections.lock().expect("connections lock").drain(..) {
            connection.abort();
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for connection in self.connections.lock().expect("connections lock").drain(..) {
            connection.abort();
        }
    }
}

async fn connect(address: SocketAddr) -> Client {
    Client::connect(format!("http://{address}"))
        .await
        .expect("connect")
}

async fn register(client: &Client, service_name: &str) -> ServiceIdentity {
    client
        .clone()
        .register(service_name, SCOPES)
        .await
        .expect("register")
}

async fn rotate(env: &TestEnv, client_id: &str) {
    env.client
        .clone()
        .rotate_key(RotateKeyRequest {
            client_id: client_id.to_string(),
        })
        .await
        .expect("rotate");
}

/// Closes an identity, failing the test when that takes more than 30 s.
async fn close(identity: ServiceIdentity) {
    tokio::time::timeout(WAIT, identity.close())
        .await
        .expect("close returns within 30 s");
}

/// Waits for the next state on `changes`.
async fn next_state(changes: &mut watch::Receiver<AppKeyState>) -> AppKeyState {
    tokio::time::timeout(WAIT, changes.changed())
        .await
        .expect("a key state change within 30 s")
        .expect("the watch is running");
    changes.borrow_and_update().clone()
}

/// Reads states until no rotation runs, checking that revisions increase.
/// Returns the phases seen in order, and the last state.
async fn until_rotation_done(
    changes: &mut watch::Receiver<AppKeyState>,
    mut revision: u64,
) -> (Vec<RotationPhase>, AppKeyState) {
    let mut phases = Vec::new();
    loop {
        let state = next_state(changes).await;
        assert!(
            state.revision > revision,
            "revision {} after {revision}",
            state.revision
        );
        revision = state.revision;
        phases.push(state.phase());
        if state.phase() == RotationPhase::Unspecified {
            return (phases, state);
        }
    }
}

/// Polls `condition` every 20 ms until it is true, for up to 30 s.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

#[tokio::test]
async fn register_observes_rotation() {
    let env = TestEnv::start().await;
    let client = connect(env.address).await;
    let identity = register(&client, "sdk-watched-service").await;

    let first = identity.key_state();
    assert_eq!(first.client_id, identity.client_id());
    assert!(!first.signing_kid.is_empty());
    assert_eq!(first.phase(), RotationPhase::Unspecified);
    assert!(
        first.keys.iter().any(|key| key.kid == first.signing_kid),
        "{first:?}"
    );

    let mut changes = identity.changes();
    rotate(&env, identity.client_id()).await;
    let (phases, last) = until_rotation_done(&mut changes, first.revision).await;
    let added = phases
        .iter()
        .position(|phase| *phase == RotationPhase::NewKeyAdded)
        .unwrap_or_else(|| panic!("no NEW_KEY_ADDED in {phases:?}"));
    let switched = phases
        .iter()
        .position(|phase| *phase == RotationPhase::SigningSwitched)
        .unwrap_or_else(|| panic!("no SIGNING_SWITCHED in {phases:?}"));
    assert!(added < switched, "{phases:?}");
    assert_ne!(last.signing_kid, first.signing_kid);
    assert_eq!(last.keys.len(), 1);
    assert_eq!(last.keys[0].kid, last.signing_kid);
    assert_eq!(identity.key_state(), last);
    assert!(identity.watch_error().is_none());

    close(identity).await;
    env.stop().await;
}

#[tokio::test]
async fn identities_share_one_stream() {
    let env = TestEnv::start().await;
    let client = connect(env.address).await;
    let first = register(&client, "sdk-shared-a").await;
    let stats = client.watch_stats();
    assert_eq!(stats.streams_open, 1);
    assert_eq!(stats.streams_opened, 1);
    assert_eq!(stats.client_ids, vec![first.client_id().to_string()]);

    let second = register(&client, "sdk-shared-b").await;
    let stats = client.watch_stats();
    assert_eq!(stats.streams_open, 1);
    let mut both = vec![
        first.client_id().to_string(),
        second.client_id().to_string(),
    ];
    both.sort();
    assert_eq!(stats.client_ids, both);
    // The second app replaced the first stream with one for both apps.
    assert_eq!(stats.streams_opened, 2);

    // Another handle of a watched app, registered or cloned, opens nothing.
    let again = register(&client, "sdk-shared-a").await;
    assert_eq!(again.client_id(), first.client_id());
    assert_eq!(again.key_state(), first.key_state());
    let copy = second.clone();
    let stats = client.watch_stats();
    assert_eq!(stats.streams_opened, 2);
    assert_eq!(stats.streams_open, 1);

    // A rotation of the second app reaches its handles only.
    let first_changes = first.changes();
    let mut copy_changes = copy.changes();
    let before = copy.key_state();
    rotate(&env, second.client_id()).await;
    let (_, last) = until_rotation_done(&mut copy_changes, before.revision).await;
    assert_eq!(second.key_state(), last);
    assert!(!first_changes.has_changed().expect("watch running"));

    // Dropping every handle of the second app narrows the stream.
    drop(second);
    drop(copy);
    let only_first = vec![first.client_id().to_string()];
    wait_until("the stream watches only the first app", || {
        client.watch_stats().client_ids == only_first
    })
    .await;
    assert_eq!(client.watch_stats().streams_opened, 3);

    close(first).await;
    close(again).await;
    assert_eq!(client.watch_stats().streams_open, 0);
    env.stop().await;
}

#[tokio::test]
async fn watch_reconnects_after_restart() {
    let mut env = TestEnv::start().await;
    let proxy = Proxy::start(env.address).await;
    let client = Client::connect(proxy.endpoint()).await.expect("connect");
    let identity = register(&client, "sdk-restarted-service").await;
    let first = identity.key_state();
    let mut changes = identity.changes();

    // A graceful restart ends the stream with OK.
    env.restart().await;
    proxy.retarget(env.address);
    wait_until("the watch reconnects", || {
        let stats = client.watch_stats();
        stats.streams_opened >= 2 && stats.streams_open == 1
    })
    .await;
    rotate(&env, identity.client_id()).await;
    let (_, after_restart) = until_rotation_done(&mut changes, first.revision).await;
    assert_ne!(after_restart.signing_kid, first.signing_kid);

    // A crashed registrar cannot end the stream. The proxy cuts the
    // connection as the exit of its process would, so the stream fails.
    let opened = client.watch_stats().streams_opened;
    env.crash_and_restart().await;
    proxy.retarget(env.address);
    wait_until("the watch reconnects after the crash", || {
        let stats = client.watch_stats();
        stats.streams_opened > opened && stats.streams_open == 1
    })
    .await;
    rotate(&env, identity.client_id()).await;
    let (_, after_crash) = until_rotation_done(&mut changes, after_restart.revision).await;
    assert_ne!(after_crash.signing_kid, after_restart.signing_kid);
    assert_eq!(identity.key_state(), after_crash);
    assert!(identity.watch_error().is_none());

    close(identity).await;
    env.stop().await;
}

#[tokio::test]
async fn close_stops_reconnects() {
    let mut env = TestEnv::start().await;
    let proxy = Proxy::start(env.address).await;
    let client = Client::connect(proxy.endpoint()).await.expect("connect");
    let identity = register(&client, "sdk-closed-service").await;
    let copy = identity.clone();

    close(identity).await;
    assert_eq!(
        client.watch_stats().streams_open,
        1,
        "another handle of the app is open"
    );
    close(copy).await;
    let stats = client.watch_stats();
    assert_eq!(stats.streams_open, 0);
    assert!(stats.client_ids.is_empty(), "{stats:?}");

    env.restart().await;
    proxy.retarget(env.address);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(client.watch_stats().streams_opened, stats.streams_opened);

    // Dropping the last handle stops the stream as well.
    let dropped = register(&client, "sdk-closed-service").await;
    assert_eq!(
        client.watch_stats().streams_opened,
        stats.streams_opened + 1
    );
    drop(dropped);
    wait_until("the stream stops", || {
        client.watch_stats().streams_open == 0
    })
    .await;
    env.restart().await;
    proxy.retarget(env.address);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        client.watch_stats().streams_opened,
        stats.streams_opened + 1
    );
    env.stop().await;
}

#[tokio::test]
async fn deleted_app_ends_watch_with_not_found() {
    let mut env = TestEnv::start().await;
    let proxy = Proxy::start(env.address).await;
    let client = Client::connect(proxy.endpoint()).await.expect("connect");
    let identity = register(&client, "sdk-deleted-service").await;
    let first = identity.key_state();
    let mut changes = identity.changes();

    client
        .clone()
        .delete_service_app(identity.client_id())
        .await
        .expect("delete");
    // The reconnect after the restart requests an app that is gone.
    env.restart().await;
    proxy.retarget(env.address);
    tokio::time::timeout(WAIT, changes.changed())
        .await
        .expect("the watch ends within 30 s")
        .expect_err("the watch ended instead of sending a state");
    let status = identity.watch_error().expect("a watch error");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(identity.key_state(), first);

    // No app is left to watch, so nothing reconnects.
    wait_until("the stream stops", || {
        client.watch_stats().streams_open == 0
    })
    .await;
    let opened = client.watch_stats().streams_opened;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client.watch_stats().streams_opened, opened);

    // Registering the name again creates a new app with a working watch.
    let renewed = register(&client, "sdk-deleted-service").await;
    assert_ne!(renewed.client_id(), identity.client_id());
    assert!(renewed.watch_error().is_none());
    assert_eq!(
        identity.watch_error().map(|status| status.code()),
        Some(Code::NotFound)
    );
    close(renewed).await;
    env.stop().await;
}
