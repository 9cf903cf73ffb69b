//! The Prometheus endpoint after a whole flow: create, grant, two token
//! requests, a rotation watched by a stream. The process has one metrics
//! registry, so this binary contains a single test and counts start at zero.

use std::net::SocketAddr;
use std::time::Duration;

use registrar_api::v1::{
    CreateServiceAppRequest, GenerateKey, GetAccessTokenRequest, GrantScopesRequest, KeyAlgorithm,
    RotateKeyRequest, RotationPhase, WatchRotationsRequest, create_service_app_request::KeySource,
};
use registrar_tests::{Options, TestEnv};
use tokio_stream::StreamExt;

/// One sample of the text format: the metric name, its labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Fetches `GET /metrics` and checks the content type.
async fn scrape(address: SocketAddr) -> String {
    let response = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("the metrics endpoint answers");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "content type {content_type}"
    );
    response.text().await.expect("a text body")
}

/// Parses the sample lines of the text format. Label values in this test
/// contain no quotes, commas or escapes, which keeps the parser short.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("a label has a value");
                    (key.to_string(), value.trim_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().expect("a numeric value"),
            }
        })
        .collect()
}

/// Sums the samples of `name` that carry every label of `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| sample.name == name)
        .filter(|sample| {
            labels.iter().all(|(key, value)| {
                sample
                    .labels
                    .iter()
                    .any(|(have_key, have_value)| have_key == key && have_value == value)
            })
        })
        .map(|sample| sample.value)
        .sum()
}

/// Returns whether a sample of `name` carries every label of `labels`.
fn present(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> bool {
    samples.iter().any(|sample| {
        sample.name == name
            && labels.iter().all(|(key, value)| {
                sample
                    .labels
                    .iter()
                    .any(|(have_key, have_value)| have_key == key && have_value == value)
            })
    })
}

fn grpc(method: &'static str) -> [(&'static str, &'static str); 2] {
    [("method", method), ("code", "OK")]
}

#[tokio::test]
async fn metrics_follow_a_whole_flow() {
    let env = TestEnv::start_with(Options {
        metrics: true,
        ..Options::default()
    })
    .await;
    let address = env.metrics_address.expect("metrics are served");
    let mut client = env.client.clone();

    let app = client
        .create_service_app(CreateServiceAppRequest {
            client_name: "metrics-flow".into(),
            key_source: Some(KeySource::GenerateKey(GenerateKey {
                algorithm: KeyAlgorithm::Es256 as i32,
            })),
            dpop_bound: false,
        })
        .await
        .expect("create")
        .into_inner()
        .app
        .expect("app");
    let client_id = app.client_id;
    client
        .grant_scopes(GrantScopesRequest {
            client_id: client_id.clone(),
            scope_ids: vec!["okta.users.read".into()],
            issuer: String::new(),
        })
        .await
        .expect("grant");
    let token_request = GetAccessTokenRequest {
        client_id: client_id.clone(),
        scopes: vec!["okta.users.read".into()],
        force_refresh: false,
    };
    let first = client
        .get_access_token(token_request.clone())
        .await
        .expect("first token")
        .into_inner();
    assert!(!first.cached, "the first token comes from Okta");
    let second = client
        .get_access_token(token_request)
        .await
        .expect("second token")
        .into_inner();
    assert!(second.cached, "the second token comes from the cache");

    let mut stream = env
        .new_client()
        .await
        .watch_rotations(WatchRotationsRequest {
            client_ids: vec![client_id.clone()],
            include_private_keys: false,
        })
        .await
        .expect("watch")
        .into_inner();
    let next = async |stream: &mut tonic::Streaming<_>| {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a watch message within 10 s")
            .expect("the stream is open")
            .expect("a message, not an error")
    };
    let initial: registrar_api::v1::WatchRotationsResponse = next(&mut stream).await;
    client
        .rotate_key(RotateKeyRequest {
            client_id: client_id.clone(),
        })
        .await
        .expect("rotate");
    let mut revision = initial.revision;
    loop {
        let message: registrar_api::v1::WatchRotationsResponse = next(&mut stream).await;
        assert!(message.revision > revision, "revisions increase");
        revision = message.revision;
        if message.apps[0].phase == RotationPhase::Unspecified as i32 {
            break;
        }
    }

    let text = scrape(address).await;
    let samples = parse(&text);
    let requests = "registrar_grpc_requests_total";
    for method in [
        "registrar.v1.Registrar/CreateServiceApp",
        "registrar.v1.Registrar/GrantScopes",
        "registrar.v1.Registrar/RotateKey",
        "registrar.v1.Registrar/WatchRotations",
    ] {
        assert_eq!(
            sum(&samples, requests, &grpc(method)),
            1.0,
            "{method}\n{text}"
        );
    }
    let token_method = "registrar.v1.Registrar/GetAccessToken";
    assert_eq!(sum(&samples, requests, &grpc(token_method)), 2.0, "{text}");
    assert_eq!(
        sum(
            &samples,
            "registrar_grpc_request_duration_seconds_count",
            &[("method", token_method)]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        sum(&samples, "registrar_watch_streams_open", &[]),
        1.0,
        "one stream is open\n{text}"
    );
    let cache = "registrar_token_cache_requests_total";
    assert_eq!(sum(&samples, cache, &[("result", "hit")]), 1.0, "{text}");
    assert_eq!(sum(&samples, cache, &[("result", "miss")]), 1.0, "{text}");
    let rotations = "registrar_rotations_total";
    assert_eq!(
        sum(&samples, rotations, &[("outcome", "started")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        sum(&samples, rotations, &[("outcome", "completed")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        sum(&samples, rotations, &[("outcome", "failed")]),
        0.0,
        "{text}"
    );

    let okta = "registrar_okta_requests_total";
    for (operation, status) in [
        ("create client", "201"),
        ("grant scope", "201"),
        ("token request", "200"),
        ("add app key", "201"),
        ("delete app key", "204"),
    ] {
        let labels = [("operation", operation), ("status", status)];
        assert!(
            sum(&samples, okta, &labels) > 0.0,
            "{operation} {status}\n{text}"
        );
    }
    assert_eq!(
        sum(&samples, okta, &[("status", "transport_error")]),
        0.0,
        "{text}"
    );
    assert!(
        sum(
            &samples,
            "registrar_okta_request_duration_seconds_count",
            &[("operation", "token request")]
        ) > 0.0,
        "{text}"
    );
    for bucket in ["/oauth2/v1/clients", "/api/v1/apps", "/oauth2/v1/token"] {
        let labels = [("bucket", bucket)];
        let remaining = "registrar_okta_rate_limit_remaining";
        assert!(present(&samples, remaining, &labels), "{bucket}\n{text}");
        assert!(sum(&samples, remaining, &labels) > 0.0, "{bucket}\n{text}");
        let limit = "registrar_okta_rate_limit_limit";
        assert!(sum(&samples, limit, &labels) > 0.0, "{bucket}\n{text}");
    }
    assert!(
        !text.contains(&client_id),
        "no label names the client id\n{text}"
    );
    assert!(!text.contains(&first.access_token), "no token in metrics");

    // The stream's task ends once the server detects that the client left.
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let samples = parse(&scrape(address).await);
        if sum(&samples, "registrar_watch_streams_open", &[]) == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the open-streams gauge drops to 0 within 10 s of the client leaving"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let missing = reqwest::get(format!("http://{address}/other"))
        .await
        .expect("the metrics endpoint answers");
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    env.stop().await;
}
