//! Tenants, API keys, loaded module versions and host settings (the persisted dev-clock offset).

use super::SqliteStore;
use super::rows::{scopes_from_text, scopes_to_text};
use crate::clock::Timestamp;
use crate::ids::{ApiKeyId, TenantId};
use crate::store::{ApiKeyRecord, ModuleVersionRecord, NewApiKey, StoreError, StoreResult, Tenant};
use sqlx::Row;

const CLOCK_OFFSET_KEY: &str = "clock_offset_ms";

pub(super) async fn tenant_by_name(store: &SqliteStore, name: &str) -> StoreResult<Option<Tenant>> {
    let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = ?")
        .bind(name)
        .fetch_optional(&store.pool)
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

pub(super) async fn create_tenant(
    store: &SqliteStore,
    name: &str,
    now: Timestamp,
) -> StoreResult<Tenant> {
    let tenant = Tenant {
        id: TenantId::generate(),
        name: name.to_owned(),
        created_at: now,
    };
    let (_writer, mut tx) = store.write().await?;
    sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
        .bind(tenant.id.as_str())
        .bind(&tenant.name)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(tenant)
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
    let row = sqlx::query(
        "SELECT id, tenant_id, name, scopes, created_at, revoked_at FROM api_keys \
         WHERE key_hash = ? AND revoked_at IS NULL",
    )
    .bind(key_hash)
    .fetch_optional(&store.pool)
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
    match value {
        None => Ok(0),
        Some(text) => text
            .parse()
            .map_err(|e| StoreError::corrupt("clock offset", format!("{text:?}: {e}"))),
    }
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
