//! Retry rules of Okta calls: which failures may be retried, the capped
//! exponential backoff with jitter between attempts, and the deadline of
//! the gRPC call that the waits must fit in.
//!
//! Some requests change state and are not idempotent: creating a client,
//! posting a grant, adding a key. Such a request is resent only when the
//! failure proves that Okta did not apply it, which a 429 or a failure to
//! connect does. Any other failure may have been applied, so the caller
//! looks the result up before trying again.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;

/// The default number of retries after the first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 4;

/// The retry settings of the Okta client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 turns retries off.
    pub max_retries: u32,
    /// The backoff before the first retry of a 5xx or transport failure.
    pub base_delay: Duration,
    /// The maximum backoff between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: DEFAULT_MAX_RETRIES,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Computes the backoff before retry number `retry` (1 for the first):
    /// `base_delay` doubled per retry, capped at `max_delay`, with a random
    /// part of up to half of it so that concurrent callers spread out.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(16);
        let ceiling = self
            .base_delay
            .saturating_mul(1 << exponent)
            .min(self.max_delay);
        let half = ceiling / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis().max(1));
        half + Duration::from_millis(u64::try_from(jitter).unwrap_or(u64::MAX))
    }

    /// Computes the wait before a retry after a 429: the time until the
    /// bucket resets, plus up to 10% jitter, so that callers that waited
    /// together do not all return at once.
    pub fn after_rate_limit(&self, reset_wait: Duration) -> Duration {
        let spread = (reset_wait / 10).as_millis().max(1);
        let jitter = rand::rng().random_range(0..=spread);
        reset_wait + Duration::from_millis(u64::try_from(jitter).unwrap_or(u64::MAX))
    }
}

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Returns the deadline of the gRPC call this task serves, if the caller
/// set one (`grpc-timeout`).
pub fn deadline() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Returns whether waiting `wait` from now would pass the call's deadline.
pub fn passes_deadline(wait: Duration) -> bool {
    deadline().is_some_and(|deadline| Instant::now() + wait >= deadline)
}

/// Runs `future` with a deadline that [`deadline`] returns inside it.
pub async fn with_deadline<F: Future>(deadline: Option<Instant>, future: F) -> F::Output {
    match deadline {
        Some(deadline) => DEADLINE.scope(deadline, future).await,
        None => future.await,
    }
}

/// Parses a `grpc-timeout` value: at most eight digits and a unit (`H`,
/// `M`, `S`, `m`, `u` or `n`), as the gRPC over HTTP/2 spec defines it.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// A gRPC service wrapper that runs every call with the deadline from its
/// `grpc-timeout` header, so that the Okta client can fail fast when a rate
/// limit would make it wait past the deadline.
#[derive(Debug, Clone)]
pub struct WithDeadline<S>(pub S);

impl<S: NamedService> NamedService for WithDeadline<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for WithDeadline<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|timeout| Instant::now() + timeout);
        let future = self.0.call(request);
        Box::pin(with_deadline(deadline, future))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50), "{first:?}");
            assert!(first <= Duration::from_millis(100), "{first:?}");
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200), "{third:?}");
            assert!(third <= Duration::from_millis(400), "{third:?}");
            let late = policy.backoff(40);
            assert!(late >= Duration::from_millis(500), "{late:?}");
            assert!(late <= Duration::from_secs(1), "{late:?}");
        }
    }

    #[test]
    fn rate_limit_wait_honours_the_reset() {
        let policy = RetryPolicy::default();
        for _ in 0..50 {
            let wait = policy.after_rate_limit(Duration::from_secs(10));
            assert!(wait >= Duration::from_secs(10), "{wait:?}");
            assert!(wait <= Duration::from_secs(11), "{wait:?}");
        }
    }

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("5s"), None);
        assert_eq!(parse_grpc_timeout("-5S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
    }

    #[tokio::test]
    async fn deadline_is_visible_inside_the_scope() {
        assert_eq!(deadline(), None);
        let at = Instant::now() + Duration::from_secs(2);
        let inside = with_deadline(Some(at), async { deadline() }).await;
        assert_eq!(inside, Some(at));
        let passes = with_deadline(Some(at), async { passes_deadline(Duration::from_secs(5)) });
        assert!(passes.await);
        assert!(!passes_deadline(Duration::from_secs(5)));
    }
}
