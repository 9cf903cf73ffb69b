//! Coordination of the replicas that share one PostgreSQL database:
//!
//! - Locks: a session-level advisory lock per name or app, held on a
//!   connection of a small pool of its own, so that work on one name or app
//!   runs on one replica at a time. A replica that dies drops its
//!   connections, and PostgreSQL releases its locks with them.
//! - Leadership: one replica holds the leader lock on a connection of its
//!   own and runs the rotation task; the others retry now and then.
//! - Notifications: triggers send `NOTIFY registrar_changes` with the schema
//!   and client id of every app whose key state or rotation plan changed
//!   (migration 0007), and each replica listens.
//!
//! Lock keys hash the schema name with the lock's name, so deployments in
//! different schemas of one database do not block each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, Postgres, Row};

use super::StoreError;

/// The maximum number of connections in a replica's query pool.
pub(super) const POOL_SIZE: u32 = 8;

/// The maximum number of connections in a replica's lock pool, which is
/// also the maximum number of names and apps whose locks the replica holds
/// or waits for at once.
const LOCK_POOL_SIZE: u32 = 8;

/// How long a call waits for a free connection of the lock pool: the
/// holders of all of them may be waiting for Okta.
const LOCK_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`DatabaseLock::check_held`] waits for its session to respond.
const LOCK_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of the lock and leader sessions. With them, the server's TCP
/// keepalive ends the session of a replica cut off by the network after
/// about 10 + 3 x 5 seconds, which releases its locks. The system default
/// is often two hours. A lock wait longer than a minute fails the call,
/// which the caller may retry.
const SESSION_SETTINGS: [(&str, &str); 4] = [
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "3"),
    ("lock_timeout", "60s"),
];

/// The notification channel of the triggers of migration 0007.
pub const CHANNEL: &str = "registrar_changes";

/// The start of the `application_name` of the leader's session.
pub const LEADER_APPLICATION_NAME: &str = "registrar leader";

/// The name of the lock that the replica running rotations holds.
const LEADER_LOCK: &str = "registrar rotation leader";

/// The connections that coordinate the replicas sharing a database.
#[derive(Clone)]
pub struct Coordination {
    options: PgConnectOptions,
    locks: PgPool,
    schema: String,
    /// Whether the database responded to the latest health check.
    answering: Arc<AtomicBool>,
}

impl std::fmt::Debug for Coordination {
    // The connection options may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordination")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Coordination {
    pub(super) async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let options = options.options(SESSION_SETTINGS);
        let locks = PgPoolOptions::new()
            .max_connections(LOCK_POOL_SIZE)
            .min_connections(0)
            .acquire_timeout(LOCK_ACQUIRE_TIMEOUT)
            // A lock's future may be dropped while PostgreSQL still waits
            // to grant the lock, which the session then holds with no guard.
            // Every session that returns to the pool therefore gives up
            // all its advisory locks.
            .after_release(|connection, _| {
                Box::pin(async move {
                    connection
                        .execute("SELECT pg_advisory_unlock_all()")
                        .await?;
                    Ok(true)
                })
            })
            .connect_lazy_with(options.clone());
        let mut connection = options.connect().await?;
        let row = sqlx::query(
            "SELECT current_schema() AS schema, current_setting('search_path') AS search_path",
        )
        .fetch_one(&mut connection)
        .await?;
        // current_schema() is NULL when no schema of the search path exists.
        let Some(schema) = row.get::<Option<String>, _>("schema") else {
            return Err(StoreError::NoSchema(row.get("search_path")));
        };
        connection.close().await?;
        Ok(Self {
            options,
            locks,
            schema,
            answering: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Returns the schema that contains the registrar's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Waits for the advisory lock of `name` and returns its guard, which
    /// releases it when dropped.
    pub async fn lock(&self, name: &str) -> Result<DatabaseLock, StoreError> {
        // Waiting for a lock pool connection can take long under load, so
        // a database that is known to be down fails the call at once.
        self.check_answering()?;
        let mut connection = self.locks.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock(hashtextextended($1 || ' ' || $2, 0))")
            .bind(&self.schema)
            .bind(name)
            .execute(&mut *connection)
            .await?;
        Ok(DatabaseLock { connection })
    }

    /// Takes the advisory lock of `name` if no session holds it, without
    /// waiting.
    pub async fn try_lock(&self, name: &str) -> Result<Option<DatabaseLock>, StoreError> {
        self.check_answering()?;
        let mut connection = self.locks.acquire().await?;
        let acquired: bool = sqlx::query(
            "SELECT pg_try_advisory_lock(hashtextextended($1 || ' ' || $2, 0)) AS acquired",
        )
        .bind(&self.schema)
        .bind(name)
        .fetch_one(&mut *connection)
        .await?
        .get("acquired");
        Ok(acquired.then_some(DatabaseLock { connection }))
    }

    /// Records whether the database responded to the latest health check.
    pub fn set_answering(&self, answering: bool) {
        self.answering.store(answering, Ordering::Relaxed);
    }

    /// Returns whether the database responded to the latest health check.
    pub fn is_answering(&self) -> bool {
        self.answering.load(Ordering::Relaxed)
    }

    /// Fails at once while the database is known to be down, where waiting
    /// for a connection would only delay the failure.
    pub(super) fn check_answering(&self) -> Result<(), StoreError> {
        if self.is_answering() {
            Ok(())
        } else {
            Err(StoreError::Unreachable)
        }
    }

    /// Tries once to become the replica that runs rotations. The leadership
    /// lasts as long as the returned connection stays open. Its session's
    /// `application_name` is `registrar leader REPLICA`, so that
    /// `pg_stat_activity` shows which replica leads.
    pub async fn try_lead(&self, replica: &str) -> Result<Option<Leadership>, StoreError> {
        let mut connection = self
            .options
            .clone()
            .application_name(&format!("registrar candidate {replica}"))
            .connect()
            .await?;
        let acquired: bool = sqlx::query(
            "SELECT pg_try_advisory_lock(hashtextextended($1 || ' ' || $2, 0)) AS acquired",
        )
        .bind(&self.schema)
        .bind(LEADER_LOCK)
        .fetch_one(&mut connection)
        .await?
        .get("acquired");
        if acquired {
            // Renamed only now, so that only the leader's session carries
            // the leader's name.
            sqlx::query("SELECT set_config('application_name', $1, false)")
                .bind(format!("{LEADER_APPLICATION_NAME} {replica}"))
                .execute(&mut connection)
                .await?;
            Ok(Some(Leadership { connection }))
        } else {
            connection.close().await?;
            Ok(None)
        }
    }

    /// Opens a connection that listens for the changes of other replicas.
    pub async fn listen(&self) -> Result<Changes, StoreError> {
        Ok(Changes {
            listener: Some(self.listener().await?),
            coordination: self.clone(),
            prefix: format!("{} ", self.schema),
        })
    }

    async fn listener(&self) -> Result<PgListener, StoreError> {
        let mut listener = PgListener::connect_with(
            &PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(super::ACQUIRE_TIMEOUT)
                .connect_lazy_with(self.options.clone()),
        )
        .await?;
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }
}

/// A held advisory lock. Dropping it returns its connection to the lock
/// pool, which releases every advisory lock of the session first.
#[derive(Debug)]
pub struct DatabaseLock {
    connection: PoolConnection<Postgres>,
}

impl DatabaseLock {
    /// Checks that the lock's session is still open, and so still holds
    /// the lock.
    pub async fn check_held(&mut self) -> Result<(), StoreError> {
        match tokio::time::timeout(LOCK_CHECK_TIMEOUT, self.connection.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(StoreError::LockLost),
        }
    }
}

/// The leader lock, held by an open connection.
#[derive(Debug)]
pub struct Leadership {
    connection: PgConnection,
}

impl Leadership {
    /// Returns when the leader lock's connection fails, checking every
    /// `interval`. PostgreSQL releases the lock when the session ends, so
    /// the caller must stop acting as leader at once.
    pub async fn lost(&mut self, interval: Duration) -> StoreError {
        loop {
            tokio::time::sleep(interval).await;
            let ping = tokio::time::timeout(interval, self.connection.ping()).await;
            match ping {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return error.into(),
                Err(_) => return sqlx::Error::PoolTimedOut.into(),
            }
        }
    }
}

/// The changes that other replicas announce.
#[derive(Debug)]
pub struct Changes {
    /// The listening connection; `None` after it was lost.
    listener: Option<PgListener>,
    coordination: Coordination,
    prefix: String,
}

/// A change that [`Changes::next`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key state or rotation plan of one app changed.
    App(String),
    /// The connection was lost and is open again; notifications sent in
    /// between are lost, so any app may have changed.
    Reconnected,
}

impl Changes {
    /// Waits for the next change of an app in this replica's schema. An
    /// error means the database is out of reach; call again after a pause.
    pub async fn next(&mut self) -> Result<Change, StoreError> {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                // A new listener, rather than the lost one reconnecting by
                // itself, so that the caller learns when it listens again.
                self.listener = Some(self.coordination.listener().await?);
                return Ok(Change::Reconnected);
            };
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Some(client_id) = notification.payload().strip_prefix(&self.prefix) {
                        return Ok(Change::App(client_id.to_string()));
                    }
                }
                Ok(None) => self.listener = None,
                Err(error) => {
                    self.listener = None;
                    return Err(error.into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::{Connection, Executor, PgConnection};

    use super::*;
    use crate::store::testing::TestDatabase;
    use crate::store::{AppRecord, Store};

    /// How long a test waits for something that must happen.
    const WAIT: Duration = Duration::from_secs(5);

    /// How long a test watches for something that must not happen.
    const WATCH: Duration = Duration::from_millis(300);

    fn coordination(store: &Store) -> Coordination {
        store
            .coordination()
            .expect("a PostgreSQL store coordinates replicas")
            .clone()
    }

    async fn record_app(store: &Store, client_id: &str) {
        let app = AppRecord {
            client_id: client_id.into(),
            client_name: format!("app {client_id}"),
            issued_at: 1_767_225_600,
            keys: Vec::new(),
            deleted: false,
            dpop_bound: false,
            owner: Some("billing".into()),
        };
        store.record_app(&app).await.expect("record app");
    }

    async fn add_key(store: &Store, client_id: &str) {
        store
            .record_added_key(client_id, "tp", "k1", "{}", "pks1")
            .await
            .expect("record added key");
    }

    /// Opens a store in a new schema `other` of the database, as a second
    /// deployment sharing it.
    async fn open_in_other_schema(database: &TestDatabase) -> Store {
        let mut connection = PgConnection::connect(database.url())
            .await
            .expect("connect to the test database");
        connection
            .execute("CREATE SCHEMA other")
            .await
            .expect("create schema");
        connection.close().await.expect("close");
        let mut url = url::Url::parse(database.url()).expect("valid URL");
        url.query_pairs_mut()
            .append_pair("options[search_path]", "other");
        Store::open(url.as_str())
            .await
            .expect("store opens in schema other")
    }

    #[tokio::test]
    async fn missing_schema_is_named() {
        let database = TestDatabase::create().await;
        let mut url = url::Url::parse(database.url()).expect("valid URL");
        url.query_pairs_mut()
            .append_pair("options[search_path]", "not_created");
        let error = Store::open(url.as_str())
            .await
            .expect_err("the schema does not exist");
        assert!(matches!(error, StoreError::NoSchema(_)), "{error:?}");
        assert!(error.to_string().contains("not_created"), "{error}");
    }

    #[tokio::test]
    async fn lock_excludes_other_replica() {
        let database = TestDatabase::create().await;
        let first = coordination(&database.open_store().await);
        let second = coordination(&database.open_store().await);

        let guard = first.lock("billing").await.expect("first lock");
        let waiting = tokio::spawn(async move { second.lock("billing").await });
        tokio::time::sleep(WATCH).await;
        assert!(
            !waiting.is_finished(),
            "the second replica took a held lock"
        );

        drop(guard);
        let acquired = tokio::time::timeout(WAIT, waiting)
            .await
            .expect("the second replica got the lock after its release")
            .expect("lock task");
        assert!(acquired.is_ok(), "{acquired:?}");
    }

    #[tokio::test]
    async fn sslmode_require_encrypts_or_fails() {
        let database = TestDatabase::create().await;
        let plain = database.open_store().await;
        let server_ssl: String = sqlx::query("SELECT current_setting('ssl') AS ssl")
            .fetch_one(&plain.pool)
            .await
            .expect("read the server's ssl setting")
            .get("ssl");
        let url = format!("{}?sslmode=require", database.url());
        let opened = Store::open(&url).await;
        if server_ssl == "on" {
            let store = opened.expect("a TLS connection opens");
            let encrypted: bool =
                sqlx::query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                    .fetch_one(&store.pool)
                    .await
                    .expect("read pg_stat_ssl")
                    .get("ssl");
            assert!(encrypted, "sslmode=require gave a plaintext session");
        } else {
            // A server without TLS must not get a plaintext fallback.
            let error = opened.expect_err("sslmode=require without TLS on the server");
            assert!(
                error.to_string().to_lowercase().contains("tls")
                    || error.to_string().to_lowercase().contains("ssl"),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn cancelled_lock_wait_releases() {
        let database = TestDatabase::create().await;
        let first = coordination(&database.open_store().await);
        let second = coordination(&database.open_store().await);

        let guard = first.lock("billing").await.expect("first lock");
        let cancelled = tokio::time::timeout(WATCH, second.lock("billing")).await;
        assert!(cancelled.is_err(), "the second replica took a held lock");
        drop(guard);

        // PostgreSQL grants the cancelled wait once the first guard is gone;
        // the session must give the lock up when it returns to the pool.
        let again = tokio::time::timeout(WAIT, first.lock("billing"))
            .await
            .expect("the lock is free again after a cancelled wait");
        assert!(again.is_ok(), "{again:?}");
    }

    #[tokio::test]
    async fn lock_excludes_within_one_replica() {
        let database = TestDatabase::create().await;
        let locks = coordination(&database.open_store().await);

        let guard = locks.lock("billing").await.expect("first lock");
        let second = locks.clone();
        let waiting = tokio::spawn(async move { second.lock("billing").await });
        tokio::time::sleep(WATCH).await;
        assert!(!waiting.is_finished(), "a second task took a held lock");

        drop(guard);
        let acquired = tokio::time::timeout(WAIT, waiting)
            .await
            .expect("the second task got the lock after its release")
            .expect("lock task");
        assert!(acquired.is_ok(), "{acquired:?}");
    }

    #[tokio::test]
    async fn locks_of_other_names_do_not_block() {
        let database = TestDatabase::create().await;
        let first = coordination(&database.open_store().await);
        let second = coordination(&database.open_store().await);

        let _guard = first.lock("billing").await.expect("first lock");
        let other = tokio::time::timeout(WAIT, second.lock("payroll"))
            .await
            .expect("a lock of another name is free");
        assert!(other.is_ok(), "{other:?}");
    }

    #[tokio::test]
    async fn one_replica_leads() {
        let database = TestDatabase::create().await;
        let first = coordination(&database.open_store().await);
        let second = coordination(&database.open_store().await);

        let leadership = first.try_lead("test").await.expect("try to lead");
        assert!(leadership.is_some(), "the first replica leads");
        let contender = second.try_lead("test").await.expect("try to lead");
        assert!(contender.is_none(), "a second replica leads too");
        let again = first.try_lead("test").await.expect("try to lead");
        assert!(again.is_none(), "the leader's replica leads twice");

        drop(leadership);
        // The server releases the lock once it detects that the connection closed.
        let successor = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(leadership) = second.try_lead("test").await.expect("try to lead") {
                    return leadership;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(successor.is_ok(), "no replica leads after the leader left");
    }

    #[tokio::test]
    async fn changes_reach_other_replica() {
        let database = TestDatabase::create().await;
        let writer = database.open_store().await;
        let reader = database.open_store().await;
        record_app(&writer, "0oa1").await;
        let mut changes = coordination(&reader).listen().await.expect("listen");

        add_key(&writer, "0oa1").await;
        let change = tokio::time::timeout(WAIT, changes.next())
            .await
            .expect("a change arrives")
            .expect("listen");
        assert_eq!(change, Change::App("0oa1".into()));

        writer
            .schedule_rotation("0oa1", 1_767_225_600_000)
            .await
            .expect("schedule");
        let change = tokio::time::timeout(WAIT, changes.next())
            .await
            .expect("a change arrives")
            .expect("listen");
        assert_eq!(change, Change::App("0oa1".into()));
    }

    #[tokio::test]
    async fn schemas_are_separate() {
        let database = TestDatabase::create().await;
        let public = database.open_store().await;
        let other = open_in_other_schema(&database).await;
        let public_coordination = coordination(&public);
        let other_coordination = coordination(&other);
        assert_eq!(public_coordination.schema(), "public");
        assert_eq!(other_coordination.schema(), "other");

        let _guard = public_coordination.lock("billing").await.expect("lock");
        let other_lock = tokio::time::timeout(WAIT, other_coordination.lock("billing"))
            .await
            .expect("the other schema's lock is free");
        assert!(other_lock.is_ok(), "{other_lock:?}");

        let _leadership = public_coordination
            .try_lead("test")
            .await
            .expect("try to lead");
        let other_leadership = other_coordination
            .try_lead("test")
            .await
            .expect("try to lead");
        assert!(other_leadership.is_some(), "the other schema has no leader");

        // Notifications arrive in commit order, so the other schema's change
        // comes first only if the public schema's change was ignored.
        record_app(&public, "0oa1").await;
        record_app(&other, "0oa2").await;
        let mut changes = other_coordination.listen().await.expect("listen");
        add_key(&public, "0oa1").await;
        add_key(&other, "0oa2").await;
        let change = tokio::time::timeout(WAIT, changes.next())
            .await
            .expect("a change arrives")
            .expect("listen");
        assert_eq!(change, Change::App("0oa2".into()));
    }
}
