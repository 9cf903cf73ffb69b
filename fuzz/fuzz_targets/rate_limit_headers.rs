//! Okta's rate-limit headers (`X-Rate-Limit-*`, `Date`) and the gRPC
//! `grpc-timeout` header. Each input line is one header: its first byte
//! picks the name, the rest is the value.

#![no_main]

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use registrar_server::okta::ratelimit::{self, MAX_RESET_WAIT, RateLimitHeaders};
use registrar_server::okta::retry;

const NAMES: [&str; 5] = [
    "x-rate-limit-limit",
    "x-rate-limit-remaining",
    "x-rate-limit-reset",
    "date",
    "grpc-timeout",
];

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|byte| *byte == b'\n') {
        let Some((selector, value)) = line.split_first() else {
            continue;
        };
        let name = HeaderName::from_static(NAMES[usize::from(*selector) % NAMES.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }

    if let Some(parsed) = RateLimitHeaders::parse(&headers) {
        assert!(parsed.reset_after <= MAX_RESET_WAIT, "{parsed:?}");
    }
    let wait = ratelimit::retry_after_429(&headers);
    assert!(
        wait >= Duration::from_secs(1) && wait <= MAX_RESET_WAIT,
        "{wait:?}"
    );

    for value in headers.values().filter_map(|value| value.to_str().ok()) {
        ratelimit::parse_http_date(value);
        if retry::parse_grpc_timeout(value).is_some() {
            assert!(value.len() <= 9, "grpc-timeout {value:?} is too long");
        }
    }
});
