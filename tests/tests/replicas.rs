//! Several registrars ("replicas") sharing one PostgreSQL database: racing
//! registrations, rotations seen on every replica, a leader that dies
//! mid-rotation, and a database outage.
//!
//! Every test creates a database of its own on the PostgreSQL server of
//! `registrar_server::store::testing::admin_url` and fails when it cannot.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use okta_emulator::{Fault, FaultEndpoint, FaultKind, RateLimits};
use registrar_api::v1::{
    GenerateKey, KeyAlgorithm, RegisterServiceRequest, RotateKeyRequest, RotationPhase,
    ScopeOutcome, WatchRotationsRequest, WatchRotationsResponse,
};
use registrar_sdk::Client;
use registrar_server::store::testing::TestDatabase;
use registrar_tests::cluster::Cluster;
use registrar_tests::proxy::Proxy;
use registrar_tests::{Options, TestEnv};
use sqlx::{PgPool, Row};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Streaming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How long a test waits for one step that must happen.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a test polls the database or the health service.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The gRPC name of the registrar service in the health service.
const REGISTRAR_SERVICE: &str = "registrar.v1.Registrar";

/// Options for a registrar on `database_url`. The emulator's budgets are
/// raised because every replica paces itself as if it were Okta's only
/// client, so that three together would overrun the default budgets.
fn options_on(database_url: &str) -> Options {
    Options {
        database_url: Some(database_url.to_string()),
        emulator: okta_emulator::Config {
            rate_limits: RateLimits {
                apps: 100_000,
                app_by_id: 100_000,
                clients: 100_000,
                token: 100_000,
                other: 100_000,
                ..RateLimits::default()
            },
            ..okta_emulator::Config::new(registrar_tests::API_TOKEN)
        },
        ..Options::default()
    }
}

/// Awaits `future`, or panics with `description` once `limit` has passed.
async fn within<T>(limit: Duration, description: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {description}"))
}

/// Calls `check` every [`POLL_INTERVAL`] until it returns `Some`, and panics
/// with `description` when that takes longer than `limit`.
async fn poll<T, F, Fut>(limit: Duration, description: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(limit, description, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await
}

async fn connect_database(database: &TestDatabase) -> PgPool {
    PgPool::connect(database.url())
        .await
        .unwrap_or_else(|error| panic!("failed to connect to {}: {error}", database.name()))
}

/// Returns the listen addresses in the `application_name` of the sessions
/// that hold the leader lock on this database.
async fn leaders(pool: &PgPool) -> Vec<String> {
    sqlx::query(
        "SELECT application_name FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name LIKE 'registrar leader %'",
    )
    .fetch_all(pool)
    .await
    .expect("query pg_stat_activity")
    .iter()
    .map(|row| {
        let name: String = row.get("application_name");
        name.trim_start_matches("registrar leader ").to_string()
    })
    .collect()
}

/// Waits until exactly one running replica of `cluster` leads, and returns
/// its index.
async fn wait_for_leader(cluster: &Cluster, pool: &PgPool) -> usize {
    let running = cluster.running();
    poll(
        STEP_TIMEOUT,
        "exactly one running replica to lead",
        || async {
            let leaders = leaders(pool).await;
            match leaders.as_slice() {
                [address] => cluster
                    .index_of(address)
                    .filter(|index| running.contains(index)),
                _ => None,
            }
        },
    )
    .await
}

/// Returns the phase of the app's running rotation, or `None` when no
/// rotation runs.
async fn rotation_phase(pool: &PgPool, client_id: &str) -> Option<String> {
    sqlx::query("SELECT phase FROM rotations WHERE client_id = $1")
        .bind(client_id)
        .fetch_optional(pool)
        .await
        .expect("query rotations")
        .map(|row| row.get("phase"))
}

/// Registers `name` with an ES256 key, which is faster to generate than
/// RSA, and returns the client id.
async fn register(cluster: &Cluster, replica: usize, name: &str) -> String {
    cluster
        .client(replica)
        .register_service(registration(name))
        .await
        .expect("register")
        .into_inner()
        .app
        .expect("app")
        .client_id
}

async fn watch(
    cluster: &Cluster,
    replica: usize,
    client_id: &str,
) -> Streaming<WatchRotationsResponse> {
    cluster
        .new_client(replica)
        .await
        .watch_rotations(WatchRotationsRequest {
            client_ids: vec![client_id.to_string()],
            include_private_keys: false,
        })
        .await
        .unwrap_or_else(|status| panic!("watch on replica {replica}: {status}"))
        .into_inner()
}

/// An app's key state as one watch message shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenState {
    kids: Vec<String>,
    signing_kid: String,
    phase: i32,
}

impl SeenState {
    fn of(message: &WatchRotationsResponse) -> Self {
        let app = &message.apps[0];
        Self {
            kids: app.keys.iter().map(|key| key.kid.clone()).collect(),
            signing_kid: app.signing_kid.clone(),
            phase: app.phase,
        }
    }

    fn is_final(&self, new_kid: &str) -> bool {
        self.phase == RotationPhase::Unspecified as i32 && self.kids == [new_kid]
    }
}

/// Reads `stream` until it shows the app with only `new_kid` and no
/// rotation running, checking that revisions only increase. Returns the
/// state seen at each revision.
async fn until_final(
    replica: usize,
    stream: &mut Streaming<WatchRotationsResponse>,
    new_kid: &str,
    mut seen: BTreeMap<u64, SeenState>,
) -> BTreeMap<u64, SeenState> {
    let description = format!("replica {replica} to show the finished rotation");
    within(STEP_TIMEOUT, &description, async {
        loop {
            let message = stream
                .next()
                .await
                .unwrap_or_else(|| panic!("replica {replica} ended the watch"))
                .unwrap_or_else(|status| panic!("watch on replica {replica} failed: {status}"));
            let state = SeenState::of(&message);
            if let Some((&last, _)) = seen.last_key_value() {
                assert!(
                    message.revision > last,
                    "replica {replica} sent revision {} after {last}",
                    message.revision
                );
            }
            let done = state.is_final(new_kid);
            seen.insert(message.revision, state);
            if done {
                return seen;
            }
        }
    })
    .await
}

async fn first_message(
    replica: usize,
    stream: &mut Streaming<WatchRotationsResponse>,
) -> BTreeMap<u64, SeenState> {
    let description = format!("the first watch message of replica {replica}");
    let message = within(STEP_TIMEOUT, &description, stream.next())
        .await
        .unwrap_or_else(|| panic!("replica {replica} ended the watch"))
        .unwrap_or_else(|status| panic!("watch on replica {replica} failed: {status}"));
    BTreeMap::from([(message.revision, SeenState::of(&message))])
}

/// Returns the two or three scopes that service number `index` requests.
fn scopes_of(index: usize) -> Vec<&'static str> {
    match index % 3 {
        0 => vec!["okta.users.read", "okta.apps.read"],
        1 => vec!["okta.groups.read", "okta.logs.read"],
        _ => vec!["okta.users.read", "okta.groups.read", "okta.apps.read"],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registrations_make_one_app_per_name() {
    const SERVICES: usize = 50;
    const CALLERS_PER_SERVICE: usize = 3;
    let database = TestDatabase::create().await;
    let cluster = Cluster::start(3, options_on(database.url())).await;
    let started = Instant::now();

    let mut calls = Vec::new();
    for call in 0..SERVICES * CALLERS_PER_SERVICE {
        let service = call % SERVICES;
        let replica = call % cluster.replica_count();
        let endpoint = format!("http://{}", cluster.address(replica));
        calls.push(tokio::spawn(async move {
            let name = format!("replicated-service-{service:02}");
            let identity = Client::connect(endpoint)
                .await?
                .register_with(&name, &scopes_of(service), KeyAlgorithm::Es256, false)
                .await?;
            let client_id = identity.client_id().to_string();
            let created = identity.created();
            let outcomes: Vec<i32> = identity
                .grants()
                .iter()
                .map(|grant| grant.outcome)
                .collect();
            identity.close().await;
            Ok::<_, registrar_sdk::Error>((service, replica, client_id, created, outcomes))
        }));
    }

    let mut client_ids: HashMap<usize, Vec<String>> = HashMap::new();
    let mut created = 0;
    for call in calls {
        let (service, replica, client_id, was_created, outcomes) =
            within(Duration::from_secs(60), "a registration", call)
                .await
                .expect("registration task")
                .unwrap_or_else(|error| panic!("a registration failed: {error}"));
        for outcome in outcomes {
            assert!(
                outcome == ScopeOutcome::Granted as i32
                    || outcome == ScopeOutcome::AlreadyGranted as i32,
                "service {service} on replica {replica}: scope outcome {outcome}"
            );
        }
        if was_created {
            created += 1;
        }
        client_ids.entry(service).or_default().push(client_id);
    }
    eprintln!(
        "{} registrations on 3 replicas took {:?}",
        SERVICES * CALLERS_PER_SERVICE,
        started.elapsed()
    );

    assert_eq!(client_ids.len(), SERVICES);
    for (service, ids) in &client_ids {
        assert_eq!(ids.len(), CALLERS_PER_SERVICE, "service {service}");
        assert!(
            ids.iter().all(|id| id == &ids[0]),
            "service {service} got several client ids: {ids:?}"
        );
    }
    assert_eq!(created, SERVICES, "calls that reported creating their app");
    assert_eq!(
        cluster.count_requests("POST", "/oauth2/v1/clients"),
        SERVICES,
        "create requests that reached Okta"
    );

    let apps = cluster.emulator.apps();
    assert_eq!(apps.len(), SERVICES, "apps in Okta");
    let mut labels: Vec<&str> = apps.iter().map(|app| app.label.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), SERVICES, "distinct app names in Okta");
    for app in &apps {
        let service: usize = app
            .label
            .trim_start_matches("replicated-service-")
            .parse()
            .unwrap_or_else(|_| panic!("unexpected app {}", app.label));
        assert_eq!(client_ids[&service][0], app.id, "{}", app.label);
        let mut expected = scopes_of(service);
        expected.sort_unstable();
        let mut granted = app.granted_scopes.clone();
        granted.sort();
        assert_eq!(granted, expected, "scopes of {}", app.label);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reaches_watchers_on_every_replica() {
    let database = TestDatabase::create().await;
    let cluster = Cluster::start(3, options_on(database.url())).await;
    let client_id = register(&cluster, 0, "rotated-everywhere").await;

    let mut streams = Vec::new();
    for replica in 0..3 {
        let mut stream = watch(&cluster, replica, &client_id).await;
        let seen = first_message(replica, &mut stream).await;
        streams.push((replica, stream, seen));
    }
    let old_kid = streams[0].2.values().next().expect("first state").kids[0].clone();

    let started = Instant::now();
    let rotated = cluster
        .client(0)
        .rotate_key(RotateKeyRequest {
            client_id: client_id.clone(),
        })
        .await
        .expect("rotate on replica 0")
        .into_inner()
        .state
        .expect("state");
    assert_eq!(rotated.phase, RotationPhase::NewKeyAdded as i32);
    let new_kid = rotated
        .keys
        .iter()
        .map(|key| key.kid.clone())
        .find(|kid| kid != &old_kid)
        .expect("the rotation added a key");

    let mut histories = Vec::new();
    for (replica, mut stream, seen) in streams {
        let seen = until_final(replica, &mut stream, &new_kid, seen).await;
        histories.push((replica, seen));
    }
    eprintln!(
        "the rotation reached every watcher in {:?}",
        started.elapsed()
    );

    let (_, reference) = &histories[1];
    let final_revision = *reference.keys().last().expect("revisions");
    for (replica, seen) in &histories {
        let (&last, state) = seen.last_key_value().expect("revisions");
        assert_eq!(last, final_revision, "final revision on replica {replica}");
        assert_eq!(
            state.kids,
            vec![new_kid.clone()],
            "final keys on replica {replica}"
        );
        assert_eq!(
            state.signing_kid, new_kid,
            "final signing key on replica {replica}"
        );
    }
    // Where two replicas report the same revision, they report the same
    // state, because revisions come from the shared database.
    for (replica, seen) in &histories {
        for (other, other_seen) in &histories {
            for (revision, state) in seen {
                if let Some(other_state) = other_seen.get(revision) {
                    assert_eq!(
                        state, other_state,
                        "revision {revision} on replicas {replica} and {other}"
                    );
                }
            }
        }
    }
    let app = cluster.okta_app(&client_id).expect("app in Okta");
    assert_eq!(app.kids, vec![new_kid.clone()]);
    assert_eq!(app.active_kids, vec![new_kid]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_after_key_added() {
    kill_leader_in_phase("added").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_after_signing_switched() {
    kill_leader_in_phase("switched").await;
}

/// Starts a rotation through a replica that does not lead, kills the
/// leader once the `rotations` row is in `phase`, and checks that another
/// replica takes over and finishes the rotation.
async fn kill_leader_in_phase(phase: &str) {
    let database = TestDatabase::create().await;
    let pool = connect_database(&database).await;
    let mut cluster = Cluster::start(3, options_on(database.url())).await;
    let leader = wait_for_leader(&cluster, &pool).await;
    let survivors: Vec<usize> = (0..3).filter(|&replica| replica != leader).collect();
    let caller = survivors[0];
    let client_id = register(&cluster, caller, "leader-crash").await;

    let mut streams = Vec::new();
    for &replica in &survivors {
        let mut stream = watch(&cluster, replica, &client_id).await;
        let seen = first_message(replica, &mut stream).await;
        streams.push((replica, stream, seen));
    }
    let old_kid = streams[0].2.values().next().expect("first state").kids[0].clone();

    let rotated = cluster
        .client(caller)
        .rotate_key(RotateKeyRequest {
            client_id: client_id.clone(),
        })
        .await
        .unwrap_or_else(|status| panic!("rotate on replica {caller}: {status}"))
        .into_inner()
        .state
        .expect("state");
    let new_kid = rotated
        .keys
        .iter()
        .map(|key| key.kid.clone())
        .find(|kid| kid != &old_kid)
        .expect("the rotation added a key");

    let description = format!("the rotation to reach phase {phase}");
    poll(STEP_TIMEOUT, &description, || async {
        let current = rotation_phase(&pool, &client_id).await;
        (current.as_deref() == Some(phase)).then_some(())
    })
    .await;
    cluster.kill(leader).await;
    let killed_at = Instant::now();
    eprintln!("killed leader replica {leader} in phase {phase}");

    let successor = wait_for_leader(&cluster, &pool).await;
    assert!(survivors.contains(&successor), "replica {successor} leads");
    eprintln!(
        "replica {successor} leads {:?} after the kill",
        killed_at.elapsed()
    );
    poll(
        STEP_TIMEOUT,
        "the new leader to finish the rotation",
        || async {
            rotation_phase(&pool, &client_id)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "the rotation finished {:?} after the kill",
        killed_at.elapsed()
    );

    for (replica, mut stream, seen) in streams {
        let seen = until_final(replica, &mut stream, &new_kid, seen).await;
        let (_, state) = seen.last_key_value().expect("revisions");
        assert_eq!(
            state.signing_kid, new_kid,
            "signing key on replica {replica}"
        );
    }

    let app = cluster.okta_app(&client_id).expect("app in Okta");
    assert_eq!(app.kids, vec![new_kid.clone()], "keys in Okta");
    for kid in &app.kids {
        let rows = sqlx::query(
            "SELECT status, length(sealed) AS sealed_length FROM private_keys \
             WHERE client_id = $1 AND kid = $2",
        )
        .bind(&client_id)
        .bind(kid)
        .fetch_all(&pool)
        .await
        .expect("query private_keys");
        assert_eq!(rows.len(), 1, "private keys stored for kid {kid}");
        let status: String = rows[0].get("status");
        let sealed_length: i32 = rows[0].get("sealed_length");
        assert_ne!(status, "retired", "status of the key of kid {kid}");
        assert!(sealed_length > 0, "the key of kid {kid} is empty");
    }
    // The old key left Okta, so its private key is retired and erased.
    let old = sqlx::query(
        "SELECT status, length(sealed) AS sealed_length FROM private_keys \
         WHERE client_id = $1 AND kid = $2",
    )
    .bind(&client_id)
    .bind(&old_kid)
    .fetch_one(&pool)
    .await
    .expect("query the old private key");
    assert_eq!(old.get::<String, _>("status"), "retired", "old key status");
    assert_eq!(old.get::<i32, _>("sealed_length"), 0, "old key length");
    pool.close().await;
    cluster.shutdown().await;
}

/// Returns the health status of `service`, or the call's error code.
async fn health_of(health: &mut HealthClient<Channel>, service: &str) -> Result<i32, Code> {
    health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|response| response.into_inner().status)
        .map_err(|status| status.code())
}

/// Polls the health of the server and of the registrar service until both
/// are `expected`. Returns how long that took.
async fn wait_for_health(health: &HealthClient<Channel>, expected: ServingStatus) -> Duration {
    let started = Instant::now();
    let description = format!("health {}", expected.as_str_name());
    poll(Duration::from_secs(10), &description, || {
        let mut health = health.clone();
        async move {
            let server = health_of(&mut health, "").await;
            let registrar = health_of(&mut health, REGISTRAR_SERVICE).await;
            (server == Ok(expected as i32) && registrar == Ok(expected as i32)).then_some(())
        }
    })
    .await;
    started.elapsed()
}

/// Builds a RegisterService request for `name` with an ES256 key.
fn registration(name: &str) -> RegisterServiceRequest {
    RegisterServiceRequest {
        service_name: name.into(),
        scope_ids: vec!["okta.users.read".into()],
        key: Some(GenerateKey {
            algorithm: KeyAlgorithm::Es256 as i32,
        }),
        dpop_bound: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_turns_health_and_back() {
    let database = TestDatabase::create().await;
    let proxy = Proxy::in_front_of(database.url()).await;
    let env = TestEnv::start_with(options_on(&proxy.url_through(database.url()))).await;
    let mut client = env.client.clone();
    // Registering a known service reads the registrar's record of it, so it
    // needs the database.
    let client_id = client
        .register_service(registration("outage-survivor"))
        .await
        .expect("register before the outage")
        .into_inner()
        .app
        .expect("app")
        .client_id;
    let health = HealthClient::new(
        Channel::from_shared(format!("http://{}", env.address))
            .expect("valid endpoint")
            .connect_lazy(),
    );
    wait_for_health(&health, ServingStatus::Serving).await;
    assert!(
        proxy.connections() > 0,
        "the registrar connects through the proxy"
    );

    proxy.cut().await;
    let took = wait_for_health(&health, ServingStatus::NotServing).await;
    eprintln!("health turned NOT_SERVING {took:?} after the cut");

    for name in ["outage-survivor", "outage-newcomer"] {
        let started = Instant::now();
        let description = format!("RegisterService of {name} during the outage");
        let failed = within(
            STEP_TIMEOUT,
            &description,
            client.register_service(registration(name)),
        )
        .await
        .expect_err(&description);
        eprintln!("{description} failed after {:?}", started.elapsed());
        assert_eq!(
            failed.code(),
            Code::Unavailable,
            "{description}: {failed:?}"
        );
        assert!(
            failed.message().contains("database is out of reach"),
            "{description}: message {:?}",
            failed.message()
        );
    }

    proxy.restore();
    let took = wait_for_health(&health, ServingStatus::Serving).await;
    eprintln!("health turned SERVING {took:?} after the restore");
    let registered = within(
        STEP_TIMEOUT,
        "RegisterService after the outage",
        client.register_service(registration("outage-survivor")),
    )
    .await
    .expect("RegisterService succeeds once the database is back")
    .into_inner();
    assert!(!registered.created, "the known service got a new app");
    assert_eq!(registered.app.expect("app").client_id, client_id);
    env.stop().await;
}

/// Counts the pending creates of apps named `name`, or returns `None`
/// while the replicas have not created the tables yet.
async fn pending_creates(pool: &PgPool, name: &str) -> Option<i64> {
    sqlx::query(
        "SELECT COUNT(*) AS pending FROM intents \
         WHERE kind = 'create_app' AND state = 'pending' AND client_name = $1",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .ok()
    .map(|row| row.get("pending"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_lock_session_creates_one_app() {
    const NAME: &str = "lost-lock-service";
    let database = TestDatabase::create().await;
    let pool = connect_database(&database).await;
    let proxy = Proxy::in_front_of(database.url()).await;
    let mut cluster = Cluster::start(1, options_on(database.url())).await;
    let behind_proxy = cluster
        .add_replica_on(&proxy.url_through(database.url()))
        .await;

    // The create stays in flight in Okta while the replica behind the
    // proxy loses its database sessions, and with them the name's lock.
    cluster
        .emulator
        .add_fault(Fault::times(
            FaultEndpoint::CreateClient,
            FaultKind::Latency { millis: 3000 },
            1,
        ))
        .expect("latency fault");
    let mut first_client = cluster.client(behind_proxy);
    let first =
        tokio::spawn(async move { first_client.register_service(registration(NAME)).await });
    poll(STEP_TIMEOUT, "the first create's intent", || async {
        (pending_creates(&pool, NAME).await == Some(1)).then_some(())
    })
    .await;
    proxy.cut().await;

    // The other replica gets the lock, but Okta does not list the app yet:
    // the pending intent must stop it from creating a second one.
    let mut second_client = cluster.client(0);
    let refused = within(
        STEP_TIMEOUT,
        "RegisterService on the other replica",
        second_client.register_service(registration(NAME)),
    )
    .await
    .expect_err("a create of the name is in flight");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("outcome is not known yet"),
        "{:?}",
        refused.message()
    );

    proxy.restore();
    // The first call may fail if it cannot record the app in time. Either
    // way, Okta has the app, and a retry on the other replica adopts it.
    let _ = within(STEP_TIMEOUT, "the first RegisterService", first).await;
    let client_id = poll(STEP_TIMEOUT, "a retried RegisterService", || {
        let mut client = cluster.client(0);
        async move {
            client
                .register_service(registration(NAME))
                .await
                .ok()
                .and_then(|response| response.into_inner().app)
                .map(|app| app.client_id)
        }
    })
    .await;

    let apps: Vec<_> = cluster
        .emulator
        .apps()
        .into_iter()
        .filter(|app| app.label == NAME)
        .collect();
    assert_eq!(apps.len(), 1, "one app of the name in Okta");
    assert_eq!(apps[0].id, client_id);
    assert_eq!(cluster.count_requests("POST", "/oauth2/v1/clients"), 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_database_path_does_not_stop_leadership() {
    let database = TestDatabase::create().await;
    let pool = connect_database(&database).await;
    let proxy = Proxy::in_front_of(database.url()).await;
    let mut cluster = Cluster::start(1, options_on(database.url())).await;
    assert_eq!(wait_for_leader(&cluster, &pool).await, 0);
    let behind_proxy = cluster
        .add_replica_on(&proxy.url_through(database.url()))
        .await;
    let health = HealthClient::new(
        Channel::from_shared(format!("http://{}", cluster.address(behind_proxy)))
            .expect("valid endpoint")
            .connect_lazy(),
    );
    wait_for_health(&health, ServingStatus::Serving).await;

    // The path to the database drops every packet for a while, which
    // leaves the follower's attempts to lead and its listener waiting on
    // connections that never respond.
    proxy.stall();
    wait_for_health(&health, ServingStatus::NotServing).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore();
    wait_for_health(&health, ServingStatus::Serving).await;

    cluster.kill(0).await;
    let started = Instant::now();
    let leader = wait_for_leader(&cluster, &pool).await;
    assert_eq!(leader, behind_proxy);
    eprintln!(
        "the follower led {:?} after the leader was killed",
        started.elapsed()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_after_lost_lock_returns_app() {
    const NAME: &str = "lost-lock-lookup";
    let database = TestDatabase::create().await;
    let proxy = Proxy::in_front_of(database.url()).await;
    let mut cluster = Cluster::start(1, options_on(database.url())).await;
    let behind_proxy = cluster
        .add_replica_on(&proxy.url_through(database.url()))
        .await;

    // The replica behind the proxy looks the name up in Okta slowly, and
    // loses its lock session meanwhile; the other replica creates the app.
    cluster
        .emulator
        .add_fault(Fault::times(
            FaultEndpoint::ListApps,
            FaultKind::Latency { millis: 3000 },
            1,
        ))
        .expect("latency fault");
    let mut first_client = cluster.client(behind_proxy);
    let first =
        tokio::spawn(async move { first_client.register_service(registration(NAME)).await });
    // A fault fires when its request arrives, before the delay.
    poll(STEP_TIMEOUT, "the slow lookup to start", || async {
        cluster
            .emulator
            .faults()
            .iter()
            .any(|fault| fault.fired > 0)
            .then_some(())
    })
    .await;
    proxy.cut().await;
    proxy.restore();

    let mut second_client = cluster.client(0);
    let second = within(
        STEP_TIMEOUT,
        "RegisterService on the other replica",
        second_client.register_service(registration(NAME)),
    )
    .await
    .expect("the other replica registers the service")
    .into_inner();
    let client_id = second.app.expect("app").client_id;

    let first = within(STEP_TIMEOUT, "the first RegisterService", first)
        .await
        .expect("task");
    match first {
        Ok(response) => {
            let response = response.into_inner();
            assert_eq!(response.app.expect("app").client_id, client_id);
            assert!(!response.created, "the first call created a second app");
        }
        Err(status) => assert_eq!(
            status.code(),
            Code::Unavailable,
            "the first call may fail for its lost session, but not so: {status:?}"
        ),
    }
    let apps: Vec<_> = cluster
        .emulator
        .apps()
        .into_iter()
        .filter(|app| app.label == NAME)
        .collect();
    assert_eq!(apps.len(), 1, "one app of the name in Okta");
    cluster.shutdown().await;
}
