//! Helpers shared by the integration tests: an emulator served on a free
//! loopback port, an HTTP client, and test keys.

#![allow(dead_code)] // Each test crate uses a different subset.

pub(crate) mod jose;

use std::time::Duration;

use okta_emulator::{Config, Emulator, RateLimits};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The API token every test emulator accepts.
pub(crate) const TOKEN: &str = "test-api-token";

/// The `client_assertion_type` of private_key_jwt.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A 2048-bit RSA modulus: the example key of RFC 7638 section 3.1.
pub(crate) const RSA_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

/// The P-256 coordinates of the example key in RFC 7517 appendix A.1.
pub(crate) const EC_X: &str = "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4";
pub(crate) const EC_Y: &str = "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM";

/// An emulator serving on `127.0.0.1:0`, stopped when dropped.
pub(crate) struct TestOrg {
    pub(crate) emulator: Emulator,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestOrg {
    /// Starts an emulator with the default budgets.
    pub(crate) async fn start() -> Self {
        Self::start_with(RateLimits::default()).await
    }

    /// Starts an emulator with the given budgets.
    pub(crate) async fn start_with(rate_limits: RateLimits) -> Self {
        let mut config = Config::new(TOKEN);
        config.rate_limits = rate_limits;
        Self::start_with_config(config).await
    }

    /// Starts an emulator with the given config, whose API token must be
    /// [`TOKEN`].
    pub(crate) async fn start_with_config(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a free loopback port succeeds");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let emulator = Emulator::new(config);
        let (shutdown, stop) = oneshot::channel::<()>();
        let serving = emulator.clone();
        let task = tokio::spawn(async move {
            serving
                .serve(listener, async {
                    let _ = stop.await;
                })
                .await
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a client without TLS settings builds");
        Self {
            emulator,
            base: format!("http://{address}"),
            http,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Stops serving and waits for the server task.
    pub(crate) async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let result = task.await.expect("the server task does not panic");
            result.expect("serving ends without an error");
        }
    }

    /// Builds a request with the valid API token.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("SSWS {TOKEN}"))
            .header("Accept", "application/json")
    }

    /// Builds a request without an Authorization header.
    pub(crate) fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Sends a request and returns the response.
    pub(crate) async fn send(&self, builder: RequestBuilder) -> Response {
        builder.send().await.expect("the emulator answers")
    }

    /// `GET` with the valid token.
    pub(crate) async fn get(&self, path: &str) -> Response {
        self.send(self.request(Method::GET, path)).await
    }

    /// `GET` of an absolute URL, such as a `Link` target, with the valid
    /// token.
    pub(crate) async fn get_url(&self, url: &str) -> Response {
        let request = self
            .http
            .get(url)
            .header("Authorization", format!("SSWS {TOKEN}"));
        self.send(request).await
    }

    /// `DELETE` with the valid token.
    pub(crate) async fn delete(&self, path: &str) -> Response {
        self.send(self.request(Method::DELETE, path)).await
    }

    /// `POST` of a JSON body with the valid token.
    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    /// Registers a service client through DCR and returns its id.
    pub(crate) async fn register(&self, name: &str) -> String {
        let response = self
            .post_json("/oauth2/v1/clients", &service_client(name))
            .await;
        assert_eq!(response.status(), 201, "registering {name}");
        let body: Value = response.json().await.expect("JSON body");
        body["client_id"]
            .as_str()
            .expect("client_id is a string")
            .to_owned()
    }

    /// Returns the token endpoint URL, which client assertions name as `aud`.
    pub(crate) fn token_url(&self) -> String {
        format!("{}/oauth2/v1/token", self.base)
    }

    /// Registers a private_key_jwt service client with the given public
    /// keys and grants it `scopes`. Returns the client id.
    pub(crate) async fn service_app(
        &self,
        name: &str,
        keys: Vec<Value>,
        scopes: &[&str],
    ) -> String {
        let body = json!({
            "client_name": name,
            "application_type": "service",
            "grant_types": ["client_credentials"],
            "response_types": ["token"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": { "keys": keys },
        });
        let response = self.post_json("/oauth2/v1/clients", &body).await;
        assert_eq!(response.status(), 201, "registering {name}");
        let client_id = json_body(response).await["client_id"]
            .as_str()
            .expect("client_id is a string")
            .to_owned();
        for scope in scopes {
            self.grant(&client_id, scope).await;
        }
        client_id
    }

    /// Grants a scope to an app.
    pub(crate) async fn grant(&self, app_id: &str, scope: &str) {
        let grant = json!({ "scopeId": scope, "issuer": self.base });
        let response = self
            .post_json(&format!("/api/v1/apps/{app_id}/grants"), &grant)
            .await;
        assert_eq!(response.status(), 201, "granting {scope}");
    }

    /// Posts a form to the token endpoint, with a `DPoP` header when
    /// `proof` is set.
    pub(crate) async fn token_request(
        &self,
        form: &[(&str, &str)],
        proof: Option<&str>,
    ) -> Response {
        let mut request = self
            .http
            .post(self.token_url())
            .header("Accept", "application/json")
            .form(form);
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        self.send(request).await
    }

    /// Requests a client-credentials token with a client assertion.
    pub(crate) async fn client_credentials(
        &self,
        assertion: &str,
        scope: &str,
        proof: Option<&str>,
    ) -> Response {
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ];
        self.token_request(&form, proof).await
    }

    /// Calls `GET /api/v1/users` with the given `Authorization` value and
    /// optional `DPoP` proof.
    pub(crate) async fn users(&self, authorization: &str, proof: Option<&str>) -> Response {
        let mut request = self
            .http
            .get(format!("{}/api/v1/users", self.base))
            .header("Authorization", authorization);
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        self.send(request).await
    }

    /// Deactivates an app, which must happen before the Apps API deletes it.
    pub(crate) async fn deactivate(&self, app_id: &str) {
        let path = format!("/api/v1/apps/{app_id}/lifecycle/deactivate");
        let response = self.send(self.request(Method::POST, &path)).await;
        assert_eq!(response.status(), 200, "deactivating {app_id}");
    }
}

impl Drop for TestOrg {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Builds a DCR request for a private_key_jwt service client with one RSA key.
pub(crate) fn service_client(name: &str) -> Value {
    json!({
        "client_name": name,
        "application_type": "service",
        "grant_types": ["client_credentials"],
        "response_types": ["token"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": { "keys": [rsa_key("k-2026-01")] }
    })
}

/// Builds a public RSA JWK with the given kid.
pub(crate) fn rsa_key(kid: &str) -> Value {
    json!({ "kty": "RSA", "kid": kid, "e": "AQAB", "n": RSA_N, "use": "sig", "alg": "RS256" })
}

/// Builds a public P-256 JWK with the given kid.
pub(crate) fn ec_key(kid: &str) -> Value {
    json!({ "kty": "EC", "kid": kid, "crv": "P-256", "x": EC_X, "y": EC_Y })
}

/// Reads a JSON body.
pub(crate) async fn json_body(response: Response) -> Value {
    response.json().await.expect("the body is JSON")
}

/// Asserts an Okta-format error: status, code, summary and causes.
pub(crate) async fn assert_okta_error(
    response: Response,
    status: u16,
    code: &str,
    summary: &str,
    causes: &[&str],
) {
    assert_eq!(response.status(), status, "status for {code}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );

    let body = json_body(response).await;
    assert_eq!(body["errorCode"], code, "{body}");
    assert_eq!(body["errorSummary"], summary, "{body}");
    assert_eq!(body["errorLink"], code, "{body}");
    let error_id = body["errorId"].as_str().unwrap_or_default();
    assert!(
        error_id.starts_with("oae") && error_id.len() == 25,
        "{body}"
    );
    let expected: Vec<Value> = causes
        .iter()
        .map(|cause| json!({ "errorSummary": cause }))
        .collect();
    assert_eq!(body["errorCauses"], Value::Array(expected), "{body}");
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 5, "{body}");
}

/// Asserts an RFC 7591 `invalid_client_metadata` error with the given
/// description.
pub(crate) async fn assert_invalid_metadata(response: Response, description: &str) {
    assert_eq!(response.status(), 400);
    let body = json_body(response).await;
    assert_eq!(
        body,
        json!({ "error": "invalid_client_metadata", "error_description": description })
    );
}

/// Returns every `Link` header value.
pub(crate) fn links(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all("link")
        .iter()
        .map(|value| value.to_str().expect("Link headers are ASCII").to_owned())
        .collect()
}

/// Extracts the URL of the `rel="next"` link, if any.
pub(crate) fn next_link(response: &Response) -> Option<String> {
    links(response).into_iter().find_map(|link| {
        let (url, rel) = link.split_once(">; ")?;
        (rel == "rel=\"next\"").then(|| url.trim_start_matches('<').to_owned())
    })
}

/// Asserts an OAuth error body `{"error", "error_description"}` and
/// returns the response headers.
pub(crate) async fn assert_oauth_error(
    response: Response,
    status: u16,
    error: &str,
    description: &str,
) -> reqwest::header::HeaderMap {
    let headers = response.headers().clone();
    assert_eq!(response.status(), status, "status for {description}");
    let body = json_body(response).await;
    assert_eq!(
        body,
        json!({ "error": error, "error_description": description })
    );
    headers
}
