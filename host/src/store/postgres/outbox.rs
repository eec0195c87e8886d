//! Implements [`crate::store::Outbox`].
//!
//! The email outbox: queuing an activation's emails (inside its commit), claiming due emails
//! for delivery, recording delivery outcomes, and listing emails.
//!
//! Suppression is checked twice (defence in depth): the commit records an email to someone
//! who has unsubscribed as `suppressed`, and a claim re-checks every email it takes, so an
//! unsubscribe that lands after the commit still stops the send.
//!
//! Delivery workers of several processes claim with one statement each
//! (`FOR UPDATE SKIP LOCKED` under a lease on the real clock), so they take disjoint emails;
//! an outcome is recorded only on an email still queued, so a late report from a worker whose
//! lease expired never turns a sent (or cancelled) email back — and an email is counted sent
//! (the tenant's usage) by the statement that marks it, so exactly once.

use super::rows::{and_equals, fetch_newest_first};
use super::usage::next_shard;
use super::{PgStore, tenant_not_suspended};
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
use crate::usage::Day;
use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, QueryBuilder};

/// Whether a row of `email_preferences` opts the email `e` out (its person or its address).
macro_rules! recipient_unsubscribed {
    () => {
        "(EXISTS (SELECT 1 FROM email_preferences p WHERE p.tenant_id = e.tenant_id \
         AND p.unsubscribed AND p.contact_key = e.contact_key) \
         OR EXISTS (SELECT 1 FROM email_preferences p WHERE p.tenant_id = e.tenant_id \
         AND p.unsubscribed AND p.email = e.to_address))"
    };
}

/// Queue an activation's emails, inside its commit (one statement from arrays). A queued
/// email whose recipient has unsubscribed is recorded as suppressed instead.
pub(super) async fn insert_emails(conn: &mut PgConnection, emails: &[NewEmail]) -> StoreResult<()> {
    if emails.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&NewEmail) -> Option<String>| emails.iter().map(f).collect::<Vec<_>>();
    sqlx::query(concat!(
        "INSERT INTO emails (id, tenant_id, run_id, step_seq, contact_key, journey_id, \
         to_address, template, subject, body, html_body, unsubscribe_url, status, \
         suppressed_reason, attempts, created_at, next_attempt_at) \
         SELECT e.id, e.tenant_id, e.run_id, e.step_seq, e.contact_key, e.journey_id, \
         e.to_address, e.template, e.subject, e.body, e.html_body, e.unsubscribe_url, \
         CASE WHEN e.status = 'queued' AND ",
        recipient_unsubscribed!(),
        " THEN 'suppressed' ELSE e.status END, \
         CASE WHEN e.status = 'queued' AND ",
        recipient_unsubscribed!(),
        " THEN 'unsubscribed' ELSE e.suppressed_reason END, 0, e.created_at, $1 \
         FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[], \
         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
         $14::text[], $15::text[], $16::int8[]) \
         AS e(id, tenant_id, run_id, step_seq, contact_key, journey_id, to_address, template, \
         subject, body, html_body, unsubscribe_url, status, suppressed_reason, created_at)"
    ))
    // A new email is deliverable at once: `next_attempt_at` is on the real clock.
    .bind(Clock::real_now().0)
    .bind(column(|e| Some(e.id.as_str().to_owned())))
    .bind(column(|e| Some(e.tenant_id.as_str().to_owned())))
    .bind(column(|e| Some(e.run_id.as_str().to_owned())))
    .bind(
        emails
            .iter()
            .map(|e| i64::from(e.step_seq))
            .collect::<Vec<_>>(),
    )
    .bind(column(|e| Some(e.contact_key.clone())))
    .bind(column(|e| Some(e.journey_id.clone())))
    .bind(column(|e| {
        Some(normalize_email(&e.to).unwrap_or_else(|| e.to.clone()))
    }))
    .bind(column(|e| Some(e.template.clone())))
    .bind(column(|e| Some(e.subject.clone())))
    .bind(column(|e| Some(e.body.clone())))
    .bind(column(|e| e.html.clone()))
    .bind(column(|e| e.unsubscribe_url.clone()))
    .bind(column(|e| Some(e.status.as_str().to_owned())))
    .bind(column(|e| {
        e.suppressed_reason
            .map(|r| SuppressedReason::as_str(r).to_owned())
    }))
    .bind(emails.iter().map(|e| e.created_at.0).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Outbox for PgStore {
    async fn journey_emailed_since(
        &self,
        tenant: &TenantId,
        journey_id: &str,
        to: &str,
        since: Timestamp,
    ) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM emails WHERE tenant_id = $1 AND to_address = $2 \
             AND created_at >= $3 AND journey_id = $4 AND status IN ('queued', 'sent'))",
        )
        .bind(tenant.as_str())
        .bind(normalize_email(to).unwrap_or_default())
        .bind(since.0)
        .bind(journey_id)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn claim_outbox(&self, lease: &Lease, limit: u32) -> StoreResult<Vec<OutboxEmail>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The claimed emails whose recipient has unsubscribed since they were queued are
        // suppressed in the same statement, not sent.
        let rows = sqlx::query(concat!(
            "WITH claimed AS (\
                 SELECT e.id, ",
            recipient_unsubscribed!(),
            " AS unsubscribed FROM emails e WHERE e.status = 'queued' \
                 AND e.next_attempt_at <= $3 AND (e.lease_until IS NULL OR e.lease_until < $3) \
                 AND ",
            // A suspended tenant's emails wait until it resumes.
            tenant_not_suspended!("e.tenant_id"),
            " ORDER BY e.next_attempt_at, e.id LIMIT $4 FOR UPDATE OF e SKIP LOCKED), \
             suppressed AS (\
                 UPDATE emails SET status = 'suppressed', suppressed_reason = 'unsubscribed' \
                 FROM claimed c WHERE emails.id = c.id AND c.unsubscribed) \
             UPDATE emails SET lease_owner = $1, lease_until = $2 \
             FROM claimed c WHERE emails.id = c.id AND NOT c.unsubscribed \
             RETURNING emails.id, emails.tenant_id, emails.to_address, emails.subject, \
             emails.body, emails.html_body, emails.unsubscribe_url, emails.attempts, \
             emails.next_attempt_at"
        ))
        .bind(&lease.owner)
        .bind(lease.until_real.0)
        .bind(lease.now_real.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let claimed = rows
            .iter()
            .map(claimed_email_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(in_claim_order(claimed))
    }

    async fn renew_outbox_lease(&self, id: &EmailId, lease: &Lease) -> StoreResult<bool> {
        let renewed = sqlx::query(
            "UPDATE emails SET lease_until = $3 \
             WHERE id = $1 AND lease_owner = $2 AND status = 'queued'",
        )
        .bind(id.as_str())
        .bind(&lease.owner)
        .bind(lease.until_real.0)
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn record_delivery(&self, id: &EmailId, result: DeliveryResult) -> StoreResult<()> {
        // Only a queued email takes an outcome: a late report from a worker whose lease expired
        // never turns a sent email back into a queued or failed one.
        let query = match &result {
            // Counted in the same statement, the counter last (see `usage`).
            DeliveryResult::Sent { at } => sqlx::query(
                "WITH sent AS (\
                     UPDATE emails SET status = 'sent', sent_at = $2, attempts = attempts + 1, \
                     lease_owner = NULL, lease_until = NULL WHERE id = $1 AND status = 'queued' \
                     RETURNING tenant_id) \
                 INSERT INTO tenant_usage AS u (tenant_id, day, shard, emails_sent) \
                 SELECT tenant_id, $3, $4, 1 FROM sent \
                 ON CONFLICT (tenant_id, day, shard) DO UPDATE SET emails_sent = u.emails_sent + 1",
            )
            .bind(id.as_str())
            .bind(at.0)
            .bind(Day::of(*at).0)
            .bind(next_shard()),
            DeliveryResult::Failed {
                error,
                retry_at: Some(retry_at),
            } => sqlx::query(
                "UPDATE emails SET attempts = attempts + 1, last_error = $2, \
                 next_attempt_at = $3, lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1 AND status = 'queued'",
            )
            .bind(id.as_str())
            .bind(error.as_str())
            .bind(retry_at.0),
            DeliveryResult::Failed {
                error,
                retry_at: None,
            } => sqlx::query(
                "UPDATE emails SET status = 'failed', attempts = attempts + 1, last_error = $2, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $1 AND status = 'queued'",
            )
            .bind(id.as_str())
            .bind(error.as_str()),
        };
        query.execute(&self.pool).await?;
        Ok(())
    }

    async fn list_emails(
        &self,
        tenant: &TenantId,
        filter: &EmailFilter,
    ) -> StoreResult<Vec<EmailRecord>> {
        let mut query = QueryBuilder::<Postgres>::new(concat!(
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
        and_equals(&mut query, "contact_key", filter.contact_key.as_deref());
        fetch_newest_first(&self.pool, query, filter.limit, email_from_row).await
    }
}
