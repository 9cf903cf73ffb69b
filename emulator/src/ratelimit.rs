//! Rate-limit buckets and their fixed windows.
//!
//! Okta counts requests per bucket, where a bucket is a group of endpoints.
//! The mapping follows the one Okta's Terraform provider generates from
//! Okta's own table. Each bucket has a budget of requests per window, and a
//! window starts at the first request in the bucket, so windows are not
//! aligned to wall-clock minutes.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::Method;

use crate::RateLimits;

/// A group of endpoints that share one request budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Bucket {
    /// `/api/v1/apps` and every `/api/v1/apps/{id}/…` subpath.
    Apps,
    /// `GET`, `PUT` and `DELETE` of `/api/v1/apps/{id}`.
    AppById,
    /// `/oauth2/v1/clients` and its subpaths.
    Clients,
    /// `/oauth2/v1/token`.
    Token,
    /// Every other `/api/v1/…` path.
    Other,
}

impl Bucket {
    /// Finds the bucket a request counts against, or `None` for paths that
    /// Okta does not rate limit.
    pub(crate) fn classify(method: &Method, path: &str) -> Option<Self> {
        if let Some(rest) = path.strip_prefix("/api/v1/apps") {
            let is_single_app = rest.len() > 1 && rest.starts_with('/') && !rest[1..].contains('/');
            let by_id_method = [Method::GET, Method::PUT, Method::DELETE].contains(method);
            if is_single_app && by_id_method {
                return Some(Self::AppById);
            }
            if rest.is_empty() || rest.starts_with('/') {
                return Some(Self::Apps);
            }
        }
        if path == "/oauth2/v1/clients" || path.starts_with("/oauth2/v1/clients/") {
            return Some(Self::Clients);
        }
        if path == "/oauth2/v1/token" {
            return Some(Self::Token);
        }
        if path.starts_with("/api/v1/") {
            return Some(Self::Other);
        }
        None
    }

    /// Returns the bucket's name as it appears in `RecordedRequest::bucket`,
    /// which is the name of its `RateLimits` field.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Apps => "apps",
            Self::AppById => "app_by_id",
            Self::Clients => "clients",
            Self::Token => "token",
            Self::Other => "other",
        }
    }

    /// Returns the bucket's budget per window.
    pub(crate) fn budget(self, limits: &RateLimits) -> u32 {
        match self {
            Self::Apps => limits.apps,
            Self::AppById => limits.app_by_id,
            Self::Clients => limits.clients,
            Self::Token => limits.token,
            Self::Other => limits.other,
        }
    }
}

/// The outcome of counting one request, with the values of the
/// `X-Rate-Limit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Whether the request is within the budget.
    pub(crate) allowed: bool,
    /// `X-Rate-Limit-Limit`: the bucket's budget per window.
    pub(crate) limit: u32,
    /// `X-Rate-Limit-Remaining`: requests left in the current window.
    pub(crate) remaining: u32,
    /// `X-Rate-Limit-Reset`: UTC epoch seconds at which the window ends,
    /// rounded up so that a client waiting until then is never early.
    pub(crate) reset_epoch_seconds: u64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    used: u32,
}

/// Fixed-window counters, one per bucket.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    window: Duration,
    windows: HashMap<Bucket, Window>,
}

impl RateLimiter {
    /// Creates a limiter whose windows last `window`.
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            windows: HashMap::new(),
        }
    }

    /// Counts one request against `bucket`. A request past the budget is not
    /// counted, so rejected requests do not extend the window.
    pub(crate) fn check(
        &mut self,
        bucket: Bucket,
        budget: u32,
        now: Instant,
        wall_clock: SystemTime,
    ) -> Decision {
        let window_length = self.window;
        let window = self.windows.entry(bucket).or_insert(Window {
            start: now,
            used: 0,
        });
        if now.duration_since(window.start) >= window_length {
            *window = Window {
                start: now,
                used: 0,
            };
        }

        let allowed = window.used < budget;
        if allowed {
            window.used += 1;
        }

        let time_left = (window.start + window_length).saturating_duration_since(now);
        Decision {
            allowed,
            limit: budget,
            remaining: budget.saturating_sub(window.used),
            reset_epoch_seconds: epoch_seconds_rounded_up(wall_clock + time_left),
        }
    }
}

fn epoch_seconds_rounded_up(at: SystemTime) -> u64 {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let whole = since_epoch.as_secs();
    if since_epoch.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_follows_okta_buckets() {
        let cases = [
            (Method::GET, "/api/v1/apps", Some(Bucket::Apps)),
            (Method::POST, "/api/v1/apps", Some(Bucket::Apps)),
            (Method::GET, "/api/v1/apps/0oa1", Some(Bucket::AppById)),
            (Method::PUT, "/api/v1/apps/0oa1", Some(Bucket::AppById)),
            (Method::DELETE, "/api/v1/apps/0oa1", Some(Bucket::AppById)),
            (Method::POST, "/api/v1/apps/0oa1", Some(Bucket::Apps)),
            (Method::GET, "/api/v1/apps/0oa1/grants", Some(Bucket::Apps)),
            (
                Method::DELETE,
                "/api/v1/apps/0oa1/grants/oag1",
                Some(Bucket::Apps),
            ),
            (
                Method::POST,
                "/api/v1/apps/0oa1/lifecycle/activate",
                Some(Bucket::Apps),
            ),
            (Method::GET, "/api/v1/appsx", Some(Bucket::Other)),
            (Method::GET, "/oauth2/v1/clients", Some(Bucket::Clients)),
            (
                Method::DELETE,
                "/oauth2/v1/clients/0oa1",
                Some(Bucket::Clients),
            ),
            (Method::POST, "/oauth2/v1/token", Some(Bucket::Token)),
            (Method::GET, "/api/v1/users", Some(Bucket::Other)),
            (Method::GET, "/oauth2/v1/keys", None),
            (Method::GET, "/", None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(Bucket::classify(&method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn budget_exhausts_then_rejects() {
        let mut limiter = RateLimiter::new(Duration::from_secs(60));
        let start = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);

        let first = limiter.check(Bucket::Apps, 2, start, wall);
        assert!(first.allowed);
        assert_eq!(first.remaining, 1);
        assert_eq!(first.reset_epoch_seconds, 1_060);

        let second = limiter.check(Bucket::Apps, 2, start, wall);
        assert!(second.allowed);
        assert_eq!(second.remaining, 0);

        let third = limiter.check(Bucket::Apps, 2, start, wall);
        assert!(!third.allowed);
        assert_eq!(third.remaining, 0);
        assert_eq!(third.limit, 2);
    }

    #[test]
    fn buckets_count_separately() {
        let mut limiter = RateLimiter::new(Duration::from_secs(60));
        let now = Instant::now();
        let wall = SystemTime::now();

        assert!(limiter.check(Bucket::Apps, 1, now, wall).allowed);
        assert!(!limiter.check(Bucket::Apps, 1, now, wall).allowed);
        assert!(limiter.check(Bucket::Clients, 1, now, wall).allowed);
    }

    #[test]
    fn window_resets_after_its_length() {
        let mut limiter = RateLimiter::new(Duration::from_secs(60));
        let start = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);

        assert!(limiter.check(Bucket::Token, 1, start, wall).allowed);
        let later = start + Duration::from_secs(59);
        assert!(!limiter.check(Bucket::Token, 1, later, wall).allowed);

        let next_window = start + Duration::from_secs(60);
        let decision = limiter.check(Bucket::Token, 1, next_window, wall);
        assert!(decision.allowed);
        assert_eq!(decision.remaining, 0);
        assert_eq!(decision.reset_epoch_seconds, 1_060);
    }

    #[test]
    fn reset_rounds_partial_seconds_up() {
        let mut limiter = RateLimiter::new(Duration::from_millis(200));
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let decision = limiter.check(Bucket::Other, 5, Instant::now(), wall);
        assert_eq!(decision.reset_epoch_seconds, 1_001);
    }

    #[test]
    fn zero_budget_rejects_everything() {
        let mut limiter = RateLimiter::new(Duration::from_secs(60));
        let decision = limiter.check(Bucket::Other, 0, Instant::now(), SystemTime::now());
        assert!(!decision.allowed);
        assert_eq!(decision.remaining, 0);
    }
}
