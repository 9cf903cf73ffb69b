//! Access-token authentication of resource requests: `Authorization:
//! Bearer <token>`, or `Authorization: DPoP <token>` with a `DPoP` proof,
//! for the paths that accept access tokens besides the API token.
//!
//! `GET /api/v1/users` accepts access tokens with the scope
//! `okta.users.read` or `okta.users.manage`, and the app and client
//! endpoints with the scopes of [`crate::admin_roles::required_scopes`].
//! An unknown or expired token
//! gets 401 E0000011, a token without the scope 403 with an empty body and
//! a `WWW-Authenticate` header. DPoP problems get 400 with an OAuth error
//! body and a `WWW-Authenticate: DPoP` header.

use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::Shared;
use crate::dpop::{self, ExpectedRequest, ProofTimes};
use crate::errors::{OAuthError, OktaError};

const REQUIRES_PROOF: &str = "The resource request requires a DPoP proof.";
const REQUIRES_DPOP_SCHEME: &str =
    "The resource request must use the DPoP authentication scheme when using a DPoP bound token.";
const NOT_BOUND: &str = "The access_token is not bound to the provided DPoP proof.";
const MISSING_SCOPE: &str = "The access token provided does not contain the required scopes.";

/// The scheme of an access token in `Authorization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `Bearer`.
    Bearer,
    /// `DPoP`.
    Dpop,
}

/// Returns the scopes of which a token needs one for this request, or
/// `None` when the endpoint accepts only the API token.
pub(crate) fn required_scopes(method: &Method, path: &str) -> Option<&'static [&'static str]> {
    (method == Method::GET && path == "/api/v1/users")
        .then_some(&["okta.users.read", "okta.users.manage"][..])
}

/// Splits `Authorization: Bearer <token>` or `Authorization: DPoP <token>`;
/// the scheme is matched without regard to case.
pub(crate) fn access_token(headers: &HeaderMap) -> Option<(Scheme, &str)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let scheme = if scheme.eq_ignore_ascii_case("Bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("DPoP") {
        Scheme::Dpop
    } else {
        return None;
    };
    Some((scheme, token.trim()))
}

/// The request being authorized.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResourceRequest<'a> {
    /// The HTTP method.
    pub(crate) method: &'a Method,
    /// The path, without query.
    pub(crate) path: &'a str,
    /// The request headers.
    pub(crate) headers: &'a HeaderMap,
    /// The scopes of which the token needs one.
    pub(crate) scopes: &'static [&'static str],
}

/// The reason a resource request was rejected.
#[derive(Debug)]
enum Rejection {
    /// The token is unknown or expired.
    InvalidToken,
    /// The DPoP proof or the authentication scheme is wrong.
    Dpop(OAuthError),
    /// The token lacks every scope the request needs.
    InsufficientScope,
}

/// Checks an access token and, for DPoP, its proof. Returns the response
/// to send instead of running the handler when the check fails, and
/// `None` when the request may proceed.
pub(crate) fn authorize(
    shared: &Shared,
    request: ResourceRequest<'_>,
    scheme: Scheme,
    token: &str,
) -> Option<Response> {
    let org_url = shared.org().org_url().to_owned();
    match check(shared, request, scheme, token, &org_url) {
        Ok(()) => None,
        Err(Rejection::InvalidToken) => Some(OktaError::invalid_token().into_response()),
        Err(Rejection::Dpop(error)) => Some(dpop_error(error)),
        Err(Rejection::InsufficientScope) => Some(insufficient_scope(&org_url, request)),
    }
}

fn check(
    shared: &Shared,
    request: ResourceRequest<'_>,
    scheme: Scheme,
    token: &str,
    org_url: &str,
) -> Result<(), Rejection> {
    let now = shared.clock().now_unix();
    let leeway = i64::try_from(shared.config().iat_leeway.as_secs()).unwrap_or(i64::MAX);
    let mut org = shared.org();
    let issued = org
        .oauth
        .valid_token(token, now)
        .cloned()
        .ok_or(Rejection::InvalidToken)?;

    match scheme {
        Scheme::Bearer if issued.jkt.is_some() => {
            return Err(Rejection::Dpop(OAuthError::bad_request(
                "invalid_request",
                REQUIRES_DPOP_SCHEME,
            )));
        }
        Scheme::Bearer => {}
        Scheme::Dpop => {
            let proof = dpop::proof_header(request.headers)
                .map_err(Rejection::Dpop)?
                .ok_or_else(|| {
                    Rejection::Dpop(OAuthError::bad_request("invalid_request", REQUIRES_PROOF))
                })?;
            let url = format!("{org_url}{}", request.path);
            let expected = ExpectedRequest {
                method: request.method.as_str(),
                url: &url,
                access_token: Some(token),
            };
            let times = ProofTimes { now, leeway };
            let valid =
                dpop::validate(proof, expected, times, &mut org.oauth).map_err(Rejection::Dpop)?;
            if issued.jkt.as_deref() != Some(valid.jkt.as_str()) {
                return Err(Rejection::Dpop(dpop::invalid_proof(NOT_BOUND)));
            }
        }
    }

    let has_scope = request
        .scopes
        .iter()
        .any(|scope| issued.scopes.iter().any(|held| held == scope));
    if has_scope {
        Ok(())
    } else {
        Err(Rejection::InsufficientScope)
    }
}

/// Builds a DPoP failure: 400 with the OAuth body and the same error in a
/// `WWW-Authenticate: DPoP` header, as RFC 9449 describes.
fn dpop_error(error: OAuthError) -> Response {
    let challenge = format!(
        "DPoP error=\"{}\", error_description=\"{}\"",
        error.error(),
        error.description()
    );
    match HeaderValue::from_str(&challenge) {
        Ok(value) => error.with_header(WWW_AUTHENTICATE, value).into_response(),
        Err(_) => error.into_response(),
    }
}

/// Builds 403 with an empty body and the `WWW-Authenticate` header that a
/// reported Okta response carried.
fn insufficient_scope(org_url: &str, request: ResourceRequest<'_>) -> Response {
    let challenge = format!(
        "Bearer authorization_uri=\"{org_url}/oauth2/v1/authorize\", realm=\"{org_url}\", scope=\"{}\", error=\"insufficient_scope\", error_description=\"{MISSING_SCOPE}\", resource=\"{}\"",
        request.scopes.first().copied().unwrap_or_default(),
        request.path,
    );
    let mut response = StatusCode::FORBIDDEN.into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("ASCII"),
        );
        headers
    }

    #[test]
    fn access_token_schemes() {
        assert_eq!(
            access_token(&with_authorization("Bearer abc")),
            Some((Scheme::Bearer, "abc"))
        );
        assert_eq!(
            access_token(&with_authorization("dpop abc")),
            Some((Scheme::Dpop, "abc"))
        );
        assert_eq!(access_token(&with_authorization("SSWS abc")), None);
        assert_eq!(access_token(&HeaderMap::new()), None);
    }

    #[test]
    fn only_users_list_takes_tokens() {
        assert!(required_scopes(&Method::GET, "/api/v1/users").is_some());
        assert!(required_scopes(&Method::POST, "/api/v1/users").is_none());
        assert!(required_scopes(&Method::GET, "/api/v1/apps").is_none());
    }
}
