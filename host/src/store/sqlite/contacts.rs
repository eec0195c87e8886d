//! Implements [`crate::store::Contacts`] and [`crate::store::flows::LiveContactTx`].
//!
//! Contacts outside ingest: upserting one through identity resolution, looking contacts up
//! (directly or through aliases), and deleting one with the erasure of its personal data.

use super::identity::{contact_columns, contact_columns_c, live_by_key};
use super::rows::{collect, count, list_limit};
use crate::store::rows::{contact_from_row, each_contact_once, event_from_row, lookup_values};

use super::tx::{SqliteTx, run_sync};
use super::{SqliteStore, live_statuses, tenant_number};
use crate::clock::Timestamp;
use crate::contacts::Identity;
use crate::ids::TenantId;
use crate::store::Contacts;
use crate::store::codec::deleted_key;
use crate::store::flows::{self, LiveContactTx};
use crate::store::{
    ContactLookup, ContactRecord, ContactUpsert, DeletedContact, EventRecord, IngestRouting,
    ReceivedEvents, StoreResult,
};
use async_trait::async_trait;
use rusqlite::params;
use serde_json::{Map, Value};
use std::sync::Arc;

impl LiveContactTx for SqliteTx<'_> {
    async fn live_contact_by_key(
        &mut self,
        tenant: &TenantId,
        key: &str,
    ) -> StoreResult<Option<ContactRecord>> {
        live_by_key(self.conn, tenant, key)
    }
}

#[async_trait]
impl Contacts for SqliteStore {
    async fn upsert_contact(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        properties: &Map<String, Value>,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<ContactUpsert> {
        let (tenant, identity, properties) = (tenant.clone(), identity.clone(), properties.clone());
        self.write_with_contacts(move |conn, cache| {
            let mut tx = SqliteTx::with_contacts(conn, cache)?;
            run_sync(flows::contacts::upsert_contact(
                &mut tx,
                &tenant,
                &identity,
                &properties,
                now,
                routing.as_ref(),
            ))
        })
        .await
    }

    async fn find_contacts(
        &self,
        tenant: &TenantId,
        lookup: &ContactLookup,
    ) -> StoreResult<Vec<ContactRecord>> {
        let (tenant, lookup) = (tenant.clone(), lookup.clone());
        self.read(move |tx| match lookup {
            ContactLookup::Key(key) => Ok(live_by_key(tx, &tenant, &key)?.into_iter().collect()),
            ContactLookup::Any { user_id, email } => {
                let Some((user_id, email)) = lookup_values(&user_id, &email) else {
                    return Ok(Vec::new());
                };
                // Direct matches first, then alias matches; a NULL bind matches nothing.
                let mut statement = tx.prepare_cached(concat!(
                    "SELECT ",
                    contact_columns!(),
                    ", 0 AS via_alias FROM contacts \
                         WHERE tenant_id = ?1 AND deleted_at IS NULL \
                         AND (external_id = ?2 OR email = ?3) \
                         UNION ALL SELECT ",
                    contact_columns_c!(),
                    ", 1 AS via_alias FROM contact_aliases a \
                         JOIN contacts c ON c.id = a.contact_id \
                         WHERE a.tenant_id = ?1 AND c.deleted_at IS NULL \
                         AND ((a.kind = 'external' AND a.value = ?2) \
                           OR (a.kind = 'email' AND a.value = ?3)) \
                         ORDER BY via_alias, first_seen_at, id"
                ))?;
                let rows = statement.query(params![tenant.as_str(), user_id, email])?;
                each_contact_once(rows.and_then(|row| contact_from_row(row)))
            }
        })
        .await
    }

    async fn delete_contact(
        &self,
        tenant: &TenantId,
        key: &str,
        now: Timestamp,
    ) -> StoreResult<Option<DeletedContact>> {
        let (tenant, key) = (tenant.clone(), key.to_owned());
        self
            .write_with_contacts(move |tx, cache| {
                let Some(contact) = live_by_key(tx, &tenant, &key)? else {
                    return Ok(None);
                };
                // This rewrites contacts (the deleted one, those merged into it) outside the
                // identity primitives: the writer's cache forgets them all (deletions are rare).
                cache.clear();
                let (tenant, id, key) = (tenant.as_str(), contact.id.as_str(), contact.key.as_str());

                // The contact stops resolving and loses its personal data; it keeps its user id and
                // key so its history still lines up. Contacts merged into it earlier (found through
                // the merge aliases, about to be dropped) hold personal data of the same person:
                // erased too.
                tx.prepare_cached(
                    "UPDATE contacts SET email = NULL, anonymous_id = NULL, properties = '{}', \
                     updated_at = ?3, deleted_at = COALESCE(deleted_at, ?3) \
                     WHERE tenant_id = ?1 AND (id = ?2 OR id IN (\
                         SELECT from_contact_id FROM contact_aliases \
                         WHERE tenant_id = ?1 AND contact_id = ?2 AND from_contact_id IS NOT NULL))",
                )?
                .execute(params![tenant, id, now.0])?;
                tx.prepare_cached(
                    "DELETE FROM contact_aliases WHERE tenant_id = ?1 AND contact_id = ?2",
                )?
                .execute(params![tenant, id])?;
                // Its memberships close without a transition: nothing is evaluated or emitted for
                // a deleted person, and a newcomer with the same key starts with no membership.
                tx.prepare_cached(concat!(
                    "UPDATE bucket_memberships SET status = 'left', left_at = ?3, \
                     leave_reason = 'deleted', updated_at = ?3 WHERE tenant = ",
                    tenant_number!("?1"),
                    " AND contact_key = ?2 AND status = 'active'"
                ))?
                .execute(params![tenant, key, now.0])?;

                // Its live runs exit (their timers go), and every run's person snapshot is erased.
                tx.prepare_cached(concat!(
                    "DELETE FROM timers WHERE run_id IN (SELECT id FROM runs \
                     WHERE tenant_id = ?1 AND contact_key = ?2 AND status IN ",
                    live_statuses!(),
                    ")"
                ))?
                .execute(params![tenant, key])?;
                let exited = tx
                    .prepare_cached(concat!(
                        "UPDATE runs SET status = 'exited', wake_at = NULL, updated_at = ?3 \
                         WHERE tenant_id = ?1 AND contact_key = ?2 AND status IN ",
                        live_statuses!()
                    ))?
                    .execute(params![tenant, key, now.0])?;
                tx.prepare_cached(
                    "UPDATE runs SET input = json_set(input, '$.person.email', NULL, \
                     '$.person.properties', json('{}')) WHERE tenant_id = ?1 AND contact_key = ?2",
                )?
                .execute(params![tenant, key])?;

                // Its queued emails are never sent, and no email keeps an address or contents.
                let cancelled = tx
                    .prepare_cached(
                        "UPDATE emails SET status = 'cancelled', lease_owner = NULL, \
                         lease_until = NULL \
                         WHERE tenant_id = ?1 AND contact_key = ?2 AND status = 'queued'",
                    )?
                    .execute(params![tenant, key])?;
                tx.prepare_cached(
                    "UPDATE emails SET to_address = '', subject = '', body = '', html_body = NULL, \
                     unsubscribe_url = NULL \
                     WHERE tenant_id = ?1 AND contact_key = ?2",
                )?
                .execute(params![tenant, key])?;

                // Its history moves to a key of its own, so a newcomer who later arrives with the
                // same user id starts afresh: no entry limits, event counts or memberships of the
                // deleted person carry over.
                let tombstone = deleted_key(key, id);
                tx.prepare_cached("UPDATE contacts SET key = ?3 WHERE tenant_id = ?1 AND id = ?2")?
                    .execute(params![tenant, id, tombstone])?;
                // Its bucket transitions' keys name it too: they move with it, so the newcomer's
                // own transitions are not taken for repeats.
                tx.prepare_cached(concat!(
                    "UPDATE events SET idempotency_key = idempotency_key || '#deleted' \
                         WHERE tenant = ",
                    tenant_number!("?1"),
                    " AND contact_key = ?2 AND idempotency_key LIKE 'bucket:%'"
                ))?
                .execute(params![tenant, key])?;
                for sql in [
                    concat!(
                        "UPDATE events SET contact_key = ?3 WHERE tenant = ",
                        tenant_number!("?1"),
                        " AND contact_key = ?2"
                    ),
                    "UPDATE runs SET contact_key = ?3 WHERE tenant_id = ?1 AND contact_key = ?2",
                    "UPDATE emails SET contact_key = ?3 WHERE tenant_id = ?1 AND contact_key = ?2",
                    concat!(
                        "UPDATE bucket_memberships SET contact_key = ?3 WHERE tenant = ",
                        tenant_number!("?1"),
                        " AND contact_key = ?2"
                    ),
                ] {
                    tx.prepare_cached(sql)?
                        .execute(params![tenant, key, tombstone])?;
                }

                Ok(Some(DeletedContact {
                    contact_id: contact.id.clone(),
                    key: contact.key.clone(),
                    exited_runs: count(exited as u64),
                    cancelled_emails: count(cancelled as u64),
                }))
            })
            .await
    }

    async fn contact_events(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        name: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>> {
        let (tenant, key, name) = (
            tenant.clone(),
            contact_key.to_owned(),
            name.map(str::to_owned),
        );
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(concat!(
                "SELECT id, name, properties, occurred_at, received_at, idempotency_key \
                     FROM events WHERE tenant = ",
                tenant_number!("?1"),
                " AND contact_key = ?2 AND (?3 IS NULL OR name = ?3) \
                     ORDER BY occurred_at DESC, id DESC LIMIT ?4"
            ))?;
            let rows = statement.query(params![
                tenant.as_str(),
                key,
                name,
                i64::from(list_limit(limit))
            ])?;
            collect(rows, |row| event_from_row(row))
        })
        .await
    }

    async fn events_received(
        &self,
        tenant: &TenantId,
        request: &ReceivedEvents,
    ) -> StoreResult<Vec<EventRecord>> {
        let (tenant, request) = (tenant.clone(), request.clone());
        self.read(move |tx| {
            // The person's events of one name are a prefix of `events_by_contact`; the span
            // and the order are on receive time, checked on those rows.
            let mut statement = tx.prepare_cached(concat!(
                "SELECT id, name, properties, occurred_at, received_at, idempotency_key \
                     FROM events WHERE tenant = ",
                tenant_number!("?1"),
                " AND contact_key = ?2 AND name = ?3 \
                     AND received_at BETWEEN ?4 AND ?5 \
                     AND (?6 IS NULL OR (received_at, id) > (?6, ?7)) \
                     ORDER BY received_at, id LIMIT ?8"
            ))?;
            let (after_at, after_id) = request
                .after
                .as_ref()
                .map(|(at, id)| (at.0, id.as_str()))
                .unzip();
            let rows = statement.query(params![
                tenant.as_str(),
                request.contact_key,
                request.name,
                request.from.0,
                request.until.0,
                after_at,
                after_id,
                i64::from(request.limit.max(1)),
            ])?;
            collect(rows, |row| event_from_row(row))
        })
        .await
    }
}
