//! The email outbox: claiming due emails for delivery, recording delivery outcomes, and
//! listing emails.

use super::SqliteStore;
use super::rows::{
    ListQuery, and_equals, collect, email_columns, email_from_row, fetch_newest_first, to_u32,
};
use crate::contacts::normalize_email;
use crate::ids::{EmailId, TenantId};
use crate::store::{DeliveryResult, EmailFilter, EmailRecord, Lease, OutboxEmail, StoreResult};
use rusqlite::params;

pub(super) async fn claim_outbox(
    store: &SqliteStore,
    lease: &Lease,
    limit: u32,
) -> StoreResult<Vec<OutboxEmail>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let lease = lease.clone();
    let mut claimed = store
        .write(move |tx| {
            // Only queued emails: sent, failed and cancelled (the contact was deleted) ones
            // never are.
            let mut statement = tx.prepare_cached(
                "UPDATE emails SET lease_owner = ?1, lease_until = ?2 \
                 WHERE id IN (\
                     SELECT id FROM emails WHERE status = 'queued' AND next_attempt_at <= ?3 \
                     AND (lease_until IS NULL OR lease_until < ?3) \
                     ORDER BY next_attempt_at, id LIMIT ?4) \
                 RETURNING id, tenant_id, to_address, subject, body, attempts, next_attempt_at",
            )?;
            let rows = statement.query(params![
                lease.owner,
                lease.until_real.0,
                lease.now_real.0,
                i64::from(limit),
            ])?;
            collect(rows, |row| {
                Ok((
                    row.get::<_, i64>("next_attempt_at")?,
                    OutboxEmail {
                        id: EmailId(row.get("id")?),
                        tenant_id: TenantId(row.get("tenant_id")?),
                        to: row.get("to_address")?,
                        subject: row.get("subject")?,
                        body: row.get("body")?,
                        attempts: to_u32("email attempts", row.get("attempts")?)?,
                    },
                ))
            })
        })
        .await?;
    // RETURNING does not keep the subquery's order.
    claimed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    Ok(claimed.into_iter().map(|(_, email)| email).collect())
}

pub(super) async fn renew_outbox_lease(
    store: &SqliteStore,
    id: &EmailId,
    lease: &Lease,
) -> StoreResult<bool> {
    let (id, lease) = (id.clone(), lease.clone());
    store
        .write(move |tx| {
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

pub(super) async fn record_delivery(
    store: &SqliteStore,
    id: &EmailId,
    result: DeliveryResult,
) -> StoreResult<()> {
    let id = id.clone();
    store
        .write(move |tx| {
            // Only a queued email takes an outcome: a late report from a worker whose lease
            // expired never turns a sent email back into a queued or failed one.
            match &result {
                DeliveryResult::Sent { at } => tx
                    .prepare_cached(
                        "UPDATE emails SET status = 'sent', sent_at = ?1, \
                         attempts = attempts + 1, lease_owner = NULL, lease_until = NULL \
                         WHERE id = ?2 AND status = 'queued'",
                    )?
                    .execute(params![at.0, id.as_str()])?,
                DeliveryResult::Failed {
                    error,
                    retry_at: Some(retry_at),
                } => tx
                    .prepare_cached(
                        "UPDATE emails SET attempts = attempts + 1, last_error = ?1, \
                         next_attempt_at = ?2, lease_owner = NULL, lease_until = NULL \
                         WHERE id = ?3 AND status = 'queued'",
                    )?
                    .execute(params![error, retry_at.0, id.as_str()])?,
                DeliveryResult::Failed {
                    error,
                    retry_at: None,
                } => tx
                    .prepare_cached(
                        "UPDATE emails SET status = 'failed', attempts = attempts + 1, \
                         last_error = ?1, lease_owner = NULL, lease_until = NULL \
                         WHERE id = ?2 AND status = 'queued'",
                    )?
                    .execute(params![error, id.as_str()])?,
            };
            Ok(())
        })
        .await
}

pub(super) async fn list_emails(
    store: &SqliteStore,
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
    store
        .read(move |tx| fetch_newest_first(tx, query, limit, email_from_row))
        .await
}
