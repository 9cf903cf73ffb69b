//! The gRPC adapter: the `registrar.v1.Registrar` service on top of the Okta
//! client and the store.

mod access;
mod audit;
mod credentials;
mod intents;
pub(crate) mod key_states;
mod keys;
mod recover;
mod register;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use registrar_api::prost_types;
use registrar_api::v1::registrar_server::Registrar;
use registrar_api::v1::{
    AddKeyRequest, AddKeyResponse, AppStatus, CreateServiceAppRequest, CreateServiceAppResponse,
    DeleteServiceAppRequest, DeleteServiceAppResponse, GetAccessTokenRequest,
    GetAccessTokenResponse, GetServiceAppRequest, GetServiceAppResponse, Grant, GrantScopesRequest,
    GrantScopesResponse, KeyAlgorithm, KeyStatus, ListAuditEventsRequest, ListAuditEventsResponse,
    ListGrantsRequest, ListGrantsResponse, ListServiceAppsRequest, ListServiceAppsResponse,
    RegisterServiceRequest, RegisterServiceResponse, RetireKeyRequest, RetireKeyResponse,
    RevokeScopesRequest, RevokeScopesResponse, RotateKeyRequest, RotateKeyResponse, ScopeOutcome,
    ScopeResult, ServiceApp, SignClientAssertionRequest, SignClientAssertionResponse,
    SignDpopProofRequest, SignDpopProofResponse, WatchRotationsRequest,
    create_service_app_request::KeySource,
};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::auth::{BearerTokens, Caller, TokenDigest};
use crate::error::ServiceError;
use crate::jwk;
use crate::keyring::{Keyring, PendingKey};
use crate::locks::{LockGuard, Locks};
use crate::okta::model::{App, NewClient, RegisteredClient};
use crate::okta::{OktaClient, OktaError};
use crate::policy::{Operation, Policies};
use crate::rotation::Rotator;
use crate::store::{AppRecord, Backend, Intent, IntentState, KeyPurpose, Store};
use crate::tokens::Tokens;
use crate::validate::{self, InvalidArgument};
use intents::CallError;

pub use intents::RECONCILIATION_TIME_LIMIT;

const DEFAULT_PAGE_SIZE: i32 = 20;
const MAX_PAGE_SIZE: i32 = 200;
/// The maximum `page_token` length, in bytes. Issued tokens hold Okta's
/// `after` cursor (an app id) and a `name_prefix` of at most 100
/// characters, so they stay under 1 KiB.
const MAX_PAGE_TOKEN_LEN: usize = 2048;

/// The `Registrar` gRPC service.
#[derive(Debug, Clone)]
pub struct RegistrarService {
    okta: OktaClient,
    store: Store,
    keyring: Keyring,
    tokens: Tokens,
    rotator: Rotator,
    names: Locks,
    shutdown: tokio::sync::watch::Receiver<bool>,
    deliver_private_keys: bool,
    policies: Policies,
    /// The callers of the bearer token file, which open streams of bearer
    /// callers check again after a reload.
    bearer_tokens: Option<BearerTokens>,
}

impl RegistrarService {
    /// Builds the service over an Okta client, the store, the keyring, the
    /// token cache and the rotator. Watch streams end when `shutdown`
    /// turns true.
    pub fn new(
        okta: OktaClient,
        store: Store,
        keyring: Keyring,
        tokens: Tokens,
        rotator: Rotator,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        // RotateKey and the rotation task share the locks of apps.
        let names = rotator.locks().clone();
        Self {
            okta,
            store,
            keyring,
            tokens,
            rotator,
            names,
            shutdown,
            deliver_private_keys: false,
            policies: Policies::allow_all(),
            bearer_tokens: None,
        }
    }

    /// Sets the callers of the bearer token file, so that a stream opened
    /// with a token that a reload removed ends.
    pub fn with_bearer_tokens(mut self, bearer_tokens: Option<BearerTokens>) -> Self {
        self.bearer_tokens = bearer_tokens;
        self
    }

    /// Sets the policy that every request is checked against; without it,
    /// every caller may do everything.
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.policies = policies;
        self
    }

    /// Lets WatchRotations deliver each app's signing key to callers that
    /// ask for it.
    pub fn with_key_delivery(mut self, deliver_private_keys: bool) -> Self {
        self.deliver_private_keys = deliver_private_keys;
        self
    }

    /// Checks that the registrar created the app and has not deleted it.
    async fn known_app(&self, client_id: &str) -> Result<AppRecord, ServiceError> {
        match self.store.app(client_id).await? {
            Some(app) if !app.deleted => Ok(app),
            Some(_) => Err(ServiceError::AppNotFound(client_id.to_string())),
            None => {
                self.service_app(client_id).await?;
                Err(ServiceError::NoPrivateKey(client_id.to_string()))
            }
        }
    }

    /// Fetches an app and checks that it is a service app.
    async fn service_app(&self, client_id: &str) -> Result<App, ServiceError> {
        let app = self
            .okta
            .get_app(client_id)
            .await
            .map_err(|err| ServiceError::for_app(err, client_id))?;
        if !app.is_service_app() {
            return Err(ServiceError::NotServiceApp(client_id.to_string()));
        }
        Ok(app)
    }

    /// Creates an app that `owner`, a caller id, manages.
    async fn create(
        &self,
        request: CreateServiceAppRequest,
        owner: &str,
    ) -> Result<ServiceApp, ServiceError> {
        validate::client_name(&request.client_name)?;
        let generate = match &request.key_source {
            Some(KeySource::Jwks(jwks)) => {
                jwk::validate_jwks("jwks", jwks)?;
                None
            }
            Some(KeySource::GenerateKey(options)) => {
                let algorithm = KeyAlgorithm::try_from(options.algorithm).map_err(|_| {
                    InvalidArgument::new(
                        "generate_key.algorithm",
                        format!(
                            "{} is not a known key algorithm; use KEY_ALGORITHM_RS256_2048, KEY_ALGORITHM_RS256_3072, KEY_ALGORITHM_RS256_4096 or KEY_ALGORITHM_ES256",
                            options.algorithm
                        ),
                    )
                })?;
                Some(algorithm)
            }
            None => {
                return Err(InvalidArgument::new(
                    "key_source",
                    "is not set; supply the app's public keys in jwks, or set generate_key",
                )
                .into());
            }
        };
        if request.dpop_bound && generate.is_none() {
            return Err(InvalidArgument::new(
                "dpop_bound",
                "needs generate_key, because the registrar requests the tokens of a DPoP-bound app; drop jwks and set generate_key",
            )
            .into());
        }

        // The name's lock keeps concurrent creates of one name apart.
        let mut name_guard = self.names.lock(&request.client_name).await?;
        self.create_locked(request, generate, owner, &mut name_guard)
            .await
    }

    /// Creates the app; the caller holds the lock of its name and has
    /// validated the request. `generate` is the key algorithm when the
    /// registrar generates the key, `owner` the caller id that manages the app.
    async fn create_locked(
        &self,
        request: CreateServiceAppRequest,
        generate: Option<KeyAlgorithm>,
        owner: &str,
        name_guard: &mut LockGuard,
    ) -> Result<ServiceApp, ServiceError> {
        // Names are unique among service apps, so a retried create finds the
        // app that the first attempt made instead of making a second one.
        let existing = self.okta.list_apps_all(&request.client_name).await?;
        if let Some(app) = existing
            .iter()
            .find(|app| app.is_service_app() && app.label == request.client_name)
        {
            // The app may be this caller's own create whose outcome was
            // lost: adopt it rather than reject the retry.
            if let Some(adopted) = self.adopt_own_create(app, owner).await? {
                return Ok(adopted);
            }
            return Err(ServiceError::NameTaken {
                name: request.client_name,
                client_id: app.id.clone(),
            });
        }

        // Replicas sharing PostgreSQL: a recent pending create of the name
        // may be in flight on a replica whose lock session ended, so that
        // Okta does not list its app yet. Creating now could make a second.
        if self.store.backend() == Backend::Postgres {
            let now = crate::rotation::unix_millis();
            let in_flight_since = now - intents::IN_FLIGHT_AGE_MILLIS;
            if let Some(other) = self
                .store
                .pending_creates(&request.client_name)
                .await?
                .into_iter()
                .find(|other| other.created_at >= in_flight_since)
            {
                return Err(ServiceError::CreateInFlight {
                    name: request.client_name,
                    age_secs: (now - other.created_at) / 1000,
                });
            }
        }

        // A generated key is stored before its public half goes to Okta, so
        // a crash in between leaves a pending key, not a lost one.
        let mut pending = None;
        let keys = match (generate, &request.key_source) {
            (Some(algorithm), _) => {
                let key = self
                    .keyring
                    .generate_pending(algorithm, KeyPurpose::Assertion)
                    .await?;
                let public = vec![jwk::to_okta_json(key.key.public_jwk())];
                pending = Some(key);
                public
            }
            (None, Some(KeySource::Jwks(jwks))) => {
                jwks.keys.iter().map(jwk::to_okta_json).collect()
            }
            (None, _) => unreachable!("the key source was checked above"),
        };
        let key_id = pending.as_ref().map(|key| key.key_id.as_str());
        let intent = Intent::create_app(
            &request.client_name,
            owner,
            key_id,
            serde_json::Value::Array(keys.clone()).to_string(),
            request.dpop_bound,
        );
        let intent_id = self.store.record_intent(&intent).await?;
        let body = NewClient::service_app(request.client_name.clone(), keys);
        // Another replica may have taken the name's lock if this one's
        // database session ended; it must not create a second app.
        if let Err(error) = name_guard.check_held().await {
            self.store
                .finish_intent(intent_id, IntentState::Failed, None)
                .await?;
            self.discard_key(key_id).await;
            return Err(error.into());
        }
        let app = match self.create_client_once(&body).await {
            Ok(app) => app,
            Err(error) => {
                self.settle_failed_call(intent_id, &error).await?;
                // A create that may have been applied keeps its key for
                // the reconciliation.
                if error.not_applied() {
                    self.discard_key(key_id).await;
                }
                return Err(error);
            }
        };
        tracing::info!(
            client_id = %app.client_id,
            client_name = %app.client_name,
            keys = app.keys.len(),
            generated_key = pending.is_some(),
            "service app created"
        );

        if name_guard.check_held().await.is_err() {
            // NOTE: the session ended while Okta created the app, so
            // another replica may have created one of the same name in the
            // meantime. Okta has no conditional create to prevent that.
            tracing::error!(
                client_id = %app.client_id,
                client_name = %app.client_name,
                "lost the database lock of the app's name while creating it; another replica may have created an app of the same name"
            );
        }
        self.record_created(&app, &intent).await?;
        self.store
            .finish_intent(intent_id, IntentState::Done, Some(&app.client_id))
            .await?;
        self.supersede_pending_creates(&app.client_name, intent_id)
            .await;
        Ok(app)
    }

    /// Makes the app's tokens DPoP-bound. Okta's dynamic client
    /// registration cannot set `dpop_bound_access_tokens`, so the app is
    /// fetched, changed and replaced through the Apps API.
    async fn enable_dpop(&self, client_id: &str) -> Result<(), ServiceError> {
        let pending = self
            .keyring
            .generate_pending(KeyAlgorithm::Es256, KeyPurpose::Dpop)
            .await?;
        let enabled = self.make_dpop_bound(client_id, &pending).await;
        if enabled.is_err() {
            // The DPoP key's public half is never sent to Okta, so the key
            // is of no use unless it became the app's active key.
            self.discard_key(Some(&pending.key_id)).await;
        }
        enabled
    }

    /// Turns on DPoP-bound tokens in Okta and makes `pending` the app's
    /// DPoP key.
    async fn make_dpop_bound(
        &self,
        client_id: &str,
        pending: &PendingKey,
    ) -> Result<(), ServiceError> {
        let mut app = self
            .okta
            .get_app_json(client_id)
            .await
            .map_err(|err| ServiceError::for_app(err, client_id))?;
        let Some(settings) = app
            .get_mut("settings")
            .and_then(|settings| settings.get_mut("oauthClient"))
            .and_then(serde_json::Value::as_object_mut)
        else {
            return Err(OktaError::Decode {
                operation: "get app",
                detail: "the app has no settings.oauthClient".into(),
            }
            .into());
        };
        settings.insert(
            "dpop_bound_access_tokens".into(),
            serde_json::Value::Bool(true),
        );
        self.okta.replace_app(client_id, &app).await?;
        self.keyring
            .activate(pending, client_id, KeyPurpose::Dpop)
            .await?;
        self.store.set_dpop_bound(client_id, true).await?;
        tracing::info!(%client_id, "service app made DPoP-bound");
        Ok(())
    }

    async fn list(
        &self,
        request: ListServiceAppsRequest,
    ) -> Result<ListServiceAppsResponse, ServiceError> {
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if (1..=MAX_PAGE_SIZE).contains(&size) => size,
            size => {
                return Err(InvalidArgument::new(
                    "page_size",
                    format!("{size} is out of range; use 1 to {MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}"),
                )
                .into());
            }
        };
        validate::name_prefix(&request.name_prefix)?;
        let next = if request.page_token.is_empty() {
            None
        } else {
            let token = PageToken::decode(&request.page_token)?;
            if token.q != request.name_prefix {
                return Err(InvalidArgument::new(
                    "page_token",
                    "was issued for another name_prefix; repeat the name_prefix of the first request",
                )
                .into());
            }
            Some(token.after)
        };

        let limit = u32::try_from(page_size).expect("page_size was checked to be positive");
        let page = self
            .okta
            .list_apps_page(&request.name_prefix, limit, next.as_deref())
            .await?;
        let apps = page
            .items
            .iter()
            .filter(|app| app.is_service_app())
            .map(app_message)
            .collect();
        let next_page_token = page
            .next
            .map(|next| {
                PageToken {
                    after: next,
                    q: request.name_prefix,
                }
                .encode()
            })
            .unwrap_or_default();
        Ok(ListServiceAppsResponse {
            apps,
            next_page_token,
        })
    }

    async fn delete(&self, client_id: &str) -> Result<(), ServiceError> {
        validate::client_id(client_id)?;
        // A rotation step of the app waits until the app is gone.
        let _app_guard = self.names.lock(&format!("app:{client_id}")).await?;
        let app = match self.service_app(client_id).await {
            Ok(app) => app,
            Err(ServiceError::AppNotFound(missing)) => {
                // Gone from Okta, perhaps deleted by an earlier call whose
                // response was lost: record that before reporting it.
                if self
                    .store
                    .app(client_id)
                    .await?
                    .is_some_and(|record| !record.deleted)
                {
                    tracing::warn!(%client_id, "app to delete is already gone from Okta; recording it as deleted");
                    self.forget_deleted_app(client_id).await?;
                }
                return Err(ServiceError::AppNotFound(missing));
            }
            Err(error) => return Err(error),
        };
        let intent_id = self
            .store
            .record_intent(&Intent::delete_app(client_id))
            .await?;
        if let Err(error) = self.deactivate_and_delete(&app).await {
            self.settle_failed_call(intent_id, &error).await?;
            return Err(ServiceError::for_app(error, client_id));
        }
        self.forget_deleted_app(client_id).await?;
        self.store
            .finish_intent(intent_id, IntentState::Done, None)
            .await?;
        tracing::info!(%client_id, "service app deleted");
        Ok(())
    }

    async fn deactivate_and_delete(&self, app: &App) -> Result<(), OktaError> {
        if app.status != "INACTIVE" {
            self.okta.deactivate_app(&app.id).await?;
        }
        self.okta.delete_app(&app.id).await
    }

    /// Records that an app is gone from Okta and drops what is cached
    /// about it.
    async fn forget_deleted_app(&self, client_id: &str) -> Result<(), ServiceError> {
        self.store.mark_app_deleted(client_id).await?;
        self.keyring.forget(client_id);
        self.tokens.forget(client_id);
        // Ends the app's watch streams with NOT_FOUND.
        self.rotator.announce(client_id);
        Ok(())
    }

    async fn grant(&self, request: GrantScopesRequest) -> Result<Vec<ScopeResult>, ServiceError> {
        validate::client_id(&request.client_id)?;
        let scope_ids = validate::scope_ids(&request.scope_ids)?;
        if !request.issuer.is_empty() && !self.okta.org().is_issuer(&request.issuer) {
            return Err(InvalidArgument::new(
                "issuer",
                format!(
                    "{:?} is not this registrar's Okta org; leave it empty or use {}",
                    validate::truncate(&request.issuer, 100),
                    self.okta.org()
                ),
            )
            .into());
        }
        let client_id = request.client_id.as_str();
        self.service_app(client_id).await?;
        let existing = self
            .okta
            .list_grants(client_id)
            .await
            .map_err(|err| ServiceError::for_app(err, client_id))?;

        let mut results = Vec::with_capacity(scope_ids.len());
        let mut abort: Option<OktaError> = None;
        for scope_id in scope_ids {
            if let Some(grant) = active_grant(&existing, &scope_id, self.okta.org().as_str()) {
                results.push(scope_result(
                    &scope_id,
                    ScopeOutcome::AlreadyGranted,
                    &grant.id,
                    "",
                ));
                continue;
            }
            if let Some(error) = &abort {
                results.push(scope_result(
                    &scope_id,
                    ScopeOutcome::Failed,
                    "",
                    &format!("not attempted: {error}"),
                ));
                continue;
            }
            let intent_id = self
                .store
                .record_intent(&Intent::grant(client_id, &scope_id))
                .await?;
            let granted = self.grant_once(client_id, &scope_id).await;
            if let Err(error) = &granted {
                self.settle_failed_call(intent_id, error).await?;
            }
            match granted {
                Ok(grant) => {
                    tracing::info!(%client_id, %scope_id, grant_id = %grant.id, "scope granted");
                    self.store
                        .record_grant(client_id, &scope_id, &grant.id)
                        .await?;
                    self.store
                        .finish_intent(intent_id, IntentState::Done, None)
                        .await?;
                    results.push(scope_result(
                        &scope_id,
                        ScopeOutcome::Granted,
                        &grant.id,
                        "",
                    ));
                }
                Err(error) if error.is_bad_request() => {
                    results.push(self.after_rejected_grant(client_id, &scope_id, error).await);
                }
                Err(error) => {
                    // Nothing changed yet: the whole call fails with Okta's
                    // error. Otherwise the results keep what was granted.
                    if !results
                        .iter()
                        .any(|result| result.outcome == ScopeOutcome::Granted as i32)
                    {
                        return Err(ServiceError::for_app(error, client_id));
                    }
                    tracing::warn!(%client_id, %scope_id, %error, "grant failed; remaining scopes not attempted");
                    results.push(scope_result(
                        &scope_id,
                        ScopeOutcome::Failed,
                        "",
                        &error.to_string(),
                    ));
                    abort = Some(error);
                }
            }
        }
        // Cached tokens lack the new scopes; a call that granted nothing
        // keeps them.
        if results
            .iter()
            .any(|result| result.outcome == ScopeOutcome::Granted as i32)
        {
            self.tokens.forget(client_id);
        }
        Ok(results)
    }

    /// Re-lists grants after Okta rejected one, because Okta may reject a
    /// grant that already exists (granted meanwhile by someone else).
    async fn after_rejected_grant(
        &self,
        client_id: &str,
        scope_id: &str,
        error: OktaError,
    ) -> ScopeResult {
        let org = self.okta.org().as_str();
        if let Ok(grants) = self.okta.list_grants(client_id).await
            && let Some(grant) = active_grant(&grants, scope_id, org)
        {
            return scope_result(scope_id, ScopeOutcome::AlreadyGranted, &grant.id, "");
        }
        tracing::debug!(%client_id, %scope_id, %error, "okta rejected a grant");
        let reason = match &error {
            OktaError::Api { body, .. } => format!("Okta rejected the grant: {body}"),
            other => other.to_string(),
        };
        scope_result(scope_id, ScopeOutcome::Failed, "", &reason)
    }

    async fn list_grants(&self, client_id: &str) -> Result<Vec<Grant>, ServiceError> {
        validate::client_id(client_id)?;
        self.service_app(client_id).await?;
        let grants = self
            .okta
            .list_grants(client_id)
            .await
            .map_err(|err| ServiceError::for_app(err, client_id))?;
        Ok(grants
            .iter()
            .filter(|grant| grant.status.is_empty() || grant.status == "ACTIVE")
            .map(|grant| Grant {
                grant_id: grant.id.clone(),
                scope_id: grant.scope_id.clone(),
                issuer: grant.issuer.clone(),
                created: grant.created.as_deref().and_then(parse_timestamp),
            })
            .collect())
    }

    async fn revoke(&self, request: RevokeScopesRequest) -> Result<Vec<ScopeResult>, ServiceError> {
        validate::client_id(&request.client_id)?;
        let scope_ids = validate::scope_ids(&request.scope_ids)?;
        let client_id = request.client_id.as_str();
        self.service_app(client_id).await?;
        let grants = self
            .okta
            .list_grants(client_id)
            .await
            .map_err(|err| ServiceError::for_app(err, client_id))?;

        let mut results = Vec::with_capacity(scope_ids.len());
        for scope_id in scope_ids {
            let matching: Vec<_> = grants
                .iter()
                .filter(|grant| {
                    grant.scope_id == scope_id
                        && (grant.status.is_empty() || grant.status == "ACTIVE")
                })
                .collect();
            if matching.is_empty() {
                results.push(scope_result(&scope_id, ScopeOutcome::NotGranted, "", ""));
                continue;
            }
            // A scope may hold several grants (for example, one per issuer);
            // revoking the scope removes all of them.
            let mut outcome = scope_result(&scope_id, ScopeOutcome::Revoked, "", "");
            for grant in matching {
                let intent_id = self
                    .store
                    .record_intent(&Intent::revoke(client_id, &scope_id, &grant.id))
                    .await?;
                let revoked = match self.okta.delete_grant(client_id, &grant.id).await {
                    Ok(()) => {
                        tracing::info!(%client_id, %scope_id, grant_id = %grant.id, "scope revoked");
                        Ok(())
                    }
                    // Gone in the meantime: the goal is reached.
                    Err(error) if error.is_not_found() => Ok(()),
                    Err(error) => Err(error),
                };
                match revoked {
                    Ok(()) => {
                        self.store.record_revocation(client_id, &grant.id).await?;
                        self.store
                            .finish_intent(intent_id, IntentState::Done, None)
                            .await?;
                        outcome.grant_id = grant.id.clone();
                    }
                    Err(error) => {
                        self.settle_failed_call(intent_id, &error).await?;
                        let changed = results.iter().any(|result: &ScopeResult| {
                            result.outcome == ScopeOutcome::Revoked as i32
                        });
                        if !changed && outcome.grant_id.is_empty() {
                            return Err(ServiceError::for_app(error, client_id));
                        }
                        tracing::warn!(%client_id, %scope_id, %error, "revoke failed");
                        outcome =
                            scope_result(&scope_id, ScopeOutcome::Failed, "", &error.to_string());
                        break;
                    }
                }
            }
            results.push(outcome);
        }
        // Cached tokens may carry a revoked scope; Okta keeps honouring
        // them until they expire, but the registrar hands out no more.
        if results
            .iter()
            .any(|result| result.outcome == ScopeOutcome::Revoked as i32)
        {
            self.tokens.forget(client_id);
        }
        Ok(results)
    }
}

#[tonic::async_trait]
impl Registrar for RegistrarService {
    #[instrument(skip_all, fields(client_name = ?request.get_ref().client_name))]
    async fn create_service_app(
        &self,
        request: Request<CreateServiceAppRequest>,
    ) -> Result<Response<CreateServiceAppResponse>, Status> {
        let app = self.create_rpc(request).await?;
        Ok(Response::new(CreateServiceAppResponse { app: Some(app) }))
    }

    #[instrument(skip_all, fields(client_id = ?request.get_ref().client_id))]
    async fn get_service_app(
        &self,
        request: Request<GetServiceAppRequest>,
    ) -> Result<Response<GetServiceAppResponse>, Status> {
        self.authorize(&request, Operation::Read)
            .map_err(log_error)?;
        let client_id = &request.get_ref().client_id;
        validate::client_id(client_id).map_err(ServiceError::from)?;
        let app = self.service_app(client_id).await.map_err(log_error)?;
        Ok(Response::new(GetServiceAppResponse {
            app: Some(app_message(&app)),
        }))
    }

    #[instrument(skip_all)]
    async fn list_service_apps(
        &self,
        request: Request<ListServiceAppsRequest>,
    ) -> Result<Response<ListServiceAppsResponse>, Status> {
        self.authorize(&request, Operation::Read)
            .map_err(log_error)?;
        let response = self.list(request.into_inner()).await.map_err(log_error)?;
        Ok(Response::new(response))
    }

    #[instrument(skip_all, fields(client_id = ?request.get_ref().client_id))]
    async fn delete_service_app(
        &self,
        request: Request<DeleteServiceAppRequest>,
    ) -> Result<Response<DeleteServiceAppResponse>, Status> {
        self.delete_rpc(request).await?;
        Ok(Response::new(DeleteServiceAppResponse {}))
    }

    #[instrument(skip_all, fields(client_id = ?request.get_ref().client_id))]
    async fn grant_scopes(
        &self,
        request: Request<GrantScopesRequest>,
    ) -> Result<Response<GrantScopesResponse>, Status> {
        let results = self.grant_rpc(request).await?;
        Ok(Response::new(GrantScopesResponse { results }))
    }

    #[instrument(skip_all, fields(client_id = ?request.get_ref().client_id))]
    async fn list_grants(
        &self,
        request: Request<ListGrantsRequest>,
    ) -> Result<Response<ListGrantsResponse>, Status> {
        self.authorize(&request, Operation::Read)
            .map_err(log_error)?;
        let grants = RegistrarService::list_grants(self, &request.get_ref().client_id)
            .await
            .map_err(log_error)?;
        Ok(Response::new(ListGrantsResponse { grants }))
    }

    #[instrument(skip_all, fields(client_id = ?request.get_ref().client_id))]
    async fn revoke_scopes(
        &self,
        request: Request<RevokeScopesRequest>,
    ) -> Result<Response<RevokeScopesResponse>, Status> {
        let results = self.revoke_rpc(request).await?;
        Ok(Response::new(RevokeScopesResponse { results }))
    }

    #[instrument(skip_all, fields(client_id = ?request.get_ref().client_id))]
    async fn sign_client_assertion(
        &self,
        request: Request<SignClientAssertionRequest>,
    ) -> Result<Response<SignClientAssertionResponse>, Status> {
        self.authorize_app(&request, Operation::Token, &request.get_ref().client_id)
            .await
            .map_err(log_error)?;
        let response = self
            .sign_assertion(request.into_inner())
            .await
            .map_err(log_error)?;
        Ok(Response::new(response))
    }

    #[instrument(skip_all, fields(client_id = ?request.get_ref().client_id))]
    async fn get_access_token(
        &self,
        request: Request<GetAccessTokenRequest>,
    ) -> Result<Response<GetAccessTokenResponse>, Status> {
        self.authorize_app(&request, Operation::Token, &request.get_ref().client_id)
            .await
            .map_err(log_error)?;
        let response = self.access_token(request.into_inner()).await?;
        Ok(Response::new(response))
    }

    #[instrument(skip_all, fields(client_id = ?request.get_ref().client_id))]
    async fn rotate_key(
        &self,
        request: Request<RotateKeyRequest>,
    ) -> Result<Response<RotateKeyResponse>, Status> {
        let response = self.rotate_rpc(request).await?;
        Ok(Response::new(response))
    }

    #[instrument(skip_all, fields(client_id = ?request.get_ref().client_id))]
    async fn add_key(
        &self,
        request: Request<AddKeyRequest>,
    ) -> Result<Response<AddKeyResponse>, Status> {
        let response = self.add_key_rpc(request).await?;
        Ok(Response::new(response))
    }

    #[instrument(skip_all, fields(client_id = ?request.get_ref().client_id))]
    async fn retire_key(
        &self,
        request: Request<RetireKeyRequest>,
    ) -> Result<Response<RetireKeyResponse>, Status> {
        let response = self.retire_key_rpc(request).await?;
        Ok(Response::new(response))
    }

    type WatchRotationsStream = keys::WatchStream;

    #[instrument(skip_all)]
    async fn watch_rotations(
        &self,
        request: Request<WatchRotationsRequest>,
    ) -> Result<Response<Self::WatchRotationsStream>, Status> {
        // Subscribing before the check means that a reload during the
        // check makes the stream check again.
        let reloads = self.policies.subscribe();
        self.authorize_watch(&request).await.map_err(log_error)?;
        let caller = keys::StreamCaller {
            caller: Caller::of(&request).cloned(),
            token_digest: request.extensions().get::<TokenDigest>().cloned(),
            reloads,
        };
        let stream = self
            .watch(request.into_inner(), caller)
            .await
            .map_err(log_error)?;
        Ok(Response::new(stream))
    }

    #[instrument(skip_all, fields(service_name = ?request.get_ref().service_name))]
    async fn register_service(
        &self,
        request: Request<RegisterServiceRequest>,
    ) -> Result<Response<RegisterServiceResponse>, Status> {
        let response = self.register_rpc(request).await?;
        Ok(Response::new(response))
    }

    #[instrument(skip_all, fields(client_id = ?request.get_ref().client_id))]
    async fn sign_dpop_proof(
        &self,
        request: Request<SignDpopProofRequest>,
    ) -> Result<Response<SignDpopProofResponse>, Status> {
        self.authorize_app(&request, Operation::Token, &request.get_ref().client_id)
            .await
            .map_err(log_error)?;
        let response = self
            .sign_proof(request.into_inner())
            .await
            .map_err(log_error)?;
        Ok(Response::new(response))
    }

    #[instrument(skip_all, fields(client_id = ?request.get_ref().client_id))]
    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let response = RegistrarService::list_audit_events(self, request)
            .await
            .map_err(log_error)?;
        Ok(Response::new(response))
    }
}

/// Logs a failed request at a level that fits its cause and converts it.
fn log_error(error: ServiceError) -> Status {
    match &error {
        ServiceError::Okta(_) | ServiceError::Store(_) => tracing::warn!(%error, "request failed"),
        _ => tracing::debug!(%error, "request rejected"),
    }
    error.into()
}

fn active_grant<'a>(
    grants: &'a [crate::okta::model::ScopeGrant],
    scope_id: &str,
    issuer: &str,
) -> Option<&'a crate::okta::model::ScopeGrant> {
    grants.iter().find(|grant| {
        grant.scope_id == scope_id
            && (grant.status.is_empty() || grant.status == "ACTIVE")
            && (grant.issuer.is_empty() || grant.issuer.trim_end_matches('/') == issuer)
    })
}

fn scope_result(scope_id: &str, outcome: ScopeOutcome, grant_id: &str, error: &str) -> ScopeResult {
    ScopeResult {
        scope_id: scope_id.to_string(),
        outcome: outcome as i32,
        grant_id: grant_id.to_string(),
        error: error.to_string(),
    }
}

/// Builds the service app message from a registration response. Keys that
/// dynamic client registration just created are active.
fn registered_app(registered: &RegisteredClient) -> ServiceApp {
    let keys = registered
        .jwks
        .as_ref()
        .map(|jwks| jwks.keys.iter().map(jwk::from_okta_json).collect())
        .unwrap_or_default();
    let keys = Vec::into_iter(keys)
        .map(|mut key: registrar_api::v1::PublicKey| {
            if key.status == KeyStatus::Unspecified as i32 {
                key.status = KeyStatus::Active as i32;
            }
            key
        })
        .collect();
    ServiceApp {
        client_id: registered.client_id.clone(),
        client_name: registered.client_name.clone(),
        keys,
        client_id_issued_at: registered
            .client_id_issued_at
            .map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
        status: AppStatus::Active as i32,
    }
}

/// Builds the service app message from an Okta app object.
fn app_message(app: &App) -> ServiceApp {
    let status = match app.status.as_str() {
        "ACTIVE" => AppStatus::Active,
        "INACTIVE" => AppStatus::Inactive,
        _ => AppStatus::Unspecified,
    };
    ServiceApp {
        client_id: app.id.clone(),
        client_name: app.label.clone(),
        keys: app.keys().iter().map(jwk::from_okta_json).collect(),
        client_id_issued_at: app.created.as_deref().and_then(parse_timestamp),
        status: status as i32,
    }
}

fn parse_timestamp(value: &str) -> Option<prost_types::Timestamp> {
    let parsed =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).ok()?;
    Some(prost_types::Timestamp {
        seconds: parsed.unix_timestamp(),
        nanos: i32::try_from(parsed.nanosecond()).unwrap_or_default(),
    })
}

/// The state behind a `page_token`: Okta's `after` cursor from its
/// next-page link, and the search prefix it belongs to. The server rebuilds
/// the Okta URL from these, so a forged token can set nothing else.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PageToken {
    after: String,
    q: String,
}

impl PageToken {
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a page token always serialises");
        URL_SAFE_NO_PAD.encode(json)
    }

    pub(crate) fn decode(token: &str) -> Result<Self, InvalidArgument> {
        let invalid = || {
            InvalidArgument::new(
                "page_token",
                "was not issued by this server; pass the next_page_token of the previous response, or leave it empty for the first page",
            )
        };
        if token.len() > MAX_PAGE_TOKEN_LEN {
            return Err(InvalidArgument::new(
                "page_token",
                format!(
                    "is {} bytes long, longer than any token this server issues ({MAX_PAGE_TOKEN_LEN} bytes); pass the next_page_token of the previous response",
                    token.len()
                ),
            ));
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        serde_json::from_slice(&bytes).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_token_round_trip() {
        let token = PageToken {
            after: "0oa1".into(),
            q: "billing".into(),
        };
        let decoded = PageToken::decode(&token.encode()).expect("round trip");
        assert_eq!(decoded.after, token.after);
        assert_eq!(decoded.q, "billing");
        assert!(PageToken::decode("not a token!").is_err());
        assert!(PageToken::decode(&URL_SAFE_NO_PAD.encode("{}")).is_err());
    }

    #[test]
    fn timestamps_parse_okta_format() {
        let parsed = parse_timestamp("2026-03-27T18:32:06.000Z").expect("valid");
        assert_eq!(parsed.seconds, 1_774_636_326);
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
