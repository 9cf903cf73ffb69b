//! Okta's rate-limit buckets, the `X-Rate-Limit-*` headers, and the pacer
//! that keeps the registrar inside its share of each bucket.
//!
//! Okta counts requests per bucket, a group of endpoints with one budget
//! per window of about a minute, and reports the bucket's state on every
//! response: `X-Rate-Limit-Limit` (the budget), `X-Rate-Limit-Remaining`
//! and `X-Rate-Limit-Reset` (UTC epoch seconds at which the window ends).
//! All waits are computed from `Reset` minus the response's `Date`
//! header, both Okta's clock, so a wrong local clock does not matter.
//!
//! The pacer spends at most `share` of each bucket's budget per window and
//! keeps the rest for other clients of the org. By default Okta lets one
//! API token use at most half of a bucket.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{DATE, HeaderMap};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The maximum wait that rate-limit headers can set. Okta's windows last
/// one minute, so a longer wait means a skewed or malformed header.
pub const MAX_RESET_WAIT: Duration = Duration::from_secs(61);

/// The wait when a 429 response carries no usable rate-limit headers.
pub const DEFAULT_RESET_WAIT: Duration = Duration::from_secs(10);

/// How many requests may be in flight in a bucket whose budget is not known
/// yet, because no response has reported it.
const UNKNOWN_BUCKET_CONCURRENCY: u32 = 2;

/// A group of Okta endpoints that share one budget. The mapping follows the
/// table that Okta's Terraform provider generates from Okta's own rate-limit
/// configuration (`okta/internal/apimutex/rate_limit_lines.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// `/api/v1/apps` and every `/api/v1/apps/{id}/…` subpath (grants,
    /// keys, lifecycle).
    Apps,
    /// `GET`, `PUT` and `DELETE /api/v1/apps/{id}`.
    AppById,
    /// `/oauth2/v1/clients` and its subpaths.
    Clients,
    /// `POST /oauth2/v1/token`.
    Token,
    /// Every other `/api/v1/…` path.
    Other,
}

impl Bucket {
    /// Finds the bucket of a request, or `None` for paths that Okta does not
    /// rate limit, such as `/oauth2/v1/keys`. `path` excludes the query.
    pub fn classify(method: &Method, path: &str) -> Option<Self> {
        if let Some(rest) = path.strip_prefix("/api/v1/apps") {
            let single_app = rest.len() > 1 && rest.starts_with('/') && !rest[1..].contains('/');
            if single_app && [Method::GET, Method::PUT, Method::DELETE].contains(method) {
                return Some(Self::AppById);
            }
            if rest.is_empty() || rest.starts_with('/') {
                return Some(Self::Apps);
            }
        }
        if path == "/oauth2/v1/clients" || path.starts_with("/oauth2/v1/clients/") {
            return Some(Self::Clients);
        }
        if path.ends_with("/v1/token") && path.starts_with("/oauth2/") {
            return Some(Self::Token);
        }
        if path.starts_with("/api/v1/") {
            return Some(Self::Other);
        }
        None
    }

    /// Returns the bucket's name in logs, which is Okta's path pattern.
    pub fn name(self) -> &'static str {
        match self {
            Self::Apps => "/api/v1/apps",
            Self::AppById => "/api/v1/apps/{id}",
            Self::Clients => "/oauth2/v1/clients",
            Self::Token => "/oauth2/v1/token",
            Self::Other => "/api/v1",
        }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The rate-limit headers of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// `X-Rate-Limit-Limit`: the bucket's budget per window. 0 together
    /// with `remaining` 0 means the concurrency limit was hit.
    pub limit: u32,
    /// `X-Rate-Limit-Remaining`.
    pub remaining: u32,
    /// `X-Rate-Limit-Reset`: epoch seconds at which the window ends.
    pub reset_epoch: u64,
    /// Time until the reset, measured against the response's `Date`
    /// header, or against the local clock when `Date` is missing or
    /// malformed. Bounded by [`MAX_RESET_WAIT`].
    pub reset_after: Duration,
}

impl RateLimitHeaders {
    /// Parses the rate-limit headers of a response. Returns `None` when any
    /// of the three is missing or none of its values is a number.
    ///
    /// Header names match without regard to case. A header sent several
    /// times, or with comma-separated values, gives the most cautious
    /// value: the lowest limit and remaining count, and the latest reset.
    pub fn parse(headers: &HeaderMap) -> Option<Self> {
        let limit = numbers(headers, "x-rate-limit-limit").min()?;
        let remaining = numbers(headers, "x-rate-limit-remaining").min()?;
        let reset_epoch = numbers(headers, "x-rate-limit-reset").max()?;
        let now = response_time(headers);
        Some(Self {
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_epoch,
            reset_after: reset_wait(reset_epoch, now),
        })
    }

    /// Parses like [`RateLimitHeaders::parse`], but measures the time until
    /// the reset in milliseconds against Okta's clock as `clock` estimates
    /// it, instead of against the whole second of `Date`.
    pub fn parse_with_clock(headers: &HeaderMap, clock: &OktaClock) -> Option<Self> {
        let mut parsed = Self::parse(headers)?;
        let local_now = local_epoch_millis();
        let date = headers
            .get_all(DATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(parse_http_date)
            .min();
        let okta_now = match date {
            Some(date) => clock.okta_now(local_now, date),
            None => local_now,
        };
        let reset = i64::try_from(parsed.reset_epoch)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let wait = u64::try_from(reset.saturating_sub(okta_now)).unwrap_or(0);
        parsed.reset_after = Duration::from_millis(wait).min(MAX_RESET_WAIT);
        Some(parsed)
    }
}

/// How many recent responses [`OktaClock`] learns Okta's clock from.
const CLOCK_SAMPLES: usize = 128;

/// An estimate of Okta's clock, learned from the `Date` headers of recent
/// responses.
///
/// `Date` has whole-second resolution, so a response received at local
/// time `t` only shows that Okta's time then was in `[Date, Date + 1 s)`.
/// Each sample `t - Date` is therefore at least the true offset of the
/// local clock from Okta's, and the smallest of recent samples comes close
/// to it from above. Okta's time estimated with that minimum is never later
/// than its true time, so a wait until `X-Rate-Limit-Reset` computed from
/// it is never too short, and it is up to a second shorter than a wait
/// measured from `Date` alone.
#[derive(Debug, Default)]
pub struct OktaClock {
    /// Recent `local receive time - Date` samples, in milliseconds.
    samples: Mutex<std::collections::VecDeque<i64>>,
}

impl OktaClock {
    /// Records the sample of a response with `date` (epoch seconds)
    /// received at `local_now` (epoch milliseconds), and returns Okta's
    /// estimated time now, in epoch milliseconds.
    pub fn okta_now(&self, local_now: i64, date: u64) -> i64 {
        let date = i64::try_from(date).unwrap_or(i64::MAX).saturating_mul(1000);
        let sample = local_now.saturating_sub(date);
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() == CLOCK_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
        let offset = samples.iter().copied().min().unwrap_or(sample);
        local_now.saturating_sub(offset)
    }
}

/// Every value of a header that parses as a whole number, across repeated
/// header lines and comma-separated lists.
fn numbers<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = u64> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|value| value.trim().parse::<u64>().ok())
}

/// The response's time in epoch seconds: its `Date` header, or the local
/// clock when that is missing or malformed. Of repeated `Date` headers the
/// earliest counts, which makes the wait longer, never shorter.
fn response_time(headers: &HeaderMap) -> u64 {
    headers
        .get_all(DATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(parse_http_date)
        .min()
        .unwrap_or_else(local_epoch_seconds)
}

fn local_epoch_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn local_epoch_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// Computes the time from `now` until `reset`, both epoch seconds on
/// Okta's clock, bounded by [`MAX_RESET_WAIT`]. A reset at or before `now`
/// gives zero.
pub fn reset_wait(reset_epoch: u64, now_epoch: u64) -> Duration {
    Duration::from_secs(reset_epoch.saturating_sub(now_epoch)).min(MAX_RESET_WAIT)
}

/// Computes how long to wait before retrying after a 429: until the reset
/// plus one second, as Okta's SDKs do, because `Reset` has whole seconds.
/// Missing or malformed headers give [`DEFAULT_RESET_WAIT`].
pub fn retry_after_429(headers: &HeaderMap) -> Duration {
    match RateLimitHeaders::parse(headers) {
        Some(parsed) => (parsed.reset_after + Duration::from_secs(1)).min(MAX_RESET_WAIT),
        None => DEFAULT_RESET_WAIT,
    }
}

/// Parses an HTTP date (the IMF-fixdate of RFC 9110) into epoch seconds.
pub fn parse_http_date(value: &str) -> Option<u64> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let parsed = time::PrimitiveDateTime::parse(value.trim(), format).ok()?;
    u64::try_from(parsed.assume_utc().unix_timestamp()).ok()
}

/// The admission decision for a request: send now, or wait first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send now; the permit is taken.
    Go,
    /// Wait until this instant, when the bucket's window ends.
    WaitUntil(Instant),
    /// Wait for a response in the bucket to report its state.
    WaitForResponse,
}

/// The pacer's state of one bucket.
#[derive(Debug, Clone, Default)]
pub struct BucketState {
    /// The budget per window from the last response, once known.
    limit: Option<u32>,
    /// Requests the registrar may still send in the current window.
    available: u32,
    /// The `Reset` value of the current window.
    reset_epoch: u64,
    /// When the current window ends on the local monotonic clock; `None`
    /// after it ended, until a response reports the next one.
    window_end: Option<Instant>,
    /// Requests sent and still waiting for a response.
    in_flight: u32,
}

impl BucketState {
    /// Decides whether a request may go now, taking a permit if so.
    pub fn admit(&mut self, share: f64, now: Instant) -> Admission {
        let Some(limit) = self.limit else {
            if let Some(end) = self.window_end.filter(|end| now < *end) {
                return Admission::WaitUntil(end);
            }
            if self.in_flight < UNKNOWN_BUCKET_CONCURRENCY {
                self.in_flight += 1;
                return Admission::Go;
            }
            return Admission::WaitForResponse;
        };
        if let Some(end) = self.window_end
            && now >= end
        {
            // The window Okta reported has ended: assume a fresh one, in
            // which the requests still in flight may count.
            self.window_end = None;
            self.available = permits(limit, share).saturating_sub(self.in_flight);
        }
        if self.available > 0 {
            self.available -= 1;
            self.in_flight += 1;
            return Admission::Go;
        }
        match self.window_end {
            Some(end) => Admission::WaitUntil(end),
            // The budget of the fresh window is spent before any response
            // reported its end; with nothing in flight, probe with one.
            None if self.in_flight == 0 => {
                self.in_flight += 1;
                Admission::Go
            }
            None => Admission::WaitForResponse,
        }
    }

    /// Updates the state from a response's headers, received at `now`.
    /// `headers` is `None` when the response carried no usable ones.
    pub fn observe(&mut self, headers: Option<&RateLimitHeaders>, share: f64, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(headers) = headers else {
            return;
        };
        if headers.limit == 0 {
            // Okta's concurrency limit: Limit and Remaining are both 0 and
            // Reset is an estimate. Pause the bucket until then.
            self.available = 0;
            self.window_end = Some(now + headers.reset_after.max(Duration::from_secs(1)));
            return;
        }
        self.limit = Some(headers.limit);
        let reserve = headers.limit - permits(headers.limit, share);
        // Requests still in flight may not be counted in `remaining` yet.
        let usable = headers
            .remaining
            .saturating_sub(reserve)
            .saturating_sub(self.in_flight);
        let end = now + headers.reset_after;
        if headers.reset_epoch > self.reset_epoch {
            let believed_old_window = self.window_end.is_some_and(|old_end| now < old_end);
            self.available = if believed_old_window || self.reset_epoch == 0 {
                usable
            } else {
                self.available.min(usable)
            };
            self.reset_epoch = headers.reset_epoch;
            self.window_end = Some(end);
        } else if headers.reset_epoch == self.reset_epoch {
            self.available = self.available.min(usable);
            if self.window_end.is_none_or(|known| end > known) {
                self.window_end = Some(end);
            }
        }
        // An older reset belongs to a window that has ended: ignore it.
    }

    /// Returns the permits left in the current window and the time until
    /// it ends, for logs.
    pub fn budget(&self, now: Instant) -> (u32, Option<Duration>) {
        (
            self.available,
            self.window_end
                .map(|end| end.saturating_duration_since(now)),
        )
    }
}

/// The requests the registrar may send per window of a bucket with this
/// budget: `share` of it, at least one.
fn permits(limit: u32, share: f64) -> u32 {
    let share = share.clamp(f64::MIN_POSITIVE, 1.0);
    // The product is at most `limit`, which fits in u32.
    let permitted = (f64::from(limit) * share).floor() as u32;
    permitted.clamp(1, limit.max(1))
}

/// The pacing state of every bucket of one org, shared by clones of the
/// Okta client.
#[derive(Debug, Clone)]
pub struct Pacer {
    share: f64,
    buckets: Arc<Mutex<HashMap<Bucket, BucketState>>>,
    changed: Arc<Notify>,
    clock: Arc<OktaClock>,
}

impl Pacer {
    /// Builds a pacer that spends at most `share` (above 0, at most 1) of
    /// each bucket.
    pub fn new(share: f64) -> Self {
        Self {
            share,
            buckets: Arc::default(),
            changed: Arc::new(Notify::new()),
            clock: Arc::default(),
        }
    }

    /// Returns the estimate of the org's clock that the rate-limit waits
    /// are measured against.
    pub fn clock(&self) -> &OktaClock {
        &self.clock
    }

    fn with_state<T>(&self, bucket: Bucket, f: impl FnOnce(&mut BucketState) -> T) -> T {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        f(buckets.entry(bucket).or_default())
    }

    /// Decides whether a request in `bucket` may go now. On
    /// [`Admission::Go`] it returns the permit, which the response must be
    /// reported to. Callers arm `changed().notified()` before calling, so
    /// that a response arriving in between is not missed.
    pub fn admit(&self, bucket: Bucket) -> (Admission, Option<Permit>) {
        let share = self.share;
        let admission = self.with_state(bucket, |state| state.admit(share, Instant::now()));
        let permit = (admission == Admission::Go).then(|| Permit {
            pacer: self.clone(),
            bucket,
            reported: false,
        });
        (admission, permit)
    }

    /// Returns the notifier that wakes requests waiting for a response.
    pub fn changed(&self) -> Arc<Notify> {
        Arc::clone(&self.changed)
    }

    /// Records a response's headers and wakes requests waiting on the
    /// bucket. Returns the permits left and the time until the window
    /// ends, for logs.
    pub fn observe(
        &self,
        bucket: Bucket,
        headers: Option<&RateLimitHeaders>,
    ) -> (u32, Option<Duration>) {
        let share = self.share;
        let now = Instant::now();
        let budget = self.with_state(bucket, |state| {
            state.observe(headers, share, now);
            state.budget(now)
        });
        self.changed.notify_waiters();
        budget
    }
}

/// The right to send one request in a bucket. Its response is reported
/// with [`Permit::observe`]; a permit dropped without a report, such as by a
/// cancelled call, counts as a response without rate-limit headers, so the
/// bucket's in-flight count stays right.
#[derive(Debug)]
pub struct Permit {
    pacer: Pacer,
    bucket: Bucket,
    reported: bool,
}

impl Permit {
    /// Records the response's rate-limit headers, `None` when it had none or
    /// the request failed. Returns the permits left in the window and the
    /// time until it ends, for logs.
    pub fn observe(mut self, headers: Option<&RateLimitHeaders>) -> (u32, Option<Duration>) {
        self.reported = true;
        self.pacer.observe(self.bucket, headers)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported {
            self.pacer.observe(self.bucket, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    // Thu, 01 Jan 2026 00:00:00 GMT is epoch 1767225600.
    const DATE_2026: &str = "Thu, 01 Jan 2026 00:00:00 GMT";

    #[test]
    fn classify_follows_okta_buckets() {
        let cases = [
            (Method::GET, "/api/v1/apps", Some(Bucket::Apps)),
            (Method::POST, "/api/v1/apps/0oa1/grants", Some(Bucket::Apps)),
            (
                Method::POST,
                "/api/v1/apps/0oa1/credentials/jwks",
                Some(Bucket::Apps),
            ),
            (Method::GET, "/api/v1/apps/0oa1", Some(Bucket::AppById)),
            (Method::PUT, "/api/v1/apps/0oa1", Some(Bucket::AppById)),
            (Method::DELETE, "/api/v1/apps/0oa1", Some(Bucket::AppById)),
            (Method::POST, "/oauth2/v1/clients", Some(Bucket::Clients)),
            (Method::POST, "/oauth2/v1/token", Some(Bucket::Token)),
            (Method::GET, "/api/v1/users", Some(Bucket::Other)),
            (Method::GET, "/oauth2/v1/keys", None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(Bucket::classify(&method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn parse_measures_reset_against_date() {
        let parsed = RateLimitHeaders::parse(&headers(&[
            ("date", DATE_2026),
            ("x-rate-limit-limit", "100"),
            ("x-rate-limit-remaining", "42"),
            ("x-rate-limit-reset", "1767225630"),
        ]))
        .expect("complete headers");
        assert_eq!(parsed.limit, 100);
        assert_eq!(parsed.remaining, 42);
        assert_eq!(parsed.reset_after, Duration::from_secs(30));
    }

    #[test]
    fn skewed_date_ignores_local_clock() {
        // The date is years away from the local clock; only the distance
        // between Date and Reset counts.
        let parsed = RateLimitHeaders::parse(&headers(&[
            ("date", "Mon, 01 Jan 2001 00:00:00 GMT"),
            ("x-rate-limit-limit", "10"),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", "978307207"),
        ]))
        .expect("complete headers");
        assert_eq!(parsed.reset_after, Duration::from_secs(7));
    }

    #[test]
    fn reset_far_from_date_is_bounded() {
        let ahead = RateLimitHeaders::parse(&headers(&[
            ("date", DATE_2026),
            ("x-rate-limit-limit", "10"),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", "1767229200"),
        ]))
        .expect("complete headers");
        assert_eq!(ahead.reset_after, MAX_RESET_WAIT);

        let behind = RateLimitHeaders::parse(&headers(&[
            ("date", DATE_2026),
            ("x-rate-limit-limit", "10"),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", "1767225000"),
        ]))
        .expect("complete headers");
        assert_eq!(behind.reset_after, Duration::ZERO);
    }

    #[test]
    fn missing_or_malformed_headers_give_none() {
        assert_eq!(RateLimitHeaders::parse(&HeaderMap::new()), None);
        let malformed = headers(&[
            ("x-rate-limit-limit", "ten"),
            ("x-rate-limit-remaining", "-1"),
            ("x-rate-limit-reset", ""),
        ]);
        assert_eq!(RateLimitHeaders::parse(&malformed), None);
        let partial = headers(&[("x-rate-limit-limit", "10"), ("x-rate-limit-reset", "5")]);
        assert_eq!(RateLimitHeaders::parse(&partial), None);
        let huge = headers(&[
            ("x-rate-limit-limit", "99999999999999999999999"),
            ("x-rate-limit-remaining", "1"),
            ("x-rate-limit-reset", "1"),
        ]);
        assert_eq!(RateLimitHeaders::parse(&huge), None);
    }

    #[test]
    fn repeated_headers_take_the_cautious_value() {
        let parsed = RateLimitHeaders::parse(&headers(&[
            ("date", DATE_2026),
            ("x-rate-limit-limit", "100"),
            ("X-Rate-Limit-Limit", "50"),
            ("x-rate-limit-remaining", "7, 9"),
            ("x-rate-limit-remaining", "8"),
            ("x-rate-limit-reset", "1767225610"),
            ("x-rate-limit-reset", "1767225620"),
            ("x-rate-limit-reset", "garbage"),
        ]))
        .expect("usable headers");
        assert_eq!(parsed.limit, 50);
        assert_eq!(parsed.remaining, 7);
        assert_eq!(parsed.reset_after, Duration::from_secs(20));
    }

    #[test]
    fn malformed_date_falls_back_to_local_clock() {
        let reset = local_epoch_seconds() + 5;
        let mut map = headers(&[
            ("date", "yesterday"),
            ("x-rate-limit-limit", "10"),
            ("x-rate-limit-remaining", "3"),
        ]);
        map.insert("x-rate-limit-reset", HeaderValue::from(reset));
        let parsed = RateLimitHeaders::parse(&map).expect("usable headers");
        assert!(parsed.reset_after <= Duration::from_secs(5));
        assert!(parsed.reset_after >= Duration::from_secs(3));
    }

    #[test]
    fn okta_clock_learns_subsecond_offset() {
        // Okta's clock runs 2.3 s behind the local one; responses arrive at
        // several points within Okta's seconds.
        let clock = OktaClock::default();
        let offset = 2_300;
        let mut estimate = 0;
        for okta_time in [1_767_225_600_700_i64, 1_767_225_601_400, 1_767_225_602_050] {
            let date = u64::try_from(okta_time / 1000).expect("positive");
            estimate = clock.okta_now(okta_time + offset, date);
            assert!(
                estimate <= okta_time,
                "estimate {estimate} after {okta_time}"
            );
            assert!(
                okta_time - estimate < 1000,
                "estimate {estimate} for {okta_time}"
            );
        }
        // The sample taken 50 ms into Okta's second bounds the error.
        assert_eq!(1_767_225_602_050 - estimate, 50);
    }

    #[test]
    fn parse_with_clock_measures_milliseconds() {
        let clock = OktaClock::default();
        let map = headers(&[
            ("x-rate-limit-limit", "10"),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", "4102444810"),
            ("date", "Fri, 01 Jan 2100 00:00:00 GMT"),
        ]);
        let parsed = RateLimitHeaders::parse_with_clock(&map, &clock).expect("usable headers");
        // The local clock is far behind this Date, so Okta's time is the
        // Date itself and the reset is 10 s after it.
        assert_eq!(parsed.reset_after, Duration::from_secs(10));
    }

    #[test]
    fn retry_after_429_adds_a_second_and_is_bounded() {
        let full = headers(&[
            ("date", DATE_2026),
            ("x-rate-limit-limit", "10"),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", "1767225610"),
        ]);
        assert_eq!(retry_after_429(&full), Duration::from_secs(11));
        assert_eq!(retry_after_429(&HeaderMap::new()), DEFAULT_RESET_WAIT);
        let far = headers(&[
            ("date", DATE_2026),
            ("x-rate-limit-limit", "10"),
            ("x-rate-limit-remaining", "0"),
            ("x-rate-limit-reset", "99999999999"),
        ]);
        assert_eq!(retry_after_429(&far), MAX_RESET_WAIT);
    }

    fn observed(limit: u32, remaining: u32, reset_epoch: u64, reset_secs: u64) -> RateLimitHeaders {
        RateLimitHeaders {
            limit,
            remaining,
            reset_epoch,
            reset_after: Duration::from_secs(reset_secs),
        }
    }

    #[test]
    fn unknown_bucket_admits_a_probe_at_a_time() {
        let mut state = BucketState::default();
        let now = Instant::now();
        assert_eq!(state.admit(0.5, now), Admission::Go);
        assert_eq!(state.admit(0.5, now), Admission::Go);
        assert_eq!(state.admit(0.5, now), Admission::WaitForResponse);
    }

    #[test]
    fn pacing_keeps_the_reserve() {
        let mut state = BucketState::default();
        let now = Instant::now();
        assert_eq!(state.admit(0.5, now), Admission::Go);
        // Limit 10 at share 0.5: 5 permits, of which the probe used one.
        state.observe(Some(&observed(10, 9, 1000, 20)), 0.5, now);
        for _ in 0..4 {
            assert_eq!(state.admit(0.5, now), Admission::Go);
        }
        assert_eq!(
            state.admit(0.5, now),
            Admission::WaitUntil(now + Duration::from_secs(20))
        );

        // After the window, a fresh budget minus what is in flight.
        let later = now + Duration::from_secs(21);
        for _ in 0..4 {
            state.observe(Some(&observed(10, 5, 1000, 20)), 0.5, now);
        }
        assert_eq!(state.admit(0.5, later), Admission::Go);
    }

    #[test]
    fn in_flight_requests_count_against_remaining() {
        let mut state = BucketState::default();
        let now = Instant::now();
        state.admit(1.0, now);
        state.observe(Some(&observed(4, 3, 1000, 10)), 1.0, now);
        for _ in 0..3 {
            assert_eq!(state.admit(1.0, now), Admission::Go);
        }
        // Another client spent the rest: the next response reports 0 left.
        state.observe(Some(&observed(4, 0, 1000, 10)), 1.0, now);
        assert!(matches!(state.admit(1.0, now), Admission::WaitUntil(_)));
    }

    #[test]
    fn concurrency_limit_pauses_the_bucket() {
        let mut state = BucketState::default();
        let now = Instant::now();
        state.admit(0.5, now);
        state.observe(Some(&observed(0, 0, 1000, 0)), 0.5, now);
        let paused_until = now + Duration::from_secs(1);
        assert_eq!(state.admit(0.5, now), Admission::WaitUntil(paused_until));
        // The limit stays unknown, so probes continue after the pause.
        assert_eq!(state.admit(0.5, paused_until), Admission::Go);
    }

    #[test]
    fn stale_window_is_ignored() {
        let mut state = BucketState::default();
        let now = Instant::now();
        state.admit(1.0, now);
        state.observe(Some(&observed(10, 2, 2000, 30)), 1.0, now);
        state.admit(1.0, now);
        state.observe(Some(&observed(10, 9, 1000, 0)), 1.0, now);
        assert_eq!(state.budget(now).0, 1);
    }

    #[test]
    fn permits_round_down_but_never_to_zero() {
        assert_eq!(permits(100, 0.5), 50);
        assert_eq!(permits(3, 0.5), 1);
        assert_eq!(permits(1, 0.1), 1);
        assert_eq!(permits(10, 1.0), 10);
    }
}
