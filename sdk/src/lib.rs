//! Client SDK for the registrar gRPC service.
//!
//! [`Client`] wraps the generated `registrar.v1` client with typed methods,
//! so that a service can register itself and get its scopes granted in a few
//! lines:
//!
//! A service that lets the registrar hold its key registers itself with one
//! call at start-up, and then asks for tokens:
//!
//! ```no_run
//! # async fn example() -> Result<(), registrar_sdk::Error> {
//! let identity = registrar_sdk::Client::connect("http://127.0.0.1:50051")
//!     .await?
//!     .register("billing-worker", &["okta.users.read"])
//!     .await?;
//! let token = identity.access_token(&["okta.users.read"]).await?;
//! println!("{} token for {}", token.token_type, identity.client_id());
//! # Ok(())
//! # }
//! ```
//!
//! Registration returns once the app's key state has arrived over the
//! registrar's `WatchRotations` stream, and the identity then follows key
//! rotations in the background:
//!
//! ```no_run
//! # async fn example(identity: registrar_sdk::ServiceIdentity) {
//! let mut changes = identity.changes();
//! while changes.changed().await.is_ok() {
//!     let state = changes.borrow_and_update().clone();
//!     println!("revision {}: phase {:?}", state.revision, state.phase());
//! }
//! # }
//! ```
//!
//! A service that holds its own key registers its public key instead:
//!
//! ```no_run
//! # async fn example() -> Result<(), registrar_sdk::Error> {
//! use registrar_sdk::{Client, v1::Jwks};
//!
//! let mut registrar = Client::connect("http://127.0.0.1:50051").await?;
//! let jwks = Jwks { keys: vec![/* the service's public key */] };
//! let app = registrar.create_service_app("billing-worker", jwks).await?;
//! registrar.grant_scopes(&app.client_id, &["okta.users.read"]).await?;
//! # Ok(())
//! # }
//! ```

mod credentials;
mod identity;
mod local;
mod watch;

pub use credentials::{Credentials, RawClient};
pub use identity::ServiceIdentity;
pub use registrar_api::v1;
pub use watch::{DEFAULT_WATCH_TIMEOUT, MAX_WATCHED_APPS, WatchStats};

use std::sync::Arc;
use std::time::Duration;

use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_api::v1::{
    CreateServiceAppRequest, DeleteServiceAppRequest, GenerateKey, GetAccessTokenRequest,
    GetAccessTokenResponse, GetServiceAppRequest, Grant, GrantScopesRequest, Jwks, KeyAlgorithm,
    ListGrantsRequest, ListServiceAppsRequest, RegisterServiceRequest, RevokeScopesRequest,
    ScopeOutcome, ScopeResult, ServiceApp, SignDpopProofRequest,
    create_service_app_request::KeySource,
};
use tonic::transport::{Channel, Endpoint};

use crate::watch::WatchHub;

/// An error of an SDK call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint is not a valid URI.
    #[error("invalid registrar endpoint {endpoint:?}: {source}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is invalid.
        #[source]
        source: tonic::transport::Error,
    },
    /// The connection to the registrar failed.
    #[error("cannot connect to the registrar at {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The registrar answered with an error status. Its code says whether a
    /// retry can help (see the status rules in the proto).
    #[error("registrar error {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The registrar's response lacks a field it always sends.
    #[error("the registrar's response has no {0}")]
    MissingField(&'static str),
    /// The app's first key state did not arrive over `WatchRotations`
    /// within the client's watch timeout.
    #[error(
        "no key state for client_id {client_id} arrived within {timeout:?}; check that the registrar is reachable, or raise the timeout with Client::with_watch_timeout"
    )]
    WatchTimeout {
        /// The app's client id.
        client_id: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The registrar ended the app's key state watch with a status that a
    /// retry cannot fix, such as NOT_FOUND for an app it does not manage.
    #[error(
        "watching the key state of client_id {client_id} failed: registrar error {}: {}",
        .status.code(),
        .status.message()
    )]
    Watch {
        /// The app's client id.
        client_id: String,
        /// The status that ended the watch.
        #[source]
        status: tonic::Status,
    },
    /// No private key was delivered for the app, so it cannot sign
    /// locally.
    #[error(
        "no private key was delivered for client_id {client_id}; connect with Client::with_key_delivery to a registrar that delivers keys (--deliver-private-keys), for an app whose key the registrar holds"
    )]
    NoDeliveredKey {
        /// The app's client id.
        client_id: String,
    },
    /// Signing with the delivered key failed.
    #[error("cannot sign a client assertion for client_id {client_id}: {detail}")]
    LocalSigning {
        /// The app's client id.
        client_id: String,
        /// What failed.
        detail: String,
    },
    /// The registrar was unreachable, and getting a token from the token
    /// endpoint with the delivered key failed too.
    #[error("cannot get a token for client_id {client_id} without the registrar: {detail}")]
    LocalToken {
        /// The app's client id.
        client_id: String,
        /// The failure, with the token endpoint's response.
        detail: String,
    },
    /// The bearer token is empty or contains characters other than
    /// printable ASCII.
    #[error(
        "invalid bearer token: it must be printable ASCII without spaces; pass the token exactly as it was issued"
    )]
    InvalidBearerToken,
    /// The client already watches [`MAX_WATCHED_APPS`] apps, the registrar's
    /// limit per `WatchRotations` stream.
    #[error(
        "cannot watch client_id {client_id}: this client already watches {limit} apps, the registrar's limit per stream; register further services through another Client"
    )]
    TooManyWatchedApps {
        /// The app's client id.
        client_id: String,
        /// The limit.
        limit: usize,
    },
}

/// A connected registrar client. Cloning it is cheap and shares the
/// connection and the key state watch.
///
/// The identities that [`Client::register`] returns through one client and
/// its clones share one `WatchRotations` stream, which covers all their
/// apps. Clients from separate [`Client::connect`] or
/// [`Client::from_channel`] calls have separate streams, so a process that
/// wants a single stream connects once and clones the client.
#[derive(Debug, Clone)]
pub struct Client {
    inner: RawClient,
    credentials: Credentials,
    watch: Arc<WatchHub>,
    watch_timeout: Duration,
}

impl Client {
    /// Connects to a registrar, such as `http://127.0.0.1:50051`.
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self, Error> {
        let endpoint = endpoint.into();
        let parsed =
            Endpoint::from_shared(endpoint.clone()).map_err(|source| Error::InvalidEndpoint {
                endpoint: endpoint.clone(),
                source,
            })?;
        let channel = parsed
            .connect()
            .await
            .map_err(|source| Error::Connect { endpoint, source })?;
        Ok(Self::from_channel(channel))
    }

    /// Wraps an existing channel, for callers that configure TLS (for
    /// example a client certificate for mTLS) or timeouts themselves.
    pub fn from_channel(channel: Channel) -> Self {
        let credentials = Credentials::default();
        let inner = RegistrarClient::with_interceptor(channel, credentials.clone());
        Self {
            watch: WatchHub::new(inner.clone()),
            inner,
            credentials,
            watch_timeout: DEFAULT_WATCH_TIMEOUT,
        }
    }

    /// Sends `token` as `authorization: Bearer <token>` with every call of
    /// this client and its clones, including the background watch, for a
    /// registrar that authenticates callers by bearer tokens.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), registrar_sdk::Error> {
    /// let token = std::fs::read_to_string("/run/secrets/registrar-token")
    ///     .expect("token file");
    /// let identity = registrar_sdk::Client::connect("http://127.0.0.1:50051")
    ///     .await?
    ///     .with_bearer_token(token.trim())?
    ///     .register("billing-worker", &["okta.users.read"])
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_bearer_token(self, token: &str) -> Result<Self, Error> {
        self.credentials.set_bearer_token(token)?;
        Ok(self)
    }

    /// Sets how long [`Client::register`] waits for the app's first key
    /// state; [`DEFAULT_WATCH_TIMEOUT`] when not set.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), registrar_sdk::Error> {
    /// use std::time::Duration;
    ///
    /// let identity = registrar_sdk::Client::connect("http://127.0.0.1:50051")
    ///     .await?
    ///     .with_watch_timeout(Duration::from_secs(5))
    ///     .register("billing-worker", &["okta.users.read"])
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_watch_timeout(mut self, timeout: Duration) -> Self {
        self.watch_timeout = timeout;
        self
    }

    /// Asks the registrar to deliver each registered app's private signing
    /// key over the `WatchRotations` stream, so that
    /// [`ServiceIdentity::access_token`] keeps getting tokens from Okta
    /// while the registrar is unreachable, and
    /// [`ServiceIdentity::client_assertion`] signs in this process.
    ///
    /// It applies to the stream that this client shares with its clones.
    /// The registrar must be started with `--deliver-private-keys`;
    /// otherwise [`Client::register`] fails with [`Error::Watch`] and
    /// PERMISSION_DENIED. The key stays in this process's memory only.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), registrar_sdk::Error> {
    /// let identity = registrar_sdk::Client::connect("http://127.0.0.1:50051")
    ///     .await?
    ///     .with_key_delivery()
    ///     .register("billing-worker", &["okta.users.read"])
    ///     .await?;
    /// // Served by the registrar, or by Okta directly while the registrar
    /// // is down.
    /// let token = identity.access_token(&["okta.users.read"]).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_key_delivery(self) -> Self {
        self.watch.request_private_keys();
        self
    }

    /// Returns counters of this client's `WatchRotations` stream, for
    /// diagnostics and tests.
    pub fn watch_stats(&self) -> WatchStats {
        self.watch.stats()
    }

    /// Returns the generated client, for RPCs this wrapper does not cover.
    pub fn raw(&mut self) -> &mut RawClient {
        &mut self.inner
    }

    /// Registers this service: makes sure one service app exists for the
    /// name, with a registrar-held RSA-2048 key and the scopes granted, and
    /// returns its identity. Every instance of a service can call it at
    /// start-up; only the first creates the app.
    ///
    /// It returns once the app's key state has arrived over the client's
    /// `WatchRotations` stream, so [`ServiceIdentity::key_state`] is set.
    /// It fails with [`Error::WatchTimeout`] when that takes longer than the
    /// watch timeout, and with [`Error::Watch`] when the registrar rejects
    /// the watch.
    pub async fn register(
        self,
        service_name: &str,
        scope_ids: &[&str],
    ) -> Result<ServiceIdentity, Error> {
        self.register_with(service_name, scope_ids, KeyAlgorithm::Rs2562048, false)
            .await
    }

    /// Registers this service like [`Client::register`], with a chosen key
    /// algorithm and DPoP binding for a newly created app.
    pub async fn register_with(
        mut self,
        service_name: &str,
        scope_ids: &[&str],
        algorithm: KeyAlgorithm,
        dpop_bound: bool,
    ) -> Result<ServiceIdentity, Error> {
        let request = RegisterServiceRequest {
            service_name: service_name.to_string(),
            scope_ids: scope_ids.iter().map(ToString::to_string).collect(),
            key: Some(GenerateKey {
                algorithm: algorithm as i32,
            }),
            dpop_bound,
        };
        let response = self.inner.register_service(request).await?.into_inner();
        let app = response.app.ok_or(Error::MissingField("app"))?;
        let watch = self.watch.watch(&app.client_id, self.watch_timeout).await?;
        Ok(ServiceIdentity {
            client: self,
            app,
            created: response.created,
            grants: response.grants,
            watch,
            local: Arc::default(),
        })
    }

    /// Creates a service app with the caller's public keys.
    pub async fn create_service_app(
        &mut self,
        client_name: &str,
        jwks: Jwks,
    ) -> Result<ServiceApp, Error> {
        let request = CreateServiceAppRequest {
            client_name: client_name.to_string(),
            key_source: Some(KeySource::Jwks(jwks)),
            dpop_bound: false,
        };
        let response = self.inner.create_service_app(request).await?.into_inner();
        response.app.ok_or(Error::MissingField("app"))
    }

    /// Creates a service app whose key pair the registrar generates and
    /// keeps; the registrar then signs its assertions and gets its tokens.
    pub async fn create_service_app_with_generated_key(
        &mut self,
        client_name: &str,
        algorithm: KeyAlgorithm,
        dpop_bound: bool,
    ) -> Result<ServiceApp, Error> {
        let request = CreateServiceAppRequest {
            client_name: client_name.to_string(),
            key_source: Some(KeySource::GenerateKey(GenerateKey {
                algorithm: algorithm as i32,
            })),
            dpop_bound,
        };
        let response = self.inner.create_service_app(request).await?.into_inner();
        response.app.ok_or(Error::MissingField("app"))
    }

    /// Returns an access token for the app with these scopes, from the
    /// registrar's cache when it holds a fresh one.
    pub async fn access_token(
        &mut self,
        client_id: &str,
        scopes: &[&str],
    ) -> Result<GetAccessTokenResponse, Error> {
        self.token(client_id, scopes, false).await
    }

    /// Returns a new access token, replacing the cached one. Call it after a
    /// resource server answered 401 to a token from [`Client::access_token`].
    pub async fn refresh_access_token(
        &mut self,
        client_id: &str,
        scopes: &[&str],
    ) -> Result<GetAccessTokenResponse, Error> {
        self.token(client_id, scopes, true).await
    }

    async fn token(
        &mut self,
        client_id: &str,
        scopes: &[&str],
        force_refresh: bool,
    ) -> Result<GetAccessTokenResponse, Error> {
        let request = GetAccessTokenRequest {
            client_id: client_id.to_string(),
            scopes: scopes.iter().map(ToString::to_string).collect(),
            force_refresh,
        };
        Ok(self.inner.get_access_token(request).await?.into_inner())
    }

    /// Returns the DPoP proof for one resource request with a DPoP-bound
    /// token: send it in the request's `DPoP` header, with
    /// `Authorization: DPoP <token>`.
    pub async fn dpop_proof(
        &mut self,
        client_id: &str,
        method: &str,
        url: &str,
        access_token: &str,
    ) -> Result<String, Error> {
        let request = SignDpopProofRequest {
            client_id: client_id.to_string(),
            http_method: method.to_string(),
            http_url: url.to_string(),
            access_token: access_token.to_string(),
            nonce: String::new(),
        };
        Ok(self
            .inner
            .sign_dpop_proof(request)
            .await?
            .into_inner()
            .proof)
    }

    /// Fetches a service app.
    pub async fn get_service_app(&mut self, client_id: &str) -> Result<ServiceApp, Error> {
        let request = GetServiceAppRequest {
            client_id: client_id.to_string(),
        };
        let response = self.inner.get_service_app(request).await?.into_inner();
        response.app.ok_or(Error::MissingField("app"))
    }

    /// Lists every service app whose name starts with `name_prefix`,
    /// following all pages.
    pub async fn list_service_apps(&mut self, name_prefix: &str) -> Result<Vec<ServiceApp>, Error> {
        let mut apps = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = ListServiceAppsRequest {
                page_size: 200,
                page_token,
                name_prefix: name_prefix.to_string(),
            };
            let page = self.inner.list_service_apps(request).await?.into_inner();
            apps.extend(page.apps);
            if page.next_page_token.is_empty() {
                return Ok(apps);
            }
            page_token = page.next_page_token;
        }
    }

    /// Deactivates and deletes a service app.
    pub async fn delete_service_app(&mut self, client_id: &str) -> Result<(), Error> {
        let request = DeleteServiceAppRequest {
            client_id: client_id.to_string(),
        };
        self.inner.delete_service_app(request).await?;
        Ok(())
    }

    /// Grants scopes for the org authorization server and returns one
    /// result per scope. A scope that Okta rejected comes back with outcome
    /// [`ScopeOutcome::Failed`]; see [`failed_scopes`].
    pub async fn grant_scopes(
        &mut self,
        client_id: &str,
        scope_ids: &[&str],
    ) -> Result<Vec<ScopeResult>, Error> {
        let request = GrantScopesRequest {
            client_id: client_id.to_string(),
            scope_ids: scope_ids.iter().map(ToString::to_string).collect(),
            issuer: String::new(),
        };
        Ok(self.inner.grant_scopes(request).await?.into_inner().results)
    }

    /// Lists a service app's active grants.
    pub async fn list_grants(&mut self, client_id: &str) -> Result<Vec<Grant>, Error> {
        let request = ListGrantsRequest {
            client_id: client_id.to_string(),
        };
        Ok(self.inner.list_grants(request).await?.into_inner().grants)
    }

    /// Revokes scopes and returns one result per scope.
    pub async fn revoke_scopes(
        &mut self,
        client_id: &str,
        scope_ids: &[&str],
    ) -> Result<Vec<ScopeResult>, Error> {
        let request = RevokeScopesRequest {
            client_id: client_id.to_string(),
            scope_ids: scope_ids.iter().map(ToString::to_string).collect(),
        };
        Ok(self
            .inner
            .revoke_scopes(request)
            .await?
            .into_inner()
            .results)
    }
}

/// Returns the results whose outcome is [`ScopeOutcome::Failed`].
///
/// ```
/// use registrar_sdk::failed_scopes;
/// use registrar_sdk::v1::{ScopeOutcome, ScopeResult};
///
/// let results = vec![ScopeResult {
///     scope_id: "okta.users.read".into(),
///     outcome: ScopeOutcome::Granted as i32,
///     ..Default::default()
/// }];
/// assert!(failed_scopes(&results).is_empty());
/// ```
pub fn failed_scopes(results: &[ScopeResult]) -> Vec<&ScopeResult> {
    results
        .iter()
        .filter(|result| result.outcome == ScopeOutcome::Failed as i32)
        .collect()
}
