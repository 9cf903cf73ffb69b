//! The Python and Node.js examples in `clients/` against a real registrar,
//! and `buf lint` on the proto.
//!
//! Each example registers a service, grants a second scope, gets an access
//! token and prints the first `WatchRotations` message. The tests check its
//! output and what reached the Okta emulator, run it a second time to see
//! the calls repeat safely, and run it against a closed port to see it fail
//! with a message.
//!
//! `scripts/install-test-tools.sh` installs what these tests run: grpcio-tools
//! into `.venv/` with the Python stubs it generates into
//! `clients/python/generated/`, and the npm packages of `clients/node/`
//! (`@grpc/grpc-js`, `@grpc/proto-loader` and the buf CLI) with `npm ci`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use registrar_api::v1::GetAccessTokenRequest;
use registrar_server::auth::{AuthConfig, BearerTokens};
use registrar_server::policy::Policies;
use registrar_tests::{Options, TestEnv};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::time::timeout;

const REGISTERED_SCOPE: &str = "okta.users.read";
const GRANTED_SCOPE: &str = "okta.apps.read";
/// How long one run of an example or of buf may take, start-up included.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The two example programs.
#[derive(Debug, Clone, Copy)]
enum Example {
    Python,
    Node,
}

impl Example {
    /// Returns the command that runs the example, after checking that its
    /// interpreter and packages are installed.
    fn command(self) -> Command {
        match self {
            Example::Python => python_command(),
            Example::Node => node_command(),
        }
    }
}

/// What a finished program wrote and how it exited.
#[derive(Debug)]
struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
        .to_path_buf()
}

fn python_command() -> Command {
    let root = repository_root();
    let python = std::env::var_os("REGISTRAR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(
        python.exists(),
        "Python not found at {}; run scripts/install-test-tools.sh, which creates .venv with grpcio-tools",
        python.display()
    );

    let stubs = root.join("clients/python/generated/registrar/v1/registrar_pb2_grpc.py");
    assert!(
        stubs.exists(),
        "Python stubs not found at {}; run scripts/install-test-tools.sh, which generates them",
        stubs.display()
    );
    let proto = root.join("proto/registrar/v1/registrar.proto");
    assert!(
        modified(&stubs) >= modified(&proto),
        "the Python stubs in clients/python/generated are older than {}; run clients/python/generate.sh",
        proto.display()
    );

    let mut command = Command::new(python);
    command.arg(root.join("clients/python/register_service.py"));
    command
}

fn node_command() -> Command {
    let root = repository_root();
    let packages = root.join("clients/node/node_modules/@grpc/grpc-js");
    assert!(
        packages.is_dir(),
        "@grpc/grpc-js is not installed in clients/node; run scripts/install-test-tools.sh, which runs npm ci there"
    );
    let mut command = Command::new("node");
    command.arg(root.join("clients/node/register_service.mjs"));
    command
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .unwrap_or_else(|error| {
            panic!(
                "failed to read the modification time of {}: {error}",
                path.display()
            )
        })
}

/// Runs a command to completion within `RUN_TIMEOUT`.
async fn run(mut command: Command, name: &str) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|error| panic!("failed to start {name}: {error}"));
    let output = timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} did not finish within {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|error| panic!("{name} failed: {error}"));
    Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn run_example(example: Example, address: &str, service_name: &str) -> Output {
    let mut command = example.command();
    command.args([address, "--service-name", service_name]);
    run(command, &format!("the {example:?} example")).await
}

/// Returns the value of `key=value` on the output line that starts with
/// `step: `.
fn field<'a>(stdout: &'a str, step: &str, key: &str) -> &'a str {
    let prefix = format!("{step}: ");
    let line = stdout
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {step} line in the output:\n{stdout}"));
    line[prefix.len()..]
        .split(' ')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= on the {step} line: {line}"))
}

/// Runs an example twice against a fresh registrar and checks its output
/// and the emulator's apps, grants and tokens.
async fn check_example(example: Example, service_name: &str) {
    let env = TestEnv::start().await;
    let address = env.address.to_string();

    let first = run_example(example, &address, service_name).await;
    assert!(
        first.success,
        "{example:?} example failed: {}",
        first.stderr
    );
    let stdout = &first.stdout;
    let client_id = field(stdout, "RegisterService", "client_id").to_string();
    assert_eq!(field(stdout, "RegisterService", "created"), "true");
    assert_eq!(
        field(stdout, "RegisterService", "grants"),
        format!("{REGISTERED_SCOPE}:SCOPE_OUTCOME_GRANTED")
    );
    assert_eq!(
        field(stdout, "GrantScopes", "grants"),
        format!("{GRANTED_SCOPE}:SCOPE_OUTCOME_GRANTED")
    );
    assert_eq!(field(stdout, "GetAccessToken", "token_type"), "Bearer");
    // The order of the token's scopes is Okta's, so compare them sorted.
    let mut token_scopes: Vec<&str> = field(stdout, "GetAccessToken", "scopes")
        .split(',')
        .collect();
    token_scopes.sort_unstable();
    assert_eq!(token_scopes, [GRANTED_SCOPE, REGISTERED_SCOPE]);
    assert_eq!(field(stdout, "WatchRotations", "client_id"), client_id);
    let revision: u64 = field(stdout, "WatchRotations", "revision")
        .parse()
        .expect("revision is a number");
    assert!(revision >= 1, "revision {revision}");
    let signing_kid = field(stdout, "WatchRotations", "signing_kid");
    assert_eq!(
        field(stdout, "WatchRotations", "phase"),
        "ROTATION_PHASE_UNSPECIFIED"
    );

    let app = env
        .okta_app(&client_id)
        .unwrap_or_else(|| panic!("app {client_id} not in the emulator"));
    assert_eq!(app.label, service_name);
    assert_eq!(app.application_type, "service");
    assert_eq!(app.active_kids, [signing_kid]);
    assert_eq!(app.granted_scopes, [REGISTERED_SCOPE, GRANTED_SCOPE]);
    assert_eq!(env.emulator.issued_tokens(), 1);

    // The same scopes come from the registrar's cache, so this is the token
    // the example received, and the example must not have printed it whole.
    let token = env
        .new_client()
        .await
        .get_access_token(GetAccessTokenRequest {
            client_id: client_id.clone(),
            scopes: vec![REGISTERED_SCOPE.to_string(), GRANTED_SCOPE.to_string()],
            force_refresh: false,
        })
        .await
        .expect("GetAccessToken succeeds")
        .into_inner();
    assert!(token.cached, "the token is not the cached one");
    assert_eq!(
        field(stdout, "GetAccessToken", "length"),
        token.access_token.len().to_string()
    );
    assert!(
        !stdout.contains(&token.access_token),
        "the example printed the whole access token"
    );

    // A second run finds the app and the grants, and posts nothing to Okta.
    let grant_posts = env.count_requests("POST", "/grants");
    assert_eq!(grant_posts, 2);
    let second = run_example(example, &address, service_name).await;
    assert!(second.success, "second run failed: {}", second.stderr);
    let stdout = &second.stdout;
    assert_eq!(field(stdout, "RegisterService", "client_id"), client_id);
    assert_eq!(field(stdout, "RegisterService", "created"), "false");
    assert_eq!(
        field(stdout, "GrantScopes", "grants"),
        format!("{GRANTED_SCOPE}:SCOPE_OUTCOME_ALREADY_GRANTED")
    );
    assert_eq!(env.emulator.apps().len(), 1);
    assert_eq!(env.count_requests("POST", "/grants"), grant_posts);
    env.stop().await;
}

/// Runs an example against a loopback port that nothing listens on.
async fn check_unreachable(example: Example) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let address = listener.local_addr().expect("bound address").to_string();
    drop(listener);

    let output = run_example(example, &address, "unreachable-example").await;
    assert!(!output.success, "{example:?} example succeeded: {output:?}");
    assert!(
        output
            .stderr
            .contains("error: RegisterService failed: UNAVAILABLE"),
        "{}",
        output.stderr
    );
    assert_eq!(output.stdout, "");
}

#[tokio::test]
async fn python_example_registers_and_gets_token() {
    check_example(Example::Python, "python-example").await;
}

#[tokio::test]
async fn node_example_registers_and_gets_token() {
    check_example(Example::Node, "node-example").await;
}

/// Runs an example with `--token-file` against a registrar that accepts
/// only bearer tokens, and once without the file.
async fn check_bearer_token(example: Example) {
    const TOKEN: &str = "polyglot-example-token-0f9e8d7c6b5a49382716";
    let dir = tempfile::tempdir().expect("temporary directory");
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(
        &policy_path,
        "[[caller]]\nid = \"example\"\noperations = [\"*\"]\nscopes = [\"*\"]\n\
         client_name_prefixes = [\"\"]\n",
    )
    .expect("write policy");
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, format!("{TOKEN}\n")).expect("write token");
    let entry = registrar_server::auth::token_file_entry("example", TOKEN).expect("entry");
    let env = TestEnv::start_with(Options {
        auth: AuthConfig {
            bearer_tokens: Some(BearerTokens::parse(&entry).expect("valid token file")),
            insecure_no_auth: false,
            ..AuthConfig::insecure_loopback()
        },
        policies: Policies::load(&policy_path).expect("valid policy"),
        ..Options::default()
    })
    .await;
    let address = env.address.to_string();

    let mut command = example.command();
    command.args([&address, "--service-name", "token-example", "--token-file"]);
    command.arg(&token_path);
    let output = run(command, &format!("the {example:?} example")).await;
    assert!(output.success, "{example:?} example failed: {output:?}");
    assert!(!output.stdout.contains(TOKEN), "{}", output.stdout);
    let client_id = field(&output.stdout, "RegisterService", "client_id");
    assert!(env.okta_app(client_id).is_some(), "the app exists in Okta");

    let output = run_example(example, &address, "token-example").await;
    assert!(!output.success, "{example:?} example succeeded: {output:?}");
    assert!(
        output
            .stderr
            .contains("error: RegisterService failed: UNAUTHENTICATED"),
        "{}",
        output.stderr
    );
    env.stop().await;
}

#[tokio::test]
async fn examples_send_bearer_token() {
    check_bearer_token(Example::Python).await;
    check_bearer_token(Example::Node).await;
}

#[tokio::test]
async fn examples_fail_on_unreachable_registrar() {
    check_unreachable(Example::Python).await;
    check_unreachable(Example::Node).await;
}

#[tokio::test]
async fn buf_lint_passes() {
    let root = repository_root();
    let buf = root.join("clients/node/node_modules/.bin/buf");
    assert!(
        buf.exists(),
        "buf not found at {}; run scripts/install-test-tools.sh, which runs npm ci in clients/node",
        buf.display()
    );
    let mut command = Command::new(buf);
    command.arg("lint").current_dir(&root);
    let output = run(command, "buf lint").await;
    assert!(
        output.success,
        "buf lint found problems:\n{}{}",
        output.stdout, output.stderr
    );
    assert_eq!(output.stdout, "");
}
