//! The key state watch behind [`ServiceIdentity`](crate::ServiceIdentity):
//! one `WatchRotations` stream per [`Client`](crate::Client), shared by every
//! identity registered through it.
//!
//! A background task keeps the stream open for the apps that have at least
//! one live handle. When an app is added or its last handle goes away, the
//! task opens a new stream with the new list at once. A clean end of the
//! stream (the registrar shut down) and retryable statuses make it reconnect
//! after an exponential backoff with jitter. The backoff starts at 100 ms,
//! doubles up to 10 s and starts over after every received message.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use registrar_api::v1::{AppKeyState, WatchRotationsResponse};
use tokio::sync::watch;
use tonic::Status;

use crate::{Error, RawClient};

mod task;
#[cfg(test)]
mod tests;

/// How long [`Client::register`](crate::Client::register) waits for the
/// app's first key state, unless
/// [`Client::with_watch_timeout`](crate::Client::with_watch_timeout) sets
/// another timeout.
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The maximum number of apps one client watches: the registrar's limit of
/// client ids per `WatchRotations` request.
pub const MAX_WATCHED_APPS: usize = 100;

/// Counters of a client's `WatchRotations` stream, from
/// [`Client::watch_stats`](crate::Client::watch_stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchStats {
    /// The number of `WatchRotations` calls that opened a stream since the
    /// client was created. Each reconnect and each change of the list of
    /// watched apps opens a new stream.
    pub streams_opened: u64,
    /// The number of streams open now: 0 or 1, because a client never runs
    /// two at once.
    pub streams_open: usize,
    /// The client ids that the open stream watches, sorted, or empty when no
    /// stream is open.
    pub client_ids: Vec<String>,
}

/// The shared state of one client's watch, and the client that the
/// background task streams with.
pub(crate) struct WatchHub {
    client: RawClient,
    state: Mutex<HubState>,
    /// Notified after every change of `state` that a waiter can act on.
    changed: watch::Sender<()>,
    streams_opened: AtomicU64,
}

#[derive(Default)]
struct HubState {
    /// The slot of each app that the stream covers.
    apps: BTreeMap<String, u64>,
    /// Every slot with live handles, including those whose watch failed.
    slots: HashMap<u64, Slot>,
    next_slot: u64,
    /// Increases whenever `apps` changes, which outdates the open stream.
    list_version: u64,
    /// Whether the background task runs.
    running: bool,
    /// The client ids of the open stream.
    open_stream: Option<Vec<String>>,
    /// Whether the stream requests the apps' private signing keys.
    private_keys: bool,
}

/// The watch of one app, shared by all handles of that app.
///
/// A failed slot leaves `HubState::apps` but stays in `HubState::slots`
/// until its last handle is dropped. Its identities keep reporting the
/// error, and a later registration of the same app starts a new slot.
struct Slot {
    client_id: String,
    handles: usize,
    /// The revision of the last good state.
    revision: Option<u64>,
    /// Set from the first state on; dropped when the watch fails, which
    /// closes every receiver.
    sender: Option<watch::Sender<AppKeyState>>,
    error: Option<Status>,
}

impl fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchHub")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl WatchHub {
    pub(crate) fn new(client: RawClient) -> Arc<Self> {
        Arc::new(Self {
            client,
            state: Mutex::new(HubState::default()),
            changed: watch::Sender::new(()),
            streams_opened: AtomicU64::new(0),
        })
    }

    /// Makes the stream request the apps' private signing keys from now
    /// on. An open stream is replaced by one that requests them.
    pub(crate) fn request_private_keys(&self) {
        {
            let mut state = self.lock();
            if state.private_keys {
                return;
            }
            state.private_keys = true;
            state.list_version += 1;
        }
        self.notify();
    }

    pub(crate) fn stats(&self) -> WatchStats {
        let state = self.lock();
        let client_ids = state.open_stream.clone().unwrap_or_default();
        WatchStats {
            streams_opened: self.streams_opened.load(Ordering::Relaxed),
            streams_open: usize::from(state.open_stream.is_some()),
            client_ids,
        }
    }

    /// Adds a handle for the app, starts the background task if it is not
    /// running, and waits up to `timeout` for the app's first state.
    pub(crate) async fn watch(
        self: &Arc<Self>,
        client_id: &str,
        timeout: Duration,
    ) -> Result<AppWatch, Error> {
        // Subscribing before the state is read means no change is missed.
        let mut changed = self.changed.subscribe();
        let (slot, start_task) = {
            let mut state = self.lock();
            let slot = match state.apps.get(client_id) {
                Some(&slot) => slot,
                None if state.apps.len() >= MAX_WATCHED_APPS => {
                    return Err(Error::TooManyWatchedApps {
                        client_id: client_id.to_string(),
                        limit: MAX_WATCHED_APPS,
                    });
                }
                None => state.add_slot(client_id),
            };
            if let Some(entry) = state.slots.get_mut(&slot) {
                entry.handles += 1;
            }
            let start_task = !state.running;
            state.running = true;
            (slot, start_task)
        };
        // Created before any await, so that a timeout or a cancelled call
        // releases the handle.
        let handle = SlotHandle {
            hub: Arc::clone(self),
            slot,
        };
        self.notify();
        if start_task {
            tokio::spawn(task::run(Arc::clone(self)));
        }

        let first_state = async {
            loop {
                if let Some(result) = self.first_state(slot) {
                    return result;
                }
                if changed.changed().await.is_err() {
                    // The hub owns the sender and `self` keeps the hub.
                    unreachable!("the watch hub's change sender lives as long as the hub");
                }
            }
        };
        match tokio::time::timeout(timeout, first_state).await {
            Ok(Ok(receiver)) => Ok(AppWatch { handle, receiver }),
            Ok(Err(status)) => Err(Error::Watch {
                client_id: client_id.to_string(),
                status,
            }),
            Err(_) => Err(Error::WatchTimeout {
                client_id: client_id.to_string(),
                timeout,
            }),
        }
    }

    /// Returns a receiver once the slot has a state, or the status once it
    /// failed, or `None` while it waits for its first state.
    fn first_state(&self, slot: u64) -> Option<Result<watch::Receiver<AppKeyState>, Status>> {
        let state = self.lock();
        let slot = state.slots.get(&slot)?;
        if let Some(status) = &slot.error {
            return Some(Err(status.clone()));
        }
        slot.sender.as_ref().map(|sender| Ok(sender.subscribe()))
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // No update panics halfway, so a poisoned lock still contains a
        // consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_replace(());
    }

    fn release(&self, slot_id: u64) {
        {
            let mut state = self.lock();
            let Some(slot) = state.slots.get_mut(&slot_id) else {
                return;
            };
            slot.handles -= 1;
            if slot.handles > 0 {
                return;
            }
            let client_id = slot.client_id.clone();
            state.slots.remove(&slot_id);
            if state.apps.get(&client_id) == Some(&slot_id) {
                state.apps.remove(&client_id);
                state.list_version += 1;
            }
        }
        self.notify();
    }

    /// Ends the watch of every app in `client_ids` with `status`.
    fn fail(&self, client_ids: &[String], status: &Status) {
        {
            let mut state = self.lock();
            for client_id in client_ids {
                let Some(slot_id) = state.apps.remove(client_id) else {
                    continue;
                };
                state.list_version += 1;
                if let Some(slot) = state.slots.get_mut(&slot_id) {
                    slot.error = Some(status.clone());
                    slot.sender = None;
                }
            }
        }
        self.notify();
    }
}

impl HubState {
    fn add_slot(&mut self, client_id: &str) -> u64 {
        let slot = self.next_slot;
        self.next_slot += 1;
        self.slots.insert(
            slot,
            Slot {
                client_id: client_id.to_string(),
                handles: 0,
                revision: None,
                sender: None,
                error: None,
            },
        );
        self.apps.insert(client_id.to_string(), slot);
        self.list_version += 1;
        slot
    }

    /// Applies one message of a stream opened for `client_ids`, and returns
    /// whether an app got its first state.
    ///
    /// An app missing from the message, or with a revision lower than its
    /// last one, keeps its last good state. The same revision again, as in
    /// the first message after a reconnect, changes nothing.
    fn apply(&mut self, client_ids: &[String], message: &WatchRotationsResponse) -> bool {
        let mut first_state = false;
        for client_id in client_ids {
            let Some(slot) = self
                .apps
                .get(client_id)
                .and_then(|id| self.slots.get_mut(id))
            else {
                // Released since the stream opened.
                continue;
            };
            let Some(app) = message.apps.iter().find(|app| app.client_id == *client_id) else {
                tracing::warn!(
                    %client_id,
                    message_revision = message.revision,
                    "rotation watch message has no state for a watched app; keeping the last state"
                );
                continue;
            };
            match slot.revision {
                Some(last) if app.revision < last => {
                    tracing::warn!(
                        %client_id,
                        revision = app.revision,
                        last_revision = last,
                        "rotation watch message has an older revision than the last state; keeping the last state"
                    );
                    continue;
                }
                // A stream that newly requests private keys brings the
                // same revision with the key added.
                Some(last)
                    if app.revision == last
                        && slot.sender.as_ref().is_none_or(|sender| {
                            sender.borrow().signing_key == app.signing_key
                        }) =>
                {
                    continue;
                }
                _ => {}
            }
            slot.revision = Some(app.revision);
            match &slot.sender {
                Some(sender) => {
                    sender.send_replace(app.clone());
                }
                None => {
                    slot.sender = Some(watch::Sender::new(app.clone()));
                    first_state = true;
                }
            }
            tracing::debug!(%client_id, revision = app.revision, "key state updated");
        }
        first_state
    }
}

/// One handle of an app's watch. The app stays watched while it has a
/// handle.
#[derive(Debug)]
struct SlotHandle {
    hub: Arc<WatchHub>,
    slot: u64,
}

impl Clone for SlotHandle {
    fn clone(&self) -> Self {
        if let Some(slot) = self.hub.lock().slots.get_mut(&self.slot) {
            slot.handles += 1;
        }
        Self {
            hub: Arc::clone(&self.hub),
            slot: self.slot,
        }
    }
}

impl Drop for SlotHandle {
    fn drop(&mut self) {
        self.hub.release(self.slot);
    }
}

/// A handle of an app's watch together with its state receiver.
#[derive(Debug, Clone)]
pub(crate) struct AppWatch {
    handle: SlotHandle,
    receiver: watch::Receiver<AppKeyState>,
}

impl AppWatch {
    pub(crate) fn key_state(&self) -> AppKeyState {
        self.receiver.borrow().clone()
    }

    pub(crate) fn has_signing_key(&self) -> bool {
        self.receiver.borrow().signing_key.is_some()
    }

    pub(crate) fn changes(&self) -> watch::Receiver<AppKeyState> {
        self.receiver.clone()
    }

    pub(crate) fn error(&self) -> Option<Status> {
        let state = self.handle.hub.lock();
        state
            .slots
            .get(&self.handle.slot)
            .and_then(|slot| slot.error.clone())
    }

    /// Releases this handle and, when no app is left, waits until the
    /// background task has stopped.
    pub(crate) async fn close(self) {
        let hub = Arc::clone(&self.handle.hub);
        let mut changed = hub.changed.subscribe();
        drop(self);
        loop {
            {
                let state = hub.lock();
                if !state.running || !state.apps.is_empty() {
                    return;
                }
            }
            if changed.changed().await.is_err() {
                unreachable!("the watch hub's change sender lives as long as the hub");
            }
        }
    }
}
