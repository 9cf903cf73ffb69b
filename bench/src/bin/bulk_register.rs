//! Benchmarks bulk RegisterService under an emulator rate-limit budget
//! against the floor that the budget sets.

use std::time::Duration;

use clap::Parser;
use okta_emulator::RateLimits;
use registrar_bench::bulk::{Options, run};
use registrar_bench::system::{print_footer, print_header};

/// Registers N services with three scopes each at once.
#[derive(Debug, Parser)]
struct Cli {
    /// Services registered at once.
    #[arg(long, default_value_t = 30)]
    services: usize,
    /// The emulator's rate-limit window, in seconds.
    #[arg(long, default_value_t = 10)]
    window_secs: u64,
    /// The emulator's budget of /api/v1/apps and its subpaths per window.
    #[arg(long, default_value_t = 40)]
    apps_budget: u32,
    /// The emulator's budget of /oauth2/v1/clients per window.
    #[arg(long, default_value_t = 20)]
    clients_budget: u32,
    /// The registrar's share of each bucket (--okta-rate-share).
    #[arg(long, default_value_t = 0.5)]
    rate_share: f64,
    /// Seconds allowed for the whole registration.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Four services in windows of two seconds, as a smoke test.
    #[arg(long)]
    quick: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (services, window, apps, clients) = if cli.quick {
        (4, Duration::from_secs(2), 8, 4)
    } else {
        (
            cli.services,
            Duration::from_secs(cli.window_secs),
            cli.apps_budget,
            cli.clients_budget,
        )
    };
    let options = Options {
        services,
        rate_limits: RateLimits {
            window,
            apps,
            clients,
            ..RateLimits::default()
        },
        rate_share: cli.rate_share,
        timeout: Duration::from_secs(cli.timeout_secs),
    };
    print_header("bulk RegisterService under a rate-limit budget");
    run(&options).await?;
    print_footer();
    Ok(())
}
