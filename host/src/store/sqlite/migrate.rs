//! The SQLite schema migrations: the files of `migrations/sqlite`, embedded in the binary and
//! applied in order at open, each in its own transaction, recorded with a checksum so an
//! edited migration is refused rather than silently skipped.

use crate::store::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};

/// (version, description, SQL). A new migration is a new file and a new line here.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "buckets",
        include_str!("../../../../migrations/sqlite/0002_buckets.sql"),
    ),
    (
        4,
        "journey admin",
        include_str!("../../../../migrations/sqlite/0004_journey_admin.sql"),
    ),
];

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Apply the migrations this database lacks. Safe against another process migrating the same
/// file at once: each step re-checks under the write lock.
pub(super) fn run(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS waymark_migrations (
             version     INTEGER NOT NULL PRIMARY KEY,
             description TEXT    NOT NULL,
             checksum    TEXT    NOT NULL,
             applied_at  INTEGER NOT NULL
         )",
    )?;
    for &(version, description, sql) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied: Option<String> = tx
            .query_row(
                "SELECT checksum FROM waymark_migrations WHERE version = ?1",
                [version],
                |row| row.get(0),
            )
            .optional()?;
        match applied {
            Some(recorded) if recorded == checksum(sql) => continue,
            Some(_) => {
                return Err(StoreError::Open(format!(
                    "migration {version} ({description}) was changed after this database \
                     applied it; restore the original file or start from a new database"
                )));
            }
            None => {}
        }
        tx.execute_batch(sql).map_err(|e| {
            StoreError::Open(format!("migration {version} ({description}) failed: {e}"))
        })?;
        tx.execute(
            "INSERT INTO waymark_migrations (version, description, checksum, applied_at) \
             VALUES (?1, ?2, ?3, CAST(unixepoch('subsec') * 1000 AS INTEGER))",
            rusqlite::params![version, description, checksum(sql)],
        )?;
        tx.commit()?;
    }
    Ok(())
}
