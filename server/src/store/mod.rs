//! Persistence of what the registrar did: the service apps it created, their
//! keys, the scope grants it made, rotations, intents and the audit log.
//!
//! Two backends share one set of queries through sqlx's `Any` driver, written
//! with `$N` placeholders, which both accept: SQLite, the embedded default
//! for one process, and PostgreSQL, which several replicas share. Each has
//! its own migrations. PostgreSQL also coordinates the replicas (see
//! [`postgres`]).
//!
//! Okta remains the source of truth for an app's live state; the store is
//! the registrar's own record.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::{Executor, Row, migrate::Migrator};

mod audit;
mod intents;
pub mod postgres;
mod rotation;
#[doc(hidden)]
pub mod testing;

pub use audit::{AuditEvent, StoredAuditEvent};
pub use intents::{Intent, IntentKind, IntentState, StoredIntent};
pub use rotation::{HeldKey, Phase, Rotation};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a query waits for a free connection before it fails. A
/// PostgreSQL server that is down makes requests fail with UNAVAILABLE after
/// this long instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one this build supports.
    #[error(
        "unsupported database URL scheme {0:?}; use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE"
    )]
    UnsupportedUrl(String),
    /// A query or connection failed. The message includes sqlx's error,
    /// so the error is not also reported as the source, which would repeat
    /// it in error chains.
    #[error("the registrar's store failed: {0}")]
    Database(sqlx::Error),
    /// No schema of the search path exists.
    #[error(
        "no schema of the database's search_path ({0}) exists; create the schema (CREATE SCHEMA name) or fix search_path in the URL's options"
    )]
    NoSchema(String),
    /// The session that held a lock ended, so another replica may hold
    /// the lock now.
    #[error("lost the database session that held the lock; retry the call")]
    LockLost,
    /// The latest health check found the database out of reach.
    #[error("the database did not answer the latest health check")]
    Unreachable,
    /// Applying the schema migrations failed. As with `Database`, the
    /// message includes the cause, which is not reported as the source.
    #[error("the registrar's store could not apply its migrations: {0}")]
    Migrate(sqlx::migrate::MigrateError),
}

/// A public key as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The RFC 7638 thumbprint.
    pub thumbprint: String,
    /// The key id, possibly empty.
    pub kid: String,
    /// The public JWK as JSON.
    pub public_jwk: String,
}

/// A service app as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    /// The client id.
    pub client_id: String,
    /// The name it was created with.
    pub client_name: String,
    /// When Okta issued the client id, in Unix seconds.
    pub issued_at: i64,
    /// Its public keys.
    pub keys: Vec<KeyRecord>,
    /// Whether the registrar deleted it.
    pub deleted: bool,
    /// Whether its access tokens are DPoP-bound.
    pub dpop_bound: bool,
    /// The id of the caller that created it; `None` for apps recorded
    /// before owners were kept.
    pub owner: Option<String>,
}

/// The use of a private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// Client assertions for the token endpoint.
    Assertion,
    /// DPoP proofs.
    Dpop,
}

impl KeyPurpose {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Assertion => "assertion",
            Self::Dpop => "dpop",
        }
    }
}

/// An encrypted private key as stored. `Debug` shows only the
/// length of the sealed bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// The registrar's id of the key, also the encryption's associated data.
    pub key_id: String,
    /// The key's use.
    pub purpose: KeyPurpose,
    /// The key id in JWKs.
    pub kid: String,
    /// The JWS algorithm.
    pub algorithm: String,
    /// The public JWK as JSON.
    pub public_jwk: String,
    /// Nonce and ciphertext of the private key.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedKey")
            .field("key_id", &self.key_id)
            .field("purpose", &self.purpose)
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("sealed_len", &self.sealed.len())
            .finish()
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(error)
    }
}

impl StoreError {
    /// Returns whether the failure is the database being out of reach (a
    /// refused or lost connection, or no free connection in time), which a
    /// retry may not meet, rather than a fault of the query.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unreachable | Self::LockLost)
            || matches!(
                self,
                Self::Database(
                    sqlx::Error::Io(_)
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                        | sqlx::Error::Protocol(_)
                )
            )
            || matches!(self, Self::Database(sqlx::Error::Database(error)) if is_shutdown(error.code().as_deref()))
    }
}

/// SQLSTATE class 57 is "operator intervention": the server is shutting
/// down or restarting, or an administrator ended the session. A lock wait
/// past `lock_timeout` is worth a retry too.
fn is_shutdown(code: Option<&str>) -> bool {
    code.is_some_and(|code| code.starts_with("57") || code == LOCK_NOT_AVAILABLE)
}

/// The SQLSTATE of a lock wait that passed `lock_timeout`.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// The database behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, for one registrar process.
    Sqlite,
    /// PostgreSQL, which several replicas may share.
    Postgres,
}

/// The registrar's store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The connections that coordinate replicas, on PostgreSQL only.
    coordination: Option<postgres::Coordination>,
}

impl Store {
    /// Opens the database at `url` and applies the schema migrations. A
    /// SQLite database file is created when missing.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = match url.split_once(':').map(|(scheme, _)| scheme) {
            Some("sqlite") => Backend::Sqlite,
            Some("postgres" | "postgresql") => Backend::Postgres,
            _ => {
                let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
                return Err(StoreError::UnsupportedUrl(scheme.to_string()));
            }
        };
        let store = match backend {
            Backend::Sqlite => {
                // Each connection to `sqlite::memory:` opens its own empty
                // database, so an in-memory store keeps to one connection.
                let memory = url.contains(":memory:");
                let url = if memory || url.contains("mode=") {
                    url.to_string()
                } else if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                };
                let pool = AnyPoolOptions::new()
                    .max_connections(if memory { 1 } else { 4 })
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            // Readers do not block the writer, nor it them.
                            connection.execute("PRAGMA journal_mode = WAL").await?;
                            connection.execute("PRAGMA foreign_keys = ON").await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?;
                SQLITE_MIGRATIONS.run(&pool).await?;
                Self {
                    pool,
                    backend,
                    coordination: None,
                }
            }
            Backend::Postgres => {
                // Its first, direct connection reports why the server cannot
                // be reached ("connection refused"), where the pool would
                // only report that it timed out.
                let coordination = postgres::Coordination::connect(url).await?;
                let pool = AnyPoolOptions::new()
                    .max_connections(postgres::POOL_SIZE)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect(url)
                    .await?;
                POSTGRES_MIGRATIONS.run(&pool).await?;
                Self {
                    pool,
                    backend,
                    coordination: Some(coordination),
                }
            }
        };
        Ok(store)
    }

    /// Returns the database behind the store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Returns the connections that coordinate replicas, on PostgreSQL.
    pub fn coordination(&self) -> Option<&postgres::Coordination> {
        self.coordination.as_ref()
    }

    /// Returns whether the database responds to a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Records a newly created app and its keys.
    pub async fn record_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        let now = unix_now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO service_apps (client_id, client_name, issued_at, created_at, owner) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (client_id) DO UPDATE SET client_name = excluded.client_name, deleted_at = NULL, \
             owner = COALESCE(service_apps.owner, excluded.owner)",
        )
        .bind(&app.client_id)
        .bind(&app.client_name)
        .bind(app.issued_at)
        .bind(now)
        .bind(&app.owner)
        .execute(&mut *tx)
        .await?;
        for key in &app.keys {
            sqlx::query(
                "INSERT INTO app_keys (client_id, thumbprint, kid, public_jwk, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&app.client_id)
            .bind(&key.thumbprint)
            .bind(&key.kid)
            .bind(&key.public_jwk)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Returns the recorded app, if the registrar created it.
    pub async fn app(&self, client_id: &str) -> Result<Option<AppRecord>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT client_id, client_name, issued_at, deleted_at, dpop_bound, owner FROM service_apps WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let keys = sqlx::query(
            "SELECT thumbprint, kid, public_jwk FROM app_keys WHERE client_id = $1 ORDER BY created_at, thumbprint",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|key| KeyRecord {
            thumbprint: key.get("thumbprint"),
            kid: key.get("kid"),
            public_jwk: key.get("public_jwk"),
        })
        .collect();
        Ok(Some(AppRecord {
            client_id: row.get("client_id"),
            client_name: row.get("client_name"),
            issued_at: row.get("issued_at"),
            keys,
            deleted: row.get::<Option<i64>, _>("deleted_at").is_some(),
            dpop_bound: row.get::<i64, _>("dpop_bound") != 0,
            owner: row.get("owner"),
        }))
    }

    /// Stores a new private key as pending: not yet attached to an app.
    pub async fn insert_pending_key(&self, key: &SealedKey) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO private_keys (key_id, client_id, purpose, kid, algorithm, public_jwk, sealed, status, created_at) \
             VALUES ($1, NULL, $2, $3, $4, $5, $6, 'pending', $7)",
        )
        .bind(&key.key_id)
        .bind(key.purpose.as_str())
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(&key.public_jwk)
        .bind(&key.sealed)
        .bind(unix_now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Attaches a pending key to the app whose registration carried its
    /// public half, making it the app's active key for its purpose.
    pub async fn activate_key(&self, key_id: &str, client_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE private_keys SET client_id = $1, status = 'active' WHERE key_id = $2")
            .bind(client_id)
            .bind(key_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Returns the app's newest active key for a purpose.
    pub async fn active_key(
        &self,
        client_id: &str,
        purpose: KeyPurpose,
    ) -> Result<Option<SealedKey>, StoreError> {
        let row = sqlx::query(
            "SELECT key_id, kid, algorithm, public_jwk, sealed FROM private_keys \
             WHERE client_id = $1 AND purpose = $2 AND status = 'active' ORDER BY created_at DESC, key_id LIMIT 1",
        )
        .bind(client_id)
        .bind(purpose.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| SealedKey {
            key_id: row.get("key_id"),
            purpose,
            kid: row.get("kid"),
            algorithm: row.get("algorithm"),
            public_jwk: row.get("public_jwk"),
            sealed: row.get("sealed"),
        }))
    }

    /// Records whether the app's access tokens are DPoP-bound.
    pub async fn set_dpop_bound(
        &self,
        client_id: &str,
        dpop_bound: bool,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE service_apps SET dpop_bound = $1 WHERE client_id = $2")
            .bind(i64::from(dpop_bound))
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Returns the newest undeleted app the registrar created with this name.
    pub async fn app_by_name(&self, client_name: &str) -> Result<Option<AppRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT client_id FROM service_apps WHERE client_name = $1 AND deleted_at IS NULL \
             ORDER BY created_at DESC, client_id LIMIT 1",
        )
        .bind(client_name)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => self.app(&row.get::<String, _>("client_id")).await,
            None => Ok(None),
        }
    }

    /// Returns the scope ids and grant ids of the app's recorded, unrevoked
    /// grants.
    pub async fn active_grants(
        &self,
        client_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT scope_id, grant_id FROM scope_grants WHERE client_id = $1 AND revoked_at IS NULL ORDER BY scope_id",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get("scope_id"), row.get("grant_id")))
            .collect())
    }

    /// Returns one stored encrypted key that is still in use, if any, to
    /// check at start that the master key decrypts it.
    pub async fn any_sealed_key(&self) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let row = sqlx::query(
            "SELECT key_id, sealed FROM private_keys WHERE status != 'retired' ORDER BY created_at LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| (row.get("key_id"), row.get("sealed"))))
    }

    /// Records `sealed`, the master key's check value, unless one is
    /// recorded already, and returns the recorded one.
    pub async fn master_key_check(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        sqlx::query(
            "INSERT INTO master_key_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(sealed)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT sealed FROM master_key_check WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get("sealed"))
    }

    /// Marks an app as deleted. Unknown apps are ignored, because the
    /// registrar may delete apps it did not create.
    pub async fn mark_app_deleted(&self, client_id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE service_apps SET deleted_at = $1 WHERE client_id = $2 AND deleted_at IS NULL",
        )
        .bind(unix_now())
        .bind(client_id)
        .execute(&mut *tx)
        .await?;
        // A rotation of a deleted app has nothing left to do.
        sqlx::query("DELETE FROM rotations WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a grant the registrar made.
    pub async fn record_grant(
        &self,
        client_id: &str,
        scope_id: &str,
        grant_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO scope_grants (client_id, scope_id, grant_id, granted_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(client_id)
        .bind(scope_id)
        .bind(grant_id)
        .bind(unix_now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that a grant was revoked.
    pub async fn record_revocation(
        &self,
        client_id: &str,
        grant_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE scope_grants SET revoked_at = $1 WHERE client_id = $2 AND grant_id = $3 AND revoked_at IS NULL",
        )
        .bind(unix_now())
        .bind(client_id)
        .bind(grant_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Returns the scope ids of the recorded, unrevoked grants of an app.
    pub async fn granted_scopes(&self, client_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT scope_id FROM scope_grants WHERE client_id = $1 AND revoked_at IS NULL ORDER BY scope_id",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|row| row.get("scope_id")).collect())
    }
}

fn unix_now() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970");
    i64::try_from(elapsed.as_secs()).expect("seconds since 1970 fit in i64")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::test_on_both_backends;

    fn app() -> AppRecord {
        AppRecord {
            client_id: "0oa1".into(),
            client_name: "billing".into(),
            issued_at: 1_767_225_600,
            keys: vec![KeyRecord {
                thumbprint: "tp".into(),
                kid: "k1".into(),
                public_jwk: "{}".into(),
            }],
            deleted: false,
            dpop_bound: false,
            owner: Some("billing".into()),
        }
    }

    test_on_both_backends!(app_round_trip);
    async fn app_round_trip(store: Store) {
        store.record_app(&app()).await.expect("record");
        assert_eq!(store.app("0oa1").await.expect("read"), Some(app()));
        assert_eq!(store.app("0oa2").await.expect("read"), None);

        store.mark_app_deleted("0oa1").await.expect("delete");
        assert!(
            store
                .app("0oa1")
                .await
                .expect("read")
                .expect("present")
                .deleted
        );
    }

    test_on_both_backends!(grants_round_trip);
    async fn grants_round_trip(store: Store) {
        store
            .record_grant("0oa1", "okta.users.read", "oag1")
            .await
            .expect("grant");
        store
            .record_grant("0oa1", "okta.users.read", "oag1")
            .await
            .expect("repeat");
        store
            .record_grant("0oa1", "okta.apps.read", "oag2")
            .await
            .expect("grant");
        assert_eq!(
            store.granted_scopes("0oa1").await.expect("read"),
            vec!["okta.apps.read", "okta.users.read"]
        );
        store
            .record_revocation("0oa1", "oag1")
            .await
            .expect("revoke");
        assert_eq!(
            store.granted_scopes("0oa1").await.expect("read"),
            vec!["okta.apps.read"]
        );
    }

    test_on_both_backends!(pending_key_becomes_active);
    async fn pending_key_becomes_active(store: Store) {
        store.record_app(&app()).await.expect("record");
        let key = SealedKey {
            key_id: "key-1".into(),
            purpose: KeyPurpose::Assertion,
            kid: "kid-1".into(),
            algorithm: "RS256".into(),
            public_jwk: "{}".into(),
            sealed: vec![1, 2, 3],
        };
        store.insert_pending_key(&key).await.expect("insert");
        assert_eq!(
            store
                .active_key("0oa1", KeyPurpose::Assertion)
                .await
                .expect("read"),
            None
        );
        store.activate_key("key-1", "0oa1").await.expect("activate");
        assert_eq!(
            store
                .active_key("0oa1", KeyPurpose::Assertion)
                .await
                .expect("read"),
            Some(key)
        );
        assert_eq!(
            store
                .active_key("0oa1", KeyPurpose::Dpop)
                .await
                .expect("read"),
            None
        );
        assert!(
            !format!(
                "{:?}",
                store.active_key("0oa1", KeyPurpose::Assertion).await
            )
            .contains("[1, 2, 3]")
        );

        store.set_dpop_bound("0oa1", true).await.expect("dpop");
        assert!(
            store
                .app("0oa1")
                .await
                .expect("read")
                .expect("app")
                .dpop_bound
        );
    }

    #[tokio::test]
    async fn rejects_other_urls() {
        let err = Store::open("mysql://localhost/db")
            .await
            .expect_err("unsupported");
        assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("\"mysql\""), "{message}");
        assert!(message.contains("sqlite://"), "{message}");
        assert!(message.contains("postgres://"), "{message}");
    }
}
