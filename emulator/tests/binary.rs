//! The `okta-emulator` binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn emulator_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_okta-emulator"));
    command.env_remove("OKTA_EMULATOR_API_TOKEN");
    command.env("RUST_LOG", "warn");
    command
}

#[tokio::test]
async fn binary_prints_org_url_and_serves() {
    let child = emulator_command()
        .args(["--listen", "127.0.0.1:0", "--api-token", "bin-token"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut child = KillOnDrop(child);

    let stdout = child.0.stdout.take().expect("stdout is piped");
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("stdout is readable");
        line
    });
    let line = tokio::time::timeout(Duration::from_secs(30), first_line)
        .await
        .expect("the binary prints its org URL within 30 s")
        .expect("the reader task does not panic");
    let org_url = line
        .trim_end()
        .strip_prefix("org_url=http://127.0.0.1:")
        .map(|port| format!("http://127.0.0.1:{port}"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));

    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client builds");
    let response = http
        .get(format!("{org_url}/api/v1/apps"))
        .header("Authorization", "SSWS bin-token")
        .send()
        .await
        .expect("the binary answers");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "[]");

    let unauthorized = http
        .get(format!("{org_url}/api/v1/apps"))
        .header("Authorization", "SSWS emulator-dev-token")
        .send()
        .await
        .expect("the binary answers");
    assert_eq!(unauthorized.status(), 401);
}

#[test]
fn binary_rejects_bad_flag_in_one_line() {
    let output = emulator_command()
        .args(["--rate-limit-apps", "zero"])
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--rate-limit-apps"), "{stderr}");
}

#[test]
fn binary_rejects_zero_window() {
    let output = emulator_command()
        .args(["--rate-limit-window-ms", "0"])
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--rate-limit-window-ms"), "{stderr}");
}

#[cfg(unix)]
#[tokio::test]
async fn binary_stops_on_sigterm() {
    let child = emulator_command()
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("stdout is piped");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("stdout is readable");
        line
    })
    .await
    .expect("reader task");
    assert!(line.starts_with("org_url=http://127.0.0.1:"), "{line}");

    let pid = child.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().expect("waitable") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the binary did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");

    let mut stderr = String::new();
    std::io::Read::read_to_string(
        &mut child.0.stderr.take().expect("stderr is piped"),
        &mut stderr,
    )
    .expect("stderr is readable");
    assert!(
        stderr.contains("emulator-dev-token"),
        "the default token is announced: {stderr}"
    );
}
