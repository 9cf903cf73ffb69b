//! Token-endpoint economy: how many token requests reach the emulator when
//! many callers ask for a token of one app and scope set at once.

use std::sync::Arc;

use anyhow::Context;
use registrar_api::v1::{GetAccessTokenRequest, KeyAlgorithm};
use tokio::sync::Barrier;

use crate::env::{Env, Setup};
use crate::stats::verdict;

/// The scopes every caller requests.
const SCOPES: [&str; 2] = ["okta.users.read", "okta.apps.read"];

/// Settings of one run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Concurrent GetAccessToken callers per round.
    pub callers: usize,
    /// Rounds, each with a new app and an empty cache.
    pub rounds: usize,
}

/// The outcome of one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Requests to the token endpoint that reached the emulator during the
    /// round, whatever their status.
    pub token_requests: usize,
    /// Callers whose call failed.
    pub failed_callers: usize,
}

/// Runs the benchmark and prints one line per round and the verdict.
pub async fn run(options: Options) -> anyhow::Result<Vec<Round>> {
    let env = Env::start(Setup::default()).await?;
    // Four connections carry the callers, as several client processes would.
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            registrar_api::v1::registrar_client::RegistrarClient::connect(format!(
                "http://{}",
                env.address
            ))
            .await?,
        );
    }
    let mut rounds = Vec::new();
    for round in 1..=options.rounds {
        let name = format!("bench-economy-{round}");
        let client_id = env
            .register(&name, &SCOPES, KeyAlgorithm::Rs2562048)
            .await?;
        let before = token_requests(&env);
        let barrier = Arc::new(Barrier::new(options.callers));
        let mut callers = Vec::new();
        for index in 0..options.callers {
            let mut client = channels[index % channels.len()].clone();
            let barrier = Arc::clone(&barrier);
            let request = GetAccessTokenRequest {
                client_id: client_id.clone(),
                scopes: SCOPES.iter().map(|scope| scope.to_string()).collect(),
                force_refresh: false,
            };
            callers.push(tokio::spawn(async move {
                barrier.wait().await;
                client.get_access_token(request).await.is_ok()
            }));
        }
        let mut failed_callers = 0;
        for caller in callers {
            if !caller.await.context("joining a caller")? {
                failed_callers += 1;
            }
        }
        let result = Round {
            token_requests: token_requests(&env) - before,
            failed_callers,
        };
        println!(
            "round {round}: {} callers, {} token requests reached the emulator, {} callers failed",
            options.callers, result.token_requests, result.failed_callers
        );
        rounds.push(result);
    }
    let worst = rounds.iter().map(|round| round.token_requests).max();
    let failed: usize = rounds.iter().map(|round| round.failed_callers).sum();
    println!(
        "target 1 token request per round (baseline: 1, the least that can serve the callers): worst round {}, failed callers {failed}, {}",
        worst.unwrap_or(0),
        verdict(worst == Some(1) && failed == 0)
    );
    env.stop().await?;
    Ok(rounds)
}

/// Counts the emulator's token endpoint requests so far.
fn token_requests(env: &Env) -> usize {
    env.emulator
        .requests()
        .iter()
        .filter(|request| request.path == "/oauth2/v1/token")
        .count()
}
