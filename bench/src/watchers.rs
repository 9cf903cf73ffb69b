//! Many WatchRotations streams on one registrar: server memory per stream
//! and the time from a key rotation until every stream has its message.
//!
//! The registrar runs in a child process (this benchmark's binary with
//! `--serve`), so that its resident set size can be read from
//! `/proc/PID/status` apart from the client's.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_api::v1::{
    KeyAlgorithm, RotateKeyRequest, WatchRotationsRequest, WatchRotationsResponse,
};
use registrar_server::rotation::RotationSettings;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::env::{Env, Setup, register};
use crate::stats::{millis, percentile, ratio, verdict};
use crate::system::rss_kib;

/// Settings of one run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Streams that watch the subject app.
    pub streams: usize,
    /// Streams per HTTP/2 connection; tonic's server allows 200 by default.
    pub streams_per_connection: usize,
    /// Rotations of the baseline app and of the subject app, in turn.
    pub rounds: usize,
    /// The rotation's propagation delay and grace period; the next round
    /// starts after both have passed.
    pub rotation_step: Duration,
    /// The time limit of opening all streams, and of each rotation's
    /// fan-out.
    pub timeout: Duration,
}

/// The measurements of one run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Server memory per stream: the RSS growth from 0 to all streams, in
    /// bytes, divided by the streams.
    pub bytes_per_stream: f64,
    /// From each subject RotateKey call until each stream had the new key,
    /// all rounds, sorted.
    pub fan_out: Vec<Duration>,
    /// The same for the one stream of the baseline app, one per round,
    /// with the subject streams open but idle.
    pub single: Vec<Duration>,
    /// The same for the one stream of the baseline app before the subject
    /// streams were opened.
    pub alone: Duration,
}

/// Serves an emulator and a registrar for the benchmark: prints
/// `address=HOST:PORT` once serving, and stops when standard input closes.
pub async fn serve(rotation_step: Duration) -> anyhow::Result<()> {
    let env = Env::start(Setup {
        rotation: RotationSettings {
            propagation_delay: rotation_step,
            grace_period: rotation_step,
            key_lifetime: None,
        },
        ..Setup::default()
    })
    .await?;
    println!("address={}", env.address);
    let mut stdin = tokio::io::stdin();
    let mut sink = Vec::new();
    let _ = stdin.read_to_end(&mut sink).await;
    env.stop().await
}

/// Runs the benchmark against a `--serve` child of `server_binary`.
pub async fn run(options: Options, server_binary: &std::path::Path) -> anyhow::Result<Outcome> {
    let mut child = Command::new(server_binary)
        .args(["--serve", "--rotation-step-ms"])
        .arg(options.rotation_step.as_millis().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the registrar process")?;
    let result = measure(options, &mut child).await;
    stop_child(child).await;
    result
}

async fn measure(options: Options, child: &mut Child) -> anyhow::Result<Outcome> {
    let pid = child.id().context("the registrar process has exited")?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await?;
    let address = line
        .trim()
        .strip_prefix("address=")
        .with_context(|| format!("unexpected first line from the registrar: {line:?}"))?
        .to_string();
    let endpoint = format!("http://{address}");
    let mut client = RegistrarClient::connect(endpoint.clone()).await?;
    let baseline_app = register(
        &mut client,
        "bench-watch-single",
        &["okta.users.read"],
        KeyAlgorithm::Es256,
    )
    .await?;
    let subject_app = register(
        &mut client,
        "bench-watch-fanout",
        &["okta.users.read"],
        KeyAlgorithm::Es256,
    )
    .await?;

    let mut streams = JoinSet::new();
    let (single_tx, mut single_rx) = mpsc::unbounded_channel();
    let ready = Arc::new(AtomicUsize::new(0));
    streams.spawn(watch(
        client.clone(),
        baseline_app.clone(),
        single_tx,
        Arc::clone(&ready),
    ));
    wait_ready(&ready, 1, options.timeout).await?;
    // One rotation with no other stream open: the latency floor of a
    // rotation, measured before the subject streams exist.
    let (alone, _) = rotate_and_collect(
        &mut client,
        &baseline_app,
        &mut single_rx,
        1,
        options.timeout,
    )
    .await?;
    println!("1 stream, no other streams open: {}", millis(alone[0]));
    tokio::time::sleep(options.rotation_step * 2 + Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid).context("reading the registrar's RSS")?;

    let opened = Instant::now();
    let (fan_tx, mut fan_rx) = mpsc::unbounded_channel();
    open_streams(
        &mut streams,
        &endpoint,
        &subject_app,
        options,
        &fan_tx,
        &ready,
    )
    .await?;
    wait_ready(&ready, options.streams + 1, options.timeout).await?;
    println!(
        "opened {} streams on {} connections in {:.1} s",
        options.streams,
        options.streams.div_ceil(options.streams_per_connection),
        opened.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_kib(pid).context("reading the registrar's RSS")?;
    let bytes_per_stream =
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / options.streams as f64;
    println!(
        "registrar RSS: {rss_before} KiB with 0 streams, {rss_after} KiB with {}: {:.0} B per stream",
        options.streams, bytes_per_stream
    );

    let mut outcome = Outcome {
        bytes_per_stream,
        fan_out: Vec::new(),
        single: Vec::new(),
        alone: alone[0],
    };
    println!(
        "| round | 1 stream | {0} streams p50 | {0} streams p99 | {0} streams max | RotateKey call |",
        options.streams
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for round in 1..=options.rounds {
        if round > 1 {
            // The previous rotations switch signing and remove the old key
            // after one step each; a new rotation may start after that.
            tokio::time::sleep(options.rotation_step * 2 + Duration::from_secs(1)).await;
        }
        let (single, _) = rotate_and_collect(
            &mut client,
            &baseline_app,
            &mut single_rx,
            1,
            options.timeout,
        )
        .await?;
        let (mut fan_out, call) = rotate_and_collect(
            &mut client,
            &subject_app,
            &mut fan_rx,
            options.streams,
            options.timeout,
        )
        .await?;
        fan_out.sort_unstable();
        println!(
            "| {round} | {} | {} | {} | {} | {} |",
            millis(single[0]),
            millis(percentile(&fan_out, 0.5)),
            millis(percentile(&fan_out, 0.99)),
            millis(percentile(&fan_out, 1.0)),
            millis(call),
        );
        outcome.single.extend(single);
        outcome.fan_out.extend(fan_out);
    }
    println!(
        "registrar RSS after the rotations: {} KiB",
        rss_kib(pid).unwrap_or(0)
    );
    streams.abort_all();
    print_verdict(&mut outcome);
    Ok(outcome)
}

fn print_verdict(outcome: &mut Outcome) {
    outcome.fan_out.sort_unstable();
    outcome.single.sort_unstable();
    let p99 = percentile(&outcome.fan_out, 0.99);
    let single = percentile(&outcome.single, 0.5);
    println!(
        "fan-out over all rounds: p50 {}, p99 {}, max {}; 1-stream median {}; p99 / 1-stream median {:.2}; p99 / 1 stream alone {:.2}",
        millis(percentile(&outcome.fan_out, 0.5)),
        millis(p99),
        millis(percentile(&outcome.fan_out, 1.0)),
        millis(single),
        ratio(p99.as_secs_f64(), single.as_secs_f64()),
        ratio(p99.as_secs_f64(), outcome.alone.as_secs_f64())
    );
    println!(
        "target < 16 KiB per stream: {:.1} KiB, {}",
        outcome.bytes_per_stream / 1024.0,
        verdict(outcome.bytes_per_stream < 16.0 * 1024.0)
    );
    println!(
        "target fan-out p99 < 1 s: {}, {}",
        millis(p99),
        verdict(p99 < Duration::from_secs(1))
    );
}

/// Opens `options.streams` watch streams on the subject app over
/// connections of `options.streams_per_connection` streams each.
async fn open_streams(
    streams: &mut JoinSet<()>,
    endpoint: &str,
    app: &str,
    options: Options,
    arrivals: &mpsc::UnboundedSender<Instant>,
    ready: &Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    // A bound on calls in flight keeps the opening burst from timing out.
    let opening = Arc::new(Semaphore::new(256));
    let mut client = None;
    for index in 0..options.streams {
        if index % options.streams_per_connection == 0 {
            let channel = Channel::from_shared(endpoint.to_string())?
                .connect()
                .await?;
            client = Some(RegistrarClient::new(channel));
        }
        let client = client.clone().expect("a connection is open");
        let permit = Arc::clone(&opening).acquire_owned().await?;
        let (app, arrivals, ready) = (app.to_string(), arrivals.clone(), Arc::clone(ready));
        streams.spawn(async move {
            let permit = Some(permit);
            watch_with_permit(client, app, arrivals, ready, permit).await;
        });
    }
    Ok(())
}

async fn watch(
    client: RegistrarClient<Channel>,
    app: String,
    arrivals: mpsc::UnboundedSender<Instant>,
    ready: Arc<AtomicUsize>,
) {
    watch_with_permit(client, app, arrivals, ready, None).await;
}

/// Watches `app`, counts the stream in `ready` once its first message is
/// in, and sends the arrival time of every message that shows a new kid.
async fn watch_with_permit(
    mut client: RegistrarClient<Channel>,
    app: String,
    arrivals: mpsc::UnboundedSender<Instant>,
    ready: Arc<AtomicUsize>,
    mut permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let request = WatchRotationsRequest {
        client_ids: vec![app],
        include_private_keys: false,
    };
    let Ok(response) = client.watch_rotations(request).await else {
        return;
    };
    let mut stream = response.into_inner();
    let mut kids = HashSet::new();
    let mut first = true;
    while let Ok(Some(message)) = stream.message().await {
        let arrived = Instant::now();
        let new_kid = add_kids(&mut kids, &message);
        if first {
            first = false;
            permit.take();
            ready.fetch_add(1, Ordering::Relaxed);
        } else if new_kid && arrivals.send(arrived).is_err() {
            return;
        }
    }
}

/// Adds the message's kids to `kids` and returns whether one was new.
fn add_kids(kids: &mut HashSet<String>, message: &WatchRotationsResponse) -> bool {
    let mut added = false;
    for key in message.apps.iter().flat_map(|app| &app.keys) {
        added |= kids.insert(key.kid.clone());
    }
    added
}

/// Rotates `app`'s key and returns, for `expected` streams, the time from
/// the RotateKey call until the stream had the new key, and the duration of
/// the call itself.
async fn rotate_and_collect(
    client: &mut RegistrarClient<Channel>,
    app: &str,
    arrivals: &mut mpsc::UnboundedReceiver<Instant>,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let started = rotate(client, app, timeout).await?;
    let call = started.elapsed();
    let mut latencies = Vec::with_capacity(expected);
    let collect = async {
        while latencies.len() < expected {
            let arrived = arrivals.recv().await.context("the watch streams ended")?;
            latencies.push(arrived.saturating_duration_since(started));
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(timeout, collect)
        .await
        .with_context(|| {
            format!(
                "only {} of {expected} streams saw the rotation in time",
                latencies.len()
            )
        })??;
    Ok((latencies, call))
}

/// Calls RotateKey, retrying while the previous rotation still runs, and
/// returns when the successful call was sent.
async fn rotate(
    client: &mut RegistrarClient<Channel>,
    app: &str,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let started = Instant::now();
        let request = RotateKeyRequest {
            client_id: app.to_string(),
        };
        match client.rotate_key(request).await {
            Ok(_) => return Ok(started),
            Err(status)
                if status.code() == tonic::Code::FailedPrecondition
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => return Err(status).context("RotateKey failed"),
        }
    }
}

async fn wait_ready(ready: &AtomicUsize, expected: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while ready.load(Ordering::Relaxed) < expected {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {expected} watch streams opened in {timeout:?}",
            ready.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Closes the child's standard input, which stops it, and kills it if it
/// has not exited after 15 seconds.
async fn stop_child(mut child: Child) {
    drop(child.stdin.take());
    if tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}
