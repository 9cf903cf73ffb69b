//! Bulk registration under a rate-limit budget: N services with three
//! scopes each, registered at once, against the floor that the budget sets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use okta_emulator::RateLimits;
use registrar_api::v1::KeyAlgorithm;

use crate::env::{API_TOKEN, Env, Setup, register};
use crate::stats::{ratio, verdict};

/// The scopes every service requests.
const SCOPES: [&str; 3] = ["okta.users.read", "okta.apps.read", "okta.groups.read"];

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Services registered at once.
    pub services: usize,
    /// The emulator's budgets and window.
    pub rate_limits: RateLimits,
    /// The registrar's share of each bucket (`--okta-rate-share`).
    pub rate_share: f64,
    /// The time limit of the whole run.
    pub timeout: Duration,
}

/// The measurements of one run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Wall time from the first RegisterService call to the last response.
    pub elapsed: Duration,
    /// The time the budget allows for the Okta calls made: calls /
    /// (budget x share) x window, for the slowest bucket.
    pub floor: Duration,
    /// The shortest time in which the calls can fit the budget when the
    /// first window's budget is spent at once: (windows needed - 1) x
    /// window, for the slowest bucket. It is zero when the calls fit in one
    /// window.
    pub window_floor: Duration,
    /// Calls that failed, 429s among them.
    pub failed_calls: usize,
    /// Requests that the emulator rejected with 429 because the bucket's
    /// budget was spent.
    pub over_budget: usize,
}

/// Runs the benchmark and prints the calls per bucket, the floor and the
/// verdict.
pub async fn run(options: &Options) -> anyhow::Result<Outcome> {
    let mut emulator = okta_emulator::Config::new(API_TOKEN);
    emulator.rate_limits = options.rate_limits.clone();
    let env = Env::start(Setup {
        emulator,
        rate_share: options.rate_share,
        ..Setup::default()
    })
    .await?;

    let start = Instant::now();
    let mut calls = Vec::new();
    for index in 0..options.services {
        let mut client = env.client.clone();
        calls.push(tokio::spawn(async move {
            let name = format!("bench-bulk-{index:04}");
            register(&mut client, &name, &SCOPES, KeyAlgorithm::Es256).await
        }));
    }
    let mut failed_calls = 0;
    let all = async {
        for call in calls {
            if let Err(err) = call.await.context("joining a RegisterService call")? {
                println!("failed: {err:#}");
                failed_calls += 1;
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(options.timeout, all)
        .await
        .context("bulk registration timed out")??;
    let elapsed = start.elapsed();

    let (floor, window_floor) = print_buckets(&env, options);
    let outcome = Outcome {
        elapsed,
        floor,
        window_floor,
        failed_calls,
        over_budget: env.emulator.over_budget_requests(),
    };
    let time_ratio = ratio(elapsed.as_secs_f64(), floor.as_secs_f64());
    println!(
        "{} services x {} scopes: {:.1} s, floor {:.1} s, ratio {time_ratio:.2}; failed calls {}; 429 responses from the emulator {}",
        options.services,
        SCOPES.len(),
        elapsed.as_secs_f64(),
        floor.as_secs_f64(),
        outcome.failed_calls,
        outcome.over_budget
    );
    // The floor above counts the last window in full and the first one
    // not at all, which flatters a run whose calls end early in their last
    // window. The window floor does not.
    let window_ratio = if window_floor.is_zero() {
        println!("window floor: 0 s (one window holds every call), no ratio");
        1.0
    } else {
        let window_ratio = ratio(elapsed.as_secs_f64(), window_floor.as_secs_f64());
        println!(
            "window floor {:.1} s, ratio {window_ratio:.2}",
            window_floor.as_secs_f64()
        );
        window_ratio
    };
    println!(
        "target <= 1.1 x both floors, no failed call: {}",
        verdict(time_ratio <= 1.1 && window_ratio <= 1.1 && outcome.failed_calls == 0)
    );
    env.stop().await?;
    Ok(outcome)
}

/// Prints the accepted Okta calls per bucket with the budget the registrar
/// may use, and returns the two floors of [`Outcome`].
fn print_buckets(env: &Env, options: &Options) -> (Duration, Duration) {
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    for request in env.emulator.requests() {
        if let Some(bucket) = request.bucket
            && request.status != 429
        {
            *accepted.entry(bucket).or_default() += 1;
        }
    }
    let limits = &options.rate_limits;
    let window = limits.window.as_secs_f64();
    let mut floor: f64 = 0.0;
    let mut window_floor: f64 = 0.0;
    println!("| bucket | Okta calls | budget per window x share | floor | window floor |");
    println!("| --- | --- | --- | --- | --- |");
    for (bucket, calls) in &accepted {
        let budget = match bucket.as_str() {
            "apps" => limits.apps,
            "app_by_id" => limits.app_by_id,
            "clients" => limits.clients,
            "token" => limits.token,
            _ => limits.other,
        };
        let allowance = f64::from(budget) * options.rate_share;
        let bucket_floor = *calls as f64 / allowance * window;
        floor = floor.max(bucket_floor);
        let per_window = allowance.floor().max(1.0);
        let bucket_window_floor = ((*calls as f64 / per_window).ceil() - 1.0).max(0.0) * window;
        window_floor = window_floor.max(bucket_window_floor);
        println!(
            "| {bucket} | {calls} | {allowance:.1} per {window:.0} s | {bucket_floor:.1} s | {bucket_window_floor:.1} s |"
        );
    }
    (
        Duration::from_secs_f64(floor),
        Duration::from_secs_f64(window_floor),
    )
}
