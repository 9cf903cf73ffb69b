//! The `GET /metrics` endpoint, on a listener of its own so that scrapers
//! never need a gRPC credential. It has no authentication: bind it to
//! loopback or a private network.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use axum::http::header::CONTENT_TYPE as CONTENT_TYPE_HEADER;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::METRICS;

/// The `Content-Type` of the Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Returns every metric in the Prometheus text exposition format.
pub fn encode() -> String {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &METRICS.registry)
        .expect("writing to a String cannot fail");
    text
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes. Every
/// other path gets 404.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = axum::Router::new().route("/metrics", get(scrape));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn scrape() -> impl IntoResponse {
    ([(CONTENT_TYPE_HEADER, CONTENT_TYPE)], encode())
}

/// Binds `address` and serves the metrics there in a task until `stop`
/// turns true. Returns `None` when no address is configured.
pub async fn start(
    address: Option<SocketAddr>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(address) = address else {
        return Ok(None);
    };
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("--metrics-listen: cannot bind {address}"))?;
    let bound = listener
        .local_addr()
        .context("reading the metrics listen address")?;
    tracing::info!(address = %bound, "metrics serving at /metrics");
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let task = async move {
        if let Err(error) = serve(listener, stopped).await {
            tracing::error!(%error, "metrics endpoint failed; metrics are no longer served");
        }
    };
    let span = tracing::info_span!("metrics", address = %bound);
    Ok(Some(tokio::spawn(task.instrument(span))))
}
