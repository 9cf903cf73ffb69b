//! App key handlers: `/api/v1/apps/{appId}/credentials/jwks`.
//!
//! Keys are the same list the app object shows under
//! `settings.oauthClient.jwks.keys`, and only ACTIVE keys verify client
//! assertions at the token endpoint. `{keyId}` is Okta's key id (`pks…`),
//! not the `kid`. Rule violations return 400 E0000001
//! `Api validation failed: JsonWebKey` with the cause texts of Okta's
//! management API spec.
//!
//! Okta's spec and SDKs disagree on the list body; the emulator returns
//! `{"keys": [...]}`, the shape the Go and .NET SDKs parse.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::apps::app_not_found;
use crate::errors::{ApiResult, OktaError};
use crate::jwk::{self, MAX_KEYS};
use crate::state::{App, AppKey, KeyStatus, Org};
use crate::timestamps::iso_millis;
use crate::{KeyEvent, Shared};

/// Okta's internal type name of app keys in 404 bodies.
const KEY_TYPE_NAME: &str = "JsonWebKey";

const SUBJECT: &str = "JsonWebKey";
const EXISTING_KEY_WITHOUT_KID: &str = "Each key should have a unique kid when adding multiple keys. Use the Apps API to update the JWKS to add a kid for the existing key, or delete the existing key and re-add the key with a kid using the JWKS APIs.";
const DUPLICATE_KID: &str = "All keys in the 'jwks' must have a unique `kid`.";
const TOO_MANY_KEYS: &str = "You can't create a new key. You have reached the maximum number of keys allowed (50). To add another key, you must first delete an existing one.";
const SECOND_ENCRYPTION_KEY: &str =
    "The client can have only one active encryption key in the 'jwks'.";
const DELETE_ACTIVE: &str =
    "You can't delete an active JSON Web Key. Deactivate the key before deleting it.";
const DEACTIVATE_ONLY_ACTIVE: &str = "Can't deactivate the only active JSON Web Key when the value for `token_endpoint_auth_method` is `private_key_jwt`.";
const DEACTIVATE_ENCRYPTION_KEY: &str = "You can't deactivate the active encryption key.";
/// NOTE: Okta's docs give no text for adding a key to an app that uses
/// `jwks_uri`; this one is the emulator's.
const USES_JWKS_URI: &str = "The app uses 'jwks_uri', so keys can't be added through the JWKS API. Remove 'jwks_uri' first.";

/// `GET /api/v1/apps/{appId}/credentials/jwks`: every key, ACTIVE and
/// INACTIVE, in the order added.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
) -> ApiResult {
    let org = shared.org();
    let app = org.app(&app_id).ok_or_else(|| app_not_found(&app_id))?;
    let keys: Vec<Value> = app
        .keys
        .iter()
        .map(|key| key_json(key, &app.id, org.org_url()))
        .collect();
    Ok(Json(json!({ "keys": keys })).into_response())
}

/// `POST /api/v1/apps/{appId}/credentials/jwks`: adds a key, ACTIVE unless
/// the body has `"status": "INACTIVE"`, and returns 201 with it.
pub(crate) async fn add(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    if shared.org().app(&app_id).is_none() {
        return Err(app_not_found(&app_id).into());
    }
    let body: Value = serde_json::from_slice(&body).map_err(|_| OktaError::malformed_body())?;
    if !body.is_object() {
        return Err(OktaError::malformed_body().into());
    }
    let status = match body.get("status") {
        None | Some(Value::Null) => KeyStatus::Active,
        Some(value) if value == "ACTIVE" => KeyStatus::Active,
        Some(value) if value == "INACTIVE" => KeyStatus::Inactive,
        Some(other) => {
            let status_text = other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_owned);
            return Err(rule_violation(&format!(
                "status: The value must be 'ACTIVE' or 'INACTIVE', not '{status_text}'."
            ))
            .into());
        }
    };
    let jwk = jwk::validate_jwk(&body).map_err(|error| rule_violation(&error.to_string()))?;

    let now = shared.now();
    let mut org = shared.org();
    let org_url = org.org_url().to_owned();
    let app = org.app_mut(&app_id).ok_or_else(|| app_not_found(&app_id))?;
    let key = AppKey::new(jwk, status, now);
    check_new_key(app, &key)?;

    let body = key_json(&key, &app.id, &org_url);
    tracing::info!(app_id = %app_id, key_id = %key.id, kid = key.name(), status = key.status.as_str(), "app key added");
    let event = KeyChange {
        app_id: &app_id,
        kid: key.name().to_owned(),
        event: "added",
    };
    app.keys.push(key);
    app.last_updated = now;
    record(&mut org, event);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Checks the rules a new key must meet against the app's keys.
fn check_new_key(app: &App, key: &AppKey) -> Result<(), OktaError> {
    if app.client.jwks_uri.is_some() {
        return Err(rule_violation(USES_JWKS_URI));
    }
    if app.keys.len() >= MAX_KEYS {
        return Err(rule_violation(TOO_MANY_KEYS));
    }
    if !app.keys.is_empty() {
        if app.keys.iter().any(|existing| existing.jwk.kid.is_none()) {
            return Err(rule_violation(EXISTING_KEY_WITHOUT_KID));
        }
        let duplicate = app
            .keys
            .iter()
            .any(|existing| existing.jwk.kid == key.jwk.kid);
        if key.jwk.kid.is_none() || duplicate {
            return Err(rule_violation(DUPLICATE_KID));
        }
    }
    let active_encryption_key = app
        .keys
        .iter()
        .any(|existing| existing.is_active() && existing.is_encryption_key());
    if key.is_active() && key.is_encryption_key() && active_encryption_key {
        return Err(rule_violation(SECOND_ENCRYPTION_KEY));
    }
    Ok(())
}

/// `GET /api/v1/apps/{appId}/credentials/jwks/{keyId}`.
pub(crate) async fn get(
    State(shared): State<Arc<Shared>>,
    Path((app_id, key_id)): Path<(String, String)>,
) -> ApiResult {
    let org = shared.org();
    let app = org.app(&app_id).ok_or_else(|| app_not_found(&app_id))?;
    let key = find_key(app, &key_id)?;
    Ok(Json(key_json(key, &app.id, org.org_url())).into_response())
}

/// `POST …/credentials/jwks/{keyId}/lifecycle/activate`: returns 200 with
/// the key. Activating an encryption key deactivates the ACTIVE one, since
/// an app has at most one.
pub(crate) async fn activate(
    State(shared): State<Arc<Shared>>,
    Path((app_id, key_id)): Path<(String, String)>,
) -> ApiResult {
    let now = shared.now();
    let mut org = shared.org();
    let org_url = org.org_url().to_owned();
    let app = org.app_mut(&app_id).ok_or_else(|| app_not_found(&app_id))?;
    let index = key_index(app, &key_id)?;

    let mut changes = Vec::new();
    if !app.keys[index].is_active() {
        if app.keys[index].is_encryption_key() {
            for other in app.keys.iter_mut() {
                if other.is_active() && other.is_encryption_key() {
                    set_key_status(other, KeyStatus::Inactive, now);
                    changes.push((other.name().to_owned(), "deactivated"));
                }
            }
        }
        let key = &mut app.keys[index];
        set_key_status(key, KeyStatus::Active, now);
        changes.push((key.name().to_owned(), "activated"));
        app.last_updated = now;
    }

    let body = key_json(&app.keys[index], &app_id, &org_url);
    for (kid, event) in changes {
        tracing::info!(app_id = %app_id, kid = %kid, event, "app key status changed");
        record(
            &mut org,
            KeyChange {
                app_id: &app_id,
                kid,
                event,
            },
        );
    }
    Ok(Json(body).into_response())
}

/// `POST …/credentials/jwks/{keyId}/lifecycle/deactivate`: returns 200
/// with the key. The only ACTIVE signing key of a `private_key_jwt` app
/// and an ACTIVE encryption key cannot be deactivated.
pub(crate) async fn deactivate(
    State(shared): State<Arc<Shared>>,
    Path((app_id, key_id)): Path<(String, String)>,
) -> ApiResult {
    let now = shared.now();
    let mut org = shared.org();
    let org_url = org.org_url().to_owned();
    let app = org.app_mut(&app_id).ok_or_else(|| app_not_found(&app_id))?;
    let index = key_index(app, &key_id)?;

    let mut changed = None;
    if app.keys[index].is_active() {
        if app.keys[index].is_encryption_key() {
            return Err(rule_violation(DEACTIVATE_ENCRYPTION_KEY).into());
        }
        let active_signing_keys = app
            .keys
            .iter()
            .filter(|key| key.is_active() && !key.is_encryption_key())
            .count();
        if active_signing_keys == 1 && app.client.token_endpoint_auth_method == "private_key_jwt" {
            return Err(rule_violation(DEACTIVATE_ONLY_ACTIVE).into());
        }
        let key = &mut app.keys[index];
        set_key_status(key, KeyStatus::Inactive, now);
        changed = Some(key.name().to_owned());
        app.last_updated = now;
    }

    let body = key_json(&app.keys[index], &app_id, &org_url);
    if let Some(kid) = changed {
        tracing::info!(app_id = %app_id, kid = %kid, "app key deactivated");
        record(
            &mut org,
            KeyChange {
                app_id: &app_id,
                kid,
                event: "deactivated",
            },
        );
    }
    Ok(Json(body).into_response())
}

/// `DELETE …/credentials/jwks/{keyId}`: deletes an INACTIVE key and
/// returns 204.
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((app_id, key_id)): Path<(String, String)>,
) -> ApiResult {
    let now = shared.now();
    let mut org = shared.org();
    let app = org.app_mut(&app_id).ok_or_else(|| app_not_found(&app_id))?;
    let index = key_index(app, &key_id)?;
    if app.keys[index].is_active() {
        return Err(rule_violation(DELETE_ACTIVE).into());
    }
    let key = app.keys.remove(index);
    app.last_updated = now;

    tracing::info!(app_id = %app_id, key_id = %key.id, kid = key.name(), "app key deleted");
    record(
        &mut org,
        KeyChange {
            app_id: &app_id,
            kid: key.name().to_owned(),
            event: "deleted",
        },
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn find_key<'a>(app: &'a App, key_id: &str) -> Result<&'a AppKey, OktaError> {
    app.keys
        .iter()
        .find(|key| key.id == key_id)
        .ok_or_else(|| OktaError::resource_not_found(key_id, KEY_TYPE_NAME))
}

fn key_index(app: &App, key_id: &str) -> Result<usize, OktaError> {
    app.keys
        .iter()
        .position(|key| key.id == key_id)
        .ok_or_else(|| OktaError::resource_not_found(key_id, KEY_TYPE_NAME))
}

fn set_key_status(key: &mut AppKey, status: KeyStatus, at: OffsetDateTime) {
    key.status = status;
    key.last_updated = at;
}

fn rule_violation(cause: &str) -> OktaError {
    OktaError::validation(SUBJECT).with_cause(cause)
}

/// A key change to append to the org's key history.
struct KeyChange<'a> {
    app_id: &'a str,
    kid: String,
    event: &'static str,
}

/// Appends a key change with the app's ACTIVE keys after it.
fn record(org: &mut Org, change: KeyChange<'_>) {
    let active_kids_after = org
        .app(change.app_id)
        .map(App::active_key_names)
        .unwrap_or_default();
    org.key_events.push(KeyEvent {
        app_id: change.app_id.to_owned(),
        kid: change.kid,
        event: change.event.to_owned(),
        active_kids_after,
    });
}

/// Renders a key as the key endpoints return it: the JWK with `alg` when
/// it was sent, Okta's `id`, `status`, timestamps and lifecycle links.
fn key_json(key: &AppKey, app_id: &str, org_url: &str) -> Value {
    let key_url = format!("{org_url}/api/v1/apps/{app_id}/credentials/jwks/{}", key.id);
    let mut members = key.jwk.echo_json();
    if let Some(alg) = &key.jwk.alg {
        members.insert("alg".into(), json!(alg));
    }
    members.insert("id".into(), json!(key.id));
    members.insert("status".into(), json!(key.status.as_str()));
    members.insert("created".into(), json!(iso_millis(key.created)));
    members.insert("lastUpdated".into(), json!(iso_millis(key.last_updated)));

    let post = json!({ "allow": ["POST"] });
    let links = if key.is_active() {
        json!({
            "deactivate": { "href": format!("{key_url}/lifecycle/deactivate"), "hints": post },
        })
    } else {
        json!({
            "activate": { "href": format!("{key_url}/lifecycle/activate"), "hints": post },
            "delete": { "href": key_url, "hints": { "allow": ["DELETE"] } },
        })
    };
    members.insert("_links".into(), links);
    Value::Object(members)
}
