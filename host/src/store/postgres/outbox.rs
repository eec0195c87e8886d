//! The email outbox: claiming due emails for delivery, recording delivery outcomes, and
//! listing emails.
//!
//! Delivery workers of several processes claim with one statement each
//! (`FOR UPDATE SKIP LOCKED` under a lease on the real clock), so they take disjoint emails;
//! an outcome is recorded only on an email still queued, so a late report from a worker whose
//! lease expired never turns a sent (or cancelled) email back.

use super::PgStore;
use super::rows::{and_equals, email_columns, email_from_row, fetch_newest_first};
use crate::contacts::normalize_email;
use crate::ids::{EmailId, TenantId};
use crate::store::codec::to_u32;
use crate::store::{DeliveryResult, EmailFilter, EmailRecord, Lease, OutboxEmail, StoreResult};
use sqlx::{Postgres, QueryBuilder, Row};

pub(super) async fn claim_outbox(
    store: &PgStore,
    lease: &Lease,
    limit: u32,
) -> StoreResult<Vec<OutboxEmail>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "UPDATE emails SET lease_owner = $1, lease_until = $2 \
         WHERE id IN (\
             SELECT id FROM emails WHERE status = 'queued' AND next_attempt_at <= $3 \
             AND (lease_until IS NULL OR lease_until < $3) \
             ORDER BY next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
         RETURNING id, tenant_id, to_address, subject, body, attempts, next_attempt_at",
    )
    .bind(&lease.owner)
    .bind(lease.until_real.0)
    .bind(lease.now_real.0)
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<i64, _>("next_attempt_at")?,
                OutboxEmail {
                    id: EmailId(row.try_get("id")?),
                    tenant_id: TenantId(row.try_get("tenant_id")?),
                    to: row.try_get("to_address")?,
                    subject: row.try_get("subject")?,
                    body: row.try_get("body")?,
                    attempts: to_u32("email attempts", row.try_get("attempts")?)?,
                },
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    // RETURNING does not keep the subquery's order.
    claimed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    Ok(claimed.into_iter().map(|(_, email)| email).collect())
}

pub(super) async fn renew_outbox_lease(
    store: &PgStore,
    id: &EmailId,
    lease: &Lease,
) -> StoreResult<bool> {
    let renewed = sqlx::query(
        "UPDATE emails SET lease_until = $3 \
         WHERE id = $1 AND lease_owner = $2 AND status = 'queued'",
    )
    .bind(id.as_str())
    .bind(&lease.owner)
    .bind(lease.until_real.0)
    .execute(&store.pool)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

pub(super) async fn record_delivery(
    store: &PgStore,
    id: &EmailId,
    result: DeliveryResult,
) -> StoreResult<()> {
    // Only a queued email takes an outcome: a late report from a worker whose lease expired
    // never turns a sent email back into a queued or failed one.
    let query = match &result {
        DeliveryResult::Sent { at } => sqlx::query(
            "UPDATE emails SET status = 'sent', sent_at = $2, attempts = attempts + 1, \
             lease_owner = NULL, lease_until = NULL WHERE id = $1 AND status = 'queued'",
        )
        .bind(id.as_str())
        .bind(at.0),
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
    query.execute(&store.pool).await?;
    Ok(())
}

pub(super) async fn list_emails(
    store: &PgStore,
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
    fetch_newest_first(&store.pool, query, filter.limit, email_from_row).await
}
