//! Dynamic Client Registration handlers: `/oauth2/v1/clients`.
//!
//! Clients registered here are ordinary OIDC apps, also visible under
//! `/api/v1/apps`, and the `client_id` is the app id. Validation failures
//! use the RFC 7591 body `{"error": "invalid_client_metadata", …}` with
//! every violation in one `error_description`, separated by spaces; other
//! failures use Okta's error format.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::Value;

use crate::errors::{ApiResult, OAuthError, OktaError};
use crate::metadata::{self, OAuthSettings, Violation};
use crate::pagination::{LinkTarget, QueryParams, parse_limit};
use crate::state::{App, AppKey, AppStatus};
use crate::{Shared, app_json};

/// Okta's internal type name in 404 bodies for clients.
const CLIENT_TYPE_NAME: &str = "PublicClientApp";

/// Consent method of DCR clients, which DCR cannot change.
const DCR_CONSENT_METHOD: &str = "REQUIRED";

/// The registration request. Unknown fields are ignored; a field with the
/// wrong JSON type makes the body malformed.
#[derive(Debug, Deserialize)]
struct RegistrationRequest {
    client_name: Option<String>,
    application_type: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    redirect_uris: Option<Vec<String>>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    jwks: Option<JwksBody>,
    jwks_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JwksBody {
    #[serde(default)]
    keys: Vec<Value>,
}

/// `POST /oauth2/v1/clients`: registers a client and returns 201.
pub(crate) async fn register(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let request: RegistrationRequest =
        serde_json::from_slice(&body).map_err(|_| OktaError::malformed_body())?;

    let name = request.client_name.filter(|name| !name.trim().is_empty());
    let settings = OAuthSettings {
        application_type: request.application_type,
        grant_types: request.grant_types,
        response_types: request.response_types,
        token_endpoint_auth_method: request.token_endpoint_auth_method,
        redirect_uris: request.redirect_uris,
        client_uri: request.client_uri,
        logo_uri: request.logo_uri,
        jwks_keys: request.jwks.map(|jwks| jwks.keys),
        jwks_uri: request.jwks_uri,
        ..OAuthSettings::default()
    };

    let validated = metadata::validate(settings, DCR_CONSENT_METHOD);
    let (label, (client, keys)) = match (name, validated) {
        (Some(label), Ok(valid)) => (label, valid),
        (name, result) => {
            let mut violations = Vec::new();
            if name.is_none() {
                violations.push(Violation::Metadata(
                    "`client_name`: The field can't be left blank.".into(),
                ));
            }
            violations.extend(result.err().unwrap_or_default());
            return Err(invalid_metadata(&violations).into());
        }
    };

    let now = shared.now();
    let keys = keys
        .into_iter()
        .map(|jwk| AppKey::new_active(jwk, now))
        .collect();
    let app = App::new(label, AppStatus::Active, client, keys, now);

    let mut org = shared.org();
    let app = org.add_app(app);
    tracing::info!(app_id = %app.id, label = %app.label, "client registered");
    Ok((StatusCode::CREATED, Json(app_json::client(app, true))).into_response())
}

fn invalid_metadata(violations: &[Violation]) -> OAuthError {
    let sentences: Vec<String> = violations.iter().map(ToString::to_string).collect();
    OAuthError::invalid_client_metadata(sentences.join(" "))
}

/// `GET /oauth2/v1/clients`: lists clients in creation order, filtered by
/// a case-insensitive `q` prefix of `client_name`.
pub(crate) async fn list(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> ApiResult {
    let params = QueryParams::parse(raw.as_deref());
    let limit = parse_limit(params.get("limit"))?;
    let prefix = params.get("q").map(str::to_lowercase);
    let after = params.get("after");

    let org = shared.org();
    let page = org.page_apps(after, limit, |app| {
        prefix
            .as_deref()
            .is_none_or(|prefix| app.label.to_lowercase().starts_with(prefix))
    })?;
    let body: Vec<Value> = page
        .apps
        .iter()
        .map(|app| app_json::client(app, false))
        .collect();

    let mut response = Json(body).into_response();
    let links = LinkTarget {
        org_url: org.org_url(),
        path: "/oauth2/v1/clients",
        search: params.get("q").map(|q| ("q", q)).into_iter().collect(),
        after,
        limit,
    };
    let next_after = page.has_more.then(|| page.apps.last()).flatten();
    links.append_headers(
        response.headers_mut(),
        next_after.map(|app| app.id.as_str()),
    );
    Ok(response)
}

/// `GET /oauth2/v1/clients/{clientId}`: returns the client without its
/// secret.
pub(crate) async fn get(
    State(shared): State<Arc<Shared>>,
    Path(client_id): Path<String>,
) -> ApiResult {
    let org = shared.org();
    let app = org
        .app(&client_id)
        .ok_or_else(|| OktaError::resource_not_found(&client_id, CLIENT_TYPE_NAME))?;
    Ok(Json(app_json::client(app, false)).into_response())
}

/// `DELETE /oauth2/v1/clients/{clientId}`: deletes the client and its
/// grants, whatever its status, and returns 204.
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Path(client_id): Path<String>,
) -> ApiResult {
    let removed = shared.org().remove_app(&client_id);
    if removed.is_none() {
        return Err(OktaError::resource_not_found(&client_id, CLIENT_TYPE_NAME).into());
    }
    tracing::info!(app_id = %client_id, "client deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
