//! A closed-loop load generator: a fixed number of tasks, each sending one
//! request after the other, bounded by a duration and a request count.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::stats::percentile;

/// The measurements of one load run.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Requests that succeeded.
    pub ok: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Wall time from the first request to the last response.
    pub elapsed: Duration,
    /// The latency of every successful request, sorted.
    pub latencies: Vec<Duration>,
}

impl LoadResult {
    /// Returns successful requests per second.
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Returns the `quantile` (0 to 1) of the latencies.
    pub fn latency(&self, quantile: f64) -> Duration {
        percentile(&self.latencies, quantile)
    }

    /// Adds another run's requests, time and latencies to this one.
    pub fn merge(&mut self, other: LoadResult) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        self.latencies.sort_unstable();
    }
}

/// Runs `concurrency` tasks that call `call` back to back until `duration`
/// has passed or `max_requests` calls have started.
pub async fn run<F, Fut, E>(
    concurrency: usize,
    duration: Duration,
    max_requests: u64,
    call: F,
) -> LoadResult
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Send + 'static,
{
    let started = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let call = call.clone();
        let started = Arc::clone(&started);
        tasks.push(tokio::spawn(async move {
            let mut result = LoadResult::default();
            while Instant::now() < deadline
                && started.fetch_add(1, Ordering::Relaxed) < max_requests
            {
                let sent = Instant::now();
                match call().await {
                    Ok(()) => {
                        result.ok += 1;
                        result.latencies.push(sent.elapsed());
                    }
                    Err(_) => result.errors += 1,
                }
            }
            result
        }));
    }
    let mut total = LoadResult::default();
    for task in tasks {
        let result = task.await.expect("load task does not panic");
        total.ok += result.ok;
        total.errors += result.errors;
        total.latencies.extend(result.latencies);
    }
    total.elapsed = start.elapsed();
    total.latencies.sort_unstable();
    total
}
