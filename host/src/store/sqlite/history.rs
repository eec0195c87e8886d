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
use crate::store::{EmailHistory, JourneyHistory, StoreResult};
use async_trait::async_trait;
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
            let (entries, completed, last): (i64, i64, Option<i64>) = tx
                .prepare_cached(
                    "SELECT COUNT(*), COALESCE(SUM(status = 'completed'), 0), \
                         MAX(CASE WHEN status = 'completed' THEN updated_at END) \
                         FROM runs WHERE tenant_id = ?1 AND contact_key = ?2 AND journey_id = ?3",
                )?
                .query_row(params![tenant.as_str(), key, journey], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
            Ok(JourneyHistory {
                entries: run_count(entries)?,
                completed: run_count(completed)?,
                last_completed_at: last.map(Timestamp),
            })
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
            let (n, last): (i64, Option<i64>) = tx
                .prepare_cached(
                    "SELECT COUNT(*), MAX(sent_at) FROM emails \
                         WHERE tenant_id = ?1 AND to_address = ?2 AND template = ?3",
                )?
                .query_row(params![tenant.as_str(), to, template], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            Ok(EmailHistory {
                count: run_count(n)?,
                last_sent_at: last.map(Timestamp),
            })
        })
        .await
    }
}
