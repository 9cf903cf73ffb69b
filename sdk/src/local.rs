//! Local signing with a delivered private key: client assertions signed in
//! this process, and tokens fetched from Okta's token endpoint directly
//! while the registrar is unreachable.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use registrar_api::prost_types::Timestamp;
use registrar_api::v1::{AppKeyState, GetAccessTokenResponse};
use serde::{Deserialize, Serialize};

use crate::Error;

/// How far ahead of its issue time a locally signed assertion expires: the
/// registrar's default, which Okta's guide for service apps suggests.
pub(crate) const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// How far `iat` is set back, so that a token endpoint whose clock runs
/// behind ours still accepts the assertion; the registrar does the same.
const IAT_BACKDATE: Duration = Duration::from_secs(60);

/// The time limit of one request to the token endpoint.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The assertion type of RFC 7523 section 2.2.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The claims of a client assertion (RFC 7523 section 3).
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// Signs a client assertion for the app with the private key delivered in
/// its key state.
pub(crate) fn client_assertion(state: &AppKeyState) -> Result<String, Error> {
    let no_key = || Error::NoDeliveredKey {
        client_id: state.client_id.clone(),
    };
    let key = state.signing_key.as_ref().ok_or_else(no_key)?;
    if key.kid.is_empty() || state.token_endpoint.is_empty() {
        return Err(no_key());
    }
    let sign_error = |detail: String| Error::LocalSigning {
        client_id: state.client_id.clone(),
        detail,
    };
    let (algorithm, encoding_key) = match key.alg.as_str() {
        "RS256" => (
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::EncodingKey::from_rsa_pem(key.pkcs8_pem.as_bytes()),
        ),
        "ES256" => (
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_pem(key.pkcs8_pem.as_bytes()),
        ),
        other => {
            return Err(sign_error(format!(
                "the delivered key has algorithm {other:?}; this SDK signs with RS256 and ES256 only"
            )));
        }
    };
    let encoding_key = encoding_key
        .map_err(|err| sign_error(format!("the delivered key does not parse: {err}")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = Claims {
        iss: &state.client_id,
        sub: &state.client_id,
        aud: &state.token_endpoint,
        iat: now.saturating_sub(IAT_BACKDATE.as_secs()),
        exp: now + ASSERTION_LIFETIME.as_secs(),
        jti: random_jti(),
    };
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &encoding_key)
        .map_err(|err| sign_error(format!("signing failed: {err}")))
}

/// 128 random bits, hex: a `jti` that never repeats.
fn random_jti() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Tokens fetched with a delivered key, cached per scope set.
#[derive(Default)]
pub(crate) struct LocalTokens {
    http: std::sync::OnceLock<reqwest::Client>,
    /// Held across a fetch, so that concurrent callers wait for one token
    /// request instead of sending one each.
    cache: tokio::sync::Mutex<HashMap<Vec<String>, CachedToken>>,
}

impl fmt::Debug for LocalTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalTokens").finish_non_exhaustive()
    }
}

struct CachedToken {
    response: GetAccessTokenResponse,
    refresh_at: Instant,
}

/// The fields of a token endpoint response that the SDK reads.
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    token_type: String,
    #[serde(default)]
    expires_in: u64,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl LocalTokens {
    /// Returns a token for the scopes from the cache, unless `refresh` is
    /// set, or fetches one from the token endpoint with a locally signed
    /// assertion.
    pub(crate) async fn access_token(
        &self,
        state: &AppKeyState,
        scopes: &[&str],
        refresh: bool,
    ) -> Result<GetAccessTokenResponse, Error> {
        let mut key: Vec<String> = scopes.iter().map(ToString::to_string).collect();
        key.sort();
        key.dedup();
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.get(&key)
            && !refresh
            && Instant::now() < cached.refresh_at
        {
            let mut response = cached.response.clone();
            response.cached = true;
            return Ok(response);
        }
        let (response, lifetime) = self.fetch(state, &key).await?;
        // Refreshed after three quarters of its lifetime, like the
        // registrar's own cache.
        cache.insert(
            key,
            CachedToken {
                response: response.clone(),
                refresh_at: Instant::now() + lifetime.mul_f64(0.75),
            },
        );
        Ok(response)
    }

    async fn fetch(
        &self,
        state: &AppKeyState,
        scopes: &[String],
    ) -> Result<(GetAccessTokenResponse, Duration), Error> {
        let token_error = |detail: String| Error::LocalToken {
            client_id: state.client_id.clone(),
            detail,
        };
        let assertion = client_assertion(state)?;

        let http = self.http.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(TOKEN_TIMEOUT)
                .build()
                .unwrap_or_default()
        });
        let scope = scopes.join(" ");
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ];
        let response = http
            .post(&state.token_endpoint)
            .header("Accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|err| {
                token_error(format!(
                    "the token endpoint {} is unreachable: {}",
                    state.token_endpoint,
                    err.without_url()
                ))
            })?;

        let status = response.status();
        let body: TokenResponse = response.json().await.map_err(|err| {
            token_error(format!(
                "the token endpoint returned HTTP {status} with an invalid body: {}",
                err.without_url()
            ))
        })?;
        if !status.is_success() || body.access_token.is_empty() {
            return Err(token_error(format!(
                "the token endpoint returned HTTP {status} ({}): {}",
                body.error, body.error_description
            )));
        }

        let lifetime = Duration::from_secs(body.expires_in.max(1));
        let expires_at = SystemTime::now() + lifetime;
        let seconds = expires_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let granted = if body.scope.is_empty() {
            scopes.to_vec()
        } else {
            body.scope.split(' ').map(ToString::to_string).collect()
        };

        tracing::info!(
            client_id = %state.client_id,
            kid = state.signing_key.as_ref().map(|key| key.kid.as_str()).unwrap_or_default(),
            expires_in = body.expires_in,
            "got a token from the token endpoint with the delivered key"
        );
        Ok((
            GetAccessTokenResponse {
                access_token: body.access_token,
                token_type: body.token_type,
                expires_at: Some(Timestamp {
                    seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
                scopes: granted,
                cached: false,
            },
            lifetime,
        ))
    }
}
