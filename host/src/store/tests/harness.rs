//! The backends the suite runs against and the raw database handle ([`TestDb`]) a test uses
//! for the few things the store's API cannot do (count rows, put a row into a state the API
//! never produces).
//!
//! SQLite: a fresh database file in a temp dir, which [`TestDb`] reaches with a plain rusqlite
//! connection opened per call (on a blocking thread). PostgreSQL: only when
//! `WAYMARK_TEST_DATABASE_URL` is set (otherwise the test prints a one-line notice and passes);
//! each test gets a fresh database `waymark_t_<uuid>`, created through an admin connection to
//! that URL and dropped at the end (best-effort, even when the test fails).
//!
//! Raw SQL given to [`TestDb`] must be valid in both dialects: `$1` placeholders (on SQLite
//! `$N` is a named parameter, which the harness binds to the N-th argument), ids compared as `CAST(id AS TEXT) = $1` (PostgreSQL may store them
//! as uuid), JSON compared as `CAST(col AS TEXT)`. Anything dialect-specific gets a method.

use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreResult};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection};
use std::borrow::Cow;
use std::collections::BTreeMap;
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
        // Connections open per call: after the store has set the database up.
        TestDb(Arc::new(Inner::Sqlite { dir }))
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

    /// Which backend this is, for the few statements whose SQL differs (SQLite stores the
    /// tenant's number in `events` and `bucket_memberships`: migrations 0014 and 0016).
    pub(crate) fn backend(&self) -> Backend {
        match &*self.0 {
            Inner::Sqlite { .. } => Backend::Sqlite,
            Inner::Postgres { .. } => Backend::Postgres,
        }
    }

    /// The PostgreSQL pool, for a test that holds locks in a transaction of its own.
    pub(crate) fn pg_pool(&self) -> Option<&PgPool> {
        match &*self.0 {
            Inner::Sqlite { .. } => None,
            Inner::Postgres { pool, .. } => Some(pool),
        }
    }

    /// Run a statement binding `args` as text to `$1`, `$2` …; the rows it changed.
    pub(crate) async fn execute(
        &self,
        sql: &'static str,
        args: &[&str],
    ) -> Result<u64, sqlx::Error> {
        Ok(match &*self.0 {
            Inner::Sqlite { dir } => {
                let args = owned(args);
                let changed = on_sqlite(dir, move |conn| {
                    let mut statement = conn.prepare(sql)?;
                    bind_texts(&mut statement, &args)?;
                    statement.raw_execute()
                })
                .await
                .map_err(|e| sqlx::Error::Database(Box::new(SqliteError::new(e))))?;
                changed as u64
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
            Inner::Sqlite { dir } => {
                let args = owned(args);
                on_sqlite(dir, move |conn| {
                    let mut statement = conn.prepare(sql)?;
                    bind_texts(&mut statement, &args)?;
                    let mut rows = statement.raw_query();
                    let row = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                    row.get(0)
                })
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Inner::Postgres { pool, .. } => {
                let mut query = sqlx::query_scalar(sql);
                for arg in args {
                    query = query.bind(*arg);
                }
                query
                    .fetch_one(pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
        }
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

    /// How many rows of the tenant with id `tenant` each table holds, for every table the
    /// database's own catalog shows to hold tenants' rows: a `tenant_id` column, SQLite's
    /// tenant number (`tenant`, where a number no tenant has counts too: a deleted tenant's
    /// rows), or a `contact_id` alone (rows of the tenant's contacts, or of no contact). And
    /// `tenants` itself.
    pub(crate) async fn tenant_rows(&self, tenant: &str) -> BTreeMap<String, i64> {
        let tenant = tenant.to_owned();
        match &*self.0 {
            Inner::Sqlite { dir } => on_sqlite(dir, move |conn| {
                let columns: Vec<(String, String)> = conn
                    .prepare(
                        "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
                         WHERE m.type = 'table' AND p.name IN ('tenant_id', 'tenant', 'contact_id') \
                         ORDER BY m.name, p.name",
                    )?
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut counts = BTreeMap::new();
                for (table, column) in tenant_columns(columns) {
                    let sql = count_of_tenant(&table, &column, "?1");
                    let count = conn.query_row(&sql, [&tenant], |row| row.get(0))?;
                    counts.insert(table, count);
                }
                Ok(counts)
            })
            .await
            .expect("counting the tenant's rows"),
            Inner::Postgres { pool, .. } => {
                let columns: Vec<(String, String)> = sqlx::query_as(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() \
                     AND column_name IN ('tenant_id', 'contact_id') ORDER BY 1, 2",
                )
                .fetch_all(pool)
                .await
                .unwrap();
                let mut counts = BTreeMap::new();
                for (table, column) in tenant_columns(columns) {
                    let sql = count_of_tenant(&table, &column, "$1");
                    let count: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
                        .bind(&tenant)
                        .fetch_one(pool)
                        .await
                        .unwrap();
                    counts.insert(table, count);
                }
                counts
            }
        }
    }

    /// Give a run a status the schema's checks refuse (to test how unreadable rows are
    /// reported): the checks are bypassed the way each dialect allows.
    pub(crate) async fn force_run_status(&self, run_id: &str, status: &str) {
        match &*self.0 {
            Inner::Sqlite { dir } => {
                let (run_id, status) = (run_id.to_owned(), status.to_owned());
                on_sqlite(dir, move |conn| {
                    // Per connection, and this one is used for nothing else.
                    conn.pragma_update(None, "ignore_check_constraints", true)?;
                    conn.execute(
                        "UPDATE runs SET status = ?2 WHERE id = ?1",
                        [run_id, status],
                    )
                })
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
            // No connection outlives its call.
            Inner::Sqlite { .. } => {}
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

/// Of each table's candidate columns, the one that says whose a row is: `tenant_id`, else
/// `tenant`, else `contact_id`; plus `tenants` by its id.
fn tenant_columns(columns: Vec<(String, String)>) -> BTreeMap<String, String> {
    let rank = |column: &str| match column {
        "tenant_id" => 0,
        "tenant" => 1,
        _ => 2,
    };
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    for (table, column) in columns {
        match chosen.get(&table) {
            Some(current) if rank(current) <= rank(&column) => {}
            _ => {
                chosen.insert(table, column);
            }
        }
    }
    chosen.insert("tenants".into(), "id".into());
    chosen
}

/// `SELECT COUNT(*)` of the rows of the tenant whose id is the parameter `param`.
fn count_of_tenant(table: &str, column: &str, param: &str) -> String {
    let of_tenant = match column {
        "tenant" => format!(
            "tenant = (SELECT number FROM tenants WHERE id = {param}) \
             OR tenant NOT IN (SELECT number FROM tenants)"
        ),
        "contact_id" => format!(
            "contact_id IN (SELECT id FROM contacts WHERE tenant_id = {param}) \
             OR contact_id NOT IN (SELECT id FROM contacts)"
        ),
        other => format!("{other} = {param}"),
    };
    format!("SELECT COUNT(*) FROM \"{table}\" WHERE {of_tenant}")
}

fn sqlite_path(dir: &TempDir) -> PathBuf {
    dir.path().join("data").join("waymark.db")
}

/// Run `work` on a new connection to the SQLite test database, on a blocking thread.
async fn on_sqlite<T: Send + 'static>(
    dir: &TempDir,
    work: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
) -> rusqlite::Result<T> {
    let path = sqlite_path(dir);
    tokio::task::spawn_blocking(move || {
        let mut conn = rusqlite::Connection::open(&path)?;
        // As the store's own connections (the file is already in WAL mode).
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        work(&mut conn)
    })
    .await
    .expect("a SQLite test statement panicked")
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

/// Bind `args` as text to `$1`, `$2` … (SQLite numbers named parameters by first appearance,
/// not by name, so each is looked up by its name).
fn bind_texts(statement: &mut rusqlite::Statement<'_>, args: &[String]) -> rusqlite::Result<()> {
    for (i, arg) in args.iter().enumerate() {
        statement.raw_bind_parameter(format!("${}", i + 1).as_str(), arg)?;
    }
    Ok(())
}

/// A SQLite error reported as the database error of a `sqlx::Error` (what [`TestDb::execute`]
/// answers on either backend), so a test asks `is_unique_violation()` the same way on both.
#[derive(Debug)]
struct SqliteError {
    error: rusqlite::Error,
    message: String,
}

impl SqliteError {
    fn new(error: rusqlite::Error) -> SqliteError {
        let message = match &error {
            rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
            other => other.to_string(),
        };
        SqliteError { error, message }
    }
}

impl std::fmt::Display for SqliteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for SqliteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl DatabaseError for SqliteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        let code = self.error.sqlite_error()?.extended_code;
        Some(Cow::Owned(code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.error.sqlite_error().map(|e| e.extended_code) {
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                ErrorKind::UniqueViolation
            }
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => ErrorKind::ForeignKeyViolation,
            Some(ffi::SQLITE_CONSTRAINT_NOTNULL) => ErrorKind::NotNullViolation,
            Some(ffi::SQLITE_CONSTRAINT_CHECK) => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
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
