//! Test of the real `registrar` binary run as three replicas on one
//! PostgreSQL database. Key rotations are started through replicas that do
//! not lead, and the leader, which runs the rotation steps, is killed with
//! SIGKILL while they are under way. Another replica must take the leader
//! lock and finish every rotation. Right after the kill and at the end,
//! every key in Okta (the emulator) must have its private key in the store,
//! and at the end watchers on the surviving replicas must see the final key
//! state.
//!
//! The test needs PostgreSQL; see `registrar_server::store::testing` for
//! the server it connects to. It fails when PostgreSQL cannot be reached.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use registrar_api::v1::registrar_client::RegistrarClient;
use registrar_api::v1::{
    GenerateKey, KeyAlgorithm, RegisterServiceRequest, RotateKeyRequest, RotationPhase,
    WatchRotationsRequest, WatchRotationsResponse,
};
use registrar_server::keyring::Keyring;
use registrar_server::keys::master::MasterKey;
use registrar_server::store::testing::TestDatabase;
use registrar_server::store::{KeyPurpose, Store};
use sqlx::{PgPool, Row};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tonic::Streaming;
use tonic::transport::Channel;

const REGISTRAR: &str = env!("CARGO_BIN_EXE_registrar");
const API_TOKEN: &str = "replicas-test-token-2c94e1";
/// 32 bytes of standard base64, the format REGISTRAR_MASTER_KEY takes.
const MASTER_KEY: &str = "cmVwbGljYXMtdGVzdC1tYXN0ZXIta2V5LTAxMjM0NTY=";
/// The number of `registrar serve` processes sharing the database.
const REPLICAS: usize = 3;
/// The number of services registered and then rotated.
const SERVICES: usize = 5;
/// The number of rotations that switch signing before the later ones
/// start and the leader is killed.
const SWITCHED_BEFORE_KILL: usize = 2;
/// The maximum time from the leader's SIGKILL until another replica holds
/// the leader lock. Replicas retry the lock every 2 s.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(10);
/// The maximum time any other step of the test may take.
const STEP_LIMIT: Duration = Duration::from_secs(30);
/// The pause between two checks of the database.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A running `registrar serve`, its gRPC address, and the task that
/// collects its log.
struct Replica {
    child: Child,
    address: String,
    log: tokio::task::JoinHandle<String>,
}

impl Replica {
    /// Starts replica `index` on `database_url` and waits until it serves.
    /// Each log line is also written to the test's stderr, which the test
    /// harness shows when the test fails.
    async fn start(
        index: usize,
        org_url: &str,
        database_url: &str,
        data_dir: &std::path::Path,
    ) -> Self {
        let mut child = Command::new(REGISTRAR)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--insecure-no-auth",
                "--database-url",
                database_url,
                "--okta-rate-share",
                "1",
                "--rotation-propagation-secs",
                "2",
                "--assertion-lifetime-secs",
                "30",
                // The shortest grace period accepted: the assertion lifetime
                // plus 120 s of clock skew. The test moves the removal of
                // old keys forward in the database instead of waiting.
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
                eprintln!("replica {index}: {line}");
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
        let address = tokio::time::timeout(STEP_LIMIT, address_rx)
            .await
            .unwrap_or_else(|_| panic!("replica {index} did not serve within {STEP_LIMIT:?}"))
            .unwrap_or_else(|_| panic!("replica {index} exited before serving"));
        Self {
            child,
            address,
            log,
        }
    }

    async fn client(&self) -> RegistrarClient<Channel> {
        let endpoint = format!("http://{}", self.address);
        within(
            STEP_LIMIT,
            "connecting to a replica",
            RegistrarClient::connect(endpoint),
        )
        .await
        .unwrap_or_else(|error| panic!("failed to connect to {}: {error}", self.address))
    }

    /// Kills the process with SIGKILL and returns its log.
    async fn kill(mut self) -> String {
        self.child.start_kill().expect("SIGKILL sent");
        within(STEP_LIMIT, "reaping the killed replica", self.child.wait())
            .await
            .expect("killed replica reaped");
        within(STEP_LIMIT, "the end of the killed replica's log", self.log)
            .await
            .expect("log reader")
    }

    /// Stops the process with SIGTERM, checks that it exits with status 0,
    /// and returns its log.
    async fn stop(mut self) -> String {
        let pid = self.child.id().expect("running").to_string();
        let status = within(
            STEP_LIMIT,
            "sending SIGTERM",
            Command::new("kill").args(["-TERM", &pid]).status(),
        )
        .await
        .expect("kill runs");
        assert!(status.success(), "kill -TERM {pid} failed: {status}");
        let exited = within(
            STEP_LIMIT,
            "a replica to stop after SIGTERM",
            self.child.wait(),
        )
        .await
        .expect("wait");
        let log = within(STEP_LIMIT, "the end of a stopped replica's log", self.log)
            .await
            .expect("log reader");
        assert!(
            exited.success(),
            "replica {} exited with {exited} after SIGTERM",
            self.address
        );
        log
    }
}

/// Awaits `future`, panicking with `description` when it takes longer than
/// `limit`.
async fn within<T>(limit: Duration, description: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {description}"))
}

/// Calls `check` every [`POLL_INTERVAL`] until it returns `Some`, for at
/// most `limit`.
async fn poll<T>(
    limit: Duration,
    description: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {description}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Returns the listen address of the replica that holds the leader lock,
/// from the `application_name` (`registrar leader ADDRESS`) of its lock
/// session. A replica takes that name only once it holds the lock, so at
/// most one session carries it.
async fn leader_address(pool: &PgPool) -> Option<String> {
    let rows = sqlx::query(
        "SELECT application_name FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name LIKE 'registrar leader %'",
    )
    .fetch_all(pool)
    .await
    .expect("query pg_stat_activity");
    assert!(
        rows.len() <= 1,
        "{} sessions hold the leader lock",
        rows.len()
    );
    rows.first().map(|row| {
        let name: String = row.get("application_name");
        name.trim_start_matches("registrar leader ").to_string()
    })
}

/// Waits until a running replica holds the leader lock and returns its
/// index.
async fn wait_for_leader(pool: &PgPool, replicas: &[Option<Replica>], limit: Duration) -> usize {
    poll(
        limit,
        "a running replica to hold the leader lock",
        async || {
            let address = leader_address(pool).await?;
            replicas.iter().position(|replica| {
                replica
                    .as_ref()
                    .is_some_and(|replica| replica.address == address)
            })
        },
    )
    .await
}

/// Returns the phase of every running rotation by client id.
async fn rotation_phases(pool: &PgPool) -> HashMap<String, String> {
    sqlx::query("SELECT client_id, phase FROM rotations")
        .fetch_all(pool)
        .await
        .expect("query rotations")
        .iter()
        .map(|row| (row.get("client_id"), row.get("phase")))
        .collect()
}

/// Checks that every key Okta contains for the apps has its private key in
/// the store, decryptable with the master key.
async fn assert_private_keys_stored(
    emulator: &okta_emulator::Emulator,
    pool: &PgPool,
    client_ids: &[String],
) {
    let master = MasterKey::from_base64(MASTER_KEY, "test").expect("master key");
    for app in emulator.apps() {
        if !client_ids.contains(&app.id) {
            continue;
        }
        for kid in &app.kids {
            let rows = sqlx::query("SELECT key_id, sealed FROM private_keys WHERE kid = $1")
                .bind(kid)
                .fetch_all(pool)
                .await
                .expect("query private keys");
            let stored = rows.iter().any(|row| {
                let key_id: String = row.get("key_id");
                let sealed: Vec<u8> = row.get("sealed");
                master.decrypt(&sealed, key_id.as_bytes()).is_ok()
            });
            assert!(
                stored,
                "key {kid} of {} is in Okta without its private key",
                app.label
            );
        }
    }
}

/// Reads `stream` until every app in it has only its new key, signs with
/// it and has no rotation running. Checks that revisions increase.
async fn read_until_final(
    replica: usize,
    stream: &mut Streaming<WatchRotationsResponse>,
    new_kids: &HashMap<String, String>,
) {
    let description = format!("the watch on replica {replica} to show the finished rotations");
    within(STEP_LIMIT, &description, async {
        let mut last_revision = None;
        loop {
            let message = stream
                .message()
                .await
                .unwrap_or_else(|status| panic!("watch on replica {replica} failed: {status}"))
                .unwrap_or_else(|| panic!("replica {replica} ended the watch"));
            if let Some(last) = last_revision {
                assert!(
                    message.revision > last,
                    "replica {replica} sent revision {} after {last}",
                    message.revision
                );
            }
            last_revision = Some(message.revision);
            let finished = message.apps.iter().all(|app| {
                let new_kid = &new_kids[&app.client_id];
                app.keys.len() == 1
                    && &app.keys[0].kid == new_kid
                    && &app.signing_kid == new_kid
                    && app.phase == RotationPhase::Unspecified as i32
            });
            if finished {
                assert_eq!(
                    message.apps.len(),
                    new_kids.len(),
                    "apps watched on replica {replica}"
                );
                return;
            }
        }
    })
    .await;
}

/// Starts a rotation of `client_id` through `client` and returns the kid of
/// the new key.
async fn rotate_key(
    client: &mut RegistrarClient<Channel>,
    replica: usize,
    client_id: &str,
    old_kid: &str,
) -> String {
    let request = RotateKeyRequest {
        client_id: client_id.to_string(),
    };
    let state = within(STEP_LIMIT, "RotateKey", client.rotate_key(request))
        .await
        .unwrap_or_else(|status| panic!("RotateKey of {client_id} on replica {replica}: {status}"))
        .into_inner()
        .state
        .expect("state");
    state
        .keys
        .iter()
        .map(|key| key.kid.clone())
        .find(|kid| kid != old_kid)
        .unwrap_or_else(|| panic!("the rotation of {client_id} added no key"))
}

fn register_request(name: &str) -> RegisterServiceRequest {
    RegisterServiceRequest {
        service_name: name.to_string(),
        scope_ids: vec!["okta.users.read".into()],
        // P-256 keys are generated in microseconds; RSA would dominate the
        // test's time.
        key: Some(GenerateKey {
            algorithm: KeyAlgorithm::Es256 as i32,
        }),
        dpop_bound: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_rotation_hands_over() {
    let started = Instant::now();
    let database = TestDatabase::create().await;

    let mut config = okta_emulator::Config::new(API_TOKEN);
    // Generous budgets, so that pacing never waits for a new window.
    config.rate_limits.apps = 100_000;
    config.rate_limits.app_by_id = 100_000;
    config.rate_limits.clients = 100_000;
    config.rate_limits.other = 100_000;
    let emulator = okta_emulator::Emulator::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let org_url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn({
        let emulator = emulator.clone();
        async move { emulator.serve(listener, std::future::pending()).await }
    });
    let data_dir = tempfile::tempdir().expect("temporary directory");

    // One replica at a time, so that the first applies the migrations
    // before the others start.
    let mut replicas = Vec::new();
    let mut clients = Vec::new();
    for index in 0..REPLICAS {
        let replica = Replica::start(index, &org_url, database.url(), data_dir.path()).await;
        clients.push(replica.client().await);
        replicas.push(Some(replica));
    }
    let pool = PgPool::connect(database.url())
        .await
        .unwrap_or_else(|error| panic!("failed to connect to {}: {error}", database.name()));
    let leader = wait_for_leader(&pool, &replicas, STEP_LIMIT).await;
    let followers: Vec<usize> = (0..REPLICAS).filter(|&index| index != leader).collect();
    println!("replica {leader} leads after {:?}", started.elapsed());

    // Registrations through every replica in turn.
    let mut client_ids = Vec::new();
    for index in 0..SERVICES {
        let replica = index % REPLICAS;
        let response = within(
            STEP_LIMIT,
            "RegisterService",
            clients[replica].register_service(register_request(&format!("replicated-{index}"))),
        )
        .await
        .unwrap_or_else(|status| panic!("RegisterService on replica {replica}: {status}"));
        let app = response.into_inner().app.expect("app");
        client_ids.push(app.client_id);
    }
    let old_kids: HashMap<String, String> = emulator
        .apps()
        .into_iter()
        .filter(|app| client_ids.contains(&app.id))
        .map(|app| {
            assert_eq!(
                app.kids.len(),
                1,
                "keys of {} after registration",
                app.label
            );
            (app.id, app.kids[0].clone())
        })
        .collect();
    assert_eq!(old_kids.len(), SERVICES, "apps in Okta");

    // Watches on the replicas that survive, opened before the kill. The
    // first message of each, sent at once, contains the current state.
    let mut watches = Vec::new();
    for &replica in &followers {
        let request = WatchRotationsRequest {
            client_ids: client_ids.clone(),
            include_private_keys: false,
        };
        let mut stream = within(
            STEP_LIMIT,
            "WatchRotations",
            clients[replica].watch_rotations(request),
        )
        .await
        .unwrap_or_else(|status| panic!("WatchRotations on replica {replica}: {status}"))
        .into_inner();
        within(STEP_LIMIT, "the first watch message", stream.message())
            .await
            .unwrap_or_else(|status| panic!("watch on replica {replica} failed: {status}"))
            .unwrap_or_else(|| panic!("replica {replica} ended the watch"));
        watches.push((replica, stream));
    }

    // RotateKey through the replicas that do not lead. Each call returns
    // once the new key is in Okta, and the leader runs the later steps. The
    // first rotations are left to switch signing before the others start,
    // so that the kill finds rotations in both phases that the leader
    // drives: `switched` (old key waiting for removal) and `added` (new key
    // waiting for the switch).
    let (switched_first, added_last) = client_ids.split_at(SWITCHED_BEFORE_KILL);
    let mut new_kids = HashMap::new();
    for (position, client_id) in client_ids.iter().enumerate() {
        if position == switched_first.len() {
            poll(
                STEP_LIMIT,
                "the first rotations to switch signing",
                async || {
                    let phases = rotation_phases(&pool).await;
                    let switched = switched_first.iter().all(|client_id| {
                        phases.get(client_id).map(String::as_str) == Some("switched")
                    });
                    switched.then_some(())
                },
            )
            .await;
        }
        let replica = followers[position % followers.len()];
        let new_kid = rotate_key(
            &mut clients[replica],
            replica,
            client_id,
            &old_kids[client_id],
        )
        .await;
        new_kids.insert(client_id.clone(), new_kid);
    }

    let phases = poll(
        STEP_LIMIT,
        "every rotation to reach phase added or switched",
        async || {
            let phases = rotation_phases(&pool).await;
            let ready = phases.len() == SERVICES
                && phases
                    .values()
                    .all(|phase| phase == "added" || phase == "switched");
            ready.then_some(phases)
        },
    )
    .await;
    // NOTE: the last rotations switch 2 s after they start, so on a slow
    // machine they may be `switched` as well at the kill. The printed
    // phases show which steps the new leader took over.
    let still_added = added_last
        .iter()
        .filter(|client_id| phases[*client_id] == "added")
        .count();
    let mut phase_list: Vec<&String> = phases.values().collect();
    phase_list.sort();
    let killed = replicas[leader].take().expect("the leader runs");
    let leader_log = killed.kill().await;
    let killed_at = Instant::now();
    println!(
        "SIGKILL of leader replica {leader} with rotations in phases {phase_list:?} \
         ({still_added} of {} started last still in added)",
        added_last.len()
    );
    assert_private_keys_stored(&emulator, &pool, &client_ids).await;

    let successor = wait_for_leader(&pool, &replicas, TAKEOVER_LIMIT).await;
    assert_ne!(successor, leader, "the killed replica still leads");
    println!(
        "replica {successor} leads {:?} after the kill",
        killed_at.elapsed()
    );

    // The new leader switches signing after the propagation delay. The old
    // keys then wait out the 150 s grace period, which the test replaces by
    // moving their removal forward. The update's trigger sends the NOTIFY
    // that wakes the leader.
    poll(STEP_LIMIT, "the new leader to finish every rotation", async || {
        sqlx::query("UPDATE rotations SET next_step_at = 0 WHERE phase = 'switched' AND next_step_at > 0")
            .execute(&pool)
            .await
            .expect("move the removals of old keys forward");
        rotation_phases(&pool).await.is_empty().then_some(())
    })
    .await;
    println!(
        "every rotation finished {:?} after the kill",
        killed_at.elapsed()
    );

    for (replica, stream) in &mut watches {
        read_until_final(*replica, stream, &new_kids).await;
    }
    drop(watches);

    // Okta contains only the new keys, the store contains their private
    // keys, and the registrar signs with them.
    assert_private_keys_stored(&emulator, &pool, &client_ids).await;
    let okta_apps: HashMap<String, okta_emulator::AppSnapshot> = emulator
        .apps()
        .into_iter()
        .map(|app| (app.id.clone(), app))
        .collect();
    let store = Store::open(database.url()).await.expect("store opens");
    let master = MasterKey::from_base64(MASTER_KEY, "test").expect("master key");
    let keyring = Keyring::new(master, store.clone());
    for client_id in &client_ids {
        let new_kid = &new_kids[client_id];
        let app = &okta_apps[client_id];
        assert_eq!(
            &app.kids,
            std::slice::from_ref(new_kid),
            "keys of {} in Okta",
            app.label
        );
        assert_eq!(
            &app.active_kids,
            std::slice::from_ref(new_kid),
            "active keys of {} in Okta",
            app.label
        );
        let active = keyring
            .active(client_id, KeyPurpose::Assertion)
            .await
            .expect("keyring")
            .unwrap_or_else(|| panic!("{} has no active key", app.label));
        assert_eq!(active.kid(), new_kid, "signing key of {}", app.label);
        let old_status: String = sqlx::query("SELECT status FROM private_keys WHERE kid = $1")
            .bind(&old_kids[client_id])
            .fetch_one(&pool)
            .await
            .expect("query the old private key")
            .get("status");
        assert_eq!(
            old_status, "retired",
            "status of the old key of {}",
            app.label
        );
    }
    drop(keyring);
    drop(store);
    pool.close().await;

    drop(clients);
    let mut logs = vec![leader_log];
    for replica in replicas.into_iter().flatten() {
        logs.push(replica.stop().await);
    }
    for log in &logs {
        assert!(!log.contains("panicked"), "a replica panicked:\n{log}");
    }
    println!("test took {:?}", started.elapsed());
}
