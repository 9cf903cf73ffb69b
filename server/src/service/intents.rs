//! Intents of mutating Okta calls: the bookkeeping around each call, and
//! the reconciliation at start-up that settles the calls whose outcome a
//! crash or a lost response hid. Rotations need none of this, because
//! their phases in the store record each key addition and removal.

use std::time::Duration;

use registrar_api::v1::ServiceApp;

use super::{RegistrarService, active_grant, app_message, recover};
use crate::error::ServiceError;
use crate::jwk;
use crate::okta::OktaError;
use crate::okta::model::{App, NewClient};
use crate::store::{AppRecord, Backend, Intent, IntentKind, IntentState, KeyRecord, StoredIntent};

/// How long the reconciliation at start-up may take. Intents it does not
/// reach stay pending until the next start, or until a create of the same
/// name adopts the app.
pub const RECONCILIATION_TIME_LIMIT: Duration = Duration::from_secs(60);

/// The age below which a replica sharing PostgreSQL leaves a pending intent
/// alone at start: longer than a call with its retries takes. A create
/// younger than this whose app Okta's search does not list stays pending,
/// because the search may lag.
const IN_FLIGHT_AGE: Duration = Duration::from_millis(IN_FLIGHT_AGE_MILLIS as u64);

/// [`IN_FLIGHT_AGE`] in milliseconds.
pub(super) const IN_FLIGHT_AGE_MILLIS: i64 = 300_000;

/// How long done and failed intents are kept.
const FINISHED_INTENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The age after which a pending private key that nothing refers to is
/// deleted at start. A create records its intent milliseconds after it
/// stores its key, so an hour leaves a wide margin for a call in flight on
/// another replica.
const STALE_PENDING_KEY_AGE: Duration = Duration::from_secs(3600);

/// The result of reconciling one pending intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Okta applied the call, and the store now records its result.
    Applied,
    /// Okta did not apply the call, so the intent is failed and the
    /// caller may try again.
    NotApplied,
    /// Okta could not be reached, so the intent stays pending.
    Unknown,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::NotApplied => "not_applied",
            Self::Unknown => "unknown",
        }
    }
}

/// The error of a failed Okta call, classified by whether Okta may have
/// applied the call.
pub(super) trait CallError {
    /// Returns true when Okta certainly did not apply the failed call.
    fn not_applied(&self) -> bool;
}

impl CallError for OktaError {
    fn not_applied(&self) -> bool {
        match self {
            // A 5xx may come after the change was committed.
            OktaError::Api { status, .. } => *status < 500,
            OktaError::RateLimited { .. } | OktaError::Credential { .. } => true,
            OktaError::Transport { .. } => !self.may_have_applied(),
            // A success response that failed to decode, or a newer variant.
            _ => false,
        }
    }
}

impl CallError for ServiceError {
    fn not_applied(&self) -> bool {
        match self {
            ServiceError::Okta(error) => error.not_applied(),
            _ => false,
        }
    }
}

impl RegistrarService {
    /// Marks the intent of a failed call failed when Okta certainly did
    /// not apply it. Otherwise the intent stays pending for the
    /// reconciliation at the next start.
    pub(super) async fn settle_failed_call(
        &self,
        intent_id: i64,
        error: &impl CallError,
    ) -> Result<(), ServiceError> {
        if error.not_applied() {
            self.store
                .finish_intent(intent_id, IntentState::Failed, None)
                .await?;
        } else {
            tracing::debug!(
                intent_id,
                "outcome of the Okta call unknown; intent stays pending"
            );
        }
        Ok(())
    }

    /// Deletes the generated key of a create or change that Okta did not
    /// apply. A failure is only logged, because the next start deletes
    /// stale pending keys.
    pub(super) async fn discard_key(&self, key_id: Option<&str>) {
        let Some(key_id) = key_id else {
            return;
        };
        if let Err(error) = self.store.discard_pending_key(key_id).await {
            tracing::warn!(
                key_id,
                %error,
                "deleting the pending key of a failed call failed; the next start deletes it"
            );
        }
    }

    /// Fails the other pending creates of `client_name` once the create
    /// with intent `done_id` made the name's app, and deletes their keys.
    /// The lookup before that create found no app of theirs, and the name
    /// has one app now, so none of them will be adopted. The caller holds
    /// the name's lock. Failures are only logged.
    pub(super) async fn supersede_pending_creates(&self, client_name: &str, done_id: i64) {
        let pending = match self.store.pending_creates(client_name).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%client_name, %error, "reading earlier creates of the name failed");
                return;
            }
        };
        for stored in pending.into_iter().filter(|stored| stored.id != done_id) {
            if let Err(error) = self
                .store
                .finish_intent(stored.id, IntentState::Failed, None)
                .await
            {
                tracing::warn!(intent_id = stored.id, %error, "failing a superseded create failed");
                continue;
            }
            self.discard_key(stored.intent.key_id.as_deref()).await;
            tracing::info!(
                intent_id = stored.id,
                %client_name,
                "an unfinished create of the name made no app that Okta lists, and a later create made the name's app"
            );
        }
    }

    /// Records an app that a create made: its store row with the owner of
    /// the intent, its generated key as active, its rotation schedule, and
    /// DPoP-bound tokens when the create asked for them. Repeating it for
    /// the same app changes nothing more.
    pub(super) async fn record_created(
        &self,
        app: &ServiceApp,
        intent: &Intent,
    ) -> Result<(), ServiceError> {
        let client_id = app.client_id.as_str();
        let recorded = self.store.app(client_id).await?;
        self.store
            .record_app(&app_record(app, intent.owner.as_deref()))
            .await?;
        if let Some(key_id) = &intent.key_id {
            // An adoption after a crash may find the key attached already.
            if self.store.is_key_pending(key_id).await? {
                self.store.activate_key(key_id, client_id).await?;
            }
            self.keyring.forget(client_id);
            self.rotator.schedule(client_id).await?;
        }
        let dpop_bound = recorded.is_some_and(|record| record.dpop_bound);
        if intent.dpop_bound && !dpop_bound {
            self.enable_dpop(client_id).await?;
        }
        Ok(())
    }

    /// Adopts `app`, whose name a new create requests, when a
    /// pending create of `owner` made it. Returns `None` when no such
    /// create exists, and the name is taken.
    pub(super) async fn adopt_own_create(
        &self,
        app: &App,
        owner: &str,
    ) -> Result<Option<ServiceApp>, ServiceError> {
        for stored in self.store.pending_creates(&app.label).await? {
            let made_it =
                create_body(&stored.intent).is_some_and(|body| recover::is_created_by(app, &body));
            if stored.intent.owner.as_deref() != Some(owner) || !made_it {
                continue;
            }
            let adopted = app_message(app);
            self.record_created(&adopted, &stored.intent).await?;
            self.store
                .finish_intent(stored.id, IntentState::Done, Some(&app.id))
                .await?;
            tracing::info!(intent_id = stored.id, client_id = %app.id, client_name = %app.label, "adopted the app of an unfinished create");
            return Ok(Some(adopted));
        }
        Ok(None)
    }

    /// Settles the pending intents left by a crash or a lost response:
    /// queries Okta for the outcome of each call, records what it applied, and
    /// fails what it did not. Stops after `limit`, leaving the rest
    /// pending, and never fails: a store or Okta error is logged.
    pub async fn reconcile_intents(&self, limit: Duration) {
        let mut pending = match self.store.pending_intents().await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "reading pending intents failed; reconciliation skipped");
                return;
            }
        };
        if self.store.backend() == Backend::Postgres {
            // A young intent may be a call that another replica is making
            // right now; leave it to that replica, or to a later start.
            let young = crate::rotation::unix_millis()
                - i64::try_from(IN_FLIGHT_AGE.as_millis()).unwrap_or(i64::MAX);
            let before = pending.len();
            pending.retain(|stored| stored.created_at < young);
            if pending.len() < before {
                tracing::info!(
                    skipped = before - pending.len(),
                    "left recent pending intents to the replicas that may be making those calls"
                );
            }
        }
        if !pending.is_empty() {
            tracing::info!(
                pending = pending.len(),
                "reconciling Okta calls whose outcome is unknown"
            );
            let all = async {
                for stored in &pending {
                    self.reconcile_logged(stored).await;
                }
            };
            if tokio::time::timeout(limit, all).await.is_err() {
                tracing::warn!(
                    limit_secs = limit.as_secs(),
                    "reconciliation timed out; the remaining intents stay pending until the next start"
                );
            }
        }

        let retention = i64::try_from(FINISHED_INTENT_RETENTION.as_millis()).unwrap_or(i64::MAX);
        let before = crate::rotation::unix_millis() - retention;
        if let Err(error) = self.store.prune_intents(before).await {
            tracing::warn!(%error, "pruning finished intents failed");
        }
        self.discard_stale_pending_keys().await;
    }

    /// Deletes the pending keys that a crash or a failed call left, once
    /// they are older than [`STALE_PENDING_KEY_AGE`]. A key that a pending
    /// intent or a rotation refers to is kept.
    async fn discard_stale_pending_keys(&self) {
        let age = i64::try_from(STALE_PENDING_KEY_AGE.as_secs()).unwrap_or(i64::MAX);
        let before = crate::rotation::unix_millis() / 1000 - age;
        match self.store.discard_stale_pending_keys(before).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(
                deleted,
                "deleted private keys that no app, pending call or rotation uses"
            ),
            Err(error) => tracing::warn!(%error, "deleting stale pending keys failed"),
        }
    }

    async fn reconcile_logged(&self, stored: &StoredIntent) {
        let intent = &stored.intent;
        let kind = intent.kind.as_str();
        // The lock keeps this apart from a call of the same name or app on
        // another replica; under it, the intent may turn out settled.
        let key = match intent.kind {
            IntentKind::CreateApp => intent.client_name.clone(),
            _ => format!("app:{}", intent.client_id),
        };
        let _guard = match self.names.lock(&key).await {
            Ok(guard) => guard,
            Err(error) => {
                tracing::warn!(intent_id = stored.id, kind, %error, "locking for reconciliation failed; the intent stays pending");
                return;
            }
        };
        match self.store.intent(stored.id).await {
            Ok(Some(current)) if current.state == IntentState::Pending => {}
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(intent_id = stored.id, kind, %error, "reading an intent failed; it stays pending");
                return;
            }
        }
        if let Err(error) = self.store.count_intent_attempt(stored.id).await {
            tracing::warn!(intent_id = stored.id, kind, %error, "counting a reconciliation attempt failed");
        }
        match self.reconcile(stored).await {
            Ok((outcome, client_id)) => {
                tracing::info!(
                    intent_id = stored.id,
                    kind,
                    outcome = outcome.as_str(),
                    client_id = %client_id,
                    client_name = %intent.client_name,
                    scope_id = %intent.scope_id,
                    attempts = stored.attempts + 1,
                    "intent reconciled"
                );
            }
            Err(error) => {
                tracing::warn!(
                    intent_id = stored.id,
                    kind,
                    outcome = Outcome::Unknown.as_str(),
                    %error,
                    "reconciling an intent failed; it stays pending"
                );
            }
        }
    }

    /// Settles one intent and returns the outcome and the app's client id,
    /// which is empty for a create that Okta did not apply.
    async fn reconcile(&self, stored: &StoredIntent) -> Result<(Outcome, String), ServiceError> {
        let intent = &stored.intent;
        let outcome = match intent.kind {
            IntentKind::CreateApp => return self.reconcile_create(stored).await,
            IntentKind::Grant => self.reconcile_grant(intent).await?,
            IntentKind::Revoke => self.reconcile_revoke(intent).await?,
            IntentKind::DeleteApp => self.reconcile_delete(intent).await?,
        };
        let state = match outcome {
            Outcome::Applied => IntentState::Done,
            Outcome::NotApplied => IntentState::Failed,
            Outcome::Unknown => return Ok((outcome, intent.client_id.clone())),
        };
        self.store.finish_intent(stored.id, state, None).await?;
        Ok((outcome, intent.client_id.clone()))
    }

    /// Adopts the app that a create made, found by its name and keys, or
    /// fails the intent when Okta has no such app.
    async fn reconcile_create(
        &self,
        stored: &StoredIntent,
    ) -> Result<(Outcome, String), ServiceError> {
        let intent = &stored.intent;
        let Some(body) = create_body(intent) else {
            tracing::warn!(
                intent_id = stored.id,
                "the intent of a create records no public key; it cannot be matched to an app"
            );
            self.store
                .finish_intent(stored.id, IntentState::Failed, None)
                .await?;
            self.discard_key(intent.key_id.as_deref()).await;
            return Ok((Outcome::NotApplied, String::new()));
        };
        let apps = self.okta.list_apps_all(&intent.client_name).await?;
        let Some(app) = apps.iter().find(|app| recover::is_created_by(app, &body)) else {
            // Okta's app search may lag behind a create that just
            // committed, so a young create that the search misses stays
            // pending, and keeps its key, until it can be trusted.
            let young_since = crate::rotation::unix_millis() - IN_FLIGHT_AGE_MILLIS;
            if stored.created_at >= young_since {
                tracing::info!(
                    intent_id = stored.id,
                    client_name = %intent.client_name,
                    "Okta's app search does not list the app of a recent create yet; the intent stays pending"
                );
                return Ok((Outcome::Unknown, String::new()));
            }
            self.store
                .finish_intent(stored.id, IntentState::Failed, None)
                .await?;
            self.discard_key(intent.key_id.as_deref()).await;
            return Ok((Outcome::NotApplied, String::new()));
        };
        self.record_created(&app_message(app), intent).await?;
        self.store
            .finish_intent(stored.id, IntentState::Done, Some(&app.id))
            .await?;
        Ok((Outcome::Applied, app.id.clone()))
    }

    /// Records a grant that exists in Okta. A missing grant, or a missing
    /// app, means the grant was not applied.
    async fn reconcile_grant(&self, intent: &Intent) -> Result<Outcome, ServiceError> {
        let client_id = intent.client_id.as_str();
        let grants = match self.okta.list_grants(client_id).await {
            Ok(grants) => grants,
            Err(error) if error.is_not_found() => return Ok(Outcome::NotApplied),
            Err(error) => return Err(error.into()),
        };
        let org = self.okta.org().as_str();
        let Some(grant) = active_grant(&grants, &intent.scope_id, org) else {
            return Ok(Outcome::NotApplied);
        };
        self.store
            .record_grant(client_id, &intent.scope_id, &grant.id)
            .await?;
        self.tokens.forget(client_id);
        Ok(Outcome::Applied)
    }

    /// Records a revocation when the grant is gone from Okta, with or
    /// without its app.
    async fn reconcile_revoke(&self, intent: &Intent) -> Result<Outcome, ServiceError> {
        let client_id = intent.client_id.as_str();
        let still_granted = match self.okta.list_grants(client_id).await {
            Ok(grants) => grants.iter().any(|grant| {
                grant.id == intent.grant_id && (grant.status.is_empty() || grant.status == "ACTIVE")
            }),
            Err(error) if error.is_not_found() => false,
            Err(error) => return Err(error.into()),
        };
        if still_granted {
            return Ok(Outcome::NotApplied);
        }
        self.store
            .record_revocation(client_id, &intent.grant_id)
            .await?;
        self.tokens.forget(client_id);
        Ok(Outcome::Applied)
    }

    /// Records a deletion when the app is gone from Okta. An app that is
    /// still there, perhaps deactivated, means the delete was not applied.
    async fn reconcile_delete(&self, intent: &Intent) -> Result<Outcome, ServiceError> {
        let client_id = intent.client_id.as_str();
        match self.okta.get_app(client_id).await {
            Ok(_) => Ok(Outcome::NotApplied),
            Err(error) if error.is_not_found() => {
                self.forget_deleted_app(client_id).await?;
                Ok(Outcome::Applied)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Rebuilds the registration body of a create from its intent, to match
/// the app it made. Returns `None` when the intent records no public key,
/// because any app of the name would match an empty key list.
fn create_body(intent: &Intent) -> Option<NewClient> {
    let keys = match serde_json::from_str(&intent.public_keys) {
        Ok(serde_json::Value::Array(keys)) if !keys.is_empty() => keys,
        _ => return None,
    };
    Some(NewClient::service_app(intent.client_name.clone(), keys))
}

/// Builds the store's record of a created app.
fn app_record(app: &ServiceApp, owner: Option<&str>) -> AppRecord {
    AppRecord {
        client_id: app.client_id.clone(),
        client_name: app.client_name.clone(),
        issued_at: app
            .client_id_issued_at
            .as_ref()
            .map_or(0, |issued| issued.seconds),
        keys: app
            .keys
            .iter()
            .filter_map(|key| {
                let jwk = key.jwk.as_ref()?;
                Some(KeyRecord {
                    thumbprint: key.thumbprint.clone(),
                    kid: key.kid.clone(),
                    public_jwk: jwk::to_okta_json(jwk).to_string(),
                })
            })
            .collect(),
        deleted: false,
        dpop_bound: false,
        owner: owner.map(str::to_string),
    }
}
