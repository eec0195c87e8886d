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
    (
        14,
        "tenant numbers",
        include_str!("../../../../migrations/sqlite/0014_tenant_numbers.sql"),
    ),
    (
        15,
        "active memberships by contact",
        include_str!("../../../../migrations/sqlite/0015_active_memberships_by_contact.sql"),
    ),
    (
        16,
        "membership tenant numbers",
        include_str!("../../../../migrations/sqlite/0016_membership_tenant_numbers.sql"),
    ),
    (
        17,
        "membership checks without value lists",
        include_str!("../../../../migrations/sqlite/0017_membership_checks.sql"),
    ),
    (
        18,
        "one membership index per person",
        include_str!("../../../../migrations/sqlite/0018_one_membership_index_per_person.sql"),
    ),
    (
        19,
        "module deploys",
        include_str!("../../../../migrations/sqlite/0019_module_deploys.sql"),
    ),
    (
        20,
        "email senders",
        include_str!("../../../../migrations/sqlite/0020_email_senders.sql"),
    ),
    (
        21,
        "operator keys and tenant suspension",
        include_str!("../../../../migrations/sqlite/0021_operator.sql"),
    ),
    (
        22,
        "tenant limits and fair claims",
        include_str!("../../../../migrations/sqlite/0022_tenant_limits.sql"),
    ),
    (
        23,
        "usage per tenant",
        include_str!("../../../../migrations/sqlite/0023_usage.sql"),
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

    /// The indexes of `table` the migrations named (not SQLite's automatic ones), by name.
    fn named_indexes(conn: &Connection, table: &str) -> Vec<String> {
        conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 \
             AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
        )
        .unwrap()
        .query_map([table], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
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
        let indexes = named_indexes(&conn, "emails");
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

    #[test]
    fn the_tenant_numbers_migration_keeps_every_event_under_its_tenant_and_the_key_rules() {
        // Given a database before tenant numbers, with events of two tenants under one key
        let conn = applied_up_to(13);
        conn.execute_batch(
            "INSERT INTO tenants (id, name, created_at) VALUES ('tenant-a', 'a', 0), \
                 ('tenant-b', 'b', 0);
             INSERT INTO events (id, tenant_id, contact_key, name, properties, occurred_at,
                 received_at, idempotency_key)
             VALUES ('e1', 'tenant-a', 'ada', 'signup', '{\"plan\":\"pro\"}', 1, 2, 'k1'),
                    ('e2', 'tenant-b', 'ada', 'signup', '{}', 3, 4, 'k1'),
                    ('e3', 'tenant-b', 'bob', 'login', '{}', 5, 6, NULL);",
        )
        .unwrap();

        // When it is applied
        let numbers = MIGRATIONS.iter().find(|(v, _, _)| *v == 14).unwrap().2;
        conn.execute_batch(numbers).unwrap();

        // Then each tenant has its own number and every event is kept under its tenant's
        // (id, tenant id, key, properties, occurred, received, idempotency key)
        type EventRow = (String, String, String, String, i64, i64, Option<String>);
        let rows: Vec<EventRow> = conn
            .prepare(
                "SELECT e.id, t.id, e.contact_key, e.properties, e.occurred_at, e.received_at, \
                 e.idempotency_key FROM events e JOIN tenants t ON t.number = e.tenant \
                 ORDER BY e.id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let row =
            |id: &str, tenant: &str, key: &str, properties: &str, at: i64, idem: Option<&str>| {
                (
                    id.to_owned(),
                    tenant.to_owned(),
                    key.to_owned(),
                    properties.to_owned(),
                    at,
                    at + 1,
                    idem.map(str::to_owned),
                )
            };
        assert_eq!(
            rows,
            [
                row("e1", "tenant-a", "ada", r#"{"plan":"pro"}"#, 1, Some("k1")),
                row("e2", "tenant-b", "ada", "{}", 3, Some("k1")),
                row("e3", "tenant-b", "bob", "{}", 5, None),
            ]
        );
        // And an idempotency key is still unique per tenant, and only per tenant
        let insert = |id: &str, tenant: &str, key: &str| {
            conn.execute(
                concat!(
                    "INSERT INTO events (id, tenant, contact_key, name, occurred_at, \
                     received_at, idempotency_key) VALUES (?1, ",
                    super::super::tenant_number!("?2"),
                    ", 'ada', 'x', 0, 0, ?3)"
                ),
                [id, tenant, key],
            )
        };
        assert!(insert("e4", "tenant-a", "k1").is_err());
        conn.execute(
            "INSERT INTO tenants (id, name, created_at, number) VALUES ('tenant-c', 'c', 0, 3)",
            [],
        )
        .unwrap();
        assert!(insert("e5", "tenant-c", "k1").is_ok());
        // And an event of no tenant is refused
        assert!(insert("e6", "tenant-unknown", "k2").is_err());
        // And the indexes the queries seek are back
        let indexes = named_indexes(&conn, "events");
        assert_eq!(indexes, ["events_by_contact", "events_by_name"]);
    }

    #[test]
    fn the_membership_tenant_numbers_migration_keeps_every_row_and_the_one_active_rule() {
        // Given a database before it, with an active and a closed membership of one person
        // in one bucket, and an active one under another tenant
        let conn = applied_up_to(15);
        conn.execute_batch(
            "INSERT INTO tenants (id, name, created_at, number) VALUES ('tenant-a', 'a', 0, 1), \
                 ('tenant-b', 'b', 0, 2);
             INSERT INTO bucket_memberships (id, tenant_id, bucket_id, contact_key, status,
                 entry_count, source, entered_at, left_at, leave_reason, expires_at,
                 max_dwell_at, last_evaluated_at, updated_at, dwell_anchor_at, dwell_state)
             VALUES ('m1', 'tenant-a', 'pro', 'ada', 'left', 1, 'event', 1, 2, 'criteria',
                     NULL, NULL, 2, 2, NULL, '{}'),
                    ('m2', 'tenant-a', 'pro', 'ada', 'active', 2, 'reconcile', 3, NULL, NULL,
                     9, 10, 3, 3, 1, '{\"after-1\":4}'),
                    ('m3', 'tenant-b', 'pro', 'ada', 'active', 1, 'backfill', 5, NULL, NULL,
                     NULL, NULL, 5, 5, NULL, '{}');",
        )
        .unwrap();

        // When it is applied
        let numbers = MIGRATIONS.iter().find(|(v, _, _)| *v == 16).unwrap().2;
        conn.execute_batch(numbers).unwrap();

        // Then every row is kept, column for column, under its tenant's number
        type Row = (
            String,
            String,
            String,
            i64,
            String,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Row> = conn
            .prepare(
                "SELECT m.id, t.id, m.status, m.entry_count, m.source, m.expires_at, \
                 m.dwell_state FROM bucket_memberships m JOIN tenants t ON t.number = m.tenant \
                 ORDER BY m.id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let row = |id: &str, tenant: &str, status: &str, epoch: i64, source: &str| {
            (
                id.to_owned(),
                tenant.to_owned(),
                status.to_owned(),
                epoch,
                source.to_owned(),
            )
        };
        assert_eq!(
            rows.iter()
                .map(|r| (r.0.clone(), r.1.clone(), r.2.clone(), r.3, r.4.clone()))
                .collect::<Vec<_>>(),
            [
                row("m1", "tenant-a", "left", 1, "event"),
                row("m2", "tenant-a", "active", 2, "reconcile"),
                row("m3", "tenant-b", "active", 1, "backfill"),
            ]
        );
        assert_eq!(rows[1].5, Some(9));
        assert_eq!(rows[1].6.as_deref(), Some(r#"{"after-1":4}"#));
        // And one person still has one active membership per bucket, per tenant
        let join = |id: &str, tenant: &str, bucket: &str| {
            conn.execute(
                concat!(
                    "INSERT INTO bucket_memberships (id, tenant, bucket_id, contact_key, \
                     status, entry_count, source, entered_at, last_evaluated_at, updated_at) \
                     VALUES (?1, ",
                    super::super::tenant_number!("?2"),
                    ", ?3, 'ada', 'active', 3, 'event', 6, 6, 6)"
                ),
                [id, tenant, bucket],
            )
        };
        assert!(join("m4", "tenant-a", "pro").is_err());
        assert!(join("m5", "tenant-a", "team").is_ok());
        // And a membership of no tenant is refused
        assert!(join("m6", "tenant-unknown", "pro").is_err());
        // And every index is back, on the tenant's number
        assert_eq!(
            named_indexes(&conn, "bucket_memberships"),
            [
                "bucket_memberships_by_contact",
                "bucket_memberships_evaluated",
                "bucket_memberships_expires",
                "bucket_memberships_left",
                "bucket_memberships_max_dwell",
                "bucket_memberships_members",
                "bucket_memberships_one_active",
            ]
        );
    }

    #[test]
    fn the_membership_checks_migration_keeps_every_row_and_still_refuses_what_the_checks_did() {
        // Given a database before it, with a closed and an active membership of one person
        let conn = applied_up_to(16);
        conn.execute_batch(
            "INSERT INTO tenants (id, name, created_at, number) VALUES ('tenant-a', 'a', 0, 1);
             INSERT INTO bucket_memberships (id, tenant, bucket_id, contact_key, status,
                 entry_count, source, entered_at, left_at, leave_reason, expires_at,
                 max_dwell_at, last_evaluated_at, updated_at, dwell_anchor_at, dwell_state)
             VALUES ('m1', 1, 'pro', 'ada', 'left', 1, 'event', 1, 2, 'maxDwell',
                     NULL, NULL, 2, 2, NULL, '{}'),
                    ('m2', 1, 'pro', 'ada', 'active', 2, 'backfill', 3, NULL, NULL,
                     9, 10, 3, 3, 1, '{\"after-1\":4}');",
        )
        .unwrap();

        // When it is applied
        let checks = MIGRATIONS.iter().find(|(v, _, _)| *v == 17).unwrap().2;
        conn.execute_batch(checks).unwrap();

        // Then every row is kept, column for column
        let dump = |conn: &Connection| -> Vec<String> {
            conn.prepare(
                "SELECT json_array(id, tenant, bucket_id, contact_key, status, entry_count, \
                 source, entered_at, left_at, leave_reason, expires_at, max_dwell_at, \
                 last_evaluated_at, updated_at, dwell_anchor_at, dwell_state) \
                 FROM bucket_memberships ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        assert_eq!(
            dump(&conn),
            [
                r#"["m1",1,"pro","ada","left",1,"event",1,2,"maxDwell",null,null,2,2,null,"{}"]"#,
                r#"["m2",1,"pro","ada","active",2,"backfill",3,null,null,9,10,3,3,1,"{\"after-1\":4}"]"#,
            ]
        );
        // And the checks refuse what they refused before, and accept what they accepted
        let insert = |id: &str, status: &str, source: &str, reason: Option<&str>| {
            conn.execute(
                "INSERT INTO bucket_memberships (id, tenant, bucket_id, contact_key, status, \
                 entry_count, source, entered_at, leave_reason, last_evaluated_at, updated_at) \
                 VALUES (?1, 1, 'team', ?1, ?2, 1, ?3, 6, ?4, 6, 6)",
                rusqlite::params![id, status, source, reason],
            )
        };
        assert!(insert("m3", "gone", "event", None).is_err());
        assert!(insert("m4", "left", "cron", Some("criteria")).is_err());
        assert!(insert("m5", "left", "manual", Some("bored")).is_err());
        assert!(insert("m6", "left", "reconcile", Some("deleted")).is_ok());
        assert!(insert("m7", "active", "manual", None).is_ok());
        // And one person still has one active membership per bucket
        assert!(
            conn.execute(
                "INSERT INTO bucket_memberships (id, tenant, bucket_id, contact_key, status, \
                 entry_count, source, entered_at, last_evaluated_at, updated_at) \
                 VALUES ('m8', 1, 'pro', 'ada', 'active', 3, 'event', 6, 6, 6)",
                [],
            )
            .is_err()
        );
        // And every index is back
        assert_eq!(
            named_indexes(&conn, "bucket_memberships"),
            [
                "bucket_memberships_by_contact",
                "bucket_memberships_evaluated",
                "bucket_memberships_expires",
                "bucket_memberships_left",
                "bucket_memberships_max_dwell",
                "bucket_memberships_members",
                "bucket_memberships_one_active",
            ]
        );
    }

    #[test]
    fn the_one_index_per_person_migration_keeps_the_one_active_rule_and_every_left_row() {
        // Given a database before it, with two left memberships and an active one of ada's
        let conn = applied_up_to(17);
        conn.execute_batch(
            "INSERT INTO tenants (id, name, created_at, number) VALUES ('tenant-a', 'a', 0, 1);
             INSERT INTO bucket_memberships (id, tenant, bucket_id, contact_key, status,
                 entry_count, source, entered_at, left_at, leave_reason, last_evaluated_at,
                 updated_at)
             VALUES ('m1', 1, 'pro', 'ada', 'left', 1, 'event', 1, 2, 'criteria', 2, 2),
                    ('m2', 1, 'pro', 'ada', 'left', 2, 'event', 3, 4, 'criteria', 4, 4),
                    ('m3', 1, 'pro', 'ada', 'active', 3, 'event', 5, NULL, NULL, 5, 5);",
        )
        .unwrap();

        // When it is applied
        let one_index = MIGRATIONS.iter().find(|(v, _, _)| *v == 18).unwrap().2;
        conn.execute_batch(one_index).unwrap();

        // Then the rows are all there, and one index by person replaces the two
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM bucket_memberships", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3);
        assert_eq!(
            named_indexes(&conn, "bucket_memberships"),
            [
                "bucket_memberships_by_person",
                "bucket_memberships_evaluated",
                "bucket_memberships_expires",
                "bucket_memberships_left",
                "bucket_memberships_max_dwell",
                "bucket_memberships_members",
            ]
        );
        // And a second active row of ada in pro is refused, by the conflict target ingest uses
        let join = |id: &str, bucket: &str| -> usize {
            conn.execute(
                "INSERT INTO bucket_memberships (id, tenant, bucket_id, contact_key, status, \
                 entry_count, source, entered_at, last_evaluated_at, updated_at) \
                 VALUES (?1, 1, ?2, 'ada', 'active', 4, 'event', 6, 6, 6) \
                 ON CONFLICT (tenant, contact_key, bucket_id, \
                 (CASE WHEN status = 'active' THEN '' ELSE id END)) DO NOTHING",
                rusqlite::params![id, bucket],
            )
            .unwrap()
        };
        assert_eq!(join("m4", "pro"), 0);
        assert_eq!(join("m5", "team"), 1);
        // And once the active row leaves, ada can join again, and the left rows never collide
        conn.execute(
            "UPDATE bucket_memberships SET status = 'left', left_at = 7 WHERE id = 'm3'",
            [],
        )
        .unwrap();
        assert_eq!(join("m6", "pro"), 1);
    }
}
