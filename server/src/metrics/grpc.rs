//! The tower layer that counts gRPC calls by method and status code and
//! measures the time to each response head.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use registrar_api::prost::Message;
use registrar_api::prost_types::FileDescriptorSet;
use tokio::time::Instant;
use tower::{Layer, Service};

/// The `method` label of a path that no served service defines. Paths are
/// chosen by callers, so unknown ones share this label to keep the number
/// of series bounded.
const UNKNOWN_METHOD: &str = "unknown";

/// Every method the server defines, as `package.Service/Method`: the
/// registrar API, health and both reflection versions.
static KNOWN_METHODS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    [
        registrar_api::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
    .into_iter()
    .flat_map(|encoded| {
        FileDescriptorSet::decode(encoded)
            .expect("the descriptor sets built into the server decode")
            .file
    })
    .flat_map(|file| {
        let package = file.package.unwrap_or_default();
        file.service.into_iter().flat_map(move |service| {
            let prefix = format!("{package}.{}", service.name.unwrap_or_default());
            service
                .method
                .into_iter()
                .map(move |method| format!("{prefix}/{}", method.name.unwrap_or_default()))
        })
    })
    .collect()
});

/// A layer that records every gRPC call in `registrar_grpc_requests_total`
/// and `registrar_grpc_request_duration_seconds`. Added outside the
/// authentication layer, it also counts calls that authentication rejects.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service of [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for GrpcMetrics<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResponseBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let method = method_label(request.uri().path());
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            let code = match &response {
                Ok(response) => code_label(response.headers()),
                // The server turns a service error into a closed stream,
                // which a client reports as UNKNOWN or UNAVAILABLE.
                Err(_) => "UNKNOWN",
            };
            super::record_grpc(method, code, started.elapsed());
            response
        })
    }
}

/// Returns the `method` label of a request path such as
/// `/registrar.v1.Registrar/CreateServiceApp`.
fn method_label(path: &str) -> &'static str {
    path.strip_prefix('/')
        .and_then(|method| KNOWN_METHODS.get(method))
        .map_or(UNKNOWN_METHOD, String::as_str)
}

/// Returns the gRPC status code name of a response head. A head without a
/// `grpc-status` header means that the handler succeeded and the status
/// follows in the trailers, so it counts as `OK`.
fn code_label(headers: &http::HeaderMap) -> &'static str {
    let Some(value) = headers.get("grpc-status") else {
        return "OK";
    };
    let code = value
        .to_str()
        .ok()
        .and_then(|value| value.parse::<i32>().ok());
    match code {
        Some(0) => "OK",
        Some(1) => "CANCELLED",
        Some(2) => "UNKNOWN",
        Some(3) => "INVALID_ARGUMENT",
        Some(4) => "DEADLINE_EXCEEDED",
        Some(5) => "NOT_FOUND",
        Some(6) => "ALREADY_EXISTS",
        Some(7) => "PERMISSION_DENIED",
        Some(8) => "RESOURCE_EXHAUSTED",
        Some(9) => "FAILED_PRECONDITION",
        Some(10) => "ABORTED",
        Some(11) => "OUT_OF_RANGE",
        Some(12) => "UNIMPLEMENTED",
        Some(13) => "INTERNAL",
        Some(14) => "UNAVAILABLE",
        Some(15) => "DATA_LOSS",
        Some(16) => "UNAUTHENTICATED",
        // A code outside the spec is treated as UNKNOWN, as gRPC clients do.
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(
            method_label("/registrar.v1.Registrar/CreateServiceApp"),
            "registrar.v1.Registrar/CreateServiceApp"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(
            method_label("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        );
        assert_eq!(
            method_label("/registrar.v1.Registrar/NoSuchMethod"),
            "unknown"
        );
        assert_eq!(method_label("/attacker.Chosen/Path"), "unknown");
        assert_eq!(method_label(""), "unknown");
    }

    #[test]
    fn codes_come_from_the_head() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(code_label(&headers), "OK");
        headers.insert("grpc-status", http::HeaderValue::from_static("7"));
        assert_eq!(code_label(&headers), "PERMISSION_DENIED");
        headers.insert("grpc-status", http::HeaderValue::from_static("99"));
        assert_eq!(code_label(&headers), "UNKNOWN");
        headers.insert("grpc-status", http::HeaderValue::from_static("x"));
        assert_eq!(code_label(&headers), "UNKNOWN");
    }
}
