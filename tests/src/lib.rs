//! Helpers shared by the end-to-end tests: an Okta emulator and a registrar
//! server, both on `127.0.0.1:0` in this process, and a gRPC client.
//! [`cluster::Cluster`] runs several registrars on one PostgreSQL database,
//! and [`proxy::Proxy`] cuts their database connections on request.

pub mod cluster;
pub mod oauth;
pub mod proxy;

use std::net::SocketAddr;
use std::time::Duration;

use okta_emulator::{AppSnapshot, Emulator, RecordedRequest};
use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_api::v1::{
    CreateServiceAppRequest, Jwk, Jwks, create_service_app_request::KeySource,
};
use registrar_server::ServerConfig;
use registrar_server::auth::AuthConfig;
use registrar_server::config::{DEFAULT_ASSERTION_LIFETIME, DEFAULT_SHUTDOWN_GRACE};
use registrar_server::keys::master::MasterKey;
use registrar_server::okta::OktaCredential;
use registrar_server::org::OrgUrl;
use registrar_server::rotation::RotationSettings;
use registrar_server::secret::Secret;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The API token the test emulator accepts.
pub const API_TOKEN: &str = "e2e-test-api-token-0123456789";

/// The registration request of Okta's service-app guide.
pub const SAMPLE_REQUEST: &str = include_str!("../../fixtures/okta-dcr-service-app-request.json");

/// A running emulator and registrar.
#[derive(Debug)]
pub struct TestEnv {
    /// The emulator, for inspecting what reached "Okta".
    pub emulator: Emulator,
    /// The emulator's org URL.
    pub org_url: String,
    /// The registrar's gRPC address.
    pub address: SocketAddr,
    /// A client connected to the registrar.
    pub client: RegistrarClient<Channel>,
    /// The address of `GET /metrics`, when [`Options::metrics`] is set.
    pub metrics_address: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    registrar_stop: watch::Sender<bool>,
    server: JoinHandle<anyhow::Result<()>>,
    config: ServerConfig,
    _data_dir: tempfile::TempDir,
}

/// What differs between test environments.
#[derive(Debug, Clone)]
pub struct Options {
    /// The emulator's settings.
    pub emulator: okta_emulator::Config,
    /// The token the registrar sends, which may differ from the emulator's
    /// to test a rejected credential.
    pub registrar_token: String,
    /// When set, the registrar authenticates to Okta as this OAuth service
    /// app, which the harness registers in the emulator, instead of with
    /// the API token.
    pub registrar_app: Option<oauth::RegistrarApp>,
    /// When set, the registrar talks to this org URL instead of the emulator.
    pub org_url_override: Option<String>,
    /// The lifetime of client assertions.
    pub assertion_lifetime: Duration,
    /// The timing of key rotations: short, so that tests see whole
    /// rotations. The grace period is shorter than the assertion lifetime,
    /// which is safe here only because every test sends its assertions
    /// within milliseconds of signing them.
    pub rotation: RotationSettings,
    /// The store's directory; a new temporary one when `None`. A restart
    /// test passes the directory of the registrar it replaces. Unused when
    /// [`Options::database_url`] is set.
    pub data_dir: Option<std::path::PathBuf>,
    /// The store's database URL, such as the URL of a PostgreSQL
    /// `registrar_server::store::testing::TestDatabase`. When `None`, the
    /// store is a SQLite file `registrar.db` in the store's directory.
    pub database_url: Option<String>,
    /// The master key; a new random one when `None`.
    pub master_key: Option<MasterKey>,
    /// Whether WatchRotations delivers private keys to callers that ask.
    pub deliver_private_keys: bool,
    /// Caller authentication: none, on loopback, unless a test sets it.
    /// With TLS on, [`TestEnv::client`] cannot connect, so such a test
    /// builds its own clients on [`TestEnv::address`].
    pub auth: AuthConfig,
    /// The registrar's share of Okta's rate limits, and its retries.
    pub okta_pacing: registrar_server::okta::PacingSettings,
    /// The caller policy; every caller may do everything unless a test
    /// sets one.
    pub policies: registrar_server::policy::Policies,
    /// Whether to serve `GET /metrics` on a loopback port of its own. The
    /// process has one metrics registry, so tests in one binary share it.
    pub metrics: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            emulator: okta_emulator::Config::new(API_TOKEN),
            registrar_token: API_TOKEN.to_string(),
            registrar_app: None,
            org_url_override: None,
            assertion_lifetime: DEFAULT_ASSERTION_LIFETIME,
            rotation: RotationSettings {
                propagation_delay: Duration::from_millis(300),
                grace_period: Duration::from_millis(2500),
                key_lifetime: None,
            },
            data_dir: None,
            database_url: None,
            master_key: None,
            deliver_private_keys: false,
            auth: AuthConfig::insecure_loopback(),
            // The registrar is the emulator's only client, so it may use
            // whole buckets; half of the default budgets would make the
            // fleet tests wait for a new one-minute window.
            okta_pacing: registrar_server::okta::PacingSettings {
                rate_share: 1.0,
                ..registrar_server::okta::PacingSettings::default()
            },
            policies: registrar_server::policy::Policies::allow_all(),
            metrics: false,
        }
    }
}

impl TestEnv {
    /// Starts an emulator and a registrar with default settings.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Starts an emulator and a registrar with the given settings.
    pub async fn start_with(options: Options) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let (emulator, org_url) = start_emulator(options.emulator.clone(), stop_rx.clone()).await;
        let data_dir = tempfile::tempdir().expect("temporary directory");
        let metrics = options.metrics;
        let config = registrar_config(options, &emulator, &org_url, data_dir.path()).await;
        let metrics_address = if metrics {
            let listener = bind().await;
            let address = listener.local_addr().expect("bound address");
            let stopped = stopped(stop_rx.clone());
            tokio::spawn(registrar_server::metrics::serve(listener, stopped));
            Some(address)
        } else {
            None
        };
        let (registrar_stop, server, address, client) = start_registrar(config.clone()).await;
        drop(stop_rx);
        Self {
            emulator,
            org_url,
            address,
            client,
            metrics_address,
            stop,
            registrar_stop,
            server,
            config,
            _data_dir: data_dir,
        }
    }

    /// Kills the registrar without a graceful shutdown, as a crash would,
    /// and starts a new one on the same store, master key and emulator.
    pub async fn crash_and_restart(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
        self.replace_registrar().await;
    }

    /// Stops the registrar gracefully and starts a new one on the same
    /// store, master key and emulator.
    pub async fn restart(&mut self) {
        let _ = self.registrar_stop.send(true);
        (&mut self.server)
            .await
            .expect("registrar task joins")
            .expect("registrar stops cleanly");
        self.replace_registrar().await;
    }

    /// Stops the registrar gracefully and leaves it stopped, with the
    /// emulator still running: an outage of the registrar alone.
    pub async fn stop_registrar(&mut self) {
        let _ = self.registrar_stop.send(true);
        let stopped = std::mem::replace(&mut self.server, tokio::spawn(async { Ok(()) }));
        stopped
            .await
            .expect("registrar task joins")
            .expect("registrar stops cleanly");
    }

    async fn replace_registrar(&mut self) {
        let (registrar_stop, server, address, client) = start_registrar(self.config.clone()).await;
        self.registrar_stop = registrar_stop;
        self.server = server;
        self.address = address;
        self.client = client;
    }

    /// Returns a fresh client on a new connection.
    pub async fn new_client(&self) -> RegistrarClient<Channel> {
        RegistrarClient::connect(format!("http://{}", self.address))
            .await
            .expect("registrar accepts connections")
    }

    /// Returns every request the emulator received.
    pub fn okta_requests(&self) -> Vec<RecordedRequest> {
        self.emulator.requests()
    }

    /// Counts the requests with this method whose path ends with `suffix`.
    pub fn count_requests(&self, method: &str, suffix: &str) -> usize {
        count_requests(&self.emulator, method, suffix)
    }

    /// Returns the emulator's app with this id.
    pub fn okta_app(&self, client_id: &str) -> Option<AppSnapshot> {
        okta_app(&self.emulator, client_id)
    }

    /// Stops the registrar and the emulator and waits for the registrar to
    /// finish.
    pub async fn stop(self) {
        let _ = self.registrar_stop.send(true);
        let _ = self.stop.send(true);
        self.server
            .await
            .expect("registrar task joins")
            .expect("registrar stops cleanly");
    }
}

/// Starts an emulator with `config` on a loopback port and returns it with
/// its org URL. It serves until `stop` turns true.
async fn start_emulator(
    config: okta_emulator::Config,
    stop: watch::Receiver<bool>,
) -> (Emulator, String) {
    let emulator = Emulator::new(config);
    let listener = bind().await;
    let org_url = format!("http://{}", listener.local_addr().expect("bound address"));
    tokio::spawn({
        let emulator = emulator.clone();
        async move { emulator.serve(listener, stopped(stop)).await }
    });
    (emulator, org_url)
}

/// Builds the registrar configuration of `options` for the emulator at
/// `org_url`. The SQLite store, when `options` names no database, lies in
/// `options.data_dir` or else in `data_dir`.
async fn registrar_config(
    options: Options,
    emulator: &Emulator,
    org_url: &str,
    data_dir: &std::path::Path,
) -> ServerConfig {
    let registrar_org = options
        .org_url_override
        .unwrap_or_else(|| org_url.to_string());
    let database_url = options.database_url.unwrap_or_else(|| {
        let store_dir = options.data_dir.as_deref().unwrap_or(data_dir);
        format!("sqlite://{}/registrar.db", store_dir.display())
    });
    let okta_credential = match &options.registrar_app {
        Some(app) => oauth::register_registrar_app(emulator, org_url, app).await,
        None => OktaCredential::ApiToken(Secret::new(options.registrar_token)),
    };
    ServerConfig {
        okta_org: OrgUrl::parse(&registrar_org).expect("valid org URL"),
        okta_credential,
        okta_credential_source: None,
        database_url: database_url.into(),
        // The server's default: under load on two cores, a shorter limit
        // can cut off a create that the emulator has committed.
        okta_timeout: Duration::from_secs(30),
        okta_pacing: options.okta_pacing,
        master_key: options.master_key.unwrap_or_else(MasterKey::random),
        assertion_lifetime: options.assertion_lifetime,
        shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        rotation: options.rotation,
        deliver_private_keys: options.deliver_private_keys,
        auth: options.auth,
        policies: options.policies,
        // The harness serves the metrics itself, so that it has the bound
        // port and the endpoint outlives restarts.
        metrics_listen: None,
    }
}

/// Counts the requests to `emulator` with this method whose path ends with
/// `suffix`.
fn count_requests(emulator: &Emulator, method: &str, suffix: &str) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|request| request.method == method && request.path.ends_with(suffix))
        .count()
}

/// Returns the app of `emulator` with this id.
fn okta_app(emulator: &Emulator, client_id: &str) -> Option<AppSnapshot> {
    emulator.apps().into_iter().find(|app| app.id == client_id)
}

/// The parts of a running registrar: its stop switch, task, address and a
/// client.
type Registrar = (
    watch::Sender<bool>,
    JoinHandle<anyhow::Result<()>>,
    SocketAddr,
    RegistrarClient<Channel>,
);

async fn start_registrar(config: ServerConfig) -> Registrar {
    let (stop, stop_rx) = watch::channel(false);
    let listener = bind().await;
    let address = listener.local_addr().expect("bound address");
    let tls = config.auth.tls.is_some();
    let server = tokio::spawn(registrar_server::run(listener, config, stopped(stop_rx)));
    // The listener is bound, so connecting succeeds at once; the first
    // request waits until the server accepts. A plaintext handshake with a
    // TLS server fails, so that client connects lazily and stays unused.
    let endpoint = format!("http://{address}");
    let client = if tls {
        RegistrarClient::new(
            Channel::from_shared(endpoint)
                .expect("valid endpoint")
                .connect_lazy(),
        )
    } else {
        RegistrarClient::connect(endpoint)
            .await
            .expect("registrar accepts connections")
    };
    (stop, server, address, client)
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Returns the JWKS of Okta's sample request.
pub fn sample_jwks() -> Jwks {
    let sample: serde_json::Value = serde_json::from_str(SAMPLE_REQUEST).expect("sample parses");
    let keys = sample["jwks"]["keys"]
        .as_array()
        .expect("sample has keys")
        .iter()
        .map(|key| {
            let text = |name: &str| key[name].as_str().unwrap_or_default().to_string();
            Jwk {
                kty: text("kty"),
                kid: text("kid"),
                r#use: text("use"),
                alg: text("alg"),
                n: text("n"),
                e: text("e"),
                ..Jwk::default()
            }
        })
        .collect();
    Jwks { keys }
}

/// Builds a create request with the sample JWKS under another name.
pub fn create_request(client_name: &str) -> CreateServiceAppRequest {
    CreateServiceAppRequest {
        client_name: client_name.to_string(),
        key_source: Some(KeySource::Jwks(sample_jwks())),
        dpop_bound: false,
    }
}
