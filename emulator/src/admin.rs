//! The emulator's own endpoints under `/__emulator/`, outside Okta's paths.
//! They need no token, are not rate limited and are not recorded.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ActiveFault, AppSnapshot, Fault, KeyEvent, RecordedRequest, Shared};

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

/// `GET /__emulator/key-events`: every change made through the app key
/// endpoints, oldest first.
pub(crate) async fn key_events(State(shared): State<Arc<Shared>>) -> Json<Vec<KeyEvent>> {
    Json(shared.org().key_events.clone())
}

#[derive(Debug, Deserialize)]
struct ClockRequest {
    offset_seconds: i64,
}

/// `GET /__emulator/clock`: the clock offset and the emulator's time.
pub(crate) async fn clock(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(clock_json(&shared))
}

/// `POST /__emulator/clock` with `{"offset_seconds": N}`: shifts the
/// emulator's clock N seconds ahead of the system clock, or behind when N
/// is negative, and returns the same body as `GET`.
pub(crate) async fn set_clock(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<ClockRequest>(&body) else {
        let error = json!({
            "error": "The body must be {\"offset_seconds\": N} with N a whole number of seconds."
        });
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    };
    shared.clock().set_offset_seconds(request.offset_seconds);
    tracing::info!(
        offset_seconds = request.offset_seconds,
        "emulator clock offset set"
    );
    Json(clock_json(&shared)).into_response()
}

fn clock_json(shared: &Shared) -> Value {
    json!({
        "offset_seconds": shared.clock().offset_seconds(),
        "now": shared.clock().now_unix(),
    })
}

/// `GET /__emulator/faults`: every installed fault with its id and how
/// often it fired.
pub(crate) async fn faults(State(shared): State<Arc<Shared>>) -> Json<Vec<ActiveFault>> {
    Json(shared.faults().snapshot())
}

/// `POST /__emulator/faults` with a fault such as
/// `{"endpoint": "create_client", "kind": "status", "status": 503,
/// "probability": 0.5}`: installs it and returns `{"id": N}` with 201.
pub(crate) async fn add_fault(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let fault = match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => fault,
        Err(error) => {
            let message = format!(
                "The body is not a fault ({error}). Send {{\"endpoint\", \"kind\", the kind's value, and \"probability\" or \"count\"}}."
            );
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response();
        }
    };
    if let Err(message) = fault.validate() {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response();
    }
    tracing::info!(endpoint = %fault.endpoint, kind = fault.kind.name(), trigger = ?fault.trigger, "fault installed");
    let id = shared.faults().add(fault);
    (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
}

/// `DELETE /__emulator/faults`: removes every fault and returns 204.
pub(crate) async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.faults().clear();
    tracing::info!("faults cleared");
    StatusCode::NO_CONTENT
}
