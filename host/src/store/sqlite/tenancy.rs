//! Tenants, API keys (create, look up, revoke, list), loaded module versions and host
//! settings (the persisted dev-clock offset).

use super::SqliteStore;
use super::rows::{scopes_from_text, scopes_to_text};
use crate::clock::Timestamp;
use crate::ids::{ApiKeyId, TenantId};
use crate::store::codec::{CLOCK_OFFSET_KEY, parse_clock_offset};
use crate::store::{ApiKeyRecord, ModuleVersionRecord, NewApiKey, StoreResult, Tenant};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

/// The columns [`api_key_from_row`] reads.
macro_rules! api_key_columns {
    () => {
        "id, tenant_id, name, scopes, created_at, revoked_at"
    };
}

fn tenant_from_row(row: &SqliteRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: TenantId(row.try_get("id")?),
        name: row.try_get("name")?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

fn api_key_from_row(row: &SqliteRow) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: ApiKeyId(row.try_get("id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        name: row.try_get("name")?,
        scopes: scopes_from_text(row.try_get("scopes")?)?,
        created_at: Timestamp(row.try_get("created_at")?),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
    })
}

pub(super) async fn tenant_by_name(store: &SqliteStore, name: &str) -> StoreResult<Option<Tenant>> {
    sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = ?")
        .bind(name)
        .fetch_optional(&store.pool)
        .await?
        .as_ref()
        .map(tenant_from_row)
        .transpose()
}

/// Create the tenant, or answer the one that already has the name (`false`).
pub(super) async fn create_tenant(
    store: &SqliteStore,
    name: &str,
    now: Timestamp,
) -> StoreResult<(Tenant, bool)> {
    let (_writer, mut tx) = store.write().await?;
    let inserted = sqlx::query(
        "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(TenantId::generate().as_str())
    .bind(name)
    .bind(now.0)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = ?")
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
    let tenant = tenant_from_row(&row)?;
    tx.commit().await?;
    Ok((tenant, inserted))
}

pub(super) async fn create_api_key(
    store: &SqliteStore,
    key: NewApiKey,
) -> StoreResult<ApiKeyRecord> {
    let (_writer, mut tx) = store.write().await?;
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

pub(super) async fn api_key_by_hash(
    store: &SqliteStore,
    key_hash: &str,
) -> StoreResult<Option<ApiKeyRecord>> {
    sqlx::query(concat!(
        "SELECT ",
        api_key_columns!(),
        " FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"
    ))
    .bind(key_hash)
    .fetch_optional(&store.pool)
    .await?
    .as_ref()
    .map(api_key_from_row)
    .transpose()
}

/// Revoke a live key (within `tenant` when given); whether one was revoked.
pub(super) async fn revoke_api_key(
    store: &SqliteStore,
    tenant: Option<&TenantId>,
    id: &ApiKeyId,
    now: Timestamp,
) -> StoreResult<bool> {
    let (_writer, mut tx) = store.write().await?;
    let revoked = sqlx::query(
        "UPDATE api_keys SET revoked_at = ?1 \
         WHERE id = ?2 AND revoked_at IS NULL AND (?3 IS NULL OR tenant_id = ?3)",
    )
    .bind(now.0)
    .bind(id.as_str())
    .bind(tenant.map(TenantId::as_str))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    tx.commit().await?;
    Ok(revoked)
}

/// A tenant's keys, revoked ones included, newest first.
pub(super) async fn list_api_keys(
    store: &SqliteStore,
    tenant: &TenantId,
) -> StoreResult<Vec<ApiKeyRecord>> {
    sqlx::query(concat!(
        "SELECT ",
        api_key_columns!(),
        " FROM api_keys WHERE tenant_id = ? ORDER BY created_at DESC, id DESC"
    ))
    .bind(tenant.as_str())
    .fetch_all(&store.pool)
    .await?
    .iter()
    .map(api_key_from_row)
    .collect()
}

pub(super) async fn record_module_version(
    store: &SqliteStore,
    version: &ModuleVersionRecord,
) -> StoreResult<()> {
    let (_writer, mut tx) = store.write().await?;
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

pub(super) async fn clock_offset(store: &SqliteStore) -> StoreResult<i64> {
    let value: Option<String> = sqlx::query_scalar("SELECT value FROM host_settings WHERE key = ?")
        .bind(CLOCK_OFFSET_KEY)
        .fetch_optional(&store.pool)
        .await?;
    parse_clock_offset(value)
}

pub(super) async fn set_clock_offset(store: &SqliteStore, offset_ms: i64) -> StoreResult<()> {
    let (_writer, mut tx) = store.write().await?;
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
