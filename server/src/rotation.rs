//! Key rotation for apps whose key the registrar holds, in two phases that
//! never leave a gap: the new key is added to Okta beside the old one,
//! signing switches to it after a propagation delay, and the old key is
//! deactivated and deleted after a grace period. Each step is recorded
//! before the next begins, so a restarted registrar resumes where it
//! stopped.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use registrar_api::v1::KeyAlgorithm;
use tokio::sync::{Notify, watch};

use crate::error::ServiceError;
use crate::keyring::Keyring;
use crate::keys::SigningAlgorithm;
use crate::locks::Locks;
use crate::metrics::RotationEvent;
use crate::okta::{OktaClient, OktaError};
use crate::service::key_states::KeyStates;
use crate::store::{KeyPurpose, Phase, Rotation, Store};

/// How long the rotation task waits before it tries an app whose lock
/// another task or replica holds, in milliseconds.
const BUSY_APP_RETRY_MILLIS: i64 = 1_000;

/// The timing of rotations.
#[derive(Debug, Clone, Copy)]
pub struct RotationSettings {
    /// How long a new key is registered in Okta before the registrar signs
    /// with it, so that Okta serves it everywhere first.
    pub propagation_delay: Duration,
    /// How long the old key stays active after signing switched. It must
    /// exceed the assertion lifetime plus clock skew, so that assertions
    /// signed with the old key stay valid until they expire.
    pub grace_period: Duration,
    /// The planned lifetime of a registrar-held key, or `None` for no
    /// automatic rotation. A rotation starts near half of it, with ±10 %
    /// jitter so that a fleet of apps does not rotate at once.
    pub key_lifetime: Option<Duration>,
}

/// Runs rotations and announces every change of an app's key state.
#[derive(Debug, Clone)]
pub struct Rotator {
    okta: OktaClient,
    store: Store,
    keyring: Keyring,
    settings: RotationSettings,
    wake: Arc<Notify>,
    key_states: Arc<KeyStates>,
    locks: Locks,
}

impl Rotator {
    /// Builds a rotator.
    pub fn new(
        okta: OktaClient,
        store: Store,
        keyring: Keyring,
        settings: RotationSettings,
    ) -> Self {
        Self {
            okta,
            keyring,
            settings,
            wake: Arc::new(Notify::new()),
            key_states: Arc::new(KeyStates::default()),
            locks: Locks::new(store.coordination().cloned()),
            store,
        }
    }

    /// Returns the locks of names and apps, which RotateKey shares with the
    /// rotation task.
    pub fn locks(&self) -> &Locks {
        &self.locks
    }

    /// Takes note of a change that another replica made to the app's key
    /// state or rotation plan: drops the cached signing key, marks the
    /// watched state stale, and wakes the rotation task.
    pub fn changed_elsewhere(&self, client_id: &str) {
        self.keyring.forget(client_id);
        self.announce(client_id);
        self.wake.notify_one();
    }

    /// Takes note that any app may have changed elsewhere, after the
    /// notifications of other replicas were lost.
    pub fn anything_changed_elsewhere(&self) {
        self.keyring.forget_all();
        self.key_states.announce_all();
        self.wake.notify_one();
    }

    /// Returns a receiver that gets a new value after every change of any
    /// app's key state.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.key_states.subscribe()
    }

    /// Announces that the app's key state changed, after the change is
    /// committed to the store.
    pub fn announce(&self, client_id: &str) {
        self.key_states.announce(client_id);
    }

    /// Returns the key states that watch streams share, which `announce`
    /// marks as stale.
    pub(crate) fn key_states(&self) -> &KeyStates {
        &self.key_states
    }

    /// Starts a rotation: generates and stores the new key, then registers
    /// it in Okta beside the old one. The caller holds the app's lock.
    pub async fn start(&self, client_id: &str) -> Result<(), ServiceError> {
        if let Some(running) = self.store.rotation(client_id).await? {
            return Err(ServiceError::RotationRunning {
                client_id: client_id.to_string(),
                phase: format!("{:?}", running.phase),
            });
        }
        let current = self
            .keyring
            .active(client_id, KeyPurpose::Assertion)
            .await?
            .ok_or_else(|| ServiceError::NoPrivateKey(client_id.to_string()))?;
        let old_key_id = self
            .store
            .held_keys(client_id, KeyPurpose::Assertion)
            .await?
            .into_iter()
            .find(|key| key.status == "active")
            .map(|key| key.key_id)
            .ok_or_else(|| ServiceError::NoPrivateKey(client_id.to_string()))?;

        let algorithm = same_algorithm(current.algorithm(), &current.public_jwk().n);
        let pending = self
            .keyring
            .generate_pending(algorithm, KeyPurpose::Assertion)
            .await?;
        let rotation = Rotation {
            client_id: client_id.to_string(),
            old_key_id,
            new_key_id: pending.key_id.clone(),
            phase: Phase::Generated,
            next_step_at: unix_millis(),
        };
        if let Err(error) = self.store.start_rotation(&rotation).await {
            // Without its rotation row nothing refers to the new key.
            if let Err(discard_error) = self.store.discard_pending_key(&pending.key_id).await {
                tracing::warn!(
                    %client_id,
                    error = %discard_error,
                    "deleting the new key of a rotation that failed to start failed; the next start deletes it"
                );
            }
            return Err(error.into());
        }
        tracing::info!(%client_id, new_kid = %pending.key.kid(), "key rotation started");
        crate::metrics::rotation(RotationEvent::Started);
        self.announce(client_id);
        self.add_new_key(&rotation)
            .await
            .inspect_err(|_| crate::metrics::rotation(RotationEvent::Failed))?;
        self.wake.notify_one();
        Ok(())
    }

    /// Schedules the app's next automatic rotation, when a key lifetime is
    /// set: at half the lifetime from now, ±10 %.
    pub async fn schedule(&self, client_id: &str) -> Result<(), ServiceError> {
        let Some(lifetime) = self.settings.key_lifetime else {
            return Ok(());
        };
        let jitter = 0.9 + 0.2 * rand::random::<f64>();
        let at = unix_millis() + millis(lifetime.mul_f64(0.5 * jitter));
        self.store.schedule_rotation(client_id, at).await?;
        // The rotation task may be asleep until a later deadline.
        self.wake.notify_one();
        Ok(())
    }

    /// Starts the automatic rotations that are due, and returns when the
    /// next one is due.
    async fn start_due_rotations(&self) -> Result<Option<i64>, ServiceError> {
        let (due, next) = self.store.due_rotations(unix_millis()).await?;
        let mut next = next;
        for client_id in due {
            // RotateKey on this or another replica may start one first. An
            // app whose lock is busy is tried again a second later, so that
            // one busy app does not hold up the others.
            let Some(_app_guard) = self.locks.try_lock(&format!("app:{client_id}")).await? else {
                let retry_at = unix_millis() + BUSY_APP_RETRY_MILLIS;
                next = Some(next.map_or(retry_at, |next: i64| next.min(retry_at)));
                continue;
            };
            if self.store.rotation(&client_id).await?.is_some() {
                continue;
            }
            tracing::info!(%client_id, "automatic key rotation due");
            if let Err(error) = self.start(&client_id).await {
                tracing::warn!(%client_id, %error, "automatic key rotation failed to start; retrying later");
                // Try again after a pause instead of at once.
                self.store
                    .schedule_rotation(&client_id, unix_millis() + 60_000)
                    .await?;
            }
        }
        Ok(next)
    }

    /// Runs due rotation steps until `shutdown` completes, resuming the
    /// rotations recorded before a restart.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let next_scheduled = match self.start_due_rotations().await {
                Ok(next) => next,
                Err(error) => {
                    tracing::warn!(%error, "checking scheduled rotations failed; retrying in 5 s");
                    Some(unix_millis() + 5_000)
                }
            };
            let next_step = match self.run_due_steps().await {
                Ok(next) => next,
                Err(error) => {
                    tracing::warn!(%error, "rotation step failed; retrying in 5 s");
                    Some(unix_millis() + 5_000)
                }
            };
            let next_due = match (next_scheduled, next_step) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = match next_due {
                Some(at) => Duration::from_millis(u64::try_from(at - unix_millis()).unwrap_or(0)),
                None => Duration::from_secs(3600),
            }
            .min(Duration::from_secs(3600));
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake.notified() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Runs every due step and returns when the next one is due. A failing
    /// app does not hold up the others.
    async fn run_due_steps(&self) -> Result<Option<i64>, ServiceError> {
        let mut next_due: Option<i64> = None;
        for listed in self.store.rotations().await? {
            let mut due_at = listed.next_step_at;
            if due_at <= unix_millis() {
                // RotateKey runs the first step while it holds the app's
                // lock, on this replica or another: read the rotation again
                // under the lock, as it may have moved on. A busy app is
                // tried again a second later, so that a replica that holds
                // its lock while cut off from Okta or the database does not
                // hold up the other apps.
                let Some(_app_guard) = self
                    .locks
                    .try_lock(&format!("app:{}", listed.client_id))
                    .await?
                else {
                    let retry_at = unix_millis() + BUSY_APP_RETRY_MILLIS;
                    next_due = Some(next_due.map_or(retry_at, |next| next.min(retry_at)));
                    continue;
                };
                let Some(rotation) = self.store.rotation(&listed.client_id).await? else {
                    continue;
                };
                if rotation.next_step_at > unix_millis() {
                    next_due = Some(next_due.map_or(rotation.next_step_at, |next| {
                        next.min(rotation.next_step_at)
                    }));
                    continue;
                }
                match self.step(&rotation).await {
                    Ok(()) => {
                        due_at = match self.store.rotation(&rotation.client_id).await? {
                            Some(updated) => updated.next_step_at,
                            None => continue,
                        };
                    }
                    Err(ServiceError::AppNotFound(client_id)) => {
                        // Deleted in Okta, perhaps by a delete whose response
                        // was lost: nothing is left to rotate.
                        crate::metrics::rotation(RotationEvent::Failed);
                        tracing::warn!(%client_id, "the app of a running rotation is gone from Okta; ending the rotation and recording the app as deleted");
                        self.store.mark_app_deleted(&client_id).await?;
                        self.keyring.forget(&client_id);
                        self.announce(&client_id);
                        continue;
                    }
                    Err(error) => {
                        crate::metrics::rotation(RotationEvent::Failed);
                        tracing::warn!(client_id = %rotation.client_id, %error, "rotation step failed; retrying in 5 s");
                        due_at = unix_millis() + 5_000;
                    }
                }
            }
            next_due = Some(next_due.map_or(due_at, |next| next.min(due_at)));
        }
        Ok(next_due)
    }

    async fn step(&self, rotation: &Rotation) -> Result<(), ServiceError> {
        match rotation.phase {
            Phase::Generated => self.add_new_key(rotation).await,
            Phase::Added => {
                let retire_at = unix_millis() + millis(self.settings.grace_period);
                self.store.rotation_switched(rotation, retire_at).await?;
                self.keyring.forget(&rotation.client_id);
                self.schedule(&rotation.client_id).await?;
                tracing::info!(client_id = %rotation.client_id, "signing switched to the new key");
                self.announce(&rotation.client_id);
                Ok(())
            }
            Phase::Switched => self.remove_old_key(rotation).await,
        }
    }

    /// Registers the new key in Okta. A key whose kid Okta already has
    /// (added before a crash) counts as added.
    async fn add_new_key(&self, rotation: &Rotation) -> Result<(), ServiceError> {
        let client_id = rotation.client_id.as_str();
        let new_key = self
            .store
            .held_keys(client_id, KeyPurpose::Assertion)
            .await?
            .into_iter()
            .find(|key| key.key_id == rotation.new_key_id)
            .ok_or_else(|| ServiceError::NoPrivateKey(client_id.to_string()))?;
        let okta_key_id = match self.okta_key_id(client_id, &new_key.kid).await? {
            Some(id) => id,
            None => {
                let mut body: serde_json::Value = serde_json::from_str(&new_key.public_jwk)
                    .map_err(|err| crate::keys::KeyError::Malformed(err.to_string()))?;
                body["status"] = serde_json::Value::String("ACTIVE".into());
                let added = self
                    .okta
                    .add_app_key(client_id, &body)
                    .await
                    .map_err(|err| ServiceError::for_app(err, client_id))?;
                added
                    .get("id")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            }
        };
        let switch_at = unix_millis() + millis(self.settings.propagation_delay);
        self.store
            .rotation_added(rotation, &okta_key_id, switch_at)
            .await?;
        tracing::info!(%client_id, new_kid = %new_key.kid, "new key registered in Okta beside the old one");
        self.announce(client_id);
        Ok(())
    }

    /// Deactivates and deletes the old key in Okta, then ends the rotation.
    /// A key that is already gone counts as removed.
    async fn remove_old_key(&self, rotation: &Rotation) -> Result<(), ServiceError> {
        let client_id = rotation.client_id.as_str();
        let old_key = self
            .store
            .held_keys(client_id, KeyPurpose::Assertion)
            .await?
            .into_iter()
            .find(|key| key.key_id == rotation.old_key_id);
        if let Some(old_key) = old_key
            && let Some(okta_key_id) = self.okta_key_id(client_id, &old_key.kid).await?
        {
            ignore_not_found(self.okta.deactivate_app_key(client_id, &okta_key_id).await)?;
            ignore_not_found(self.okta.delete_app_key(client_id, &okta_key_id).await)?;
            tracing::info!(%client_id, old_kid = %old_key.kid, "old key removed from Okta");
        }
        self.store.rotation_finished(rotation).await?;
        tracing::info!(%client_id, "key rotation finished");
        crate::metrics::rotation(RotationEvent::Completed);
        self.announce(client_id);
        Ok(())
    }

    /// Looks up Okta's id of the app's key with this kid.
    async fn okta_key_id(
        &self,
        client_id: &str,
        kid: &str,
    ) -> Result<Option<String>, ServiceError> {
        let keys = self
            .okta
            .list_app_keys(client_id)
            .await
            .map_err(|err| ServiceError::for_app(err, client_id))?;
        Ok(keys
            .iter()
            .find(|key| key.get("kid").and_then(serde_json::Value::as_str) == Some(kid))
            .and_then(|key| key.get("id").and_then(serde_json::Value::as_str))
            .map(str::to_string))
    }
}

fn ignore_not_found(result: Result<(), OktaError>) -> Result<(), ServiceError> {
    match result {
        Err(error) if !error.is_not_found() => Err(error.into()),
        _ => Ok(()),
    }
}

/// Picks the key algorithm of a new key like the current one: the same
/// type, and for RSA the same modulus size.
fn same_algorithm(algorithm: SigningAlgorithm, modulus: &str) -> KeyAlgorithm {
    match algorithm {
        SigningAlgorithm::Es256 => KeyAlgorithm::Es256,
        SigningAlgorithm::Rs256 => match URL_SAFE_NO_PAD.decode(modulus).map(|bytes| bytes.len()) {
            Ok(384) => KeyAlgorithm::Rs2563072,
            Ok(512) => KeyAlgorithm::Rs2564096,
            _ => KeyAlgorithm::Rs2562048,
        },
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Returns the time in Unix milliseconds.
pub fn unix_millis() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970");
    i64::try_from(elapsed.as_millis()).expect("milliseconds since 1970 fit in i64")
}
