//! Access tokens for service apps: client assertions signed with the app's
//! server-held key, a cache per app and scope set, one in-flight request per
//! cache entry, refresh ahead of expiry with jitter, and DPoP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tonic::Status;
use url::Url;

use crate::error::ServiceError;
use crate::keyring::Keyring;
use crate::keys::sign;
use crate::okta::OktaClient;
use crate::store::{KeyPurpose, Store};

/// The RFC 7523 client assertion type.
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Okta's lifetime of tokens with Okta scopes, used when a response has no
/// `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The maximum lifetime accepted from a token response; a larger
/// `expires_in` is cut to it, so that a wrong value cannot keep a token
/// cached for days.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A cached token that expires sooner than this is never handed out.
const MIN_REMAINING: Duration = Duration::from_secs(10);

/// Token endpoint and client assertion settings.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The token endpoint, `{org}/oauth2/v1/token` for Okta.
    pub token_endpoint: Url,
    /// The assertion's `aud`. Okta accepts only the exact token endpoint
    /// URL; other providers may accept their issuer too.
    pub audience: String,
    /// How far ahead of `iat` the assertion's `exp` lies. Okta rejects more
    /// than one hour.
    pub assertion_lifetime: Duration,
}

impl TokenSettings {
    /// Returns Okta's settings for an org: the org authorization server's
    /// token endpoint, which is also the only `aud` Okta accepts.
    pub fn okta(org: &crate::org::OrgUrl, assertion_lifetime: Duration) -> Self {
        let mut token_endpoint = org.url().clone();
        token_endpoint
            .path_segments_mut()
            .expect("an http(s) org URL has a path")
            .pop_if_empty()
            .extend(["oauth2", "v1", "token"]);
        Self {
            audience: token_endpoint.to_string(),
            token_endpoint,
            assertion_lifetime,
        }
    }
}

/// An access token with its metadata. `Debug` leaves out the token.
#[derive(Clone)]
pub struct AccessToken {
    /// The token itself.
    pub access_token: String,
    /// `Bearer` or `DPoP`.
    pub token_type: String,
    /// When it expires.
    pub expires_at: SystemTime,
    /// The scopes Okta granted.
    pub scopes: Vec<String>,
    obtained_at: Instant,
    refresh_at: Instant,
    valid_until: Instant,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// One cache entry: the token, and the last failure so that callers who
/// waited for a failed request share its error instead of each retrying.
#[derive(Debug, Default)]
struct Slot {
    token: Option<AccessToken>,
    failure: Option<(Instant, Status)>,
}

/// Cache entries by client id and space-joined sorted scopes.
type SlotMap = HashMap<(String, String), Arc<tokio::sync::Mutex<Slot>>>;

/// The token cache and the code that fills it.
#[derive(Debug, Clone)]
pub struct Tokens {
    okta: OktaClient,
    keyring: Keyring,
    store: Store,
    settings: TokenSettings,
    slots: Arc<Mutex<SlotMap>>,
    dpop_nonce: Arc<Mutex<Option<String>>>,
}

impl Tokens {
    /// Builds an empty cache.
    pub fn new(okta: OktaClient, keyring: Keyring, store: Store, settings: TokenSettings) -> Self {
        Self {
            okta,
            keyring,
            store,
            settings,
            slots: Arc::default(),
            dpop_nonce: Arc::default(),
        }
    }

    /// Returns the settings.
    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Returns a token for the app and the validated, de-duplicated scopes,
    /// and whether it came from the cache. Concurrent calls for the same app
    /// and scope set share one request to the token endpoint. With
    /// `force_refresh`, a token obtained before this call is replaced.
    pub async fn access_token(
        &self,
        client_id: &str,
        mut scopes: Vec<String>,
        force_refresh: bool,
    ) -> Result<(AccessToken, bool), Status> {
        let arrived = Instant::now();
        scopes.sort();
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .expect("the token cache lock is never poisoned");
            slots
                .entry((client_id.to_string(), scopes.join(" ")))
                .or_default()
                .clone()
        };
        let mut slot = slot.lock().await;

        let valid = |token: &AccessToken| Instant::now() + MIN_REMAINING < token.valid_until;
        if let Some(token) = &slot.token {
            let fresh =
                arrived < token.refresh_at || (force_refresh && token.obtained_at >= arrived);
            let usable = !force_refresh || token.obtained_at >= arrived;
            if fresh && usable && valid(token) {
                return Ok((token.clone(), true));
            }
        }
        // A refresh that failed while this caller waited also decides this
        // call: the still-valid token when there is one, else the error.
        if let Some((failed_at, status)) = &slot.failure
            && *failed_at >= arrived
        {
            if let Some(token) = slot
                .token
                .as_ref()
                .filter(|token| !force_refresh && valid(token))
            {
                return Ok((token.clone(), true));
            }
            return Err(status.clone());
        }

        match self.fetch(client_id, &scopes).await {
            Ok(token) => {
                slot.token = Some(token.clone());
                slot.failure = None;
                Ok((token, false))
            }
            Err(error) => {
                let status = Status::from(error);
                slot.failure = Some((Instant::now(), status.clone()));
                // A still-valid token outlives a failed early refresh.
                if let Some(token) = slot
                    .token
                    .as_ref()
                    .filter(|token| !force_refresh && valid(token))
                {
                    tracing::warn!(%client_id, error = %status.message(), "token refresh failed; serving the cached token");
                    return Ok((token.clone(), true));
                }
                Err(status)
            }
        }
    }

    /// Drops every cached token of an app, so that the next call asks Okta
    /// again: after the app was deleted or its grants changed.
    pub fn forget(&self, client_id: &str) {
        self.slots
            .lock()
            .expect("the token cache lock is never poisoned")
            .retain(|(cached_client, _), _| cached_client != client_id);
    }

    /// Signs a client assertion with the app's active key.
    pub async fn client_assertion(
        &self,
        client_id: &str,
    ) -> Result<sign::SignedAssertion, ServiceError> {
        let key = self
            .keyring
            .active(client_id, KeyPurpose::Assertion)
            .await?
            .ok_or_else(|| ServiceError::NoPrivateKey(client_id.to_string()))?;
        let assertion = sign::client_assertion(
            &key,
            client_id,
            &self.settings.audience,
            self.settings.assertion_lifetime,
        )?;
        Ok(assertion)
    }

    /// Signs a DPoP proof for a resource request with the app's DPoP key.
    pub async fn resource_proof(
        &self,
        client_id: &str,
        method: &str,
        url: &str,
        access_token: &str,
        nonce: Option<&str>,
    ) -> Result<String, ServiceError> {
        let key = self
            .keyring
            .active(client_id, KeyPurpose::Dpop)
            .await?
            .ok_or_else(|| ServiceError::NotDpopBound(client_id.to_string()))?;
        Ok(sign::dpop_proof(
            &key,
            method,
            url,
            nonce,
            Some(access_token),
        )?)
    }

    /// Requests a new token from the token endpoint. Every attempt signs a
    /// new assertion (a new `jti`), and a DPoP-bound app sends a proof from
    /// the first attempt on, retrying once with the server's nonce. A 429,
    /// 5xx or transport failure is retried as the Okta client's retry
    /// policy allows, also with a new assertion, because the Okta client
    /// never resends a token request itself.
    async fn fetch(&self, client_id: &str, scopes: &[String]) -> Result<AccessToken, ServiceError> {
        let record = self.store.app(client_id).await?;
        let dpop_key = match &record {
            Some(app) if app.deleted => {
                return Err(ServiceError::AppNotFound(client_id.to_string()));
            }
            Some(app) if app.dpop_bound => self.keyring.active(client_id, KeyPurpose::Dpop).await?,
            Some(_) => None,
            None => {
                // Not created by this registrar: tell apart "no such app"
                // from "an app whose keys the caller holds".
                self.okta
                    .get_app(client_id)
                    .await
                    .map_err(|err| ServiceError::for_app(err, client_id))?;
                return Err(ServiceError::NoPrivateKey(client_id.to_string()));
            }
        };

        let scope = scopes.join(" ");
        let token_url = self.settings.token_endpoint.as_str();
        let mut nonce = self
            .dpop_nonce
            .lock()
            .expect("the nonce lock is never poisoned")
            .clone();
        let mut nonce_retried = false;
        let mut failures = 0;
        loop {
            let assertion = self.client_assertion(client_id).await?;
            let proof = match &dpop_key {
                Some(key) => Some(sign::dpop_proof(
                    key,
                    "POST",
                    token_url,
                    nonce.as_deref(),
                    None,
                )?),
                None => None,
            };
            let form = [
                ("grant_type", "client_credentials"),
                ("scope", scope.as_str()),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.jwt.as_str()),
            ];
            let requested = Instant::now();
            let requested_at = SystemTime::now();
            match self
                .okta
                .request_token(&self.settings.token_endpoint, &form, proof.as_deref())
                .await
            {
                Ok(response) => {
                    let lifetime = response
                        .expires_in
                        .map(|secs| Duration::from_secs(secs.clamp(1, MAX_LIFETIME.as_secs())))
                        .unwrap_or(DEFAULT_LIFETIME);
                    let granted = response
                        .scope
                        .as_deref()
                        .map(|scope| scope.split_whitespace().map(str::to_string).collect())
                        .unwrap_or_else(|| scopes.to_vec());
                    tracing::debug!(%client_id, scope = %scope, lifetime_secs = lifetime.as_secs(), "access token issued");
                    return Ok(AccessToken {
                        access_token: response.access_token,
                        token_type: if response.token_type.is_empty() {
                            "Bearer".into()
                        } else {
                            response.token_type
                        },
                        expires_at: requested_at + lifetime,
                        scopes: granted,
                        obtained_at: requested,
                        refresh_at: requested + refresh_after(lifetime),
                        valid_until: requested + lifetime,
                    });
                }
                Err(error)
                    if !nonce_retried
                        && dpop_key.is_some()
                        && error
                            .oauth_error()
                            .is_some_and(|(code, _)| code == "use_dpop_nonce") =>
                {
                    let crate::okta::OktaError::Api { dpop_nonce, .. } = &error else {
                        unreachable!("an OAuth error is an API error");
                    };
                    tracing::debug!(%client_id, "token endpoint asked for a DPoP nonce; retrying");
                    nonce_retried = true;
                    nonce = dpop_nonce.clone();
                    *self
                        .dpop_nonce
                        .lock()
                        .expect("the nonce lock is never poisoned") = nonce.clone();
                }
                Err(error)
                    if nonce_retried
                        && error
                            .oauth_error()
                            .is_some_and(|(code, _)| code == "use_dpop_nonce") =>
                {
                    return Err(ServiceError::TokenRejected {
                        client_id: client_id.to_string(),
                        error: "use_dpop_nonce".into(),
                        detail: "the token endpoint asked for a new DPoP nonce twice; retry later"
                            .into(),
                    });
                }
                Err(error) => {
                    failures += 1;
                    if let Some(wait) = self.retry_wait(&error, failures) {
                        tracing::warn!(%client_id, retry = failures, wait_ms = wait.as_millis(), %error, "retrying token request with a new assertion");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(self.explain_token_error(client_id, scopes, error).await);
                }
            }
        }
    }

    /// Returns how long to wait before retry number `retry` of a failed
    /// token request, or `None` when it must not be retried: the failure
    /// is not retryable, the retry limit is reached, or the wait would pass
    /// the call's deadline.
    fn retry_wait(&self, error: &crate::okta::OktaError, retry: u32) -> Option<Duration> {
        let policy = self.okta.retry_policy();
        if !error.is_retryable() || retry > policy.max_retries {
            return None;
        }
        let wait = match error.status() {
            Some(429) => policy.after_rate_limit(error.retry_after().unwrap_or_default()),
            _ => policy.backoff(retry),
        };
        (!crate::okta::retry::passes_deadline(wait)).then_some(wait)
    }

    /// Turns a token endpoint error into one whose message names the fix.
    async fn explain_token_error(
        &self,
        client_id: &str,
        scopes: &[String],
        error: crate::okta::OktaError,
    ) -> ServiceError {
        let Some((code, description)) = error.oauth_error() else {
            return ServiceError::Okta(error);
        };
        let code = code.to_string();
        let detail = match code.as_str() {
            "consent_required" => {
                let granted = match self.okta.list_grants(client_id).await {
                    Ok(grants) => grants
                        .into_iter()
                        .map(|grant| grant.scope_id)
                        .collect::<Vec<_>>()
                        .join(", "),
                    Err(_) => "unknown".into(),
                };
                format!(
                    "none of the requested scopes [{}] is granted to the app (granted: [{granted}]); grant them with GrantScopes first",
                    scopes.join(", ")
                )
            }
            "invalid_client" => format!(
                "Okta rejected the app's client assertion: {description}; check that the app's active key is registered in Okta"
            ),
            "invalid_dpop_proof" | "use_dpop_nonce" => {
                format!("Okta rejected the registrar's DPoP proof: {description}")
            }
            _ => description.to_string(),
        };
        ServiceError::TokenRejected {
            client_id: client_id.to_string(),
            error: code,
            detail,
        }
    }
}

/// Picks when to refresh a token of this lifetime: after about three
/// quarters of it, minus up to 5 % jitter, so that a fleet of cached tokens
/// does not refresh at once.
fn refresh_after(lifetime: Duration) -> Duration {
    let base = lifetime.mul_f64(0.75);
    let jitter = lifetime.mul_f64(0.05 * rand::random::<f64>());
    base.saturating_sub(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_lands_between_70_and_75_percent() {
        for _ in 0..100 {
            let after = refresh_after(Duration::from_secs(3600));
            assert!(after >= Duration::from_secs(2520), "{after:?}");
            assert!(after <= Duration::from_secs(2700), "{after:?}");
        }
    }
}
