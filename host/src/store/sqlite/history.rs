//! Implements [`crate::store::History`].
//!
//! What journeys read about the past (`history-*` imports): a person's event counts, their
//! runs of a journey, and the emails of a template to an address.

use super::SqliteStore;
use super::membership::COUNT_PERSON_EVENTS;
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::History;
use crate::store::codec::run_count;
use crate::store::rows::{email_history_from_row, journey_history_from_row};
use crate::store::{EmailHistory, JourneyHistory, StoreResult};
use async_trait::async_trait;
use rusqlite::Error::QueryReturnedNoRows;
use rusqlite::params;

#[async_trait]
impl History for SqliteStore {
    async fn count_events(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        name: &str,
        since: Option<Timestamp>,
    ) -> StoreResult<u64> {
        let (tenant, key, name) = (tenant.clone(), contact_key.to_owned(), name.to_owned());
        self.read(move |tx| {
            let n: i64 = tx.prepare_cached(COUNT_PERSON_EVENTS)?.query_row(
                params![tenant.as_str(), key, name, since.map_or(i64::MIN, |t| t.0)],
                |row| row.get(0),
            )?;
            run_count(n)
        })
        .await
    }

    async fn journey_history(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        journey_id: &str,
    ) -> StoreResult<JourneyHistory> {
        let (tenant, key, journey) = (
            tenant.clone(),
            contact_key.to_owned(),
            journey_id.to_owned(),
        );
        self.read(move |tx| {
            // A completed run is never written again: its update time is its completion.
            let mut statement = tx.prepare_cached(
                "SELECT COUNT(*) AS entries, COALESCE(SUM(status = 'completed'), 0) AS completed, \
                 MAX(CASE WHEN status = 'completed' THEN updated_at END) AS last_completed_at \
                 FROM runs WHERE tenant_id = ?1 AND contact_key = ?2 AND journey_id = ?3",
            )?;
            let mut rows = statement.query(params![tenant.as_str(), key, journey])?;
            journey_history_from_row(rows.next()?.ok_or(QueryReturnedNoRows)?)
        })
        .await
    }

    async fn email_history(
        &self,
        tenant: &TenantId,
        to: &str,
        template: &str,
    ) -> StoreResult<EmailHistory> {
        let (tenant, to, template) = (tenant.clone(), to.to_owned(), template.to_owned());
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(
                "SELECT COUNT(*) AS n, MAX(sent_at) AS last_sent_at FROM emails \
                 WHERE tenant_id = ?1 AND to_address = ?2 AND template = ?3",
            )?;
            let mut rows = statement.query(params![tenant.as_str(), to, template])?;
            email_history_from_row(rows.next()?.ok_or(QueryReturnedNoRows)?)
        })
        .await
    }
}
