//! Fault injection: failures that tests and scripts switch on per endpoint,
//! so that a client's retries, pacing and recovery can be exercised.
//!
//! A fault names an endpoint, a kind and a trigger. The trigger is either a
//! probability, drawn for every matching request, or a count of the next
//! matching requests. The middleware calls [`FaultSet::draw`] once per
//! request and applies every fault that fired.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::http::header::{DATE, LINK};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::errors::OktaError;
use crate::timestamps;

/// The endpoints a fault can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultEndpoint {
    /// Every request on Okta's paths.
    Any,
    /// `POST /oauth2/v1/clients`.
    CreateClient,
    /// Every method on `/oauth2/v1/clients` and its subpaths.
    Clients,
    /// `GET /api/v1/apps`.
    ListApps,
    /// `POST /api/v1/apps`.
    CreateApp,
    /// `GET /api/v1/apps/{id}`.
    GetApp,
    /// `PUT /api/v1/apps/{id}`.
    ReplaceApp,
    /// `/api/v1/apps/{id}/lifecycle/…` and `DELETE /api/v1/apps/{id}`.
    AppLifecycle,
    /// Every method on `/api/v1/apps/{id}/grants` and its subpaths.
    Grants,
    /// `POST /api/v1/apps/{id}/grants`.
    CreateGrant,
    /// `GET /api/v1/apps/{id}/grants`.
    ListGrants,
    /// Every method on `/api/v1/apps/{id}/credentials/jwks` and its
    /// subpaths.
    AppKeys,
    /// `POST /oauth2/v1/token`.
    Token,
    /// `GET /api/v1/users`.
    Users,
}

impl FaultEndpoint {
    /// All endpoints, in the order of their names in the docs.
    pub const ALL: [Self; 14] = [
        Self::Any,
        Self::CreateClient,
        Self::Clients,
        Self::ListApps,
        Self::CreateApp,
        Self::GetApp,
        Self::ReplaceApp,
        Self::AppLifecycle,
        Self::Grants,
        Self::CreateGrant,
        Self::ListGrants,
        Self::AppKeys,
        Self::Token,
        Self::Users,
    ];

    /// Returns the endpoint's name in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::CreateClient => "create_client",
            Self::Clients => "clients",
            Self::ListApps => "list_apps",
            Self::CreateApp => "create_app",
            Self::GetApp => "get_app",
            Self::ReplaceApp => "replace_app",
            Self::AppLifecycle => "app_lifecycle",
            Self::Grants => "grants",
            Self::CreateGrant => "create_grant",
            Self::ListGrants => "list_grants",
            Self::AppKeys => "app_keys",
            Self::Token => "token",
            Self::Users => "users",
        }
    }

    /// Returns whether a request with this method and path belongs to the
    /// endpoint.
    pub(crate) fn matches(self, method: &Method, path: &str) -> bool {
        let app_rest = path.strip_prefix("/api/v1/apps/").map(|rest| {
            rest.split_once('/')
                .map_or((rest, ""), |(id, sub)| (id, sub))
        });
        let single_app = app_rest.filter(|(id, sub)| !id.is_empty() && sub.is_empty());
        let app_subpath = |prefix: &str| {
            app_rest.is_some_and(|(id, sub)| {
                !id.is_empty() && (sub == prefix || sub.starts_with(&format!("{prefix}/")))
            })
        };
        let clients = path == "/oauth2/v1/clients" || path.starts_with("/oauth2/v1/clients/");
        match self {
            Self::Any => true,
            Self::CreateClient => method == Method::POST && path == "/oauth2/v1/clients",
            Self::Clients => clients,
            Self::ListApps => method == Method::GET && path == "/api/v1/apps",
            Self::CreateApp => method == Method::POST && path == "/api/v1/apps",
            Self::GetApp => method == Method::GET && single_app.is_some(),
            Self::ReplaceApp => method == Method::PUT && single_app.is_some(),
            Self::AppLifecycle => {
                app_subpath("lifecycle") || (method == Method::DELETE && single_app.is_some())
            }
            Self::Grants => app_subpath("grants"),
            Self::CreateGrant => {
                method == Method::POST && app_rest.is_some_and(|(_, sub)| sub == "grants")
            }
            Self::ListGrants => {
                method == Method::GET && app_rest.is_some_and(|(_, sub)| sub == "grants")
            }
            Self::AppKeys => app_subpath("credentials/jwks"),
            Self::Token => method == Method::POST && path == "/oauth2/v1/token",
            Self::Users => method == Method::GET && path == "/api/v1/users",
        }
    }
}

impl fmt::Display for FaultEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultEndpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|endpoint| endpoint.name() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|endpoint| endpoint.name()).collect();
                format!("unknown endpoint {text:?}; use one of {}", names.join(", "))
            })
    }
}

/// The effect of a fault on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Responds with this 5xx status and an Okta error body, without running
    /// the handler.
    Status {
        /// 500, 502, 503 or 504.
        status: u16,
    },
    /// Delays the request by this many milliseconds before it runs.
    Latency {
        /// The delay in milliseconds.
        millis: u64,
    },
    /// Closes the connection without a response and without running the
    /// handler, so nothing changes.
    ResetBeforeCommit,
    /// Runs the handler, so its change is applied, then closes the
    /// connection without sending the response.
    ResetAfterCommit,
    /// Responds with 429 E0000047 with `X-Rate-Limit-Remaining: 0`, as if the
    /// bucket were exhausted, without running the handler.
    RateLimitBurst,
    /// Shifts the `Date` header by this many seconds, leaving
    /// `X-Rate-Limit-Reset` and every other time unchanged.
    SkewDate {
        /// The shift in seconds; negative values put `Date` in the past.
        seconds: i64,
    },
    /// Leaves out the `X-Rate-Limit-*` headers.
    OmitRateLimitHeaders,
    /// Sends every `X-Rate-Limit-*` header twice: the true value first,
    /// then a stale one with one more request remaining and a reset one
    /// second earlier.
    DuplicateRateLimitHeaders,
    /// Responds to a first page of `GET /api/v1/apps` (one without `after`)
    /// with `[]` and a `next` link to the real first page.
    EmptyFirstPage,
}

impl FaultKind {
    /// Returns the kind's name in JSON and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Latency { .. } => "latency",
            Self::ResetBeforeCommit => "reset_before_commit",
            Self::ResetAfterCommit => "reset_after_commit",
            Self::RateLimitBurst => "rate_limit_burst",
            Self::SkewDate { .. } => "skew_date",
            Self::OmitRateLimitHeaders => "omit_rate_limit_headers",
            Self::DuplicateRateLimitHeaders => "duplicate_rate_limit_headers",
            Self::EmptyFirstPage => "empty_first_page",
        }
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            Self::Status { status } if !matches!(status, 500 | 502 | 503 | 504) => Err(format!(
                "status {status} is not supported; use 500, 502, 503 or 504"
            )),
            Self::Latency { millis } if *millis > 600_000 => Err(format!(
                "latency {millis} ms is too long; use at most 600000"
            )),
            _ => Ok(()),
        }
    }
}

/// When a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTrigger {
    /// For each matching request with this probability, from above 0 to 1.
    Probability(f64),
    /// For the next this many matching requests.
    Count(u32),
}

/// A fault to inject: which requests, what happens, and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// The endpoint whose requests the fault selects.
    pub endpoint: FaultEndpoint,
    /// The effect on a selected request.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// When the fault fires.
    #[serde(flatten)]
    pub trigger: FaultTrigger,
}

impl Fault {
    /// Builds a fault that fires for every matching request with this
    /// probability.
    pub fn with_probability(endpoint: FaultEndpoint, kind: FaultKind, probability: f64) -> Self {
        Self {
            endpoint,
            kind,
            trigger: FaultTrigger::Probability(probability),
        }
    }

    /// Builds a fault that fires for the next `count` matching requests.
    pub fn times(endpoint: FaultEndpoint, kind: FaultKind, count: u32) -> Self {
        Self {
            endpoint,
            kind,
            trigger: FaultTrigger::Count(count),
        }
    }

    /// Checks the kind's values and the trigger.
    ///
    /// # Errors
    ///
    /// Returns a sentence naming the invalid value and the valid range.
    pub fn validate(&self) -> Result<(), String> {
        self.kind.validate()?;
        match self.trigger {
            FaultTrigger::Probability(p) if !(p > 0.0 && p <= 1.0) => Err(format!(
                "probability {p} is out of range; use a number above 0 and at most 1"
            )),
            FaultTrigger::Count(0) => Err("count 0 never fires; use at least 1".into()),
            _ => Ok(()),
        }
    }
}

impl FromStr for Fault {
    type Err = String;

    /// Parses `ENDPOINT:KIND[=VALUE]:probability=P` or
    /// `ENDPOINT:KIND[=VALUE]:count=N`, such as
    /// `create_client:status=503:probability=0.1` or
    /// `grants:reset_after_commit:count=2`. The value is the status of
    /// `status`, the milliseconds of `latency` and the seconds of
    /// `skew_date`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(':').collect();
        let [endpoint, kind, trigger] = parts[..] else {
            return Err(format!(
                "{text:?} is not ENDPOINT:KIND[=VALUE]:probability=P or ENDPOINT:KIND[=VALUE]:count=N"
            ));
        };
        let endpoint: FaultEndpoint = endpoint.parse()?;
        let kind = parse_kind(kind)?;
        let trigger = match trigger.split_once('=') {
            Some(("probability", value)) => FaultTrigger::Probability(
                value
                    .parse()
                    .map_err(|_| format!("probability {value:?} is not a number"))?,
            ),
            Some(("count", value)) => FaultTrigger::Count(
                value
                    .parse()
                    .map_err(|_| format!("count {value:?} is not a whole number"))?,
            ),
            _ => {
                return Err(format!(
                    "trigger {trigger:?} is neither probability=P nor count=N"
                ));
            }
        };
        let fault = Self {
            endpoint,
            kind,
            trigger,
        };
        fault.validate()?;
        Ok(fault)
    }
}

fn parse_kind(text: &str) -> Result<FaultKind, String> {
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (text, None),
    };
    let number = |what: &str| -> Result<i64, String> {
        let value = value.ok_or_else(|| format!("{name} needs a value: {name}={what}"))?;
        value
            .parse()
            .map_err(|_| format!("{name}={value}: {value:?} is not a whole number"))
    };
    let unsigned = |what: &str| -> Result<u64, String> {
        u64::try_from(number(what)?).map_err(|_| format!("{name} must not be negative"))
    };
    let plain = |kind: FaultKind| match value {
        Some(value) => Err(format!("{name} takes no value, but got {value:?}")),
        None => Ok(kind),
    };
    match name {
        "status" => {
            let status = u16::try_from(unsigned("STATUS")?)
                .map_err(|_| "status must be 500, 502, 503 or 504".to_string())?;
            Ok(FaultKind::Status { status })
        }
        "latency" => Ok(FaultKind::Latency {
            millis: unsigned("MILLISECONDS")?,
        }),
        "skew_date" => Ok(FaultKind::SkewDate {
            seconds: number("SECONDS")?,
        }),
        "reset_before_commit" => plain(FaultKind::ResetBeforeCommit),
        "reset_after_commit" => plain(FaultKind::ResetAfterCommit),
        "rate_limit_burst" => plain(FaultKind::RateLimitBurst),
        "omit_rate_limit_headers" => plain(FaultKind::OmitRateLimitHeaders),
        "duplicate_rate_limit_headers" => plain(FaultKind::DuplicateRateLimitHeaders),
        "empty_first_page" => plain(FaultKind::EmptyFirstPage),
        other => Err(format!(
            "unknown fault kind {other:?}; use status, latency, reset_before_commit, reset_after_commit, rate_limit_burst, skew_date, omit_rate_limit_headers, duplicate_rate_limit_headers or empty_first_page"
        )),
    }
}

/// An installed fault with its counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveFault {
    /// The id that [`crate::Emulator::add_fault`] returned.
    pub id: u64,
    /// The fault.
    #[serde(flatten)]
    pub fault: Fault,
    /// How many requests the fault has fired on so far.
    pub fired: u64,
}

/// The installed faults of one emulator.
#[derive(Debug, Default)]
pub(crate) struct FaultSet {
    inner: Mutex<FaultList>,
}

#[derive(Debug, Default)]
struct FaultList {
    next_id: u64,
    faults: Vec<ActiveFault>,
}

impl FaultSet {
    fn list(&self) -> std::sync::MutexGuard<'_, FaultList> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Installs a fault and returns its id.
    pub(crate) fn add(&self, fault: Fault) -> u64 {
        let mut list = self.list();
        list.next_id += 1;
        let id = list.next_id;
        list.faults.push(ActiveFault {
            id,
            fault,
            fired: 0,
        });
        id
    }

    /// Removes every fault.
    pub(crate) fn clear(&self) {
        self.list().faults.clear();
    }

    /// Returns the installed faults, including spent count faults.
    pub(crate) fn snapshot(&self) -> Vec<ActiveFault> {
        self.list().faults.clone()
    }

    /// Decides which faults fire for one request and counts them. A count
    /// fault stays listed after it is spent, with `fired` equal to its
    /// count.
    pub(crate) fn draw(&self, method: &Method, path: &str, first_page: bool) -> Vec<FaultKind> {
        let mut list = self.list();
        if list.faults.is_empty() {
            return Vec::new();
        }
        let mut rng = rand::rng();
        let mut fired = Vec::new();
        for active in &mut list.faults {
            if !active.fault.endpoint.matches(method, path) {
                continue;
            }
            if active.fault.kind == FaultKind::EmptyFirstPage && !first_page {
                continue;
            }
            let fires = match active.fault.trigger {
                FaultTrigger::Probability(p) => rng.random_bool(p.clamp(0.0, 1.0)),
                FaultTrigger::Count(count) => active.fired < u64::from(count),
            };
            if fires {
                active.fired += 1;
                fired.push(active.fault.kind);
            }
        }
        fired
    }
}

const RATE_LIMIT_HEADERS: [&str; 3] = [
    "x-rate-limit-limit",
    "x-rate-limit-remaining",
    "x-rate-limit-reset",
];

/// Returns whether a fault that closes the connection before the handler
/// runs has fired.
pub(crate) fn resets_before_commit(fired: &[FaultKind]) -> bool {
    fired.contains(&FaultKind::ResetBeforeCommit)
}

/// Returns the response that replaces the handler's, when a fault that
/// answers in its place fired: a 5xx status, a 429 burst or an empty first
/// page. `uri` is the request's, for the empty page's links; `org_url`
/// prefixes them.
pub(crate) fn answer_in_place(fired: &[FaultKind], uri: &Uri, org_url: &str) -> Option<Response> {
    for fault in fired {
        match fault {
            FaultKind::Status { status } => {
                let status =
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return Some(OktaError::injected_server_error(status).into_response());
            }
            FaultKind::RateLimitBurst => return Some(OktaError::rate_limited().into_response()),
            FaultKind::EmptyFirstPage => return Some(empty_first_page(uri, org_url)),
            _ => {}
        }
    }
    None
}

/// Builds `[]` with a `self` link and a `next` link whose empty `after`
/// cursor starts the listing at its beginning.
fn empty_first_page(uri: &Uri, org_url: &str) -> Response {
    let query = uri.query().unwrap_or_default();
    let separator = if query.is_empty() { "" } else { "&" };
    let self_link = format!("<{org_url}{}?{query}>; rel=\"self\"", uri.path());
    let next_link = format!(
        "<{org_url}{}?{query}{separator}after=>; rel=\"next\"",
        uri.path()
    );
    let mut response = Json(serde_json::Value::Array(Vec::new())).into_response();
    for link in [self_link, next_link] {
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().append(LINK, value);
        }
    }
    response
}

/// Changes the response headers as the fired faults require: a burst reports
/// no requests remaining, and the header faults skew `Date`, drop the
/// rate-limit headers or send them twice.
/// `now` is the time the unskewed `Date` header shows.
pub(crate) fn apply_to_headers(headers: &mut HeaderMap, fired: &[FaultKind], now: SystemTime) {
    for fault in fired {
        match fault {
            FaultKind::RateLimitBurst if headers.contains_key(RATE_LIMIT_HEADERS[1]) => {
                headers.insert(RATE_LIMIT_HEADERS[1], HeaderValue::from(0_u32));
            }
            FaultKind::SkewDate { seconds } => skew_date(headers, now, *seconds),
            FaultKind::OmitRateLimitHeaders => {
                for name in RATE_LIMIT_HEADERS {
                    headers.remove(name);
                }
            }
            FaultKind::DuplicateRateLimitHeaders => duplicate_rate_limit_headers(headers),
            _ => {}
        }
    }
}

fn skew_date(headers: &mut HeaderMap, now: SystemTime, seconds: i64) {
    let shift = Duration::from_secs(seconds.unsigned_abs());
    let skewed = if seconds >= 0 {
        now.checked_add(shift)
    } else {
        now.checked_sub(shift)
    };
    let Some(skewed) = skewed else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&timestamps::http_date(skewed)) {
        headers.insert(DATE, value);
    }
}

fn duplicate_rate_limit_headers(headers: &mut HeaderMap) {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok())
    };
    let stale = [
        number(RATE_LIMIT_HEADERS[0]),
        number(RATE_LIMIT_HEADERS[1]).map(|remaining| remaining + 1),
        number(RATE_LIMIT_HEADERS[2]).map(|reset| reset.saturating_sub(1)),
    ];
    for (name, value) in RATE_LIMIT_HEADERS.into_iter().zip(stale) {
        if let Some(value) = value {
            headers.append(name, HeaderValue::from(value));
        }
    }
}

/// Returns the names of the fired faults, joined by commas, for the
/// request log.
pub(crate) fn describe(fired: &[FaultKind]) -> Option<String> {
    if fired.is_empty() {
        return None;
    }
    let names: Vec<&str> = fired.iter().map(FaultKind::name).collect();
    Some(names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_match_their_paths() {
        let cases = [
            (
                FaultEndpoint::CreateClient,
                Method::POST,
                "/oauth2/v1/clients",
                true,
            ),
            (
                FaultEndpoint::CreateClient,
                Method::GET,
                "/oauth2/v1/clients",
                false,
            ),
            (
                FaultEndpoint::Clients,
                Method::DELETE,
                "/oauth2/v1/clients/0oa1",
                true,
            ),
            (FaultEndpoint::ListApps, Method::GET, "/api/v1/apps", true),
            (
                FaultEndpoint::ListApps,
                Method::GET,
                "/api/v1/apps/0oa1",
                false,
            ),
            (
                FaultEndpoint::GetApp,
                Method::GET,
                "/api/v1/apps/0oa1",
                true,
            ),
            (
                FaultEndpoint::GetApp,
                Method::GET,
                "/api/v1/apps/0oa1/grants",
                false,
            ),
            (
                FaultEndpoint::CreateGrant,
                Method::POST,
                "/api/v1/apps/0oa1/grants",
                true,
            ),
            (
                FaultEndpoint::CreateGrant,
                Method::GET,
                "/api/v1/apps/0oa1/grants",
                false,
            ),
            (
                FaultEndpoint::ListGrants,
                Method::GET,
                "/api/v1/apps/0oa1/grants",
                true,
            ),
            (
                FaultEndpoint::Grants,
                Method::DELETE,
                "/api/v1/apps/0oa1/grants/oag1",
                true,
            ),
            (
                FaultEndpoint::AppKeys,
                Method::POST,
                "/api/v1/apps/0oa1/credentials/jwks/pks1/lifecycle/activate",
                true,
            ),
            (
                FaultEndpoint::AppKeys,
                Method::GET,
                "/api/v1/apps/0oa1/grants",
                false,
            ),
            (
                FaultEndpoint::AppLifecycle,
                Method::POST,
                "/api/v1/apps/0oa1/lifecycle/deactivate",
                true,
            ),
            (
                FaultEndpoint::AppLifecycle,
                Method::DELETE,
                "/api/v1/apps/0oa1",
                true,
            ),
            (FaultEndpoint::Token, Method::POST, "/oauth2/v1/token", true),
            (FaultEndpoint::Users, Method::GET, "/api/v1/users", true),
            (FaultEndpoint::Any, Method::GET, "/oauth2/v1/keys", true),
        ];
        for (endpoint, method, path, expected) in cases {
            assert_eq!(
                endpoint.matches(&method, path),
                expected,
                "{endpoint} {method} {path}"
            );
        }
    }

    #[test]
    fn spec_strings_parse() {
        let fault: Fault = "create_client:status=503:probability=0.25"
            .parse()
            .expect("valid spec");
        assert_eq!(fault.endpoint, FaultEndpoint::CreateClient);
        assert_eq!(fault.kind, FaultKind::Status { status: 503 });
        assert_eq!(fault.trigger, FaultTrigger::Probability(0.25));

        let fault: Fault = "grants:reset_after_commit:count=2"
            .parse()
            .expect("valid spec");
        assert_eq!(fault.kind, FaultKind::ResetAfterCommit);
        assert_eq!(fault.trigger, FaultTrigger::Count(2));

        let fault: Fault = "any:skew_date=-30:count=1".parse().expect("valid spec");
        assert_eq!(fault.kind, FaultKind::SkewDate { seconds: -30 });
    }

    #[test]
    fn bad_spec_strings_are_rejected() {
        for spec in [
            "create_client:status=404:count=1",
            "create_client:status:count=1",
            "nowhere:latency=5:count=1",
            "token:latency=5:probability=0",
            "token:latency=5:probability=1.5",
            "token:latency=5:count=0",
            "token:latency=5",
            "token:reset_after_commit=3:count=1",
            "token:explode:count=1",
        ] {
            assert!(spec.parse::<Fault>().is_err(), "{spec}");
        }
    }

    #[test]
    fn count_faults_fire_that_often() {
        let faults = FaultSet::default();
        faults.add(Fault::times(
            FaultEndpoint::Token,
            FaultKind::RateLimitBurst,
            2,
        ));
        let fired: Vec<usize> = (0..4)
            .map(|_| faults.draw(&Method::POST, "/oauth2/v1/token", false).len())
            .collect();
        assert_eq!(fired, [1, 1, 0, 0]);
        assert_eq!(faults.snapshot()[0].fired, 2);
        assert!(faults.draw(&Method::GET, "/api/v1/apps", true).is_empty());
    }

    #[test]
    fn json_shape_is_flat() {
        let fault = Fault::with_probability(
            FaultEndpoint::CreateGrant,
            FaultKind::Status { status: 500 },
            0.5,
        );
        let json = serde_json::to_value(&fault).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"endpoint": "create_grant", "kind": "status", "status": 500, "probability": 0.5})
        );
        let back: Fault = serde_json::from_value(json).expect("deserialises");
        assert_eq!(back, fault);
    }
}
