//! An in-memory emulator of the Okta endpoints that registrar uses, for
//! local development and CI.
//!
//! It serves Dynamic Client Registration (`/oauth2/v1/clients`), the Apps
//! API for OIDC apps (`/api/v1/apps`), app keys
//! (`/api/v1/apps/{id}/credentials/jwks`), scope consent grants
//! (`/api/v1/apps/{id}/grants`), the org authorization server's token
//! endpoint (`/oauth2/v1/token`) with client assertions and DPoP, and
//! `GET /api/v1/users` as a resource that accepts the issued access tokens.
//! It serves them over plain HTTP, with Okta's status codes, error bodies,
//! `Link` pagination and per-bucket rate limits. Management requests
//! authenticate with `Authorization: SSWS <api token>`.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use okta_emulator::{Config, Emulator};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let emulator = Emulator::new(Config::new("test-token"));
//! emulator.serve(listener, std::future::pending()).await
//! # }
//! ```

mod access_tokens;
mod admin;
mod admin_roles;
mod app_create;
mod app_json;
mod app_keys;
mod app_replace;
mod apps;
mod client_auth;
mod clients;
mod clock;
mod connection;
mod dpop;
mod errors;
mod faults;
mod grants;
mod ids;
mod jwk;
mod jws;
mod metadata;
mod middleware;
mod oauth_state;
mod org_key;
mod pagination;
mod ratelimit;
mod resource;
mod router;
mod scopes;
mod state;
mod timestamps;
mod token;
mod users;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::net::TcpListener;

pub use admin_roles::RoleError;
pub use faults::{ActiveFault, Fault, FaultEndpoint, FaultKind, FaultTrigger};
pub use jwk::jwk_thumbprint;

use clock::Clock;
use connection::{ConnectionHandle, ResettableListener};
use faults::FaultSet;
use org_key::{KeyError, OrgKey};
use state::Org;

/// Settings of an emulator instance.
#[derive(Clone)]
pub struct Config {
    /// The API token that requests must send as `Authorization: SSWS <token>`.
    pub api_token: String,
    /// Request budgets per rate-limit bucket.
    pub rate_limits: RateLimits,
    /// Lifetime of issued access tokens, sent as `expires_in`. Okta fixes it
    /// at one hour for tokens with Okta scopes. Whole seconds count.
    pub access_token_lifetime: Duration,
    /// How far ahead of the emulator's clock the `iat` of a client
    /// assertion or DPoP proof may be. Okta documents no tolerance.
    /// Whole seconds count.
    pub iat_leeway: Duration,
}

impl Config {
    /// Creates a config that accepts `api_token`, with the default budgets,
    /// a one-hour access-token lifetime and an `iat` leeway of 5 seconds.
    pub fn new(api_token: impl Into<String>) -> Self {
        Self {
            api_token: api_token.into(),
            rate_limits: RateLimits::default(),
            access_token_lifetime: Duration::from_secs(3600),
            iat_leeway: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("api_token", &"<redacted>")
            .field("rate_limits", &self.rate_limits)
            .field("access_token_lifetime", &self.access_token_lifetime)
            .field("iat_leeway", &self.iat_leeway)
            .finish()
    }
}

/// Request budgets per rate-limit bucket, each counted over a fixed window
/// that starts at the bucket's first request. A budget of 0 rejects every
/// request in its bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Length of a window; Okta uses one minute.
    pub window: Duration,
    /// Budget of `/api/v1/apps` and every `/api/v1/apps/{id}/…` subpath.
    pub apps: u32,
    /// Budget of `GET`, `PUT` and `DELETE /api/v1/apps/{id}`.
    pub app_by_id: u32,
    /// Budget of `/oauth2/v1/clients` and its subpaths.
    pub clients: u32,
    /// Budget of `/oauth2/v1/token`.
    pub token: u32,
    /// Budget of every other `/api/v1/…` path.
    pub other: u32,
}

impl Default for RateLimits {
    /// Returns the per-minute defaults Okta documented for Enterprise orgs
    /// until December 2025.
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            apps: 100,
            app_by_id: 600,
            clients: 100,
            token: 1200,
            other: 600,
        }
    }
}

/// A request the emulator received, with its response status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    /// HTTP method, such as `POST`.
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// Query string without the leading `?`, if the request had one.
    pub query: Option<String>,
    /// Response status code, or 0 when an injected fault closed the
    /// connection before the handler ran.
    pub status: u16,
    /// Name of the rate-limit bucket the request counted against: `apps`,
    /// `app_by_id`, `clients`, `token` or `other`, as the `RateLimits`
    /// fields are named. `None` for paths Okta does not rate limit.
    pub bucket: Option<String>,
    /// The kinds of the injected faults that fired on the request, such as
    /// `reset_after_commit`, joined by commas; `None` when none fired, and
    /// then left out of the JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

impl RecordedRequest {
    /// Returns whether the emulator's rate limiter rejected the request
    /// with 429 because its bucket's budget was spent. An injected
    /// `rate_limit_burst` does not count.
    pub fn over_budget(&self) -> bool {
        self.status == 429 && self.fault.is_none()
    }
}

/// The state of one app, for assertions in tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppSnapshot {
    /// App id, which is also the OAuth `client_id`.
    pub id: String,
    /// App label, which DCR calls `client_name`.
    pub label: String,
    /// `ACTIVE` or `INACTIVE`.
    pub status: String,
    /// `browser`, `native`, `service` or `web`.
    pub application_type: String,
    /// The `kid` of every registered key that has one, ACTIVE or
    /// INACTIVE, in the order added.
    pub kids: Vec<String>,
    /// The `kid` of every ACTIVE key, in the order added. A key without a
    /// `kid` is listed by its Okta key id (`pks…`).
    pub active_kids: Vec<String>,
    /// Scopes of the app's ACTIVE grants, in the order granted.
    pub granted_scopes: Vec<String>,
    /// Whether token requests need a DPoP proof
    /// (`settings.oauthClient.dpop_bound_access_tokens`).
    pub dpop_bound: bool,
}

/// A change made through the app key endpoints
/// (`/api/v1/apps/{id}/credentials/jwks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyEvent {
    /// The app the key belongs to.
    pub app_id: String,
    /// The key's `kid`, or its Okta key id (`pks…`) when it has none.
    pub kid: String,
    /// `added`, `activated`, `deactivated` or `deleted`.
    pub event: String,
    /// The `kid` of every ACTIVE key of the app after the change, named as
    /// in `kid`.
    pub active_kids_after: Vec<String>,
}

/// State shared by the handlers of one emulator.
pub(crate) struct Shared {
    config: Config,
    org: Mutex<Org>,
    clock: Clock,
    org_key: OnceLock<OrgKey>,
    faults: FaultSet,
    roles: admin_roles::RoleStore,
    /// The API tokens that `Authorization: SSWS` accepts: the configured
    /// one, unless revoked, and those added since.
    api_tokens: Mutex<Vec<String>>,
}

impl Shared {
    /// Locks the org. Poisoning is ignored so that one panicking handler
    /// does not make every later request fail.
    pub(crate) fn org(&self) -> MutexGuard<'_, Org> {
        self.org.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns the emulator's settings.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Returns the emulator's clock.
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Returns the admin roles of service apps.
    pub(crate) fn roles(&self) -> &admin_roles::RoleStore {
        &self.roles
    }

    /// Returns the installed faults.
    pub(crate) fn faults(&self) -> &FaultSet {
        &self.faults
    }

    /// Returns whether `token` is one of the org's valid API tokens. Every
    /// token is compared in constant time.
    pub(crate) fn is_api_token(&self, token: &str) -> bool {
        let tokens = self
            .api_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tokens.iter().fold(false, |found, valid| {
            middleware::constant_time_eq(token.as_bytes(), valid.as_bytes()) | found
        })
    }

    /// Returns the emulator's current time in UTC, to the millisecond.
    pub(crate) fn now(&self) -> OffsetDateTime {
        self.clock.now_utc()
    }

    /// Returns the org's signing key, generating it on first use.
    pub(crate) fn org_key(&self) -> Result<&OrgKey, KeyError> {
        if let Some(key) = self.org_key.get() {
            return Ok(key);
        }
        let generated = OrgKey::generate()?;
        // Another request may have won the race; either key is fine.
        Ok(self.org_key.get_or_init(|| generated))
    }
}

/// An emulated Okta org. Clones share the same org.
#[derive(Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let org = self.shared.org();
        f.debug_struct("Emulator")
            .field("config", &self.shared.config)
            .field("org_url", &org.org_url)
            .field("apps", &org.apps().len())
            .field("requests", &org.requests.len())
            .finish()
    }
}

impl Emulator {
    /// Creates an emulator with an empty org.
    pub fn new(config: Config) -> Self {
        let org = Org::new(config.rate_limits.window);
        let api_tokens = Mutex::new(vec![config.api_token.clone()]);
        Self {
            shared: Arc::new(Shared {
                config,
                org: Mutex::new(org),
                clock: Clock::default(),
                org_key: OnceLock::new(),
                faults: FaultSet::default(),
                roles: admin_roles::RoleStore::default(),
                api_tokens,
            }),
        }
    }

    /// Serves the Okta endpoints on `listener` until `shutdown` completes,
    /// then waits for requests in flight to finish.
    ///
    /// Before it accepts connections it sets the org URL from the
    /// listener's address, see [`org_url_for`].
    ///
    /// # Errors
    ///
    /// Returns the error of reading the listener's address or of serving.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let org_url = org_url_for(listener.local_addr()?);
        self.shared.org().org_url = Some(org_url.clone());
        tracing::info!(org_url = %org_url, "okta emulator serving");

        let router = router::build(Arc::clone(&self.shared));
        let service = router.into_make_service_with_connect_info::<ConnectionHandle>();
        axum::serve(ResettableListener(listener), service)
            .with_graceful_shutdown(shutdown)
            .await?;
        tracing::info!(org_url = %org_url, "okta emulator stopped");
        Ok(())
    }

    /// Returns the org URL, `http://127.0.0.1:PORT`, once [`Emulator::serve`]
    /// has started, and `None` before.
    pub fn org_url(&self) -> Option<String> {
        self.shared.org().org_url.clone()
    }

    /// Returns every request received so far on the Okta paths, in the
    /// order their responses completed. Requests to `/__emulator/` are not
    /// recorded.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.org().requests.clone()
    }

    /// Returns the number of requests the rate limiter rejected with 429
    /// because their bucket's budget was spent, see
    /// [`RecordedRequest::over_budget`].
    pub fn over_budget_requests(&self) -> usize {
        let org = self.shared.org();
        org.requests
            .iter()
            .filter(|request| request.over_budget())
            .count()
    }

    /// Installs a fault and returns its id.
    ///
    /// # Errors
    ///
    /// Returns a sentence naming the invalid value when the fault's status,
    /// latency, probability or count is out of range.
    pub fn add_fault(&self, fault: Fault) -> Result<u64, String> {
        fault.validate()?;
        tracing::info!(endpoint = %fault.endpoint, kind = fault.kind.name(), trigger = ?fault.trigger, "fault installed");
        Ok(self.shared.faults.add(fault))
    }

    /// Removes every installed fault.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
        tracing::info!("faults cleared");
    }

    /// Returns the installed faults with how often each has fired.
    pub fn faults(&self) -> Vec<ActiveFault> {
        self.shared.faults.snapshot()
    }

    /// Returns the current apps in creation order.
    pub fn apps(&self) -> Vec<AppSnapshot> {
        self.shared
            .org()
            .apps()
            .iter()
            .map(state::App::snapshot)
            .collect()
    }

    /// Returns every change made through the app key endpoints, oldest
    /// first. Keys sent when an app is created are not listed.
    pub fn key_events(&self) -> Vec<KeyEvent> {
        self.shared.org().key_events.clone()
    }

    /// Returns the number of successful token responses so far.
    pub fn issued_tokens(&self) -> usize {
        self.shared.org().oauth.issued_count()
    }

    /// Returns every access token issued so far that has not expired, for
    /// tests that check where tokens end up, such as that none is logged.
    pub fn access_tokens(&self) -> Vec<String> {
        let now = self.shared.clock().now_unix();
        self.shared.org().oauth.unexpired_tokens(now)
    }

    /// Sets whether an app's token requests need a DPoP proof, as
    /// `settings.oauthClient.dpop_bound_access_tokens` does. Returns false
    /// when no app has the id.
    pub fn set_dpop_bound(&self, app_id: &str, bound: bool) -> bool {
        let now = self.shared.now();
        let mut org = self.shared.org();
        let Some(app) = org.app_mut(app_id) else {
            return false;
        };
        if app.client.dpop_bound_access_tokens != bound {
            app.client.dpop_bound_access_tokens = bound;
            app.last_updated = now;
        }
        true
    }

    /// Shifts the emulator's clock by `offset_seconds` from the system
    /// clock: positive puts it ahead, negative behind, 0 removes the
    /// shift. The shift applies to every time check (client assertions,
    /// DPoP proofs, token expiry), to `created` and `lastUpdated` values,
    /// and to the `Date` and `X-Rate-Limit-Reset` headers.
    pub fn set_clock_offset(&self, offset_seconds: i64) {
        self.shared.clock.set_offset_seconds(offset_seconds);
        tracing::info!(offset_seconds, "emulator clock offset set");
    }

    /// Adds an API token that the org accepts beside the others, as creating
    /// a token under Security → API → Tokens does in Okta's Admin Console.
    pub fn add_api_token(&self, token: impl Into<String>) {
        let token = token.into();
        let mut tokens = self
            .shared
            .api_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !tokens.contains(&token) {
            tokens.push(token);
        }
        tracing::info!(tokens = tokens.len(), "API token added");
    }

    /// Revokes an API token, the configured one included. Later requests
    /// with it get 401 E0000011, Okta's response to a revoked token. Returns
    /// whether the token was valid.
    pub fn revoke_api_token(&self, token: &str) -> bool {
        let mut tokens = self
            .shared
            .api_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let before = tokens.len();
        tokens.retain(|valid| valid != token);
        let revoked = tokens.len() < before;
        tracing::info!(revoked, tokens = tokens.len(), "API token revoked");
        revoked
    }

    /// Assigns a standard admin role, such as `SUPER_ADMIN` or
    /// `APP_ADMIN`, to a service app, as
    /// `POST /oauth2/v1/clients/{clientId}/roles` does.
    pub fn assign_admin_role(&self, client_id: &str, role_type: &str) -> Result<(), RoleError> {
        admin_roles::assign(&self.shared, client_id, role_type).map(drop)
    }

    /// Returns the clock offset in seconds set by
    /// [`Emulator::set_clock_offset`].
    pub fn clock_offset(&self) -> i64 {
        self.shared.clock.offset_seconds()
    }
}

/// Builds the org URL for a listening address: `http://IP:PORT` without a
/// trailing slash. An unspecified address (`0.0.0.0` or `::`) becomes the
/// loopback address of its family, because clients cannot connect to it.
pub fn org_url_for(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_redacts_token() {
        let config = Config::new("very-secret-token");
        let printed = format!("{config:?}");
        assert!(!printed.contains("very-secret-token"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(printed.contains("rate_limits"), "{printed}");
    }

    #[test]
    fn emulator_debug_redacts_token() {
        let emulator = Emulator::new(Config::new("very-secret-token"));
        let printed = format!("{emulator:?}");
        assert!(!printed.contains("very-secret-token"), "{printed}");
    }

    #[test]
    fn default_budgets_are_enterprise() {
        let limits = RateLimits::default();
        assert_eq!(limits.window, Duration::from_secs(60));
        assert_eq!(limits.apps, 100);
        assert_eq!(limits.app_by_id, 600);
        assert_eq!(limits.clients, 100);
        assert_eq!(limits.token, 1200);
        assert_eq!(limits.other, 600);
    }

    #[test]
    fn org_url_uses_listen_address() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().expect("valid address");
        assert_eq!(org_url_for(loopback), "http://127.0.0.1:8080");

        let any: SocketAddr = "0.0.0.0:9000".parse().expect("valid address");
        assert_eq!(org_url_for(any), "http://127.0.0.1:9000");

        let any_v6: SocketAddr = "[::]:9000".parse().expect("valid address");
        assert_eq!(org_url_for(any_v6), "http://[::1]:9000");
    }
}
