//! Crash test of the real `registrar` binary: registrations and key
//! rotations run while the process is killed with SIGKILL at random
//! moments and restarted on the same data directory. Afterwards Okta (the
//! emulator) must hold one app per name with exactly the requested grants,
//! every key in Okta must have its private key in the store, and every
//! rotation must finish.
//!
//! `CRASH_TEST_SEED=N` repeats a run; the seed is printed at the start.

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_api::v1::{GenerateKey, KeyAlgorithm, RegisterServiceRequest, RotateKeyRequest};
use registrar_server::keyring::Keyring;
use registrar_server::keys::master::MasterKey;
use registrar_server::store::{KeyPurpose, Phase, Store};
use sqlx::Row;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::Code;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_registrar");
const API_TOKEN: &str = "crash-test-token-5d81e0";
/// 32 bytes of standard base64, the format REGISTRAR_MASTER_KEY takes.
const MASTER_KEY: &str = "Y3Jhc2gtdGVzdC1tYXN0ZXIta2V5LTAxMjM0NTY3ODk=";
/// Services registered while the registrar crashes.
const SERVICES: usize = 25;
/// Apps registered before the crashes, whose keys are rotated during them.
const ROTATED_APPS: usize = 10;
/// RotateKey calls during the crashes; later calls on an app find its
/// rotation running.
const ROTATE_CALLS: usize = 25;
/// Rounds of operations, each with one SIGKILL while they run.
const CRASHES: usize = 4;
/// The SIGKILL of a round comes at a random moment up to this many
/// milliseconds after its operations start. Without crashes, a round's
/// fifty operations take about 1.2 s (debug build, two cores, 50 ms per
/// Okta call).
const KILL_WINDOW_MILLIS: u64 = 1000;
/// The maximum time any phase of the test may take.
const PHASE_LIMIT: Duration = Duration::from_secs(60);

/// The two scopes that service number `index` requests.
fn scopes_of(index: usize) -> Vec<String> {
    let all = [
        "okta.users.read",
        "okta.apps.read",
        "okta.groups.read",
        "okta.logs.read",
    ];
    vec![all[index % 4].to_string(), all[(index + 1) % 4].to_string()]
}

fn register_request(name: &str, scopes: Vec<String>) -> RegisterServiceRequest {
    RegisterServiceRequest {
        service_name: name.to_string(),
        scope_ids: scopes,
        // P-256 keys are generated in microseconds; RSA would dominate the
        // test's time on two cores.
        key: Some(GenerateKey {
            algorithm: KeyAlgorithm::Es256 as i32,
        }),
        dpop_bound: false,
    }
}

/// A running `registrar serve` and the task that collects its log.
struct Registrar {
    child: Child,
    log: tokio::task::JoinHandle<String>,
}

/// Starts the binary on `data_dir` and returns it with its gRPC address.
async fn start_registrar(org_url: &str, data_dir: &std::path::Path) -> (Registrar, String) {
    let mut child = Command::new(REGISTRAR)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-no-auth",
            "--okta-rate-share",
            "1",
            "--rotation-propagation-secs",
            "1",
            "--assertion-lifetime-secs",
            "30",
            // The shortest grace period accepted: the assertion lifetime
            // plus 120 s of clock skew.
            "--rotation-grace-secs",
            "150",
        ])
        .env("OKTA_ORG_URL", org_url)
        .env("OKTA_API_TOKEN", API_TOKEN)
        .env("REGISTRAR_DATA_DIR", data_dir)
        .env("REGISTRAR_MASTER_KEY", MASTER_KEY)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("registrar starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (address_tx, address_rx) = tokio::sync::oneshot::channel();
    let log = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut log = String::new();
        let mut address_tx = Some(address_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("registrar serving")
                && let Some(rest) = line.split("address=").nth(1)
                && let Some(sender) = address_tx.take()
            {
                let address = rest.split_whitespace().next().unwrap_or_default();
                let _ = sender.send(address.to_string());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let address = tokio::time::timeout(Duration::from_secs(30), address_rx)
        .await
        .expect("registrar serves within 30 s")
        .expect("registrar exited before serving");
    (Registrar { child, log }, address)
}

impl Registrar {
    /// Kills the process with SIGKILL and returns its log.
    async fn kill(mut self) -> String {
        self.child.start_kill().expect("SIGKILL sent");
        self.child.wait().await.expect("killed registrar reaped");
        self.log.await.expect("log reader")
    }

    /// Stops the process with SIGTERM and returns its log.
    async fn stop(mut self) -> String {
        let pid = self.child.id().expect("running").to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success());
        let exited = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("registrar stops within 30 s")
            .expect("wait");
        let log = self.log.await.expect("log reader");
        assert!(exited.success(), "exit status {exited}");
        log
    }
}

/// One call that callers repeat until it succeeds, whichever registrar
/// process is serving.
#[derive(Debug, Clone)]
enum Operation {
    Register { name: String, scopes: Vec<String> },
    Rotate { client_id: String },
}

/// Runs `operation` against the current registrar until it completes,
/// reconnecting after every failure, and returns the registered client id
/// (empty for a rotation).
async fn run_operation(operation: Operation, address: watch::Receiver<String>) -> String {
    let deadline = Instant::now() + PHASE_LIMIT * 2;
    let mut last_error = String::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "{operation:?} did not complete; last error: {last_error}"
        );
        let endpoint = format!("http://{}", address.borrow().clone());
        let attempt = async {
            let mut client = RegistrarClient::connect(endpoint)
                .await
                .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
            match &operation {
                Operation::Register { name, scopes } => client
                    .register_service(register_request(name, scopes.clone()))
                    .await
                    .map(|response| {
                        let app = response.into_inner().app.expect("app");
                        app.client_id
                    }),
                Operation::Rotate { client_id } => client
                    .rotate_key(RotateKeyRequest {
                        client_id: client_id.clone(),
                    })
                    .await
                    .map(|_| String::new()),
            }
        };
        match tokio::time::timeout(Duration::from_secs(20), attempt).await {
            Ok(Ok(client_id)) => return client_id,
            // Another call's rotation of this app is running: the goal,
            // a rotation, is reached.
            Ok(Err(status))
                if matches!(operation, Operation::Rotate { .. })
                    && status.code() == Code::FailedPrecondition =>
            {
                return String::new();
            }
            Ok(Err(status))
                if matches!(
                    status.code(),
                    Code::AlreadyExists | Code::InvalidArgument | Code::NotFound
                ) =>
            {
                panic!("{operation:?} failed for good: {status:?}");
            }
            Ok(Err(status)) => last_error = format!("{status:?}"),
            Err(_) => last_error = "timed out after 20 s".into(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that every key Okta holds for an app has its private key in the
/// store, decryptable with the master key. Runs while no registrar runs.
async fn assert_okta_keys_held(emulator: &okta_emulator::Emulator, database: &str) {
    let pool = sqlx::SqlitePool::connect(&format!("{database}?mode=ro"))
        .await
        .expect("store opens read-only");
    let master = MasterKey::from_base64(MASTER_KEY, "test").expect("master key");
    for app in emulator.apps() {
        for kid in &app.kids {
            let rows = sqlx::query("SELECT key_id, sealed FROM private_keys WHERE kid = ?")
                .bind(kid)
                .fetch_all(&pool)
                .await
                .expect("query private keys");
            let held = rows.iter().any(|row| {
                let key_id: String = row.get("key_id");
                let sealed: Vec<u8> = row.get("sealed");
                master.decrypt(&sealed, key_id.as_bytes()).is_ok()
            });
            assert!(
                held,
                "key {kid} of {} is in Okta without its private key",
                app.label
            );
        }
    }
    pool.close().await;
}

/// Waits until every running rotation has switched to its new key.
async fn wait_for_switches(database: &str) {
    let store = Store::open(database).await.expect("store");
    let deadline = Instant::now() + PHASE_LIMIT;
    loop {
        let rotations = store.rotations().await.expect("rotations");
        if rotations
            .iter()
            .all(|rotation| rotation.phase == Phase::Switched)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rotations did not switch: {rotations:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_lose_no_app_grant_or_key() {
    let started = Instant::now();
    let seed = std::env::var("CRASH_TEST_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("crash test seed: {seed} (repeat with CRASH_TEST_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let mut config = okta_emulator::Config::new(API_TOKEN);
    // Generous budgets, so that pacing never waits for a new window.
    config.rate_limits.apps = 100_000;
    config.rate_limits.app_by_id = 100_000;
    config.rate_limits.clients = 100_000;
    config.rate_limits.other = 100_000;
    let emulator = okta_emulator::Emulator::new(config);
    // Every Okta call takes a while, as Okta's do, so that calls are in
    // flight when the registrar is killed.
    emulator
        .add_fault(okta_emulator::Fault::with_probability(
            okta_emulator::FaultEndpoint::Any,
            okta_emulator::FaultKind::Latency { millis: 50 },
            1.0,
        ))
        .expect("latency fault");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let org_url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn({
        let emulator = emulator.clone();
        async move { emulator.serve(listener, std::future::pending()).await }
    });
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let database = format!("sqlite://{}/registrar.db", data_dir.path().display());

    // The apps whose keys are rotated, registered before any crash.
    let (mut registrar, address) = start_registrar(&org_url, data_dir.path()).await;
    let (address_tx, address_rx) = watch::channel(address);
    let mut rotated = Vec::new();
    for index in 0..ROTATED_APPS {
        let name = format!("rotated-app-{index:02}");
        let operation = Operation::Register {
            name,
            scopes: vec!["okta.users.read".into()],
        };
        rotated.push(run_operation(operation, address_rx.clone()).await);
    }

    let original_kids: HashMap<String, Vec<String>> = emulator
        .apps()
        .into_iter()
        .map(|app| (app.id, app.kids))
        .collect();

    // Each round starts fifty callers at once, each repeating its call
    // until it succeeds, and kills the registrar while they run. The
    // rotations of a round are of apps registered before it.
    let mut logs = Vec::new();
    let mut client_ids: HashMap<String, String> = HashMap::new();
    let mut to_rotate = rotated.clone();
    for round in 0..CRASHES {
        let mut operations: Vec<Operation> = (0..SERVICES)
            .map(|index| Operation::Register {
                name: format!("crash-service-{round}-{index:02}"),
                scopes: scopes_of(index),
            })
            .collect();
        operations.extend((0..ROTATE_CALLS).map(|index| Operation::Rotate {
            client_id: to_rotate[index % to_rotate.len()].clone(),
        }));
        let tasks: Vec<_> = operations
            .iter()
            .cloned()
            .map(|operation| tokio::spawn(run_operation(operation, address_rx.clone())))
            .collect();

        let delay = Duration::from_millis(rng.random_range(0..KILL_WINDOW_MILLIS));
        tokio::time::sleep(delay).await;
        logs.push(registrar.kill().await);
        let finished = tasks.iter().filter(|task| task.is_finished()).count();
        println!("round {round}: SIGKILL after {delay:?}, {finished} of 50 operations complete");
        assert_okta_keys_held(&emulator, &database).await;
        let (restarted, address) = start_registrar(&org_url, data_dir.path()).await;
        registrar = restarted;
        address_tx.send_replace(address);

        to_rotate.clear();
        for (operation, task) in operations.iter().zip(tasks) {
            let client_id = tokio::time::timeout(PHASE_LIMIT, task)
                .await
                .expect("operations complete")
                .expect("operation task");
            if let Operation::Register { name, .. } = operation {
                client_ids.insert(name.clone(), client_id.clone());
                to_rotate.push(client_id);
            }
        }
    }
    println!("operations complete after {:?}", started.elapsed());
    wait_for_switches(&database).await;

    // The old keys wait out the 150 s grace period. Moving their removal
    // forward in the store replaces that wait, and one more crash then
    // hits the removals.
    logs.push(registrar.kill().await);
    assert_okta_keys_held(&emulator, &database).await;
    {
        let pool = sqlx::SqlitePool::connect(&database)
            .await
            .expect("store opens");
        sqlx::query("UPDATE rotations SET next_step_at = 0 WHERE phase = 'switched'")
            .execute(&pool)
            .await
            .expect("move the removals forward");
        pool.close().await;
    }
    let (restarted, _) = start_registrar(&org_url, data_dir.path()).await;
    let delay = Duration::from_millis(rng.random_range(0..300));
    tokio::time::sleep(delay).await;
    logs.push(restarted.kill().await);
    println!("crash during removals: SIGKILL after {delay:?}");
    assert_okta_keys_held(&emulator, &database).await;
    let (registrar, _) = start_registrar(&org_url, data_dir.path()).await;
    let store = Store::open(&database).await.expect("store");
    let deadline = Instant::now() + PHASE_LIMIT;
    while !store.rotations().await.expect("rotations").is_empty() {
        assert!(Instant::now() < deadline, "rotations did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(store);
    logs.push(registrar.stop().await);

    // One app per name, with exactly the requested grants.
    let apps = emulator.apps();
    let labels: Vec<_> = apps.iter().map(|app| app.label.clone()).collect();
    let unique: BTreeSet<_> = labels.iter().collect();
    assert_eq!(
        unique.len(),
        labels.len(),
        "duplicate app names: {labels:?}"
    );
    assert_eq!(apps.len(), CRASHES * SERVICES + ROTATED_APPS);
    for app in &apps {
        let mut expected = match app.label.strip_prefix("crash-service-") {
            Some(suffix) => {
                let index = suffix.split('-').nth(1).expect("round-index suffix");
                scopes_of(index.parse().expect("service number"))
            }
            None => vec!["okta.users.read".to_string()],
        };
        expected.sort();
        let mut granted = app.granted_scopes.clone();
        granted.sort();
        assert_eq!(granted, expected, "grants of {}", app.label);
        if let Some(client_id) = client_ids.get(&app.label) {
            assert_eq!(
                client_id, &app.id,
                "{} was returned as another app",
                app.label
            );
        }
    }

    // Every key in Okta is held, and each app is left with its one active
    // key after the rotations.
    assert_okta_keys_held(&emulator, &database).await;
    let store = Store::open(&database).await.expect("store");
    let master = MasterKey::from_base64(MASTER_KEY, "test").expect("master key");
    let keyring = Keyring::new(master, store.clone());
    for app in &apps {
        let record = store
            .app_by_name(&app.label)
            .await
            .expect("read")
            .unwrap_or_else(|| panic!("{} is not in the store", app.label));
        assert_eq!(record.client_id, app.id, "{}", app.label);
        let active = keyring
            .active(&app.id, KeyPurpose::Assertion)
            .await
            .expect("keyring")
            .unwrap_or_else(|| panic!("{} has no active key", app.label));
        assert_eq!(
            app.kids,
            vec![active.kid().to_string()],
            "keys of {}",
            app.label
        );
    }
    for client_id in &rotated {
        let app = apps.iter().find(|app| &app.id == client_id).expect("app");
        assert_ne!(
            Some(&app.kids),
            original_kids.get(client_id),
            "the key of {} was not rotated",
            app.label
        );
    }
    assert!(store.rotations().await.expect("rotations").is_empty());
    assert!(
        store.pending_intents().await.expect("intents").is_empty(),
        "intents stay pending after a clean run"
    );

    let reconciled = logs
        .iter()
        .flat_map(|log| log.lines())
        .filter(|line| line.contains("intent reconciled"))
        .count();
    println!(
        "{reconciled} intents reconciled; test took {:?}",
        started.elapsed()
    );
    for log in &logs {
        assert!(!log.contains("panicked"), "the registrar panicked:\n{log}");
    }
}
