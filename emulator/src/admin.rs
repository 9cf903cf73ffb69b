//! The emulator's own endpoints under `/__emulator/`, outside Okta's paths.
//! They need no token, are not rate limited and are not recorded.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use crate::{AppSnapshot, RecordedRequest, Shared};

/// `GET /__emulator/requests`: every recorded request, in order.
pub(crate) async fn requests(State(shared): State<Arc<Shared>>) -> Json<Vec<RecordedRequest>> {
    Json(shared.org().requests.clone())
}

/// `GET /__emulator/apps`: a snapshot of every app, in creation order.
pub(crate) async fn apps(State(shared): State<Arc<Shared>>) -> Json<Vec<AppSnapshot>> {
    let snapshots = shared
        .org()
        .apps()
        .iter()
        .map(crate::state::App::snapshot)
        .collect();
    Json(snapshots)
}
