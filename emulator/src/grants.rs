//! Scope consent grant handlers: `/api/v1/apps/{appId}/grants`.
//!
//! A grant lets an app request one Okta scope from the org authorization
//! server, whose issuer is the org URL. Okta's docs give no error text for
//! a wrong issuer, an unknown scope or a scope granted twice. The emulator
//! returns 400 E0000001 naming the field in each case.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::apps::app_not_found;
use crate::errors::{ApiResult, OktaError};
use crate::pagination::QueryParams;
use crate::state::{App, Grant};
use crate::{Shared, ids, scopes, timestamps};

/// Okta's internal type name of grants in 404 bodies.
/// NOTE: no Okta source shows this name; the schema name is used.
const GRANT_TYPE_NAME: &str = "OAuth2ScopeConsentGrant";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantRequest {
    scope_id: Option<String>,
    issuer: Option<String>,
}

/// `POST /api/v1/apps/{appId}/grants`: grants a scope and returns 201 with
/// the grant, including `_embedded.scope`.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    if shared.org().app(&app_id).is_none() {
        return Err(app_not_found(&app_id).into());
    }
    let request: GrantRequest =
        serde_json::from_slice(&body).map_err(|_| OktaError::malformed_body())?;
    let (scope_id, issuer) = required_fields(request)?;

    let mut org = shared.org();
    // The issuer is accepted with or without one trailing slash.
    if issuer.strip_suffix('/').unwrap_or(&issuer) != org.org_url() {
        return Err(OktaError::validation("issuer").into());
    }
    if !scopes::is_grantable(&scope_id) {
        return Err(OktaError::validation("scopeId").into());
    }

    let now = shared.now();
    let created_by = org.admin_user_id.clone();
    let org_url = org.org_url().to_owned();
    // The app may have been deleted while the body was parsed without the lock.
    let app = org.app_mut(&app_id).ok_or_else(|| app_not_found(&app_id))?;
    if app.grants.iter().any(|grant| grant.scope_id == scope_id) {
        return Err(OktaError::validation("scopeId")
            .with_cause("The scope has already been granted.")
            .into());
    }
    let grant = Grant {
        id: ids::grant_id(),
        scope_id,
        issuer: org_url.clone(),
        created: now,
        created_by,
    };
    let body = grant_json(&grant, app, &org_url, true);
    tracing::info!(app_id = %app_id, grant_id = %grant.id, scope = %grant.scope_id, "scope granted");
    app.grants.push(grant);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Checks that `scopeId` and `issuer` are present and not blank.
fn required_fields(request: GrantRequest) -> Result<(String, String), OktaError> {
    let non_blank = |value: Option<String>| value.filter(|value| !value.trim().is_empty());
    let scope_id = non_blank(request.scope_id);
    let issuer = non_blank(request.issuer);

    let missing: Vec<&str> = [
        ("scopeId", scope_id.is_none()),
        ("issuer", issuer.is_none()),
    ]
    .into_iter()
    .filter_map(|(field, is_missing)| is_missing.then_some(field))
    .collect();
    if let Some(first) = missing.first() {
        let error = missing
            .iter()
            .fold(OktaError::validation(first), |error, field| {
                error.with_cause(format!("{field}: The field cannot be left blank"))
            });
        return Err(error);
    }
    Ok((
        scope_id.expect("checked as not missing above"),
        issuer.expect("checked as not missing above"),
    ))
}

/// `GET /api/v1/apps/{appId}/grants`: lists the ACTIVE grants, without
/// pagination. `expand=scope` adds `_embedded.scope` to each.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let embed_scope = expands_scope(raw.as_deref());
    let org = shared.org();
    let app = org.app(&app_id).ok_or_else(|| app_not_found(&app_id))?;
    let body: Vec<Value> = app
        .grants
        .iter()
        .map(|grant| grant_json(grant, app, org.org_url(), embed_scope))
        .collect();
    Ok(Json(body).into_response())
}

/// `GET /api/v1/apps/{appId}/grants/{grantId}`.
pub(crate) async fn get(
    State(shared): State<Arc<Shared>>,
    Path((app_id, grant_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let embed_scope = expands_scope(raw.as_deref());
    let org = shared.org();
    let app = org.app(&app_id).ok_or_else(|| app_not_found(&app_id))?;
    let grant = app
        .grants
        .iter()
        .find(|grant| grant.id == grant_id)
        .ok_or_else(|| OktaError::resource_not_found(&grant_id, GRANT_TYPE_NAME))?;
    Ok(Json(grant_json(grant, app, org.org_url(), embed_scope)).into_response())
}

/// `DELETE /api/v1/apps/{appId}/grants/{grantId}`: revokes the grant and
/// returns 204. A revoked grant is no longer listed or found.
pub(crate) async fn revoke(
    State(shared): State<Arc<Shared>>,
    Path((app_id, grant_id)): Path<(String, String)>,
) -> ApiResult {
    let mut org = shared.org();
    let app = org.app_mut(&app_id).ok_or_else(|| app_not_found(&app_id))?;
    let index = app
        .grants
        .iter()
        .position(|grant| grant.id == grant_id)
        .ok_or_else(|| OktaError::resource_not_found(&grant_id, GRANT_TYPE_NAME))?;
    let grant = app.grants.remove(index);
    tracing::info!(app_id = %app_id, grant_id = %grant_id, scope = %grant.scope_id, "scope grant revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn expands_scope(raw_query: Option<&str>) -> bool {
    QueryParams::parse(raw_query)
        .get("expand")
        .is_some_and(|expand| expand.split(',').any(|item| item.trim() == "scope"))
}

fn grant_json(grant: &Grant, app: &App, org_url: &str, embed_scope: bool) -> Value {
    let app_url = format!("{org_url}/api/v1/apps/{}", app.id);
    let created = timestamps::iso_millis(grant.created);
    let mut body = json!({
        "id": grant.id,
        "status": "ACTIVE",
        "created": created,
        "createdBy": { "id": grant.created_by, "type": "User" },
        "lastUpdated": created,
        "issuer": grant.issuer,
        "clientId": app.id,
        "scopeId": grant.scope_id,
        "source": "ADMIN",
        "_links": {
            "app": { "href": app_url, "title": app.label },
            "self": {
                "href": format!("{app_url}/grants/{}", grant.id),
                "hints": { "allow": ["GET", "DELETE"] },
            },
            "client": { "href": format!("{org_url}/oauth2/v1/clients/{}", app.id), "title": app.label },
        },
    });
    if embed_scope {
        body["_embedded"] = json!({ "scope": { "id": grant.scope_id } });
    }
    body
}
