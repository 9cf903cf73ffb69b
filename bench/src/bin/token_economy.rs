//! Benchmarks how many token requests reach Okta when many callers ask for
//! one app's token at once.

use clap::Parser;
use registrar_bench::economy::{Options, run};
use registrar_bench::system::{print_footer, print_header};

/// Sends concurrent GetAccessToken calls for one app and scope set per
/// round and counts the emulator's token requests.
#[derive(Debug, Parser)]
struct Cli {
    /// Concurrent callers per round.
    #[arg(long, default_value_t = 100)]
    callers: usize,
    /// Rounds, each with a new app.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// One round, as a smoke test.
    #[arg(long)]
    quick: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let options = Options {
        callers: cli.callers,
        rounds: if cli.quick { 1 } else { cli.rounds },
    };
    print_header("token endpoint requests for concurrent GetAccessToken callers");
    run(options).await?;
    print_footer();
    Ok(())
}
