//! Tests of the real `registrar` binary: `serve` against an in-process
//! emulator with trace logging, graceful shutdown on SIGTERM, configuration
//! errors, and `demo`.

use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_api::v1::{
    CreateServiceAppRequest, GenerateKey, GetAccessTokenRequest, GrantScopesRequest,
    ListServiceAppsRequest, create_service_app_request::KeySource,
};
use registrar_server::keyring::Keyring;
use registrar_server::keys::master::MasterKey;
use registrar_server::store::{KeyPurpose, Store};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

const REGISTRAR: &str = env!("CARGO_BIN_EXE_registrar");
const API_TOKEN: &str = "binary-test-token-7f3a9c";
/// 32 bytes of standard base64, the format REGISTRAR_MASTER_KEY takes.
const MASTER_KEY: &str = "c2VjcmV0LW1hc3Rlci1rZXktZm9yLXRlc3RzLTAwMDA=";

async fn start_emulator() -> (okta_emulator::Emulator, String) {
    let emulator = okta_emulator::Emulator::new(okta_emulator::Config::new(API_TOKEN));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let org_url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn({
        let emulator = emulator.clone();
        async move { emulator.serve(listener, std::future::pending()).await }
    });
    (emulator, org_url)
}

/// Reads the child's stderr to the end in a task, so that the child never
/// blocks on a full pipe. Returns the address that the "registrar serving"
/// line names, and the task, which returns the whole log once the child
/// exits.
async fn wait_for_address(child: &mut Child) -> (String, tokio::task::JoinHandle<String>) {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (address_tx, address_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut log = String::new();
        let mut address_tx = Some(address_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("registrar serving")
                && let Some(rest) = line.split("address=").nth(1)
                && let Some(sender) = address_tx.take()
            {
                let address = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = sender.send(address);
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let address = tokio::time::timeout(Duration::from_secs(60), address_rx)
        .await
        .expect("registrar starts within 60 s")
        .expect("registrar exited before serving");
    (address, reader)
}

/// Sends SIGTERM to the registrar and waits up to 30 s for it to exit.
async fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("registrar stops within 30 s")
        .expect("wait")
}

#[tokio::test]
async fn serve_works_logs_no_secret_and_stops_on_sigterm() {
    let (_emulator, org_url) = start_emulator().await;
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let mut child = Command::new(REGISTRAR)
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-no-auth"])
        .env("OKTA_ORG_URL", &org_url)
        .env("OKTA_API_TOKEN", API_TOKEN)
        .env("REGISTRAR_DATA_DIR", data_dir.path())
        .env("REGISTRAR_MASTER_KEY", MASTER_KEY)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("registrar starts");
    let (address, log_reader) = wait_for_address(&mut child).await;

    let mut client = RegistrarClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    let listed = client
        .list_service_apps(ListServiceAppsRequest::default())
        .await
        .expect("list through the binary");
    assert!(listed.into_inner().apps.is_empty());

    // Exercise every secret: a generated private key and an access token.
    let app = client
        .create_service_app(CreateServiceAppRequest {
            client_name: "trace-logged".into(),
            key_source: Some(KeySource::GenerateKey(GenerateKey::default())),
            dpop_bound: false,
        })
        .await
        .expect("create with a generated key")
        .into_inner()
        .app
        .expect("app");
    client
        .grant_scopes(GrantScopesRequest {
            client_id: app.client_id.clone(),
            scope_ids: vec!["okta.users.read".into()],
            issuer: String::new(),
        })
        .await
        .expect("grant");
    let token = client
        .get_access_token(GetAccessTokenRequest {
            client_id: app.client_id.clone(),
            scopes: vec!["okta.users.read".into()],
            force_refresh: false,
        })
        .await
        .expect("token")
        .into_inner()
        .access_token;
    let bad_token = client
        .get_access_token(GetAccessTokenRequest {
            client_id: app.client_id.clone(),
            scopes: vec!["okta.groups.read".into()],
            force_refresh: false,
        })
        .await
        .expect_err("scope not granted");
    assert!(!bad_token.message().contains(&token));
    let missing = client
        .grant_scopes(GrantScopesRequest {
            client_id: "0oaMissing".into(),
            scope_ids: vec!["okta.users.read".into()],
            issuer: String::new(),
        })
        .await
        .expect_err("unknown app");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    drop(client);

    let status = terminate(&mut child).await;
    let log = log_reader.await.expect("stderr reader");
    assert!(status.success(), "exit status {status}\n{log}");
    assert!(log.contains("registrar stopped"), "{log}");
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "trace logging is on"
    );
    assert!(!log.contains(API_TOKEN), "the API token appears in the log");
    assert!(!log.contains(&token), "the access token appears in the log");
    assert!(
        !log.contains(MASTER_KEY),
        "the master key appears in the log"
    );

    // Decrypt the stored private key and look for it in every encoding.
    let database = format!("sqlite://{}/registrar.db", data_dir.path().display());
    let store = Store::open(&database).await.expect("store");
    let master = MasterKey::from_base64(MASTER_KEY, "test").expect("master key");
    let key = Keyring::new(master, store)
        .active(&app.client_id, KeyPurpose::Assertion)
        .await
        .expect("keyring")
        .expect("generated key stored");
    let der = key.private_der();
    for encoded in [STANDARD.encode(der), URL_SAFE_NO_PAD.encode(der)] {
        for start in [0, encoded.len() / 3, encoded.len() / 2, encoded.len() - 40] {
            let piece = &encoded[start..start + 40];
            assert!(
                !log.contains(piece),
                "private key material appears in the log"
            );
        }
    }
}

/// Arguments, environment variables, and the text the error must contain.
type ConfigCase = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[tokio::test]
async fn bad_configuration_names_the_option() {
    let cases: [ConfigCase; 5] = [
        (
            &["serve", "--okta-org-url", "http://example.okta.com"],
            &[("OKTA_API_TOKEN", "x")],
            "--okta-org-url",
        ),
        (
            &["serve", "--okta-org-url", "https://example.okta.com"],
            &[],
            "OKTA_API_TOKEN",
        ),
        (
            &[
                "serve",
                "--okta-org-url",
                "https://example.okta.com",
                "--okta-api-token-file",
                "/nonexistent/token",
            ],
            &[],
            "--okta-api-token-file",
        ),
        (
            &[
                "serve",
                "--okta-org-url",
                "https://example.okta.com",
                "--okta-timeout-secs",
                "0",
            ],
            &[("OKTA_API_TOKEN", "x")],
            "--okta-timeout-secs",
        ),
        (
            &[
                "serve",
                "--okta-org-url",
                "https://example.okta.com",
                "--assertion-lifetime-secs",
                "7200",
            ],
            &[("OKTA_API_TOKEN", "x")],
            "--assertion-lifetime-secs",
        ),
    ];
    for (args, env, expected) in cases {
        let output = Command::new(REGISTRAR)
            .args(args)
            .env_remove("OKTA_API_TOKEN")
            .env_remove("OKTA_ORG_URL")
            .envs(env.iter().copied())
            .output()
            .await
            .expect("registrar runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Runs `registrar serve` with a valid Okta setting and these extra
/// arguments and environment variables, and returns its standard error.
/// The run must fail.
async fn serve_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(REGISTRAR)
        .args(["serve", "--okta-org-url", "https://example.okta.com"])
        .args(args)
        .env("OKTA_API_TOKEN", "x")
        .env_remove("OKTA_ORG_URL")
        .env_remove("REGISTRAR_INSECURE_NO_AUTH")
        .env_remove("REGISTRAR_BEARER_TOKENS_FILE")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("registrar runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{args:?} succeeded: {stderr}");
    stderr
}

#[tokio::test]
async fn serve_without_authentication_lists_choices() {
    let stderr = serve_error(&[], &[]).await;
    for choice in [
        "--client-ca-file",
        "--bearer-tokens-file",
        "--insecure-no-auth",
    ] {
        assert!(stderr.contains(choice), "{choice} missing: {stderr}");
    }
}

#[tokio::test]
async fn insecure_off_loopback_is_rejected() {
    let stderr = serve_error(
        &["--listen", "0.0.0.0:0"],
        &[("REGISTRAR_INSECURE_NO_AUTH", "true")],
    )
    .await;
    assert!(stderr.contains("--insecure-no-auth"), "{stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");
}

#[tokio::test]
async fn bad_token_file_names_the_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("tokens.toml");
    let token = "plain-token-0123456789abcdef0123456789";
    let digest = "0".repeat(64);
    std::fs::write(
        &path,
        format!(
            "[[caller]]\nname = \"billing\"\ntoken_sha256 = \"{digest}\"\n\n[[caller]]\nname = \"audit\"\ntoken_sha256 = \"{token}\"\n"
        ),
    )
    .expect("write token file");
    let path = path.to_str().expect("UTF-8 path");
    let stderr = serve_error(&["--bearer-tokens-file", path], &[]).await;
    assert!(stderr.contains("--bearer-tokens-file"), "{stderr}");
    assert!(stderr.contains("line 7"), "{stderr}");
    assert!(stderr.contains("token_sha256"), "{stderr}");
    assert!(stderr.contains("registrar hash-token"), "{stderr}");
    assert!(!stderr.contains(token), "the token appears: {stderr}");
}

#[tokio::test]
async fn hash_token_prints_an_entry() {
    let token = "0123456789abcdef0123456789abcdef-billing";
    let mut child = Command::new(REGISTRAR)
        .args(["hash-token", "--name", "billing"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("registrar starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, format!("{token}\n").as_bytes())
        .await
        .expect("write the token");
    drop(stdin);
    let output = child.wait_with_output().await.expect("hash-token finishes");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(!stdout.contains(token), "{stdout}");
    let tokens = registrar_server::auth::BearerTokens::parse(&stdout).expect("entry parses");
    assert_eq!(tokens.verify(token).as_deref(), Some("billing"));
}

#[tokio::test]
async fn demo_prints_client_id_and_two_grants() {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(REGISTRAR)
            .arg("demo")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("demo finishes within 120 s")
    .expect("demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("client_id: 0oa"), "{stdout}");
    let granted = stdout
        .lines()
        .filter(|line| line.contains(" GRANTED "))
        .count();
    assert_eq!(granted, 2, "{stdout}");
    assert!(stdout.contains("okta.users.read"), "{stdout}");
    assert!(stdout.contains("okta.apps.read"), "{stdout}");
    assert!(stdout.contains("grpcurl -plaintext"), "{stdout}");
    let token_line = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("token:"))
        .unwrap_or_else(|| panic!("no token line in:\n{stdout}"));
    assert!(token_line.contains("Bearer"), "{token_line}");
    assert!(token_line.contains("okta.users.read"), "{token_line}");
    assert!(stdout.contains("new key added to Okta"), "{stdout}");
    assert!(stdout.contains("signing switched"), "{stdout}");
}

#[tokio::test]
async fn shutdown_grace_bounds_a_hanging_okta_call() {
    // An "Okta" that accepts connections and never answers.
    let hanging = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let org_url = format!("http://{}", hanging.local_addr().expect("address"));
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            open.push(socket);
        }
    });
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let mut child = Command::new(REGISTRAR)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-no-auth",
            "--shutdown-grace-secs",
            "1",
            "--okta-timeout-secs",
            "60",
        ])
        .env("OKTA_ORG_URL", &org_url)
        .env("OKTA_API_TOKEN", API_TOKEN)
        .env("REGISTRAR_DATA_DIR", data_dir.path())
        .env("REGISTRAR_MASTER_KEY", MASTER_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("registrar starts");
    let (address, _) = wait_for_address(&mut child).await;
    let mut client = RegistrarClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    let in_flight = tokio::spawn(async move {
        client
            .list_service_apps(ListServiceAppsRequest::default())
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = child.id().expect("running").to_string();
    let started = std::time::Instant::now();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("registrar stops within the grace period")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let result = in_flight.await.expect("task");
    assert!(result.is_err(), "the hanging request cannot succeed");
}

/// Writes a bearer token file with one caller, for runs that need caller
/// authentication to get as far as the policy.
fn token_file(dir: &std::path::Path) -> String {
    let entry = registrar_server::auth::token_file_entry(
        "billing",
        "billing-token-0123456789abcdef0123456789abcdef",
    )
    .expect("valid entry");
    let path = dir.join("tokens.toml");
    std::fs::write(&path, entry).expect("write token file");
    path.to_str().expect("UTF-8 path").to_string()
}

#[tokio::test]
async fn authentication_without_policy_is_rejected() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tokens = token_file(dir.path());
    let stderr = serve_error(
        &["--listen", "127.0.0.1:0", "--bearer-tokens-file", &tokens],
        &[],
    )
    .await;
    assert!(stderr.contains("--policy-file"), "{stderr}");
    assert!(stderr.contains("Caller policy"), "{stderr}");
}

#[tokio::test]
async fn bad_policy_file_names_the_key() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tokens = token_file(dir.path());
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[caller]]\nid = \"billing\"\noperations = [\"read\"]\nscopes = [\"okta.users*\"]\n",
    )
    .expect("write policy");
    let policy = policy.to_str().expect("UTF-8 path");
    let stderr = serve_error(
        &[
            "--listen",
            "127.0.0.1:0",
            "--bearer-tokens-file",
            &tokens,
            "--policy-file",
            policy,
        ],
        &[],
    )
    .await;
    assert!(stderr.contains("--policy-file"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
    assert!(stderr.contains("scopes"), "{stderr}");
    assert!(stderr.contains("okta.users.*"), "{stderr}");
}

/// Returns the 40-character pieces of a secret that a log must not contain:
/// from its start, its middle and its end.
fn secret_pieces(secret: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 40 {
        return vec![secret.to_string()];
    }
    [0, chars.len() / 2 - 20, chars.len() - 40]
        .into_iter()
        .map(|start| chars[start..start + 40].iter().collect())
        .collect()
}

#[tokio::test]
async fn trace_log_contains_no_secret_of_any_credential() {
    use registrar_api::v1::{RegisterServiceRequest, WatchRotationsRequest};
    use registrar_server::okta::OktaClient;
    use registrar_server::okta::credential::DEFAULT_SCOPES;
    use registrar_server::okta::model::NewClient;
    use registrar_server::org::OrgUrl;
    use registrar_server::secret::Secret;

    const BEARER: &str = "trace-test-bearer-token-9c1e7a5b3d2f4e6a8b0c";

    let (emulator, org_url) = start_emulator().await;
    let dir = tempfile::tempdir().expect("temporary directory");

    // The registrar's own credential: an OAuth service app with the
    // default scopes and the Super Admin role.
    let okta = OktaClient::new(
        OrgUrl::parse(&org_url).expect("org URL"),
        Secret::new(API_TOKEN),
        Duration::from_secs(10),
    )
    .expect("Okta client");
    let admin_key =
        registrar_server::keys::KeyPair::generate(registrar_api::v1::KeyAlgorithm::Rs2562048)
            .expect("key generated");
    let admin_app = okta
        .create_client(&NewClient::service_app(
            "registrar".into(),
            vec![registrar_server::jwk::to_okta_json(admin_key.public_jwk())],
        ))
        .await
        .expect("the registrar's app is registered");
    for scope in DEFAULT_SCOPES {
        okta.create_grant(&admin_app.client_id, scope)
            .await
            .expect("scope granted");
    }
    emulator
        .assign_admin_role(&admin_app.client_id, "SUPER_ADMIN")
        .expect("role assigned");
    let admin_pem = admin_key.private_pkcs8_pem().expect("PEM").to_string();
    let key_file = dir.path().join("okta-key.pem");
    std::fs::write(&key_file, &admin_pem).expect("write key file");

    let tokens_file = dir.path().join("tokens.toml");
    let entry = registrar_server::auth::token_file_entry("billing", BEARER).expect("entry");
    std::fs::write(&tokens_file, entry).expect("write token file");
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(
        &policy_file,
        "[[caller]]\nid = \"billing\"\noperations = [\"*\"]\nscopes = [\"*\"]\n\
         client_name_prefixes = [\"\"]\ndeliver_private_keys = true\nadmin = true\n",
    )
    .expect("write policy file");

    let data_dir = dir.path().join("data");
    let mut child = Command::new(REGISTRAR)
        .args(["serve", "--listen", "127.0.0.1:0", "--deliver-private-keys"])
        .arg("--bearer-tokens-file")
        .arg(&tokens_file)
        .arg("--policy-file")
        .arg(&policy_file)
        .env("OKTA_ORG_URL", &org_url)
        .env("OKTA_CLIENT_ID", &admin_app.client_id)
        .env("OKTA_PRIVATE_KEY_FILE", &key_file)
        .env("REGISTRAR_DATA_DIR", &data_dir)
        .env("REGISTRAR_MASTER_KEY", MASTER_KEY)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("registrar starts");
    let (address, log_reader) = wait_for_address(&mut child).await;
    let mut client = RegistrarClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    fn authorized<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {BEARER}").parse().expect("ASCII"),
        );
        request
    }

    // A rejected token, a registration, a token and a delivered key.
    let mut wrong = tonic::Request::new(ListServiceAppsRequest::default());
    wrong.metadata_mut().insert(
        "authorization",
        "Bearer wrong-token-0123456789abcdef0123456789"
            .parse()
            .expect("ASCII"),
    );
    let rejected = client
        .list_service_apps(wrong)
        .await
        .expect_err("wrong token");
    assert_eq!(rejected.code(), tonic::Code::Unauthenticated);
    let app = client
        .register_service(authorized(RegisterServiceRequest {
            service_name: "trace-secrets".into(),
            scope_ids: vec!["okta.users.read".into()],
            key: Some(GenerateKey::default()),
            dpop_bound: false,
        }))
        .await
        .expect("register")
        .into_inner()
        .app
        .expect("app");
    let token = client
        .get_access_token(authorized(GetAccessTokenRequest {
            client_id: app.client_id.clone(),
            scopes: vec!["okta.users.read".into()],
            force_refresh: false,
        }))
        .await
        .expect("token")
        .into_inner()
        .access_token;
    let mut stream = client
        .watch_rotations(authorized(WatchRotationsRequest {
            client_ids: vec![app.client_id.clone()],
            include_private_keys: true,
        }))
        .await
        .expect("watch")
        .into_inner();
    let message = stream.message().await.expect("message").expect("first");
    let delivered = message.apps[0]
        .signing_key
        .clone()
        .expect("the key is delivered")
        .pkcs8_pem;
    drop(stream);
    drop(client);

    terminate(&mut child).await;
    let log = log_reader.await.expect("stderr reader");
    assert!(log.contains("TRACE"), "trace logging is on");
    assert!(log.contains("caller=billing"), "the log names the caller");
    assert!(
        log.contains(&app.client_id),
        "the log covers the calls on the app"
    );

    let mut secrets = vec![
        ("API token", API_TOKEN.to_string()),
        ("bearer token", BEARER.to_string()),
        ("master key", MASTER_KEY.to_string()),
        ("service access token", token),
    ];
    // Every access token the emulator issued, the registrar's own included.
    for issued in emulator.access_tokens() {
        secrets.push(("issued access token", issued));
    }
    for (name, pem) in [
        ("admin private key", admin_pem),
        ("delivered key", delivered),
    ] {
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        secrets.push((name, body));
    }
    assert!(secrets.len() >= 7, "tokens were issued: {}", secrets.len());
    for (name, secret) in secrets {
        for piece in secret_pieces(&secret) {
            assert!(!log.contains(&piece), "the {name} appears in the log");
        }
    }
}

/// Reads the child's stderr in a task, checking that every line is a JSON
/// object. Returns the `address` fields of the "registrar serving" and
/// "metrics serving at /metrics" events, and the task, which returns every
/// parsed line once the child exits.
async fn wait_for_json_addresses(
    child: &mut Child,
) -> (
    String,
    String,
    tokio::task::JoinHandle<Vec<serde_json::Value>>,
) {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (addresses_tx, addresses_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut events = Vec::new();
        let (mut grpc, mut metrics) = (None, None);
        let mut addresses_tx = Some(addresses_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            let event: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|error| panic!("log line is not JSON ({error}): {line}"));
            let address = event["fields"]["address"].as_str().map(str::to_string);
            match event["fields"]["message"].as_str() {
                Some("registrar serving") => grpc = address,
                Some("metrics serving at /metrics") => metrics = address,
                _ => {}
            }
            if let (Some(grpc), Some(metrics)) = (&grpc, &metrics)
                && let Some(sender) = addresses_tx.take()
            {
                let _ = sender.send((grpc.clone(), metrics.clone()));
            }
            events.push(event);
        }
        events
    });
    let (grpc, metrics) = tokio::time::timeout(Duration::from_secs(60), addresses_rx)
        .await
        .expect("registrar starts within 60 s")
        .expect("registrar exited before serving");
    (grpc, metrics, reader)
}

#[tokio::test]
async fn json_logs_and_metrics_endpoint() {
    let (_emulator, org_url) = start_emulator().await;
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let mut child = Command::new(REGISTRAR)
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-no-auth",
        ])
        .env("REGISTRAR_METRICS_LISTEN", "127.0.0.1:0")
        .env("OKTA_ORG_URL", &org_url)
        .env("OKTA_API_TOKEN", API_TOKEN)
        .env("REGISTRAR_DATA_DIR", data_dir.path())
        .env("REGISTRAR_MASTER_KEY", MASTER_KEY)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("registrar starts");
    let (address, metrics_address, log_reader) = wait_for_json_addresses(&mut child).await;

    let mut client = RegistrarClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    client
        .list_service_apps(ListServiceAppsRequest::default())
        .await
        .expect("list through the binary");
    drop(client);
    let response = reqwest::get(format!("http://{metrics_address}/metrics"))
        .await
        .expect("the metrics endpoint answers");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let text = response.text().await.expect("metrics text");
    let listed = "registrar_grpc_requests_total{method=\"registrar.v1.Registrar/ListServiceApps\",code=\"OK\"} 1";
    assert!(text.contains(listed), "{text}");
    assert!(
        text.contains("registrar_okta_requests_total{operation=\"list apps\",status=\"200\"}"),
        "{text}"
    );

    let status = terminate(&mut child).await;
    let events = log_reader.await.expect("stderr reader");
    assert!(status.success(), "exit status {status}\n{events:#?}");
    for event in &events {
        assert!(event["timestamp"].is_string(), "no timestamp: {event}");
        assert!(event["level"].is_string(), "no level: {event}");
        assert!(event["fields"].is_object(), "no fields: {event}");
    }
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|event| event["fields"]["message"].as_str())
        .collect();
    assert!(messages.contains(&"registrar stopped"), "{messages:?}");
    // The debug event of the Okta call carries its fields as JSON values.
    let okta_call = events
        .iter()
        .find(|event| event["fields"]["message"] == "okta call")
        .expect("the list call logs an okta call event");
    assert_eq!(okta_call["fields"]["operation"], "list apps");
    assert_eq!(okta_call["fields"]["status"], 200);
}
