//! Implements [`crate::store::Tenancy`], [`crate::store::Operators`] and
//! [`crate::store::HostSettings`].
//!
//! Tenants, API keys (create, look up, revoke, list), the operator's keys and its tenant
//! lifecycle (list, suspend, delete), and host settings (the persisted dev-clock offset).

use super::SqliteStore;
use super::rows::{collect, scopes_to_text};
use crate::store::rows::{
    api_key_columns, operator_key_columns, tenant_columns, tenant_key_columns,
};
use crate::store::rows::{
    api_key_from_row, operator_key_from_row, tenant_from_row, tenant_key_from_row,
};

use crate::clock::{MAX_OFFSET_MS, Timestamp};
use crate::ids::{ApiKeyId, TenantId};
use crate::store::HostSettings;
use crate::store::codec::{CLOCK_OFFSET_KEY, parse_clock_offset};
use crate::store::{
    ApiKeyRecord, NewApiKey, NewOperatorKey, OperatorKeyRecord, StoreResult, Tenant, TenantKey,
};
use crate::store::{Operators, Tenancy};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

const TENANT_BY_NAME: &str = concat!(
    "SELECT ",
    tenant_columns!(),
    " FROM tenants WHERE name = ?1"
);
const TENANT_BY_ID: &str = concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = ?1");

#[async_trait]
impl Tenancy for SqliteStore {
    async fn tenant_by_name(&self, name: &str) -> StoreResult<Option<Tenant>> {
        let name = name.to_owned();
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(TENANT_BY_NAME)?;
            let mut rows = statement.query([&name])?;
            rows.next()?.map(tenant_from_row).transpose()
        })
        .await
    }

    /// Create the tenant, or answer the one that already has the name (`false`).
    async fn create_tenant(&self, name: &str, now: Timestamp) -> StoreResult<(Tenant, bool)> {
        let name = name.to_owned();
        self.write(move |tx| {
            // The next tenant number is taken under the write lock. (`WHERE true` tells the
            // parser that ON CONFLICT belongs to the INSERT, not to a join.)
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO tenants (id, name, created_at, number) \
                         SELECT ?1, ?2, ?3, IFNULL(MAX(number), 0) + 1 FROM tenants WHERE true \
                         ON CONFLICT (name) DO NOTHING",
                )?
                .execute(params![TenantId::generate().as_str(), name, now.0])?
                > 0;
            let mut statement = tx.prepare_cached(TENANT_BY_NAME)?;
            let mut rows = statement.query([&name])?;
            let row = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            Ok((tenant_from_row(row)?, inserted))
        })
        .await
    }

    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<ApiKeyRecord> {
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO api_keys (id, tenant_id, name, key_hash, scopes, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                key.id.as_str(),
                key.tenant_id.as_str(),
                key.name,
                key.key_hash,
                scopes_to_text(&key.scopes),
                key.created_at.0,
            ])?;
            Ok(key.into())
        })
        .await
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<TenantKey>> {
        let key_hash = key_hash.to_owned();
        // Every request asks, so the lookup (two seeks in small tables) runs on the caller's
        // thread.
        self.readers
            .read_now(move |tx| {
                let mut statement = tx.prepare_cached(concat!(
                    "SELECT ",
                    tenant_key_columns!(),
                    " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
                     WHERE k.key_hash = ?1 AND k.revoked_at IS NULL"
                ))?;
                let mut rows = statement.query([&key_hash])?;
                rows.next()?.map(tenant_key_from_row).transpose()
            })
            .await
    }

    /// Revoke a live key (within `tenant` when given); whether one was revoked.
    async fn revoke_api_key(
        &self,
        tenant: Option<&TenantId>,
        id: &ApiKeyId,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let tenant = tenant.cloned();
        let id = id.clone();
        self.write(move |tx| {
            let revoked = tx
                .prepare_cached(
                    "UPDATE api_keys SET revoked_at = ?1 \
                         WHERE id = ?2 AND revoked_at IS NULL AND (?3 IS NULL OR tenant_id = ?3)",
                )?
                .execute(params![
                    now.0,
                    id.as_str(),
                    tenant.as_ref().map(TenantId::as_str)
                ])?;
            Ok(revoked > 0)
        })
        .await
    }

    /// A tenant's keys, revoked ones included, newest first.
    async fn list_api_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKeyRecord>> {
        let tenant = tenant.clone();
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(concat!(
                "SELECT ",
                api_key_columns!(),
                " FROM api_keys WHERE tenant_id = ?1 ORDER BY created_at DESC, id DESC"
            ))?;
            collect(statement.query([tenant.as_str()])?, |row| {
                api_key_from_row(row)
            })
        })
        .await
    }
}

#[async_trait]
impl Operators for SqliteStore {
    async fn create_operator_key(&self, key: NewOperatorKey) -> StoreResult<OperatorKeyRecord> {
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO operator_keys (id, name, key_hash, created_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                key.id.as_str(),
                key.name,
                key.key_hash,
                key.created_at.0
            ])?;
            Ok(key.into())
        })
        .await
    }

    async fn operator_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<OperatorKeyRecord>> {
        let key_hash = key_hash.to_owned();
        self.readers
            .read_now(move |tx| {
                let mut statement = tx.prepare_cached(concat!(
                    "SELECT ",
                    operator_key_columns!(),
                    " FROM operator_keys WHERE key_hash = ?1 AND revoked_at IS NULL"
                ))?;
                let mut rows = statement.query([&key_hash])?;
                rows.next()?.map(operator_key_from_row).transpose()
            })
            .await
    }

    async fn revoke_operator_key(&self, id: &ApiKeyId, now: Timestamp) -> StoreResult<bool> {
        let id = id.clone();
        self.write_without_memberships(move |tx| {
            let revoked = tx
                .prepare_cached(
                    "UPDATE operator_keys SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
                )?
                .execute(params![now.0, id.as_str()])?;
            Ok(revoked > 0)
        })
        .await
    }

    async fn operator_keys_exist(&self) -> StoreResult<bool> {
        self.read(|tx| {
            Ok(tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM operator_keys)")?
                .query_row([], |row| row.get(0))?)
        })
        .await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.read(|tx| {
            let mut statement = tx.prepare_cached(concat!(
                "SELECT ",
                tenant_columns!(),
                " FROM tenants ORDER BY created_at, id"
            ))?;
            collect(statement.query([])?, |row| tenant_from_row(row))
        })
        .await
    }

    async fn tenant_by_id(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let id = id.clone();
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(TENANT_BY_ID)?;
            let mut rows = statement.query([id.as_str()])?;
            rows.next()?.map(tenant_from_row).transpose()
        })
        .await
    }

    async fn set_tenant_suspended(
        &self,
        id: &TenantId,
        at: Option<Timestamp>,
    ) -> StoreResult<Option<Tenant>> {
        let id = id.clone();
        self.write_without_memberships(move |tx| {
            tx.prepare_cached(
                "UPDATE tenants SET suspended_at = \
                 CASE WHEN ?2 IS NULL THEN NULL ELSE IFNULL(suspended_at, ?2) END WHERE id = ?1",
            )?
            .execute(params![id.as_str(), at.map(|at| at.0)])?;
            let mut statement = tx.prepare_cached(TENANT_BY_ID)?;
            let mut rows = statement.query([id.as_str()])?;
            rows.next()?.map(tenant_from_row).transpose()
        })
        .await
    }

    async fn delete_tenant(&self, id: &TenantId) -> StoreResult<bool> {
        let id = id.clone();
        self.write_with_contacts(move |tx, contacts| {
            let number: Option<i64> = tx
                .prepare_cached("SELECT number FROM tenants WHERE id = ?1")?
                .query_row([id.as_str()], |row| row.get(0))
                .optional()?;
            let Some(number) = number else {
                return Ok(false);
            };
            // Children before the rows they reference. The run-keyed tables are reached through
            // the tenant's runs (their primary keys start with the run), not by a scan.
            for sql in DELETE_TENANT_BY_NUMBER {
                tx.prepare_cached(sql)?.execute([number])?;
            }
            for sql in DELETE_TENANT_BY_ID {
                tx.prepare_cached(sql)?.execute([id.as_str()])?;
            }
            // It may hold the tenant's contacts and memberships; ids are never reused, but
            // nothing of a deleted tenant should stay in memory either.
            contacts.clear();
            Ok(true)
        })
        .await
    }
}

/// The tables keyed by the tenant's number (migrations 0014 and 0016).
const DELETE_TENANT_BY_NUMBER: [&str; 2] = [
    "DELETE FROM events WHERE tenant = ?1",
    "DELETE FROM bucket_memberships WHERE tenant = ?1",
];

/// Every other table holding the tenant's rows, children first, the tenant last.
const DELETE_TENANT_BY_ID: [&str; 23] = [
    "DELETE FROM contact_activity WHERE contact_id IN \
     (SELECT id FROM contacts WHERE tenant_id = ?1)",
    "DELETE FROM journal WHERE run_id IN (SELECT id FROM runs WHERE tenant_id = ?1)",
    "DELETE FROM timers WHERE run_id IN (SELECT id FROM runs WHERE tenant_id = ?1)",
    "DELETE FROM run_effects WHERE run_id IN (SELECT id FROM runs WHERE tenant_id = ?1)",
    "DELETE FROM emails WHERE tenant_id = ?1",
    "DELETE FROM runs WHERE tenant_id = ?1",
    "DELETE FROM contact_aliases WHERE tenant_id = ?1",
    "DELETE FROM contacts WHERE tenant_id = ?1",
    "DELETE FROM api_keys WHERE tenant_id = ?1",
    "DELETE FROM modules WHERE tenant_id = ?1",
    "DELETE FROM module_versions WHERE tenant_id = ?1",
    "DELETE FROM journey_configs WHERE tenant_id = ?1",
    "DELETE FROM journey_skips WHERE tenant_id = ?1",
    "DELETE FROM email_templates WHERE tenant_id = ?1",
    "DELETE FROM email_preferences WHERE tenant_id = ?1",
    "DELETE FROM email_signing_keys WHERE tenant_id = ?1",
    "DELETE FROM email_senders WHERE tenant_id = ?1",
    "DELETE FROM bucket_configs WHERE tenant_id = ?1",
    "DELETE FROM bucket_absence_cursors WHERE tenant_id = ?1",
    "DELETE FROM reconcile_state WHERE tenant_id = ?1",
    "DELETE FROM tenant_limits WHERE tenant_id = ?1",
    "DELETE FROM tenant_usage WHERE tenant_id = ?1",
    "DELETE FROM tenants WHERE id = ?1",
];

#[async_trait]
impl HostSettings for SqliteStore {
    async fn clock_offset(&self) -> StoreResult<i64> {
        let value: Option<String> = self
            .read(|tx| {
                Ok(tx
                    .prepare_cached("SELECT value FROM host_settings WHERE key = ?1")?
                    .query_row([CLOCK_OFFSET_KEY], |row| row.get(0))
                    .optional()?)
            })
            .await?;
        parse_clock_offset(value)
    }

    async fn advance_clock_offset(&self, by_ms: i64) -> StoreResult<i64> {
        let value: String = self
            .write(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "INSERT INTO host_settings (key, value) VALUES (?1, ?2) \
                         ON CONFLICT (key) DO UPDATE \
                         SET value = CAST(MIN(CAST(value AS REAL) + CAST(excluded.value AS REAL), \
                         ?3) AS INTEGER) RETURNING CAST(value AS TEXT)",
                    )?
                    .query_row(
                        params![
                            CLOCK_OFFSET_KEY,
                            by_ms.clamp(0, MAX_OFFSET_MS).to_string(),
                            MAX_OFFSET_MS
                        ],
                        |row| row.get(0),
                    )?)
            })
            .await?;
        parse_clock_offset(Some(value))
    }

    /// Nothing to refresh: SQLite plans these statements without statistics (it prefers the
    /// index matching the most equality terms), and none were ever taken here.
    async fn refresh_statistics(&self) -> StoreResult<Vec<String>> {
        Ok(Vec::new())
    }
}
