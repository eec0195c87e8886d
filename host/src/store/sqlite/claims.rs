//! The fair claim's steps ([`FairClaimTx`]) in SQLite, on the single writer (so a tenant's
//! room is exact: no other claim runs meanwhile).
//!
//! Rooms walk the tenants and count each one's leases in `timers_leased`; each tenant with room
//! offers its oldest due timers from `timers_by_tenant_due`, one cached statement per tenant
//! stopping at its take; the lease updates the picked timers by primary key.

use super::runs::read_activation;
use super::tx::SqliteTx;
use super::{live_statuses, rows::collect};
use crate::clock::Timestamp;
use crate::ids::{RunId, TenantId};
use crate::store::flows::fair_claim::{DueTimer, FairClaimTx, TenantRoom};
use crate::store::{ActivationInput, Lease, StoreResult};
use rusqlite::params;

impl FairClaimTx for SqliteTx<'_> {
    async fn tenant_rooms(
        &mut self,
        default_in_flight: u32,
        now_real: Timestamp,
    ) -> StoreResult<Vec<TenantRoom>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT tn.id, \
                 COALESCE((SELECT l.activations_in_flight FROM tenant_limits l \
                           WHERE l.tenant_id = tn.id), ?1) AS cap, \
                 (SELECT count(*) FROM timers x \
                  WHERE x.tenant_id = tn.id AND x.lease_until >= ?2) AS in_flight \
             FROM tenants tn WHERE tn.suspended_at IS NULL",
        )?;
        let rows = statement.query(params![i64::from(default_in_flight), now_real.0])?;
        collect(rows, |row| {
            Ok(TenantRoom::new(
                TenantId(row.get("id")?),
                row.get("cap")?,
                row.get("in_flight")?,
            ))
        })
    }

    async fn due_timers(
        &mut self,
        wanted: &[(TenantId, u32)],
        now: Timestamp,
        now_real: Timestamp,
    ) -> StoreResult<Vec<DueTimer>> {
        // Timers of runs that are no longer live are never offered (whoever ends a run outside
        // an activation should delete its timer in the same transaction).
        let mut statement = self.conn.prepare_cached(concat!(
            "SELECT t.run_id, t.tenant_id, t.due_at FROM timers t \
             WHERE t.tenant_id = ?1 AND t.due_at <= ?2 \
             AND (t.lease_until IS NULL OR t.lease_until < ?3) \
             AND (SELECT r.status FROM runs r WHERE r.id = t.run_id) IN ",
            live_statuses!(),
            " ORDER BY t.due_at, t.run_id LIMIT ?4"
        ))?;
        let mut due = Vec::new();
        for (tenant, take) in wanted {
            let rows = statement.query(params![
                tenant.as_str(),
                now.0,
                now_real.0,
                i64::from(*take)
            ])?;
            due.extend(collect(rows, |row| {
                Ok(DueTimer {
                    run_id: RunId(row.get("run_id")?),
                    tenant: TenantId(row.get("tenant_id")?),
                    due_at: row.get("due_at")?,
                })
            })?);
        }
        Ok(due)
    }

    async fn lease_timers(
        &mut self,
        picked: &[DueTimer],
        lease: &Lease,
    ) -> StoreResult<Vec<ActivationInput>> {
        let mut statement = self.conn.prepare_cached(
            "UPDATE timers SET lease_owner = ?1, lease_until = ?2, attempts = attempts + 1 \
             WHERE run_id = ?3",
        )?;
        let mut runs = Vec::with_capacity(picked.len());
        for timer in picked {
            statement.execute(params![
                lease.owner,
                lease.until_real.0,
                timer.run_id.as_str()
            ])?;
            // The timer was offered for a live run just now, in this transaction.
            runs.extend(read_activation(self.conn, &timer.tenant, &timer.run_id)?);
        }
        Ok(runs)
    }
}
