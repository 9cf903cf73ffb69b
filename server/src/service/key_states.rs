//! The shared key state of watched apps. WatchRotations streams read each
//! app's state from here, so that after a change the registrar builds the
//! changed app's state from the store once instead of once per open stream.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use registrar_api::v1::AppKeyState;
use tokio::sync::watch;

use crate::error::ServiceError;

/// The number of slots below which `KeyStates::slot` does not prune the
/// slots of apps that no stream watches any more.
const MIN_PRUNE_LEN: usize = 64;

/// The change counter of all apps and a cached key state for each app that
/// an open stream watches.
#[derive(Debug)]
pub(crate) struct KeyStates {
    /// The number of changes announced since the start. `announce` marks
    /// the app's slot while it has the write lock, so a reader of the count
    /// observes the new count and the mark together, or neither.
    changes: watch::Sender<u64>,
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    by_client_id: HashMap<String, Weak<AppSlot>>,
    /// The map length at which the next insert drops the entries of
    /// slots that are gone.
    prune_at: usize,
}

impl Default for KeyStates {
    fn default() -> Self {
        Self {
            changes: watch::channel(0).0,
            slots: Mutex::new(Slots {
                by_client_id: HashMap::new(),
                prune_at: MIN_PRUNE_LEN,
            }),
        }
    }
}

impl KeyStates {
    /// Returns a receiver that gets a new value after every change of any
    /// app's key state.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Marks the app's cached state as stale and wakes every subscriber.
    /// Call it after the change is committed to the store.
    pub(crate) fn announce(&self, client_id: &str) {
        self.changes.send_modify(|count| {
            *count += 1;
            let slots = self.slots.lock().expect("key state slots lock poisoned");
            if let Some(slot) = slots.by_client_id.get(client_id).and_then(Weak::upgrade) {
                slot.changed_at.store(*count, Ordering::SeqCst);
            }
        });
    }

    /// Marks the cached state of every app as stale and wakes every
    /// subscriber.
    pub(crate) fn announce_all(&self) {
        self.changes.send_modify(|count| {
            *count += 1;
            let slots = self.slots.lock().expect("key state slots lock poisoned");
            for slot in slots.by_client_id.values().filter_map(Weak::upgrade) {
                slot.changed_at.store(*count, Ordering::SeqCst);
            }
        });
    }

    /// Returns the app's slot, shared with every other stream that watches
    /// the app. The slot is dropped with the last stream that watches the
    /// app.
    pub(crate) fn slot(&self, client_id: &str) -> Arc<AppSlot> {
        let mut slots = self.slots.lock().expect("key state slots lock poisoned");
        if let Some(slot) = slots.by_client_id.get(client_id).and_then(Weak::upgrade) {
            return slot;
        }
        let slot = Arc::new(AppSlot {
            changes: self.changes.subscribe(),
            changed_at: AtomicU64::new(0),
            cached: Mutex::new(None),
            building: tokio::sync::Mutex::new(()),
        });
        slots
            .by_client_id
            .insert(client_id.to_string(), Arc::downgrade(&slot));
        if slots.by_client_id.len() >= slots.prune_at {
            slots.by_client_id.retain(|_, slot| slot.strong_count() > 0);
            slots.prune_at = (slots.by_client_id.len() * 2).max(MIN_PRUNE_LEN);
        }
        slot
    }
}

/// One app's cached key state, without private keys.
#[derive(Debug)]
pub(crate) struct AppSlot {
    changes: watch::Receiver<u64>,
    /// The change count of the latest change announced for this app, or 0.
    changed_at: AtomicU64,
    cached: Mutex<Option<Cached>>,
    /// Held while the state is read from the store, so that one task reads
    /// it and the others wait for its result.
    building: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Cached {
    /// The change count read before the store was read.
    built_at: u64,
    state: Arc<AppKeyState>,
}

impl AppSlot {
    /// Returns the app's latest key state: the cached one when no change of
    /// the app was announced since it was built, otherwise the result of
    /// `build`, which only one of the concurrent callers runs.
    ///
    /// Errors are not cached, so every caller that gets one ran `build`
    /// itself. An unknown or deleted app therefore costs one store read per
    /// caller, because an app that is not found now may be recorded later
    /// without an announcement.
    pub(crate) async fn latest<F, Fut>(&self, build: F) -> Result<Arc<AppKeyState>, ServiceError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AppKeyState, ServiceError>>,
    {
        if let Some(state) = self.fresh() {
            return Ok(state);
        }
        let _building = self.building.lock().await;
        if let Some(state) = self.fresh() {
            return Ok(state);
        }
        // A change announced after this read leaves `changed_at` above
        // `built_at`, so the state built here counts as stale after it.
        let built_at = *self.changes.borrow();
        let result = build().await;
        let mut cached = self.cached.lock().expect("key state cache lock poisoned");
        match result {
            Ok(state) => {
                let state = Arc::new(state);
                *cached = Some(Cached {
                    built_at,
                    state: Arc::clone(&state),
                });
                Ok(state)
            }
            Err(error) => {
                *cached = None;
                Err(error)
            }
        }
    }

    fn fresh(&self) -> Option<Arc<AppKeyState>> {
        let cached = self.cached.lock().expect("key state cache lock poisoned");
        let changed_at = self.changed_at.load(Ordering::SeqCst);
        cached
            .as_ref()
            .filter(|cached| cached.built_at >= changed_at)
            .map(|cached| Arc::clone(&cached.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(revision: u64) -> AppKeyState {
        AppKeyState {
            client_id: "0oa1".into(),
            revision,
            ..AppKeyState::default()
        }
    }

    #[tokio::test]
    async fn cached_state_served_until_announced() {
        let states = KeyStates::default();
        let slot = states.slot("0oa1");
        let first = slot.latest(|| async { Ok(state(1)) }).await.unwrap();
        assert_eq!(first.revision, 1);

        let cached = slot.latest(|| async { Ok(state(2)) }).await.unwrap();
        assert_eq!(cached.revision, 1, "no change announced");

        states.announce("0oa2");
        let other_app_changed = slot.latest(|| async { Ok(state(2)) }).await.unwrap();
        assert_eq!(other_app_changed.revision, 1, "another app changed");

        states.announce("0oa1");
        let rebuilt = slot.latest(|| async { Ok(state(2)) }).await.unwrap();
        assert_eq!(rebuilt.revision, 2);
    }

    #[tokio::test]
    async fn slot_shared_while_held() {
        let states = KeyStates::default();
        let first = states.slot("0oa1");
        let second = states.slot("0oa1");
        assert!(Arc::ptr_eq(&first, &second));

        first.latest(|| async { Ok(state(1)) }).await.unwrap();
        drop(first);
        drop(second);
        let renewed = states.slot("0oa1");
        let rebuilt = renewed.latest(|| async { Ok(state(2)) }).await.unwrap();
        assert_eq!(rebuilt.revision, 2, "a dropped slot keeps no state");
    }

    #[tokio::test]
    async fn error_not_cached() {
        let states = KeyStates::default();
        let slot = states.slot("0oa1");
        slot.latest(|| async { Ok(state(1)) }).await.unwrap();
        states.announce("0oa1");
        let error = slot
            .latest(|| async { Err(ServiceError::AppNotFound("0oa1".into())) })
            .await;
        assert!(matches!(error, Err(ServiceError::AppNotFound(_))));

        let after_error = slot.latest(|| async { Ok(state(2)) }).await.unwrap();
        assert_eq!(after_error.revision, 2);
    }

    #[tokio::test]
    async fn concurrent_callers_build_once() {
        let states = KeyStates::default();
        let slot = states.slot("0oa1");
        let builds = Arc::new(AtomicU64::new(0));
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let slot = Arc::clone(&slot);
            let builds = Arc::clone(&builds);
            callers.spawn(async move {
                slot.latest(|| async {
                    builds.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    Ok(state(1))
                })
                .await
                .map(|state| state.revision)
            });
        }
        while let Some(result) = callers.join_next().await {
            assert_eq!(result.expect("caller task").expect("state"), 1);
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn slot_map_pruned() {
        let states = KeyStates::default();
        for index in 0..1000 {
            drop(states.slot(&format!("0oa{index}")));
        }
        let slots = states.slots.lock().unwrap();
        assert!(slots.by_client_id.len() < MIN_PRUNE_LEN * 2);
    }
}
