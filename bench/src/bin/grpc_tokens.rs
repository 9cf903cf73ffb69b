//! Benchmarks cached GetAccessToken over gRPC on loopback against a bare
//! tonic echo service with the same message sizes.

use std::time::Duration;

use clap::Parser;
use registrar_bench::system::{print_footer, print_header};
use registrar_bench::tokens::{Options, run};

/// Loads the registrar's cached GetAccessToken and an echo service in
/// turn (ABAB) at each concurrency.
#[derive(Debug, Parser)]
struct Cli {
    /// Requests in flight, one row each, separated by commas.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<usize>,
    /// Seconds per measured round.
    #[arg(long, default_value_t = 3)]
    round_secs: u64,
    /// Rounds per service and concurrency.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The request limit of each round.
    #[arg(long, default_value_t = 500_000)]
    max_requests: u64,
    /// Rounds of 0.3 seconds at 1 and 16 in flight, as a smoke test.
    #[arg(long)]
    quick: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let options = if cli.quick {
        Options {
            concurrencies: vec![1, 16],
            round: Duration::from_millis(300),
            rounds: 1,
            max_requests_per_round: 20_000,
        }
    } else {
        Options {
            concurrencies: cli.concurrency,
            round: Duration::from_secs(cli.round_secs),
            rounds: cli.rounds,
            max_requests_per_round: cli.max_requests,
        }
    };
    print_header("cached GetAccessToken over gRPC against an echo service");
    run(&options).await?;
    print_footer();
    Ok(())
}
