//! Cached GetAccessToken over gRPC on loopback, against the echo service
//! with the same message sizes, served and loaded the same way.
//!
//! `registrar_server::run` accepts from a plain `TcpListenerStream`, so its
//! sockets keep Nagle's algorithm on. Each row therefore has two pairs: the
//! registrar and the echo service as the registrar serves (Nagle on), and
//! both with `TCP_NODELAY` set on the listener, which shows what the
//! registrar would do with the option.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_api::v1::{GetAccessTokenRequest, KeyAlgorithm};
use tonic::transport::Channel;

use crate::echo::proto::EchoRequest;
use crate::echo::proto::echo_client::EchoClient;
use crate::env::{Env, Setup};
use crate::load::{self, LoadResult};
use crate::stats::{millis, ratio, verdict};

/// The scope that the benchmarked token carries.
const SCOPE: &str = "okta.users.read";

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests in flight, one value per row.
    pub concurrencies: Vec<usize>,
    /// Length of each measured round.
    pub round: Duration,
    /// Rounds per target and concurrency, the targets run in turn.
    pub rounds: usize,
    /// The request limit of each round.
    pub max_requests_per_round: u64,
}

/// The result of one baseline and subject pair at one concurrency.
#[derive(Debug, Clone, Default)]
pub struct Pair {
    /// The echo service, all rounds merged.
    pub echo: LoadResult,
    /// Cached GetAccessToken, all rounds merged.
    pub registrar: LoadResult,
}

impl Pair {
    /// Returns registrar throughput over echo throughput.
    pub fn throughput_ratio(&self) -> f64 {
        ratio(self.registrar.per_second(), self.echo.per_second())
    }
}

/// The results at one concurrency.
#[derive(Debug, Clone)]
pub struct Row {
    /// Requests in flight.
    pub concurrency: usize,
    /// Both servers with Nagle's algorithm on, as the registrar ships.
    pub as_shipped: Pair,
    /// Both servers with `TCP_NODELAY` on the listener.
    pub nodelay: Pair,
}

/// A boxed call of the load generator.
type Call = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>;

/// A shared maker of calls, one per target.
type Caller = Arc<dyn Fn() -> Call + Send + Sync>;

/// Runs the benchmark and prints one table row per concurrency.
pub async fn run(options: &Options) -> anyhow::Result<Vec<Row>> {
    let shipped = Env::start(Setup::default()).await?;
    let nodelay = Env::start(Setup {
        nodelay: true,
        ..Setup::default()
    })
    .await?;
    let uncached = Arc::new(AtomicU64::new(0));
    let shipped_call = prepare_registrar(&shipped, &uncached).await?;
    let nodelay_call = prepare_registrar(&nodelay, &uncached).await?;
    let (request_size, response_size) = shipped_call.1;
    println!("message sizes: request {request_size} B, response {response_size} B");
    let echo_request = crate::echo::sized_request(request_size, response_size);
    let (echo_address, echo_stop) = crate::echo::serve(false).await?;
    let (echo_nodelay_address, echo_nodelay_stop) = crate::echo::serve(true).await?;
    let echo_call = echo_caller(echo_address, &echo_request).await?;
    let echo_nodelay_call = echo_caller(echo_nodelay_address, &echo_request).await?;
    let targets = [
        &echo_call,
        &shipped_call.0,
        &echo_nodelay_call,
        &nodelay_call.0,
    ];

    print_table_head();
    let mut rows = Vec::new();
    for &concurrency in &options.concurrencies {
        // A short unmeasured run of each warms connections and allocators.
        for caller in targets {
            let warm_up = Duration::from_millis(200);
            load::run(concurrency, warm_up, u64::MAX, as_call(caller)).await;
        }
        let mut results: [LoadResult; 4] = Default::default();
        for _ in 0..options.rounds {
            for (result, caller) in results.iter_mut().zip(targets) {
                let (round, limit) = (options.round, options.max_requests_per_round);
                result.merge(load::run(concurrency, round, limit, as_call(caller)).await);
            }
        }
        let [echo, registrar, echo_nodelay, registrar_nodelay] = results;
        let row = Row {
            concurrency,
            as_shipped: Pair { echo, registrar },
            nodelay: Pair {
                echo: echo_nodelay,
                registrar: registrar_nodelay,
            },
        };
        print_row(&row);
        rows.push(row);
    }
    println!(
        "uncached responses during the measured runs: {}",
        uncached.load(Ordering::Relaxed)
    );
    print_targets(&rows);
    let _ = echo_stop.send(true);
    let _ = echo_nodelay_stop.send(true);
    shipped.stop().await?;
    nodelay.stop().await?;
    Ok(rows)
}

/// Registers an app, fills its token cache, and returns a load call of
/// cached GetAccessToken on a new connection with the encoded request and
/// response sizes.
async fn prepare_registrar(
    env: &Env,
    uncached: &Arc<AtomicU64>,
) -> anyhow::Result<(Caller, (usize, usize))> {
    let client_id = env
        .register("bench-tokens", &[SCOPE], KeyAlgorithm::Rs2562048)
        .await?;
    let request = GetAccessTokenRequest {
        client_id,
        scopes: vec![SCOPE.to_string()],
        force_refresh: false,
    };
    let warm = env
        .client
        .clone()
        .get_access_token(request.clone())
        .await
        .context("pre-warming the token cache")?
        .into_inner();
    let sizes = (
        prost::Message::encoded_len(&request),
        prost::Message::encoded_len(&warm),
    );
    let channel = Channel::from_shared(format!("http://{}", env.address))?
        .connect()
        .await?;
    let client = RegistrarClient::new(channel);
    let uncached = Arc::clone(uncached);
    let call: Caller = Arc::new(move || -> Call {
        let (mut client, request) = (client.clone(), request.clone());
        let uncached = Arc::clone(&uncached);
        Box::pin(async move {
            let response = client.get_access_token(request).await?.into_inner();
            if !response.cached {
                uncached.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    });
    Ok((call, sizes))
}

/// Turns a shared caller into the cloneable closure the load generator
/// takes.
fn as_call(caller: &Caller) -> impl Fn() -> Call + Clone + Send + 'static {
    let caller = Arc::clone(caller);
    move || caller()
}

/// Returns a load call that sends `request` to the echo service at
/// `address` on a new connection.
async fn echo_caller(
    address: std::net::SocketAddr,
    request: &EchoRequest,
) -> anyhow::Result<Caller> {
    let client = EchoClient::connect(format!("http://{address}")).await?;
    let request = request.clone();
    Ok(Arc::new(move || -> Call {
        let (mut client, request) = (client.clone(), request.clone());
        Box::pin(async move { client.echo(request).await.map(drop) })
    }))
}

fn print_table_head() {
    println!(
        "| in flight | echo req/s | echo p50 / p99 | registrar req/s | registrar p50 / p99 | ratio | echo NODELAY req/s | echo NODELAY p50 / p99 | registrar NODELAY req/s | registrar NODELAY p50 / p99 | NODELAY ratio |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
}

fn print_row(row: &Row) {
    let cells = |result: &LoadResult| {
        format!(
            "{:.0} | {} / {}",
            result.per_second(),
            millis(result.latency(0.5)),
            millis(result.latency(0.99))
        )
    };
    println!(
        "| {} | {} | {} | {:.2} | {} | {} | {:.2} |",
        row.concurrency,
        cells(&row.as_shipped.echo),
        cells(&row.as_shipped.registrar),
        row.as_shipped.throughput_ratio(),
        cells(&row.nodelay.echo),
        cells(&row.nodelay.registrar),
        row.nodelay.throughput_ratio(),
    );
    let errors: u64 = [&row.as_shipped, &row.nodelay]
        .iter()
        .map(|pair| pair.echo.errors + pair.registrar.errors)
        .sum();
    if errors > 0 {
        println!("errors at {} in flight: {errors}", row.concurrency);
    }
}

fn print_targets(rows: &[Row]) {
    for (name, pick) in [
        (
            "as shipped",
            (|row: &Row| &row.as_shipped) as fn(&Row) -> &Pair,
        ),
        ("NODELAY", |row: &Row| &row.nodelay),
    ] {
        for row in rows {
            let pair = pick(row);
            println!(
                "{name}: target throughput >= 0.8 of echo at {} in flight: {:.2}, {}",
                row.concurrency,
                pair.throughput_ratio(),
                verdict(pair.throughput_ratio() >= 0.8)
            );
        }
        let qualifying: Vec<&Row> = rows
            .iter()
            .filter(|row| pick(row).echo.latency(0.99) < Duration::from_millis(1))
            .collect();
        if qualifying.is_empty() {
            println!("{name}: target p99 < 2 ms: no concurrency where the echo p99 is under 1 ms");
        }
        for row in qualifying {
            let pair = pick(row);
            let p99 = pair.registrar.latency(0.99);
            println!(
                "{name}: target p99 < 2 ms at {} in flight (echo p99 {}): {}, {}",
                row.concurrency,
                millis(pair.echo.latency(0.99)),
                millis(p99),
                verdict(p99 < Duration::from_millis(2))
            );
        }
    }
}
