//! An Okta emulator and a registrar, both on `127.0.0.1:0` in this process,
//! built the way the end-to-end test harness builds them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use okta_emulator::Emulator;
use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_api::v1::{GenerateKey, KeyAlgorithm, RegisterServiceRequest};
use registrar_server::ServerConfig;
use registrar_server::auth::AuthConfig;
use registrar_server::config::{DEFAULT_ASSERTION_LIFETIME, DEFAULT_SHUTDOWN_GRACE};
use registrar_server::keys::master::MasterKey;
use registrar_server::okta::{OktaCredential, PacingSettings};
use registrar_server::org::OrgUrl;
use registrar_server::policy::Policies;
use registrar_server::rotation::RotationSettings;
use registrar_server::secret::Secret;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The API token that the emulator accepts and the registrar sends.
pub const API_TOKEN: &str = "bench-api-token-0123456789abcdef";

/// The settings that differ between benchmark environments.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The emulator's settings, including its rate limits.
    pub emulator: okta_emulator::Config,
    /// The registrar's share of each rate-limit bucket (`--okta-rate-share`).
    pub rate_share: f64,
    /// The timing of key rotations.
    pub rotation: RotationSettings,
    /// Whether the registrar's listener has `TCP_NODELAY` set; see
    /// [`bind_loopback`].
    pub nodelay: bool,
}

impl Default for Setup {
    /// Returns the emulator's default budgets, the whole of each bucket for
    /// the registrar, and rotations that never advance past adding the new
    /// key within a benchmark run.
    fn default() -> Self {
        Self {
            emulator: okta_emulator::Config::new(API_TOKEN),
            rate_share: 1.0,
            rotation: RotationSettings {
                propagation_delay: Duration::from_secs(3600),
                grace_period: Duration::from_secs(3600),
                key_lifetime: None,
            },
            nodelay: false,
        }
    }
}

/// A running emulator and registrar.
#[derive(Debug)]
pub struct Env {
    /// The emulator, for counting the requests that reached "Okta".
    pub emulator: Emulator,
    /// The registrar's gRPC address.
    pub address: SocketAddr,
    /// A client connected to the registrar.
    pub client: RegistrarClient<Channel>,
    stop: watch::Sender<bool>,
    server: JoinHandle<anyhow::Result<()>>,
    _data_dir: tempfile::TempDir,
}

impl Env {
    /// Starts an emulator and a registrar with a store in a new temporary
    /// directory and no caller authentication.
    pub async fn start(setup: Setup) -> anyhow::Result<Self> {
        let (stop, stop_rx) = watch::channel(false);
        let emulator = Emulator::new(setup.emulator);
        let emulator_listener = TcpListener::bind("127.0.0.1:0").await?;
        let org_url = format!("http://{}", emulator_listener.local_addr()?);
        tokio::spawn({
            let emulator = emulator.clone();
            let stopped = stopped(stop_rx.clone());
            async move { emulator.serve(emulator_listener, stopped).await }
        });

        let data_dir = tempfile::tempdir().context("creating the store directory")?;
        let config = ServerConfig {
            okta_org: OrgUrl::parse(&org_url).map_err(anyhow::Error::msg)?,
            okta_credential_source: None,
            okta_credential: OktaCredential::ApiToken(Secret::new(API_TOKEN)),
            database_url: format!("sqlite://{}/registrar.db", data_dir.path().display()).into(),
            okta_timeout: Duration::from_secs(30),
            okta_pacing: PacingSettings {
                rate_share: setup.rate_share,
                ..PacingSettings::default()
            },
            master_key: MasterKey::random(),
            assertion_lifetime: DEFAULT_ASSERTION_LIFETIME,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            rotation: setup.rotation,
            deliver_private_keys: false,
            auth: AuthConfig::insecure_loopback(),
            policies: Policies::allow_all(),
            metrics_listen: None,
        };
        let listener = bind_loopback(setup.nodelay)?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(registrar_server::run(listener, config, stopped(stop_rx)));
        let client = RegistrarClient::connect(format!("http://{address}"))
            .await
            .context("connecting to the registrar")?;
        Ok(Self {
            emulator,
            address,
            client,
            stop,
            server,
            _data_dir: data_dir,
        })
    }

    /// Registers a service with a registrar-generated key of `algorithm`
    /// and returns its client_id.
    pub async fn register(
        &self,
        name: &str,
        scopes: &[&str],
        algorithm: KeyAlgorithm,
    ) -> anyhow::Result<String> {
        register(&mut self.client.clone(), name, scopes, algorithm).await
    }

    /// Stops the registrar and the emulator.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.server.await.context("joining the registrar task")?
    }
}

/// Registers a service through `client` and returns its client_id.
pub async fn register(
    client: &mut RegistrarClient<Channel>,
    name: &str,
    scopes: &[&str],
    algorithm: KeyAlgorithm,
) -> anyhow::Result<String> {
    let response = client
        .register_service(RegisterServiceRequest {
            service_name: name.to_string(),
            scope_ids: scopes.iter().map(|scope| scope.to_string()).collect(),
            key: Some(GenerateKey {
                algorithm: algorithm.into(),
            }),
            dpop_bound: false,
        })
        .await
        .with_context(|| format!("registering {name}"))?
        .into_inner();
    let app = response.app.context("RegisterService returned no app")?;
    Ok(app.client_id)
}

/// Binds a listener on `127.0.0.1:0`, with `TCP_NODELAY` set on the
/// listening socket when `nodelay` is true. Linux copies the option to
/// every accepted socket, so a server that accepts from this listener
/// sends without Nagle delays even when it sets no socket options itself,
/// as `registrar_server::run` does not.
pub fn bind_loopback(nodelay: bool) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    if nodelay {
        socket.set_nodelay(true)?;
    }
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    socket.listen(1024)
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
