//! Runs the quick modes of the signing and token-economy benchmarks, so
//! that `cargo test --workspace` catches a benchmark that no longer runs.
//! The rates are not checked: a debug build on a shared machine does
//! not measure speed reliably.

use registrar_bench::{economy, signing};

#[test]
fn signing_quick_mode_runs() {
    let rates = signing::run(signing::Options {
        seconds: 1,
        rounds: 1,
    })
    .expect("signing benchmark runs");
    assert!(rates.registrar > 0.0, "{rates:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn token_economy_quick_mode_runs() {
    let rounds = economy::run(economy::Options {
        callers: 100,
        rounds: 1,
    })
    .await
    .expect("token economy benchmark runs");
    assert_eq!(rounds.len(), 1);
    assert_eq!(rounds[0].failed_callers, 0);
    assert_eq!(rounds[0].token_requests, 1);
}
