//! `POST /oauth2/v1/token` of the org authorization server, for the
//! client-credentials grant of service apps.
//!
//! A request goes through these steps, each of which can end it with an
//! OAuth error body: client authentication with a `private_key_jwt`
//! assertion, the grant type, the DPoP proof when the app requires one,
//! and the scopes. Every response of the handler carries `Cache-Control:
//! no-cache, no-store` and `Pragma: no-cache`, as Okta's recorded responses
//! do. A 429 from the rate limiter does not reach the handler.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::access_tokens::{self, TokenClaims};
use crate::client_auth::{self, AssertionTimes, Credentials};
use crate::dpop::{self, DPOP_NONCE, ExpectedRequest, ProofTimes};
use crate::errors::OAuthError;
use crate::state::{App, Org};
use crate::{Shared, metadata};

/// Path of the token endpoint.
pub(crate) const TOKEN_PATH: &str = "/oauth2/v1/token";

const CREDENTIALS_IN_QUERY: &str = "Client credentials cannot be supplied via query parameters.";
const ONLY_SERVICE: &str = "Only clients with 'application_type' of 'service' may use the client_credentials 'grant_type' with the Org Authorization Server.";
const NONCE_REQUIRED: &str = "Authorization server requires nonce in DPoP proof.";
/// NOTE: Okta's catalogue has no text for a missing `grant_type`; this one
/// is the emulator's.
const NO_GRANT_TYPE: &str = "The 'grant_type' parameter is required.";

/// `POST /oauth2/v1/token`.
pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut response = match issue(&shared, query.as_deref(), &headers, &body) {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(
                error = error.error(),
                description = error.description(),
                "token request rejected"
            );
            error.into_response()
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The app facts the later steps need, copied out of the org.
struct Client {
    id: String,
    is_service: bool,
    grant_types: Vec<String>,
    dpop_bound: bool,
    grants: Vec<String>,
}

impl Client {
    fn from_app(app: &App) -> Self {
        Self {
            id: app.id.clone(),
            is_service: app.client.application_type == "service",
            grant_types: app.client.grant_types.clone(),
            dpop_bound: app.client.dpop_bound_access_tokens,
            grants: app
                .grants
                .iter()
                .map(|grant| grant.scope_id.clone())
                .collect(),
        }
    }
}

fn issue(
    shared: &Shared,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let form = parse_form(body);
    if has_credentials(query) {
        return Err(OAuthError::bad_request(
            "invalid_request",
            CREDENTIALS_IN_QUERY,
        ));
    }

    let config = shared.config();
    let now = shared.clock().now_unix();
    let leeway = seconds(config.iat_leeway);
    let lifetime = seconds(config.access_token_lifetime);
    let mut org = shared.org();
    let org_url = org.org_url().to_owned();
    let token_url = format!("{org_url}{TOKEN_PATH}");

    let credentials = Credentials {
        assertion_type: form.get("client_assertion_type").map(String::as_str),
        assertion: form.get("client_assertion").map(String::as_str),
        client_id: form.get("client_id").map(String::as_str),
        client_secret: form.get("client_secret").map(String::as_str),
        authorization: headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()),
    };
    let times = AssertionTimes { now, leeway };
    let client_id = client_auth::authenticate(credentials, &mut org, &token_url, times)?;
    let client = org
        .app(&client_id)
        .map(Client::from_app)
        .ok_or_else(|| OAuthError::invalid_client(client_auth::GENERIC))?;

    check_grant_type(form.get("grant_type").map(String::as_str), &client)?;
    let jkt = if client.dpop_bound {
        let proof_times = ProofTimes { now, leeway };
        Some(check_dpop(headers, &token_url, proof_times, &mut org)?)
    } else {
        // NOTE: Okta's docs do not say what a DPoP header to an app without
        // `dpop_bound_access_tokens` does; the emulator ignores it.
        None
    };
    let scopes =
        access_tokens::granted_scopes(form.get("scope").map(String::as_str), &client.grants)?;

    let key = shared.org_key().map_err(|error| {
        tracing::error!(%error, "no org signing key");
        OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The org signing key is unavailable.",
        )
    })?;
    let claims = TokenClaims {
        org_url: &org_url,
        client_id: &client.id,
        scopes,
        jkt,
        issued_at: now,
        lifetime,
    };
    let (token, issued) = access_tokens::mint(key, claims).map_err(|error| {
        tracing::error!(%error, "signing an access token failed");
        OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Signing the access token failed.",
        )
    })?;
    let body = access_tokens::response_body(&token, &issued, lifetime);
    let is_dpop = issued.jkt.is_some();
    tracing::info!(client_id = %client.id, scope = %body["scope"], dpop = is_dpop, "access token issued");
    org.oauth.store_token(token, issued, now);

    let mut response = Json(body).into_response();
    if is_dpop && let Ok(nonce) = HeaderValue::from_str(&org.oauth.current_nonce(now)) {
        response.headers_mut().insert(DPOP_NONCE, nonce);
    }
    Ok(response)
}

/// Parses an `application/x-www-form-urlencoded` body. A repeated field
/// keeps its last value.
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Checks whether the query string carries client credentials.
fn has_credentials(query: Option<&str>) -> bool {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).any(|(name, _)| {
        matches!(
            name.as_ref(),
            "client_id" | "client_secret" | "client_assertion" | "client_assertion_type"
        )
    })
}

/// Checks that the grant type is client credentials and that the client
/// may use it.
fn check_grant_type(grant_type: Option<&str>, client: &Client) -> Result<(), OAuthError> {
    let configured = format!(
        "Configured grant types: [{}].",
        client.grant_types.join(", ")
    );
    match grant_type {
        None | Some("") => Err(OAuthError::bad_request("invalid_request", NO_GRANT_TYPE)),
        Some("client_credentials") if !client.is_service => {
            Err(OAuthError::invalid_client(ONLY_SERVICE))
        }
        Some("client_credentials") => Ok(()),
        Some(other) if client.grant_types.iter().any(|grant| grant == other) => {
            // The emulator serves no other grant, so a configured one is
            // unsupported here.
            Err(OAuthError::bad_request(
                "unsupported_grant_type",
                format!(
                    "The authorization grant type is not supported by the authorization server. {configured}"
                ),
            ))
        }
        Some(other) if metadata::is_known_grant_type(other) => Err(OAuthError::bad_request(
            "unauthorized_client",
            format!("The client is not authorized to use the provided grant type. {configured}"),
        )),
        Some(_) => Err(OAuthError::bad_request(
            "unsupported_grant_type",
            format!(
                "The authorization grant type is not supported by the authorization server. {configured}"
            ),
        )),
    }
}

/// Validates the DPoP proof of a token request and returns its key
/// thumbprint. A valid proof without the current nonce, or with one older
/// than 3 days, gets `use_dpop_nonce` with a `DPoP-Nonce` header.
fn check_dpop(
    headers: &HeaderMap,
    token_url: &str,
    times: ProofTimes,
    org: &mut Org,
) -> Result<String, OAuthError> {
    let proof = dpop::proof_header(headers)?.ok_or_else(|| dpop::invalid_proof(dpop::MISSING))?;
    let expected = ExpectedRequest {
        method: "POST",
        url: token_url,
        access_token: None,
    };
    let valid = dpop::validate(proof, expected, times, &mut org.oauth)?;
    match valid.nonce {
        Some(nonce) if org.oauth.accepts_nonce(&nonce, times.now) => Ok(valid.jkt),
        _ => {
            let nonce = org.oauth.current_nonce(times.now);
            let mut error = OAuthError::bad_request("use_dpop_nonce", NONCE_REQUIRED);
            if let Ok(value) = HeaderValue::from_str(&nonce) {
                error = error.with_header(DPOP_NONCE, value);
            }
            Err(error)
        }
    }
}

/// Converts a configured duration to whole seconds for JWT arithmetic.
fn seconds(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(application_type: &str, grant_types: &[&str]) -> Client {
        Client {
            id: "0oa1".into(),
            is_service: application_type == "service",
            grant_types: grant_types.iter().map(|g| (*g).to_owned()).collect(),
            dpop_bound: false,
            grants: Vec::new(),
        }
    }

    fn grant_error(grant_type: Option<&str>, client: &Client) -> (String, String) {
        let error = check_grant_type(grant_type, client).expect_err("rejected");
        (error.error().to_owned(), error.description().to_owned())
    }

    #[test]
    fn grant_type_checks() {
        let service = client("service", &["client_credentials"]);
        assert!(check_grant_type(Some("client_credentials"), &service).is_ok());
        assert_eq!(
            grant_error(None, &service),
            ("invalid_request".into(), NO_GRANT_TYPE.into())
        );
        assert_eq!(
            grant_error(Some("password"), &service),
            (
                "unauthorized_client".into(),
                "The client is not authorized to use the provided grant type. Configured grant types: [client_credentials].".into()
            )
        );
        assert_eq!(
            grant_error(Some("magic"), &service).0,
            "unsupported_grant_type"
        );

        let web = client("web", &["authorization_code", "refresh_token"]);
        assert_eq!(
            grant_error(Some("client_credentials"), &web),
            ("invalid_client".into(), ONLY_SERVICE.into())
        );
        assert_eq!(
            grant_error(Some("refresh_token"), &web),
            (
                "unsupported_grant_type".into(),
                "The authorization grant type is not supported by the authorization server. Configured grant types: [authorization_code, refresh_token].".into()
            )
        );
    }

    #[test]
    fn query_credentials_are_detected() {
        assert!(has_credentials(Some("client_id=0oa1")));
        assert!(has_credentials(Some("a=1&client_assertion=x")));
        assert!(!has_credentials(Some("scope=okta.users.read")));
        assert!(!has_credentials(None));
    }

    #[test]
    fn form_keeps_last_value() {
        let form = parse_form(b"scope=a%20b&grant_type=x&grant_type=client_credentials");
        assert_eq!(form["scope"], "a b");
        assert_eq!(form["grant_type"], "client_credentials");
    }
}
