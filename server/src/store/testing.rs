//! Test support for the store: throwaway PostgreSQL databases, and a macro
//! that runs one test body on both backends.
//!
//! The PostgreSQL tests need a running server. They connect to the URL in
//! [`POSTGRES_URL_ENV`], or to [`DEFAULT_POSTGRES_URL`] when it is unset,
//! and panic when the server cannot be reached, so that a run without
//! PostgreSQL fails instead of skipping tests.

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use super::Store;

/// The environment variable with the URL of a PostgreSQL database whose
/// user may create and drop databases.
pub const POSTGRES_URL_ENV: &str = "REGISTRAR_TEST_POSTGRES_URL";

/// The PostgreSQL URL used when [`POSTGRES_URL_ENV`] is unset.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Returns the URL of the PostgreSQL database that creates and drops the
/// test databases.
pub fn admin_url() -> String {
    std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string())
}

/// An empty PostgreSQL database of its own for one test, dropped with this
/// value.
///
/// NOTE: a test process that is killed leaves its databases behind. They are
/// named `registrar_test_<hex>` and can be dropped by hand.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a database named `registrar_test_<random hex>` on the server
    /// of [`admin_url`].
    ///
    /// # Panics
    ///
    /// Panics when PostgreSQL cannot be reached or rejects the creation.
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let mut connection = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "failed to connect to PostgreSQL at {} ({error}). The store tests need a \
                     running PostgreSQL server. Start one on 127.0.0.1:5432, or set {POSTGRES_URL_ENV} \
                     to the URL of a database whose user may create databases",
                    without_password(&admin_url)
                )
            });
        let name = format!("registrar_test_{:016x}", rand::random::<u64>());
        connection
            .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|error| panic!("failed to create the test database {name}: {error}"));
        connection.close().await.ok();

        let mut url = url::Url::parse(&admin_url)
            .unwrap_or_else(|error| panic!("{POSTGRES_URL_ENV} is not a valid URL: {error}"));
        url.set_path(&format!("/{name}"));
        Self {
            admin_url,
            name,
            url: url.into(),
        }
    }

    /// Returns the URL of the new database, with the user, password, host
    /// and parameters of [`admin_url`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Returns the name of the new database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a store on the new database.
    ///
    /// # Panics
    ///
    /// Panics when the store fails to open.
    pub async fn open_store(&self) -> Store {
        Store::open(&self.url)
            .await
            .unwrap_or_else(|error| panic!("failed to open a store on {}: {error}", self.name))
    }
}

impl Drop for TestDatabase {
    /// Drops the database and ends its remaining sessions. The work runs on
    /// a thread with its own runtime, because `drop` cannot await and may run
    /// inside a test's runtime, which must not be blocked on itself.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(sqlx::Error::Io)?;
            runtime.block_on(async {
                let mut connection = PgConnection::connect(&admin_url).await?;
                connection
                    .execute(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await?;
                connection.close().await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                eprintln!(
                    "warning: failed to drop the test database {}: {error}",
                    self.name
                );
            }
            Err(_) => {
                eprintln!(
                    "warning: failed to drop the test database {}: the dropping thread panicked",
                    self.name
                );
            }
        }
    }
}

/// Returns `url` with its password removed, for messages.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Setting a password fails only for URLs that cannot have one.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.into()
        }
        Err(_) => format!("the URL in {POSTGRES_URL_ENV}"),
    }
}

/// Opens an empty in-memory SQLite store.
///
/// # Panics
///
/// Panics when the store fails to open.
pub async fn sqlite_store() -> Store {
    Store::open("sqlite::memory:")
        .await
        .expect("an in-memory SQLite store opens")
}

/// Turns `async fn NAME(store: Store)` into two tests, `NAME::sqlite` and
/// `NAME::postgres`, that run it on an in-memory SQLite store and on a store
/// in a new PostgreSQL database. Invoke it next to the function:
///
/// ```ignore
/// test_on_both_backends!(app_round_trip);
/// async fn app_round_trip(store: Store) { ... }
/// ```
#[cfg(test)]
macro_rules! test_on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::store::testing::sqlite_store().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                let database = $crate::store::testing::TestDatabase::create().await;
                super::$name(database.open_store().await).await;
            }
        }
    };
}

#[cfg(test)]
pub(crate) use test_on_both_backends;
