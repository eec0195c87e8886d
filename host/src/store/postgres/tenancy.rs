//! Implements [`crate::store::Tenancy`], [`crate::store::Operators`] and
//! [`crate::store::HostSettings`].
//!
//! Tenants, API keys (create, look up, revoke, list), the operator's keys and its tenant
//! lifecycle (list, suspend, delete), and host settings (the persisted dev-clock offset). Each
//! write but a tenant's deletion is one statement (autocommit); the idempotent ones
//! (`create_tenant`, `advance_clock_offset`) use `ON CONFLICT`, so host processes doing the
//! same at boot never collide.

use super::PgStore;
use crate::clock::{MAX_OFFSET_MS, Timestamp};
use crate::ids::{ApiKeyId, TenantId};
use crate::store::HostSettings;
use crate::store::codec::{CLOCK_OFFSET_KEY, parse_clock_offset, scopes_to_text};
use crate::store::rows::{
    api_key_columns, operator_key_columns, tenant_columns, tenant_key_columns,
};
use crate::store::rows::{
    api_key_from_row, operator_key_from_row, tenant_from_row, tenant_key_from_row,
};
use crate::store::{
    ApiKeyRecord, NewApiKey, NewOperatorKey, OperatorKeyRecord, StoreError, StoreResult, Tenant,
    TenantKey,
};
use crate::store::{Operators, Tenancy};
use async_trait::async_trait;

#[async_trait]
impl Tenancy for PgStore {
    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        sqlx::query(concat!(
            "SELECT ",
            tenant_columns!(),
            " FROM tenants WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(tenant_from_row)
        .transpose()
    }

    /// Create the tenant, or answer the one that already has the name (`false`).
    async fn create_tenant(&self, name: &str, now: Timestamp) -> StoreResult<(Tenant, bool)> {
        // A concurrent creator of the same name makes this INSERT wait for its outcome; once it
        // committed, the conflict does nothing and the SELECT (a new snapshot) sees its row.
        let inserted = sqlx::query(concat!(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING RETURNING ",
            tenant_columns!()
        ))
        .bind(TenantId::generate().as_str())
        .bind(name)
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = inserted {
            return Ok((tenant_from_row(&row)?, true));
        }
        let existing = self.tenant_by_name(name).await?.ok_or_else(|| {
            StoreError::corrupt("tenant", format!("{name:?} conflicted but cannot be read"))
        })?;
        Ok((existing, false))
    }

    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<ApiKeyRecord> {
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, key_hash, scopes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.id.as_str())
        .bind(key.tenant_id.as_str())
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(scopes_to_text(&key.scopes))
        .bind(key.created_at.0)
        .execute(&self.pool)
        .await?;
        Ok(key.into())
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<TenantKey>> {
        sqlx::query(concat!(
            "SELECT ",
            tenant_key_columns!(),
            " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
        ))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(tenant_key_from_row)
        .transpose()
    }

    /// Revoke a live key (within `tenant` when given); whether one was revoked.
    async fn revoke_api_key(
        &self,
        tenant: Option<&TenantId>,
        id: &ApiKeyId,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let revoked = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 \
             WHERE id = $2 AND revoked_at IS NULL AND ($3::text IS NULL OR tenant_id = $3)",
        )
        .bind(now.0)
        .bind(id.as_str())
        .bind(tenant.map(TenantId::as_str))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(revoked > 0)
    }

    /// A tenant's keys, revoked ones included, newest first.
    async fn list_api_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKeyRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(api_key_from_row)
        .collect()
    }
}

#[async_trait]
impl Operators for PgStore {
    async fn create_operator_key(&self, key: NewOperatorKey) -> StoreResult<OperatorKeyRecord> {
        sqlx::query(
            "INSERT INTO operator_keys (id, name, key_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(key.id.as_str())
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(key.created_at.0)
        .execute(&self.pool)
        .await?;
        Ok(key.into())
    }

    async fn operator_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<OperatorKeyRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            operator_key_columns!(),
            " FROM operator_keys WHERE key_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(operator_key_from_row)
        .transpose()
    }

    async fn revoke_operator_key(&self, id: &ApiKeyId, now: Timestamp) -> StoreResult<bool> {
        let revoked = sqlx::query(
            "UPDATE operator_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now.0)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(revoked > 0)
    }

    async fn operator_keys_exist(&self) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM operator_keys)")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        sqlx::query(concat!(
            "SELECT ",
            tenant_columns!(),
            " FROM tenants ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(tenant_from_row)
        .collect()
    }

    async fn tenant_by_id(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        sqlx::query(concat!(
            "SELECT ",
            tenant_columns!(),
            " FROM tenants WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(tenant_from_row)
        .transpose()
    }

    async fn set_tenant_suspended(
        &self,
        id: &TenantId,
        at: Option<Timestamp>,
    ) -> StoreResult<Option<Tenant>> {
        sqlx::query(concat!(
            "UPDATE tenants SET suspended_at = \
             CASE WHEN $2::int8 IS NULL THEN NULL ELSE COALESCE(suspended_at, $2) END \
             WHERE id = $1 RETURNING ",
            tenant_columns!()
        ))
        .bind(id.as_str())
        .bind(at.map(|at| at.0))
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(tenant_from_row)
        .transpose()
    }

    async fn delete_tenant(&self, id: &TenantId) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // The tenant's row locked first: a concurrent insert of its data (which checks the
        // foreign key to it) waits for this transaction, then fails, so none is left behind.
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Ok(false);
        }
        // Children before the rows they reference. The run-keyed tables are reached through
        // the tenant's runs (their primary keys start with the run), not by a scan.
        for sql in DELETE_TENANT {
            sqlx::query(sql).bind(id.as_str()).execute(&mut *tx).await?;
        }
        // Other hosts drop the tenant's loaded modules at once (see `modules::follow`).
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(super::modules::CHANNEL)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Every table holding a tenant's rows, children first, the tenant last.
const DELETE_TENANT: [&str; 24] = [
    "DELETE FROM journal WHERE run_id IN (SELECT id FROM runs WHERE tenant_id = $1)",
    "DELETE FROM timers WHERE run_id IN (SELECT id FROM runs WHERE tenant_id = $1)",
    "DELETE FROM run_effects WHERE run_id IN (SELECT id FROM runs WHERE tenant_id = $1)",
    "DELETE FROM emails WHERE tenant_id = $1",
    "DELETE FROM runs WHERE tenant_id = $1",
    "DELETE FROM events WHERE tenant_id = $1",
    "DELETE FROM bucket_memberships WHERE tenant_id = $1",
    "DELETE FROM contact_aliases WHERE tenant_id = $1",
    "DELETE FROM contacts WHERE tenant_id = $1",
    "DELETE FROM api_keys WHERE tenant_id = $1",
    "DELETE FROM modules WHERE tenant_id = $1",
    "DELETE FROM module_versions WHERE tenant_id = $1",
    "DELETE FROM journey_configs WHERE tenant_id = $1",
    "DELETE FROM journey_skips WHERE tenant_id = $1",
    "DELETE FROM email_templates WHERE tenant_id = $1",
    "DELETE FROM email_preferences WHERE tenant_id = $1",
    "DELETE FROM email_signing_keys WHERE tenant_id = $1",
    "DELETE FROM email_senders WHERE tenant_id = $1",
    "DELETE FROM bucket_configs WHERE tenant_id = $1",
    "DELETE FROM bucket_absence_cursors WHERE tenant_id = $1",
    "DELETE FROM reconcile_state WHERE tenant_id = $1",
    "DELETE FROM tenant_limits WHERE tenant_id = $1",
    "DELETE FROM tenant_usage WHERE tenant_id = $1",
    "DELETE FROM tenants WHERE id = $1",
];

/// The advisory lock that makes one host at a time refresh statistics ("Waymar", 1).
pub(super) const STATISTICS_LOCK: i64 = 0x5761_796d_6172_0001;

#[async_trait]
impl HostSettings for PgStore {
    async fn clock_offset(&self) -> StoreResult<i64> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM host_settings WHERE key = $1")
                .bind(CLOCK_OFFSET_KEY)
                .fetch_optional(&self.pool)
                .await?;
        parse_clock_offset(value)
    }

    async fn advance_clock_offset(&self, by_ms: i64) -> StoreResult<i64> {
        let value: String = sqlx::query_scalar(
            "INSERT INTO host_settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE \
             SET value = LEAST(host_settings.value::numeric + excluded.value::numeric, $3)::int8::text \
             RETURNING value",
        )
        .bind(CLOCK_OFFSET_KEY)
        .bind(by_ms.clamp(0, MAX_OFFSET_MS).to_string())
        .bind(MAX_OFFSET_MS)
        .fetch_one(&self.pool)
        .await?;
        parse_clock_offset(Some(value))
    }

    async fn refresh_statistics(&self) -> StoreResult<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        // One host at a time: the others skip this round (ANALYZE of a table waits for another
        // ANALYZE of it).
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(STATISTICS_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !ours {
            return Ok(Vec::new());
        }
        // Autovacuum's rule (50 changed rows plus 10% of the table since the last ANALYZE),
        // counting a never-analyzed table as empty.
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
             WHERE s.schemaname = current_schema() \
             AND s.n_mod_since_analyze > 50 + 0.1 * GREATEST(c.reltuples, 0) \
             ORDER BY s.relname",
        )
        .fetch_all(&mut *tx)
        .await?;
        for table in &stale {
            let analyze = format!("ANALYZE \"{}\"", table.replace('"', "\"\""));
            sqlx::query(sqlx::AssertSqlSafe(analyze))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(stale)
    }
}
