//! Unit tests of the watch state and of a watch that cannot connect.

use std::time::Duration;

use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_api::v1::{AppKeyState, RotationPhase, WatchRotationsResponse};
use tokio::sync::watch;

use super::{HubState, WatchHub};
use crate::{Credentials, Error, RawClient};

fn app_state(client_id: &str, revision: u64, signing_kid: &str) -> AppKeyState {
    AppKeyState {
        client_id: client_id.to_string(),
        revision,
        signing_kid: signing_kid.to_string(),
        phase: RotationPhase::Unspecified as i32,
        ..AppKeyState::default()
    }
}

fn message(apps: Vec<AppKeyState>) -> WatchRotationsResponse {
    WatchRotationsResponse {
        revision: apps.iter().map(|app| app.revision).sum(),
        apps,
    }
}

/// Returns a state with one watched app and a receiver of its state.
fn watched(client_id: &str, revision: u64) -> (HubState, watch::Receiver<AppKeyState>) {
    let mut state = HubState::default();
    let slot = state.add_slot(client_id);
    assert!(state.apply(
        &[client_id.to_string()],
        &message(vec![app_state(client_id, revision, "kid-1")])
    ));
    let receiver = state.slots[&slot]
        .sender
        .as_ref()
        .expect("first state sets the sender")
        .subscribe();
    (state, receiver)
}

#[test]
fn apply_sets_first_state() {
    let (_, receiver) = watched("0oaA", 5);
    assert_eq!(receiver.borrow().revision, 5);
    assert_eq!(receiver.borrow().signing_kid, "kid-1");
}

#[test]
fn apply_takes_higher_revision() {
    let (mut state, mut receiver) = watched("0oaA", 5);
    let ids = ["0oaA".to_string()];
    assert!(!state.apply(&ids, &message(vec![app_state("0oaA", 6, "kid-2")])));
    assert!(receiver.has_changed().expect("sender alive"));
    assert_eq!(receiver.borrow_and_update().signing_kid, "kid-2");
}

#[test]
fn apply_keeps_state_on_lower_revision() {
    let (mut state, receiver) = watched("0oaA", 5);
    let ids = ["0oaA".to_string()];
    state.apply(&ids, &message(vec![app_state("0oaA", 4, "kid-old")]));
    assert!(!receiver.has_changed().expect("sender alive"));
    assert_eq!(receiver.borrow().signing_kid, "kid-1");
}

#[test]
fn apply_ignores_same_revision() {
    let (mut state, receiver) = watched("0oaA", 5);
    let ids = ["0oaA".to_string()];
    state.apply(&ids, &message(vec![app_state("0oaA", 5, "kid-1")]));
    assert!(!receiver.has_changed().expect("sender alive"));
}

#[test]
fn apply_keeps_state_of_missing_app() {
    let (mut state, receiver) = watched("0oaA", 5);
    state.add_slot("0oaB");
    let ids = ["0oaA".to_string(), "0oaB".to_string()];
    assert!(state.apply(&ids, &message(vec![app_state("0oaB", 1, "kid-b")])));
    assert!(!receiver.has_changed().expect("sender alive"));
    assert_eq!(receiver.borrow().revision, 5);
}

#[test]
fn apply_skips_apps_not_requested() {
    let mut state = HubState::default();
    let slot = state.add_slot("0oaA");
    let first = state.apply(&[], &message(vec![app_state("0oaA", 1, "kid-1")]));
    assert!(!first);
    assert!(state.slots[&slot].sender.is_none());
}

/// Returns a channel to a local port that nothing listens on.
async fn closed_port_client() -> RawClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let address = listener.local_addr().expect("bound address");
    drop(listener);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("valid endpoint")
        .connect_lazy();
    RegistrarClient::with_interceptor(channel, Credentials::default())
}

#[tokio::test]
async fn watch_times_out_and_stops_task() {
    let hub = WatchHub::new(closed_port_client().await);
    let error = hub
        .watch("0oaUnreachable", Duration::from_millis(300))
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(error, Error::WatchTimeout { ref client_id, .. } if client_id == "0oaUnreachable"),
        "{error}"
    );
    // The failed call released its handle, so the task stops.
    tokio::time::timeout(Duration::from_secs(15), async {
        while hub.lock().running {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the task stops once no app is watched");
    let stats = hub.stats();
    assert_eq!(stats.streams_opened, 0);
    assert_eq!(stats.streams_open, 0);
    assert!(hub.lock().slots.is_empty());
}

#[test]
fn apply_takes_same_revision_with_new_key() {
    let (mut state, mut receiver) = watched("0oaA", 5);
    let ids = ["0oaA".to_string()];
    let mut with_key = app_state("0oaA", 5, "kid-1");
    with_key.signing_key = Some(registrar_api::v1::PrivateKey {
        kid: "kid-1".to_string(),
        alg: "RS256".to_string(),
        pkcs8_pem: "pem".to_string(),
    });
    assert!(!state.apply(&ids, &message(vec![with_key.clone()])));
    assert!(receiver.has_changed().expect("sender alive"));
    assert!(receiver.borrow_and_update().signing_key.is_some());

    // The same revision and key again changes nothing.
    assert!(!state.apply(&ids, &message(vec![with_key])));
    assert!(!receiver.has_changed().expect("sender alive"));
}
