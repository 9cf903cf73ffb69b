//! The registrar's own credential for Okta's management APIs: an API token
//! (`Authorization: SSWS`), or an OAuth service app whose access token the
//! registrar gets with the client-credentials grant and a `private_key_jwt`
//! client assertion.
//!
//! The access token is cached, refreshed ahead of expiry by one request
//! at a time, and dropped when Okta returns 401. When the token endpoint
//! answers `invalid_dpop_proof` (the app requires DPoP), the registrar
//! switches to DPoP (RFC 9449) with a P-256 key generated at start. A 401 or
//! 403 that the credential causes becomes [`OktaError::Credential`], whose
//! message names the missing scope or admin role.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Request, Response};
use tokio::time::Instant;
use url::Url;

use super::error::{ErrorBody, OktaError};
use super::transport::Replay;
use super::{OktaClient, TOKEN_REQUEST};
use crate::keys::sign;
use crate::keys::{KeyError, KeyPair};
use crate::secret::Secret;

/// The scopes the registrar requests for itself when `--okta-scopes` is
/// not given: one for each kind of call it makes.
pub const DEFAULT_SCOPES: &[&str] = &[
    "okta.clients.register",
    "okta.apps.read",
    "okta.apps.manage",
    "okta.appGrants.read",
    "okta.appGrants.manage",
];

/// The RFC 7523 client assertion type.
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The lifetime of the registrar's own client assertions: five minutes, as
/// Okta's guide for service apps suggests. Each one is used once.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);
/// Okta's lifetime of tokens with Okta scopes, used when a response has no
/// `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The maximum lifetime accepted from a token response.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long before expiry a token is refreshed, at most; short-lived tokens
/// are refreshed after four fifths of their lifetime.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// A cached token that expires sooner than this is not used after a failed
/// refresh.
const MIN_REMAINING: Duration = Duration::from_secs(10);

/// The credential the registrar presents to Okta.
#[derive(Debug, Clone)]
pub enum OktaCredential {
    /// An API token of a Super Admin, sent as `Authorization: SSWS`.
    ApiToken(Secret),
    /// An OAuth service app with a private key registered in Okta.
    OAuth(OAuthCredential),
}

/// The registrar's own OAuth service app. `Debug` shows the key's id only.
#[derive(Debug, Clone)]
pub struct OAuthCredential {
    /// The app's client id.
    pub client_id: String,
    /// The private key whose public half is registered with the app.
    pub key: Arc<KeyPair>,
    /// The scopes requested for the access token.
    pub scopes: Vec<String>,
}

/// A failure to build the Okta client.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The DPoP key could not be generated.
    #[error("generating the DPoP key failed: {0}")]
    DpopKey(#[from] KeyError),
}

/// The source of the `Authorization` header of management calls.
#[derive(Debug, Clone)]
pub(super) enum Authorizer {
    /// `SSWS <token>`.
    ApiToken(Secret),
    /// `Bearer <token>` or `DPoP <token>` with a proof.
    OAuth(Arc<OAuthSession>),
}

/// The app name prefix of the trial call of a new credential. No app is
/// expected to match, so the response is one short page.
const CREDENTIAL_TRIAL_QUERY: &str = "registrar-credential-trial";

/// The reason a new Okta credential was not put in force.
#[derive(Debug, thiserror::Error)]
pub enum CredentialReplaceError {
    /// The DPoP key of the OAuth credential could not be generated.
    #[error("generating the DPoP key failed: {0}")]
    DpopKey(#[from] KeyError),
    /// Okta rejected the trial call, or could not be reached.
    #[error("the trial call with the new credential failed: {0}")]
    Rejected(OktaError),
}

impl Authorizer {
    /// Returns whether `credential` is the one this authorizer uses: the
    /// same API token, or the same client id, key, kid and scopes.
    fn is_same(&self, credential: &OktaCredential) -> bool {
        match (self, credential) {
            (Self::ApiToken(current), OktaCredential::ApiToken(new)) => {
                current.expose() == new.expose()
            }
            (Self::OAuth(session), OktaCredential::OAuth(new)) => {
                let current = &session.credential;
                current.client_id == new.client_id
                    && current.scopes == new.scopes
                    && current.key.kid() == new.key.kid()
                    && current.key.public_jwk() == new.key.public_jwk()
            }
            _ => false,
        }
    }

    /// Builds the authorizer of a credential; OAuth generates its DPoP key
    /// here, so that every proof of this process uses one key.
    pub(super) fn new(credential: OktaCredential) -> Result<Self, KeyError> {
        Ok(match credential {
            OktaCredential::ApiToken(token) => Self::ApiToken(token),
            OktaCredential::OAuth(credential) => Self::OAuth(Arc::new(OAuthSession {
                credential,
                dpop_key: KeyPair::generate(registrar_api::v1::KeyAlgorithm::Es256)?,
                dpop_required: AtomicBool::new(false),
                nonce: Mutex::default(),
                cache: tokio::sync::Mutex::default(),
            })),
        })
    }
}

/// The token cache and DPoP state of an OAuth credential.
pub(super) struct OAuthSession {
    credential: OAuthCredential,
    dpop_key: KeyPair,
    dpop_required: AtomicBool,
    nonce: Mutex<Option<String>>,
    cache: tokio::sync::Mutex<Option<ManagementToken>>,
}

impl std::fmt::Debug for OAuthSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthSession")
            .field("client_id", &self.credential.client_id)
            .field("dpop_required", &self.dpop_required.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A cached access token. The token itself is a [`Secret`].
#[derive(Debug, Clone)]
struct ManagementToken {
    token: Secret,
    dpop: bool,
    obtained_at: Instant,
    refresh_at: Instant,
    expires_at: Instant,
}

impl OktaClient {
    /// Returns the credential in force. A call keeps the one it started
    /// with, even when a reload replaces it meanwhile.
    fn authorizer(&self) -> Authorizer {
        self.authorizer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the registrar's Okta credential once Okta accepts it, and
    /// returns whether it differed from the one in force. An equal
    /// credential keeps its token cache. A new one is tried with one
    /// management call (listing apps, which the registrar needs anyway),
    /// whose access token, for OAuth, the new credential keeps. Attempts
    /// that start after the swap use the new credential.
    ///
    /// # Errors
    ///
    /// Returns the error of generating the DPoP key of an OAuth credential,
    /// or of the trial call; the old credential then stays in force.
    pub async fn replace_credential(
        &self,
        credential: OktaCredential,
    ) -> Result<bool, CredentialReplaceError> {
        if self.authorizer().is_same(&credential) {
            return Ok(false);
        }
        let authorizer = Authorizer::new(credential)?;
        let trial = Self {
            authorizer: Arc::new(std::sync::RwLock::new(authorizer.clone())),
            ..self.clone()
        };
        trial
            .list_apps_page(CREDENTIAL_TRIAL_QUERY, 1, None)
            .await
            .map_err(CredentialReplaceError::Rejected)?;
        *self
            .authorizer
            .write()
            .unwrap_or_else(PoisonError::into_inner) = authorizer;
        Ok(true)
    }

    /// Sends a request with the registrar's credential. With OAuth, a 401
    /// drops the cached token and the request is sent once more with a new
    /// one, and a 401 or 403 caused by the credential becomes
    /// [`OktaError::Credential`].
    pub(super) async fn send_authorized(
        &self,
        operation: &'static str,
        replay: Replay,
        request: Request,
    ) -> Result<Response, OktaError> {
        let Authorizer::OAuth(session) = self.authorizer() else {
            return self.send(operation, replay, request).await;
        };
        if operation == TOKEN_REQUEST {
            return self.send(operation, replay, request).await;
        }
        let started = Instant::now();
        // A 401 proves Okta did not apply the request, so even a request
        // that is not idempotent may be sent again.
        let second = request
            .try_clone()
            .expect("request bodies are built in memory, so requests can be cloned");
        let result = match self.send(operation, replay, request).await {
            Err(OktaError::Api { status: 401, .. }) => {
                tracing::debug!(
                    operation,
                    "Okta rejected the registrar's access token; retrying with a new one"
                );
                session.forget_token_obtained_before(started).await;
                self.send(operation, replay, second).await
            }
            other => other,
        };
        result.map_err(|error| session.explain(operation, error))
    }

    /// Sets `Authorization` (and for DPoP the `DPoP` proof) on one attempt
    /// of a management request. Token requests authenticate with their
    /// client assertion and get nothing.
    pub(super) async fn authorize_attempt(&self, request: &mut Request) -> Result<(), OktaError> {
        let value = match self.authorizer() {
            Authorizer::ApiToken(token) => format!("SSWS {}", token.expose()),
            Authorizer::OAuth(session) => {
                let token = session.token(self).await?;
                if token.dpop {
                    let proof = session.resource_proof(request, &token)?;
                    request.headers_mut().insert("DPoP", header_value(&proof)?);
                    format!("DPoP {}", token.token.expose())
                } else {
                    format!("Bearer {}", token.token.expose())
                }
            }
        };
        let mut value = header_value(&value)?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
        Ok(())
    }

    /// Returns the org authorization server's token endpoint.
    fn token_endpoint(&self) -> Url {
        self.url(&["oauth2", "v1", "token"])
    }
}

fn header_value(value: &str) -> Result<HeaderValue, OktaError> {
    HeaderValue::from_str(value).map_err(|_| OktaError::Credential {
        operation: "authorize request",
        status: None,
        detail: "the access token or DPoP proof is not a valid header value".into(),
        request_id: None,
    })
}

impl OAuthSession {
    /// Returns the cached token, or gets a new one when it is due for
    /// refresh. Concurrent callers wait for one token request. A failed
    /// refresh keeps a token that is still valid.
    async fn token(&self, client: &OktaClient) -> Result<ManagementToken, OktaError> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        if let Some(token) = cache.as_ref().filter(|token| now < token.refresh_at) {
            return Ok(token.clone());
        }
        // The token request goes through the same client, whose sending
        // path calls back into this method, so the future is boxed.
        match Box::pin(self.fetch(client)).await {
            Ok(token) => {
                *cache = Some(token.clone());
                Ok(token)
            }
            Err(error) => match cache
                .as_ref()
                .filter(|token| now + MIN_REMAINING < token.expires_at)
            {
                Some(token) => {
                    tracing::warn!(%error, "refreshing the registrar's Okta access token failed; using the cached token");
                    Ok(token.clone())
                }
                None => Err(error),
            },
        }
    }

    /// Drops the cached token if it was obtained before `instant`, so that
    /// a token that another call refreshed since is kept.
    async fn forget_token_obtained_before(&self, instant: Instant) {
        let mut cache = self.cache.lock().await;
        if cache
            .as_ref()
            .is_some_and(|token| token.obtained_at <= instant)
        {
            *cache = None;
        }
    }

    /// Requests a token. Every attempt signs a new assertion. The first
    /// `invalid_dpop_proof` switches to DPoP, a `use_dpop_nonce` is retried
    /// once with Okta's nonce, and retryable failures as the client's
    /// retry policy allows.
    async fn fetch(&self, client: &OktaClient) -> Result<ManagementToken, OktaError> {
        let operation = "registrar token request";
        let endpoint = client.token_endpoint();
        let scope = self.credential.scopes.join(" ");
        let mut nonce_retried = false;
        let mut switched = false;
        let mut failures = 0;
        loop {
            let dpop = self.dpop_required.load(Ordering::Relaxed);
            let assertion = sign::client_assertion(
                &self.credential.key,
                &self.credential.client_id,
                endpoint.as_str(),
                ASSERTION_LIFETIME,
            )
            .map_err(|err| self.setup_error(operation, err.to_string()))?;
            let proof = if dpop {
                let nonce = self.current_nonce();
                let proof = sign::dpop_proof(
                    &self.dpop_key,
                    "POST",
                    endpoint.as_str(),
                    nonce.as_deref(),
                    None,
                )
                .map_err(|err| self.setup_error(operation, err.to_string()))?;
                Some(proof)
            } else {
                None
            };
            let form = [
                ("grant_type", "client_credentials"),
                ("scope", scope.as_str()),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.jwt.as_str()),
            ];
            let requested = Instant::now();
            let error = match client
                .request_token(&endpoint, &form, proof.as_deref())
                .await
            {
                Ok(response) => return Ok(self.cache_entry(response, requested)),
                Err(error) => error,
            };
            let oauth_code = error.oauth_error().map(|(code, _)| code.to_string());
            match oauth_code.as_deref() {
                Some("invalid_dpop_proof") if !dpop && !switched => {
                    tracing::info!(client_id = %self.credential.client_id, "Okta requires DPoP for the registrar's service app; switching to DPoP-bound tokens");
                    self.dpop_required.store(true, Ordering::Relaxed);
                    switched = true;
                }
                Some("use_dpop_nonce") if dpop && !nonce_retried => {
                    tracing::debug!("the token endpoint asked for a DPoP nonce; retrying");
                    nonce_retried = true;
                    if let OktaError::Api { dpop_nonce, .. } = &error {
                        *self.nonce.lock().expect("the nonce lock is never poisoned") =
                            dpop_nonce.clone();
                    }
                }
                _ => {
                    failures += 1;
                    let Some(wait) = retry_wait(client, &error, failures) else {
                        return Err(self.explain_token_error(error));
                    };
                    tracing::warn!(retry = failures, wait_ms = wait.as_millis(), %error, "retrying the registrar's token request with a new assertion");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn current_nonce(&self) -> Option<String> {
        self.nonce
            .lock()
            .expect("the nonce lock is never poisoned")
            .clone()
    }

    /// Builds the cache entry of a token response and logs scopes that Okta
    /// left out, because calls that need them will fail.
    fn cache_entry(
        &self,
        response: super::model::TokenResponse,
        requested: Instant,
    ) -> ManagementToken {
        let lifetime = response
            .expires_in
            .map(|secs| Duration::from_secs(secs.clamp(1, MAX_LIFETIME.as_secs())))
            .unwrap_or(DEFAULT_LIFETIME);
        let margin = (lifetime / 5).min(MAX_REFRESH_MARGIN);
        if let Some(granted) = response.scope.as_deref() {
            let missing: Vec<&str> = self
                .credential
                .scopes
                .iter()
                .map(String::as_str)
                .filter(|scope| !granted.split_whitespace().any(|held| held == *scope))
                .collect();
            if !missing.is_empty() {
                tracing::warn!(client_id = %self.credential.client_id, missing = %missing.join(" "), "Okta left requested scopes out of the registrar's access token; grant them to its service app");
            }
        }
        let dpop = response.token_type.eq_ignore_ascii_case("DPoP");
        tracing::debug!(
            lifetime_secs = lifetime.as_secs(),
            dpop,
            "registrar access token issued"
        );
        ManagementToken {
            token: Secret::new(response.access_token),
            dpop,
            obtained_at: requested,
            refresh_at: requested + (lifetime - margin),
            expires_at: requested + lifetime,
        }
    }

    /// Signs the DPoP proof of a management request: `htm` its method,
    /// `htu` its URL without query and fragment, `ath` the token's hash.
    /// NOTE: no nonce is sent, because Okta's DPoP guide states that resource
    /// requests do not need one.
    fn resource_proof(
        &self,
        request: &Request,
        token: &ManagementToken,
    ) -> Result<String, OktaError> {
        let mut htu = request.url().clone();
        htu.set_query(None);
        htu.set_fragment(None);
        sign::dpop_proof(
            &self.dpop_key,
            request.method().as_str(),
            htu.as_str(),
            None,
            Some(token.token.expose()),
        )
        .map_err(|err| self.setup_error("sign DPoP proof", err.to_string()))
    }

    fn setup_error(&self, operation: &'static str, detail: String) -> OktaError {
        OktaError::Credential {
            operation,
            status: None,
            detail,
            request_id: None,
        }
    }

    /// Explains a failed token request of the registrar's own app.
    /// Retryable failures are returned unchanged.
    fn explain_token_error(&self, error: OktaError) -> OktaError {
        if error.is_retryable() {
            return error;
        }
        let OktaError::Api {
            status,
            body,
            request_id,
            ..
        } = &error
        else {
            return error;
        };
        let client_id = &self.credential.client_id;
        let fix = match body.code() {
            Some("invalid_client") => format!(
                "check --okta-client-id ({client_id}), and that the key of --okta-private-key-file is registered and ACTIVE in that app under the kid the registrar sends (--okta-key-id, or the key's RFC 7638 thumbprint)"
            ),
            Some("invalid_scope" | "consent_required") => format!(
                "grant the scopes of --okta-scopes ({}) to the service app {client_id} in Okta",
                self.credential.scopes.join(" ")
            ),
            _ => format!("check the service app {client_id} in Okta"),
        };
        let detail = format!("Okta rejected the registrar's token request ({body}); {fix}");
        tracing::error!(%client_id, status, error = %body, "Okta rejected the token request of the registrar's own app");
        OktaError::Credential {
            operation: "registrar token request",
            status: Some(*status),
            detail,
            request_id: request_id.clone(),
        }
    }

    /// Turns a 401 or 403 that the credential caused into
    /// [`OktaError::Credential`] naming the missing scope or role. Other
    /// errors, such as 403 E0000056 for deleting an active app, are
    /// returned unchanged.
    fn explain(&self, operation: &'static str, error: OktaError) -> OktaError {
        let OktaError::Api {
            status,
            body,
            request_id,
            www_authenticate,
            ..
        } = &error
        else {
            return error;
        };
        let client_id = &self.credential.client_id;
        let detail = match *status {
            401 => format!(
                "Okta rejected the access token of the registrar's service app {client_id} also after a new one was issued ({body}); check that the app is ACTIVE in Okta"
            ),
            403 => {
                let header_scope = www_authenticate.as_deref().and_then(insufficient_scope);
                let denied_by_scope = header_scope.is_some()
                    || matches!(body.as_ref(), ErrorBody::Other(text) if text.is_empty());
                if denied_by_scope {
                    let scope = header_scope
                        .or_else(|| required_scope(operation).map(str::to_string))
                        .unwrap_or_else(|| "unknown".into());
                    format!(
                        "the registrar's access token lacks the scope {scope}, which {operation} needs; grant {scope} to the registrar's service app {client_id} in Okta and include it in --okta-scopes"
                    )
                } else if body.code() == Some("E0000006") {
                    role_detail(operation, client_id)
                } else {
                    return error;
                }
            }
            _ => return error,
        };
        tracing::warn!(operation, status, %client_id, %detail, "Okta denied the registrar's own credential");
        OktaError::Credential {
            operation,
            status: Some(*status),
            detail,
            request_id: request_id.clone(),
        }
    }
}

/// Explains a 403 E0000006: the scopes allowed the call, the admin role
/// did not.
fn role_detail(operation: &str, client_id: &str) -> String {
    let rule = match operation {
        "grant scope" | "revoke grant" => "only a Super Admin may grant or revoke scopes",
        "add app key" | "deactivate app key" | "delete app key" | "activate app key" => {
            "only a Super Admin may change the keys of an app that holds scope grants"
        }
        _ => "the admin role of the registrar's service app does not allow it",
    };
    format!(
        "Okta denied {operation} (E0000006): {rule}; assign the SUPER_ADMIN role to the registrar's service app {client_id} (POST /oauth2/v1/clients/{client_id}/roles with {{\"type\": \"SUPER_ADMIN\"}})"
    )
}

/// Returns the Okta scope an operation of the client needs, from Okta's
/// management API reference.
pub(super) fn required_scope(operation: &str) -> Option<&'static str> {
    Some(match operation {
        "create client" => "okta.clients.register",
        "get app" | "list apps" | "list app keys" => "okta.apps.read",
        "deactivate app" | "delete app" | "replace app" | "add app key" | "deactivate app key"
        | "activate app key" | "delete app key" => "okta.apps.manage",
        "grant scope" | "revoke grant" => "okta.appGrants.manage",
        "list grants" => "okta.appGrants.read",
        _ => return None,
    })
}

/// Reads the `scope` of a `WWW-Authenticate` challenge whose `error` is
/// `insufficient_scope`.
fn insufficient_scope(challenge: &str) -> Option<String> {
    if !challenge.contains("error=\"insufficient_scope\"") {
        return None;
    }
    let start = challenge.find(" scope=\"")? + " scope=\"".len();
    let rest = &challenge[start..];
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

/// Returns how long to wait before retry number `retry` of a failed token
/// request, or `None` when it must not be retried.
fn retry_wait(client: &OktaClient, error: &OktaError, retry: u32) -> Option<Duration> {
    let policy = client.retry_policy();
    if !error.is_retryable() || retry > policy.max_retries {
        return None;
    }
    let wait = match error.status() {
        Some(429) => policy.after_rate_limit(error.retry_after().unwrap_or_default()),
        _ => policy.backoff(retry),
    };
    (!super::retry::passes_deadline(wait)).then_some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insufficient_scope_is_read_from_challenge() {
        let challenge = r#"Bearer authorization_uri="https://org/oauth2/v1/authorize", realm="https://org", scope="okta.appGrants.manage", error="insufficient_scope", error_description="The access token provided does not contain the required scopes.", resource="/api/v1/apps/0oa1/grants""#;
        assert_eq!(
            insufficient_scope(challenge).as_deref(),
            Some("okta.appGrants.manage")
        );
        assert_eq!(insufficient_scope(r#"Bearer error="invalid_token""#), None);
    }

    #[test]
    fn every_client_operation_has_a_scope() {
        for operation in [
            "create client",
            "get app",
            "list apps",
            "deactivate app",
            "delete app",
            "replace app",
            "add app key",
            "list app keys",
            "deactivate app key",
            "delete app key",
            "grant scope",
            "revoke grant",
            "list grants",
        ] {
            assert!(required_scope(operation).is_some(), "{operation}");
        }
        assert_eq!(required_scope("grant scope"), Some("okta.appGrants.manage"));
    }

    #[test]
    fn role_detail_names_super_admin() {
        let detail = role_detail("grant scope", "0oaAdmin");
        assert!(detail.contains("Super Admin"), "{detail}");
        assert!(detail.contains("0oaAdmin"), "{detail}");
    }

    #[test]
    fn token_debug_is_redacted() {
        let token = ManagementToken {
            token: Secret::new("eyJhbGciOiJSUzI1NiJ9.secret"),
            dpop: false,
            obtained_at: Instant::now(),
            refresh_at: Instant::now(),
            expires_at: Instant::now(),
        };
        let printed = format!("{token:?}");
        assert!(!printed.contains("eyJhbGci"), "{printed}");
    }
}
