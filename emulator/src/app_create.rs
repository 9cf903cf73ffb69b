//! `POST /api/v1/apps` for OIDC apps (`name: oidc_client`).
//!
//! The app is validated with the same OAuth rules as Dynamic Client
//! Registration, but errors use Okta's format: 400 E0000001 with one cause
//! per violation. Okta returns 200, not 201, and `?activate=false` creates
//! the app INACTIVE.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::Value;

use crate::errors::{ApiResult, OktaError};
use crate::metadata::{self, OAuthSettings, Violation};
use crate::pagination::QueryParams;
use crate::state::{App, AppKey, AppStatus};
use crate::{Shared, app_json};

/// Default consent method of apps created through the Apps API.
const APPS_API_CONSENT_METHOD: &str = "TRUSTED";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateAppRequest {
    name: Option<String>,
    label: Option<String>,
    sign_on_mode: Option<String>,
    #[serde(default)]
    credentials: Credentials,
    #[serde(default)]
    settings: Settings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    #[serde(default)]
    oauth_client: CredentialsOAuthClient,
}

#[derive(Debug, Default, Deserialize)]
struct CredentialsOAuthClient {
    token_endpoint_auth_method: Option<String>,
    client_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    #[serde(default)]
    oauth_client: SettingsOAuthClient,
}

#[derive(Debug, Default, Deserialize)]
struct SettingsOAuthClient {
    application_type: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    redirect_uris: Option<Vec<String>>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    consent_method: Option<String>,
    dpop_bound_access_tokens: Option<bool>,
    jwks: Option<JwksBody>,
    jwks_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JwksBody {
    #[serde(default)]
    keys: Vec<Value>,
}

/// `POST /api/v1/apps`: creates an OIDC app and returns 200 with it.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> ApiResult {
    let request: CreateAppRequest =
        serde_json::from_slice(&body).map_err(|_| OktaError::malformed_body())?;
    let label = check_app_fields(&request)?;
    let status = match QueryParams::parse(raw.as_deref()).get("activate") {
        Some("false") => AppStatus::Inactive,
        _ => AppStatus::Active,
    };

    let oauth = request.settings.oauth_client;
    let settings = OAuthSettings {
        application_type: oauth.application_type,
        grant_types: oauth.grant_types,
        response_types: oauth.response_types,
        token_endpoint_auth_method: request.credentials.oauth_client.token_endpoint_auth_method,
        redirect_uris: oauth.redirect_uris,
        client_uri: oauth.client_uri,
        logo_uri: oauth.logo_uri,
        jwks_keys: oauth.jwks.map(|jwks| jwks.keys),
        jwks_uri: oauth.jwks_uri,
        consent_method: oauth.consent_method,
        dpop_bound_access_tokens: oauth.dpop_bound_access_tokens,
    };
    let (client, keys) = metadata::validate(settings, APPS_API_CONSENT_METHOD)
        .map_err(|violations| validation_error(&violations))?;

    let now = shared.now();
    let keys = keys
        .into_iter()
        .map(|jwk| AppKey::new_active(jwk, now))
        .collect();
    let app = App::new(label, status, client, keys, now);

    let mut org = shared.org();
    let org_url = org.org_url().to_owned();
    let app = org.add_app(app);
    tracing::info!(app_id = %app.id, label = %app.label, status = app.status.as_str(), "app created");
    let mut body = app_json::application(app, &org_url);
    if let Some(secret) = &app.client.client_secret {
        // Okta returns the generated secret only in the create response.
        body["credentials"]["oauthClient"]["client_secret"] = Value::from(secret.as_str());
    }
    Ok(Json(body).into_response())
}

/// Checks the fields outside the OAuth settings and returns the label.
fn check_app_fields(request: &CreateAppRequest) -> Result<String, OktaError> {
    match request.name.as_deref() {
        Some("oidc_client") => {}
        None | Some("") => {
            return Err(
                OktaError::validation("name").with_cause("name: The field cannot be left blank")
            );
        }
        Some(other) => {
            return Err(OktaError::validation("name").with_cause(format!(
                "name: The emulator creates only 'oidc_client' apps, not '{other}'."
            )));
        }
    }
    if let Some(mode) = request.sign_on_mode.as_deref()
        && mode != "OPENID_CONNECT"
    {
        return Err(OktaError::validation("signOnMode").with_cause(format!(
            "signOnMode: An 'oidc_client' app needs 'OPENID_CONNECT', not '{mode}'."
        )));
    }
    if request.credentials.oauth_client.client_id.is_some() {
        return Err(OktaError::validation("credentials.oauthClient.client_id").with_cause(
            "credentials.oauthClient.client_id: The emulator does not support a custom client_id; leave it out to use the app id.",
        ));
    }
    request
        .label
        .as_deref()
        .map(str::trim)
        .filter(|label| !label.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| OktaError::validation("label").with_cause("label: Label must be specified"))
}

/// Maps OAuth violations to E0000001. Key problems use the summary Okta's
/// JWKS endpoints use, `Api validation failed: JsonWebKey`.
fn validation_error(violations: &[Violation]) -> OktaError {
    let only_keys = violations.iter().all(|v| matches!(v, Violation::Jwk(_)));
    let subject = if only_keys {
        "JsonWebKey"
    } else {
        "settings.oauthClient"
    };
    violations
        .iter()
        .fold(OktaError::validation(subject), |error, violation| {
            error.with_cause(violation.to_string())
        })
}
