//! The `registrar` binary: parses options, sets up logging, and runs the
//! server or the demo.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use registrar_server::config::{Cli, Command, LogFormat};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo prints its own steps on stdout; only warnings go to stderr
    // unless RUST_LOG asks for more.
    let default_level = match cli.command {
        Command::Demo(_) => "warn",
        Command::Serve(_) => "info",
        Command::HashToken(_) | Command::Operator(_) => "warn",
    };
    init_tracing(cli.log_format, default_level);
    let command = match cli.command {
        // Operator commands have their own exit codes.
        Command::Operator(command) => return registrar_server::cli::run(command).await,
        command => command,
    };
    match run(command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("registrar: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let listen = args.listen;
            let config = args.into_config()?;
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("--listen: cannot bind {listen}"))?;
            registrar_server::run(listener, config, shutdown_signal()).await
        }
        Command::HashToken(args) => hash_token(&args.name),
        Command::Operator(_) => unreachable!("main runs operator commands"),
        #[cfg(feature = "demo")]
        Command::Demo(args) => registrar_server::demo::run(args).await,
        #[cfg(not(feature = "demo"))]
        Command::Demo(_) => {
            anyhow::bail!("this build has no demo; rebuild with the default \"demo\" feature")
        }
    }
}

/// Reads a token from standard input and prints its bearer token file
/// entry. A trailing line break is not part of the token.
fn hash_token(name: &str) -> anyhow::Result<()> {
    let mut input = zeroize::Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)
        .context("reading the token from standard input")?;
    let token = input.trim_end_matches(['\r', '\n']);
    let entry = registrar_server::auth::token_file_entry(name, token)?;
    print!("{entry}");
    Ok(())
}

fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_level))
        // sqlx logs an unrecognized database URL parameter with its value,
        // which may be a mistyped password, so this directive overrides
        // RUST_LOG for that target.
        .add_directive(
            "sqlx_postgres::options::parse=error"
                .parse()
                .expect("a valid directive"),
        );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested");
    // A second signal stops the process without waiting for requests.
    tokio::spawn(async {
        let interrupt = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            () = interrupt => {}
            () = terminate => {}
        }
        eprintln!("registrar: second signal; stopping without waiting for in-flight requests");
        std::process::exit(130);
    });
}
