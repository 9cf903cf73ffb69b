//! `PUT /api/v1/apps/{appId}`: replaces an OIDC app, typically with the
//! body `GET` returned after changing some fields.
//!
//! Okta requires `name`, `label`, `signOnMode`, `credentials` and
//! `settings` with `settings.oauthClient.grant_types`, ignores system
//! fields such as `id` and `status`, and does not let `application_type`
//! change.
//!
//! NOTE: the emulator applies only `label` and
//! `settings.oauthClient.dpop_bound_access_tokens`, which counts as false
//! when absent. It keeps every other setting, including grant types, the
//! authentication method and keys, whatever the body contains.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde::Deserialize;

use crate::apps::app_not_found;
use crate::errors::{ApiResult, OktaError};
use crate::{Shared, app_json};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplaceAppRequest {
    name: Option<String>,
    label: Option<String>,
    sign_on_mode: Option<String>,
    #[serde(default)]
    settings: Settings,
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
    dpop_bound_access_tokens: Option<bool>,
}

/// `PUT /api/v1/apps/{appId}`: returns 200 with the replaced app.
pub(crate) async fn replace(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    if shared.org().app(&app_id).is_none() {
        return Err(app_not_found(&app_id).into());
    }
    let request: ReplaceAppRequest =
        serde_json::from_slice(&body).map_err(|_| OktaError::malformed_body())?;
    let label = check_fields(&request)?;
    let oauth = request.settings.oauth_client;

    let now = shared.now();
    let mut org = shared.org();
    let org_url = org.org_url().to_owned();
    let app = org.app_mut(&app_id).ok_or_else(|| app_not_found(&app_id))?;
    if let Some(application_type) = &oauth.application_type
        && *application_type != app.client.application_type
    {
        return Err(OktaError::validation("settings.oauthClient")
            .with_cause(format!(
                "'application_type' can't be changed after the app is created: it is '{}', not '{application_type}'.",
                app.client.application_type
            ))
            .into());
    }

    app.label = label;
    app.client.dpop_bound_access_tokens = oauth.dpop_bound_access_tokens.unwrap_or(false);
    app.last_updated = now;
    tracing::info!(
        app_id = %app_id,
        label = %app.label,
        dpop_bound_access_tokens = app.client.dpop_bound_access_tokens,
        "app replaced"
    );
    Ok(Json(app_json::application(app, &org_url)).into_response())
}

/// Checks the required fields and returns the label.
fn check_fields(request: &ReplaceAppRequest) -> Result<String, OktaError> {
    match request.name.as_deref().map(str::trim) {
        Some("oidc_client") => {}
        None | Some("") => {
            return Err(
                OktaError::validation("name").with_cause("name: The field cannot be left blank")
            );
        }
        Some(other) => {
            return Err(OktaError::validation("name").with_cause(format!(
                "name: The emulator serves only 'oidc_client' apps, not '{other}'."
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
    let label = request
        .label
        .as_deref()
        .map(str::trim)
        .filter(|label| !label.is_empty())
        .ok_or_else(|| {
            OktaError::validation("label").with_cause("label: Label must be specified")
        })?;
    if request.settings.oauth_client.grant_types.is_none() {
        return Err(OktaError::validation("settings.oauthClient")
            .with_cause("grant_types: The field cannot be left blank"));
    }
    Ok(label.to_owned())
}
