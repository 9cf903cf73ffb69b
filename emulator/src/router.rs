//! The route table: Okta's paths, the emulator's admin paths, and Okta's
//! responses for unknown paths (404 E0000008) and wrong methods (405
//! E0000022).
//!
//! Okta endpoints the emulator does not serve yet, such as
//! `PUT /oauth2/v1/clients/{id}`, return 405.

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::errors::OktaError;
use crate::{
    Shared, admin, admin_roles, app_create, app_keys, app_replace, apps, clients, grants,
    middleware, org_key, token, users,
};

/// Builds the router with the middleware of every Okta request.
pub(crate) fn build(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/apps", get(apps::list).post(app_create::create))
        .route(
            "/api/v1/apps/{app_id}",
            get(apps::get)
                .put(app_replace::replace)
                .delete(apps::delete),
        )
        .route(
            "/api/v1/apps/{app_id}/lifecycle/activate",
            post(apps::activate),
        )
        .route(
            "/api/v1/apps/{app_id}/lifecycle/deactivate",
            post(apps::deactivate),
        )
        .route(
            "/api/v1/apps/{app_id}/grants",
            get(grants::list).post(grants::create),
        )
        .route(
            "/api/v1/apps/{app_id}/grants/{grant_id}",
            get(grants::get).delete(grants::revoke),
        )
        .route(
            "/api/v1/apps/{app_id}/credentials/jwks",
            get(app_keys::list).post(app_keys::add),
        )
        .route(
            "/api/v1/apps/{app_id}/credentials/jwks/{key_id}",
            get(app_keys::get).delete(app_keys::delete),
        )
        .route(
            "/api/v1/apps/{app_id}/credentials/jwks/{key_id}/lifecycle/activate",
            post(app_keys::activate),
        )
        .route(
            "/api/v1/apps/{app_id}/credentials/jwks/{key_id}/lifecycle/deactivate",
            post(app_keys::deactivate),
        )
        .route("/api/v1/users", get(users::list))
        .route(
            "/oauth2/v1/clients",
            get(clients::list).post(clients::register),
        )
        .route(
            "/oauth2/v1/clients/{client_id}",
            get(clients::get).delete(clients::delete),
        )
        .route(
            "/oauth2/v1/clients/{client_id}/roles",
            get(admin_roles::list).post(admin_roles::create),
        )
        .route(token::TOKEN_PATH, post(token::token))
        .route("/oauth2/v1/keys", get(org_key::keys))
        .route("/__emulator/requests", get(admin::requests))
        .route("/__emulator/apps", get(admin::apps))
        .route("/__emulator/key-events", get(admin::key_events))
        .route(
            "/__emulator/clock",
            get(admin::clock).post(admin::set_clock),
        )
        .route(
            "/__emulator/faults",
            get(admin::faults)
                .post(admin::add_fault)
                .delete(admin::clear_faults),
        )
        .fallback(|| async { OktaError::path_not_found().into_response() })
        .method_not_allowed_fallback(|| async { OktaError::method_not_allowed().into_response() })
        .layer(from_fn_with_state(
            Arc::clone(&shared),
            middleware::okta_pipeline,
        ))
        .with_state(shared)
}
