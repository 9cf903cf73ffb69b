//! The two error body formats Okta uses.
//!
//! Management endpoints, and the 403, 404 and 429 responses of the OAuth
//! endpoints, use Okta's own format:
//! `{"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"}`.
//! Validation failures of Dynamic Client Registration use the RFC 7591
//! format `{"error", "error_description"}`.

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ids;

/// An error response in Okta's `E0000…` format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {summary}")]
pub(crate) struct OktaError {
    status: StatusCode,
    code: &'static str,
    summary: String,
    causes: Vec<String>,
}

impl OktaError {
    /// Builds an error with the given status, code and summary.
    pub(crate) fn new(status: StatusCode, code: &'static str, summary: impl Into<String>) -> Self {
        Self {
            status,
            code,
            summary: summary.into(),
            causes: Vec::new(),
        }
    }

    /// Appends an entry to `errorCauses`.
    pub(crate) fn with_cause(mut self, cause: impl Into<String>) -> Self {
        self.causes.push(cause.into());
        self
    }

    /// Builds 400 E0000001 `Api validation failed: {subject}`.
    pub(crate) fn validation(subject: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "E0000001",
            format!("Api validation failed: {subject}"),
        )
    }

    /// Builds 400 E0000003, the response to a body that is not valid JSON or
    /// does not have the expected field types.
    pub(crate) fn malformed_body() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "E0000003",
            "The request body was not well-formed.",
        )
    }

    /// Builds 404 E0000007 for an unknown object id, where `type_name` is
    /// Okta's internal type name such as `AppInstance`.
    pub(crate) fn resource_not_found(id: &str, type_name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "E0000007",
            format!("Not found: Resource not found: {id} ({type_name})"),
        )
    }

    /// Builds 404 E0000008 for a path that no endpoint serves.
    pub(crate) fn path_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "E0000008",
            "The requested path was not found",
        )
    }

    /// Builds 401 E0000011 for a missing or wrong API token.
    pub(crate) fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "E0000011",
            "Invalid token provided",
        )
    }

    /// Builds 403 E0000006 for a caller whose admin role does not allow
    /// the request.
    pub(crate) fn permission_denied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "E0000006",
            "You do not have permission to perform the requested action",
        )
    }

    /// Builds 405 E0000022 for a known path called with the wrong method.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "E0000022",
            "The endpoint does not support the provided HTTP method",
        )
    }

    /// Builds 400 E0000029 for an `after` cursor the org never issued.
    pub(crate) fn invalid_cursor() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "E0000029",
            "Invalid paging request.",
        )
        .with_cause("Invalid cursor.")
    }

    /// Builds 400 E0000031 for a search or filter expression the emulator
    /// does not support.
    pub(crate) fn invalid_search() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "E0000031",
            "Invalid search criteria.",
        )
    }

    /// Builds 429 E0000047 for a request past the bucket's budget.
    pub(crate) fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
        )
    }

    /// Builds 500 E0000009 for a failure inside the emulator.
    pub(crate) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "E0000009",
            "Internal Server Error",
        )
    }

    /// Builds the response of an injected 5xx fault: E0000009 with the
    /// status's reason phrase as the summary. Okta's bodies for 502, 503
    /// and 504 are not documented.
    pub(crate) fn injected_server_error(status: StatusCode) -> Self {
        let summary = status.canonical_reason().unwrap_or("Internal Server Error");
        Self::new(status, "E0000009", summary)
    }

    /// Builds 403 E0000056 for deleting an app that is still ACTIVE.
    pub(crate) fn delete_active_app() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "E0000056",
            "Delete application forbidden.",
        )
        .with_cause("The application must be deactivated before deletion.")
    }

    /// Returns the Okta error code, such as `E0000007`.
    #[cfg(test)]
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for OktaError {
    fn into_response(self) -> Response {
        let causes: Vec<_> = self
            .causes
            .iter()
            .map(|cause| json!({ "errorSummary": cause }))
            .collect();
        let body = json!({
            "errorCode": self.code,
            "errorSummary": self.summary,
            "errorLink": self.code,
            "errorId": ids::error_id(),
            "errorCauses": causes,
        });
        (self.status, Json(body)).into_response()
    }
}

/// An error response in the OAuth format of RFC 6749 and RFC 7591, with
/// any extra headers it needs, such as `DPoP-Nonce`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl OAuthError {
    /// Builds an error with the given status, `error` code and
    /// `error_description`.
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            headers: Vec::new(),
        }
    }

    /// Builds 400 `invalid_client_metadata`, the DCR validation failure.
    pub(crate) fn invalid_client_metadata(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            description,
        )
    }

    /// Builds 401 `invalid_client`, a failed client authentication.
    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    /// Builds 400 with the given `error` code.
    pub(crate) fn bad_request(error: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, description)
    }

    /// Adds a response header.
    pub(crate) fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Returns the `error` code.
    pub(crate) fn error(&self) -> &'static str {
        self.error
    }

    /// Returns the `error_description`.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.error,
            "error_description": self.description,
        });
        let mut response = (self.status, Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// An error a handler returns, in whichever format its endpoint uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiError {
    /// Okta's `E0000…` format.
    #[error(transparent)]
    Okta(#[from] OktaError),
    /// The OAuth `{error, error_description}` format.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Okta(error) => error.into_response(),
            Self::OAuth(error) => error.into_response(),
        }
    }
}

/// Result type of the endpoint handlers.
pub(crate) type ApiResult<T = Response> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("an in-memory body can be read");
        serde_json::from_slice(&bytes).expect("error bodies are JSON")
    }

    #[tokio::test]
    async fn okta_format_has_all_fields() {
        let response = OktaError::delete_active_app().into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);

        let body = body_json(response).await;
        assert_eq!(body["errorCode"], "E0000056");
        assert_eq!(body["errorSummary"], "Delete application forbidden.");
        assert_eq!(body["errorLink"], "E0000056");
        assert!(
            body["errorId"]
                .as_str()
                .is_some_and(|id| id.starts_with("oae"))
        );
        assert_eq!(
            body["errorCauses"],
            json!([{ "errorSummary": "The application must be deactivated before deletion." }])
        );
    }

    #[tokio::test]
    async fn okta_format_without_causes_has_empty_array() {
        let body = body_json(OktaError::path_not_found().into_response()).await;
        assert_eq!(body["errorCauses"], json!([]));
    }

    #[tokio::test]
    async fn oauth_format_has_two_fields() {
        let response = ApiError::from(OAuthError::invalid_client_metadata("bad")).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);

        let body = body_json(response).await;
        assert_eq!(
            body,
            json!({ "error": "invalid_client_metadata", "error_description": "bad" })
        );
    }
}
