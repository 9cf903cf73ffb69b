//! The tower layer that authenticates each request, limits each caller's
//! requests in flight, and runs the request in a span that names the
//! caller.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};
use tracing::Instrument;

use super::{
    AuthConfig, AuthError, AuthMethod, BearerTokens, Caller, TokenDigest,
    caller_id_from_certificate,
};

/// The path prefix of the health service, which is always public.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
/// The path prefixes of the two reflection services.
const REFLECTION_PREFIXES: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// A layer that authenticates every request except health checks (and
/// reflection, when it is public) and stores the [`Caller`] in the request's
/// extensions. A rejected request never reaches a service.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authenticator: Arc<Authenticator>,
}

impl AuthLayer {
    /// Builds the layer for a validated configuration.
    pub fn new(config: &AuthConfig) -> Self {
        let expected = match (
            config.verifies_client_certificates(),
            config.bearer_tokens.is_some(),
        ) {
            (true, true) => {
                "a client certificate signed by its client CA, or an \"authorization: Bearer <token>\" header"
            }
            (true, false) => "a client certificate signed by its client CA",
            _ => "an \"authorization: Bearer <token>\" header",
        };
        Self {
            authenticator: Arc::new(Authenticator {
                mtls: config.verifies_client_certificates(),
                bearer_tokens: config.bearer_tokens.clone(),
                insecure_no_auth: config.insecure_no_auth,
                public_reflection: config.public_reflection,
                expected,
                in_flight: InFlight::new(config.max_concurrent_requests_per_caller),
            }),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

/// The service of [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

impl<S> Service<http::Request<Body>> for AuthService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path().to_string();
        if self.authenticator.is_public(&path) {
            return Box::pin(inner.call(request));
        }

        let (caller, token_digest) = match self.authenticator.authenticate(&request) {
            Ok(authenticated) => authenticated,
            Err(error) => return reject(&path, None, error),
        };
        let permit = match self.authenticator.in_flight.acquire(&caller) {
            Ok(permit) => permit,
            Err(error) => return reject(&path, Some(&caller), error),
        };
        let span = tracing::info_span!(
            "rpc",
            rpc = %path,
            caller = %caller.id,
            auth = %caller.method,
        );
        request.extensions_mut().insert(caller);
        if let Some(digest) = token_digest {
            request.extensions_mut().insert(digest);
        }
        Box::pin(
            async move {
                let response = inner.call(request).await;
                drop(permit);
                response
            }
            .instrument(span),
        )
    }
}

/// Returns the rejection as a gRPC status response, without calling a
/// service.
fn reject<E: Send + 'static>(
    path: &str,
    caller: Option<&Caller>,
    error: AuthError,
) -> Pin<Box<dyn Future<Output = Result<http::Response<Body>, E>> + Send>> {
    tracing::debug!(
        rpc = %path,
        caller = caller.map(|caller| caller.id.as_str()),
        %error,
        "request rejected before reaching the service"
    );
    let status = Status::from(error);
    Box::pin(std::future::ready(Ok(status.into_http())))
}

/// The shared state of the layer.
#[derive(Debug)]
struct Authenticator {
    mtls: bool,
    bearer_tokens: Option<BearerTokens>,
    insecure_no_auth: bool,
    public_reflection: bool,
    /// The credentials that the server accepts, for the message of a
    /// request that has none.
    expected: &'static str,
    in_flight: Arc<InFlight>,
}

impl Authenticator {
    fn is_public(&self, path: &str) -> bool {
        path.starts_with(HEALTH_PREFIX)
            || (self.public_reflection
                && REFLECTION_PREFIXES
                    .iter()
                    .any(|prefix| path.starts_with(prefix)))
    }

    /// Identifies the caller: a verified client certificate first, then a
    /// bearer token. A request with both is identified by its certificate.
    /// Returns the token's digest too for a bearer caller.
    fn authenticate(
        &self,
        request: &http::Request<Body>,
    ) -> Result<(Caller, Option<TokenDigest>), AuthError> {
        if self.insecure_no_auth {
            let caller = Caller {
                id: Caller::UNAUTHENTICATED_ID.to_string(),
                method: AuthMethod::Unauthenticated,
            };
            return Ok((caller, None));
        }
        if self.mtls
            && let Some(certificates) = request
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(TlsConnectInfo::peer_certs)
            && let Some(leaf) = certificates.first()
        {
            let id = caller_id_from_certificate(leaf)?;
            let caller = Caller {
                id,
                method: AuthMethod::Mtls,
            };
            return Ok((caller, None));
        }
        if let Some(tokens) = &self.bearer_tokens
            && let Some(header) = request.headers().get(http::header::AUTHORIZATION)
        {
            let digest = TokenDigest::of(bearer_token(header)?);
            let name = tokens.name_of(&digest).ok_or(AuthError::UnknownToken)?;
            let caller = Caller {
                id: name,
                method: AuthMethod::Bearer,
            };
            return Ok((caller, Some(digest)));
        }
        Err(AuthError::Missing {
            expected: self.expected,
        })
    }
}

/// Extracts the token of an `authorization: Bearer <token>` header. The
/// scheme is matched without regard to case, as HTTP matches
/// authentication schemes.
fn bearer_token(header: &http::HeaderValue) -> Result<&str, AuthError> {
    let value = header.to_str().map_err(|_| AuthError::MalformedHeader)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::MalformedHeader)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MalformedHeader);
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(AuthError::MalformedHeader);
    }
    Ok(token)
}

/// Counts each authenticated caller's requests in flight.
///
/// A request counts until its handler returns the response head. The body
/// of a streaming response, such as a `WatchRotations` stream, does not
/// count, because every instance of a service keeps one open and would use
/// up the limit.
#[derive(Debug)]
struct InFlight {
    max: usize,
    counts: Mutex<HashMap<(AuthMethod, String), usize>>,
}

impl InFlight {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot of the caller, or fails when it has `max` in flight.
    /// Callers of an unauthenticated server share one id, so they are not
    /// limited.
    fn acquire(self: &Arc<Self>, caller: &Caller) -> Result<Option<Permit>, AuthError> {
        if caller.method == AuthMethod::Unauthenticated {
            return Ok(None);
        }
        let key = (caller.method, caller.id.clone());
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return Err(AuthError::TooManyRequests {
                caller: caller.id.clone(),
                max: self.max,
            });
        }
        *count += 1;
        Ok(Some(Permit {
            in_flight: self.clone(),
            key,
        }))
    }
}

/// A caller's slot, given back on drop.
#[derive(Debug)]
struct Permit {
    in_flight: Arc<InFlight>,
    key: (AuthMethod, String),
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self
            .in_flight
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(id: &str) -> Caller {
        Caller {
            id: id.into(),
            method: AuthMethod::Bearer,
        }
    }

    #[test]
    fn in_flight_limits_each_caller() {
        let in_flight = InFlight::new(2);
        let first = in_flight.acquire(&caller("a")).expect("first");
        let _second = in_flight.acquire(&caller("a")).expect("second");
        let error = in_flight.acquire(&caller("a")).expect_err("third");
        assert!(matches!(error, AuthError::TooManyRequests { max: 2, .. }));
        assert!(
            in_flight.acquire(&caller("b")).is_ok(),
            "other callers go on"
        );
        drop(first);
        assert!(in_flight.acquire(&caller("a")).is_ok(), "a slot came back");
    }

    #[test]
    fn in_flight_forgets_idle_callers() {
        let in_flight = InFlight::new(1);
        drop(in_flight.acquire(&caller("a")).expect("slot"));
        assert!(in_flight.counts.lock().unwrap().is_empty());
    }

    #[test]
    fn bearer_header_parses() {
        let token = |value: &str| {
            bearer_token(&http::HeaderValue::from_str(value).unwrap()).map(str::to_string)
        };
        assert_eq!(token("Bearer abc"), Ok("abc".to_string()));
        assert_eq!(token("bearer abc"), Ok("abc".to_string()));
        assert_eq!(token("Basic abc"), Err(AuthError::MalformedHeader));
        assert_eq!(token("Bearer"), Err(AuthError::MalformedHeader));
        assert_eq!(token("Bearer "), Err(AuthError::MalformedHeader));
        assert_eq!(token("Bearer a b"), Err(AuthError::MalformedHeader));
    }
}
