//! The backends the suite runs against and the raw database handle ([`TestDb`]) a test uses
//! for the few things the store's API cannot do (count rows, put a row into a state the API
//! never produces).
//!
//! SQLite: a fresh database file in a temp dir. PostgreSQL: only when
//! `WAYMARK_TEST_DATABASE_URL` is set (otherwise the test prints a one-line notice and passes);
//! each test gets a fresh database `waymark_t_<uuid>`, created through an admin connection to
//! that URL and dropped at the end (best-effort, even when the test fails).
//!
//! Raw SQL given to [`TestDb`] must be valid in both dialects: `$1` placeholders (SQLite reads
//! `$N` as the N-th bind), ids compared as `CAST(id AS TEXT) = $1` (PostgreSQL may store them
//! as uuid), JSON compared as `CAST(col AS TEXT)`. Anything dialect-specific gets a method.

use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreResult};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Connection};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// The environment variable naming a PostgreSQL server (any database on it) to test against.
pub(crate) const PG_URL_VAR: &str = "WAYMARK_TEST_DATABASE_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty (not yet migrated) database for one test. Cheap to clone.
#[derive(Clone)]
pub(crate) struct TestDb(Arc<Inner>);

enum Inner {
    Sqlite {
        /// Keeps the database file alive as long as the handle.
        dir: TempDir,
        pool: SqlitePool,
    },
    Postgres {
        /// The test database's URL.
        url: String,
        /// Where to connect to drop it.
        admin_url: String,
        name: String,
        pool: PgPool,
    },
}

impl TestDb {
    /// A fresh database on `backend`, or `None` (after a notice) when PostgreSQL is not
    /// configured.
    pub(crate) async fn create(backend: Backend, test: &str) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite().await),
            Backend::Postgres => match std::env::var(PG_URL_VAR) {
                Ok(url) if !url.trim().is_empty() => Some(Self::postgres(url.trim()).await),
                _ => {
                    println!("skipped {test} on PostgreSQL: set {PG_URL_VAR} to run it");
                    None
                }
            },
        }
    }

    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("waymark.db");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(10));
        // Lazy: the first connection opens after the store has set the database up.
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_lazy_with(options);
        TestDb(Arc::new(Inner::Sqlite { dir, pool }))
    }

    async fn postgres(server_url: &str) -> TestDb {
        let name = format!("waymark_t_{}", uuid::Uuid::now_v7().simple());
        let (mut admin, admin_url) = admin_connection(server_url).await;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        admin.close().await.ok();
        let url = with_database(server_url, &name);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        TestDb(Arc::new(Inner::Postgres {
            url,
            admin_url,
            name,
            pool,
        }))
    }

    /// A store on this database (migrating it the first time). Each call opens a new one, as
    /// a second host on the same database would.
    pub(crate) async fn open_store(&self) -> StoreResult<Arc<dyn Store>> {
        Ok(match &*self.0 {
            Inner::Sqlite { dir, .. } => Arc::new(SqliteStore::open(&sqlite_path(dir)).await?),
            Inner::Postgres { url, .. } => Arc::new(PgStore::connect(url).await?),
        })
    }

    /// Run a statement binding `args` as text to `$1`, `$2` …; the rows it changed.
    pub(crate) async fn execute(
        &self,
        sql: &'static str,
        args: &[&str],
    ) -> Result<u64, sqlx::Error> {
        Ok(match &*self.0 {
            Inner::Sqlite { pool, .. } => {
                let mut query = sqlx::query(sql);
                for arg in args {
                    query = query.bind(*arg);
                }
                query.execute(pool).await?.rows_affected()
            }
            Inner::Postgres { pool, .. } => {
                let mut query = sqlx::query(sql);
                for arg in args {
                    query = query.bind(*arg);
                }
                query.execute(pool).await?.rows_affected()
            }
        })
    }

    /// A `SELECT COUNT(*) …` binding `args` as text.
    pub(crate) async fn count(&self, sql: &'static str, args: &[&str]) -> i64 {
        match &*self.0 {
            Inner::Sqlite { pool, .. } => {
                let mut query = sqlx::query_scalar(sql);
                for arg in args {
                    query = query.bind(*arg);
                }
                query.fetch_one(pool).await
            }
            Inner::Postgres { pool, .. } => {
                let mut query = sqlx::query_scalar(sql);
                for arg in args {
                    query = query.bind(*arg);
                }
                query.fetch_one(pool).await
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Rows in `table` (a literal table name).
    pub(crate) async fn rows(&self, table: &'static str) -> i64 {
        let sql: &'static str = match table {
            "contacts" => "SELECT COUNT(*) FROM contacts",
            "contact_aliases" => "SELECT COUNT(*) FROM contact_aliases",
            "events" => "SELECT COUNT(*) FROM events",
            "runs" => "SELECT COUNT(*) FROM runs",
            "timers" => "SELECT COUNT(*) FROM timers",
            "emails" => "SELECT COUNT(*) FROM emails",
            "module_versions" => "SELECT COUNT(*) FROM module_versions",
            other => panic!("no row count for table {other}"),
        };
        self.count(sql, &[]).await
    }

    /// Give a run a status the schema's checks refuse (to test how unreadable rows are
    /// reported): the checks are bypassed the way each dialect allows.
    pub(crate) async fn force_run_status(&self, run_id: &str, status: &str) {
        match &*self.0 {
            Inner::Sqlite { pool, .. } => {
                let mut conn = pool.acquire().await.unwrap();
                sqlx::query("PRAGMA ignore_check_constraints = ON")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                sqlx::query("UPDATE runs SET status = $2 WHERE id = $1")
                    .bind(run_id)
                    .bind(status)
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                sqlx::query("PRAGMA ignore_check_constraints = OFF")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
            }
            Inner::Postgres { pool, .. } => {
                // A throwaway database: drop the CHECK constraints on runs.
                sqlx::query(
                    "DO $$ DECLARE c record; BEGIN \
                     FOR c IN SELECT conname FROM pg_constraint \
                     WHERE conrelid = 'runs'::regclass AND contype = 'c' LOOP \
                     EXECUTE format('ALTER TABLE runs DROP CONSTRAINT %I', c.conname); \
                     END LOOP; END $$",
                )
                .execute(pool)
                .await
                .unwrap();
                sqlx::query("UPDATE runs SET status = $2 WHERE CAST(id AS TEXT) = $1")
                    .bind(run_id)
                    .bind(status)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
    }

    /// Drop the database (PostgreSQL; best-effort). SQLite's temp dir goes with the handle.
    pub(crate) async fn cleanup(&self) {
        match &*self.0 {
            Inner::Sqlite { pool, .. } => pool.close().await,
            Inner::Postgres {
                admin_url,
                name,
                pool,
                ..
            } => {
                pool.close().await;
                let Ok(mut admin) = PgConnection::connect(admin_url).await else {
                    eprintln!("could not drop the test database {name}: no admin connection");
                    return;
                };
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(e) = sqlx::query(AssertSqlSafe(drop)).execute(&mut admin).await {
                    eprintln!("could not drop the test database {name}: {e}");
                }
                admin.close().await.ok();
            }
        }
    }
}

fn sqlite_path(dir: &TempDir) -> PathBuf {
    dir.path().join("data").join("waymark.db")
}

/// A connection to the server to create and drop databases: to the URL's own database, else
/// (when that does not exist) to `postgres`.
async fn admin_connection(server_url: &str) -> (PgConnection, String) {
    match PgConnection::connect(server_url).await {
        Ok(conn) => (conn, server_url.to_owned()),
        Err(first) => {
            let fallback = with_database(server_url, "postgres");
            match PgConnection::connect(&fallback).await {
                Ok(conn) => (conn, fallback),
                Err(e) => panic!("cannot connect to {PG_URL_VAR}: {first}; nor to {fallback}: {e}"),
            }
        }
    }
}

/// `url` with its database (the path) replaced by `name`, keeping any query string.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let prefix = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{prefix}/{name}?{query}"),
        None => format!("{prefix}/{name}"),
    }
}

#[test]
fn a_database_url_gets_its_database_replaced() {
    assert_eq!(
        with_database("postgres://u@h:5432/test", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h/test?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
