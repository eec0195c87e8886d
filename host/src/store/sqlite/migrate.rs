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
        3,
        "contact activity",
        include_str!("../../../../migrations/sqlite/0003_contact_activity.sql"),
    ),
    (
        4,
        "journey admin",
        include_str!("../../../../migrations/sqlite/0004_journey_admin.sql"),
    ),
    (
        5,
        "email",
        include_str!("../../../../migrations/sqlite/0005_email.sql"),
    ),
    (
        6,
        "waits",
        include_str!("../../../../migrations/sqlite/0006_waits.sql"),
    ),
    (
        8,
        "run effects",
        include_str!("../../../../migrations/sqlite/0008_run_effects.sql"),
    ),
    (
        9,
        "bucket time",
        include_str!("../../../../migrations/sqlite/0009_bucket_time.sql"),
    ),
    (
        10,
        "reconcile",
        include_str!("../../../../migrations/sqlite/0010_reconcile.sql"),
    ),
    (
        11,
        "bucket backfill",
        include_str!("../../../../migrations/sqlite/0011_bucket_backfill.sql"),
    ),
    (
        12,
        "timers by due",
        include_str!("../../../../migrations/sqlite/0012_timers_by_due.sql"),
    ),
    (
        13,
        "absence cursors",
        include_str!("../../../../migrations/sqlite/0013_absence_cursors.sql"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn applied_up_to(version: i64) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        for &(v, _, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v <= version) {
            conn.execute_batch(sql)
                .unwrap_or_else(|e| panic!("migration {v}: {e}"));
        }
        conn
    }

    #[test]
    fn the_email_migration_rebuilds_the_outbox_keeping_rows_constraints_and_indexes() {
        // Given a database before the email migration, with a sent and a queued email
        let conn = applied_up_to(2);
        conn.execute_batch(
            "INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'acme', 0);
             INSERT INTO runs (id, tenant_id, journey_id, module_hash, contact_key, status,
                 input, created_at, updated_at)
             VALUES ('r1', 't1', 'welcome', 'h', 'ada', 'completed', '{}', 0, 0);
             INSERT INTO emails (id, tenant_id, run_id, step_seq, contact_key, to_address,
                 template, subject, body, status, attempts, created_at, sent_at,
                 next_attempt_at)
             VALUES ('e1', 't1', 'r1', 0, 'ada', 'ada@example.com', 'welcome', 'Hi', 'Hello',
                 'sent', 1, 5, 6, 5),
                    ('e2', 't1', 'r1', 1, 'ada', 'ada@example.com', 'tips', 'Tips', 'More',
                 'queued', 0, 7, NULL, 7);",
        )
        .unwrap();

        // When it is applied
        let email = MIGRATIONS.iter().find(|(v, _, _)| *v == 5).unwrap().2;
        conn.execute_batch(email).unwrap();

        // Then the rows are kept, with their run's journey filled in
        let rows: Vec<(String, String, Option<String>, i64)> = conn
            .prepare("SELECT id, status, journey_id, attempts FROM emails ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("e1".into(), "sent".into(), Some("welcome".into()), 1),
                ("e2".into(), "queued".into(), Some("welcome".into()), 0),
            ]
        );
        // And `suppressed` is a status now, while unknown ones and a second email for one
        // step are still refused
        conn.execute(
            "UPDATE emails SET status = 'suppressed', suppressed_reason = 'unsubscribed' \
             WHERE id = 'e2'",
            [],
        )
        .unwrap();
        assert!(
            conn.execute("UPDATE emails SET status = 'bounced' WHERE id = 'e2'", [])
                .is_err()
        );
        assert!(
            conn.execute(
                "INSERT INTO emails (id, tenant_id, run_id, step_seq, contact_key, to_address, \
                 template, subject, body, status, created_at, next_attempt_at) \
                 VALUES ('e3', 't1', 'r1', 0, 'ada', 'a@b.c', 't', 's', 'b', 'queued', 0, 0)",
                [],
            )
            .is_err(),
            "UNIQUE (run_id, step_seq) survives"
        );
        // And the indexes are back on the new table
        let indexes: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'emails' \
                 AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexes,
            [
                "emails_by_contact",
                "emails_by_tenant",
                "emails_by_to",
                "emails_outbox"
            ]
        );
        // And the run can still be deleted (its emails keep their rows, unlinked)
        conn.execute("DELETE FROM runs WHERE id = 'r1'", [])
            .unwrap();
        let unlinked: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM emails WHERE run_id IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unlinked, 2);
    }
}
