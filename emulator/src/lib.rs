//! An in-memory emulator of the Okta endpoints that registrar uses, for
//! local development and CI.
//!
//! It serves Dynamic Client Registration (`/oauth2/v1/clients`), the Apps
//! API for OIDC apps (`/api/v1/apps`) and scope consent grants
//! (`/api/v1/apps/{id}/grants`) over plain HTTP, with Okta's status codes,
//! error bodies, `Link` pagination and per-bucket rate limits. Requests
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

mod admin;
mod app_create;
mod app_json;
mod apps;
mod clients;
mod errors;
mod grants;
mod ids;
mod jwk;
mod metadata;
mod middleware;
mod pagination;
mod ratelimit;
mod router;
mod scopes;
mod state;
mod timestamps;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;

pub use jwk::jwk_thumbprint;

use state::Org;

/// Settings of an emulator instance.
#[derive(Clone)]
pub struct Config {
    /// The API token that requests must send as `Authorization: SSWS <token>`.
    pub api_token: String,
    /// Request budgets per rate-limit bucket.
    pub rate_limits: RateLimits,
}

impl Config {
    /// Creates a config that accepts `api_token`, with the default budgets.
    pub fn new(api_token: impl Into<String>) -> Self {
        Self {
            api_token: api_token.into(),
            rate_limits: RateLimits::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("api_token", &"<redacted>")
            .field("rate_limits", &self.rate_limits)
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
    /// Response status code.
    pub status: u16,
    /// Name of the rate-limit bucket the request counted against: `apps`,
    /// `app_by_id`, `clients`, `token` or `other`, as the `RateLimits`
    /// fields are named. `None` for paths Okta does not rate limit.
    pub bucket: Option<String>,
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
    /// The `kid` of every registered key that has one, in the order added.
    pub kids: Vec<String>,
    /// Scopes of the app's ACTIVE grants, in the order granted.
    pub granted_scopes: Vec<String>,
}

/// State shared by the handlers of one emulator.
pub(crate) struct Shared {
    config: Config,
    org: Mutex<Org>,
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
        Self {
            shared: Arc::new(Shared {
                config,
                org: Mutex::new(org),
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
        axum::serve(listener, router)
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

    /// Returns the current apps in creation order.
    pub fn apps(&self) -> Vec<AppSnapshot> {
        self.shared
            .org()
            .apps()
            .iter()
            .map(state::App::snapshot)
            .collect()
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
