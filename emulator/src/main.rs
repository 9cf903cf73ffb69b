//! The `okta-emulator` binary: serves an emulated Okta org until SIGINT or
//! SIGTERM.
//!
//! It prints one line to stdout, `org_url=http://127.0.0.1:PORT`, once the
//! port is bound, and logs to stderr.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use okta_emulator::{Config, Emulator, Fault, RateLimits, org_url_for};
use tracing_subscriber::EnvFilter;

/// Token accepted when neither `--api-token` nor `OKTA_EMULATOR_API_TOKEN`
/// is set.
const DEFAULT_API_TOKEN: &str = "emulator-dev-token";

/// Serves an in-memory emulation of Okta's app, client registration, app
/// key, scope grant and token endpoints.
#[derive(Debug, Parser)]
#[command(name = "okta-emulator", version)]
struct Cli {
    /// Socket address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// API token that requests must send as `Authorization: SSWS TOKEN`
    /// [default: emulator-dev-token].
    #[arg(
        long,
        value_name = "TOKEN",
        env = "OKTA_EMULATOR_API_TOKEN",
        hide_env_values = true
    )]
    api_token: Option<String>,

    /// Requests per window for /api/v1/apps and /api/v1/apps/{id}/… subpaths.
    #[arg(long, value_name = "N", default_value_t = RateLimits::default().apps,
          value_parser = clap::value_parser!(u32).range(1..))]
    rate_limit_apps: u32,

    /// Requests per window for GET, PUT and DELETE /api/v1/apps/{id}.
    #[arg(long, value_name = "N", default_value_t = RateLimits::default().app_by_id,
          value_parser = clap::value_parser!(u32).range(1..))]
    rate_limit_app_by_id: u32,

    /// Requests per window for /oauth2/v1/clients and its subpaths.
    #[arg(long, value_name = "N", default_value_t = RateLimits::default().clients,
          value_parser = clap::value_parser!(u32).range(1..))]
    rate_limit_clients: u32,

    /// Requests per window for /oauth2/v1/token.
    #[arg(long, value_name = "N", default_value_t = RateLimits::default().token,
          value_parser = clap::value_parser!(u32).range(1..))]
    rate_limit_token: u32,

    /// Requests per window for every other /api/v1/… path.
    #[arg(long, value_name = "N", default_value_t = RateLimits::default().other,
          value_parser = clap::value_parser!(u32).range(1..))]
    rate_limit_other: u32,

    /// Length of a rate-limit window, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    rate_limit_window_ms: u64,

    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    access_token_lifetime_secs: u64,

    /// How far in the future the `iat` of a client assertion or DPoP proof
    /// may be, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    iat_leeway_secs: u64,

    /// A fault to inject, as ENDPOINT:KIND[=VALUE]:probability=P or
    /// ENDPOINT:KIND[=VALUE]:count=N, such as
    /// create_client:status=503:probability=0.1; repeat for several.
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<Fault>,
}

impl Cli {
    /// Builds the emulator config; fails on an empty token.
    fn config(&self) -> anyhow::Result<Config> {
        let api_token = match &self.api_token {
            Some(token) if token.trim().is_empty() => {
                anyhow::bail!(
                    "invalid --api-token: the token is empty; pass a non-empty token or leave it unset"
                )
            }
            Some(token) => token.clone(),
            None => {
                tracing::warn!(
                    token = DEFAULT_API_TOKEN,
                    "no --api-token or OKTA_EMULATOR_API_TOKEN given; accepting the default token"
                );
                DEFAULT_API_TOKEN.to_owned()
            }
        };
        let mut config = Config::new(api_token);
        config.rate_limits = RateLimits {
            window: Duration::from_millis(self.rate_limit_window_ms),
            apps: self.rate_limit_apps,
            app_by_id: self.rate_limit_app_by_id,
            clients: self.rate_limit_clients,
            token: self.rate_limit_token,
            other: self.rate_limit_other,
        };
        config.access_token_lifetime = Duration::from_secs(self.access_token_lifetime_secs);
        config.iat_leeway = Duration::from_secs(self.iat_leeway_secs);
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if error.use_stderr() => {
            // Only the first line: it names the flag and the bad value.
            let message = error.to_string();
            eprintln!(
                "{}",
                message.lines().next().unwrap_or("error: invalid arguments")
            );
            return ExitCode::from(2);
        }
        Err(error) => error.exit(),
    };

    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let config = cli.config()?;
    let runtime = tokio::runtime::Runtime::new().context("failed to start the Tokio runtime")?;
    runtime.block_on(serve(cli.listen, config, &cli.faults))
}

async fn serve(listen: SocketAddr, config: Config, faults: &[Fault]) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen on --listen {listen}"))?;
    let local_addr = listener
        .local_addr()
        .context("failed to read the listening address")?;
    // Register the handlers before announcing the URL, so that a signal
    // sent right after the announcement stops the server gracefully.
    let shutdown = shutdown_signal().context("failed to listen for SIGINT and SIGTERM")?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "org_url={}", org_url_for(local_addr)).context("failed to write to stdout")?;
    stdout.flush().context("failed to flush stdout")?;
    drop(stdout);

    let emulator = Emulator::new(config);
    for fault in faults {
        emulator
            .add_fault(fault.clone())
            .map_err(|message| anyhow::anyhow!("invalid --fault: {message}"))?;
    }
    emulator
        .serve(listener, shutdown)
        .await
        .context("serving failed")
}

/// Registers handlers for SIGINT and SIGTERM and returns a future that
/// completes on the first of them.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
    })
}

/// Returns a future that completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "failed to listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received, shutting down");
    })
}
