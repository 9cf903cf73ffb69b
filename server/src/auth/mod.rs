//! Caller authentication on the gRPC API: mTLS client certificates, bearer
//! tokens, or no authentication as an explicit development setting.
//!
//! [`AuthLayer`] checks every request before it reaches a service and stores
//! the authenticated [`Caller`] in the request's extensions. Handlers read it
//! with [`Caller::of`]. The health service is always public; reflection is
//! public only with `--public-reflection`.

mod bearer;
mod config;
mod layer;
mod mtls;

use std::fmt;

pub use bearer::{BearerTokens, MIN_TOKEN_LENGTH, TokenDigest, token_file_entry};
pub use config::{AuthArgs, AuthConfig, TlsFiles};
pub use layer::{AuthLayer, AuthService};
pub use mtls::caller_id_from_certificate;

/// The default maximum of requests that one caller may have in flight.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CALLER: usize = 64;

/// The kind of credential that proved a caller's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// A client certificate that the TLS layer verified against the client
    /// CA bundle.
    Mtls,
    /// A bearer token listed in the bearer token file.
    Bearer,
    /// No proof: the server runs with `--insecure-no-auth`.
    Unauthenticated,
}

impl AuthMethod {
    /// Returns the method's name for logs: `mtls`, `bearer` or
    /// `unauthenticated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mtls => "mtls",
            Self::Bearer => "bearer",
            Self::Unauthenticated => "unauthenticated",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller of a request.
///
/// The id is the certificate's `spiffe://` URI SAN or else its subject CN
/// for [`AuthMethod::Mtls`], the entry's `name` for [`AuthMethod::Bearer`],
/// and [`Caller::UNAUTHENTICATED_ID`] for [`AuthMethod::Unauthenticated`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The caller's identity.
    pub id: String,
    /// The kind of credential that proved it.
    pub method: AuthMethod,
}

impl Caller {
    /// The id of every caller of a server that runs with
    /// `--insecure-no-auth`.
    pub const UNAUTHENTICATED_ID: &str = "unauthenticated";

    /// Returns the caller that [`AuthLayer`] stored in the request, or
    /// `None` when the request did not pass through the layer, as in unit
    /// tests that call a handler directly.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&Caller> {
        request.extensions().get::<Caller>()
    }
}

/// A reason to reject a request before it reaches a service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request has neither a verified client certificate nor a bearer
    /// token.
    #[error("missing credentials: this registrar expects {expected}")]
    Missing {
        /// The credentials that the server accepts.
        expected: &'static str,
    },
    /// The `authorization` header is not `Bearer <token>`.
    #[error(
        "malformed authorization header: expected \"Bearer <token>\" with a token of at least {MIN_TOKEN_LENGTH} characters"
    )]
    MalformedHeader,
    /// The bearer token matches no caller.
    #[error(
        "invalid bearer token: it matches no caller in the registrar's bearer token file; check the token or ask the operator to add its hash"
    )]
    UnknownToken,
    /// The verified client certificate names no caller.
    #[error(
        "the client certificate has no spiffe:// URI SAN and no usable subject CN, so it names no caller; issue it with one of the two"
    )]
    CertificateWithoutIdentity,
    /// The caller has the maximum of requests in flight.
    #[error(
        "caller {caller:?} has {max} requests in flight, the maximum per caller (--max-concurrent-requests-per-caller); retry after one finishes"
    )]
    TooManyRequests {
        /// The caller's id.
        caller: String,
        /// The configured maximum.
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_of_reads_extensions() {
        let mut request = tonic::Request::new(());
        assert_eq!(Caller::of(&request), None);
        let caller = Caller {
            id: "spiffe://example.org/billing".into(),
            method: AuthMethod::Mtls,
        };
        request.extensions_mut().insert(caller.clone());
        assert_eq!(Caller::of(&request), Some(&caller));
    }
}
