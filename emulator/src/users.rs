//! `GET /api/v1/users`: a fixed list with the one admin user who owns the
//! API token, so that tests can prove an access token works on a
//! management endpoint. Users cannot be created or changed.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::Shared;

/// `GET /api/v1/users`: returns the admin user.
pub(crate) async fn list(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let org = shared.org();
    let user_url = format!("{}/api/v1/users/{}", org.org_url(), org.admin_user_id);
    Json(json!([{
        "id": org.admin_user_id,
        "status": "ACTIVE",
        "profile": {
            "login": "admin@example.com",
            "email": "admin@example.com",
            "firstName": "Emulator",
            "lastName": "Admin",
        },
        "_links": { "self": { "href": user_url } },
    }]))
}
