//! Tests of the real `registrar` binary: `serve` against an in-process
//! emulator with trace logging, graceful shutdown on SIGTERM, configuration
//! errors, and `demo`.

use std::process::Stdio;
use std::time::Duration;

use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_api::v1::{GrantScopesRequest, ListServiceAppsRequest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

const REGISTRAR: &str = env!("CARGO_BIN_EXE_registrar");
const API_TOKEN: &str = "binary-test-token-7f3a9c";

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

/// Reads stderr lines until the "registrar serving" line and returns the
/// address it names, plus everything read so far.
async fn wait_for_address(child: &mut Child) -> (String, String) {
    let stderr = child.stderr.as_mut().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("registrar serving")
                && let Some(rest) = line.split("address=").nth(1)
            {
                return rest
                    .split_whitespace()
                    .next()
                    .expect("address value")
                    .to_string();
            }
        }
        panic!("registrar exited before serving:\n{seen}");
    };
    let address = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("registrar starts within 60 s");
    (address, seen)
}

#[tokio::test]
async fn serve_works_logs_no_secret_and_stops_on_sigterm() {
    let (_emulator, org_url) = start_emulator().await;
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let mut child = Command::new(REGISTRAR)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("OKTA_ORG_URL", &org_url)
        .env("OKTA_API_TOKEN", API_TOKEN)
        .env("REGISTRAR_DATA_DIR", data_dir.path())
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("registrar starts");
    let (address, mut log) = wait_for_address(&mut child).await;

    let mut client = RegistrarClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    let listed = client
        .list_service_apps(ListServiceAppsRequest::default())
        .await
        .expect("list through the binary");
    assert!(listed.into_inner().apps.is_empty());
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

    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("registrar stops within 30 s")
        .expect("wait");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .await
        .expect("read the rest of stderr");
    assert!(status.success(), "exit status {status}\n{log}");
    assert!(log.contains("registrar stopped"), "{log}");
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "trace logging is on"
    );
    assert!(!log.contains(API_TOKEN), "the API token appears in the log");
    assert!(data_dir.path().join("registrar.db").exists());
}

#[tokio::test]
async fn bad_configuration_names_the_option() {
    let cases: [(&[&str], &[(&str, &str)], &str); 4] = [
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
}
