//! Admin roles of service apps (`/oauth2/v1/clients/{clientId}/roles`) and
//! the checks that access tokens on the management endpoints go through.
//!
//! Okta decides an OAuth caller's access by two things: the token's scopes
//! decide which actions it may attempt, and the app's admin role decides
//! what it may act on. [`required_scopes`] is the scope table of the management
//! endpoints, and [`reject_without_role`] the role check that follows a
//! passed scope check. An app without an admin role gets 403 E0000006 on
//! every management call, an `APP_ADMIN` (or `ORG_ADMIN`) may manage apps
//! but not grant or revoke scopes, nor change the keys of an app that holds
//! grants, and a `SUPER_ADMIN` may do everything. `READ_ONLY_ADMIN` may only
//! read; the other standard roles have no access to apps here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::errors::{ApiResult, OktaError};
use crate::{Shared, timestamps};

/// Okta's internal type name in 404 bodies for clients.
const CLIENT_TYPE_NAME: &str = "PublicClientApp";

/// The standard role types Okta's management spec lists for role
/// assignments, with their labels. Only the Help Desk and Group Membership
/// labels were seen in a recorded response; the others are guesses.
const ROLE_TYPES: &[(&str, &str)] = &[
    ("SUPER_ADMIN", "Super Administrator"),
    ("ORG_ADMIN", "Organizational Administrator"),
    ("APP_ADMIN", "Application Administrator"),
    ("USER_ADMIN", "Group Administrator"),
    ("HELP_DESK_ADMIN", "Help Desk Administrator"),
    ("READ_ONLY_ADMIN", "Read Only Administrator"),
    ("GROUP_MEMBERSHIP_ADMIN", "Group Membership Administrator"),
    (
        "API_ACCESS_MANAGEMENT_ADMIN",
        "API Access Management Administrator",
    ),
    ("REPORT_ADMIN", "Report Administrator"),
    (
        "ACCESS_CERTIFICATIONS_ADMIN",
        "Access Certifications Administrator",
    ),
    ("ACCESS_REQUESTS_ADMIN", "Access Requests Administrator"),
    ("WORKFLOWS_ADMIN", "Workflows Administrator"),
];

/// One role assigned to a client.
#[derive(Debug, Clone)]
struct RoleAssignment {
    role_type: &'static str,
    label: &'static str,
    created: OffsetDateTime,
}

/// The role assignments of every client, by client id.
#[derive(Debug, Default)]
pub(crate) struct RoleStore {
    by_client: Mutex<HashMap<String, Vec<RoleAssignment>>>,
}

impl RoleStore {
    fn roles_of(&self, client_id: &str) -> Vec<&'static str> {
        let by_client = self
            .by_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        by_client
            .get(client_id)
            .map(|roles| roles.iter().map(|role| role.role_type).collect())
            .unwrap_or_default()
    }
}

/// A failed role assignment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// No client has the id.
    #[error("no client has the id {0}")]
    UnknownClient(String),
    /// The client is not a service app.
    #[error("roles can only be granted to service apps, and {0} is not one")]
    NotServiceApp(String),
    /// The role type is not a standard role.
    #[error("{0:?} is not a standard admin role type")]
    UnknownRole(String),
    /// The client has the role already.
    #[error("the client has the role {0} already")]
    Duplicate(String),
}

impl From<RoleError> for OktaError {
    fn from(error: RoleError) -> Self {
        match error {
            RoleError::UnknownClient(id) => OktaError::resource_not_found(&id, CLIENT_TYPE_NAME),
            RoleError::NotServiceApp(_) => OktaError::new(
                StatusCode::BAD_REQUEST,
                "E0000227",
                "Roles can only be granted to service application type",
            ),
            RoleError::UnknownRole(_) => OktaError::validation("type")
                .with_cause("type: The value is not a standard admin role type."),
            RoleError::Duplicate(_) => OktaError::new(
                StatusCode::CONFLICT,
                "E0000090",
                "The role specified is already assigned to the user.",
            ),
        }
    }
}

/// Assigns a standard admin role to a service app and returns the
/// assignment's JSON.
pub(crate) fn assign(
    shared: &Shared,
    client_id: &str,
    role_type: &str,
) -> Result<Value, RoleError> {
    let org_url = {
        let org = shared.org();
        let app = org
            .app(client_id)
            .ok_or_else(|| RoleError::UnknownClient(client_id.to_owned()))?;
        if app.client.application_type != "service" {
            return Err(RoleError::NotServiceApp(client_id.to_owned()));
        }
        org.org_url.clone().unwrap_or_default()
    };
    let &(role_type, label) = ROLE_TYPES
        .iter()
        .find(|(name, _)| *name == role_type)
        .ok_or_else(|| RoleError::UnknownRole(role_type.to_owned()))?;

    let mut by_client = shared
        .roles()
        .by_client
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let roles = by_client.entry(client_id.to_owned()).or_default();
    if roles.iter().any(|role| role.role_type == role_type) {
        return Err(RoleError::Duplicate(role_type.to_owned()));
    }
    let assignment = RoleAssignment {
        role_type,
        label,
        created: shared.now(),
    };
    let body = assignment_json(&assignment, client_id, &org_url);
    roles.push(assignment);
    tracing::info!(%client_id, role = role_type, "admin role assigned");
    Ok(body)
}

#[derive(Debug, Deserialize)]
struct AssignRequest {
    #[serde(rename = "type")]
    role_type: Option<String>,
}

/// `POST /oauth2/v1/clients/{clientId}/roles`: assigns a standard role and
/// returns 201, as a 2026 recording shows (Okta's spec says 200).
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Path(client_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request: AssignRequest =
        serde_json::from_slice(&body).map_err(|_| OktaError::malformed_body())?;
    let Some(role_type) = request.role_type else {
        return Err(OktaError::validation("type")
            .with_cause("type: The field cannot be left blank")
            .into());
    };
    let body = assign(&shared, &client_id, &role_type).map_err(OktaError::from)?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /oauth2/v1/clients/{clientId}/roles`: lists the client's role
/// assignments.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Path(client_id): Path<String>,
) -> ApiResult {
    let org_url = {
        let org = shared.org();
        if org.app(&client_id).is_none() {
            return Err(OktaError::resource_not_found(&client_id, CLIENT_TYPE_NAME).into());
        }
        org.org_url.clone().unwrap_or_default()
    };
    let by_client = shared
        .roles()
        .by_client
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let roles: Vec<Value> = by_client
        .get(&client_id)
        .into_iter()
        .flatten()
        .map(|role| assignment_json(role, &client_id, &org_url))
        .collect();
    Ok(Json(roles).into_response())
}

fn assignment_json(role: &RoleAssignment, client_id: &str, org_url: &str) -> Value {
    let created = timestamps::iso_millis(role.created);
    json!({
        "id": base32_no_padding(role.role_type.as_bytes()),
        "label": role.label,
        "type": role.role_type,
        "status": "ACTIVE",
        "created": created,
        "lastUpdated": created,
        "assignmentType": "CLIENT",
        "_links": {
            "assignee": { "href": format!("{org_url}/oauth2/v1/clients/{client_id}") }
        }
    })
}

/// Encodes bytes in RFC 4648 base32 without padding, the form of Okta's
/// standard role assignment ids (`HELP_DESK_ADMIN` becomes
/// `JBCUYUC7IRCVGS27IFCE2SKO`).
fn base32_no_padding(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut encoded = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            encoded.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        encoded.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    encoded
}

/// The kind of a management request, for the scope and role checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Registers a client through DCR.
    RegisterClient,
    /// Reads DCR clients.
    ReadClients,
    /// Deletes a DCR client.
    ManageClients,
    /// Reads apps or their keys.
    ReadApps,
    /// Changes an app, but not its keys.
    ManageApps,
    /// Adds, activates, deactivates or deletes an app's key.
    ChangeKeys,
    /// Lists or reads grants.
    ReadGrants,
    /// Grants or revokes a scope.
    ManageGrants,
}

/// Classifies a management request, or returns `None` for paths that take
/// no access token here (the role endpoints need the API token).
fn action(method: &Method, path: &str) -> Option<Action> {
    let read = method == Method::GET;
    if let Some(rest) = path.strip_prefix("/oauth2/v1/clients") {
        if rest.contains("/roles") {
            return None;
        }
        return Some(match (method, rest.is_empty()) {
            (&Method::POST, true) => Action::RegisterClient,
            _ if read => Action::ReadClients,
            _ => Action::ManageClients,
        });
    }
    let rest = path.strip_prefix("/api/v1/apps")?;
    let segments: Vec<&str> = rest.split('/').filter(|part| !part.is_empty()).collect();
    Some(match segments.get(1).copied() {
        Some("grants") if read => Action::ReadGrants,
        Some("grants") => Action::ManageGrants,
        Some("credentials") if segments.get(2) == Some(&"jwks") && !read => Action::ChangeKeys,
        _ if read => Action::ReadApps,
        _ => Action::ManageApps,
    })
}

/// Returns the scopes of which an access token needs one for a management
/// request, or `None` when the path takes only the API token.
pub(crate) fn required_scopes(method: &Method, path: &str) -> Option<&'static [&'static str]> {
    Some(match action(method, path)? {
        Action::RegisterClient => &["okta.clients.register", "okta.clients.manage"],
        Action::ReadClients => &["okta.clients.read", "okta.clients.manage"],
        Action::ManageClients => &["okta.clients.manage"],
        Action::ReadApps => &["okta.apps.read", "okta.apps.manage"],
        Action::ManageApps | Action::ChangeKeys => &["okta.apps.manage"],
        Action::ReadGrants => &["okta.appGrants.read", "okta.appGrants.manage"],
        Action::ManageGrants => &["okta.appGrants.manage"],
    })
}

/// Checks the admin role of the app that holds a valid access token, after
/// its scopes passed. Returns 403 E0000006 when the role does not allow the
/// request, and `None` when it does or the path is not a management path.
pub(crate) fn reject_without_role(
    shared: &Shared,
    method: &Method,
    path: &str,
    token: &str,
) -> Option<Response> {
    let action = action(method, path)?;
    let client_id = {
        let org = shared.org();
        org.oauth
            .valid_token(token, shared.clock().now_unix())?
            .client_id
            .clone()
    };
    let roles = shared.roles().roles_of(&client_id);
    let allowed = roles
        .iter()
        .any(|role| role_allows(shared, role, action, path));
    if allowed {
        return None;
    }
    tracing::debug!(%client_id, ?roles, ?action, "admin role does not allow the request");
    Some(OktaError::permission_denied().into_response())
}

fn role_allows(shared: &Shared, role: &str, action: Action, path: &str) -> bool {
    match role {
        "SUPER_ADMIN" => true,
        "ORG_ADMIN" | "APP_ADMIN" => match action {
            Action::ManageGrants => false,
            Action::ChangeKeys => !app_holds_grants(shared, path),
            _ => true,
        },
        "READ_ONLY_ADMIN" => matches!(
            action,
            Action::ReadApps | Action::ReadClients | Action::ReadGrants
        ),
        _ => false,
    }
}

/// Returns whether the app a `/api/v1/apps/{appId}/…` path names holds at
/// least one scope grant.
fn app_holds_grants(shared: &Shared, path: &str) -> bool {
    let app_id = path
        .strip_prefix("/api/v1/apps/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    shared
        .org()
        .app(app_id)
        .is_some_and(|app| !app.grants.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_ids_are_base32_of_type() {
        assert_eq!(
            base32_no_padding(b"HELP_DESK_ADMIN"),
            "JBCUYUC7IRCVGS27IFCE2SKO"
        );
        assert_eq!(
            base32_no_padding(b"GROUP_MEMBERSHIP_ADMIN"),
            "I5JE6VKQL5GUKTKCIVJFGSCJKBPUCRCNJFHA"
        );
        assert_eq!(base32_no_padding(b"SUPER_ADMIN"), "KNKVARKSL5AUITKJJY");
    }

    #[test]
    fn scope_table() {
        let cases = [
            (Method::POST, "/oauth2/v1/clients", "okta.clients.register"),
            (Method::GET, "/api/v1/apps", "okta.apps.read"),
            (Method::GET, "/api/v1/apps/0oa1", "okta.apps.read"),
            (Method::DELETE, "/api/v1/apps/0oa1", "okta.apps.manage"),
            (
                Method::POST,
                "/api/v1/apps/0oa1/credentials/jwks",
                "okta.apps.manage",
            ),
            (
                Method::GET,
                "/api/v1/apps/0oa1/grants",
                "okta.appGrants.read",
            ),
            (
                Method::POST,
                "/api/v1/apps/0oa1/grants",
                "okta.appGrants.manage",
            ),
        ];
        for (method, path, scope) in cases {
            let scopes = required_scopes(&method, path).expect("a management path");
            assert_eq!(scopes.first(), Some(&scope), "{method} {path}");
        }
        assert!(required_scopes(&Method::GET, "/oauth2/v1/clients/0oa1/roles").is_none());
        assert!(required_scopes(&Method::GET, "/api/v1/users").is_none());
    }

    #[test]
    fn key_changes_and_grants_are_told_apart() {
        assert_eq!(
            action(
                &Method::POST,
                "/api/v1/apps/0oa1/credentials/jwks/pks1/lifecycle/activate"
            ),
            Some(Action::ChangeKeys)
        );
        assert_eq!(
            action(&Method::GET, "/api/v1/apps/0oa1/credentials/jwks"),
            Some(Action::ReadApps)
        );
        assert_eq!(
            action(&Method::DELETE, "/api/v1/apps/0oa1/grants/oag1"),
            Some(Action::ManageGrants)
        );
        assert_eq!(
            action(&Method::POST, "/api/v1/apps/0oa1/lifecycle/deactivate"),
            Some(Action::ManageApps)
        );
    }
}
