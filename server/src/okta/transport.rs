//! Sending one Okta request: pacing it within its rate-limit bucket,
//! retrying what may be retried, and turning failures into [`OktaError`].

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Request, Response, StatusCode};
use tokio::time::Instant;

use super::error::{ErrorBody, OktaError};
use super::ratelimit::{Admission, Bucket, Permit, RateLimitHeaders, retry_after_429};
use super::retry::{self, RetryPolicy};
use super::{OktaClient, TOKEN_REQUEST, header_str};

/// How often a request waiting for a response in its bucket checks the
/// bucket again, in case that response never comes.
const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The retry delay that UNAVAILABLE errors suggest when Okta failed or
/// could not be reached.
pub const UNAVAILABLE_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Whether a request may be sent again after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    /// Sending it twice has the effect of sending it once (GET, PUT,
    /// DELETE, lifecycle changes).
    Safe,
    /// It is not idempotent, so it is resent only when the failure proves
    /// that Okta did not apply it: a 429, or a failure to connect.
    OnlyIfNotApplied,
    /// Never resent here: a token request's assertion must not be reused,
    /// so the caller retries with a new one.
    Never,
}

/// The retry loop's decision after a failed attempt.
enum Verdict {
    /// Return the error.
    Fail(OktaError),
    /// Retry after the wait, unless the retry limit or deadline forbids.
    Retry {
        error: OktaError,
        wait: Duration,
        maybe_applied: bool,
    },
}

impl OktaClient {
    /// Sends a request, pacing it within its bucket and retrying as
    /// `replay` allows, and turns every non-2xx response into an error.
    pub(super) async fn send(
        &self,
        operation: &'static str,
        replay: Replay,
        request: Request,
    ) -> Result<Response, OktaError> {
        let bucket = Bucket::classify(request.method(), request.url().path());
        let is_delete = request.method() == reqwest::Method::DELETE;
        let mut first_request_id: Option<String> = None;
        let mut maybe_applied = false;
        let mut retries = 0;
        loop {
            let mut attempt = request
                .try_clone()
                .expect("request bodies are built in memory, so requests can be cloned");
            if retries > 0 {
                add_retry_headers(attempt.headers_mut(), first_request_id.as_deref(), retries);
            }
            if operation != TOKEN_REQUEST {
                self.authorize_attempt(&mut attempt).await?;
            }
            let permit = self.pace(operation, bucket).await?;
            let result = self.attempt(operation, permit, attempt).await;
            let error = match result {
                Ok(response) => return Ok(response),
                // A DELETE that an earlier attempt may have applied is done
                // when the resource is gone.
                Err(error) if is_delete && maybe_applied && error.is_not_found() => {
                    tracing::debug!(operation, "resource already gone after a retried delete");
                    let empty = tonic::codegen::http::Response::new(Vec::<u8>::new());
                    return Ok(Response::from(empty));
                }
                Err(error) => error,
            };
            if first_request_id.is_none() {
                first_request_id = error.request_id().map(str::to_owned);
            }
            let (error, wait, applied) = match self.verdict(replay, retries, error) {
                Verdict::Fail(error) => return Err(error),
                Verdict::Retry {
                    error,
                    wait,
                    maybe_applied,
                } => (error, wait, maybe_applied),
            };
            maybe_applied |= applied;
            if retry::passes_deadline(wait) {
                tracing::debug!(operation, wait_ms = wait.as_millis(), %error, "not retrying: the wait passes the call's deadline");
                return Err(error.with_retry_after(wait));
            }
            retries += 1;
            crate::metrics::okta_retry(&error);
            tracing::warn!(
                operation,
                bucket = bucket.map(Bucket::name),
                retry = retries,
                max_retries = self.retry.max_retries,
                wait_ms = wait.as_millis(),
                %error,
                "retrying okta call"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Decides whether a failed attempt is retried, and after how long.
    fn verdict(&self, replay: Replay, retries: u32, error: OktaError) -> Verdict {
        let policy: &RetryPolicy = &self.retry;
        let next = retries + 1;
        let (retryable, wait, maybe_applied) = match &error {
            OktaError::Api {
                status: 429,
                retry_after,
                ..
            } => {
                let reset = retry_after.unwrap_or(super::ratelimit::DEFAULT_RESET_WAIT);
                (
                    replay != Replay::Never,
                    policy.after_rate_limit(reset),
                    false,
                )
            }
            OktaError::Api { status, .. } if is_retryable_status(*status) => {
                (replay == Replay::Safe, policy.backoff(next), true)
            }
            OktaError::Transport { source, .. } if source.is_connect() => {
                (replay != Replay::Never, policy.backoff(next), false)
            }
            OktaError::Transport { .. } => (replay == Replay::Safe, policy.backoff(next), true),
            _ => (false, Duration::ZERO, false),
        };
        if !retryable || retries >= policy.max_retries {
            let suggested = match &error {
                OktaError::Api { status: 429, .. } => wait,
                _ => UNAVAILABLE_RETRY_DELAY.max(wait),
            };
            let error = if error.is_retryable() {
                error.with_retry_after(suggested)
            } else {
                error
            };
            return Verdict::Fail(error);
        }
        Verdict::Retry {
            error,
            wait,
            maybe_applied,
        }
    }

    /// Waits until the request's bucket has room. Fails when the wait would
    /// pass the gRPC call's deadline.
    async fn pace(
        &self,
        operation: &'static str,
        bucket: Option<Bucket>,
    ) -> Result<Option<Permit>, OktaError> {
        let Some(bucket) = bucket else {
            return Ok(None);
        };
        let changed = self.pacer.changed();
        loop {
            let notified = changed.notified();
            let (admission, permit) = self.pacer.admit(bucket);
            if permit.is_some() {
                return Ok(permit);
            }
            let wait = match admission {
                Admission::Go => return Ok(None),
                Admission::WaitUntil(end) => end.saturating_duration_since(Instant::now()),
                Admission::WaitForResponse => RECHECK_INTERVAL,
            };
            if retry::passes_deadline(wait) {
                tracing::debug!(operation, bucket = %bucket, wait_ms = wait.as_millis(), "rate-limit budget spent past the call's deadline");
                return Err(OktaError::RateLimited {
                    operation,
                    bucket: bucket.name(),
                    retry_after: wait.max(Duration::from_secs(1)),
                });
            }
            match admission {
                Admission::WaitUntil(_) => {
                    tracing::debug!(operation, bucket = %bucket, wait_ms = wait.as_millis(), "waiting for the rate-limit window to reset");
                    tokio::time::sleep(wait).await;
                }
                _ => {
                    let _ = tokio::time::timeout(wait, notified).await;
                }
            }
        }
    }

    /// Sends one attempt and records its rate-limit headers.
    async fn attempt(
        &self,
        operation: &'static str,
        permit: Option<Permit>,
        request: Request,
    ) -> Result<Response, OktaError> {
        let bucket = Bucket::classify(request.method(), request.url().path());
        let started = Instant::now();
        let result = self.http.execute(request).await;
        let response = match result {
            Ok(response) => response,
            Err(source) => {
                crate::metrics::okta_attempt(operation, None, started.elapsed(), bucket, None);
                if let Some(permit) = permit {
                    permit.observe(None);
                }
                return Err(OktaError::Transport {
                    operation,
                    source: source.without_url(),
                });
            }
        };
        let status = response.status();
        let request_id = header_str(response.headers(), "x-okta-request-id");
        super::request_ids::record(request_id.as_deref());
        let limits = RateLimitHeaders::parse_with_clock(response.headers(), self.pacer.clock());
        let (code, elapsed) = (Some(status.as_u16()), started.elapsed());
        crate::metrics::okta_attempt(operation, code, elapsed, bucket, limits.as_ref());
        let (available, window_left) = match permit {
            Some(permit) => permit.observe(limits.as_ref()),
            None => (0, None),
        };
        tracing::debug!(
            operation,
            status = status.as_u16(),
            okta_request_id = request_id.as_deref().unwrap_or(""),
            bucket = bucket.map(Bucket::name),
            okta_remaining = limits.map(|limits| limits.remaining),
            registrar_available = available,
            window_left_ms = window_left.map(|left| left.as_millis()),
            "okta call"
        );
        if status.is_success() {
            return Ok(response);
        }

        let retry_after =
            (status == StatusCode::TOO_MANY_REQUESTS).then(|| retry_after_429(response.headers()));
        let dpop_nonce = header_str(response.headers(), "dpop-nonce");
        let www_authenticate = header_str(response.headers(), "www-authenticate");
        let body = response.bytes().await.unwrap_or_default();
        Err(OktaError::Api {
            operation,
            status: status.as_u16(),
            body: Box::new(ErrorBody::parse(&body)),
            request_id,
            retry_after,
            dpop_nonce,
            www_authenticate,
        })
    }
}

/// Returns whether an HTTP status means Okta may succeed on a later try.
fn is_retryable_status(status: u16) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
}

/// Adds the headers Okta's SDKs send on a retry, which tie it to the
/// original request in Okta's logs.
fn add_retry_headers(headers: &mut HeaderMap, first_request_id: Option<&str>, retries: u32) {
    if let Some(id) = first_request_id
        && let Ok(value) = HeaderValue::from_str(id)
    {
        headers.insert("x-okta-retry-for", value);
    }
    headers.insert("x-okta-retry-count", HeaderValue::from(retries));
}
