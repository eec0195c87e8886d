//! Implements [`crate::store::Outbox`].
//!
//! The email outbox: queuing an activation's emails (inside its commit), claiming due emails
//! for delivery, recording delivery outcomes, and listing emails.
//!
//! Suppression is checked twice (defence in depth): the commit records an email to someone
//! who has unsubscribed as `suppressed`, and a claim re-checks every due email, so an
//! unsubscribe that lands after the commit still stops the send.
//!
//! An email is counted sent (the tenant's usage) in the transaction that marks it, so exactly
//! once: a late second report finds it no longer queued and counts nothing.

use super::rows::{ListQuery, and_equals, collect, fetch_newest_first};
use super::usage::add_usage;
use super::{SqliteStore, tenant_not_suspended};
use crate::clock::{Clock, Timestamp};
use crate::contacts::normalize_email;
use crate::ids::{EmailId, TenantId};
use crate::store::Outbox;
use crate::store::rows::email_columns;
use crate::store::rows::email_from_row;
use crate::store::rows::{claimed_email_from_row, in_claim_order};
use crate::store::{
    DeliveryResult, EmailFilter, EmailRecord, Lease, NewEmail, OutboxEmail, StoreResult,
    SuppressedReason,
};
use crate::usage::UsageTally;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

/// Whether a row of `email_preferences` opts the email `e` out (its person or its address).
macro_rules! recipient_unsubscribed {
    ($tenant:literal, $contact:literal, $to:literal) => {
        concat!(
            "(EXISTS (SELECT 1 FROM email_preferences p WHERE p.tenant_id = ",
            $tenant,
            " AND p.unsubscribed = 1 AND p.contact_key = ",
            $contact,
            ") OR EXISTS (SELECT 1 FROM email_preferences p WHERE p.tenant_id = ",
            $tenant,
            " AND p.unsubscribed = 1 AND p.email = ",
            $to,
            "))"
        )
    };
}

/// Queue an activation's emails, inside its commit. A queued email whose recipient has
/// unsubscribed is recorded as suppressed instead.
pub(super) fn insert_emails(conn: &Connection, emails: &[NewEmail]) -> StoreResult<()> {
    if emails.is_empty() {
        return Ok(());
    }
    // A new email is deliverable at once: `next_attempt_at` is on the real clock.
    let queued_at = Clock::real_now().0;
    let mut insert = conn.prepare_cached(concat!(
        "INSERT INTO emails (id, tenant_id, run_id, step_seq, contact_key, journey_id, \
         to_address, template, subject, body, html_body, unsubscribe_url, status, \
         suppressed_reason, attempts, created_at, next_attempt_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
         CASE WHEN ?13 = 'queued' AND ",
        recipient_unsubscribed!("?2", "?5", "?7"),
        " THEN 'suppressed' ELSE ?13 END, \
         CASE WHEN ?13 = 'queued' AND ",
        recipient_unsubscribed!("?2", "?5", "?7"),
        " THEN 'unsubscribed' ELSE ?14 END, 0, ?15, ?16"
    ))?;
    for email in emails {
        insert.execute(params![
            email.id.as_str(),
            email.tenant_id.as_str(),
            email.run_id.as_str(),
            i64::from(email.step_seq),
            email.contact_key,
            email.journey_id,
            normalize_email(&email.to).unwrap_or_else(|| email.to.clone()),
            email.template,
            email.subject,
            email.body,
            email.html,
            email.unsubscribe_url,
            email.status.as_str(),
            email.suppressed_reason.map(SuppressedReason::as_str),
            email.created_at.0,
            queued_at,
        ])?;
    }
    Ok(())
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn journey_emailed_since(
        &self,
        tenant: &TenantId,
        journey_id: &str,
        to: &str,
        since: Timestamp,
    ) -> StoreResult<bool> {
        let (tenant, journey_id) = (tenant.clone(), journey_id.to_owned());
        let to = normalize_email(to).unwrap_or_default();
        self.read(move |tx| {
            Ok(tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM emails WHERE tenant_id = ?1 \
                         AND to_address = ?2 AND created_at >= ?3 AND journey_id = ?4 \
                         AND status IN ('queued', 'sent'))",
                )?
                .query_row(params![tenant.as_str(), to, since.0, journey_id], |row| {
                    row.get(0)
                })?)
        })
        .await
    }

    async fn claim_outbox(&self, lease: &Lease, limit: u32) -> StoreResult<Vec<OutboxEmail>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let lease = lease.clone();
        let claimed = self
            .write_without_memberships(move |tx| {
                // The due emails of this claim whose recipient has unsubscribed since they were
                // queued are suppressed, not sent.
                tx.prepare_cached(concat!(
                    "UPDATE emails SET status = 'suppressed', suppressed_reason = 'unsubscribed' \
                     WHERE id IN (\
                         SELECT id FROM emails WHERE status = 'queued' AND next_attempt_at <= ?1 \
                         AND (lease_until IS NULL OR lease_until < ?1) AND ",
                    tenant_not_suspended!("emails.tenant_id"),
                    " ORDER BY next_attempt_at, id LIMIT ?2) AND ",
                    recipient_unsubscribed!(
                        "emails.tenant_id",
                        "emails.contact_key",
                        "emails.to_address"
                    )
                ))?
                .execute(params![lease.now_real.0, i64::from(limit)])?;
                // Only queued emails: sent, failed, cancelled (the contact was deleted) and
                // suppressed ones never are. A suspended tenant's wait until it resumes.
                let mut statement = tx.prepare_cached(concat!(
                    "UPDATE emails SET lease_owner = ?1, lease_until = ?2 \
                     WHERE id IN (\
                         SELECT id FROM emails WHERE status = 'queued' AND next_attempt_at <= ?3 \
                         AND (lease_until IS NULL OR lease_until < ?3) AND ",
                    tenant_not_suspended!("emails.tenant_id"),
                    " ORDER BY next_attempt_at, id LIMIT ?4) \
                     RETURNING id, tenant_id, to_address, subject, body, html_body, unsubscribe_url, \
                     attempts, next_attempt_at"
                ))?;
                let rows = statement.query(params![
                    lease.owner,
                    lease.until_real.0,
                    lease.now_real.0,
                    i64::from(limit),
                ])?;
                collect(rows, |row| claimed_email_from_row(row))
            })
            .await?;
        Ok(in_claim_order(claimed))
    }

    async fn renew_outbox_lease(&self, id: &EmailId, lease: &Lease) -> StoreResult<bool> {
        let (id, lease) = (id.clone(), lease.clone());
        self.write_without_memberships(move |tx| {
            let renewed = tx
                .prepare_cached(
                    "UPDATE emails SET lease_until = ?3 \
                         WHERE id = ?1 AND lease_owner = ?2 AND status = 'queued'",
                )?
                .execute(params![id.as_str(), lease.owner, lease.until_real.0])?;
            Ok(renewed == 1)
        })
        .await
    }

    async fn record_delivery(&self, id: &EmailId, result: DeliveryResult) -> StoreResult<()> {
        let id = id.clone();
        self.write_without_memberships(move |tx| {
            // Only a queued email takes an outcome: a late report from a worker whose lease
            // expired never turns a sent email back into a queued or failed one.
            match &result {
                DeliveryResult::Sent { at } => {
                    let sent: Option<String> = tx
                        .prepare_cached(
                            "UPDATE emails SET status = 'sent', sent_at = ?1, \
                             attempts = attempts + 1, lease_owner = NULL, lease_until = NULL \
                             WHERE id = ?2 AND status = 'queued' RETURNING tenant_id",
                        )?
                        .query_row(params![at.0, id.as_str()], |row| row.get(0))
                        .optional()?;
                    // Counted with the mark, so exactly once.
                    if let Some(tenant) = sent {
                        let mut usage = UsageTally::default();
                        usage.email_sent(&TenantId(tenant), *at);
                        add_usage(tx, &usage)?;
                    }
                }
                DeliveryResult::Failed {
                    error,
                    retry_at: Some(retry_at),
                } => {
                    tx.prepare_cached(
                        "UPDATE emails SET attempts = attempts + 1, last_error = ?1, \
                         next_attempt_at = ?2, lease_owner = NULL, lease_until = NULL \
                         WHERE id = ?3 AND status = 'queued'",
                    )?
                    .execute(params![error, retry_at.0, id.as_str()])?;
                }
                DeliveryResult::Failed {
                    error,
                    retry_at: None,
                } => {
                    tx.prepare_cached(
                        "UPDATE emails SET status = 'failed', attempts = attempts + 1, \
                         last_error = ?1, lease_owner = NULL, lease_until = NULL \
                         WHERE id = ?2 AND status = 'queued'",
                    )?
                    .execute(params![error, id.as_str()])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn list_emails(
        &self,
        tenant: &TenantId,
        filter: &EmailFilter,
    ) -> StoreResult<Vec<EmailRecord>> {
        let mut query = ListQuery::new(concat!(
            "SELECT ",
            email_columns!(),
            " FROM emails WHERE tenant_id = "
        ));
        query.push_bind(tenant.as_str().to_owned());
        if let Some(to) = &filter.to {
            // Stored addresses are normalised; a blank filter matches nothing.
            query
                .push(" AND to_address = ")
                .push_bind(normalize_email(to).unwrap_or_default());
        }
        and_equals(&mut query, "contact_key", filter.contact_key.as_deref());
        let limit = filter.limit;
        self.read(move |tx| fetch_newest_first(tx, query, limit, |row| email_from_row(row)))
            .await
    }
}
