//! Failures of Okta calls, classified by what went wrong: Okta answered with
//! an error, the transport failed, or the answer could not be decoded.

use std::time::Duration;

use serde::Deserialize;

/// The error body of an Okta response, in whichever of Okta's two formats it
/// came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorBody {
    /// Okta's management API format (`errorCode`, `errorSummary`,
    /// `errorCauses`), used under `/api/v1` and for most 4xx statuses.
    Okta {
        /// The `E00000xx` error code.
        code: String,
        /// The summary sentence.
        summary: String,
        /// The `errorSummary` of each cause.
        causes: Vec<String>,
    },
    /// The OAuth format of RFC 6749 and RFC 7591 (`error`,
    /// `error_description`), used by `/oauth2/v1/clients` validation and the
    /// token endpoint.
    OAuth {
        /// The `error` code, such as `invalid_client_metadata`.
        error: String,
        /// The `error_description` sentence.
        description: String,
    },
    /// A body in neither format, or none. Holds at most the first 200
    /// characters.
    Other(String),
}

impl ErrorBody {
    /// Parses an error body, falling back to [`ErrorBody::Other`].
    pub fn parse(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Okta {
            #[serde(rename = "errorCode")]
            code: String,
            #[serde(rename = "errorSummary", default)]
            summary: String,
            #[serde(rename = "errorCauses", default)]
            causes: Option<Vec<Cause>>,
        }
        #[derive(Deserialize)]
        struct Cause {
            #[serde(rename = "errorSummary", default)]
            summary: String,
        }
        #[derive(Deserialize)]
        struct OAuth {
            error: String,
            #[serde(default)]
            error_description: Option<String>,
        }

        if let Ok(okta) = serde_json::from_slice::<Okta>(body) {
            let causes = okta.causes.unwrap_or_default();
            return Self::Okta {
                code: okta.code,
                summary: okta.summary,
                causes: causes.into_iter().map(|cause| cause.summary).collect(),
            };
        }
        if let Ok(oauth) = serde_json::from_slice::<OAuth>(body) {
            return Self::OAuth {
                error: oauth.error,
                description: oauth.error_description.unwrap_or_default(),
            };
        }
        let text = String::from_utf8_lossy(body);
        Self::Other(text.chars().take(200).collect())
    }

    /// Returns the Okta `errorCode` or OAuth `error`, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Okta { code, .. } => Some(code),
            Self::OAuth { error, .. } => Some(error),
            Self::Other(_) => None,
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Okta {
                code,
                summary,
                causes,
            } => {
                write!(f, "{code} {summary}")?;
                if !causes.is_empty() {
                    write!(f, " ({})", causes.join("; "))?;
                }
                Ok(())
            }
            Self::OAuth { error, description } if description.is_empty() => f.write_str(error),
            Self::OAuth { error, description } => write!(f, "{error}: {description}"),
            Self::Other(text) if text.is_empty() => f.write_str("no error body"),
            Self::Other(text) => write!(f, "unrecognised error body: {text}"),
        }
    }
}

/// A failed Okta call.
#[derive(Debug, thiserror::Error)]
pub enum OktaError {
    /// Okta could not be reached, or did not respond in time.
    #[error("Okta could not be reached ({operation}): {source}")]
    Transport {
        /// The operation, such as `create client`.
        operation: &'static str,
        /// The transport error, without the URL and never with a header.
        #[source]
        source: reqwest::Error,
    },
    /// The registrar's share of a rate-limit bucket is spent, and the
    /// window resets after the gRPC call's deadline.
    #[error(
        "the registrar's share of Okta's rate limit for {bucket} is spent ({operation}); retry after {} s",
        retry_after.as_secs().max(1)
    )]
    RateLimited {
        /// The operation, such as `create client`.
        operation: &'static str,
        /// The bucket, named by Okta's path pattern.
        bucket: &'static str,
        /// How long until the bucket has room again.
        retry_after: Duration,
    },
    /// Okta responded with an error status.
    #[error("Okta rejected {operation} with HTTP {status}: {body}")]
    Api {
        /// The operation, such as `create client`.
        operation: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The parsed error body, boxed to keep the error small.
        body: Box<ErrorBody>,
        /// Okta's `X-Okta-Request-Id`, for support cases.
        request_id: Option<String>,
        /// How long to wait before retrying, from the rate-limit headers of
        /// a 429 answer.
        retry_after: Option<Duration>,
        /// The `DPoP-Nonce` header, which a `use_dpop_nonce` error carries.
        dpop_nonce: Option<String>,
        /// The `WWW-Authenticate` header, which names the missing scope of
        /// an access token.
        www_authenticate: Option<String>,
    },
    /// Okta denied the registrar's own OAuth credential, or the credential
    /// could not be used; `detail` names the missing scope or admin role.
    #[error("Okta denied the registrar's own credential ({operation}): {detail}")]
    Credential {
        /// The operation, such as `grant scope`.
        operation: &'static str,
        /// The HTTP status of Okta's response, if there was one.
        status: Option<u16>,
        /// The missing scope or role, and the fix.
        detail: String,
        /// Okta's `X-Okta-Request-Id`, for support cases.
        request_id: Option<String>,
    },
    /// Okta answered with success, but the body was not what its API
    /// documents.
    #[error("Okta's answer to {operation} could not be decoded: {detail}")]
    Decode {
        /// The operation, such as `create client`.
        operation: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Okta's pagination led somewhere the client refuses to follow: another
    /// host, or a page it already fetched.
    #[error("Okta's pagination for {operation} is unusable: {detail}")]
    Pagination {
        /// The operation, such as `list apps`.
        operation: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl OktaError {
    /// Returns the HTTP status when Okta answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Credential { status, .. } => *status,
            _ => None,
        }
    }

    /// Returns whether Okta answered 404 (or, for a client that Okta's legacy
    /// DCR endpoints do not know, 401 `invalid_client`).
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Api { status: 404, .. } => true,
            Self::Api {
                status: 401, body, ..
            } => body.code() == Some("invalid_client"),
            _ => false,
        }
    }

    /// Returns the OAuth `error` code of a token endpoint error.
    pub fn oauth_error(&self) -> Option<(&str, &str)> {
        match self {
            Self::Api { body, .. } => match body.as_ref() {
                ErrorBody::OAuth { error, description } => Some((error, description)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Returns Okta's `X-Okta-Request-Id` of an error response.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api { request_id, .. } | Self::Credential { request_id, .. } => {
                request_id.as_deref()
            }
            _ => None,
        }
    }

    /// Returns whether a later attempt may succeed: a rate limit, a 5xx
    /// answer or a transport failure.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::RateLimited { .. } => true,
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Returns whether Okta may have applied the failed request: its
    /// response was lost in transport, or Okta answered with a 5xx status.
    /// A 429, a 4xx answer or a failure to connect prove that it did not.
    pub fn may_have_applied(&self) -> bool {
        match self {
            Self::Transport { source, .. } => !source.is_connect(),
            Self::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Returns how long the caller should wait before retrying, for
    /// retryable errors whose wait is known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            Self::Transport { .. } => Some(super::transport::UNAVAILABLE_RETRY_DELAY),
            _ => None,
        }
    }

    /// Sets the wait that [`OktaError::retry_after`] returns on an error
    /// answer; other errors are returned unchanged.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        if let Self::Api { retry_after, .. } = &mut self {
            *retry_after = Some(wait);
        }
        self
    }

    /// Returns whether Okta found fault with the request itself (HTTP 400),
    /// as opposed to the registrar's credential or Okta's availability.
    pub fn is_bad_request(&self) -> bool {
        matches!(self, Self::Api { status: 400, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_okta_format() {
        let body = br#"{"errorCode":"E0000001","errorSummary":"Api validation failed: scopeId",
            "errorLink":"E0000001","errorId":"oae1","errorCauses":[{"errorSummary":"bad scope"}]}"#;
        let parsed = ErrorBody::parse(body);
        assert_eq!(parsed.code(), Some("E0000001"));
        assert_eq!(
            parsed.to_string(),
            "E0000001 Api validation failed: scopeId (bad scope)"
        );
    }

    #[test]
    fn parse_oauth_format() {
        let body =
            br#"{"error":"invalid_client_metadata","error_description":"client_name: blank"}"#;
        let parsed = ErrorBody::parse(body);
        assert_eq!(parsed.code(), Some("invalid_client_metadata"));
        assert_eq!(
            parsed.to_string(),
            "invalid_client_metadata: client_name: blank"
        );
    }

    #[test]
    fn parse_other_body_is_truncated() {
        let body = "x".repeat(1000);
        match ErrorBody::parse(body.as_bytes()) {
            ErrorBody::Other(text) => assert_eq!(text.len(), 200),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(ErrorBody::parse(b"").to_string(), "no error body");
    }

    #[test]
    fn okta_causes_may_be_null() {
        let body = br#"{"errorCode":"E0000047","errorSummary":"rate","errorCauses":null}"#;
        assert_eq!(ErrorBody::parse(body).code(), Some("E0000047"));
    }
}
