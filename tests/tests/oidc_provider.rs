//! The registrar's client assertions, DPoP proofs and token client against
//! a certified OpenID provider instead of the Okta emulator: panva's
//! oidc-provider (npm, version pinned in tests/oidc-provider/package.json),
//! run by `node tests/oidc-provider/server.mjs` on 127.0.0.1.
//!
//! Each test registers a service client at the provider's RFC 7591
//! endpoint and gets a token with an assertion that the registrar's code
//! signs. It then checks that the provider rejects a replayed assertion,
//! assertions signed by other keys and assertions with another audience.
//! server.mjs restricts `aud` to the token endpoint URL, as Okta does.
//!
//! `scripts/install-test-tools.sh` runs `npm ci` in tests/oidc-provider/,
//! and `scripts/test.sh` calls that script before the tests.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use registrar_api::v1::KeyAlgorithm;
use registrar_server::jwk::to_okta_json;
use registrar_server::keys::KeyPair;
use registrar_server::keys::sign;
use registrar_server::okta::OktaClient;
use registrar_server::okta::model::TokenResponse;
use registrar_server::org::OrgUrl;
use registrar_server::secret::Secret;
use registrar_server::tokens::TokenSettings;
use reqwest::Url;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;
use zeroize::Zeroizing;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const SCOPE: &str = "okta.users.read";
/// How long node may take to start the provider and print its issuer line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the provider may take to log an error after its error response.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `server.mjs`. Dropping it kills the node process.
struct OidcProvider {
    issuer: String,
    /// The provider's stderr lines: warnings, and one JSON object for each
    /// error response of the token and registration endpoints.
    log: mpsc::UnboundedReceiver<String>,
    _child: Child,
}

impl OidcProvider {
    async fn start() -> Self {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tests crate is inside the repository")
            .join("tests/oidc-provider");
        assert!(
            directory.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed in {}; run scripts/install-test-tools.sh, which runs npm ci there",
            directory.display()
        );
        let mut child = Command::new("node")
            .arg(directory.join("server.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("failed to start `node`; install Node.js 20 or later");

        let (sender, log) = mpsc::unbounded_channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });

        let stdout = child.stdout.take().expect("stdout is piped");
        let issuer = timeout(STARTUP_TIMEOUT, read_issuer(BufReader::new(stdout).lines()))
            .await
            .expect("timed out waiting for the `issuer=` line of server.mjs");
        // Every request of this test goes to the provider, so it must be on
        // loopback.
        assert!(
            issuer.starts_with("http://127.0.0.1:"),
            "server.mjs printed issuer {issuer}, expected http://127.0.0.1:PORT"
        );
        Self {
            issuer,
            log,
            _child: child,
        }
    }

    /// Waits for the next error the provider logged and returns its
    /// `error_detail`, which the response body does not contain.
    async fn next_error_detail(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + LOG_TIMEOUT;
        loop {
            let line = tokio::time::timeout_at(deadline, self.log.recv())
                .await
                .expect("timed out waiting for the provider to log an error")
                .expect("the provider's stderr closed");
            if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                return entry["error_detail"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
            }
        }
    }
}

async fn read_issuer(mut lines: Lines<BufReader<ChildStdout>>) -> String {
    while let Some(line) = lines.next_line().await.expect("read server.mjs stdout") {
        if let Some(issuer) = line.strip_prefix("issuer=") {
            return issuer.to_string();
        }
    }
    panic!("server.mjs exited without printing its `issuer=` line");
}

/// The provider's endpoints, from its discovery document.
struct Endpoints {
    token: Url,
    registration: Url,
}

async fn discover(http: &reqwest::Client, issuer: &str) -> Endpoints {
    let document: Value = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery request")
        .error_for_status()
        .expect("discovery status")
        .json()
        .await
        .expect("discovery JSON");
    let endpoint = |name: &str| {
        let url = document[name]
            .as_str()
            .unwrap_or_else(|| panic!("discovery document has no {name}: {document}"));
        assert!(
            url.starts_with(&format!("{issuer}/")),
            "{name} {url} is not under the issuer {issuer}"
        );
        Url::parse(url).expect("endpoint URL")
    };
    Endpoints {
        token: endpoint("token_endpoint"),
        registration: endpoint("registration_endpoint"),
    }
}

/// Registers a service client with the key's public JWK and returns its
/// client id.
async fn register(http: &reqwest::Client, registration: &Url, key: &KeyPair) -> String {
    let metadata = json!({
        "client_name": "registrar oidc-provider test",
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": { "keys": [to_okta_json(key.public_jwk())] },
        "scope": "okta.users.read okta.apps.read",
    });
    let response = http
        .post(registration.clone())
        .json(&metadata)
        .send()
        .await
        .expect("registration request");
    let status = response.status();
    let body: Value = response.json().await.expect("registration JSON");
    assert_eq!(status.as_u16(), 201, "registration failed: {body}");
    body["client_id"]
        .as_str()
        .unwrap_or_else(|| panic!("registration response has no client_id: {body}"))
        .to_string()
}

async fn request_token(
    okta: &OktaClient,
    settings: &TokenSettings,
    assertion: &str,
    dpop_proof: Option<&str>,
) -> Result<TokenResponse, registrar_server::okta::OktaError> {
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", SCOPE),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    okta.request_token(&settings.token_endpoint, &form, dpop_proof)
        .await
}

fn assertion(key: &KeyPair, client_id: &str, audience: &str, settings: &TokenSettings) -> String {
    sign::client_assertion(key, client_id, audience, settings.assertion_lifetime)
        .expect("sign the client assertion")
        .jwt
}

/// Sends an assertion that the provider must reject, and checks that it
/// returns `invalid_client` and logs `expected_detail` as the reason.
async fn assert_rejected(
    provider: &mut OidcProvider,
    okta: &OktaClient,
    settings: &TokenSettings,
    assertion: &str,
    case: &str,
    expected_detail: &str,
) {
    let error = request_token(okta, settings, assertion, None)
        .await
        .expect_err(&format!("the provider accepted the {case}"));
    assert_eq!(error.status(), Some(401), "{case}: {error}");
    let (code, _) = error
        .oauth_error()
        .unwrap_or_else(|| panic!("{case}: not an OAuth error: {error}"));
    assert_eq!(code, "invalid_client", "{case}: {error}");
    let detail = provider.next_error_detail().await;
    assert!(
        detail.contains(expected_detail),
        "{case}: provider logged {detail:?}, expected it to contain {expected_detail:?}"
    );
}

async fn check_assertions(algorithm: KeyAlgorithm) {
    let mut provider = OidcProvider::start().await;
    let issuer = provider.issuer.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let endpoints = discover(&http, &issuer).await;
    // The settings the registrar would use for this provider: the token
    // endpoint is also the only audience it accepts.
    let settings = TokenSettings {
        audience: endpoints.token.to_string(),
        token_endpoint: endpoints.token.clone(),
        assertion_lifetime: Duration::from_secs(300),
    };
    let okta = OktaClient::new(
        OrgUrl::parse(&issuer).expect("issuer is a loopback org URL"),
        Secret::new("unused"),
        Duration::from_secs(10),
    )
    .expect("token client");

    let key = tokio::task::spawn_blocking(move || KeyPair::generate(algorithm))
        .await
        .expect("key generation task")
        .expect("generate the client key");
    let client_id = register(&http, &endpoints.registration, &key).await;

    let first = assertion(&key, &client_id, &settings.audience, &settings);
    let token = request_token(&okta, &settings, &first, None)
        .await
        .expect("token for a valid assertion");
    assert_eq!(token.token_type, "Bearer");
    assert_eq!(token.scope.as_deref(), Some(SCOPE));
    assert!(!token.access_token.is_empty());
    assert!(token.expires_in.is_some_and(|seconds| seconds > 0));

    assert_rejected(
        &mut provider,
        &okta,
        &settings,
        &first,
        "replayed assertion",
        "client assertion tokens must only be used once",
    )
    .await;

    let other = tokio::task::spawn_blocking(move || KeyPair::generate(algorithm))
        .await
        .expect("key generation task")
        .expect("generate the unregistered key");
    let unregistered = assertion(&other, &client_id, &settings.audience, &settings);
    assert_rejected(
        &mut provider,
        &okta,
        &settings,
        &unregistered,
        "assertion signed by an unregistered key",
        "no applicable key found",
    )
    .await;

    // The unregistered private key with the registered key's kid, so that
    // the provider selects the registered public key and the signature
    // check itself has to fail.
    let impostor = KeyPair::from_parts(
        other.algorithm(),
        Zeroizing::new(other.private_der().to_vec()),
        key.public_jwk().clone(),
    )
    .expect("impostor key");
    let forged = assertion(&impostor, &client_id, &settings.audience, &settings);
    assert_rejected(
        &mut provider,
        &okta,
        &settings,
        &forged,
        "assertion signed by another key under the registered kid",
        "signature verification failed",
    )
    .await;

    let foreign_audience = assertion(&key, &client_id, &format!("{issuer}/other"), &settings);
    assert_rejected(
        &mut provider,
        &okta,
        &settings,
        &foreign_audience,
        "assertion for another audience",
        "audience (aud) must equal",
    )
    .await;

    // oidc-provider 9 accepts the issuer as `aud` by default, but server.mjs
    // rejects it, as Okta does.
    let issuer_audience = assertion(&key, &client_id, &issuer, &settings);
    assert_rejected(
        &mut provider,
        &okta,
        &settings,
        &issuer_audience,
        "assertion with the issuer as audience",
        "must be the token endpoint URL",
    )
    .await;

    // The rejections left the client usable, and a DPoP proof from the
    // registrar's code binds the next token. The registrar's DPoP keys are
    // always ES256, whatever the assertion key's algorithm.
    let dpop_key = KeyPair::generate(KeyAlgorithm::Es256).expect("generate the DPoP key");
    let fresh = assertion(&key, &client_id, &settings.audience, &settings);
    let proof = sign::dpop_proof(
        &dpop_key,
        "POST",
        settings.token_endpoint.as_str(),
        None,
        None,
    )
    .expect("sign the DPoP proof");
    let bound = request_token(&okta, &settings, &fresh, Some(&proof))
        .await
        .expect("DPoP-bound token for a fresh assertion");
    assert_eq!(bound.token_type, "DPoP");
    assert_eq!(bound.scope.as_deref(), Some(SCOPE));
}

#[tokio::test]
async fn rs256_assertions_checked_by_oidc_provider() {
    check_assertions(KeyAlgorithm::Rs2562048).await;
}

#[tokio::test]
async fn es256_assertions_checked_by_oidc_provider() {
    check_assertions(KeyAlgorithm::Es256).await;
}
