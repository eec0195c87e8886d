//! Implements [`crate::store::EmailPreferences`].
//!
//! Email preferences (who opted out of email) and the per-tenant key that signs unsubscribe
//! links. A person counts as unsubscribed when a row for their resolved key, or for the
//! address in question, says so; merges fold rows into the survivor ([`repoint`]).

use super::SqliteStore;
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::EmailPreferences;
use crate::store::StoreResult;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

/// Whether the person `contact_key`, or the address `email`, opted out. Usable inside any
/// transaction (ingest's enrollment guard calls it in its own).
pub(crate) fn unsubscribed_in(
    conn: &Connection,
    tenant: &TenantId,
    contact_key: &str,
    email: Option<&str>,
) -> StoreResult<bool> {
    let found: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM email_preferences WHERE tenant_id = ?1 \
             AND unsubscribed = 1 AND contact_key = ?2) \
             OR EXISTS (SELECT 1 FROM email_preferences WHERE tenant_id = ?1 \
             AND unsubscribed = 1 AND email = ?3)",
        )?
        .query_row(params![tenant.as_str(), contact_key, email], |row| {
            row.get(0)
        })?;
    Ok(found)
}

/// Move the rows of `from` to `to` (a merge or a key change), OR-ing each into a row `to`
/// already has for the same address: an opt-out is never lost.
pub(super) fn repoint(
    conn: &Connection,
    tenant: &TenantId,
    from: &str,
    to: &str,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO email_preferences (tenant_id, contact_key, email, unsubscribed, \
         unsubscribed_at, updated_at) \
         SELECT tenant_id, ?3, email, unsubscribed, unsubscribed_at, updated_at \
         FROM email_preferences WHERE tenant_id = ?1 AND contact_key = ?2 AND true \
         ON CONFLICT (tenant_id, contact_key, email) DO UPDATE SET \
         unsubscribed = MAX(unsubscribed, excluded.unsubscribed), \
         unsubscribed_at = COALESCE(MIN(unsubscribed_at, excluded.unsubscribed_at), \
             unsubscribed_at, excluded.unsubscribed_at), \
         updated_at = MAX(updated_at, excluded.updated_at)",
    )?
    .execute(params![tenant.as_str(), from, to])?;
    conn.prepare_cached("DELETE FROM email_preferences WHERE tenant_id = ?1 AND contact_key = ?2")?
        .execute(params![tenant.as_str(), from])?;
    Ok(())
}

#[async_trait]
impl EmailPreferences for SqliteStore {
    async fn unsubscribe(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        email: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (tenant, contact_key, email) =
            (tenant.clone(), contact_key.to_owned(), email.to_owned());
        self.write(move |tx| {
            let before = unsubscribed_in(tx, &tenant, &contact_key, Some(&email))?;
            tx.prepare_cached(
                "INSERT INTO email_preferences (tenant_id, contact_key, email, unsubscribed, \
                     unsubscribed_at, updated_at) VALUES (?1, ?2, ?3, 1, ?4, ?4) \
                     ON CONFLICT (tenant_id, contact_key, email) DO UPDATE SET unsubscribed = 1, \
                     unsubscribed_at = COALESCE(unsubscribed_at, excluded.unsubscribed_at), \
                     updated_at = excluded.updated_at",
            )?
            .execute(params![tenant.as_str(), contact_key, email, now.0])?;
            Ok(!before)
        })
        .await
    }

    async fn is_unsubscribed(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        email: Option<&str>,
    ) -> StoreResult<bool> {
        let (tenant, contact_key, email) = (
            tenant.clone(),
            contact_key.to_owned(),
            email.map(str::to_owned),
        );
        self.read(move |tx| unsubscribed_in(tx, &tenant, &contact_key, email.as_deref()))
            .await
    }

    async fn email_signing_secret(
        &self,
        tenant: &TenantId,
        candidate: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<Option<String>> {
        let tenant = tenant.clone();
        let read_tenant = tenant.clone();
        let stored = self
            .read(move |tx| {
                Ok(tx
                    .prepare_cached("SELECT secret FROM email_signing_keys WHERE tenant_id = ?1")?
                    .query_row(params![read_tenant.as_str()], |row| row.get::<_, String>(0))
                    .optional()?)
            })
            .await?;
        let Some(candidate) = candidate.filter(|_| stored.is_none()) else {
            return Ok(stored);
        };
        let candidate = candidate.to_owned();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO email_signing_keys (tenant_id, secret, created_at) \
                     VALUES (?1, ?2, ?3) ON CONFLICT (tenant_id) DO NOTHING",
            )?
            .execute(params![tenant.as_str(), candidate, now.0])?;
            Ok(Some(
                tx.prepare_cached("SELECT secret FROM email_signing_keys WHERE tenant_id = ?1")?
                    .query_row(params![tenant.as_str()], |row| row.get::<_, String>(0))?,
            ))
        })
        .await
    }
}
