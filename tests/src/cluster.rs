//! Several registrars ("replicas") on one emulator, one PostgreSQL database
//! and one master key, as a deployment behind a load balancer runs them.

use std::net::SocketAddr;

use okta_emulator::{AppSnapshot, Emulator};
use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_server::ServerConfig;
use registrar_server::keys::master::MasterKey;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::{Options, count_requests, okta_app, registrar_config, start_emulator, start_registrar};

/// A running emulator and the replicas that share one database.
#[derive(Debug)]
pub struct Cluster {
    /// The emulator, for inspecting what reached "Okta".
    pub emulator: Emulator,
    /// The emulator's org URL.
    pub org_url: String,
    replicas: Vec<Replica>,
    config: ServerConfig,
    stop: watch::Sender<bool>,
    _data_dir: tempfile::TempDir,
}

/// One registrar of a [`Cluster`].
#[derive(Debug)]
struct Replica {
    address: SocketAddr,
    client: RegistrarClient<Channel>,
    stop: watch::Sender<bool>,
    /// The server task; `None` once the replica was killed or stopped.
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Cluster {
    /// Starts an emulator and `replicas` registrars on the database of
    /// `options.database_url`, all with the same master key and settings.
    ///
    /// # Panics
    ///
    /// Panics when `options` names no database, because replicas on
    /// separate SQLite files would share nothing, and when it sets
    /// [`Options::metrics`], because the replicas of one process would share
    /// one metrics registry.
    pub async fn start(replicas: usize, mut options: Options) -> Self {
        assert!(
            options.database_url.is_some(),
            "a cluster needs Options::database_url, such as the URL of a TestDatabase"
        );
        assert!(
            !options.metrics,
            "a cluster does not serve metrics: every replica of one process shares the registry"
        );
        let (stop, stop_rx) = watch::channel(false);
        let (emulator, org_url) = start_emulator(options.emulator.clone(), stop_rx).await;
        let data_dir = tempfile::tempdir().expect("temporary directory");
        options.master_key = Some(options.master_key.unwrap_or_else(MasterKey::random));
        let config = registrar_config(options, &emulator, &org_url, data_dir.path()).await;

        let mut cluster = Self {
            emulator,
            org_url,
            replicas: Vec::with_capacity(replicas),
            config,
            stop,
            _data_dir: data_dir,
        };
        for _ in 0..replicas {
            cluster.add_replica().await;
        }
        cluster
    }

    /// Starts one more replica with the cluster's settings and returns its
    /// index.
    pub async fn add_replica(&mut self) -> usize {
        // Owned, because `add_replica_on` borrows the cluster mutably.
        let database_url = String::from(self.config.database_url.as_str());
        self.add_replica_on(&database_url).await
    }

    /// Starts one more replica that reaches the cluster's database through
    /// `database_url`, such as the URL through a [`crate::proxy::Proxy`],
    /// and returns its index.
    pub async fn add_replica_on(&mut self, database_url: &str) -> usize {
        let mut config = self.config.clone();
        config.database_url = database_url.into();
        let (stop, server, address, client) = start_registrar(config).await;
        self.replicas.push(Replica {
            address,
            client,
            stop,
            server: Some(server),
        });
        self.replicas.len() - 1
    }

    /// Returns the number of replicas started, including stopped ones.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// Returns the indexes of the replicas that are still running.
    pub fn running(&self) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|&index| self.replicas[index].server.is_some())
            .collect()
    }

    /// Returns the gRPC address of replica `index`.
    pub fn address(&self, index: usize) -> SocketAddr {
        self.replica(index).address
    }

    /// Returns the index of the replica that listens on `address`, such as
    /// `127.0.0.1:40123`.
    pub fn index_of(&self, address: &str) -> Option<usize> {
        self.replicas
            .iter()
            .position(|replica| replica.address.to_string() == address)
    }

    /// Returns a client of replica `index`. Its clones share one
    /// connection.
    pub fn client(&self, index: usize) -> RegistrarClient<Channel> {
        self.replica(index).client.clone()
    }

    /// Returns a client of replica `index` on a new connection.
    pub async fn new_client(&self, index: usize) -> RegistrarClient<Channel> {
        RegistrarClient::connect(format!("http://{}", self.address(index)))
            .await
            .expect("replica accepts connections")
    }

    /// Returns the database URL that every replica uses.
    pub fn database_url(&self) -> &str {
        self.config.database_url.as_str()
    }

    /// Kills replica `index` without a graceful shutdown, as a crash would.
    /// Aborting its server task drops its listener, its database
    /// connections and the background tasks it owns, such as the rotation
    /// task and the leader lock.
    ///
    /// NOTE: the replica runs in the test's process, so gRPC connections
    /// that clients opened before the kill, and their WatchRotations
    /// streams, may stay open until the clients drop them. A crashed
    /// process would reset them.
    pub async fn kill(&mut self, index: usize) {
        let server = self.replica_mut(index).server.take();
        let server = server.unwrap_or_else(|| panic!("replica {index} is not running"));
        server.abort();
        let _ = server.await;
    }

    /// Stops replica `index` gracefully and waits until it has stopped.
    pub async fn stop(&mut self, index: usize) {
        let replica = self.replica_mut(index);
        let server = replica.server.take();
        let server = server.unwrap_or_else(|| panic!("replica {index} is not running"));
        let _ = replica.stop.send(true);
        server
            .await
            .expect("registrar task joins")
            .unwrap_or_else(|error| panic!("replica {index} failed to stop cleanly: {error:#}"));
    }

    /// Counts the requests with this method whose path ends with `suffix`.
    pub fn count_requests(&self, method: &str, suffix: &str) -> usize {
        count_requests(&self.emulator, method, suffix)
    }

    /// Returns the emulator's app with this id.
    pub fn okta_app(&self, client_id: &str) -> Option<AppSnapshot> {
        okta_app(&self.emulator, client_id)
    }

    /// Stops every running replica gracefully, then the emulator.
    pub async fn shutdown(mut self) {
        for index in self.running() {
            self.stop(index).await;
        }
        let _ = self.stop.send(true);
    }

    fn replica(&self, index: usize) -> &Replica {
        self.replicas
            .get(index)
            .unwrap_or_else(|| panic!("no replica {index}"))
    }

    fn replica_mut(&mut self, index: usize) -> &mut Replica {
        self.replicas
            .get_mut(index)
            .unwrap_or_else(|| panic!("no replica {index}"))
    }
}
