//! Prometheus metrics: the process-wide registry, the functions that the
//! rest of the server calls to record events, and the `GET /metrics`
//! endpoint on its own listener (`--metrics-listen`).
//!
//! There is one registry per process, so two servers in one process (as in
//! some tests) share every series. No label contains a secret or a value that
//! callers choose freely: methods, Okta operations and buckets come from
//! fixed sets, and client ids are never labels.

mod grpc;
mod serve;

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub use grpc::{GrpcMetrics, GrpcMetricsLayer};
pub use serve::{CONTENT_TYPE, encode, serve, start};

use crate::okta::OktaError;
use crate::okta::ratelimit::{Bucket, RateLimitHeaders};

/// Upper bounds of the latency histogram buckets, in seconds: 1 ms to 30 s,
/// which covers a loopback call as well as an Okta call near its timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The `reason` labels of `registrar_okta_retries_total` for the failures
/// that the retry rules of the Okta client retry.
const RETRY_REASONS: [&str; 5] = [
    "rate_limited",
    "server_error",
    "connect_error",
    "timeout",
    "transport_error",
];

/// Labels of a finished gRPC call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GrpcLabels {
    method: &'static str,
    code: &'static str,
}

/// The label of gRPC latencies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

/// Labels of one HTTP exchange with Okta.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OktaLabels {
    operation: &'static str,
    status: StatusLabel,
}

/// An HTTP status code, or `transport_error` when no response came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct StatusLabel(Option<u16>);

impl prometheus_client::encoding::EncodeLabelValue for StatusLabel {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        match self.0 {
            Some(status) => status.encode(encoder),
            None => "transport_error".encode(encoder),
        }
    }
}

/// The label of Okta latencies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

/// The label of the rate-limit gauges: Okta's path pattern of the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BucketLabel {
    bucket: &'static str,
}

/// The label of retried Okta requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The label of rotation events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The label of token cache lookups.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The label of policy denials: the operation name of the policy file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PolicyOperationLabel {
    operation: &'static str,
}

/// Builds latency histograms with [`LATENCY_BUCKETS`].
#[derive(Debug, Clone, Copy)]
struct LatencyHistogram;

impl MetricConstructor<Histogram> for LatencyHistogram {
    fn new_metric(&self) -> Histogram {
        Histogram::new(LATENCY_BUCKETS)
    }
}

/// A step of a key rotation, as the `outcome` label of
/// `registrar_rotations_total` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationEvent {
    /// A rotation was recorded and its new key generated.
    Started,
    /// The old key was removed and the rotation ended.
    Completed,
    /// A start or a step failed; the rotation task tries the step again,
    /// so one rotation may count several failures.
    Failed,
}

impl RotationEvent {
    fn label(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// Every metric of the process.
#[derive(Debug)]
struct Metrics {
    registry: Registry,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_latency: Family<MethodLabel, Histogram, LatencyHistogram>,
    okta_requests: Family<OktaLabels, Counter>,
    okta_latency: Family<OperationLabel, Histogram, LatencyHistogram>,
    okta_rate_limit_remaining: Family<BucketLabel, Gauge>,
    okta_rate_limit_limit: Family<BucketLabel, Gauge>,
    okta_retries: Family<ReasonLabel, Counter>,
    watch_streams: Gauge,
    rotations: Family<OutcomeLabel, Counter>,
    token_cache: Family<ResultLabel, Counter>,
    policy_denials: Family<PolicyOperationLabel, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let grpc_requests = Family::default();
        let grpc_latency = Family::new_with_constructor(LatencyHistogram);
        let okta_requests = Family::default();
        let okta_latency = Family::new_with_constructor(LatencyHistogram);
        let okta_rate_limit_remaining = Family::default();
        let okta_rate_limit_limit = Family::default();
        let okta_retries: Family<ReasonLabel, Counter> = Family::default();
        let watch_streams = Gauge::default();
        let rotations: Family<OutcomeLabel, Counter> = Family::default();
        let token_cache: Family<ResultLabel, Counter> = Family::default();
        let policy_denials: Family<PolicyOperationLabel, Counter> = Family::default();

        let mut registry = Registry::with_prefix("registrar");
        registry.register(
            "grpc_requests",
            "gRPC calls by method and status code, counted when the response head is sent",
            grpc_requests.clone(),
        );
        registry.register_with_unit(
            "grpc_request_duration",
            "Time from a gRPC request to its response head",
            Unit::Seconds,
            grpc_latency.clone(),
        );
        registry.register(
            "okta_requests",
            "HTTP requests to Okta by operation and HTTP status, each attempt counted",
            okta_requests.clone(),
        );
        registry.register_with_unit(
            "okta_request_duration",
            "Time from sending an Okta request to its response head",
            Unit::Seconds,
            okta_latency.clone(),
        );
        registry.register(
            "okta_rate_limit_remaining",
            "X-Rate-Limit-Remaining of the latest Okta response in each bucket",
            okta_rate_limit_remaining.clone(),
        );
        registry.register(
            "okta_rate_limit_limit",
            "X-Rate-Limit-Limit of the latest Okta response in each bucket",
            okta_rate_limit_limit.clone(),
        );
        registry.register(
            "okta_retries",
            "Okta requests sent again after a failure, by reason",
            okta_retries.clone(),
        );
        registry.register(
            "watch_streams_open",
            "WatchRotations streams open now",
            watch_streams.clone(),
        );
        registry.register(
            "rotations",
            "Key rotation events: started, completed or failed",
            rotations.clone(),
        );
        registry.register(
            "token_cache_requests",
            "Access token requests served from the cache (hit) or from Okta (miss)",
            token_cache.clone(),
        );
        registry.register(
            "policy_denials",
            "Calls that the caller policy denied, by policy operation",
            policy_denials.clone(),
        );

        // Series with a fixed set of label values start at 0, so that a
        // rate over them works before their first event.
        for outcome in ["started", "completed", "failed"] {
            rotations.get_or_create(&OutcomeLabel { outcome }).inc_by(0);
        }
        for result in ["hit", "miss"] {
            token_cache.get_or_create(&ResultLabel { result }).inc_by(0);
        }
        for reason in RETRY_REASONS {
            okta_retries
                .get_or_create(&ReasonLabel { reason })
                .inc_by(0);
        }
        for operation in crate::policy::Operation::ALL {
            let operation = operation.as_str();
            policy_denials
                .get_or_create(&PolicyOperationLabel { operation })
                .inc_by(0);
        }

        Self {
            registry,
            grpc_requests,
            grpc_latency,
            okta_requests,
            okta_latency,
            okta_rate_limit_remaining,
            okta_rate_limit_limit,
            okta_retries,
            watch_streams,
            rotations,
            token_cache,
            policy_denials,
        }
    }
}

/// Records a gRPC call whose response head was returned.
fn record_grpc(method: &'static str, code: &'static str, elapsed: Duration) {
    let metrics = &*METRICS;
    metrics
        .grpc_requests
        .get_or_create(&GrpcLabels { method, code })
        .inc();
    metrics
        .grpc_latency
        .get_or_create(&MethodLabel { method })
        .observe(elapsed.as_secs_f64());
}

/// Records one HTTP exchange with Okta: its status (`None` when the
/// request failed before a response came), its latency and, when the
/// response carried them, the rate-limit headers of its bucket.
pub fn okta_attempt(
    operation: &'static str,
    status: Option<u16>,
    elapsed: Duration,
    bucket: Option<Bucket>,
    limits: Option<&RateLimitHeaders>,
) {
    let metrics = &*METRICS;
    let labels = OktaLabels {
        operation,
        status: StatusLabel(status),
    };
    metrics.okta_requests.get_or_create(&labels).inc();
    metrics
        .okta_latency
        .get_or_create(&OperationLabel { operation })
        .observe(elapsed.as_secs_f64());
    if let (Some(bucket), Some(limits)) = (bucket, limits) {
        let label = BucketLabel {
            bucket: bucket.name(),
        };
        metrics
            .okta_rate_limit_remaining
            .get_or_create(&label)
            .set(i64::from(limits.remaining));
        metrics
            .okta_rate_limit_limit
            .get_or_create(&label)
            .set(i64::from(limits.limit));
    }
}

/// Records that a failed Okta request is sent again, with the failure as
/// the reason.
pub fn okta_retry(error: &OktaError) {
    let reason = match error {
        OktaError::Api { status: 429, .. } => "rate_limited",
        OktaError::Api { .. } => "server_error",
        OktaError::Transport { source, .. } if source.is_connect() => "connect_error",
        OktaError::Transport { source, .. } if source.is_timeout() => "timeout",
        OktaError::Transport { .. } => "transport_error",
        // The retry rules retry none of the other errors today.
        _ => "other",
    };
    METRICS
        .okta_retries
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// Records a step of a key rotation.
pub fn rotation(event: RotationEvent) {
    let outcome = event.label();
    METRICS
        .rotations
        .get_or_create(&OutcomeLabel { outcome })
        .inc();
}

/// Records a token request that the cache served (`hit`) or that went to
/// Okta (`!hit`).
pub fn token_cache(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    METRICS
        .token_cache
        .get_or_create(&ResultLabel { result })
        .inc();
}

/// Records a call that the caller policy denied.
pub fn policy_denied(operation: crate::policy::Operation) {
    let operation = operation.as_str();
    METRICS
        .policy_denials
        .get_or_create(&PolicyOperationLabel { operation })
        .inc();
}

/// Counts an open WatchRotations stream in `registrar_watch_streams_open`
/// from creation until drop. The stream's task holds it.
#[derive(Debug)]
#[must_use = "the stream counts as open only while the guard lives"]
pub struct OpenWatchStream(());

impl OpenWatchStream {
    /// Counts one more open stream.
    pub fn open() -> Self {
        METRICS.watch_streams.inc();
        Self(())
    }
}

impl Drop for OpenWatchStream {
    fn drop(&mut self) {
        METRICS.watch_streams.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_names_every_metric() {
        record_grpc("metrics unit test", "OK", Duration::from_millis(2));
        okta_attempt(
            "metrics unit test",
            None,
            Duration::from_millis(3),
            None,
            None,
        );
        let limits = RateLimitHeaders {
            limit: 600,
            remaining: 599,
            reset_epoch: 0,
            reset_after: Duration::ZERO,
        };
        let (bucket, elapsed) = (Some(Bucket::Other), Duration::from_millis(4));
        okta_attempt(
            "metrics unit test",
            Some(200),
            elapsed,
            bucket,
            Some(&limits),
        );
        let text = encode();
        for name in [
            "registrar_grpc_requests_total",
            "registrar_grpc_request_duration_seconds",
            "registrar_okta_requests_total",
            "registrar_okta_request_duration_seconds",
            "registrar_okta_rate_limit_remaining",
            "registrar_okta_rate_limit_limit",
            "registrar_okta_retries_total",
            "registrar_watch_streams_open",
            "registrar_rotations_total",
            "registrar_token_cache_requests_total",
            "registrar_policy_denials_total",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing:\n{text}"
            );
        }
        assert!(
            text.contains(
                "registrar_okta_requests_total{operation=\"metrics unit test\",status=\"transport_error\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("registrar_okta_rate_limit_remaining{bucket=\"/api/v1\"} 599"),
            "{text}"
        );
        for series in [
            "registrar_rotations_total{outcome=\"failed\"}",
            "registrar_token_cache_requests_total{result=\"miss\"}",
            "registrar_okta_retries_total{reason=\"rate_limited\"}",
            "registrar_policy_denials_total{operation=\"watch\"}",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
    }

    #[test]
    fn watch_stream_guard_counts_until_dropped() {
        let before = METRICS.watch_streams.get();
        let guard = OpenWatchStream::open();
        assert_eq!(METRICS.watch_streams.get(), before + 1);
        drop(guard);
        assert_eq!(METRICS.watch_streams.get(), before);
    }
}
