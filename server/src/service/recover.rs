//! Creates and grants whose outcome is unknown. The Okta client does not
//! resend a create or a grant after a failure that Okta may have applied
//! (a lost response, a 5xx response), because a second POST could make a
//! second app or fail on a duplicate grant. These helpers look the result
//! up first, adopt it if it exists, and only otherwise post again.

use std::time::Duration;

use registrar_api::v1::ServiceApp;

use super::{RegistrarService, active_grant, app_message, registered_app};
use crate::error::ServiceError;
use crate::okta::OktaError;
use crate::okta::model::{App, NewClient, ScopeGrant};
use crate::okta::retry;

impl RegistrarService {
    /// Registers a client once. When Okta may have created it although the
    /// call failed, finds the app by name and keys, and posts again only
    /// when no such app exists. The caller holds the name's lock.
    ///
    /// Once an attempt may have been applied, the error returned is one
    /// that may have been applied too, even when a later attempt failed
    /// for certain: that failure does not prove that the earlier attempt
    /// made no app.
    pub(super) async fn create_client_once(
        &self,
        body: &NewClient,
    ) -> Result<ServiceApp, ServiceError> {
        let name = body.client_name.as_str();
        let mut retries = 0;
        let mut uncertain: Option<OktaError> = None;
        loop {
            let error = match self.okta.create_client(body).await {
                Ok(registered) => return Ok(registered_app(&registered)),
                Err(error) if error.may_have_applied() => error,
                Err(error) => return Err(earliest_uncertain(uncertain, error, name).into()),
            };
            tracing::warn!(client_name = %name, %error, "create client outcome unknown; looking the app up by name");
            // NOTE: Okta's app search may lag behind a create that just
            // committed; a miss then leads to a second create. The emulator
            // lists new apps at once.
            match self.okta.list_apps_all(name).await {
                Ok(apps) => {
                    if let Some(app) = apps.iter().find(|app| is_created_by(app, body)) {
                        tracing::info!(client_id = %app.id, client_name = %name, "adopted the app that a lost create made");
                        return Ok(app_message(app));
                    }
                }
                Err(lookup) => {
                    tracing::warn!(client_name = %name, error = %lookup, "looking up a lost create failed");
                    return Err(error.into());
                }
            }
            retries += 1;
            uncertain = Some(self.wait_before_repost(error, retries).await?);
        }
    }

    /// Grants one scope once. When Okta may have applied a failed grant,
    /// lists the app's grants and posts again only when the scope is not
    /// among them.
    pub(super) async fn grant_once(
        &self,
        client_id: &str,
        scope_id: &str,
    ) -> Result<ScopeGrant, OktaError> {
        let mut retries = 0;
        let mut uncertain: Option<OktaError> = None;
        loop {
            let error = match self.okta.create_grant(client_id, scope_id).await {
                Ok(grant) => return Ok(grant),
                Err(error) if error.may_have_applied() => error,
                Err(error) => return Err(earliest_uncertain(uncertain, error, scope_id)),
            };
            tracing::warn!(%client_id, %scope_id, %error, "grant outcome unknown; listing the app's grants");
            let org = self.okta.org().as_str();
            match self.okta.list_grants(client_id).await {
                Ok(grants) => {
                    if let Some(grant) = active_grant(&grants, scope_id, org) {
                        tracing::info!(%client_id, %scope_id, grant_id = %grant.id, "found the grant that a lost request made");
                        return Ok(grant.clone());
                    }
                }
                Err(lookup) => {
                    tracing::warn!(%client_id, %scope_id, error = %lookup, "listing grants after a lost grant failed");
                    return Err(error);
                }
            }
            retries += 1;
            uncertain = Some(self.wait_before_repost(error, retries).await?);
        }
    }

    /// Waits the backoff before posting again and returns `error` for the
    /// next attempt to keep, or returns it as the call's error when the
    /// retry limit is reached or the wait would pass the call's deadline.
    async fn wait_before_repost(
        &self,
        error: OktaError,
        retries: u32,
    ) -> Result<OktaError, OktaError> {
        let policy = self.okta.retry_policy();
        let wait = policy.backoff(retries);
        if retries > policy.max_retries || retry::passes_deadline(wait) {
            return Err(error.with_retry_after(wait.max(Duration::from_secs(1))));
        }
        tracing::debug!(
            retry = retries,
            wait_ms = wait.as_millis(),
            "posting again after a lookup found nothing"
        );
        tokio::time::sleep(wait).await;
        Ok(error)
    }
}

/// Returns the error of a post that failed for certain, or, when an earlier
/// attempt's outcome is unknown, that earlier error, so that the call stays
/// one whose outcome is unknown. `target` names the app or scope in the log.
fn earliest_uncertain(uncertain: Option<OktaError>, error: OktaError, target: &str) -> OktaError {
    match uncertain {
        Some(earlier) => {
            tracing::warn!(
                %target,
                %error,
                "posting again failed; the outcome of the earlier attempt stays unknown"
            );
            earlier
        }
        None => error,
    }
}

/// Returns whether `app` is the service app that `body` registers: same
/// name, and every key of the body among the app's keys.
pub(super) fn is_created_by(app: &App, body: &NewClient) -> bool {
    if !app.is_service_app() || app.label != body.client_name {
        return false;
    }
    let app_keys: Vec<_> = app.keys().iter().map(fingerprint).collect();
    body.jwks
        .keys
        .iter()
        .all(|key| app_keys.contains(&fingerprint(key)))
}

/// Identifies a JWK by its `kid` and its RSA modulus or EC x coordinate.
fn fingerprint(key: &serde_json::Value) -> (Option<&str>, Option<&str>) {
    let field = |name: &str| key.get(name).and_then(serde_json::Value::as_str);
    (field("kid"), field("n").or_else(|| field("x")))
}
