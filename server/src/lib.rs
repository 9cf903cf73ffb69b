//! The registrar service: a gRPC API that registers backend services as
//! Okta OAuth 2.0 service apps and grants them Okta API scopes.
//!
//! [`run`] serves the API on a bound listener until a shutdown future
//! completes. The `registrar` binary and the end-to-end tests both use it.

pub mod auth;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod jwk;
pub mod keyring;
pub mod keys;
pub mod locks;
pub mod metrics;
pub mod okta;
pub mod org;
pub mod policy;
pub mod reload;
pub mod replicas;
pub mod rotation;
pub mod secret;
pub mod service;
pub mod store;
pub mod tokens;
pub mod validate;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use registrar_api::v1::registrar_server::RegistrarServer;
use tokio::net::TcpListener;

use auth::{AuthConfig, AuthLayer};
pub use config::ServerConfig;
use keyring::Keyring;
use keys::master::MasterKey;
use okta::OktaClient;
use rotation::Rotator;
use service::RegistrarService;
use store::Store;
use tokens::{TokenSettings, Tokens};

/// The text and associated data of the master key's check value in the
/// store.
const MASTER_KEY_CHECK: &[u8] = b"registrar master key check";

/// The largest request or response message the server accepts, in bytes.
/// A JWKS of 50 RSA-8192 keys is well under 100 KiB.
pub const MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// Serves the registrar API, gRPC server reflection (v1 and v1alpha) and the
/// standard health service on `listener` until `shutdown` completes. Opens
/// the store and applies its migrations first.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // `registrar serve` checked the settings against --listen already; this
    // covers callers that build the configuration themselves.
    let address = listener
        .local_addr()
        .context("reading the listen address")?;
    config.auth.check(address)?;
    let store = Store::open(config.database_url.as_str())
        .await
        .with_context(|| format!("opening the store at {}", config.database_url))?;
    let okta = OktaClient::with_credential(
        config.okta_org.clone(),
        config.okta_credential.clone(),
        config.okta_timeout,
    )
    .context("building the Okta HTTP client")?
    .with_pacing(config.okta_pacing);
    // A wrong master key (for example a new one created because the old
    // file is missing) would make every stored key unusable: refuse to start.
    if let Some((key_id, sealed)) = store.any_sealed_key().await.context("reading the store")?
        && config
            .master_key
            .decrypt(&sealed, key_id.as_bytes())
            .is_err()
    {
        anyhow::bail!(
            "the master key cannot decrypt the private keys in the store; restore the master key that encrypted them (DATA_DIR/master.key, --master-key-file or REGISTRAR_MASTER_KEY) before starting"
        );
    }
    check_master_key(&store, &config.master_key).await?;
    let keyring = Keyring::new(config.master_key.clone(), store.clone());
    let health_store = store.clone();
    let settings = TokenSettings::okta(&config.okta_org, config.assertion_lifetime);
    let tokens = Tokens::new(okta.clone(), keyring.clone(), store.clone(), settings);
    let rotator = Rotator::new(
        okta.clone(),
        store.clone(),
        keyring.clone(),
        config.rotation,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reloadable = reload::Reloadable {
        policies: config.policies.clone(),
        bearer_tokens: config.auth.bearer_tokens.clone(),
        okta_credential: config
            .okta_credential_source
            .clone()
            .map(|source| (okta.clone(), source)),
    };
    let service = RegistrarService::new(
        okta,
        store,
        keyring,
        tokens,
        rotator.clone(),
        stop_rx.clone(),
    )
    .with_key_delivery(config.deliver_private_keys)
    .with_policies(config.policies.clone())
    .with_bearer_tokens(config.auth.bearer_tokens.clone());
    // Settle the Okta calls whose outcome a crash or a lost response hid,
    // before any request or rotation acts on the same apps.
    service
        .reconcile_intents(crate::service::RECONCILIATION_TIME_LIMIT)
        .await;
    log_policy(&config.policies);
    // The guard stops the SIGHUP listener when this function returns.
    let _reload_task = AbortOnDrop(tokio::spawn(reload::reload_on_hangup(
        reloadable,
        stop_rx.clone(),
    )));
    if config.deliver_private_keys {
        tracing::warn!(
            "key delivery is on: WatchRotations sends the private signing key of each watched app to every caller that asks for it"
        );
    }
    // The rotation task resumes recorded rotations; the guard stops it when
    // this function returns or its task is dropped. Replicas that share a
    // PostgreSQL database run it on one replica at a time, and each hears
    // of the key changes the others make.
    let coordination = health_store.coordination().cloned();
    let (rotation_task, _changes_task) = match coordination {
        Some(coordination) => (
            AbortOnDrop(tokio::spawn(replicas::lead_rotations(
                rotator.clone(),
                coordination.clone(),
                address.to_string(),
                stop_rx.clone(),
            ))),
            Some(AbortOnDrop(tokio::spawn(replicas::follow_changes(
                rotator.clone(),
                coordination,
                stop_rx.clone(),
            )))),
        ),
        None => (
            AbortOnDrop(tokio::spawn(rotator.clone().run(stop_rx.clone()))),
            None,
        ),
    };
    let _metrics_task = metrics::start(config.metrics_listen, stop_rx.clone())
        .await?
        .map(AbortOnDrop);

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let health_service = health_service
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    health_reporter
        .set_serving::<RegistrarServer<RegistrarService>>()
        .await;
    let _health_task = AbortOnDrop(tokio::spawn(replicas::report_health(
        health_store,
        health_reporter,
        stop_rx.clone(),
    )));

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(registrar_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection v1 service")?
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    // grpcurl 1.8 speaks only the v1alpha reflection protocol.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(registrar_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building the reflection v1alpha service")?
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);

    let registrar = RegistrarServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);

    log_auth_settings(&config.auth);
    tracing::info!(%address, okta_org = %config.okta_org, "registrar serving");

    // In-flight requests get a grace period after the shutdown signal; past
    // it they are dropped, so an Okta call that hangs cannot hold the
    // process.
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down; in-flight requests may finish");
        // Watch streams and the rotation task end at once.
        let _ = stop_tx.send(true);
        let _ = signalled_tx.send(());
    };
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &config.auth.tls {
        server = server
            .tls_config(tls.server_tls_config())
            .context("configuring TLS")?;
    }
    let serve = server
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(metrics::GrpcMetricsLayer)
        .layer(AuthLayer::new(&config.auth))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        // Okta calls see the caller's deadline, to fail fast on rate limits.
        .add_service(okta::retry::WithDeadline(registrar))
        .serve_with_incoming_shutdown(incoming(listener), signal);
    let grace = config.shutdown_grace;
    let grace_expired = async move {
        if signalled_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = serve => served.context("serving gRPC")?,
        () = grace_expired => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "in-flight requests did not finish within the shutdown grace period; dropping them"
            );
        }
    }
    drop(rotation_task);
    tracing::info!("registrar stopped");
    Ok(())
}

/// Checks that `master_key` is the key the database was first used with.
/// Replicas that share a database must share the master key too, so the
/// first start records a value sealed with its key, and a start with
/// another key cannot open it, even before any private key is stored.
pub async fn check_master_key(store: &Store, master_key: &MasterKey) -> anyhow::Result<()> {
    let recorded = store
        .master_key_check(&master_key.encrypt(MASTER_KEY_CHECK, MASTER_KEY_CHECK))
        .await
        .context("reading the store")?;
    if master_key.decrypt(&recorded, MASTER_KEY_CHECK).is_err() {
        anyhow::bail!(
            "the master key differs from the one this database was first used with; every registrar on one database needs the same master key (DATA_DIR/master.key, --master-key-file or REGISTRAR_MASTER_KEY)"
        );
    }
    Ok(())
}

/// Logs how callers authenticate, and warns when they do not.
fn log_auth_settings(auth: &AuthConfig) {
    if auth.insecure_no_auth {
        tracing::warn!(
            "caller authentication is off (--insecure-no-auth): anyone who reaches the listen address can use the registrar's Okta credential; use this only for development"
        );
        return;
    }
    let bearer_callers = auth
        .bearer_tokens
        .as_ref()
        .map_or(0, |tokens| tokens.callers().len());
    tracing::info!(
        tls = auth.tls.is_some(),
        mtls = auth.verifies_client_certificates(),
        bearer_callers,
        public_reflection = auth.public_reflection,
        max_concurrent_requests_per_caller = auth.max_concurrent_requests_per_caller,
        "caller authentication on"
    );
}

/// Logs which policy is in force.
fn log_policy(policies: &policy::Policies) {
    match policies.path() {
        Some(path) => tracing::info!(
            path = %path.display(),
            "caller policy loaded; SIGHUP reloads it"
        ),
        None => {
            tracing::warn!("no caller policy: every caller may call every RPC and manage every app")
        }
    }
}

/// Aborts a spawned task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Wraps the listener for tonic with `TCP_NODELAY` on every accepted
/// connection. Without it, Nagle's algorithm delays a lone small response
/// until the client's delayed ACK, about 40 ms on Linux.
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDatabase;

    async fn master_key_check_holds(store: Store) {
        let first = MasterKey::random();
        check_master_key(&store, &first).await.expect("first key");
        check_master_key(&store, &first)
            .await
            .expect("same key again");
        let other = check_master_key(&store, &MasterKey::random())
            .await
            .expect_err("another key");
        assert!(other.to_string().contains("master key differs"), "{other}");
    }

    #[tokio::test]
    async fn master_key_check_on_sqlite() {
        let store = Store::open("sqlite::memory:").await.expect("store");
        master_key_check_holds(store).await;
    }

    #[tokio::test]
    async fn master_key_check_on_postgres() {
        let database = TestDatabase::create().await;
        master_key_check_holds(database.open_store().await).await;
    }
}
