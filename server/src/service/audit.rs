//! The audit log: a record in the store and a `registrar::audit` log line
//! for every mutating call, and the ListAuditEvents RPC that reads it.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use registrar_api::prost_types::Timestamp;
use registrar_api::v1::{
    AuditEvent as AuditEventMessage, ListAuditEventsRequest, ListAuditEventsResponse,
};
use serde::{Deserialize, Serialize};
use tonic::{Request, Status};

use super::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, RegistrarService, log_error};
use crate::auth::Caller;
use crate::error::ServiceError;
use crate::okta::request_ids;
use crate::store::{AuditEvent, StoredAuditEvent};
use crate::validate::{self, InvalidArgument};

/// The audit record of one call, filled in before and after the call.
#[derive(Debug)]
pub(super) struct AuditDraft {
    /// The caller's id.
    pub(super) caller_id: String,
    /// The RPC's name.
    pub(super) operation: &'static str,
    /// The app's client id, once known.
    pub(super) client_id: String,
    /// The scope ids of the request.
    pub(super) scope_ids: Vec<String>,
    /// The kids of the keys the call changed.
    pub(super) kids: Vec<String>,
}

impl AuditDraft {
    /// Starts the record of a call of `operation` by the request's caller.
    pub(super) fn new<T>(request: &Request<T>, operation: &'static str) -> Self {
        Self {
            caller_id: caller_id(request),
            operation,
            client_id: String::new(),
            scope_ids: Vec::new(),
            kids: Vec::new(),
        }
    }

    /// Sets the app's client id.
    pub(super) fn client_id(mut self, client_id: &str) -> Self {
        self.client_id = client_id.to_string();
        self
    }

    /// Sets the request's scope ids.
    pub(super) fn scope_ids(mut self, scope_ids: &[String]) -> Self {
        self.scope_ids = scope_ids.to_vec();
        self
    }

    /// Sets the kids of the keys the call changes.
    pub(super) fn kids(mut self, kids: Vec<String>) -> Self {
        self.kids = kids;
        self
    }
}

/// Returns the id of the request's caller; a request that did not pass the
/// authentication layer, as in unit tests, counts as unauthenticated.
pub(super) fn caller_id<T>(request: &Request<T>) -> String {
    Caller::of(request).map_or_else(
        || Caller::UNAUTHENTICATED_ID.to_string(),
        |caller| caller.id.clone(),
    )
}

impl RegistrarService {
    /// Runs a mutating call, collecting the Okta request ids it causes, and
    /// appends its audit record whatever the outcome. `describe` adds what
    /// only the result shows, such as a new app's client id.
    pub(super) async fn audited<T>(
        &self,
        mut draft: AuditDraft,
        call: impl Future<Output = Result<T, ServiceError>>,
        describe: impl FnOnce(&T, &mut AuditDraft),
    ) -> Result<T, Status> {
        let (result, okta_request_ids) = request_ids::collect(call).await;
        let (result, status_code, message) = match result {
            Ok(value) => {
                describe(&value, &mut draft);
                (Ok(value), "OK".to_string(), String::new())
            }
            Err(error) => {
                let status = log_error(error);
                let code = code_name(status.code());
                let message = status.message().to_string();
                (Err(status), code, message)
            }
        };
        let event = AuditEvent {
            occurred_at: unix_millis(),
            caller_id: draft.caller_id,
            operation: draft.operation.to_string(),
            client_id: draft.client_id,
            scope_ids: draft.scope_ids,
            kids: draft.kids,
            status_code,
            message,
            okta_request_ids,
        };
        tracing::info!(
            target: "registrar::audit",
            caller = %event.caller_id,
            operation = %event.operation,
            client_id = %event.client_id,
            scope_ids = ?event.scope_ids,
            kids = ?event.kids,
            result = %event.status_code,
            okta_request_ids = ?event.okta_request_ids,
            "audit"
        );
        // NOTE: a store failure here does not fail the call, because the
        // change in Okta has happened; the log line above still records it.
        if let Err(error) = self.store.append_audit_event(&event).await {
            tracing::error!(
                %error,
                caller = %event.caller_id,
                operation = %event.operation,
                client_id = %event.client_id,
                "writing an audit record failed"
            );
        }
        result
    }

    /// Returns one page of the audit log, newest first. Admins only.
    pub(super) async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<ListAuditEventsResponse, ServiceError> {
        let caller = caller_id(&request);
        self.policies
            .current()
            .access(&caller)?
            .check_admin("ListAuditEvents")?;
        let request = request.into_inner();

        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if (1..=MAX_PAGE_SIZE).contains(&size) => size,
            size => {
                return Err(InvalidArgument::new(
                    "page_size",
                    format!("{size} is out of range; use 1 to {MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}"),
                )
                .into());
            }
        };
        if !request.client_id.is_empty() {
            validate::client_id(&request.client_id)?;
        }
        let before = if request.page_token.is_empty() {
            None
        } else {
            let token = AuditPageToken::decode(&request.page_token)?;
            if token.client_id != request.client_id {
                return Err(InvalidArgument::new(
                    "page_token",
                    "was issued for another client_id; repeat the client_id of the first request",
                )
                .into());
            }
            Some(token.before)
        };

        let limit = u32::try_from(page_size).expect("page_size was checked to be positive");
        let client_id = (!request.client_id.is_empty()).then_some(request.client_id.as_str());
        // One more than the page, to know whether another page follows.
        let mut events = self
            .store
            .audit_events(client_id, before, limit + 1)
            .await?;
        let next_page_token = if events.len() > limit as usize {
            events.truncate(limit as usize);
            let last = events.last().expect("a full page is not empty");
            AuditPageToken {
                before: last.id,
                client_id: request.client_id,
            }
            .encode()
        } else {
            String::new()
        };
        Ok(ListAuditEventsResponse {
            events: events.into_iter().map(event_message).collect(),
            next_page_token,
        })
    }
}

fn event_message(stored: StoredAuditEvent) -> AuditEventMessage {
    let event = stored.event;
    AuditEventMessage {
        event_id: stored.id,
        time: Some(Timestamp {
            seconds: event.occurred_at.div_euclid(1000),
            nanos: i32::try_from(event.occurred_at.rem_euclid(1000) * 1_000_000)
                .unwrap_or_default(),
        }),
        caller_id: event.caller_id,
        operation: event.operation,
        client_id: event.client_id,
        scope_ids: event.scope_ids,
        kids: event.kids,
        status_code: event.status_code,
        message: event.message,
        okta_request_ids: event.okta_request_ids,
    }
}

/// Returns the canonical name of a status code, such as `PERMISSION_DENIED`.
fn code_name(code: tonic::Code) -> String {
    let name = match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    };
    name.to_string()
}

fn unix_millis() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970");
    i64::try_from(elapsed.as_millis()).expect("milliseconds since 1970 fit in i64")
}

/// The state behind an audit `page_token`: the id that the next page's
/// events lie below, and the client_id filter it belongs to.
#[derive(Debug, Serialize, Deserialize)]
struct AuditPageToken {
    before: i64,
    client_id: String,
}

impl AuditPageToken {
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a page token always serialises");
        URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(token: &str) -> Result<Self, InvalidArgument> {
        let invalid = || {
            InvalidArgument::new(
                "page_token",
                "was not issued by this server; pass the next_page_token of the previous response, or leave it empty for the first page",
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        serde_json::from_slice(&bytes).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_token_round_trip() {
        let token = AuditPageToken {
            before: 42,
            client_id: "0oa1".into(),
        };
        let decoded = AuditPageToken::decode(&token.encode()).expect("round trip");
        assert_eq!(decoded.before, 42);
        assert_eq!(decoded.client_id, "0oa1");
        assert!(AuditPageToken::decode("not a token!").is_err());
    }

    #[test]
    fn code_names_are_canonical() {
        assert_eq!(
            code_name(tonic::Code::PermissionDenied),
            "PERMISSION_DENIED"
        );
        assert_eq!(code_name(tonic::Code::Ok), "OK");
    }
}
