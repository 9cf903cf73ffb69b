//! A loopback TCP proxy that a test can cut, to take a database away from a
//! registrar without stopping the database.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The maximum number of connections the proxy forwards at once. It closes further ones
/// at once, as it does while cut.
pub const MAX_CONNECTIONS: usize = 256;

/// How long [`Proxy::cut`] waits for the open connections to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Forwards every connection to its listen address on to an upstream
/// address until [`Proxy::cut`]. Dropping it closes the listener and every
/// connection.
#[derive(Debug)]
pub struct Proxy {
    address: SocketAddr,
    upstream: SocketAddr,
    open: watch::Sender<bool>,
    connections: Arc<AtomicUsize>,
    accept_task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on `127.0.0.1:0` that forwards to `upstream`, which
    /// must be a loopback address.
    pub async fn start(upstream: SocketAddr) -> Self {
        assert!(
            upstream.ip().is_loopback(),
            "the proxy forwards only to loopback addresses, not {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("bound address");
        let (open, open_rx) = watch::channel(true);
        let connections = Arc::new(AtomicUsize::new(0));
        let accept_task = tokio::spawn(accept(listener, upstream, open_rx, connections.clone()));
        Self {
            address,
            upstream,
            open,
            connections,
            accept_task,
        }
    }

    /// Starts a proxy in front of the host and port of the database URL
    /// `url`, such as `postgres://postgres@127.0.0.1:5432/test`.
    pub async fn in_front_of(url: &str) -> Self {
        let parsed = reqwest::Url::parse(url).expect("valid database URL");
        let host = parsed.host_str().expect("database URL has a host");
        let port = parsed.port().unwrap_or(5432);
        let upstream: SocketAddr = format!("{host}:{port}")
            .parse()
            .unwrap_or_else(|_| panic!("database host {host} is not an IP address"));
        Self::start(upstream).await
    }

    /// Returns the proxy's listen address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Returns the address the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Returns `url` with its host and port replaced by the proxy's.
    pub fn url_through(&self, url: &str) -> String {
        let mut parsed = reqwest::Url::parse(url).expect("valid database URL");
        parsed
            .set_ip_host(self.address.ip())
            .expect("the URL takes an IP host");
        parsed
            .set_port(Some(self.address.port()))
            .expect("the URL takes a port");
        parsed.into()
    }

    /// Returns the number of connections the proxy forwards now.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Closes every open connection and closes new ones as soon as they
    /// are accepted, until [`Proxy::restore`]. Returns once the open
    /// connections are closed.
    ///
    /// # Panics
    ///
    /// Panics when connections stay open longer than 5 seconds.
    pub async fn cut(&self) {
        self.open.send_replace(false);
        let closed = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while self.connections() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "{} proxied connections still open {CLOSE_TIMEOUT:?} after the cut",
            self.connections()
        );
    }

    /// Forwards new connections again after [`Proxy::cut`].
    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks, and aborting it drops
        // them with their sockets.
        self.accept_task.abort();
    }
}

/// Accepts connections and forwards each on a task of its own until the
/// task is aborted.
async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    open: watch::Receiver<bool>,
    connections: Arc<AtomicUsize>,
) {
    let mut forwarding = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = forwarding.join_next() => continue,
        };
        let Ok((client, _)) = accepted else {
            continue;
        };
        if !*open.borrow() || forwarding.len() >= MAX_CONNECTIONS {
            drop(client);
            continue;
        }
        let counter = ConnectionCount::new(&connections);
        forwarding.spawn(forward(client, upstream, open.clone(), counter));
    }
}

/// Copies bytes both ways between `client` and `upstream` until either side
/// closes or the proxy is cut, then closes both.
async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut open: watch::Receiver<bool>,
    _counter: ConnectionCount,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = open.wait_for(|open| !*open) => {}
    }
}

/// Counts a forwarded connection while it lives.
#[derive(Debug)]
struct ConnectionCount(Arc<AtomicUsize>);

impl ConnectionCount {
    fn new(connections: &Arc<AtomicUsize>) -> Self {
        connections.fetch_add(1, Ordering::SeqCst);
        Self(connections.clone())
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
