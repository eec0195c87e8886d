//! Implements [`crate::store::EmailPreferences`].
//!
//! Email preferences (who opted out of email) and the per-tenant key that signs unsubscribe
//! links. A person counts as unsubscribed when a row for their resolved key, or for the
//! address in question, says so; merges fold rows into the survivor ([`repoint`]).

use super::PgStore;
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::EmailPreferences;
use crate::store::StoreResult;
use async_trait::async_trait;
use sqlx::PgConnection;

const UNSUBSCRIBED: &str = "SELECT EXISTS (SELECT 1 FROM email_preferences WHERE tenant_id = $1 \
     AND unsubscribed AND contact_key = $2) \
     OR EXISTS (SELECT 1 FROM email_preferences WHERE tenant_id = $1 \
     AND unsubscribed AND email = $3)";

/// Whether the person `contact_key`, or the address `email`, opted out. Usable inside any
/// transaction (ingest's enrollment guard calls it in its own).
pub(crate) async fn unsubscribed_in(
    conn: &mut PgConnection,
    tenant: &TenantId,
    contact_key: &str,
    email: Option<&str>,
) -> StoreResult<bool> {
    Ok(sqlx::query_scalar(UNSUBSCRIBED)
        .bind(tenant.as_str())
        .bind(contact_key)
        .bind(email)
        .fetch_one(conn)
        .await?)
}

/// Move the rows of `from` to `to` (a merge or a key change), OR-ing each into a row `to`
/// already has for the same address: an opt-out is never lost.
pub(super) async fn repoint(
    conn: &mut PgConnection,
    tenant: &TenantId,
    from: &str,
    to: &str,
) -> StoreResult<()> {
    sqlx::query(
        "WITH moved AS (\
             DELETE FROM email_preferences WHERE tenant_id = $1 AND contact_key = $2 \
             RETURNING email, unsubscribed, unsubscribed_at, updated_at) \
         INSERT INTO email_preferences (tenant_id, contact_key, email, unsubscribed, \
         unsubscribed_at, updated_at) \
         SELECT $1, $3, email, unsubscribed, unsubscribed_at, updated_at FROM moved \
         ON CONFLICT (tenant_id, contact_key, email) DO UPDATE SET \
         unsubscribed = email_preferences.unsubscribed OR EXCLUDED.unsubscribed, \
         unsubscribed_at = LEAST(email_preferences.unsubscribed_at, EXCLUDED.unsubscribed_at), \
         updated_at = GREATEST(email_preferences.updated_at, EXCLUDED.updated_at)",
    )
    .bind(tenant.as_str())
    .bind(from)
    .bind(to)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl EmailPreferences for PgStore {
    async fn unsubscribe(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        email: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let before = unsubscribed_in(&mut tx, tenant, contact_key, Some(email)).await?;
        sqlx::query(
            "INSERT INTO email_preferences (tenant_id, contact_key, email, unsubscribed, \
             unsubscribed_at, updated_at) VALUES ($1, $2, $3, TRUE, $4, $4) \
             ON CONFLICT (tenant_id, contact_key, email) DO UPDATE SET unsubscribed = TRUE, \
             unsubscribed_at = COALESCE(email_preferences.unsubscribed_at, EXCLUDED.unsubscribed_at), \
             updated_at = EXCLUDED.updated_at",
        )
        .bind(tenant.as_str())
        .bind(contact_key)
        .bind(email)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(!before)
    }

    async fn is_unsubscribed(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        email: Option<&str>,
    ) -> StoreResult<bool> {
        let mut conn = self.pool.acquire().await?;
        unsubscribed_in(&mut conn, tenant, contact_key, email).await
    }

    async fn email_signing_secret(
        &self,
        tenant: &TenantId,
        candidate: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<Option<String>> {
        let Some(candidate) = candidate else {
            return Ok(sqlx::query_scalar(
                "SELECT secret FROM email_signing_keys WHERE tenant_id = $1",
            )
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await?);
        };
        // Insert-if-absent, then read whatever won: concurrent first uses on several hosts agree.
        let secret: Option<String> = sqlx::query_scalar(
            "WITH inserted AS (\
                 INSERT INTO email_signing_keys (tenant_id, secret, created_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO NOTHING RETURNING secret) \
             SELECT secret FROM inserted \
             UNION ALL SELECT secret FROM email_signing_keys WHERE tenant_id = $1 \
             LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(candidate)
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await?;
        match secret {
            Some(secret) => Ok(Some(secret)),
            // Another host's insert committed after this statement's snapshot: read it now.
            None => Ok(sqlx::query_scalar(
                "SELECT secret FROM email_signing_keys WHERE tenant_id = $1",
            )
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await?),
        }
    }
}
