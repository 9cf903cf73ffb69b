//! Caller authentication over real TLS on 127.0.0.1: mTLS client
//! certificates, bearer tokens, the public health service, reflection
//! behind authentication, and the per-caller limit of requests in flight.
//! Every rejected call is checked to have sent nothing to the emulator.
//!
//! The CA, server and client certificates are generated with rcgen for
//! each test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use okta_emulator::{Fault, FaultEndpoint, FaultKind};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_api::v1::{CreateServiceAppRequest, ListServiceAppsRequest};
use registrar_server::auth::{AuthConfig, BearerTokens, TlsFiles, caller_id_from_certificate};
use registrar_tests::{Options, TestEnv, create_request};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_response};

const SPIFFE_ID: &str = "spiffe://example.org/ns/prod/sa/billing";
const BILLING_TOKEN: &str = "billing-0123456789abcdef0123456789abcdef";
const AUDIT_TOKEN: &str = "audit-fedcba9876543210fedcba9876543210";

/// A certificate authority that signs server and client certificates.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A PEM certificate and its PEM private key.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn server(&self) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("server parameters");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// Signs a client certificate with these URI SANs and this subject CN.
    fn client(&self, uris: &[&str], common_name: Option<&str>) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        // rcgen gives every subject a default CN, which these cases must not have.
        params.distinguished_name = DistinguishedName::new();
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into().expect("ASCII URI")));
        }
        if let Some(name) = common_name {
            params.distinguished_name.push(DnType::CommonName, name);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            der: certificate.der().to_vec(),
        }
    }
}

fn bearer_tokens(entries: &[(&str, &str)]) -> BearerTokens {
    let text: String = entries
        .iter()
        .map(|(name, token)| {
            registrar_server::auth::token_file_entry(name, token).expect("valid entry")
        })
        .collect::<Vec<_>>()
        .join("\n");
    BearerTokens::parse(&text).expect("valid token file")
}

/// Builds the settings of a server with TLS, client certificates from `ca`
/// and, optionally, bearer tokens.
fn mtls_auth(ca: &TestCa, bearer: Option<BearerTokens>) -> AuthConfig {
    let server = ca.server();
    let tls = TlsFiles::from_pem(
        server.cert_pem.into_bytes(),
        server.key_pem.into_bytes(),
        Some(ca.pem().into_bytes()),
    )
    .expect("valid TLS files");
    AuthConfig {
        tls: Some(tls),
        bearer_tokens: bearer,
        insecure_no_auth: false,
        public_reflection: false,
        ..AuthConfig::insecure_loopback()
    }
}

async fn start(auth: AuthConfig) -> TestEnv {
    TestEnv::start_with(Options {
        auth,
        ..Options::default()
    })
    .await
}

/// Builds a TLS channel that trusts `ca` and presents `identity`. It
/// connects lazily, so that a rejected handshake shows as a failed call.
fn tls_channel(env: &TestEnv, ca: &TestCa, identity: Option<&Leaf>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
    }
    Channel::from_shared(format!("https://{}", env.address))
        .expect("valid endpoint")
        .tls_config(tls)
        .expect("valid client TLS settings")
        .connect_lazy()
}

fn plaintext_channel(env: &TestEnv) -> Channel {
    Channel::from_shared(format!("http://{}", env.address))
        .expect("valid endpoint")
        .connect_lazy()
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ASCII header"),
    );
    request
}

async fn health_is_serving(channel: Channel) {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "registrar.v1.Registrar".into(),
        })
        .await
        .expect("health answers without credentials")
        .into_inner();
    assert_eq!(
        response.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

async fn list_services(channel: Channel) -> Result<Vec<String>, tonic::Status> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await?
        .into_inner();
    let response = responses.message().await?.expect("one reflection response");
    match response.message_response {
        Some(server_reflection_response::MessageResponse::ListServicesResponse(list)) => Ok(list
            .service
            .into_iter()
            .map(|service| service.name)
            .collect()),
        other => panic!("unexpected reflection response {other:?}"),
    }
}

/// Log lines written while the guard lives, on this thread. `#[tokio::test]`
/// runs the server's tasks on the test's thread, so its spans land here.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn start(&self) -> tracing::dispatcher::DefaultGuard {
        use tracing_subscriber::util::SubscriberInitExt;
        let writer = self.clone();
        let guard = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish()
            .set_default();
        // Another test's thread may have cached a callsite as disabled
        // while no subscriber listened, so every callsite is asked again
        // now that this one does.
        tracing::callsite::rebuild_interest_cache();
        guard
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

#[test]
fn certificate_caller_ids() {
    let ca = TestCa::new("ids CA");
    let cases = [
        (ca.client(&[SPIFFE_ID], Some("billing-cn")), Some(SPIFFE_ID)),
        (ca.client(&[], Some("billing-cn")), Some("billing-cn")),
        (
            ca.client(&["https://example.org/billing"], Some("billing-cn")),
            Some("billing-cn"),
        ),
        (
            ca.client(&["https://example.org/a", SPIFFE_ID], None),
            Some(SPIFFE_ID),
        ),
        (ca.client(&["https://example.org/a"], None), None),
    ];
    for (index, (leaf, expected)) in cases.iter().enumerate() {
        let id = caller_id_from_certificate(&leaf.der).ok();
        assert_eq!(id.as_deref(), *expected, "case {index}");
    }
}

#[tokio::test]
async fn mtls_certificate_is_accepted() {
    let ca = TestCa::new("registrar test CA");
    let env = start(mtls_auth(&ca, None)).await;
    let client_cert = ca.client(&[SPIFFE_ID], Some("billing-cn"));
    let mut client = RegistrarClient::new(tls_channel(&env, &ca, Some(&client_cert)));

    let log = CapturedLog::default();
    let guard = log.start();
    client
        .list_service_apps(ListServiceAppsRequest::default())
        .await
        .expect("list with a client certificate");
    let app = client
        .create_service_app(create_request("mtls-app"))
        .await
        .expect("create with a client certificate")
        .into_inner()
        .app
        .expect("app");
    drop(guard);

    assert!(env.okta_app(&app.client_id).is_some());
    let log = log.text();
    assert!(log.contains(&format!("caller={SPIFFE_ID}")), "{log}");
    assert!(log.contains("auth=mtls"), "{log}");
    assert!(log.contains("service app created"), "{log}");
    env.stop().await;
}

#[tokio::test]
async fn sdk_registers_over_mtls() {
    let ca = TestCa::new("registrar test CA");
    let env = start(mtls_auth(&ca, None)).await;
    let client_cert = ca.client(&[], Some("billing-worker"));
    let client = registrar_sdk::Client::from_channel(tls_channel(&env, &ca, Some(&client_cert)));

    let identity = client
        .register("billing-worker", &["okta.users.read"])
        .await
        .expect("register over mTLS");
    let token = identity
        .access_token(&["okta.users.read"])
        .await
        .expect("token over mTLS");
    assert!(!token.access_token.is_empty());
    env.stop().await;
}

#[tokio::test]
async fn certificate_of_other_ca_is_rejected() {
    let ca = TestCa::new("registrar test CA");
    let other = TestCa::new("other CA");
    let env = start(mtls_auth(&ca, None)).await;
    let stranger = other.client(&[SPIFFE_ID], None);
    let mut client = RegistrarClient::new(tls_channel(&env, &ca, Some(&stranger)));

    let result = client
        .create_service_app(create_request("stranger-app"))
        .await;
    assert!(result.is_err(), "a certificate of another CA was accepted");
    assert!(env.okta_requests().is_empty(), "{:?}", env.okta_requests());
    env.stop().await;
}

#[tokio::test]
async fn missing_certificate_is_unauthenticated() {
    let ca = TestCa::new("registrar test CA");
    let env = start(mtls_auth(&ca, None)).await;
    let channel = tls_channel(&env, &ca, None);

    let status = RegistrarClient::new(channel.clone())
        .create_service_app(create_request("anonymous-app"))
        .await
        .expect_err("no certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("client certificate"),
        "{status:?}"
    );
    let status = RegistrarClient::new(channel.clone())
        .list_service_apps(ListServiceAppsRequest::default())
        .await
        .expect_err("no certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Reflection is not public unless configured.
    let status = list_services(channel.clone())
        .await
        .expect_err("reflection without a certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    health_is_serving(channel).await;
    assert!(env.okta_requests().is_empty(), "{:?}", env.okta_requests());
    env.stop().await;
}

#[tokio::test]
async fn bearer_tokens_on_loopback() {
    let env = start(AuthConfig {
        bearer_tokens: Some(bearer_tokens(&[("billing", BILLING_TOKEN)])),
        insecure_no_auth: false,
        public_reflection: true,
        ..AuthConfig::insecure_loopback()
    })
    .await;
    let mut client = RegistrarClient::new(plaintext_channel(&env));

    let missing = client
        .list_service_apps(ListServiceAppsRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    assert!(
        missing.message().contains("authorization: Bearer"),
        "{missing:?}"
    );

    let wrong_token = "wrong-0123456789abcdef0123456789abcdef";
    let wrong = client
        .create_service_app(with_token(create_request("wrong-app"), wrong_token))
        .await
        .expect_err("wrong token");
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    assert!(
        wrong.message().contains("invalid bearer token"),
        "{wrong:?}"
    );
    assert!(!wrong.message().contains(wrong_token), "{wrong:?}");

    let mut malformed = Request::new(ListServiceAppsRequest::default());
    malformed.metadata_mut().insert(
        "authorization",
        format!("Basic {BILLING_TOKEN}").parse().expect("ASCII"),
    );
    let malformed = client
        .list_service_apps(malformed)
        .await
        .expect_err("not a bearer token");
    assert_eq!(malformed.code(), Code::Unauthenticated, "{malformed:?}");
    assert!(
        !malformed.message().contains(BILLING_TOKEN),
        "{malformed:?}"
    );

    assert!(env.okta_requests().is_empty(), "{:?}", env.okta_requests());
    health_is_serving(plaintext_channel(&env)).await;
    let services = list_services(plaintext_channel(&env))
        .await
        .expect("public reflection");
    assert!(
        services.iter().any(|name| name == "registrar.v1.Registrar"),
        "{services:?}"
    );

    let log = CapturedLog::default();
    let guard = log.start();
    let app = client
        .create_service_app(with_token(create_request("bearer-app"), BILLING_TOKEN))
        .await
        .expect("create with a bearer token")
        .into_inner()
        .app
        .expect("app");
    drop(guard);
    assert!(env.okta_app(&app.client_id).is_some());
    let log = log.text();
    assert!(log.contains("caller=billing auth=bearer"), "{log}");
    assert!(!log.contains(BILLING_TOKEN), "the token appears in the log");
    env.stop().await;
}

#[tokio::test]
async fn bearer_token_over_tls_beside_mtls() {
    let ca = TestCa::new("registrar test CA");
    let env = start(mtls_auth(
        &ca,
        Some(bearer_tokens(&[("billing", BILLING_TOKEN)])),
    ))
    .await;
    let mut client = RegistrarClient::new(tls_channel(&env, &ca, None));

    client
        .list_service_apps(with_token(ListServiceAppsRequest::default(), BILLING_TOKEN))
        .await
        .expect("bearer token over TLS");
    let status = client
        .list_service_apps(ListServiceAppsRequest::default())
        .await
        .expect_err("neither certificate nor token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("client certificate") && status.message().contains("Bearer"),
        "{status:?}"
    );
    assert_eq!(env.count_requests("GET", "/api/v1/apps"), 1);

    let client_cert = ca.client(&[], Some("audit"));
    RegistrarClient::new(tls_channel(&env, &ca, Some(&client_cert)))
        .list_service_apps(ListServiceAppsRequest::default())
        .await
        .expect("client certificate beside bearer tokens");
    env.stop().await;
}

#[tokio::test]
async fn caller_over_limit_is_resource_exhausted() {
    let env = start(AuthConfig {
        bearer_tokens: Some(bearer_tokens(&[
            ("billing", BILLING_TOKEN),
            ("audit", AUDIT_TOKEN),
        ])),
        insecure_no_auth: false,
        max_concurrent_requests_per_caller: 1,
        ..AuthConfig::insecure_loopback()
    })
    .await;
    env.emulator
        .add_fault(Fault::times(
            FaultEndpoint::ListApps,
            FaultKind::Latency { millis: 3000 },
            1,
        ))
        .expect("valid fault");

    let mut slow_client = RegistrarClient::new(plaintext_channel(&env));
    let slow = tokio::spawn(async move {
        slow_client
            .list_service_apps(with_token(ListServiceAppsRequest::default(), BILLING_TOKEN))
            .await
    });
    // The fault fires when the slow request reaches the emulator, which is
    // while the registrar counts it in flight.
    tokio::time::timeout(Duration::from_secs(20), async {
        while env.emulator.faults().iter().any(|fault| fault.fired == 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the slow request reaches the emulator");

    let mut client = RegistrarClient::new(plaintext_channel(&env));
    let status = client
        .create_service_app(with_token(create_request("over-limit"), BILLING_TOKEN))
        .await
        .expect_err("second request of the same caller");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("\"billing\""), "{status:?}");
    assert!(
        status
            .message()
            .contains("--max-concurrent-requests-per-caller"),
        "{status:?}"
    );

    client
        .list_service_apps(with_token(ListServiceAppsRequest::default(), AUDIT_TOKEN))
        .await
        .expect("another caller is not limited");
    slow.await
        .expect("slow task joins")
        .expect("slow request succeeds");
    client
        .list_service_apps(with_token(ListServiceAppsRequest::default(), BILLING_TOKEN))
        .await
        .expect("the slot came back");
    assert_eq!(env.count_requests("POST", "/oauth2/v1/clients"), 0);
    assert_eq!(env.count_requests("GET", "/api/v1/apps"), 3);
    env.stop().await;
}

#[tokio::test]
async fn authenticated_bad_request_reaches_validation() {
    // Authentication runs first and leaves the message alone, so the
    // handler's validation still rejects a bad request without calling
    // Okta.
    let env = start(AuthConfig {
        bearer_tokens: Some(bearer_tokens(&[("billing", BILLING_TOKEN)])),
        insecure_no_auth: false,
        ..AuthConfig::insecure_loopback()
    })
    .await;
    let status = RegistrarClient::new(plaintext_channel(&env))
        .create_service_app(with_token(
            CreateServiceAppRequest {
                client_name: String::new(),
                ..create_request("unused")
            },
            BILLING_TOKEN,
        ))
        .await
        .expect_err("empty name");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(env.okta_requests().is_empty());
    env.stop().await;
}
