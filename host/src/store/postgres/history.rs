//! Implements [`crate::store::History`].
//!
//! What journeys read about the past (`history-*` imports): a person's event counts, their
//! runs of a journey, and the emails of a template to an address.

use super::PgStore;
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::History;
use crate::store::codec::run_count;
use crate::store::rows::{email_history_from_row, journey_history_from_row};
use crate::store::{EmailHistory, JourneyHistory, StoreResult};
use async_trait::async_trait;

#[async_trait]
impl History for PgStore {
    async fn count_events(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        name: &str,
        since: Option<Timestamp>,
    ) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM events WHERE tenant_id = $1 AND contact_key = $2 \
             AND name = $3 AND occurred_at >= $4",
        )
        .bind(tenant.as_str())
        .bind(contact_key)
        .bind(name)
        .bind(since.map_or(i64::MIN, |t| t.0))
        .fetch_one(&self.pool)
        .await?;
        run_count(n)
    }

    async fn journey_history(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        journey_id: &str,
    ) -> StoreResult<JourneyHistory> {
        // A completed run is never written again: its update time is its completion.
        let row = sqlx::query(
            "SELECT COUNT(*) AS entries, COUNT(*) FILTER (WHERE status = 'completed') AS completed, \
             MAX(updated_at) FILTER (WHERE status = 'completed') AS last_completed_at \
             FROM runs WHERE tenant_id = $1 AND contact_key = $2 AND journey_id = $3",
        )
        .bind(tenant.as_str())
        .bind(contact_key)
        .bind(journey_id)
        .fetch_one(&self.pool)
        .await?;
        journey_history_from_row(&row)
    }

    async fn email_history(
        &self,
        tenant: &TenantId,
        to: &str,
        template: &str,
    ) -> StoreResult<EmailHistory> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MAX(sent_at) AS last_sent_at FROM emails \
             WHERE tenant_id = $1 AND to_address = $2 AND template = $3",
        )
        .bind(tenant.as_str())
        .bind(to)
        .bind(template)
        .fetch_one(&self.pool)
        .await?;
        email_history_from_row(&row)
    }
}
