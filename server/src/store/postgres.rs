//! How replicas that share one PostgreSQL database coordinate:
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

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{ConnectOptions, Connection, PgConnection, Postgres, Row};

use super::StoreError;

/// The most connections of a replica's query pool.
pub(super) const POOL_SIZE: u32 = 8;

/// The most connections of a replica's lock pool, which is also the most
/// names and apps whose locks the replica holds or waits for at once.
const LOCK_POOL_SIZE: u32 = 16;

/// The notification channel of the triggers of migration 0007.
pub const CHANNEL: &str = "registrar_changes";

/// The name of the lock that the replica running rotations holds.
const LEADER_LOCK: &str = "registrar rotation leader";

/// The connections that coordinate the replicas sharing a database.
#[derive(Clone)]
pub struct Coordination {
    options: PgConnectOptions,
    locks: PgPool,
    schema: String,
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
        let locks = PgPoolOptions::new()
            .max_connections(LOCK_POOL_SIZE)
            .min_connections(0)
            .acquire_timeout(super::ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone());
        let mut connection = options.connect().await?;
        let schema: String = sqlx::query("SELECT current_schema() AS schema")
            .fetch_one(&mut connection)
            .await?
            .get("schema");
        connection.close().await?;
        Ok(Self {
            options,
            locks,
            schema,
        })
    }

    /// Returns the schema that holds the registrar's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Waits for the advisory lock of `name` and returns its guard, which
    /// releases it when dropped.
    pub async fn lock(&self, name: &str) -> Result<DatabaseLock, StoreError> {
        let mut connection = self.locks.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock(hashtextextended($1 || ' ' || $2, 0))")
            .bind(&self.schema)
            .bind(name)
            .execute(&mut *connection)
            .await?;
        Ok(DatabaseLock {
            connection: Some(connection),
            schema: self.schema.clone(),
            name: name.to_string(),
        })
    }

    /// Tries once to become the replica that runs rotations. The leadership
    /// lasts as long as the returned connection stays open.
    pub async fn try_lead(&self) -> Result<Option<Leadership>, StoreError> {
        let mut connection = self.options.connect().await?;
        let acquired: bool =
            sqlx::query("SELECT pg_try_advisory_lock(hashtextextended($1 || ' ' || $2, 0)) AS acquired")
                .bind(&self.schema)
                .bind(LEADER_LOCK)
                .fetch_one(&mut connection)
                .await?
                .get("acquired");
        if acquired {
            Ok(Some(Leadership { connection }))
        } else {
            connection.close().await?;
            Ok(None)
        }
    }

    /// Opens a connection that listens for the changes of other replicas.
    pub async fn listen(&self) -> Result<Changes, StoreError> {
        let mut listener = PgListener::connect_with(
            &PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(super::ACQUIRE_TIMEOUT)
                .connect_lazy_with(self.options.clone()),
        )
        .await?;
        listener.listen(CHANNEL).await?;
        Ok(Changes {
            listener,
            prefix: format!("{} ", self.schema),
            lost: false,
        })
    }
}

/// A held advisory lock. Dropping it releases the lock.
#[derive(Debug)]
pub struct DatabaseLock {
    connection: Option<PoolConnection<Postgres>>,
    schema: String,
    name: String,
}

impl Drop for DatabaseLock {
    fn drop(&mut self) {
        let Some(mut connection) = self.connection.take() else {
            return;
        };
        let schema = std::mem::take(&mut self.schema);
        let name = std::mem::take(&mut self.name);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Closing the session releases the lock too.
            drop(connection.detach());
            return;
        };
        runtime.spawn(async move {
            let unlocked =
                sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1 || ' ' || $2, 0))")
                    .bind(&schema)
                    .bind(&name)
                    .execute(&mut *connection)
                    .await;
            if unlocked.is_err() {
                // A session whose unlock failed must not return to the
                // pool still holding the lock.
                drop(connection.detach());
            }
        });
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
    listener: PgListener,
    prefix: String,
    /// Whether the connection was lost and not yet opened again.
    lost: bool,
}

/// What [`Changes::next`] received.
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
            if self.lost {
                // Listening again opens a new connection.
                self.listener.listen(CHANNEL).await?;
                self.lost = false;
                return Ok(Change::Reconnected);
            }
            match self.listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Some(client_id) = notification.payload().strip_prefix(&self.prefix) {
                        return Ok(Change::App(client_id.to_string()));
                    }
                }
                Ok(None) => self.lost = true,
                Err(error) => {
                    self.lost = true;
                    return Err(error.into());
                }
            }
        }
    }
}
