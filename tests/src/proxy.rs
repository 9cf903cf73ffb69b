//! A loopback TCP proxy that a test can cut or stall, to take a database
//! away from a registrar without stopping the database.

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
    open: watch::Sender<Mode>,
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
        let (open, open_rx) = watch::channel(Mode::Forward);
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
        self.open.send_replace(Mode::Cut);
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

    /// Stops passing bytes on every open connection and on new ones, which
    /// it accepts, but keeps them all open: a network path that drops
    /// packets without closing anything. Connections stalled this way stay
    /// stalled after [`Proxy::restore`] until [`Proxy::cut`] closes them.
    pub fn stall(&self) {
        self.open.send_replace(Mode::Stall);
    }

    /// Forwards new connections again after [`Proxy::cut`] or
    /// [`Proxy::stall`].
    pub fn restore(&self) {
        self.open.send_replace(Mode::Forward);
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
    open: watch::Receiver<Mode>,
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
        let mode = *open.borrow();
        if mode == Mode::Cut || forwarding.len() >= MAX_CONNECTIONS {
            drop(client);
            continue;
        }
        let counter = ConnectionCount::new(&connections);
        if mode == Mode::Stall {
            forwarding.spawn(hold(client, open.clone(), counter));
        } else {
            forwarding.spawn(forward(client, upstream, open.clone(), counter));
        }
    }
}

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward bytes both ways.
    Forward,
    /// Close every connection.
    Cut,
    /// Keep connections open but pass no bytes.
    Stall,
}

/// Copies bytes both ways between `client` and `upstream` until either side
/// closes or the proxy is cut, then closes both. A stall stops the copying
/// and keeps both sockets open until the proxy is cut.
async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut open: watch::Receiver<Mode>,
    counter: ConnectionCount,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let stalled = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        mode = open.wait_for(|mode| *mode != Mode::Forward) => {
            mode.is_ok_and(|mode| *mode == Mode::Stall)
        }
    };
    if stalled {
        let _server = server;
        hold(client, open, counter).await;
    }
}

/// Keeps `client` open without reading or writing until the proxy is cut.
async fn hold(_client: TcpStream, mut open: watch::Receiver<Mode>, _counter: ConnectionCount) {
    let _ = open.wait_for(|mode| *mode == Mode::Cut).await;
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
