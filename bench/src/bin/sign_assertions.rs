//! Benchmarks RSA-2048 client assertion signing on one thread against
//! `openssl speed rsa2048`.

use clap::Parser;
use registrar_bench::signing::{Options, run};
use registrar_bench::system::{print_footer, print_header};

/// Signs client assertions with the registrar's code and compares the rate
/// with `openssl speed -seconds N rsa2048`, run in turn.
#[derive(Debug, Parser)]
struct Cli {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Rounds of each signer, run in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// One round of one second, as a smoke test.
    #[arg(long)]
    quick: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let options = if cli.quick {
        Options {
            seconds: 1,
            rounds: 1,
        }
    } else {
        Options {
            seconds: cli.seconds,
            rounds: cli.rounds,
        }
    };
    print_header("RSA-2048 client assertion signing, one thread");
    run(options)?;
    print_footer();
    Ok(())
}
