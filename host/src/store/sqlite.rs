//! The SQLite backend of [`Store`]: the embedded default, one WAL file under the data dir.
//!
//! SQLite has a single writer. Every write goes through [`SqliteStore::write`], which queues
//! writers of this process on an async mutex (fair, no busy-polling) and then opens the
//! transaction with `BEGIN IMMEDIATE`, so the write lock is taken up front and a writer from
//! another process (the CLI, a second host on the same file) waits on the busy timeout instead
//! of failing to upgrade a read lock. Readers use the pool freely: WAL lets them run beside the
//! writer.
//!
//! Two clocks meet here: `due_at`, `created_at`, `wake_at` … are on the host clock (which a dev
//! may advance), while leases (`lease_until`) and the outbox's `next_attempt_at` are on the real
//! clock, so advancing the dev clock never breaks a claim.

use super::{
    ActivationCommit, ActivationInput, ApiKeyRecord, ClaimedRun, DeliveryResult, EmailFilter,
    EmailRecord, EmailStatus, IngestOutcome, Lease, ModuleVersionRecord, NewApiKey, NewEvent,
    OutboxEmail, RunCandidate, RunFilter, RunRecord, RunTransition, Scope, SkippedRun, StartedRun,
    Store, StoreError, StoreResult, Tenant,
};
use crate::clock::{Clock, Timestamp};
use crate::contacts::{merge_properties, normalize_email};
use crate::ids::{ApiKeyId, EmailId, EventId, RunId, TenantId};
use crate::journeys::journal::{JournalEntry, StepKind};
use crate::journeys::{PersonSnapshot, PriorRuns, RunInput, RunStatus, TriggerEvent};
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, SqliteTransaction};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Reader connections (WAL readers run concurrently; writes are serialised anyway).
const MAX_CONNECTIONS: u32 = 8;
/// List endpoints: the default page when the filter says 0, and the cap.
const DEFAULT_LIST_LIMIT: u32 = 100;
const MAX_LIST_LIMIT: u32 = 1000;
/// Rows per multi-row INSERT (well under SQLite's bound-variable limit).
const INSERT_CHUNK: usize = 200;
const CLOCK_OFFSET_KEY: &str = "clock_offset_ms";

/// The live statuses, as SQL: a run in one of them holds the one-live-run slot and may have a
/// timer. Must match the partial unique index `runs_one_live_per_contact`.
macro_rules! live_statuses {
    () => {
        "('active', 'waiting')"
    };
}

macro_rules! run_columns {
    () => {
        "id, tenant_id, journey_id, module_hash, contact_key, status, created_at, updated_at, \
         wake_at, activations, error"
    };
}

macro_rules! email_columns {
    () => {
        "id, tenant_id, run_id, contact_key, to_address, template, subject, body, status, \
         attempts, last_error, created_at, sent_at"
    };
}

/// The schema migrations, embedded in the binary. Built by hand rather than with
/// `sqlx::migrate!` because the workspace enables sqlx without its `macros` feature; the
/// version, description and checksum are exactly what `migrate!` derives from the file names.
fn migrator() -> Migrator {
    use sqlx::SqlSafeStr;
    Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        include_str!("../../../migrations/sqlite/0001_init.sql").into_sql_str(),
        false,
    )])
}

/// The SQLite store. Cheap to clone (the pool and the writer lock are shared).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Serialises this process's write transactions (SQLite has one writer at a time).
    writer: Arc<Mutex<()>>,
}

impl SqliteStore {
    /// Open (creating the file and its directory if needed) and migrate the database at `path`.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        migrator().run(&pool).await?;
        Ok(SqliteStore {
            pool,
            writer: Arc::new(Mutex::new(())),
        })
    }

    /// Start a write transaction: wait for this process's writer turn, then `BEGIN IMMEDIATE`.
    /// Drop the transaction (or commit it) before the guard: declare the guard first.
    async fn write(&self) -> StoreResult<(MutexGuard<'_, ()>, SqliteTransaction<'static>)> {
        let guard = self.writer.lock().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok((guard, tx))
    }

    /// The run, its input and its journal, read in one snapshot; scoped to `tenant` if given.
    async fn activation(
        &self,
        tenant: Option<&TenantId>,
        run_id: &RunId,
    ) -> StoreResult<Option<ActivationInput>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            ", input FROM runs WHERE id = ?"
        ))
        .bind(run_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let run = run_from_row(&row)?;
        if tenant.is_some_and(|t| *t != run.tenant_id) {
            tx.rollback().await?;
            return Ok(None);
        }
        let input: RunInput = parse_json("run input", row.try_get::<&str, _>("input")?)?;
        let journal = sqlx::query(
            "SELECT seq, kind, request, response, recorded_at FROM journal \
             WHERE run_id = ? ORDER BY seq",
        )
        .bind(run_id.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(journal_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await?;
        Ok(Some(ActivationInput {
            run,
            input,
            journal,
        }))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(Tenant {
                id: TenantId(row.try_get("id")?),
                name: row.try_get("name")?,
                created_at: Timestamp(row.try_get("created_at")?),
            })
        })
        .transpose()
    }

    async fn create_tenant(&self, name: &str, now: Timestamp) -> StoreResult<Tenant> {
        let tenant = Tenant {
            id: TenantId::generate(),
            name: name.to_owned(),
            created_at: now,
        };
        let (_writer, mut tx) = self.write().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
            .bind(tenant.id.as_str())
            .bind(&tenant.name)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(tenant)
    }

    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<ApiKeyRecord> {
        let (_writer, mut tx) = self.write().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, key_hash, scopes, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(key.id.as_str())
        .bind(key.tenant_id.as_str())
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(scopes_to_text(&key.scopes))
        .bind(key.created_at.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ApiKeyRecord {
            id: key.id,
            tenant_id: key.tenant_id,
            name: key.name,
            scopes: key.scopes,
            created_at: key.created_at,
            revoked_at: None,
        })
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, name, scopes, created_at, revoked_at FROM api_keys \
             WHERE key_hash = ? AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(ApiKeyRecord {
                id: ApiKeyId(row.try_get("id")?),
                tenant_id: TenantId(row.try_get("tenant_id")?),
                name: row.try_get("name")?,
                scopes: scopes_from_text(row.try_get("scopes")?)?,
                created_at: Timestamp(row.try_get("created_at")?),
                revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
            })
        })
        .transpose()
    }

    async fn record_module_version(&self, version: &ModuleVersionRecord) -> StoreResult<()> {
        let (_writer, mut tx) = self.write().await?;
        sqlx::query(
            "INSERT INTO module_versions (tenant_id, hash, name, manifest, loaded_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, hash) DO NOTHING",
        )
        .bind(version.tenant_id.as_str())
        .bind(&version.hash)
        .bind(&version.name)
        .bind(version.manifest.to_string())
        .bind(version.loaded_at.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ingest(
        &self,
        event: NewEvent,
        candidates: &[RunCandidate],
    ) -> StoreResult<IngestOutcome> {
        let (_writer, mut tx) = self.write().await?;
        let tenant = event.tenant_id.as_str();

        // 1. Dedupe: a used idempotency key changes nothing at all.
        if let Some(key) = &event.idempotency_key {
            let original: Option<String> = sqlx::query_scalar(
                "SELECT id FROM events WHERE tenant_id = ? AND idempotency_key = ?",
            )
            .bind(tenant)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(original) = original {
                tx.rollback().await?;
                return Ok(IngestOutcome::Duplicate {
                    event_id: EventId(original),
                });
            }
        }

        // 2. Upsert the contact.
        let existing =
            sqlx::query("SELECT email, properties FROM contacts WHERE tenant_id = ? AND key = ?")
                .bind(tenant)
                .bind(&event.contact_key)
                .fetch_optional(&mut *tx)
                .await?;
        let person = match existing {
            None => {
                let mut properties = Map::new();
                merge_properties(&mut properties, &event.contact_properties);
                sqlx::query(
                    "INSERT INTO contacts \
                     (tenant_id, key, email, properties, first_seen_at, last_seen_at) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(tenant)
                .bind(&event.contact_key)
                .bind(event.email.as_deref())
                .bind(to_json("contact properties", &properties)?)
                .bind(event.received_at.0)
                .bind(event.received_at.0)
                .execute(&mut *tx)
                .await?;
                PersonSnapshot {
                    key: event.contact_key.clone(),
                    email: event.email.clone(),
                    properties,
                }
            }
            Some(row) => {
                let mut properties =
                    parse_object("contact properties", row.try_get("properties")?)?;
                merge_properties(&mut properties, &event.contact_properties);
                let email = event
                    .email
                    .clone()
                    .or(row.try_get::<Option<String>, _>("email")?);
                sqlx::query(
                    "UPDATE contacts SET email = ?, properties = ?, \
                     last_seen_at = MAX(last_seen_at, ?) WHERE tenant_id = ? AND key = ?",
                )
                .bind(email.as_deref())
                .bind(to_json("contact properties", &properties)?)
                .bind(event.received_at.0)
                .bind(tenant)
                .bind(&event.contact_key)
                .execute(&mut *tx)
                .await?;
                PersonSnapshot {
                    key: event.contact_key.clone(),
                    email,
                    properties,
                }
            }
        };

        // 3. Store the event.
        sqlx::query(
            "INSERT INTO events (id, tenant_id, contact_key, name, properties, occurred_at, \
             received_at, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(event.id.as_str())
        .bind(tenant)
        .bind(&event.contact_key)
        .bind(&event.name)
        .bind(to_json("event properties", &event.event_properties)?)
        .bind(event.occurred_at.0)
        .bind(event.received_at.0)
        .bind(event.idempotency_key.as_deref())
        .execute(&mut *tx)
        .await?;

        // 4. Start the runs the entry limits admit.
        let mut started = Vec::new();
        let mut skipped = Vec::new();
        if !candidates.is_empty() {
            let input = to_json(
                "run input",
                &RunInput {
                    person,
                    trigger: TriggerEvent {
                        name: event.name.clone(),
                        occurred_at: event.occurred_at,
                        properties: event.event_properties.clone(),
                    },
                },
            )?;
            for candidate in candidates {
                let prior =
                    prior_runs(&mut tx, tenant, &event.contact_key, &candidate.journey_id).await?;
                if let Err(reason) = candidate.entry_limit.admits(&prior, event.received_at) {
                    skipped.push(SkippedRun {
                        journey_id: candidate.journey_id.clone(),
                        reason,
                    });
                    continue;
                }
                let run_id = RunId::generate();
                sqlx::query(
                    "INSERT INTO runs (id, tenant_id, journey_id, module_hash, contact_key, \
                     status, input, created_at, updated_at, activations) \
                     VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, 0)",
                )
                .bind(run_id.as_str())
                .bind(tenant)
                .bind(&candidate.journey_id)
                .bind(&candidate.module_hash)
                .bind(&event.contact_key)
                .bind(&input)
                .bind(event.received_at.0)
                .bind(event.received_at.0)
                .execute(&mut *tx)
                .await?;
                sqlx::query("INSERT INTO timers (run_id, tenant_id, due_at) VALUES (?, ?, ?)")
                    .bind(run_id.as_str())
                    .bind(tenant)
                    .bind(event.received_at.0)
                    .execute(&mut *tx)
                    .await?;
                started.push(StartedRun {
                    run_id,
                    journey_id: candidate.journey_id.clone(),
                });
            }
        }

        tx.commit().await?;
        Ok(IngestOutcome::Stored {
            event_id: event.id,
            started,
            skipped,
        })
    }

    async fn claim_due_runs(
        &self,
        now: Timestamp,
        lease: &Lease,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedRun>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (_writer, mut tx) = self.write().await?;
        // Timers of runs that are no longer live are never claimed (whoever ends a run outside
        // an activation should delete its timer in the same transaction).
        let rows = sqlx::query(concat!(
            "UPDATE timers SET lease_owner = ?, lease_until = ?, attempts = attempts + 1 \
             WHERE run_id IN (\
                 SELECT t.run_id FROM timers t JOIN runs r ON r.id = t.run_id \
                 WHERE t.due_at <= ? AND (t.lease_until IS NULL OR t.lease_until < ?) \
                 AND r.status IN ",
            live_statuses!(),
            " ORDER BY t.due_at, t.run_id LIMIT ?) \
             RETURNING run_id, tenant_id, due_at"
        ))
        .bind(&lease.owner)
        .bind(lease.until_real.0)
        .bind(now.0)
        .bind(lease.now_real.0)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>("due_at")?,
                    ClaimedRun {
                        run_id: RunId(row.try_get("run_id")?),
                        tenant_id: TenantId(row.try_get("tenant_id")?),
                    },
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING does not keep the subquery's order.
        claimed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.run_id.cmp(&b.1.run_id)));
        Ok(claimed.into_iter().map(|(_, run)| run).collect())
    }

    async fn load_activation(&self, run_id: &RunId) -> StoreResult<Option<ActivationInput>> {
        self.activation(None, run_id).await
    }

    async fn commit_activation(&self, commit: ActivationCommit) -> StoreResult<bool> {
        let (_writer, mut tx) = self.write().await?;
        let run_id = commit.run_id.as_str();
        let tenant = commit.tenant_id.as_str();

        let state = sqlx::query(
            "SELECT r.status, t.lease_owner FROM runs r LEFT JOIN timers t ON t.run_id = r.id \
             WHERE r.id = ? AND r.tenant_id = ?",
        )
        .bind(run_id)
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        let still_ours = match state {
            None => false,
            Some(row) => {
                let status = parse_run_status(row.try_get("status")?)?;
                let owner: Option<String> = row.try_get("lease_owner")?;
                !status.is_terminal() && owner.as_deref() == Some(commit.lease_owner.as_str())
            }
        };
        if !still_ours {
            tx.rollback().await?;
            return Ok(false);
        }

        for chunk in commit.journal.chunks(INSERT_CHUNK) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO journal (run_id, seq, tenant_id, kind, request, response, \
                 recorded_at) ",
            );
            insert.push_values(chunk, |mut row, entry| {
                row.push_bind(run_id)
                    .push_bind(i64::from(entry.seq))
                    .push_bind(tenant)
                    .push_bind(entry.kind.as_str())
                    .push_bind(entry.request.to_string())
                    .push_bind(entry.response.to_string())
                    .push_bind(entry.recorded_at.0);
            });
            insert.build().execute(&mut *tx).await?;
        }

        // A new email is deliverable at once: `next_attempt_at` is on the real clock.
        let queued_at = Clock::real_now().0;
        for chunk in commit.emails.chunks(INSERT_CHUNK) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO emails (id, tenant_id, run_id, step_seq, contact_key, to_address, \
                 template, subject, body, status, attempts, created_at, next_attempt_at) ",
            );
            insert.push_values(chunk, |mut row, email| {
                row.push_bind(email.id.as_str())
                    .push_bind(email.tenant_id.as_str())
                    .push_bind(email.run_id.as_str())
                    .push_bind(i64::from(email.step_seq))
                    .push_bind(email.contact_key.as_str())
                    .push_bind(normalize_email(&email.to).unwrap_or_else(|| email.to.clone()))
                    .push_bind(email.template.as_str())
                    .push_bind(email.subject.as_str())
                    .push_bind(email.body.as_str())
                    .push_bind(EmailStatus::Queued.as_str())
                    .push_bind(0_i64)
                    .push_bind(email.created_at.0)
                    .push_bind(queued_at);
            });
            insert.build().execute(&mut *tx).await?;
        }

        match &commit.transition {
            RunTransition::Waiting { wake_at } => {
                sqlx::query(
                    "UPDATE runs SET status = 'waiting', wake_at = ?, updated_at = ?, \
                     activations = activations + 1, error = NULL WHERE id = ?",
                )
                .bind(wake_at.0)
                .bind(commit.now.0)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE timers SET due_at = ?, lease_owner = NULL, lease_until = NULL, \
                     attempts = 0 WHERE run_id = ?",
                )
                .bind(wake_at.0)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
            }
            RunTransition::Completed | RunTransition::Failed { .. } => {
                let (status, error) = match &commit.transition {
                    RunTransition::Failed { error } => (RunStatus::Failed, Some(error.as_str())),
                    _ => (RunStatus::Completed, None),
                };
                sqlx::query(
                    "UPDATE runs SET status = ?, error = ?, wake_at = NULL, updated_at = ?, \
                     activations = activations + 1 WHERE id = ?",
                )
                .bind(status.as_str())
                .bind(error)
                .bind(commit.now.0)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM timers WHERE run_id = ?")
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }

        tx.commit().await?;
        Ok(true)
    }

    async fn release_run(
        &self,
        run_id: &RunId,
        lease_owner: &str,
        retry_at: Timestamp,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write().await?;
        sqlx::query(
            "UPDATE timers SET lease_owner = NULL, lease_until = NULL, due_at = ? \
             WHERE run_id = ? AND lease_owner = ?",
        )
        .bind(retry_at.0)
        .bind(run_id.as_str())
        .bind(lease_owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn next_due_at(&self) -> StoreResult<Option<Timestamp>> {
        let now_real = Clock::real_now().0;
        let due: Option<i64> = sqlx::query_scalar(concat!(
            "SELECT MIN(t.due_at) FROM timers t JOIN runs r ON r.id = t.run_id \
             WHERE (t.lease_until IS NULL OR t.lease_until < ?) AND r.status IN ",
            live_statuses!()
        ))
        .bind(now_real)
        .fetch_one(&self.pool)
        .await?;
        Ok(due.map(Timestamp))
    }

    async fn claim_outbox(&self, lease: &Lease, limit: u32) -> StoreResult<Vec<OutboxEmail>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (_writer, mut tx) = self.write().await?;
        let rows = sqlx::query(
            "UPDATE emails SET lease_owner = ?, lease_until = ? \
             WHERE id IN (\
                 SELECT id FROM emails WHERE status = 'queued' AND next_attempt_at <= ? \
                 AND (lease_until IS NULL OR lease_until < ?) \
                 ORDER BY next_attempt_at, id LIMIT ?) \
             RETURNING id, tenant_id, to_address, subject, body, attempts, next_attempt_at",
        )
        .bind(&lease.owner)
        .bind(lease.until_real.0)
        .bind(lease.now_real.0)
        .bind(lease.now_real.0)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>("next_attempt_at")?,
                    OutboxEmail {
                        id: EmailId(row.try_get("id")?),
                        tenant_id: TenantId(row.try_get("tenant_id")?),
                        to: row.try_get("to_address")?,
                        subject: row.try_get("subject")?,
                        body: row.try_get("body")?,
                        attempts: to_u32("email attempts", row.try_get("attempts")?)?,
                    },
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        claimed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        Ok(claimed.into_iter().map(|(_, email)| email).collect())
    }

    async fn record_delivery(&self, id: &EmailId, result: DeliveryResult) -> StoreResult<()> {
        let (_writer, mut tx) = self.write().await?;
        // Only a queued email takes an outcome: a late report from a worker whose lease expired
        // never turns a sent email back into a queued or failed one.
        let query = match &result {
            DeliveryResult::Sent { at } => sqlx::query(
                "UPDATE emails SET status = 'sent', sent_at = ?, attempts = attempts + 1, \
                 lease_owner = NULL, lease_until = NULL WHERE id = ? AND status = 'queued'",
            )
            .bind(at.0),
            DeliveryResult::Failed {
                error,
                retry_at: Some(retry_at),
            } => sqlx::query(
                "UPDATE emails SET attempts = attempts + 1, last_error = ?, \
                 next_attempt_at = ?, lease_owner = NULL, lease_until = NULL \
                 WHERE id = ? AND status = 'queued'",
            )
            .bind(error.as_str())
            .bind(retry_at.0),
            DeliveryResult::Failed {
                error,
                retry_at: None,
            } => sqlx::query(
                "UPDATE emails SET status = 'failed', attempts = attempts + 1, last_error = ?, \
                 lease_owner = NULL, lease_until = NULL WHERE id = ? AND status = 'queued'",
            )
            .bind(error.as_str()),
        };
        query.bind(id.as_str()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_runs(
        &self,
        tenant: &TenantId,
        filter: &RunFilter,
    ) -> StoreResult<Vec<RunRecord>> {
        let mut query = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE tenant_id = "
        ));
        query.push_bind(tenant.as_str());
        if let Some(journey_id) = &filter.journey_id {
            query
                .push(" AND journey_id = ")
                .push_bind(journey_id.as_str());
        }
        if let Some(contact_key) = &filter.contact_key {
            query
                .push(" AND contact_key = ")
                .push_bind(contact_key.as_str());
        }
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        query
            .push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(list_limit(filter.limit)));
        query
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(run_from_row)
            .collect()
    }

    async fn run_detail(
        &self,
        tenant: &TenantId,
        run_id: &RunId,
    ) -> StoreResult<Option<ActivationInput>> {
        self.activation(Some(tenant), run_id).await
    }

    async fn list_emails(
        &self,
        tenant: &TenantId,
        filter: &EmailFilter,
    ) -> StoreResult<Vec<EmailRecord>> {
        let mut query = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            email_columns!(),
            " FROM emails WHERE tenant_id = "
        ));
        query.push_bind(tenant.as_str());
        if let Some(to) = &filter.to {
            // Stored addresses are normalised; a blank filter matches nothing.
            query
                .push(" AND to_address = ")
                .push_bind(normalize_email(to).unwrap_or_default());
        }
        if let Some(contact_key) = &filter.contact_key {
            query
                .push(" AND contact_key = ")
                .push_bind(contact_key.as_str());
        }
        query
            .push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(list_limit(filter.limit)));
        query
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(email_from_row)
            .collect()
    }

    async fn clock_offset(&self) -> StoreResult<i64> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM host_settings WHERE key = ?")
                .bind(CLOCK_OFFSET_KEY)
                .fetch_optional(&self.pool)
                .await?;
        match value {
            None => Ok(0),
            Some(text) => text
                .parse()
                .map_err(|e| StoreError::corrupt("clock offset", format!("{text:?}: {e}"))),
        }
    }

    async fn set_clock_offset(&self, offset_ms: i64) -> StoreResult<()> {
        let (_writer, mut tx) = self.write().await?;
        sqlx::query(
            "INSERT INTO host_settings (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(CLOCK_OFFSET_KEY)
        .bind(offset_ms.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// What the store knows about a person's earlier runs of one journey (inside the ingest
/// transaction, so it sees the runs this event already started).
async fn prior_runs(
    tx: &mut SqliteTransaction<'static>,
    tenant: &str,
    contact_key: &str,
    journey_id: &str,
) -> StoreResult<PriorRuns> {
    let row = sqlx::query(concat!(
        "SELECT COUNT(*) AS total, MAX(created_at) AS latest, \
         COALESCE(MAX(status IN ",
        live_statuses!(),
        "), 0) AS live \
         FROM runs WHERE tenant_id = ? AND contact_key = ? AND journey_id = ?"
    ))
    .bind(tenant)
    .bind(contact_key)
    .bind(journey_id)
    .fetch_one(&mut **tx)
    .await?;
    let total: i64 = row.try_get("total")?;
    Ok(PriorRuns {
        total: u64::try_from(total).map_err(|e| StoreError::corrupt("run count", e))?,
        latest_started_at: row.try_get::<Option<i64>, _>("latest")?.map(Timestamp),
        live: row.try_get::<i64, _>("live")? != 0,
    })
}

fn list_limit(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_LIST_LIMIT,
        n => n.min(MAX_LIST_LIMIT),
    }
}

fn run_from_row(row: &SqliteRow) -> StoreResult<RunRecord> {
    Ok(RunRecord {
        id: RunId(row.try_get("id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        journey_id: row.try_get("journey_id")?,
        module_hash: row.try_get("module_hash")?,
        contact_key: row.try_get("contact_key")?,
        status: parse_run_status(row.try_get("status")?)?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        wake_at: row.try_get::<Option<i64>, _>("wake_at")?.map(Timestamp),
        activations: to_u32("run activations", row.try_get("activations")?)?,
        error: row.try_get("error")?,
    })
}

fn journal_from_row(row: &SqliteRow) -> StoreResult<JournalEntry> {
    let kind: &str = row.try_get("kind")?;
    Ok(JournalEntry {
        seq: to_u32("journal seq", row.try_get("seq")?)?,
        kind: StepKind::parse(kind)
            .ok_or_else(|| StoreError::corrupt("journal step kind", format!("{kind:?}")))?,
        request: parse_json("journal request", row.try_get("request")?)?,
        response: parse_json("journal response", row.try_get("response")?)?,
        recorded_at: Timestamp(row.try_get("recorded_at")?),
    })
}

fn email_from_row(row: &SqliteRow) -> StoreResult<EmailRecord> {
    let status: &str = row.try_get("status")?;
    Ok(EmailRecord {
        id: EmailId(row.try_get("id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        run_id: row.try_get::<Option<String>, _>("run_id")?.map(RunId),
        contact_key: row.try_get("contact_key")?,
        to: row.try_get("to_address")?,
        template: row.try_get("template")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        status: EmailStatus::parse(status)
            .ok_or_else(|| StoreError::corrupt("email status", format!("{status:?}")))?,
        attempts: to_u32("email attempts", row.try_get("attempts")?)?,
        last_error: row.try_get("last_error")?,
        created_at: Timestamp(row.try_get("created_at")?),
        sent_at: row.try_get::<Option<i64>, _>("sent_at")?.map(Timestamp),
    })
}

fn parse_run_status(text: &str) -> StoreResult<RunStatus> {
    RunStatus::parse(text).ok_or_else(|| StoreError::corrupt("run status", format!("{text:?}")))
}

fn scopes_to_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn scopes_from_text(text: &str) -> StoreResult<Vec<Scope>> {
    text.split_whitespace()
        .map(|name| {
            Scope::parse(name)
                .ok_or_else(|| StoreError::corrupt("api key scope", format!("{name:?}")))
        })
        .collect()
}

fn to_u32(what: &'static str, value: i64) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| StoreError::corrupt(what, format!("{value} is out of range")))
}

fn parse_json<T: DeserializeOwned>(what: &'static str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, e))
}

fn parse_object(what: &'static str, text: &str) -> StoreResult<Map<String, Value>> {
    match parse_json(what, text)? {
        Value::Object(map) => Ok(map),
        other => Err(StoreError::corrupt(
            what,
            format!("expected a JSON object, found {other}"),
        )),
    }
}

/// JSON for a TEXT column. Serialising these types cannot fail in practice (string-keyed maps
/// and derived structs); the error is reported rather than unwrapped all the same.
fn to_json<T: Serialize + ?Sized>(what: &'static str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::corrupt(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journeys::{EntryLimit, SkipReason};
    use crate::store::NewEmail;
    use serde_json::json;
    use tempfile::TempDir;

    const T0: i64 = 1_700_000_000_000;
    const HOUR: i64 = 3_600_000;

    struct Fixture {
        store: SqliteStore,
        tenant: TenantId,
        dir: TempDir,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("data").join("waymark.db"))
            .await
            .unwrap();
        let tenant = store.create_tenant("acme", Timestamp(T0)).await.unwrap().id;
        Fixture { store, tenant, dir }
    }

    fn obj(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn event(tenant: &TenantId, contact: &str, at: i64) -> NewEvent {
        NewEvent {
            id: EventId::generate(),
            tenant_id: tenant.clone(),
            name: "user.signed_up".into(),
            contact_key: contact.into(),
            email: Some(format!("{contact}@example.com")),
            event_properties: obj(json!({"source": "web"})),
            contact_properties: Map::new(),
            idempotency_key: None,
            occurred_at: Timestamp(at - 5),
            received_at: Timestamp(at),
        }
    }

    fn welcome(limit: EntryLimit) -> RunCandidate {
        RunCandidate {
            journey_id: "welcome".into(),
            module_hash: "hash-1".into(),
            entry_limit: limit,
        }
    }

    fn lease(owner: &str, now_real: i64) -> Lease {
        Lease {
            owner: owner.into(),
            now_real: Timestamp(now_real),
            until_real: Timestamp(now_real + 30_000),
        }
    }

    /// A lease on the real clock, as the scheduler takes it.
    fn real_lease(owner: &str) -> Lease {
        lease(owner, Clock::real_now().0)
    }

    async fn start_run(f: &Fixture, contact: &str, at: i64) -> RunId {
        match f
            .store
            .ingest(
                event(&f.tenant, contact, at),
                &[welcome(EntryLimit::Unlimited)],
            )
            .await
            .unwrap()
        {
            IngestOutcome::Stored { started, .. } => started[0].run_id.clone(),
            other => panic!("expected a stored event, got {other:?}"),
        }
    }

    fn commit(
        f: &Fixture,
        run: &RunId,
        owner: &str,
        transition: RunTransition,
    ) -> ActivationCommit {
        ActivationCommit {
            run_id: run.clone(),
            tenant_id: f.tenant.clone(),
            lease_owner: owner.into(),
            journal: vec![],
            emails: vec![],
            transition,
            now: Timestamp(T0 + 1),
        }
    }

    fn email(f: &Fixture, run: &RunId, seq: u32, to: &str) -> NewEmail {
        NewEmail {
            id: EmailId::generate(),
            tenant_id: f.tenant.clone(),
            run_id: run.clone(),
            step_seq: seq,
            contact_key: "ada".into(),
            to: to.into(),
            template: "welcome".into(),
            subject: "Welcome".into(),
            body: "Hello Ada".into(),
            created_at: Timestamp(T0 + 1),
        }
    }

    async fn count(store: &SqliteStore, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_duplicate_idempotency_key_changes_nothing_and_names_the_original_event() {
        // Given an event stored with an idempotency key
        let f = fixture().await;
        let mut first = event(&f.tenant, "ada", T0);
        first.idempotency_key = Some("k-1".into());
        first.contact_properties = obj(json!({"plan": "free"}));
        let first_id = first.id.clone();
        f.store.ingest(first, &[]).await.unwrap();

        // When another event arrives with the same key, a new property and a journey to start
        let mut again = event(&f.tenant, "ada", T0 + HOUR);
        again.idempotency_key = Some("k-1".into());
        again.contact_properties = obj(json!({"plan": "pro"}));
        let outcome = f
            .store
            .ingest(again, &[welcome(EntryLimit::Unlimited)])
            .await
            .unwrap();

        // Then it is a duplicate of the first, and neither the contact nor the runs changed
        assert_eq!(outcome, IngestOutcome::Duplicate { event_id: first_id });
        let (props, last_seen): (String, i64) =
            sqlx::query_as("SELECT properties, last_seen_at FROM contacts WHERE key = 'ada'")
                .fetch_one(&f.store.pool)
                .await
                .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&props).unwrap(),
            json!({"plan": "free"})
        );
        assert_eq!(last_seen, T0);
        assert_eq!(count(&f.store, "SELECT COUNT(*) FROM events").await, 1);
        assert_eq!(count(&f.store, "SELECT COUNT(*) FROM runs").await, 0);
        assert_eq!(count(&f.store, "SELECT COUNT(*) FROM timers").await, 0);
    }

    #[tokio::test]
    async fn the_same_idempotency_key_in_another_tenant_is_not_a_duplicate() {
        let f = fixture().await;
        let other = f
            .store
            .create_tenant("globex", Timestamp(T0))
            .await
            .unwrap()
            .id;
        let mut a = event(&f.tenant, "ada", T0);
        a.idempotency_key = Some("k-1".into());
        let mut b = event(&other, "ada", T0);
        b.idempotency_key = Some("k-1".into());
        f.store.ingest(a, &[]).await.unwrap();
        let outcome = f.store.ingest(b, &[]).await.unwrap();
        assert!(
            matches!(outcome, IngestOutcome::Stored { .. }),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn an_admitted_run_starts_active_with_a_timer_due_at_once() {
        // Given a new person
        let f = fixture().await;
        // When their first event triggers a journey
        let run = start_run(&f, "ada", T0).await;
        // Then the run is active, created at the receive time, and claimable right then
        let detail = f.store.run_detail(&f.tenant, &run).await.unwrap().unwrap();
        assert_eq!(detail.run.status, RunStatus::Active);
        assert_eq!(detail.run.created_at, Timestamp(T0));
        assert_eq!(detail.run.activations, 0);
        assert_eq!(detail.input.trigger.name, "user.signed_up");
        assert_eq!(detail.input.trigger.occurred_at, Timestamp(T0 - 5));
        assert_eq!(
            detail.input.trigger.properties,
            obj(json!({"source": "web"}))
        );
        assert_eq!(
            detail.input.person.email.as_deref(),
            Some("ada@example.com")
        );
        assert!(detail.journal.is_empty());
        assert_eq!(f.store.next_due_at().await.unwrap(), Some(Timestamp(T0)));
        let claimed = f
            .store
            .claim_due_runs(Timestamp(T0), &real_lease("w1"), 10)
            .await
            .unwrap();
        assert_eq!(
            claimed,
            vec![ClaimedRun {
                run_id: run,
                tenant_id: f.tenant.clone()
            }]
        );
    }

    #[tokio::test]
    async fn entry_limit_once_blocks_a_second_run_after_the_first_completed() {
        // Given a person whose only run of a once-only journey has completed
        let f = fixture().await;
        let first = f
            .store
            .ingest(event(&f.tenant, "ada", T0), &[welcome(EntryLimit::Once)])
            .await
            .unwrap();
        let IngestOutcome::Stored { started, .. } = first else {
            panic!("{first:?}")
        };
        let run = started[0].run_id.clone();
        f.store
            .claim_due_runs(Timestamp(T0), &real_lease("w1"), 10)
            .await
            .unwrap();
        assert!(
            f.store
                .commit_activation(commit(&f, &run, "w1", RunTransition::Completed))
                .await
                .unwrap()
        );

        // When the trigger happens again, days later
        let second = f
            .store
            .ingest(
                event(&f.tenant, "ada", T0 + 72 * HOUR),
                &[welcome(EntryLimit::Once)],
            )
            .await
            .unwrap();

        // Then no run starts: the person already entered once
        let IngestOutcome::Stored {
            started, skipped, ..
        } = second
        else {
            panic!("{second:?}")
        };
        assert!(started.is_empty());
        assert_eq!(
            skipped,
            vec![SkippedRun {
                journey_id: "welcome".into(),
                reason: SkipReason::AlreadyEnteredOnce
            }]
        );
        assert_eq!(count(&f.store, "SELECT COUNT(*) FROM runs").await, 1);
    }

    #[tokio::test]
    async fn entry_limit_once_per_period_counts_from_the_latest_start() {
        let f = fixture().await;
        let limit = EntryLimit::OncePer(24 * HOUR as u64);
        let run = start_run(&f, "ada", T0).await;
        f.store
            .claim_due_runs(Timestamp(T0), &real_lease("w1"), 10)
            .await
            .unwrap();
        f.store
            .commit_activation(commit(&f, &run, "w1", RunTransition::Completed))
            .await
            .unwrap();
        let early = f
            .store
            .ingest(event(&f.tenant, "ada", T0 + HOUR), &[welcome(limit)])
            .await
            .unwrap();
        assert!(
            matches!(&early, IngestOutcome::Stored { skipped, .. } if skipped[0].reason == SkipReason::PeriodNotElapsed),
            "{early:?}"
        );
        let later = f
            .store
            .ingest(event(&f.tenant, "ada", T0 + 24 * HOUR), &[welcome(limit)])
            .await
            .unwrap();
        assert!(
            matches!(&later, IngestOutcome::Stored { started, .. } if started.len() == 1),
            "{later:?}"
        );
    }

    #[tokio::test]
    async fn one_live_run_per_person_and_journey() {
        // Given a person with a live (waiting) run of a journey without entry limit
        let f = fixture().await;
        let run = start_run(&f, "ada", T0).await;
        f.store
            .claim_due_runs(Timestamp(T0), &real_lease("w1"), 10)
            .await
            .unwrap();
        f.store
            .commit_activation(commit(
                &f,
                &run,
                "w1",
                RunTransition::Waiting {
                    wake_at: Timestamp(T0 + HOUR),
                },
            ))
            .await
            .unwrap();

        // When the trigger fires again for them, listing the journey twice, and for someone else
        let again = f
            .store
            .ingest(
                event(&f.tenant, "ada", T0 + 10),
                &[
                    welcome(EntryLimit::Unlimited),
                    welcome(EntryLimit::Unlimited),
                ],
            )
            .await
            .unwrap();
        let other = f
            .store
            .ingest(
                event(&f.tenant, "bob", T0 + 10),
                &[welcome(EntryLimit::Unlimited)],
            )
            .await
            .unwrap();

        // Then the person gets no second run, while the other person gets theirs
        let IngestOutcome::Stored {
            started, skipped, ..
        } = again
        else {
            panic!("{again:?}")
        };
        assert!(started.is_empty());
        assert_eq!(skipped.len(), 2);
        assert!(
            skipped
                .iter()
                .all(|s| s.reason == SkipReason::AlreadyActive)
        );
        assert!(matches!(other, IngestOutcome::Stored { started, .. } if started.len() == 1));

        // And the database itself refuses a second live run
        let duplicate = sqlx::query(
            "INSERT INTO runs (id, tenant_id, journey_id, module_hash, contact_key, status, \
             input, created_at, updated_at) \
             SELECT 'x', tenant_id, journey_id, module_hash, contact_key, 'active', input, 0, 0 \
             FROM runs WHERE id = ?",
        )
        .bind(run.as_str())
        .execute(&f.store.pool)
        .await;
        assert!(
            duplicate.is_err(),
            "the partial unique index must refuse it"
        );
    }

    #[tokio::test]
    async fn a_run_snapshots_the_person_after_the_property_merge() {
        // Given a contact with properties
        let f = fixture().await;
        let mut first = event(&f.tenant, "ada", T0);
        first.contact_properties = obj(json!({"plan": "free", "name": "Ada", "age": 36}));
        f.store.ingest(first, &[]).await.unwrap();

        // When an event patches them (overwrite, add, null removes) and starts a run
        let mut second = event(&f.tenant, "ada", T0 + HOUR);
        second.email = None;
        second.contact_properties = obj(json!({"plan": "pro", "name": null, "city": "London"}));
        let outcome = f
            .store
            .ingest(second, &[welcome(EntryLimit::Unlimited)])
            .await
            .unwrap();
        let IngestOutcome::Stored { started, .. } = outcome else {
            panic!("{outcome:?}")
        };

        // Then the run's person is the merged contact, keeping the email it already had
        let detail = f
            .store
            .load_activation(&started[0].run_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            detail.input.person,
            PersonSnapshot {
                key: "ada".into(),
                email: Some("ada@example.com".into()),
                properties: obj(json!({"plan": "pro", "age": 36, "city": "London"})),
            }
        );
        let (first_seen, last_seen): (i64, i64) =
            sqlx::query_as("SELECT first_seen_at, last_seen_at FROM contacts WHERE key = 'ada'")
                .fetch_one(&f.store.pool)
                .await
                .unwrap();
        assert_eq!((first_seen, last_seen), (T0, T0 + HOUR));
    }

    #[tokio::test]
    async fn claims_respect_due_time_and_leases() {
        // Given one run due now and one run due in an hour
        let f = fixture().await;
        let now_run = start_run(&f, "ada", T0).await;
        let later_run = start_run(&f, "bob", T0 + HOUR).await;
        let real = Clock::real_now().0;

        // When a worker claims at T0, then another worker claims at the same time
        let first = f
            .store
            .claim_due_runs(Timestamp(T0), &lease("w1", real), 10)
            .await
            .unwrap();
        let second = f
            .store
            .claim_due_runs(Timestamp(T0), &lease("w2", real), 10)
            .await
            .unwrap();

        // Then only the due run is claimed, and only once
        assert_eq!(
            first.iter().map(|c| &c.run_id).collect::<Vec<_>>(),
            vec![&now_run]
        );
        assert!(second.is_empty());
        assert_eq!(
            f.store.next_due_at().await.unwrap(),
            Some(Timestamp(T0 + HOUR)),
            "the leased timer does not count"
        );

        // When the lease expires (real clock) and the host clock reaches the second run
        let after_lease = lease("w2", real + 31_000);
        let reclaimed = f
            .store
            .claim_due_runs(Timestamp(T0 + HOUR), &after_lease, 10)
            .await
            .unwrap();

        // Then both are claimable, oldest due first, and the first worker's commit is refused
        assert_eq!(
            reclaimed.iter().map(|c| &c.run_id).collect::<Vec<_>>(),
            vec![&now_run, &later_run]
        );
        assert!(
            !f.store
                .commit_activation(commit(&f, &now_run, "w1", RunTransition::Completed))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn claims_take_at_most_the_limit_oldest_first() {
        let f = fixture().await;
        let runs = [
            start_run(&f, "c", T0 + 2).await,
            start_run(&f, "a", T0).await,
            start_run(&f, "b", T0 + 1).await,
        ];
        let claimed = f
            .store
            .claim_due_runs(Timestamp(T0 + 10), &real_lease("w1"), 2)
            .await
            .unwrap();
        assert_eq!(
            claimed.iter().map(|c| &c.run_id).collect::<Vec<_>>(),
            vec![&runs[1], &runs[2]]
        );
    }

    #[tokio::test]
    async fn a_released_run_is_due_again_at_the_retry_time() {
        let f = fixture().await;
        let run = start_run(&f, "ada", T0).await;
        f.store
            .claim_due_runs(Timestamp(T0), &real_lease("w1"), 10)
            .await
            .unwrap();
        // Another owner cannot release it
        f.store
            .release_run(&run, "w2", Timestamp(T0 + 5))
            .await
            .unwrap();
        assert_eq!(f.store.next_due_at().await.unwrap(), None);
        f.store
            .release_run(&run, "w1", Timestamp(T0 + 5))
            .await
            .unwrap();
        assert_eq!(
            f.store.next_due_at().await.unwrap(),
            Some(Timestamp(T0 + 5))
        );
        let early = f
            .store
            .claim_due_runs(Timestamp(T0 + 4), &real_lease("w2"), 10)
            .await
            .unwrap();
        assert!(early.is_empty());
        let due = f
            .store
            .claim_due_runs(Timestamp(T0 + 5), &real_lease("w2"), 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
    }

    #[tokio::test]
    async fn commit_activation_writes_journal_emails_timer_and_status_together() {
        // Given a claimed run
        let f = fixture().await;
        let run = start_run(&f, "ada", T0).await;
        f.store
            .claim_due_runs(Timestamp(T0), &real_lease("w1"), 10)
            .await
            .unwrap();

        // When its activation sends an email and sleeps for an hour
        let mut first = commit(
            &f,
            &run,
            "w1",
            RunTransition::Waiting {
                wake_at: Timestamp(T0 + HOUR),
            },
        );
        first.journal = vec![
            JournalEntry {
                seq: 0,
                kind: StepKind::SendEmail,
                request: json!({"template": "welcome"}),
                response: json!("e1"),
                recorded_at: Timestamp(T0 + 1),
            },
            JournalEntry {
                seq: 1,
                kind: StepKind::Sleep,
                request: json!({"durationMs": HOUR}),
                response: json!(null),
                recorded_at: Timestamp(T0 + 1),
            },
        ];
        first.emails = vec![email(&f, &run, 0, " Ada@Example.com ")];
        assert!(f.store.commit_activation(first.clone()).await.unwrap());

        // Then everything is there: journal, queued email, timer, waiting status
        let detail = f.store.load_activation(&run).await.unwrap().unwrap();
        assert_eq!(detail.journal, first.journal);
        assert_eq!(detail.run.status, RunStatus::Waiting);
        assert_eq!(detail.run.wake_at, Some(Timestamp(T0 + HOUR)));
        assert_eq!(detail.run.activations, 1);
        assert_eq!(detail.run.updated_at, Timestamp(T0 + 1));
        assert_eq!(
            f.store.next_due_at().await.unwrap(),
            Some(Timestamp(T0 + HOUR))
        );
        let emails = f
            .store
            .list_emails(&f.tenant, &EmailFilter::default())
            .await
            .unwrap();
        assert_eq!(emails.len(), 1);
        assert_eq!(emails[0].status, EmailStatus::Queued);
        assert_eq!(emails[0].to, "ada@example.com");
        assert_eq!(emails[0].run_id.as_ref(), Some(&run));

        // And a commit whose email step is already queued rolls back entirely
        let before_wake = f
            .store
            .claim_due_runs(Timestamp(T0 + HOUR - 1), &real_lease("w1"), 10)
            .await
            .unwrap();
        assert!(before_wake.is_empty(), "the sleeping run is not due yet");
        f.store
            .claim_due_runs(Timestamp(T0 + HOUR), &real_lease("w1"), 10)
            .await
            .unwrap();
        let mut clash = commit(&f, &run, "w1", RunTransition::Completed);
        clash.journal = vec![JournalEntry {
            seq: 2,
            kind: StepKind::Now,
            request: json!(null),
            response: json!(T0),
            recorded_at: Timestamp(T0 + HOUR),
        }];
        clash.emails = vec![email(&f, &run, 0, "ada@example.com")];
        assert!(f.store.commit_activation(clash).await.is_err());
        let detail = f.store.load_activation(&run).await.unwrap().unwrap();
        assert_eq!(detail.journal.len(), 2);
        assert_eq!(detail.run.status, RunStatus::Waiting);

        // When it then completes
        assert!(
            f.store
                .commit_activation(commit(&f, &run, "w1", RunTransition::Completed))
                .await
                .unwrap()
        );
        // Then the run is completed and has no timer left
        let detail = f.store.load_activation(&run).await.unwrap().unwrap();
        assert_eq!(detail.run.status, RunStatus::Completed);
        assert_eq!(detail.run.wake_at, None);
        assert_eq!(detail.run.activations, 2);
        assert_eq!(f.store.next_due_at().await.unwrap(), None);
        assert_eq!(count(&f.store, "SELECT COUNT(*) FROM timers").await, 0);
    }

    #[tokio::test]
    async fn a_failed_activation_records_the_error() {
        let f = fixture().await;
        let run = start_run(&f, "ada", T0).await;
        f.store
            .claim_due_runs(Timestamp(T0), &real_lease("w1"), 10)
            .await
            .unwrap();
        let failed = RunTransition::Failed {
            error: "non-deterministic replay at step 0".into(),
        };
        assert!(
            f.store
                .commit_activation(commit(&f, &run, "w1", failed))
                .await
                .unwrap()
        );
        let runs = f
            .store
            .list_runs(
                &f.tenant,
                &RunFilter {
                    status: Some(RunStatus::Failed),
                    ..RunFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(
            runs[0].error.as_deref(),
            Some("non-deterministic replay at step 0")
        );
        assert_eq!(count(&f.store, "SELECT COUNT(*) FROM timers").await, 0);
    }

    #[tokio::test]
    async fn commit_activation_refuses_an_exited_run_or_a_lost_lease() {
        // Given a run claimed by w1
        let f = fixture().await;
        let run = start_run(&f, "ada", T0).await;
        f.store
            .claim_due_runs(Timestamp(T0), &real_lease("w1"), 10)
            .await
            .unwrap();
        let mut sleep = commit(
            &f,
            &run,
            "w2",
            RunTransition::Waiting {
                wake_at: Timestamp(T0 + HOUR),
            },
        );
        sleep.journal = vec![JournalEntry {
            seq: 0,
            kind: StepKind::Sleep,
            request: json!({"durationMs": HOUR}),
            response: json!(null),
            recorded_at: Timestamp(T0),
        }];
        sleep.emails = vec![email(&f, &run, 0, "ada@example.com")];

        // When a worker that does not hold the lease commits
        // Then nothing is written
        assert!(!f.store.commit_activation(sleep.clone()).await.unwrap());

        // When the run exited meanwhile and the lease holder commits
        sqlx::query("UPDATE runs SET status = 'exited' WHERE id = ?")
            .bind(run.as_str())
            .execute(&f.store.pool)
            .await
            .unwrap();
        sleep.lease_owner = "w1".into();
        // Then nothing is written either
        assert!(!f.store.commit_activation(sleep).await.unwrap());

        // And a tenant mismatch is refused the same way
        let mut foreign = commit(&f, &run, "w1", RunTransition::Completed);
        foreign.tenant_id = TenantId::generate();
        assert!(!f.store.commit_activation(foreign).await.unwrap());

        let detail = f.store.load_activation(&run).await.unwrap().unwrap();
        assert!(detail.journal.is_empty());
        assert_eq!(detail.run.status, RunStatus::Exited);
        assert_eq!(detail.run.activations, 0);
        assert_eq!(count(&f.store, "SELECT COUNT(*) FROM emails").await, 0);
        // The exited run's leftover timer is never claimed again
        let again = f
            .store
            .claim_due_runs(
                Timestamp(T0 + HOUR),
                &lease("w3", Clock::real_now().0 + 60_000),
                10,
            )
            .await
            .unwrap();
        assert!(again.is_empty());
        assert_eq!(f.store.next_due_at().await.unwrap(), None);
    }

    #[tokio::test]
    async fn outbox_claims_then_retries_then_gives_up_or_sends() {
        // Given two queued emails
        let f = fixture().await;
        let run = start_run(&f, "ada", T0).await;
        f.store
            .claim_due_runs(Timestamp(T0), &real_lease("w1"), 10)
            .await
            .unwrap();
        let mut sent = commit(
            &f,
            &run,
            "w1",
            RunTransition::Waiting {
                wake_at: Timestamp(T0 + HOUR),
            },
        );
        sent.emails = vec![
            email(&f, &run, 0, "ada@example.com"),
            email(&f, &run, 1, "ada@example.com"),
        ];
        let (first_id, second_id) = (sent.emails[0].id.clone(), sent.emails[1].id.clone());
        assert!(f.store.commit_activation(sent).await.unwrap());

        // When a delivery worker claims them, another worker finds nothing to claim
        let real = Clock::real_now().0;
        let claimed = f.store.claim_outbox(&lease("d1", real), 10).await.unwrap();
        assert_eq!(claimed.len(), 2);
        assert!(
            claimed
                .iter()
                .all(|e| e.attempts == 0 && e.to == "ada@example.com")
        );
        assert!(
            f.store
                .claim_outbox(&lease("d2", real), 10)
                .await
                .unwrap()
                .is_empty()
        );

        // When the first fails with a retry in a minute and the second fails for good
        f.store
            .record_delivery(
                &first_id,
                DeliveryResult::Failed {
                    error: "421 try later".into(),
                    retry_at: Some(Timestamp(real + 60_000)),
                },
            )
            .await
            .unwrap();
        f.store
            .record_delivery(
                &second_id,
                DeliveryResult::Failed {
                    error: "550 no such user".into(),
                    retry_at: None,
                },
            )
            .await
            .unwrap();

        // Then nothing is claimable before the retry time, and the first is after it
        assert!(
            f.store
                .claim_outbox(&lease("d2", real + 1), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let retry = f
            .store
            .claim_outbox(&lease("d2", real + 60_000), 10)
            .await
            .unwrap();
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].id, first_id);
        assert_eq!(retry[0].attempts, 1);

        // When the retry succeeds
        f.store
            .record_delivery(
                &first_id,
                DeliveryResult::Sent {
                    at: Timestamp(T0 + 7),
                },
            )
            .await
            .unwrap();
        // And a stale worker later reports a failure for it
        f.store
            .record_delivery(
                &first_id,
                DeliveryResult::Failed {
                    error: "timeout".into(),
                    retry_at: Some(Timestamp(real + 120_000)),
                },
            )
            .await
            .unwrap();

        // Then the first is sent after two attempts and the second failed after one
        let emails = f
            .store
            .list_emails(&f.tenant, &EmailFilter::default())
            .await
            .unwrap();
        let first = emails.iter().find(|e| e.id == first_id).unwrap();
        let second = emails.iter().find(|e| e.id == second_id).unwrap();
        assert_eq!(first.status, EmailStatus::Sent);
        assert_eq!(first.attempts, 2);
        assert_eq!(first.sent_at, Some(Timestamp(T0 + 7)));
        assert_eq!(second.status, EmailStatus::Failed);
        assert_eq!(second.attempts, 1);
        assert_eq!(second.last_error.as_deref(), Some("550 no such user"));
        assert!(
            f.store
                .claim_outbox(&lease("d3", real + 600_000), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn an_expired_outbox_lease_is_reclaimable() {
        let f = fixture().await;
        let run = start_run(&f, "ada", T0).await;
        f.store
            .claim_due_runs(Timestamp(T0), &real_lease("w1"), 10)
            .await
            .unwrap();
        let mut c = commit(&f, &run, "w1", RunTransition::Completed);
        c.emails = vec![email(&f, &run, 0, "ada@example.com")];
        f.store.commit_activation(c).await.unwrap();
        let real = Clock::real_now().0;
        assert_eq!(
            f.store
                .claim_outbox(&lease("d1", real), 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            f.store
                .claim_outbox(&lease("d2", real + 31_000), 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn a_tenant_never_sees_another_tenants_runs_or_emails() {
        // Given a run with an email in tenant A
        let f = fixture().await;
        let run = start_run(&f, "ada", T0).await;
        f.store
            .claim_due_runs(Timestamp(T0), &real_lease("w1"), 10)
            .await
            .unwrap();
        let mut c = commit(&f, &run, "w1", RunTransition::Completed);
        c.emails = vec![email(&f, &run, 0, "ada@example.com")];
        f.store.commit_activation(c).await.unwrap();

        // When tenant B looks with every filter matching A's rows
        let b = f
            .store
            .create_tenant("globex", Timestamp(T0))
            .await
            .unwrap()
            .id;
        let runs = f
            .store
            .list_runs(
                &b,
                &RunFilter {
                    journey_id: Some("welcome".into()),
                    contact_key: Some("ada".into()),
                    ..RunFilter::default()
                },
            )
            .await
            .unwrap();
        let detail = f.store.run_detail(&b, &run).await.unwrap();
        let emails = f
            .store
            .list_emails(
                &b,
                &EmailFilter {
                    to: Some("ada@example.com".into()),
                    ..EmailFilter::default()
                },
            )
            .await
            .unwrap();

        // Then B sees nothing, while A sees its rows
        assert!(runs.is_empty());
        assert!(detail.is_none());
        assert!(emails.is_empty());
        assert_eq!(
            f.store
                .list_runs(&f.tenant, &RunFilter::default())
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(f.store.run_detail(&f.tenant, &run).await.unwrap().is_some());
        assert_eq!(
            f.store
                .list_emails(
                    &f.tenant,
                    &EmailFilter {
                        to: Some(" ADA@example.com".into()),
                        ..EmailFilter::default()
                    }
                )
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn list_runs_filters_and_returns_newest_first_within_the_limit() {
        let f = fixture().await;
        let ada = start_run(&f, "ada", T0).await;
        let bob = start_run(&f, "bob", T0 + 1).await;
        let cy = start_run(&f, "cy", T0 + 2).await;
        let all = f
            .store
            .list_runs(&f.tenant, &RunFilter::default())
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(|r| &r.id).collect::<Vec<_>>(),
            vec![&cy, &bob, &ada]
        );
        let limited = f
            .store
            .list_runs(
                &f.tenant,
                &RunFilter {
                    limit: 2,
                    ..RunFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(limited.len(), 2);
        let for_bob = f
            .store
            .list_runs(
                &f.tenant,
                &RunFilter {
                    contact_key: Some("bob".into()),
                    status: Some(RunStatus::Active),
                    ..RunFilter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            for_bob.iter().map(|r| &r.id).collect::<Vec<_>>(),
            vec![&bob]
        );
        let other_journey = f
            .store
            .list_runs(
                &f.tenant,
                &RunFilter {
                    journey_id: Some("win-back".into()),
                    ..RunFilter::default()
                },
            )
            .await
            .unwrap();
        assert!(other_journey.is_empty());
    }

    #[tokio::test]
    async fn the_clock_offset_persists_across_reopen() {
        // Given a store whose dev clock was advanced
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("waymark.db");
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.clock_offset().await.unwrap(), 0);
        store.set_clock_offset(86_400_000).await.unwrap();
        store.set_clock_offset(2 * 86_400_000).await.unwrap();
        store.pool.close().await;

        // When the database is opened again (migrations already applied)
        let reopened = SqliteStore::open(&path).await.unwrap();

        // Then the offset is still there
        assert_eq!(reopened.clock_offset().await.unwrap(), 2 * 86_400_000);
    }

    #[tokio::test]
    async fn tenants_keys_and_module_versions_round_trip() {
        let f = fixture().await;
        let tenant = f.store.tenant_by_name("acme").await.unwrap().unwrap();
        assert_eq!(tenant.id, f.tenant);
        assert!(f.store.tenant_by_name("nobody").await.unwrap().is_none());

        let key = f
            .store
            .create_api_key(NewApiKey {
                id: ApiKeyId::generate(),
                tenant_id: f.tenant.clone(),
                name: "admin".into(),
                key_hash: "abc123".into(),
                scopes: vec![Scope::Ingest, Scope::Admin],
                created_at: Timestamp(T0),
            })
            .await
            .unwrap();
        assert_eq!(
            f.store.api_key_by_hash("abc123").await.unwrap(),
            Some(key.clone())
        );
        assert!(f.store.api_key_by_hash("nope").await.unwrap().is_none());
        sqlx::query("UPDATE api_keys SET revoked_at = 1 WHERE id = ?")
            .bind(key.id.as_str())
            .execute(&f.store.pool)
            .await
            .unwrap();
        assert!(f.store.api_key_by_hash("abc123").await.unwrap().is_none());

        let version = ModuleVersionRecord {
            tenant_id: f.tenant.clone(),
            hash: "h1".into(),
            name: "welcome".into(),
            manifest: json!({"journeys": ["welcome"]}),
            loaded_at: Timestamp(T0),
        };
        f.store.record_module_version(&version).await.unwrap();
        f.store.record_module_version(&version).await.unwrap();
        assert_eq!(
            count(&f.store, "SELECT COUNT(*) FROM module_versions").await,
            1
        );
    }

    #[tokio::test]
    async fn unreadable_rows_are_reported_as_corrupt_not_panics() {
        // Given a run whose stored input is not JSON
        let f = fixture().await;
        let run = start_run(&f, "ada", T0).await;
        sqlx::query("UPDATE runs SET input = 'not json' WHERE id = ?")
            .bind(run.as_str())
            .execute(&f.store.pool)
            .await
            .unwrap();
        // Then loading it is a clear corruption error
        let err = f.store.load_activation(&run).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Corrupt {
                    what: "run input",
                    ..
                }
            ),
            "{err}"
        );

        // Given a run whose status is unknown (bypassing the CHECK constraint)
        let mut conn = f.store.pool.acquire().await.unwrap();
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("UPDATE runs SET status = 'sleeping' WHERE id = ?")
            .bind(run.as_str())
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("PRAGMA ignore_check_constraints = OFF")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        // Then listing runs names the bad status
        let err = f
            .store
            .list_runs(&f.tenant, &RunFilter::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Corrupt {
                    what: "run status",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn two_stores_on_one_file_share_the_work_without_double_claims() {
        // Given two hosts (separate pools, separate writer locks) on the same database file
        let f = fixture().await;
        let path = f.dir.path().join("data").join("waymark.db");
        let other = SqliteStore::open(&path).await.unwrap();
        for i in 0..30 {
            start_run(&f, &format!("p{i}"), T0 + i).await;
        }

        // When both claim in small batches at the same time
        let claim_all = |store: SqliteStore, owner: &'static str| {
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .claim_due_runs(Timestamp(T0 + 100), &real_lease(owner), 3)
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|c| c.run_id));
                }
            })
        };
        let a = claim_all(f.store.clone(), "host-a");
        let b = claim_all(other, "host-b");
        let (a, b) = (a.await.unwrap(), b.await.unwrap());

        // Then every run is claimed exactly once
        let mut all: Vec<_> = a.iter().chain(b.iter()).cloned().collect();
        all.sort();
        all.dedup();
        assert_eq!(a.len() + b.len(), 30);
        assert_eq!(all.len(), 30);
    }

    #[tokio::test]
    async fn concurrent_writers_wait_instead_of_failing() {
        let f = fixture().await;
        let store = Arc::new(f.store.clone());
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = store.clone();
            let tenant = f.tenant.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .ingest(
                        event(&tenant, &format!("p{}", i % 5), T0 + i),
                        &[welcome(EntryLimit::Unlimited)],
                    )
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(count(&f.store, "SELECT COUNT(*) FROM events").await, 40);
        assert_eq!(count(&f.store, "SELECT COUNT(*) FROM runs").await, 5);
    }
}
