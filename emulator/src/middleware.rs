//! The steps every request on an Okta path goes through around its handler:
//! rate limiting, injected faults, authentication, Okta's response headers
//! and the request log.
//!
//! Management paths need the API token or an access token from the token
//! endpoint: `GET /api/v1/users` (see [`crate::resource`]) and the app and
//! client endpoints, whose scopes and admin roles [`crate::admin_roles`]
//! checks.
//!
//! Rate limiting runs before authentication, so a request with a wrong
//! token still counts against its bucket and can get a 429. Okta does not
//! document the order.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, DATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::admin_roles;
use crate::connection::ConnectionHandle;
use crate::errors::OktaError;
use crate::faults::{self, FaultKind};
use crate::pagination::QueryParams;
use crate::ratelimit::{Bucket, Decision};
use crate::resource::{self, ResourceRequest};
use crate::{RecordedRequest, Shared, ids, timestamps};

/// Path prefix of the emulator's own endpoints, which skip every step here.
pub(crate) const ADMIN_PREFIX: &str = "/__emulator/";

const REQUEST_ID: HeaderName = HeaderName::from_static("x-okta-request-id");
const RATE_LIMIT_LIMIT: HeaderName = HeaderName::from_static("x-rate-limit-limit");
const RATE_LIMIT_REMAINING: HeaderName = HeaderName::from_static("x-rate-limit-remaining");
const RATE_LIMIT_RESET: HeaderName = HeaderName::from_static("x-rate-limit-reset");

/// Runs a request through rate limiting, injected faults and
/// authentication, calls the handler if all pass, then adds Okta's headers
/// and records the request.
pub(crate) async fn okta_pipeline(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if path.starts_with(ADMIN_PREFIX) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let query = request.uri().query().map(str::to_owned);
    let bucket = Bucket::classify(&method, &path);

    let decision = bucket.map(|bucket| {
        let budget = bucket.budget(&shared.config().rate_limits);
        let wall_clock = shared.clock().now_system();
        shared
            .org()
            .limiter
            .check(bucket, budget, Instant::now(), wall_clock)
    });
    let over_budget = decision.is_some_and(|decision| !decision.allowed);
    let first_page = !QueryParams::parse(query.as_deref()).has("after");
    let faults = if over_budget {
        Vec::new()
    } else {
        shared.faults().draw(&method, &path, first_page)
    };
    let connection = request
        .extensions()
        .get::<ConnectInfo<ConnectionHandle>>()
        .map(|info| info.0.clone());

    let mut response = if over_budget {
        OktaError::rate_limited().into_response()
    } else {
        run_with_faults(&shared, request, next, &faults, connection.as_ref()).await
    };

    let now = shared.clock().now_system();
    add_okta_headers(response.headers_mut(), decision, now);
    faults::apply_to_headers(response.headers_mut(), &faults, now);

    let status = response.status().as_u16();
    let fault = faults::describe(&faults);
    tracing::debug!(%method, %path, status, bucket = bucket.map(Bucket::name), fault, "request");
    shared.org().requests.push(RecordedRequest {
        method: method.to_string(),
        path,
        query,
        status: if faults::resets_before_commit(&faults) {
            0
        } else {
            status
        },
        bucket: bucket.map(|bucket| bucket.name().to_owned()),
        fault,
    });
    response
}

/// Applies the faults that act before and after the handler, and runs the
/// handler unless a fault answers in its place.
async fn run_with_faults(
    shared: &Shared,
    request: Request,
    next: Next,
    fired: &[FaultKind],
    connection: Option<&ConnectionHandle>,
) -> Response {
    for fault in fired {
        if let FaultKind::Latency { millis } = fault {
            tokio::time::sleep(Duration::from_millis(*millis)).await;
        }
    }
    if faults::resets_before_commit(fired) {
        if let Some(connection) = connection {
            connection.reset();
        }
        return OktaError::internal().into_response();
    }
    let org_url = shared.org().org_url().to_owned();
    if let Some(response) = faults::answer_in_place(fired, request.uri(), &org_url) {
        return response;
    }
    let response = if let Some(rejection) = reject_unauthenticated(shared, &request) {
        rejection
    } else {
        next.run(request).await
    };
    if fired.contains(&FaultKind::ResetAfterCommit)
        && let Some(connection) = connection
    {
        connection.reset();
    }
    response
}

/// Checks the credentials a path needs. Returns the response to send
/// instead of running the handler when they are missing or wrong, and
/// `None` when the request may proceed.
fn reject_unauthenticated(shared: &Shared, request: &Request) -> Option<Response> {
    let path = request.uri().path();
    let headers = request.headers();
    if !requires_api_token(path) || has_api_token(headers, |token| shared.is_api_token(token)) {
        return None;
    }
    let method = request.method();
    let scopes = resource::required_scopes(method, path)
        .or_else(|| admin_roles::required_scopes(method, path));
    if let Some(scopes) = scopes
        && let Some((scheme, token)) = resource::access_token(headers)
    {
        let resource_request = ResourceRequest {
            method,
            path,
            headers,
            scopes,
        };
        return resource::authorize(shared, resource_request, scheme, token)
            .or_else(|| admin_roles::reject_without_role(shared, method, path, token));
    }
    Some(OktaError::invalid_token().into_response())
}

/// Returns whether a path needs `Authorization: SSWS`, or on the paths of
/// [`resource::required_scopes`] an access token. The token endpoint
/// authenticates clients by their assertions instead.
fn requires_api_token(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/oauth2/v1/clients")
}

/// Checks `Authorization: SSWS <token>` with `is_valid`. The scheme is
/// matched without regard to case.
fn has_api_token(headers: &HeaderMap, is_valid: impl Fn(&str) -> bool) -> bool {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("SSWS") && is_valid(token.trim())
}

/// Compares two byte strings in time that depends on their lengths only.
pub(crate) fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter()
        .zip(right)
        .fold(0_u8, |difference, (l, r)| difference | (l ^ r))
        == 0
}

fn add_okta_headers(headers: &mut HeaderMap, decision: Option<Decision>, now: SystemTime) {
    let request_id =
        HeaderValue::from_str(&ids::request_id()).expect("request ids are alphanumeric");
    headers.insert(REQUEST_ID, request_id);

    let date = HeaderValue::from_str(&timestamps::http_date(now)).expect("HTTP dates are ASCII");
    headers.insert(DATE, date);

    if let Some(decision) = decision {
        headers.insert(RATE_LIMIT_LIMIT, HeaderValue::from(decision.limit));
        headers.insert(RATE_LIMIT_REMAINING, HeaderValue::from(decision.remaining));
        headers.insert(
            RATE_LIMIT_RESET,
            HeaderValue::from(decision.reset_epoch_seconds),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(authorization).expect("test values are ASCII"),
        );
        headers
    }

    #[test]
    fn api_token_checks() {
        let is_abc = |token: &str| constant_time_eq(token.as_bytes(), b"abc");
        assert!(has_api_token(&headers_with("SSWS abc"), is_abc));
        assert!(has_api_token(&headers_with("ssws abc"), is_abc));
        assert!(!has_api_token(&headers_with("SSWS abd"), is_abc));
        assert!(!has_api_token(&headers_with("SSWS ab"), is_abc));
        assert!(!has_api_token(&headers_with("Bearer abc"), is_abc));
        assert!(!has_api_token(&headers_with("SSWSabc"), is_abc));
        assert!(!has_api_token(&HeaderMap::new(), is_abc));
    }

    #[test]
    fn token_paths() {
        assert!(requires_api_token("/api/v1/apps"));
        assert!(requires_api_token("/oauth2/v1/clients/0oa1"));
        assert!(!requires_api_token("/oauth2/v1/token"));
        assert!(!requires_api_token("/"));
    }
}
