//! The key RPCs: rotation, caller-managed keys, and the rotation watch.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use registrar_api::prost_types::Timestamp;
use registrar_api::v1::{
    AddKeyRequest, AddKeyResponse, AppKeyState, KeyStatus, PrivateKey, RetireKeyRequest,
    RetireKeyResponse, RotateKeyRequest, RotateKeyResponse, RotationPhase, WatchRotationsRequest,
    WatchRotationsResponse,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::RegistrarService;
use super::key_states::AppSlot;
use crate::auth::{Caller, TokenDigest};
use crate::error::ServiceError;
use crate::jwk;
use crate::store::{KeyPurpose, Phase};
use crate::validate::{self, InvalidArgument};

/// The maximum number of apps one watch stream may cover.
const MAX_WATCHED_APPS: usize = 100;

/// The maximum number of times [`RegistrarService::key_state`] reads an
/// app's key state while changes keep committing during the reads.
const KEY_STATE_ATTEMPTS: u32 = 5;

/// One app of a watch stream, with the key state it shares with the other
/// streams that watch the app.
struct WatchedApp {
    client_id: String,
    slot: Arc<AppSlot>,
}

/// The stream type of WatchRotations.
pub(super) type WatchStream =
    Pin<Box<dyn Stream<Item = Result<WatchRotationsResponse, Status>> + Send>>;

/// The caller of a WatchRotations stream, which the stream checks again
/// after each reload of the policy or bearer token file.
#[derive(Debug)]
pub(super) struct StreamCaller {
    /// The authenticated caller, if the server authenticates callers.
    pub(super) caller: Option<Caller>,
    /// The digest of the caller's bearer token, for a bearer caller.
    pub(super) token_digest: Option<TokenDigest>,
    /// Subscribed before the caller's rights were first checked.
    pub(super) reloads: tokio::sync::watch::Receiver<u64>,
}

impl RegistrarService {
    pub(super) async fn rotate(
        &self,
        request: RotateKeyRequest,
    ) -> Result<RotateKeyResponse, ServiceError> {
        validate::client_id(&request.client_id)?;
        self.known_app(&request.client_id).await?;
        let _app_guard = self
            .names
            .lock(&format!("app:{}", request.client_id))
            .await?;
        self.rotator.start(&request.client_id).await?;
        let state = self.key_state(&request.client_id).await?;
        Ok(RotateKeyResponse { state: Some(state) })
    }

    pub(super) async fn add_key(
        &self,
        request: AddKeyRequest,
    ) -> Result<AddKeyResponse, ServiceError> {
        validate::client_id(&request.client_id)?;
        let key = request
            .key
            .ok_or_else(|| InvalidArgument::new("key", "is missing; pass the public JWK to add"))?;
        jwk::validate_jwk("key", &key)?;
        if key.kid.is_empty() {
            return Err(InvalidArgument::new(
                "key.kid",
                "is missing; a key added beside others needs a unique kid",
            )
            .into());
        }
        let client_id = request.client_id.as_str();
        self.known_app_any_keys(client_id).await?;
        let _app_guard = self.names.lock(&format!("app:{client_id}")).await?;

        let thumbprint = jwk::thumbprint(&key).expect("a validated key has a thumbprint");
        let existing = self
            .okta
            .list_app_keys(client_id)
            .await
            .map_err(|err| ServiceError::for_app(err, client_id))?;
        let same_kid = existing.iter().find(|candidate| {
            candidate.get("kid").and_then(serde_json::Value::as_str) == Some(key.kid.as_str())
        });
        let added = match same_kid {
            Some(found) if jwk::from_okta_json(found).thumbprint == thumbprint => found.clone(),
            Some(_) => {
                return Err(ServiceError::KeyNotRetirable {
                    kid: key.kid.clone(),
                    reason: "is already used by other key material in this app; choose a new kid"
                        .into(),
                });
            }
            None => {
                let mut body = jwk::to_okta_json(&key);
                body["status"] = serde_json::Value::String("ACTIVE".into());
                self.okta
                    .add_app_key(client_id, &body)
                    .await
                    .map_err(|err| ServiceError::for_app(err, client_id))?
            }
        };
        let public = jwk::from_okta_json(&added);
        self.store
            .record_added_key(
                client_id,
                &thumbprint,
                &key.kid,
                &jwk::to_okta_json(&key).to_string(),
                &public.okta_key_id,
            )
            .await?;
        tracing::info!(%client_id, kid = %key.kid, "key added");
        self.rotator.announce(client_id);
        Ok(AddKeyResponse { key: Some(public) })
    }

    pub(super) async fn retire_key(
        &self,
        request: RetireKeyRequest,
    ) -> Result<RetireKeyResponse, ServiceError> {
        validate::client_id(&request.client_id)?;
        if request.kid.is_empty() {
            return Err(
                InvalidArgument::new("kid", "is empty; pass the kid of the key to retire").into(),
            );
        }
        validate::kid("kid", &request.kid)?;
        let client_id = request.client_id.as_str();
        self.known_app_any_keys(client_id).await?;
        let _app_guard = self.names.lock(&format!("app:{client_id}")).await?;

        let held = self
            .store
            .held_keys(client_id, KeyPurpose::Assertion)
            .await?;
        if held.iter().any(|key| key.kid == request.kid) {
            return Err(ServiceError::KeyNotRetirable {
                kid: request.kid,
                reason: "is a key the registrar signs with; rotate it with RotateKey instead"
                    .into(),
            });
        }
        let keys = self
            .okta
            .list_app_keys(client_id)
            .await
            .map_err(|err| ServiceError::for_app(err, client_id))?;
        let found = keys.iter().find(|key| {
            key.get("kid").and_then(serde_json::Value::as_str) == Some(request.kid.as_str())
        });
        if let Some(found) = found {
            let okta_key_id = found
                .get("id")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            let active = found.get("status").and_then(serde_json::Value::as_str) == Some("ACTIVE");
            if active {
                match self.okta.deactivate_app_key(client_id, okta_key_id).await {
                    Ok(()) => {}
                    Err(error) if error.is_bad_request() => {
                        return Err(ServiceError::KeyNotRetirable {
                            kid: request.kid,
                            reason: format!(
                                "Okta refused to deactivate it ({error}); add and activate another key first"
                            ),
                        });
                    }
                    Err(error) if error.is_not_found() => {}
                    Err(error) => return Err(error.into()),
                }
            }
            match self.okta.delete_app_key(client_id, okta_key_id).await {
                Err(error) if !error.is_not_found() => return Err(error.into()),
                _ => {}
            }
            tracing::info!(%client_id, kid = %request.kid, "key retired");
        }
        self.store
            .record_removed_key(client_id, &request.kid)
            .await?;
        self.rotator.announce(client_id);
        Ok(RetireKeyResponse {})
    }

    pub(super) async fn watch(
        &self,
        request: WatchRotationsRequest,
        caller: StreamCaller,
    ) -> Result<WatchStream, ServiceError> {
        let client_ids = watched_ids(&request.client_ids)?;
        // A reload that takes away the caller's rights ends the stream.
        let StreamCaller {
            caller,
            token_digest,
            mut reloads,
        } = caller;
        let requested_ids = request.client_ids.clone();
        let with_keys = request.include_private_keys;
        if with_keys && !self.deliver_private_keys {
            return Err(ServiceError::KeyDeliveryOff);
        }
        let apps: Vec<WatchedApp> = client_ids
            .into_iter()
            .map(|client_id| WatchedApp {
                slot: self.rotator.key_states().slot(&client_id),
                client_id,
            })
            .collect();
        // Subscribe before the first read, so that a change committed while
        // it runs wakes the stream.
        let mut changes = self.rotator.subscribe();
        // Unknown apps fail the call before any message.
        let first = self
            .watch_message(&apps, with_keys, None)
            .await?
            .expect("a message is built when no revision was sent");

        let (sender, receiver) = mpsc::channel(1);
        let service = self.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _open = crate::metrics::OpenWatchStream::open();
            let mut last_revision = None;
            let mut pending_first = Some(first);
            loop {
                // Wait for room first, so that the message built next is the
                // newest state when it is sent: a slow reader skips states.
                let permit = tokio::select! {
                    permit = sender.reserve() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return,
                    },
                    _ = shutdown.wait_for(|stop| *stop) => return,
                };
                let message = match pending_first.take() {
                    Some(first) => Ok(Some(first)),
                    None => {
                        changes.borrow_and_update();
                        service
                            .watch_message(&apps, with_keys, last_revision)
                            .await
                            .map_err(Status::from)
                    }
                };
                match message {
                    Ok(Some(message)) => {
                        last_revision = Some(message.revision);
                        permit.send(Ok(message));
                    }
                    Ok(None) => drop(permit),
                    Err(status) => {
                        permit.send(Err(status));
                        return;
                    }
                }
                // Wait for a change of the key states. A reload only checks
                // the caller's rights again, and without a change the wait
                // goes on.
                loop {
                    // A reload is checked before a change that arrives with
                    // it, so that no message goes out on revoked rights.
                    let reloaded = tokio::select! {
                        biased;
                        reloaded = reloads.changed() => if reloaded.is_err() { return } else { true },
                        changed = changes.changed() => if changed.is_err() { return } else { false },
                        _ = shutdown.wait_for(|stop| *stop) => return,
                        () = sender.closed() => return,
                    };
                    if !reloaded {
                        break;
                    }
                    let rechecked = service
                        .recheck_watch(
                            caller.as_ref(),
                            token_digest.as_ref(),
                            &requested_ids,
                            with_keys,
                        )
                        .await;
                    if let Err(error) = rechecked {
                        // A failure to check, such as a store outage, is not
                        // a verdict on the caller: the stream goes on.
                        if !error.is_denial() {
                            tracing::warn!(%error, "checking a watch stream's caller after a reload failed; the stream goes on");
                            continue;
                        }
                        tracing::info!(
                            caller = caller.as_ref().map_or("", |caller| caller.id.as_str()),
                            %error,
                            "ending a watch stream whose caller lost its rights in a reload"
                        );
                        // A reader that does not take the error within a
                        // second gets the end of the stream without it.
                        let ending = sender.send(Err(Status::from(error)));
                        let _ = tokio::time::timeout(Duration::from_secs(1), ending).await;
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(receiver)))
    }

    /// Builds a watch message from the shared key states of `apps`, or
    /// returns `None` when its revision equals `last_revision`. The store is
    /// read only for apps whose state changed since it was last built, and
    /// private keys only when a message is built.
    async fn watch_message(
        &self,
        apps: &[WatchedApp],
        with_keys: bool,
        last_revision: Option<u64>,
    ) -> Result<Option<WatchRotationsResponse>, ServiceError> {
        let mut states = Vec::with_capacity(apps.len());
        for app in apps {
            let state = app.slot.latest(|| self.key_state(&app.client_id)).await?;
            states.push(state);
        }
        let revision = states.iter().map(|state| state.revision).sum();
        if last_revision == Some(revision) {
            return Ok(None);
        }
        let mut messages = Vec::with_capacity(states.len());
        for state in states {
            let mut state = AppKeyState::clone(&state);
            if with_keys {
                state.signing_key = self
                    .signing_key(&state.client_id, &state.signing_kid)
                    .await?;
            }
            messages.push(state);
        }
        Ok(Some(WatchRotationsResponse {
            revision,
            apps: messages,
        }))
    }

    /// Returns the private key of `signing_kid` for delivery, or `None`
    /// when the registrar holds no key for the app.
    async fn signing_key(
        &self,
        client_id: &str,
        signing_kid: &str,
    ) -> Result<Option<PrivateKey>, ServiceError> {
        if signing_kid.is_empty() {
            return Ok(None);
        }
        let mut key = self
            .keyring
            .active(client_id, KeyPurpose::Assertion)
            .await?;
        if key.as_ref().is_some_and(|key| key.kid() != signing_kid) {
            // The cached key predates a rotation that switched signing
            // since; read the store again.
            self.keyring.forget(client_id);
            key = self
                .keyring
                .active(client_id, KeyPurpose::Assertion)
                .await?;
        }
        let Some(key) = key.filter(|key| key.kid() == signing_kid) else {
            // Signing switched between the two reads; the change brings
            // another message with a consistent state.
            return Ok(None);
        };
        Ok(Some(PrivateKey {
            kid: key.kid().to_string(),
            alg: key.algorithm().as_str().to_string(),
            pkcs8_pem: key.private_pkcs8_pem()?.to_string(),
        }))
    }

    /// Builds an app's key state from the store. The state comes from
    /// several queries, so a change that commits between them would mix
    /// two states under one revision. Every change of the app's keys or
    /// rotation bumps the revision in the same transaction, so the state is
    /// read again until the revision after the reads equals the one before
    /// them.
    ///
    /// NOTE: rescheduling the automatic rotation does not bump the
    /// revision, so `next_rotation` may still come from a later state.
    pub(super) async fn key_state(&self, client_id: &str) -> Result<AppKeyState, ServiceError> {
        let mut attempts = 1;
        loop {
            let state = self.read_key_state(client_id).await?;
            let revision = self.store.revision(client_id).await?;
            // When every read overlapped a change, the last state may mix
            // two revisions. The last change announces itself, so watchers
            // get a consistent state in the next message.
            if revision == Some(state.revision) || attempts == KEY_STATE_ATTEMPTS {
                return Ok(state);
            }
            attempts += 1;
        }
    }

    /// Reads an app's key state from the store, in several queries.
    async fn read_key_state(&self, client_id: &str) -> Result<AppKeyState, ServiceError> {
        let revision = self
            .store
            .revision(client_id)
            .await?
            .ok_or_else(|| ServiceError::AppNotFound(client_id.to_string()))?;
        let keys = self
            .store
            .recorded_keys(client_id)
            .await?
            .into_iter()
            .filter_map(|(_, json)| serde_json::from_str::<serde_json::Value>(&json).ok())
            .map(|json| {
                let mut key = jwk::from_okta_json(&json);
                key.status = KeyStatus::Active as i32;
                key
            })
            .collect();
        let held = self
            .store
            .held_keys(client_id, KeyPurpose::Assertion)
            .await?;
        let signing_kid = held
            .iter()
            .find(|key| key.status == "active")
            .map(|key| key.kid.clone())
            .unwrap_or_default();
        let rotation = self.store.rotation(client_id).await?;
        let phase = match rotation.as_ref().map(|rotation| rotation.phase) {
            None => RotationPhase::Unspecified,
            Some(Phase::Generated) => RotationPhase::KeyGenerated,
            Some(Phase::Added) => RotationPhase::NewKeyAdded,
            Some(Phase::Switched) => RotationPhase::SigningSwitched,
        };
        let next_step_at = rotation.map(|rotation| Timestamp {
            seconds: rotation.next_step_at.div_euclid(1000),
            nanos: i32::try_from(rotation.next_step_at.rem_euclid(1000) * 1_000_000)
                .unwrap_or_default(),
        });
        let next_rotation = self
            .store
            .next_rotation(client_id)
            .await?
            .map(timestamp_from_millis);
        Ok(AppKeyState {
            client_id: client_id.to_string(),
            revision,
            keys,
            signing_kid,
            next_step_at,
            phase: phase as i32,
            next_rotation,
            signing_key: None,
            token_endpoint: self.tokens.settings().token_endpoint.to_string(),
        })
    }

    /// Checks that the registrar manages the app, whichever side has its private keys.
    async fn known_app_any_keys(&self, client_id: &str) -> Result<(), ServiceError> {
        match self.store.app(client_id).await? {
            Some(app) if !app.deleted => Ok(()),
            _ => Err(ServiceError::AppNotFound(client_id.to_string())),
        }
    }
}

fn timestamp_from_millis(millis: i64) -> Timestamp {
    Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or_default(),
    }
}

pub(super) fn watched_ids(ids: &[String]) -> Result<Vec<String>, InvalidArgument> {
    if ids.is_empty() {
        return Err(InvalidArgument::new(
            "client_ids",
            "is empty; list the client ids to watch",
        ));
    }
    if ids.len() > MAX_WATCHED_APPS {
        return Err(InvalidArgument::new(
            "client_ids",
            format!(
                "has {} entries; watch at most {MAX_WATCHED_APPS} apps per stream",
                ids.len()
            ),
        ));
    }
    let mut unique: Vec<String> = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        validate::client_id(id)
            .map_err(|err| InvalidArgument::new(format!("client_ids[{index}]"), err.message))?;
        if !unique.contains(id) {
            unique.push(id.clone());
        }
    }
    Ok(unique)
}
