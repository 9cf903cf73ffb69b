//! Benchmarks many WatchRotations streams on one registrar process: memory
//! per stream and the fan-out time of one rotation.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use registrar_bench::system::{print_footer, print_header};
use registrar_bench::watchers::{Options, run, serve};

/// Starts a registrar in a child process, opens the streams and rotates
/// keys.
#[derive(Debug, Parser)]
struct Cli {
    /// Streams that watch the rotated app.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// Streams per HTTP/2 connection (tonic's server allows 200).
    #[arg(long, default_value_t = 100)]
    streams_per_connection: usize,
    /// Rotations of each app.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The propagation delay and grace period of rotations, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    rotation_step_ms: u64,
    /// Seconds allowed for opening the streams and for each fan-out.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// 200 streams and one round, as a smoke test.
    #[arg(long)]
    quick: bool,
    /// Run as the registrar process of the benchmark.
    #[arg(long, hide = true)]
    serve: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rotation_step = Duration::from_millis(cli.rotation_step_ms);
    if cli.serve {
        return serve(rotation_step).await;
    }
    let options = Options {
        streams: if cli.quick { 200 } else { cli.streams },
        streams_per_connection: cli.streams_per_connection.max(1),
        rounds: if cli.quick { 1 } else { cli.rounds },
        rotation_step,
        timeout: Duration::from_secs(cli.timeout_secs),
    };
    print_header("WatchRotations streams: memory per stream and rotation fan-out");
    let binary = std::env::current_exe().context("locating this binary")?;
    run(options, &binary).await?;
    print_footer();
    Ok(())
}
