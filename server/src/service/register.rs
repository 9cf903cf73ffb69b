//! RegisterService: ensure-by-name registration, the call every instance of
//! a service makes at start-up.

use registrar_api::v1::{
    CreateServiceAppRequest, GenerateKey, GrantScopesRequest, KeyAlgorithm, RegisterServiceRequest,
    RegisterServiceResponse, ScopeOutcome, ScopeResult, create_service_app_request::KeySource,
};

use super::{RegistrarService, app_message, scope_result};
use crate::error::ServiceError;
use crate::locks::LockGuard;
use crate::policy::Access;
use crate::store::KeyPurpose;
use crate::validate::{self, InvalidArgument};

impl RegistrarService {
    /// Registers the service for the caller of `access`, which must manage
    /// an app of the name that exists already.
    pub(super) async fn register(
        &self,
        request: RegisterServiceRequest,
        access: &Access,
    ) -> Result<RegisterServiceResponse, ServiceError> {
        validate::app_name("service_name", &request.service_name)?;
        let scope_ids = validate::scope_ids(&request.scope_ids)?;
        let key = request.key.unwrap_or_default();
        let algorithm = KeyAlgorithm::try_from(key.algorithm).map_err(|_| {
            InvalidArgument::new(
                "key.algorithm",
                format!(
                    "{} is not a known key algorithm; use KEY_ALGORITHM_RS256_2048, KEY_ALGORITHM_RS256_3072, KEY_ALGORITHM_RS256_4096 or KEY_ALGORITHM_ES256",
                    key.algorithm
                ),
            )
        })?;

        // Instances of one service queue here, so only the first creates.
        let mut name_guard = self.names.lock(&request.service_name).await?;
        let existing = self.store.app_by_name(&request.service_name).await?;
        if let Some(record) = &existing {
            access.check_manages(
                &record.client_id,
                record.owner.as_deref(),
                &record.client_name,
            )?;
        }
        let (app, created) = match existing {
            Some(record)
                if self
                    .keyring
                    .active(&record.client_id, KeyPurpose::Assertion)
                    .await?
                    .is_none() =>
            {
                return Err(ServiceError::NotRegistrable {
                    name: request.service_name,
                    client_id: record.client_id,
                });
            }
            Some(record) => match self.service_app(&record.client_id).await {
                Ok(app) => (app_message(&app), false),
                Err(ServiceError::AppNotFound(client_id)) => {
                    // Deleted in Okta behind the registrar's back: forget it
                    // and register the service anew.
                    tracing::warn!(%client_id, service_name = %request.service_name, "registered app is gone from Okta; creating a new one");
                    self.store.mark_app_deleted(&client_id).await?;
                    self.keyring.forget(&client_id);
                    self.rotator.announce(&client_id);
                    (
                        self.create_for(&request, algorithm, access.caller_id(), &mut name_guard)
                            .await?,
                        true,
                    )
                }
                Err(error) => return Err(error),
            },
            // A create whose response was lost is resolved by looking the
            // app up by name (see `create_client_once`). When that lookup
            // fails too, the create's intent stays pending, and a later call
            // of the same caller or the next start adopts the app.
            None => match self
                .create_for(&request, algorithm, access.caller_id(), &mut name_guard)
                .await
            {
                Ok(app) => (app, true),
                // Another replica recorded the app after this one read the
                // store, which happens when this replica's lock session
                // ended on the way: register the service with that app.
                Err(ServiceError::NameTaken { name, client_id }) => {
                    let Some(record) = self
                        .store
                        .app_by_name(&name)
                        .await?
                        .filter(|record| record.client_id == client_id)
                    else {
                        return Err(ServiceError::NameTaken { name, client_id });
                    };
                    access.check_manages(
                        &record.client_id,
                        record.owner.as_deref(),
                        &record.client_name,
                    )?;
                    if self
                        .keyring
                        .active(&record.client_id, KeyPurpose::Assertion)
                        .await?
                        .is_none()
                    {
                        return Err(ServiceError::NotRegistrable {
                            name,
                            client_id: record.client_id,
                        });
                    }
                    (
                        app_message(&self.service_app(&record.client_id).await?),
                        false,
                    )
                }
                Err(error) => return Err(error),
            },
        };

        let grants = self.ensure_grants(&app.client_id, scope_ids).await?;
        Ok(RegisterServiceResponse {
            app: Some(app),
            created,
            grants,
        })
    }

    async fn create_for(
        &self,
        request: &RegisterServiceRequest,
        algorithm: KeyAlgorithm,
        owner: &str,
        name_guard: &mut LockGuard,
    ) -> Result<registrar_api::v1::ServiceApp, ServiceError> {
        let create = CreateServiceAppRequest {
            client_name: request.service_name.clone(),
            key_source: Some(KeySource::GenerateKey(GenerateKey {
                algorithm: algorithm as i32,
            })),
            dpop_bound: request.dpop_bound,
        };
        let app = self
            .create_locked(create, Some(algorithm), owner, name_guard)
            .await?;
        tracing::info!(client_id = %app.client_id, service_name = %request.service_name, "service registered");
        Ok(app)
    }

    /// Grants the missing scopes. Scopes that the registrar's record shows
    /// as granted are reported without asking Okta, so instances after the
    /// first cost Okta no grant calls.
    async fn ensure_grants(
        &self,
        client_id: &str,
        scope_ids: Vec<String>,
    ) -> Result<Vec<ScopeResult>, ServiceError> {
        let recorded = self.store.active_grants(client_id).await?;
        let grant_id = |scope_id: &str| {
            recorded
                .iter()
                .find(|(scope, _)| scope == scope_id)
                .map(|(_, grant_id)| grant_id.clone())
        };
        if scope_ids
            .iter()
            .all(|scope_id| grant_id(scope_id).is_some())
        {
            return Ok(scope_ids
                .iter()
                .map(|scope_id| {
                    let id = grant_id(scope_id).unwrap_or_default();
                    scope_result(scope_id, ScopeOutcome::AlreadyGranted, &id, "")
                })
                .collect());
        }
        self.grant(GrantScopesRequest {
            client_id: client_id.to_string(),
            scope_ids,
            issuer: String::new(),
        })
        .await
    }
}
