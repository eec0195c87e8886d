//! Implements [`crate::store::Contacts`] and [`crate::store::flows::LiveContactTx`].
//!
//! Contacts outside ingest: upserting one through identity resolution, looking contacts up
//! (directly or through aliases), and deleting one with the erasure of its personal data.
//!
//! Deletion locks the contact row first (like a resolution would), then its runs (like a
//! commit would), then their timers: the same order as every other writer, so it waits for a
//! concurrent ingest or activation of the person to finish rather than racing it, and an
//! activation that commits after it finds its run exited and writes nothing.

use super::identity::live_by_key;
use super::rows::contact_columns;
use super::tx::PgTx;
use super::{MAX_ATTEMPTS, PgStore, is_transient, live_statuses};
use crate::clock::Timestamp;
use crate::contacts::Identity;
use crate::ids::TenantId;
use crate::store::Contacts;
use crate::store::codec::{count, deleted_key, list_limit};
use crate::store::flows::{self, LiveContactTx};
use crate::store::rows::{contact_from_row, each_contact_once, event_from_row, lookup_values};
use crate::store::{
    ContactLookup, ContactRecord, ContactUpsert, DeletedContact, EventRecord, IngestRouting,
    ReceivedEvents, StoreResult,
};
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The contact row is locked (`FOR UPDATE`), as a resolution locks it.
impl LiveContactTx for PgTx<'_> {
    async fn live_contact_by_key(
        &mut self,
        tenant: &TenantId,
        key: &str,
    ) -> StoreResult<Option<ContactRecord>> {
        live_by_key(self.conn(), tenant, key, true).await
    }
}

#[async_trait]
impl Contacts for PgStore {
    async fn upsert_contact(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        properties: &Map<String, Value>,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<ContactUpsert> {
        let mut attempt = 1;
        loop {
            let result = async {
                let mut tx = self.pool.begin().await?;
                let mut pg = PgTx::new(&mut tx);
                // Resolution takes the person's identity locks, which also serialise the bucket
                // evaluation below with the person's ingest.
                let upsert = flows::contacts::upsert_contact(
                    &mut pg,
                    tenant,
                    identity,
                    properties,
                    now,
                    routing.as_ref(),
                )
                .await?;
                pg.write_events().await?.all()?;
                tx.commit().await?;
                Ok(upsert)
            }
            .await;
            match result {
                Err(e) if attempt < MAX_ATTEMPTS && is_transient(&e) => attempt += 1,
                result => return result,
            }
        }
    }

    async fn find_contacts(
        &self,
        tenant: &TenantId,
        lookup: &ContactLookup,
    ) -> StoreResult<Vec<ContactRecord>> {
        let mut conn = self.pool.acquire().await?;
        match lookup {
            ContactLookup::Key(key) => Ok(live_by_key(&mut conn, tenant, key, false)
                .await?
                .into_iter()
                .collect()),
            ContactLookup::Any { user_id, email } => {
                let Some((user_id, email)) = lookup_values(user_id, email) else {
                    return Ok(Vec::new());
                };
                // Direct matches first, then alias matches; a NULL bind matches nothing.
                let rows = sqlx::query(concat!(
                    "SELECT * FROM (SELECT ",
                    contact_columns!(),
                    ", 0 AS via_alias FROM contacts c \
                     WHERE c.tenant_id = $1 AND c.deleted_at IS NULL \
                     AND (c.external_id = $2::text OR c.email = $3::text) \
                     UNION ALL SELECT ",
                    contact_columns!(),
                    ", 1 AS via_alias FROM contact_aliases a JOIN contacts c ON c.id = a.contact_id \
                     WHERE a.tenant_id = $1 AND c.deleted_at IS NULL \
                     AND ((a.kind = 'external' AND a.value = $2::text) \
                       OR (a.kind = 'email' AND a.value = $3::text))) found \
                     ORDER BY via_alias, first_seen_at, id"
                ))
                .bind(tenant.as_str())
                .bind(user_id)
                .bind(email.as_deref())
                .fetch_all(&mut *conn)
                .await?;
                each_contact_once(rows.iter().map(contact_from_row))
            }
        }
    }

    async fn delete_contact(
        &self,
        tenant: &TenantId,
        key: &str,
        now: Timestamp,
    ) -> StoreResult<Option<DeletedContact>> {
        let mut tx = self.pool.begin().await?;
        let Some(contact) = live_by_key(&mut tx, tenant, key, true).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let (tenant, id, key) = (tenant.as_str(), contact.id.as_str(), contact.key.as_str());

        // The contact stops resolving and loses its personal data; it keeps its user id and key so
        // its history still lines up. Contacts merged into it earlier (found through the merge
        // aliases, about to be dropped) hold personal data of the same person: erased too.
        // (Two statements: `id = $2 OR id IN (…)` in one would not use the primary key.)
        for sql in [
            "UPDATE contacts SET email = NULL, anonymous_id = NULL, properties = '{}', \
             updated_at = $3, deleted_at = COALESCE(deleted_at, $3) \
             WHERE tenant_id = $1 AND id = $2",
            "UPDATE contacts SET email = NULL, anonymous_id = NULL, properties = '{}', \
             updated_at = $3, deleted_at = COALESCE(deleted_at, $3) \
             WHERE tenant_id = $1 AND id IN (\
                 SELECT from_contact_id FROM contact_aliases \
                 WHERE tenant_id = $1 AND contact_id = $2 AND from_contact_id IS NOT NULL)",
        ] {
            sqlx::query(sql)
                .bind(tenant)
                .bind(id)
                .bind(now.0)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM contact_aliases WHERE tenant_id = $1 AND contact_id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // Its memberships close without a transition: nothing is evaluated or emitted for a
        // deleted person, and a newcomer with the same key starts with no membership.
        sqlx::query(
            "UPDATE bucket_memberships SET status = 'left', left_at = $3, leave_reason = 'deleted', \
             updated_at = $3 WHERE tenant_id = $1 AND contact_key = $2 AND status = 'active'",
        )
        .bind(tenant)
        .bind(key)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;

        // Its live runs exit (their timers go), and every run's person snapshot is erased.
        let exited: i64 = sqlx::query_scalar(concat!(
            "WITH exited AS (\
                 UPDATE runs SET status = 'exited', wake_at = NULL, updated_at = $3 \
                 WHERE tenant_id = $1 AND contact_key = $2 AND status IN ",
            live_statuses!(),
            " RETURNING id), \
             timers_gone AS (DELETE FROM timers WHERE run_id IN (SELECT id FROM exited)) \
             SELECT COUNT(*) FROM exited"
        ))
        .bind(tenant)
        .bind(key)
        .bind(now.0)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE runs SET input = jsonb_set(jsonb_set(input, '{person,email}', 'null'), \
             '{person,properties}', '{}') WHERE tenant_id = $1 AND contact_key = $2",
        )
        .bind(tenant)
        .bind(key)
        .execute(&mut *tx)
        .await?;

        // Its queued emails are never sent, and no email keeps an address or contents.
        let cancelled: i64 = sqlx::query_scalar(
            "WITH cancelled AS (\
                 UPDATE emails SET status = 'cancelled', lease_owner = NULL, lease_until = NULL \
                 WHERE tenant_id = $1 AND contact_key = $2 AND status = 'queued' RETURNING id) \
             SELECT COUNT(*) FROM cancelled",
        )
        .bind(tenant)
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE emails SET to_address = '', subject = '', body = '', html_body = NULL, \
                     unsubscribe_url = NULL \
             WHERE tenant_id = $1 AND contact_key = $2",
        )
        .bind(tenant)
        .bind(key)
        .execute(&mut *tx)
        .await?;

        // Its history moves to a key of its own, so a newcomer who later arrives with the same
        // user id starts afresh: no entry limits, event counts or memberships of the deleted
        // person carry over. Its bucket transitions' keys name it too: they move with it, so the
        // newcomer's own transitions are not taken for repeats.
        let tombstone = deleted_key(key, id);
        sqlx::query(
            "WITH contact AS (UPDATE contacts SET key = $3 WHERE tenant_id = $1 AND id = $4), \
             moved_events AS (\
                 UPDATE events SET contact_key = $3, \
                 idempotency_key = CASE WHEN idempotency_key LIKE 'bucket:%' \
                     THEN idempotency_key || '#deleted' ELSE idempotency_key END \
                 WHERE tenant_id = $1 AND contact_key = $2), \
             moved_runs AS (\
                 UPDATE runs SET contact_key = $3 WHERE tenant_id = $1 AND contact_key = $2), \
             moved_memberships AS (\
                 UPDATE bucket_memberships SET contact_key = $3 \
                 WHERE tenant_id = $1 AND contact_key = $2) \
             UPDATE emails SET contact_key = $3 WHERE tenant_id = $1 AND contact_key = $2",
        )
        .bind(tenant)
        .bind(key)
        .bind(&tombstone)
        .bind(id)
        .execute(&mut *tx)
        .await?;

        tx.commit().await?;
        Ok(Some(DeletedContact {
            contact_id: contact.id,
            key: contact.key,
            exited_runs: count(u64::try_from(exited).unwrap_or_default()),
            cancelled_emails: count(u64::try_from(cancelled).unwrap_or_default()),
        }))
    }

    async fn contact_events(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        name: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>> {
        let rows = sqlx::query(
            "SELECT id, name, properties::text AS properties, occurred_at, received_at, \
             idempotency_key FROM events WHERE tenant_id = $1 AND contact_key = $2 \
             AND ($3::text IS NULL OR name = $3) \
             ORDER BY occurred_at DESC, id DESC LIMIT $4",
        )
        .bind(tenant.as_str())
        .bind(contact_key)
        .bind(name)
        .bind(i64::from(list_limit(limit)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn events_received(
        &self,
        tenant: &TenantId,
        request: &ReceivedEvents,
    ) -> StoreResult<Vec<EventRecord>> {
        let (after_at, after_id) = request
            .after
            .as_ref()
            .map(|(at, id)| (at.0, id.as_str()))
            .unzip();
        let rows = sqlx::query(
            "SELECT id, name, properties::text AS properties, occurred_at, received_at, \
             idempotency_key FROM events WHERE tenant_id = $1 AND contact_key = $2 AND name = $3 \
             AND received_at BETWEEN $4 AND $5 \
             AND ($6::bigint IS NULL OR (received_at, id) > ($6, $7::text)) \
             ORDER BY received_at, id LIMIT $8",
        )
        .bind(tenant.as_str())
        .bind(&request.contact_key)
        .bind(&request.name)
        .bind(request.from.0)
        .bind(request.until.0)
        .bind(after_at)
        .bind(after_id)
        .bind(i64::from(request.limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }
}
