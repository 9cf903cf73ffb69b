//! Call credentials that the SDK adds to every request.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use registrar_api::v1::registrar_client::RegistrarClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::Error;

/// The generated client as the SDK uses it: on a channel, with
/// [`Credentials`] added to each request.
pub type RawClient = RegistrarClient<InterceptedService<Channel, Credentials>>;

/// The bearer token that a client sends as `authorization: Bearer ...`.
/// Clones share the token, so setting it on one client reaches the
/// background watch of all its clones. `Debug` leaves the token out.
#[derive(Clone, Default)]
pub struct Credentials {
    bearer: Arc<RwLock<Option<MetadataValue<Ascii>>>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self
            .bearer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        f.debug_struct("Credentials")
            .field("bearer_token", if set { &"[redacted]" } else { &"none" })
            .finish()
    }
}

impl Credentials {
    /// Sets the bearer token. The token must be printable ASCII without
    /// spaces, as the registrar's token file requires.
    pub(crate) fn set_bearer_token(&self, token: &str) -> Result<(), Error> {
        let valid = !token.is_empty() && token.bytes().all(|byte| byte.is_ascii_graphic());
        if !valid {
            return Err(Error::InvalidBearerToken);
        }
        let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::InvalidBearerToken)?;
        // Keeps the value out of HPACK's dynamic table and out of Debug.
        value.set_sensitive(true);
        *self.bearer.write().unwrap_or_else(PoisonError::into_inner) = Some(value);
        Ok(())
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let bearer = self
            .bearer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(value) = bearer {
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_is_sent_and_redacted() {
        let mut credentials = Credentials::default();
        let request = credentials.call(Request::new(())).expect("no token");
        assert!(request.metadata().get("authorization").is_none());

        credentials
            .clone()
            .set_bearer_token("s3cr3t-token-0123456789abcdef0123")
            .expect("valid token");
        let request = credentials.call(Request::new(())).expect("token");
        let header = request.metadata().get("authorization").expect("header");
        assert_eq!(
            header.to_str().expect("ASCII"),
            "Bearer s3cr3t-token-0123456789abcdef0123"
        );
        let debug = format!("{credentials:?} {request:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }

    #[test]
    fn invalid_bearer_tokens_are_rejected() {
        let credentials = Credentials::default();
        for token in ["", "two words", "line\nbreak", "n\u{f6}n-ascii"] {
            assert!(
                matches!(
                    credentials.set_bearer_token(token),
                    Err(Error::InvalidBearerToken)
                ),
                "{token:?}"
            );
        }
    }
}
