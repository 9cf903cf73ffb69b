//! Tests of the operator subcommands of the real `registrar` binary against
//! a registrar served on a loopback port: output with and without `--json`,
//! exit codes and messages of failures, help text, and bearer tokens.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use registrar_server::ServerConfig;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{ChildStdout, Command};
use tokio::sync::watch;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_registrar");
const API_TOKEN: &str = "cli-test-token-5d1c8e2a";
/// 32 bytes of standard base64, the format REGISTRAR_MASTER_KEY takes.
const MASTER_KEY: &str = "c2VjcmV0LW1hc3Rlci1rZXktZm9yLXRlc3RzLTAwMDA=";
const SUBCOMMANDS: [&str; 9] = [
    "keygen", "create", "grant", "revoke", "rotate", "watch", "apps", "grants", "token",
];

async fn start_emulator() -> String {
    start_emulator_handle().await.1
}

/// Starts an emulator that accepts `API_TOKEN`, and returns it and its org
/// URL.
async fn start_emulator_handle() -> (okta_emulator::Emulator, String) {
    let emulator = okta_emulator::Emulator::new(okta_emulator::Config::new(API_TOKEN));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let org_url = format!("http://{}", listener.local_addr().expect("address"));
    let serving = emulator.clone();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
    (emulator, org_url)
}

/// A registrar served in this process without caller authentication, with
/// rotation timings of seconds so that a whole rotation fits in a test.
/// Dropping it stops the server.
struct Registrar {
    server: String,
    _stop: watch::Sender<bool>,
    _data_dir: tempfile::TempDir,
}

async fn start_registrar() -> Registrar {
    let org_url = start_emulator().await;
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let config = ServerConfig {
        okta_org: registrar_server::org::OrgUrl::parse(&org_url).expect("org URL"),
        okta_credential_source: None,
        okta_credential: registrar_server::okta::OktaCredential::ApiToken(
            registrar_server::secret::Secret::new(API_TOKEN),
        ),
        database_url: registrar_server::config::default_database_url(data_dir.path())
            .expect("database URL"),
        okta_timeout: Duration::from_secs(10),
        // The registrar is the emulator's only client, so it may use the
        // whole budget; half of it would make a long grant wait for a new
        // rate-limit window and pass the CLI's timeout.
        okta_pacing: registrar_server::okta::PacingSettings {
            rate_share: 1.0,
            ..registrar_server::okta::PacingSettings::default()
        },
        master_key: registrar_server::keys::master::MasterKey::random(),
        assertion_lifetime: Duration::from_secs(5),
        shutdown_grace: Duration::from_secs(2),
        rotation: registrar_server::rotation::RotationSettings {
            propagation_delay: Duration::from_secs(1),
            grace_period: Duration::from_secs(2),
            key_lifetime: None,
        },
        deliver_private_keys: false,
        policies: registrar_server::policy::Policies::allow_all(),
        auth: registrar_server::auth::AuthConfig::insecure_loopback(),
        metrics_listen: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(registrar_server::run(listener, config, async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
    Registrar {
        server,
        _stop: stop,
        _data_dir: data_dir,
    }
}

/// Builds a `registrar` command without the caller's REGISTRAR_* variables.
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(REGISTRAR);
    command
        .args(args)
        .env_remove("REGISTRAR_SERVER")
        .env_remove("REGISTRAR_TOKEN_FILE")
        .env_remove("REGISTRAR_TIMEOUT_SECS")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The exit code and output of a finished command.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {}", self.stdout))
    }
}

async fn output(mut command: Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the command ends within 120 s")
        .expect("the command runs");
    Run {
        code: status.code().expect("exit code, not a signal"),
        stdout: String::from_utf8(stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(stderr).expect("UTF-8 stderr"),
    }
}

/// Runs a subcommand against `server` and returns its output.
async fn cli(server: &str, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--server", server]);
    output(command(&all)).await
}

/// Runs a subcommand that must succeed.
async fn cli_ok(server: &str, args: &[&str]) -> Run {
    let run = cli(server, args).await;
    assert_eq!(run.code, 0, "{args:?} failed: {}", run.stderr);
    run
}

/// Creates an app with a registrar-held key and returns its client id.
async fn create_generated(server: &str, name: &str) -> String {
    let run = cli_ok(server, &["create", name, "--generate-key", "--json"]).await;
    run.json()["client_id"]
        .as_str()
        .expect("client_id")
        .to_string()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn keygen_writes_key_and_create_accepts_jwks() {
    let registrar = start_registrar().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    for (algorithm, kty) in [("rs256-2048", "RSA"), ("es256", "EC")] {
        let key_file = dir.path().join(format!("{algorithm}.pem"));
        let key_path = key_file.to_str().expect("UTF-8 path");
        let run = output(command(&[
            "keygen",
            "--out",
            key_path,
            "--algorithm",
            algorithm,
        ]))
        .await;
        assert_eq!(run.code, 0, "{}", run.stderr);

        let pem = std::fs::read_to_string(&key_file).expect("key file");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
        #[cfg(unix)]
        assert_eq!(mode(&key_file), 0o600);
        let jwks = run.json();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], kty);
        assert!(key.get("d").is_none(), "the JWKS holds no private member");
        assert!(!run.stdout.contains(pem.lines().nth(1).expect("PEM body")));
        let member = |name: &str| key[name].as_str().unwrap_or_default().to_string();
        let jwk = registrar_api::v1::Jwk {
            kty: member("kty"),
            n: member("n"),
            e: member("e"),
            crv: member("crv"),
            x: member("x"),
            y: member("y"),
            ..Default::default()
        };
        let thumbprint = registrar_server::jwk::thumbprint(&jwk).expect("thumbprint");
        assert_eq!(key["kid"], thumbprint.as_str());

        let jwks_file = dir.path().join(format!("{algorithm}.json"));
        std::fs::write(&jwks_file, &run.stdout).expect("write JWKS");
        let name = format!("keygen-{algorithm}");
        let created = cli_ok(
            &registrar.server,
            &[
                "create",
                &name,
                "--jwks",
                jwks_file.to_str().expect("UTF-8 path"),
                "--json",
            ],
        )
        .await
        .json();
        assert_eq!(created["client_name"], name.as_str());
        assert_eq!(created["keys"][0]["kid"], thumbprint.as_str());
    }
}

#[tokio::test]
async fn keygen_keeps_existing_file_without_force() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, "keep me").expect("write");
    let key_path = key_file.to_str().expect("UTF-8 path");

    let refused = output(command(&["keygen", "--out", key_path])).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(std::fs::read_to_string(&key_file).expect("read"), "keep me");

    let forced = output(command(&[
        "keygen",
        "--out",
        key_path,
        "--force",
        "--algorithm",
        "es256",
    ]))
    .await;
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    let pem = std::fs::read_to_string(&key_file).expect("read");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    assert_eq!(mode(&key_file), 0o600);
}

#[tokio::test]
async fn round_trip_with_tables() {
    let registrar = start_registrar().await;
    let server = registrar.server.as_str();

    let created = cli_ok(server, &["create", "tables-app", "--generate-key"]).await;
    assert!(
        created
            .stdout
            .contains("created service app \"tables-app\""),
        "{}",
        created.stdout
    );
    let client_id = created
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("client_id:"))
        .expect("client_id line")
        .trim()
        .to_string();

    let granted = cli_ok(
        server,
        &["grant", &client_id, "okta.users.read", "okta.apps.read"],
    )
    .await;
    let lines: Vec<&str> = granted.stdout.lines().collect();
    assert!(lines[0].starts_with("SCOPE"), "{}", granted.stdout);
    assert!(
        lines[1].starts_with("okta.users.read  granted"),
        "{}",
        granted.stdout
    );
    assert!(
        lines[2].starts_with("okta.apps.read   granted"),
        "{}",
        granted.stdout
    );
    let again = cli_ok(server, &["grant", &client_id, "okta.users.read"]).await;
    assert!(again.stdout.contains("already granted"), "{}", again.stdout);

    let grants = cli_ok(server, &["grants", &client_id]).await;
    assert!(
        grants.stdout.contains("okta.users.read"),
        "{}",
        grants.stdout
    );
    assert!(
        grants.stdout.contains("okta.apps.read"),
        "{}",
        grants.stdout
    );

    let token = cli_ok(server, &["token", &client_id, "okta.users.read"]).await;
    assert_eq!(token.stdout.lines().count(), 1, "the token alone");
    assert!(token.stdout.trim().len() > 20, "{}", token.stdout);

    let revoked = cli_ok(server, &["revoke", &client_id, "okta.apps.read"]).await;
    assert!(revoked.stdout.contains("revoked"), "{}", revoked.stdout);
    let grants = cli_ok(server, &["grants", &client_id]).await;
    assert!(
        !grants.stdout.contains("okta.apps.read"),
        "{}",
        grants.stdout
    );

    let apps = cli_ok(server, &["apps", "--prefix", "tables-"]).await;
    assert!(apps.stdout.starts_with("CLIENT_ID"), "{}", apps.stdout);
    assert!(apps.stdout.contains(&client_id), "{}", apps.stdout);

    let rotated = cli_ok(server, &["rotate", &client_id]).await;
    assert!(
        rotated.stdout.contains("rotation started"),
        "{}",
        rotated.stdout
    );
    assert!(
        rotated.stdout.contains("signing switched"),
        "{}",
        rotated.stdout
    );
    assert!(
        rotated.stdout.contains("rotation finished"),
        "{}",
        rotated.stdout
    );
}

#[tokio::test]
async fn round_trip_with_json() {
    let registrar = start_registrar().await;
    let server = registrar.server.as_str();
    let client_id = create_generated(server, "json-app").await;

    let granted = cli_ok(
        server,
        &[
            "grant",
            &client_id,
            "okta.users.read,okta.apps.read",
            "--json",
        ],
    )
    .await
    .json();
    let results = granted["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    for result in results {
        assert_eq!(result["outcome"], "SCOPE_OUTCOME_GRANTED", "{result}");
        assert!(
            result["grant_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{result}"
        );
    }

    let grants = cli_ok(server, &["grants", &client_id, "--json"])
        .await
        .json();
    let mut scopes: Vec<&str> = grants["grants"]
        .as_array()
        .expect("grants")
        .iter()
        .filter_map(|grant| grant["scope_id"].as_str())
        .collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["okta.apps.read", "okta.users.read"]);

    let token = cli_ok(server, &["token", &client_id, "okta.users.read", "--json"])
        .await
        .json();
    assert!(
        token["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(token["token_type"], "Bearer");
    assert!(token["expires_at"].is_string(), "{token}");

    let revoked = cli_ok(
        server,
        &[
            "revoke",
            &client_id,
            "okta.apps.read",
            "okta.groups.read",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(revoked["results"][0]["outcome"], "SCOPE_OUTCOME_REVOKED");
    assert_eq!(
        revoked["results"][1]["outcome"],
        "SCOPE_OUTCOME_NOT_GRANTED"
    );

    let apps = cli_ok(server, &["apps", "--prefix", "json-", "--json"])
        .await
        .json();
    let listed = apps["apps"].as_array().expect("apps");
    assert!(
        listed
            .iter()
            .any(|app| app["client_id"] == client_id.as_str()),
        "{apps}"
    );

    let started = cli_ok(server, &["rotate", &client_id, "--no-wait", "--json"])
        .await
        .json();
    assert_eq!(
        started["phase"], "ROTATION_PHASE_NEW_KEY_ADDED",
        "{started}"
    );
    assert_eq!(started["keys"].as_array().expect("keys").len(), 2);
}

#[tokio::test]
async fn rotate_json_follows_every_phase() {
    let registrar = start_registrar().await;
    let server = registrar.server.as_str();
    let client_id = create_generated(server, "rotate-json").await;

    let rotated = cli_ok(server, &["rotate", &client_id, "--json"]).await;
    let states: Vec<Value> = rotated
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let phases: Vec<&str> = states
        .iter()
        .filter_map(|state| state["phase"].as_str())
        .collect();
    assert_eq!(phases.first(), Some(&"ROTATION_PHASE_NEW_KEY_ADDED"));
    assert!(
        phases.contains(&"ROTATION_PHASE_SIGNING_SWITCHED"),
        "{phases:?}"
    );
    assert_eq!(phases.last(), Some(&"ROTATION_PHASE_UNSPECIFIED"));
    let old_kid = states[0]["signing_kid"].as_str().expect("old kid");
    let last = states.last().expect("final state");
    assert_ne!(last["signing_kid"], old_kid);
    assert_eq!(last["keys"].as_array().expect("keys").len(), 1);
    let revisions: Vec<u64> = states
        .iter()
        .filter_map(|state| state["revision"].as_u64())
        .collect();
    assert!(revisions.is_sorted(), "{revisions:?}");
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a watch line within 30 s")
        .expect("read stdout")
        .expect("watch still running");
    serde_json::from_str(&line).expect("JSON line")
}

#[tokio::test]
async fn watch_streams_changes_until_interrupted() {
    let registrar = start_registrar().await;
    let server = registrar.server.as_str();
    let client_id = create_generated(server, "watched").await;

    let mut watching = command(&["watch", &client_id, "--json", "--server", server]);
    let mut child = watching
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = next_line(&mut lines).await;
    assert_eq!(first["apps"][0]["client_id"], client_id.as_str());
    assert_eq!(first["apps"][0]["phase"], "ROTATION_PHASE_UNSPECIFIED");

    cli_ok(server, &["rotate", &client_id, "--no-wait"]).await;
    let mut revision = first["revision"].as_u64().expect("revision");
    loop {
        let message = next_line(&mut lines).await;
        let next = message["revision"].as_u64().expect("revision");
        assert!(next > revision, "revisions increase: {message}");
        revision = next;
        if message["apps"][0]["phase"] == "ROTATION_PHASE_SIGNING_SWITCHED" {
            break;
        }
    }

    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("watch stops within 10 s")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
}

/// Waits up to 30 s for a command to exit, and returns its exit code and
/// standard error.
async fn wait_for_exit(mut child: tokio::process::Child) -> (i32, String) {
    let mut stderr = child.stderr.take().expect("stderr");
    let ended = async {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text)
            .await
            .expect("read stderr");
        let status = child.wait().await.expect("wait");
        (status.code().expect("exit code, not a signal"), text)
    };
    tokio::time::timeout(Duration::from_secs(30), ended)
        .await
        .expect("the command ends within 30 s")
}

/// `registrar apps | head -1` and `registrar watch | head -3`: a reader that
/// closes the pipe ends the command with exit code 0 and nothing on
/// standard error, where `println!` would panic. A failure keeps its exit
/// code.
#[tokio::test]
async fn closed_output_ends_quietly() {
    let registrar = start_registrar().await;
    let server = registrar.server.as_str();
    let client_id = create_generated(server, "piped").await;

    // The pipe closes before the command has connected, so its first write
    // fails.
    let mut listing = command(&["apps", "--server", server]);
    let mut child = listing
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apps starts");
    drop(child.stdout.take());
    let (code, stderr) = wait_for_exit(child).await;
    assert_eq!((code, stderr.as_str()), (0, ""), "apps with a closed pipe");

    // A failure still sets the exit code when the results go unread.
    let mut granting = command(&[
        "grant",
        &client_id,
        "okta.users.read",
        "okta.nosuchthing.read",
        "--server",
        server,
    ]);
    let mut child = granting
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("grant starts");
    drop(child.stdout.take());
    let (code, stderr) = wait_for_exit(child).await;
    assert_eq!(code, 6, "grant with a closed pipe: {stderr}");
    assert!(stderr.contains("1 of 2 scopes failed"), "{stderr}");

    // A closed standard error does not turn an error into a panic.
    let mut unreachable = command(&["apps", "--server", "http://127.0.0.1:1"]);
    let mut child = unreachable
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apps starts");
    drop(child.stderr.take());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("apps ends within 30 s")
        .expect("wait");
    assert_eq!(status.code(), Some(3), "apps with a closed standard error");

    let mut watching = command(&["watch", &client_id, "--json", "--server", server]);
    let mut child = watching
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    next_line(&mut lines).await;
    // Nothing changes after this, so the watch has nothing more to write:
    // it must notice the closed pipe without a write.
    drop(lines);
    let (code, stderr) = wait_for_exit(child).await;
    assert_eq!((code, stderr.as_str()), (0, ""), "watch with a closed pipe");
}

#[tokio::test]
async fn unreachable_server_exits_3() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    for args in [&["apps"][..], &["grants", "0oaAny"], &["watch", "0oaAny"]] {
        let run = cli(&server, args).await;
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("cannot reach the registrar at {server}")),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("check --server"), "{}", run.stderr);
    }
}

#[tokio::test]
async fn missing_app_and_bad_scopes_are_rejected() {
    let registrar = start_registrar().await;
    let server = registrar.server.as_str();

    let missing = cli(server, &["grants", "0oaMissing123"]).await;
    assert_eq!(missing.code, 4, "{}", missing.stderr);
    assert!(missing.stderr.contains("not found"), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("0oaMissing123"),
        "{}",
        missing.stderr
    );

    let client_id = create_generated(server, "bad-scopes").await;
    let malformed = cli(server, &["grant", &client_id, "not a scope"]).await;
    assert_eq!(malformed.code, 4, "{}", malformed.stderr);
    assert!(
        malformed.stderr.contains("invalid request"),
        "{}",
        malformed.stderr
    );
    assert!(
        malformed.stderr.contains("not a valid Okta scope id"),
        "{}",
        malformed.stderr
    );

    // Okta rejects the unknown scope; the other one is still granted.
    let partial = cli(
        server,
        &[
            "grant",
            &client_id,
            "okta.users.read",
            "okta.nosuchthing.read",
        ],
    )
    .await;
    assert_eq!(partial.code, 6, "{}", partial.stderr);
    assert!(partial.stdout.contains("granted"), "{}", partial.stdout);
    assert!(partial.stdout.contains("FAILED"), "{}", partial.stdout);
    assert!(
        partial.stderr.contains("1 of 2 scopes failed"),
        "{}",
        partial.stderr
    );

    let no_key = cli(server, &["token", "0oaMissing123", "okta.users.read"]).await;
    assert_eq!(no_key.code, 4, "{}", no_key.stderr);
}

#[tokio::test]
async fn help_works_for_every_subcommand() {
    let top = output(command(&["--help"])).await;
    assert_eq!(top.code, 0, "{}", top.stderr);
    for subcommand in SUBCOMMANDS {
        assert!(
            top.stdout.contains(&format!("  {subcommand} ")),
            "{subcommand} is listed: {}",
            top.stdout
        );
        let help = output(command(&[subcommand, "--help"])).await;
        assert_eq!(help.code, 0, "{subcommand}: {}", help.stderr);
        assert!(
            help.stdout.contains("Examples:"),
            "{subcommand}: {}",
            help.stdout
        );
        assert!(
            help.stdout.contains(&format!("registrar {subcommand}")),
            "{subcommand}: {}",
            help.stdout
        );
    }
    let token_help = output(command(&["token", "--help"])).await;
    assert!(
        token_help.stdout.contains("secret"),
        "{}",
        token_help.stdout
    );
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let cases: [&[&str]; 4] = [
        &["create", "no-key-source"],
        &["grant", "0oaAny"],
        &["apps", "--server", "ftp://127.0.0.1:1"],
        &["apps", "--timeout-secs", "0"],
    ];
    for args in cases {
        let run = output(command(args)).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    }

    // The registrar requests the tokens of a DPoP-bound app, so it must
    // hold the key. The JWKS file is valid, so only the flags are at fault.
    let dir = tempfile::tempdir().expect("temporary directory");
    let jwks = dir.path().join("jwks.json");
    let keygen = output(command(&[
        "keygen",
        "--out",
        dir.path().join("key.pem").to_str().expect("UTF-8 path"),
    ]))
    .await;
    assert_eq!(keygen.code, 0, "{}", keygen.stderr);
    std::fs::write(&jwks, &keygen.stdout).expect("write JWKS");
    let jwks = jwks.to_str().expect("UTF-8 path");
    let run = output(command(&["create", "dpop", "--jwks", jwks, "--dpop-bound"])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--dpop-bound"), "{}", run.stderr);
}

/// The policy of `serve`: the caller "operator" may do everything.
const OPERATOR_POLICY: &str = "[[caller]]\nid = \"operator\"\noperations = [\"*\"]\n\
    scopes = [\"*\"]\nclient_name_prefixes = [\"\"]\nadmin = true\n";

/// Starts `registrar serve` with these options and a policy that lets the
/// caller "operator" do everything. Returns the child and its address.
async fn serve(dir: &Path, args: &[&std::ffi::OsStr]) -> (tokio::process::Child, String) {
    let (child, address, _log) = serve_logged(dir, args).await;
    (child, address)
}

/// Starts `registrar serve` like `serve`, and also returns the lines that
/// it logs after the line that gives its address.
async fn serve_logged(
    dir: &Path,
    args: &[&std::ffi::OsStr],
) -> (
    tokio::process::Child,
    String,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    serve_on(dir, args, &start_emulator().await).await
}

/// Starts `registrar serve` like `serve_logged`, against the emulator at
/// `org_url`. The API token comes from `OKTA_API_TOKEN` unless `args`
/// configure an Okta credential.
async fn serve_on(
    dir: &Path,
    args: &[&std::ffi::OsStr],
    org_url: &str,
) -> (
    tokio::process::Child,
    String,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let own_credential = ["--okta-api-token-file", "--okta-client-id"]
        .iter()
        .any(|option| args.contains(&option.as_ref()));
    let token_env: &[(&str, &str)] = if own_credential {
        &[]
    } else {
        &[("OKTA_API_TOKEN", API_TOKEN)]
    };
    let policy_file = dir.join("policy.toml");
    std::fs::write(&policy_file, OPERATOR_POLICY).expect("write policy file");

    let mut child = Command::new(REGISTRAR)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--policy-file")
        .arg(&policy_file)
        .env("OKTA_ORG_URL", org_url)
        .env_remove("OKTA_API_TOKEN")
        .envs(token_env.iter().copied())
        .env("REGISTRAR_DATA_DIR", dir.join("data"))
        .env("REGISTRAR_MASTER_KEY", MASTER_KEY)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("registrar starts");

    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("registrar serving")
                && let Some(rest) = line.split("address=").nth(1)
            {
                return rest.split_whitespace().next().map(ToString::to_string);
            }
        }
        None
    })
    .await
    .expect("registrar starts within 60 s")
    .expect("registrar serving line");
    // Keep reading, so that the child never blocks on a full pipe.
    let (log_tx, log_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            // Sending fails once the test drops the receiver, which is fine.
            let _ = log_tx.send(line);
        }
    });
    (child, address, log_rx)
}

/// Starts `registrar serve` with bearer token authentication. Returns the
/// child, its URL and the file that contains the caller's token.
async fn serve_with_bearer_tokens(dir: &Path) -> (tokio::process::Child, String, String) {
    let (tokens_file, token_path) = write_operator_token(dir);
    let (child, address) = serve(
        dir,
        &["--bearer-tokens-file".as_ref(), tokens_file.as_os_str()],
    )
    .await;
    (child, format!("http://{address}"), token_path)
}

/// Writes a bearer token file whose one caller is "operator", and that
/// caller's token file. Returns the bearer token file and the token file's
/// path, for `--token-file`.
fn write_operator_token(dir: &Path) -> (std::path::PathBuf, String) {
    const OPERATOR: &str = "cli-operator-token-0123456789abcdef0123456789";
    let tokens_file = dir.join("tokens.toml");
    let entry = registrar_server::auth::token_file_entry("operator", OPERATOR).expect("entry");
    std::fs::write(&tokens_file, entry).expect("write token file");
    let token_file = dir.join("operator.token");
    std::fs::write(&token_file, format!("{OPERATOR}\n")).expect("write token");
    let token_path = token_file.to_str().expect("UTF-8 path").to_string();
    (tokens_file, token_path)
}

#[tokio::test]
async fn bearer_token_file_authenticates() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (_child, server, token_file) = serve_with_bearer_tokens(dir.path()).await;

    let anonymous = cli(&server, &["apps"]).await;
    assert_eq!(anonymous.code, 4, "{}", anonymous.stderr);
    assert!(
        anonymous.stderr.contains("requires authentication"),
        "{}",
        anonymous.stderr
    );
    assert!(
        anonymous.stderr.contains("--token-file"),
        "{}",
        anonymous.stderr
    );

    let created = cli_ok(
        &server,
        &[
            "create",
            "bearer-app",
            "--generate-key",
            "--json",
            "--token-file",
            &token_file,
        ],
    )
    .await
    .json();
    let client_id = created["client_id"].as_str().expect("client_id");

    // The same file through the environment.
    let mut listing = command(&["apps", "--json", "--server", &server]);
    listing.env("REGISTRAR_TOKEN_FILE", &token_file);
    let listed = output(listing).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(listed.stdout.contains(client_id), "{}", listed.stdout);

    let wrong_file = dir.path().join("wrong.token");
    std::fs::write(&wrong_file, "wrong-token-0123456789abcdef0123456789").expect("write");
    let wrong = cli(
        &server,
        &["apps", "--token-file", wrong_file.to_str().expect("UTF-8")],
    )
    .await;
    assert_eq!(wrong.code, 4, "{}", wrong.stderr);
    assert!(
        !wrong.stderr.contains("wrong-token-0123456789"),
        "the token is not repeated: {}",
        wrong.stderr
    );
}

/// Sends SIGHUP to a child process.
async fn hang_up(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success(), "kill -HUP {pid}");
}

/// Waits up to 10 s for a log line that contains `text`, and returns it.
async fn log_line(log: &mut tokio::sync::mpsc::UnboundedReceiver<String>, text: &str) -> String {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = log.recv().await.expect("the server is still logging");
            if line.contains(text) {
                return line;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {text:?} within 10 s"))
}

/// An operator adds a caller to the bearer token file and the policy file,
/// and one SIGHUP lets it in without a restart. A broken token file is
/// logged without its contents and changes nothing. Replacing the caller's
/// token ends the watch stream opened with the old one.
#[tokio::test]
async fn sighup_reloads_bearer_tokens() {
    const OPERATOR: &str = "cli-operator-token-0123456789abcdef0123456789";
    const AUDITOR: &str = "cli-auditor-token-0123456789abcdef01234567890";
    let dir = tempfile::tempdir().expect("temporary directory");
    let tokens_file = dir.path().join("tokens.toml");
    let operator_entry =
        registrar_server::auth::token_file_entry("operator", OPERATOR).expect("entry");
    std::fs::write(&tokens_file, &operator_entry).expect("write token file");
    let operator_token = dir.path().join("operator.token");
    std::fs::write(&operator_token, OPERATOR).expect("write token");
    let auditor_token = dir.path().join("auditor.token");
    std::fs::write(&auditor_token, AUDITOR).expect("write token");
    let operator_token = operator_token.to_str().expect("UTF-8 path");
    let auditor_token = auditor_token.to_str().expect("UTF-8 path");

    let (child, address, mut log) = serve_logged(
        dir.path(),
        &["--bearer-tokens-file".as_ref(), tokens_file.as_os_str()],
    )
    .await;
    let server = format!("http://{address}");
    let before = cli(&server, &["apps", "--token-file", auditor_token]).await;
    assert_eq!(
        before.code, 4,
        "unknown before the reload: {}",
        before.stderr
    );

    let auditor_entry =
        registrar_server::auth::token_file_entry("auditor", AUDITOR).expect("entry");
    std::fs::write(&tokens_file, format!("{operator_entry}{auditor_entry}"))
        .expect("write token file");
    std::fs::write(
        dir.path().join("policy.toml"),
        format!(
            "{OPERATOR_POLICY}[[caller]]\nid = \"auditor\"\noperations = [\"read\", \"watch\"]\nadmin = true\n"
        ),
    )
    .expect("write policy file");
    hang_up(&child).await;
    // The policy file is reloaded first.
    log_line(&mut log, "policy reloaded").await;
    let reloaded = log_line(&mut log, "bearer token file reloaded").await;
    assert!(reloaded.contains("callers=2"), "{reloaded}");
    let after = cli(&server, &["apps", "--token-file", auditor_token]).await;
    assert_eq!(after.code, 0, "known after the reload: {}", after.stderr);

    // A token pasted where its digest belongs.
    let pasted = "pasted-token-0123456789abcdef0123456789abcdef";
    std::fs::write(
        &tokens_file,
        format!("{operator_entry}[[caller]]\nname = \"auditor\"\ntoken_sha256 = \"{pasted}\"\n"),
    )
    .expect("write token file");
    hang_up(&child).await;
    let failed = log_line(&mut log, "bearer token file reload failed").await;
    assert!(failed.contains("line 6"), "the line is named: {failed}");
    assert!(
        !failed.contains(pasted),
        "the value is not logged: {failed}"
    );
    for token in [operator_token, auditor_token] {
        let still_allowed = cli(&server, &["apps", "--token-file", token]).await;
        assert_eq!(
            still_allowed.code, 0,
            "the previous callers stay: {}",
            still_allowed.stderr
        );
    }

    // Replacing a caller's token ends the streams opened with the old one.
    let created = cli_ok(
        &server,
        &[
            "create",
            "watched",
            "--generate-key",
            "--json",
            "--token-file",
            operator_token,
        ],
    )
    .await
    .json();
    let client_id = created["client_id"].as_str().expect("client_id");
    let mut watching = command(&[
        "watch",
        client_id,
        "--json",
        "--server",
        &server,
        "--token-file",
        auditor_token,
    ]);
    let mut watcher = watching
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch starts");
    let mut lines = BufReader::new(watcher.stdout.take().expect("stdout")).lines();
    next_line(&mut lines).await;
    const REPLACED: &str = "cli-auditor-token-replaced-0123456789abcdef012";
    let replaced_entry =
        registrar_server::auth::token_file_entry("auditor", REPLACED).expect("entry");
    std::fs::write(&tokens_file, format!("{operator_entry}{replaced_entry}"))
        .expect("write token file");
    hang_up(&child).await;
    let (code, stderr) = wait_for_exit(watcher).await;
    assert_eq!(code, 4, "the old token's watch is rejected: {stderr}");
    assert!(
        stderr.contains("no longer in the bearer token file"),
        "{stderr}"
    );
    std::fs::write(dir.path().join("auditor.token"), REPLACED).expect("write token");
    let renewed = cli(&server, &["apps", "--token-file", auditor_token]).await;
    assert_eq!(renewed.code, 0, "the new token works: {}", renewed.stderr);
}

/// An operator replaces the registrar's Okta API token: adds a new token in
/// Okta, writes it to the token file and sends SIGHUP, then revokes the old
/// one. Calls go on without a restart. A broken token file, or a token that
/// Okta rejects, is logged and leaves the token in force.
#[tokio::test]
async fn sighup_reloads_okta_api_token() {
    const NEW_API_TOKEN: &str = "cli-test-token-after-rotation-7a1f";
    let dir = tempfile::tempdir().expect("temporary directory");
    let (emulator, org_url) = start_emulator_handle().await;
    let okta_token_file = dir.path().join("okta.token");
    std::fs::write(&okta_token_file, format!("{API_TOKEN}\n")).expect("write token");
    let (tokens_file, operator_token) = write_operator_token(dir.path());
    let operator_token = operator_token.as_str();

    let (child, address, mut log) = serve_on(
        dir.path(),
        &[
            "--bearer-tokens-file".as_ref(),
            tokens_file.as_os_str(),
            "--okta-api-token-file".as_ref(),
            okta_token_file.as_os_str(),
        ],
        &org_url,
    )
    .await;
    let server = format!("http://{address}");
    let create = |name: &'static str| {
        let server = server.clone();
        async move {
            cli(
                &server,
                &[
                    "create",
                    name,
                    "--generate-key",
                    "--token-file",
                    operator_token,
                ],
            )
            .await
        }
    };
    let before = create("before-rotation").await;
    assert_eq!(before.code, 0, "{}", before.stderr);

    emulator.add_api_token(NEW_API_TOKEN);
    std::fs::write(&okta_token_file, NEW_API_TOKEN).expect("write token");
    hang_up(&child).await;
    let reloaded = log_line(&mut log, "Okta credential reloaded").await;
    assert!(!reloaded.contains(NEW_API_TOKEN), "{reloaded}");
    assert!(emulator.revoke_api_token(API_TOKEN));
    let after = create("after-rotation").await;
    assert_eq!(after.code, 0, "the new token is in use: {}", after.stderr);

    std::fs::write(&okta_token_file, "").expect("empty the token file");
    hang_up(&child).await;
    let failed = log_line(&mut log, "Okta credential reload failed").await;
    assert!(failed.contains("empty"), "{failed}");
    let unchanged = create("after-failed-reload").await;
    assert_eq!(
        unchanged.code, 0,
        "the new token stays in force: {}",
        unchanged.stderr
    );
    // A token that Okta does not know fails the trial call and is not
    // put in force.
    std::fs::write(&okta_token_file, "cli-test-token-not-created-in-okta").expect("write token");
    hang_up(&child).await;
    let rejected = log_line(&mut log, "Okta credential reload failed").await;
    assert!(rejected.contains("trial call"), "{rejected}");
    assert!(!rejected.contains("not-created-in-okta"), "{rejected}");
    let still_working = create("after-rejected-token").await;
    assert_eq!(
        still_working.code, 0,
        "the new token stays in force: {}",
        still_working.stderr
    );

    assert!(emulator.revoke_api_token(NEW_API_TOKEN));
    let revoked = create("after-revocation").await;
    assert_eq!(revoked.code, 4, "a revoked token fails: {}", revoked.stderr);
}

/// The registrar authenticates to Okta as its own OAuth service app, and
/// the operator rotates that app's key. The operator adds the new public
/// key in Okta, writes the private key to the key file, sends SIGHUP, and
/// deletes the old key in Okta. Calls go on without a restart. A key that
/// Okta does not know is not put in force.
#[tokio::test]
async fn sighup_reloads_okta_private_key() {
    use registrar_server::keys::KeyPair;
    use registrar_server::okta::OktaClient;
    use registrar_server::okta::model::NewClient;

    let dir = tempfile::tempdir().expect("temporary directory");
    let (emulator, org_url) = start_emulator_handle().await;
    let admin = OktaClient::new(
        registrar_server::org::OrgUrl::parse(&org_url).expect("org URL"),
        registrar_server::secret::Secret::new(API_TOKEN),
        Duration::from_secs(10),
    )
    .expect("client builds");
    let new_key = || KeyPair::generate(registrar_api::v1::KeyAlgorithm::Es256).expect("key");
    let public = |key: &KeyPair| registrar_server::jwk::to_okta_json(key.public_jwk());
    let first = new_key();
    let app = admin
        .create_client(&NewClient::service_app(
            "registrar".into(),
            vec![public(&first)],
        ))
        .await
        .expect("the registrar's app is registered");
    for scope in registrar_server::okta::credential::DEFAULT_SCOPES {
        admin
            .create_grant(&app.client_id, scope)
            .await
            .expect("scope granted");
    }
    emulator
        .assign_admin_role(&app.client_id, "SUPER_ADMIN")
        .expect("role assigned");
    let key_file = dir.path().join("registrar-key.pem");
    std::fs::write(
        &key_file,
        first.private_pkcs8_pem().expect("PEM").as_bytes(),
    )
    .expect("write key");

    let (tokens_file, operator_token) = write_operator_token(dir.path());
    let operator_token = operator_token.as_str();
    let (child, address, mut log) = serve_on(
        dir.path(),
        &[
            "--bearer-tokens-file".as_ref(),
            tokens_file.as_os_str(),
            "--okta-client-id".as_ref(),
            app.client_id.as_ref(),
            "--okta-private-key-file".as_ref(),
            key_file.as_os_str(),
        ],
        &org_url,
    )
    .await;
    let server = format!("http://{address}");
    let list = || {
        let server = server.clone();
        async move { cli(&server, &["apps", "--json", "--token-file", operator_token]).await }
    };
    let before = list().await;
    assert_eq!(before.code, 0, "{}", before.stderr);

    let second = new_key();
    let mut body = public(&second);
    body["status"] = serde_json::Value::String("ACTIVE".into());
    admin
        .add_app_key(&app.client_id, &body)
        .await
        .expect("the new key is added");
    std::fs::write(
        &key_file,
        second.private_pkcs8_pem().expect("PEM").as_bytes(),
    )
    .expect("write key");
    let issued = emulator.issued_tokens();
    hang_up(&child).await;
    log_line(&mut log, "Okta credential reloaded").await;
    // The reload tried the new key with a call of its own, which got an
    // access token with an assertion that the new key signed.
    assert_eq!(emulator.issued_tokens(), issued + 1, "a new access token");
    let old = admin
        .list_app_keys(&app.client_id)
        .await
        .expect("keys")
        .into_iter()
        .find(|key| key["kid"] == first.kid())
        .expect("the old key");
    let old_id = old["id"].as_str().expect("key id");
    admin
        .deactivate_app_key(&app.client_id, old_id)
        .await
        .expect("deactivate the old key");
    admin
        .delete_app_key(&app.client_id, old_id)
        .await
        .expect("delete the old key");

    let after = list().await;
    assert_eq!(after.code, 0, "{}", after.stderr);

    // A key that is not registered with the app fails the trial call, and
    // the key in force stays.
    let unregistered = new_key();
    std::fs::write(
        &key_file,
        unregistered.private_pkcs8_pem().expect("PEM").as_bytes(),
    )
    .expect("write key");
    hang_up(&child).await;
    let rejected = log_line(&mut log, "Okta credential reload failed").await;
    assert!(rejected.contains("public JWK"), "the hint: {rejected}");
    assert!(!rejected.contains("PRIVATE KEY"), "{rejected}");
    let listed = after.json();
    assert!(
        listed["apps"]
            .as_array()
            .expect("apps")
            .iter()
            .any(|listed| listed["client_id"] == app.client_id.as_str()),
        "{listed}"
    );
    let in_force = list().await;
    assert_eq!(
        in_force.code, 0,
        "the second key signs: {}",
        in_force.stderr
    );
}

/// Writes a CA, a server certificate for 127.0.0.1 and a client
/// certificate with the CN "operator", and returns the paths of the CA,
/// server certificate, server key, client certificate and client key.
fn write_certificates(dir: &Path) -> [String; 5] {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose, SanType,
    };

    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "cli test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");

    let mut server = CertificateParams::new(Vec::<String>::new()).expect("server parameters");
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().expect("server key");
    let server_cert = server
        .signed_by(&server_key, &ca)
        .expect("server certificate");

    let mut client = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
    client
        .distinguished_name
        .push(DnType::CommonName, "operator");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().expect("client key");
    let client_cert = client
        .signed_by(&client_key, &ca)
        .expect("client certificate");

    let files = [
        ("ca.pem", ca.pem()),
        ("server.pem", server_cert.pem()),
        ("server-key.pem", server_key.serialize_pem()),
        ("client.pem", client_cert.pem()),
        ("client-key.pem", client_key.serialize_pem()),
    ];
    files.map(|(name, pem)| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path.to_str().expect("UTF-8 path").to_string()
    })
}

#[tokio::test]
async fn https_server_with_client_certificate() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let [ca, server_cert, server_key, client_cert, client_key] = write_certificates(dir.path());
    let (_child, address) = serve(
        dir.path(),
        &[
            "--tls-cert-file".as_ref(),
            server_cert.as_ref(),
            "--tls-key-file".as_ref(),
            server_key.as_ref(),
            "--client-ca-file".as_ref(),
            ca.as_ref(),
        ],
    )
    .await;
    let server = format!("https://{address}");

    let mtls = [
        "--ca-file",
        ca.as_str(),
        "--cert-file",
        client_cert.as_str(),
        "--key-file",
        client_key.as_str(),
    ];
    let mut args = vec!["create", "mtls-app", "--generate-key", "--json"];
    args.extend(mtls);
    let created = cli_ok(&server, &args).await.json();
    assert_eq!(created["client_name"], "mtls-app");

    let without_certificate = cli(&server, &["apps", "--ca-file", &ca]).await;
    assert_eq!(
        without_certificate.code, 4,
        "{}",
        without_certificate.stderr
    );
    assert!(
        without_certificate.stderr.contains("--cert-file"),
        "{}",
        without_certificate.stderr
    );

    // The system's roots do not hold the test CA.
    let unknown_ca = cli(&server, &["apps"]).await;
    assert_eq!(unknown_ca.code, 3, "{}", unknown_ca.stderr);
    assert!(
        unknown_ca.stderr.contains("--ca-file"),
        "{}",
        unknown_ca.stderr
    );

    let plaintext = cli(&format!("http://{address}"), &["apps", "--ca-file", &ca]).await;
    assert_eq!(plaintext.code, 2, "{}", plaintext.stderr);
}

#[tokio::test]
async fn grant_batches_long_scope_lists() {
    let registrar = start_registrar().await;
    let server = registrar.server.as_str();
    let client_id = create_generated(server, "many-scopes").await;

    // 12 scopes take two calls of at most 10; Okta rejects the made-up ones.
    let mut scopes = vec!["okta.users.read".to_string()];
    scopes.extend((0..11).map(|index| format!("okta.madeup{index}.read")));
    let mut args = vec!["grant", client_id.as_str(), "--json"];
    args.extend(scopes.iter().map(String::as_str));
    let run = cli(server, &args).await;

    assert_eq!(run.code, 6, "{}", run.stderr);
    assert!(
        run.stderr.contains("granting scopes 1-10 of 12"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("granting scopes 11-12 of 12"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("11 of 12 scopes failed"),
        "{}",
        run.stderr
    );
    let results = run.json()["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 12);
    assert_eq!(results[0]["outcome"], "SCOPE_OUTCOME_GRANTED");
    assert_eq!(results[11]["outcome"], "SCOPE_OUTCOME_FAILED");
    assert_eq!(results[11]["scope_id"], "okta.madeup10.read");
}
