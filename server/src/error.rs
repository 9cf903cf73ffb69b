//! The one place that maps the service's errors to gRPC status codes.
//!
//! The rule: INVALID_ARGUMENT and FAILED_PRECONDITION mean "do not retry
//! as is", UNAVAILABLE and RESOURCE_EXHAUSTED mean "retry later",
//! NOT_FOUND and ALREADY_EXISTS describe the app. A fault of the registrar's
//! own Okta credential is FAILED_PRECONDITION with a message that says so,
//! never UNAUTHENTICATED or PERMISSION_DENIED, which describe the caller.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::AuthError;
use crate::okta::{ErrorBody, OktaError};
use crate::store::StoreError;
use crate::validate::InvalidArgument;

/// An error of a registrar operation.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A request field is invalid.
    #[error(transparent)]
    InvalidArgument(#[from] InvalidArgument),
    /// No service app has this client id.
    #[error("no service app has client_id {0:?}; check the id, or create the app first")]
    AppNotFound(String),
    /// The app exists in Okta but is not an OAuth service app.
    #[error(
        "client_id {0:?} is an Okta app but not an OAuth service app; the registrar manages only service apps"
    )]
    NotServiceApp(String),
    /// A service app with this name exists already.
    #[error(
        "client_name: a service app named {name:?} already exists (client_id {client_id}); choose another name or use that app"
    )]
    NameTaken {
        /// The requested name.
        name: String,
        /// The existing app's client id.
        client_id: String,
    },
    /// Another replica recorded a create of the name recently, and its
    /// outcome is not known yet.
    #[error(
        "a create of a service app named {name:?} started {age_secs} s ago, on this or another replica, and its outcome is not known yet; retry in a few seconds"
    )]
    CreateInFlight {
        /// The requested name.
        name: String,
        /// Seconds since the other create was recorded.
        age_secs: i64,
    },
    /// RegisterService found an app of the name whose key the registrar
    /// does not hold.
    #[error(
        "service_name: a service app named {name:?} exists (client_id {client_id}) but its keys were supplied by a caller, so RegisterService cannot manage it; choose another name or delete that app"
    )]
    NotRegistrable {
        /// The service name.
        name: String,
        /// The existing app's client id.
        client_id: String,
    },
    /// The registrar has no private key for the app.
    #[error(
        "the registrar holds no private key for client_id {0:?}: the app was created with caller-supplied keys, so the caller signs its own client assertions"
    )]
    NoPrivateKey(String),
    /// The app's tokens are not DPoP-bound.
    #[error(
        "client_id {0:?} is not DPoP-bound, so its tokens need no DPoP proof; send them as Bearer tokens"
    )]
    NotDpopBound(String),
    /// The token endpoint rejected a token request.
    #[error(
        "Okta's token endpoint refused a token for client_id {client_id:?} ({error}): {detail}"
    )]
    TokenRejected {
        /// The app's client id.
        client_id: String,
        /// The OAuth `error` code.
        error: String,
        /// The failure and its fix.
        detail: String,
    },
    /// A rotation of the app is already running.
    #[error(
        "a key rotation of client_id {client_id:?} is already running (phase {phase}); wait for it to finish, which WatchRotations shows"
    )]
    RotationRunning {
        /// The app's client id.
        client_id: String,
        /// The running rotation's phase.
        phase: String,
    },
    /// The key cannot be retired.
    #[error("kid {kid:?}: {reason}")]
    KeyNotRetirable {
        /// The kid.
        kid: String,
        /// The reason and the fix.
        reason: String,
    },
    /// The caller asked for private keys, but key delivery is off.
    #[error(
        "include_private_keys: this registrar does not deliver private keys; watch without include_private_keys, or ask its operator to turn key delivery on (--deliver-private-keys)"
    )]
    KeyDeliveryOff,
    /// The caller's policy does not allow the request.
    #[error(transparent)]
    Denied(#[from] crate::policy::Denied),
    /// A reload of the bearer token file removed or replaced the token of
    /// an open stream's caller.
    #[error(
        "the bearer token of caller {0:?} is no longer in the bearer token file, so its stream ends; reconnect with the caller's current token"
    )]
    CallerRemoved(String),
    /// A stored key could not be used, or a new one not made.
    #[error(transparent)]
    Keyring(#[from] crate::keyring::KeyringError),
    /// A stored key is malformed.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] crate::keys::sign::SignError),
    /// An Okta call failed.
    #[error(transparent)]
    Okta(#[from] OktaError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    /// Returns whether the error denies the caller a right, as opposed to
    /// a failure to decide.
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            Self::Denied(_) | Self::KeyDeliveryOff | Self::CallerRemoved(_)
        )
    }

    /// Turns Okta's "not found" for an app into [`ServiceError::AppNotFound`].
    pub fn for_app(error: OktaError, client_id: &str) -> Self {
        if error.is_not_found() {
            Self::AppNotFound(client_id.to_string())
        } else {
            Self::Okta(error)
        }
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        let code = match &error {
            ServiceError::InvalidArgument(_) => Code::InvalidArgument,
            ServiceError::AppNotFound(_) | ServiceError::NotServiceApp(_) => Code::NotFound,
            ServiceError::CreateInFlight { .. } => Code::Unavailable,
            ServiceError::NameTaken { .. } | ServiceError::NotRegistrable { .. } => {
                Code::AlreadyExists
            }
            ServiceError::NoPrivateKey(_)
            | ServiceError::NotDpopBound(_)
            | ServiceError::RotationRunning { .. }
            | ServiceError::KeyNotRetirable { .. } => Code::FailedPrecondition,
            ServiceError::KeyDeliveryOff | ServiceError::Denied(_) => Code::PermissionDenied,
            ServiceError::CallerRemoved(_) => Code::Unauthenticated,
            ServiceError::TokenRejected { error, .. } => match error.as_str() {
                "invalid_scope" => Code::InvalidArgument,
                "use_dpop_nonce" => Code::Unavailable,
                "invalid_dpop_proof" => Code::Internal,
                _ => Code::FailedPrecondition,
            },
            ServiceError::Store(store)
            | ServiceError::Keyring(crate::keyring::KeyringError::Store(store))
                if store.is_unavailable() =>
            {
                return Status::unavailable(format!(
                    "the registrar's database is out of reach ({error}); retry later, on this or another replica"
                ));
            }
            ServiceError::Store(_)
            | ServiceError::Keyring(_)
            | ServiceError::Key(_)
            | ServiceError::Sign(_) => Code::Internal,
            ServiceError::Okta(okta) => return with_retry_info(okta_status(okta), okta),
        };
        Status::new(code, error.to_string())
    }
}

/// Maps a failed Okta call to a status whose message says whose fault it is.
/// Rejections of the auth layer: a missing or bad credential is
/// UNAUTHENTICATED (fix credentials), a caller over its limit of requests
/// in flight is RESOURCE_EXHAUSTED (retry later).
impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        let code = match error {
            AuthError::TooManyRequests { .. } => Code::ResourceExhausted,
            AuthError::Missing { .. }
            | AuthError::MalformedHeader
            | AuthError::UnknownToken
            | AuthError::CertificateWithoutIdentity => Code::Unauthenticated,
        };
        Status::new(code, error.to_string())
    }
}

fn okta_status(error: &OktaError) -> Status {
    let OktaError::Api {
        operation,
        status,
        body,
        request_id,
        retry_after,
        ..
    } = error
    else {
        let code = match error {
            OktaError::Credential { request_id, .. } => {
                let request_id = request_id
                    .as_deref()
                    .map(|id| format!(" [Okta request id {id}]"))
                    .unwrap_or_default();
                return Status::new(
                    Code::FailedPrecondition,
                    format!("{error}. The request itself was not at fault{request_id}"),
                );
            }
            OktaError::Transport { .. } => Code::Unavailable,
            OktaError::RateLimited { .. } => {
                return Status::new(Code::ResourceExhausted, error.to_string());
            }
            _ => Code::Internal,
        };
        let hint = if code == Code::Unavailable {
            "; retry with backoff"
        } else {
            ""
        };
        return Status::new(code, format!("{error}{hint}"));
    };

    let request_id = request_id
        .as_deref()
        .map(|id| format!(" [Okta request id {id}]"))
        .unwrap_or_default();
    let (code, message) = match status {
        400 => (
            Code::InvalidArgument,
            format!("Okta rejected the request ({operation}): {body}"),
        ),
        401 => (
            Code::FailedPrecondition,
            format!(
                "Okta rejected the registrar's own credential ({operation}: {body}); an operator must configure a valid Okta API token. The request itself was not at fault"
            ),
        ),
        403 if is_credential_denial(body) => (
            Code::FailedPrecondition,
            format!(
                "Okta refused the registrar's own credential permission ({operation}: {body}); granting scopes and changing service-app keys need a Super Admin credential. The request itself was not at fault"
            ),
        ),
        403 | 409 => (
            Code::FailedPrecondition,
            format!("Okta refused {operation}: {body}"),
        ),
        404 => (
            Code::NotFound,
            format!("Okta found no such resource ({operation}): {body}"),
        ),
        429 => {
            let seconds = retry_after.map(|wait| wait.as_secs()).unwrap_or(60);
            (
                Code::ResourceExhausted,
                format!("Okta's rate limit was reached ({operation}); retry after {seconds} s"),
            )
        }
        500..=599 => (
            Code::Unavailable,
            format!("Okta failed with HTTP {status} ({operation}): {body}; retry with backoff"),
        ),
        _ => (Code::Internal, error.to_string()),
    };
    Status::new(code, format!("{message}{request_id}"))
}

/// Adds how long to wait before retrying, as a `google.rpc.RetryInfo`
/// detail, to the "retry later" statuses of retryable Okta failures.
fn with_retry_info(status: Status, error: &OktaError) -> Status {
    let retry_later = matches!(status.code(), Code::ResourceExhausted | Code::Unavailable);
    match error.retry_after() {
        Some(wait) if retry_later && error.is_retryable() => Status::with_error_details(
            status.code(),
            status.message(),
            ErrorDetails::with_retry_info(Some(wait)),
        ),
        _ => status,
    }
}

fn is_credential_denial(body: &ErrorBody) -> bool {
    matches!(body.code(), Some("E0000006" | "E0000005" | "E0000015"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(status: u16, body: &str) -> ServiceError {
        ServiceError::Okta(OktaError::Api {
            operation: "grant scope",
            status,
            body: Box::new(ErrorBody::parse(body.as_bytes())),
            request_id: Some("req-1".into()),
            retry_after: None,
            dpop_nonce: None,
            www_authenticate: None,
        })
    }

    #[test]
    fn credential_errors_blame_the_registrar() {
        let status = Status::from(api_error(
            401,
            r#"{"errorCode":"E0000011","errorSummary":"Invalid token provided"}"#,
        ));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status.message().contains("registrar's own credential"),
            "{}",
            status.message()
        );
        assert!(status.message().contains("req-1"));

        let status = Status::from(api_error(
            403,
            r#"{"errorCode":"E0000006","errorSummary":"You do not have permission"}"#,
        ));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("Super Admin"));
    }

    #[test]
    fn availability_errors_are_retryable() {
        assert_eq!(Status::from(api_error(503, "")).code(), Code::Unavailable);
        assert_eq!(
            Status::from(api_error(429, r#"{"errorCode":"E0000047"}"#)).code(),
            Code::ResourceExhausted
        );
    }

    #[test]
    fn retryable_errors_carry_retry_info() {
        let limited = ServiceError::Okta(OktaError::RateLimited {
            operation: "create client",
            bucket: "/oauth2/v1/clients",
            retry_after: std::time::Duration::from_secs(7),
        });
        let status = Status::from(limited);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("retry after 7 s"),
            "{}",
            status.message()
        );
        let delay = status
            .get_error_details()
            .retry_info()
            .and_then(|info| info.retry_delay);
        assert_eq!(delay, Some(std::time::Duration::from_secs(7)));

        let unavailable = match api_error(503, "") {
            ServiceError::Okta(error) => {
                ServiceError::Okta(error.with_retry_after(std::time::Duration::from_secs(2)))
            }
            other => other,
        };
        let status = Status::from(unavailable);
        assert_eq!(status.code(), Code::Unavailable);
        let delay = status
            .get_error_details()
            .retry_info()
            .and_then(|info| info.retry_delay);
        assert_eq!(delay, Some(std::time::Duration::from_secs(2)));

        let rejected = Status::from(api_error(400, ""));
        assert!(rejected.get_error_details().retry_info().is_none());
    }

    #[test]
    fn token_errors_map_by_oauth_code() {
        let cases = [
            ("invalid_client", Code::FailedPrecondition),
            ("invalid_scope", Code::InvalidArgument),
            ("consent_required", Code::FailedPrecondition),
            ("invalid_dpop_proof", Code::Internal),
            ("use_dpop_nonce", Code::Unavailable),
        ];
        for (error, code) in cases {
            let status = Status::from(ServiceError::TokenRejected {
                client_id: "0oa1".into(),
                error: error.into(),
                detail: "what to fix".into(),
            });
            assert_eq!(status.code(), code, "{error}");
            assert!(status.message().contains(error), "{}", status.message());
            assert!(
                status.message().contains("what to fix"),
                "{}",
                status.message()
            );
        }
    }

    #[test]
    fn not_found_names_the_client() {
        let status = Status::from(ServiceError::AppNotFound("0oaX".into()));
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().contains("0oaX"));
    }
}
