//! The fair claim's steps ([`FairClaimTx`]) in PostgreSQL: three statements in one transaction,
//! whatever the number of tenants or due runs.
//!
//! Each is index-driven by its shape: rooms walk the tenants (a small table) and count each
//! one's leases in `timers_leased`; the offers are one LATERAL walk of `timers_by_tenant_due`
//! per tenant with room, stopping at its take (a tenant's 100,000 due runs cost it its take,
//! not a pass); the lease updates the picked timers by primary key and reads their runs.

use super::live_statuses;
use super::runs::activation_from_row;
use super::tx::PgTx;
use crate::clock::Timestamp;
use crate::ids::{RunId, TenantId};
use crate::store::flows::fair_claim::{DueTimer, FairClaimTx, TenantRoom};
use crate::store::rows::run_columns;
use crate::store::{ActivationInput, Lease, StoreResult};
use sqlx::Row;

impl FairClaimTx for PgTx<'_> {
    async fn tenant_rooms(
        &mut self,
        default_in_flight: u32,
        now_real: Timestamp,
    ) -> StoreResult<Vec<TenantRoom>> {
        let rows = sqlx::query(
            "SELECT tn.id, \
                 COALESCE((SELECT l.activations_in_flight FROM tenant_limits l \
                           WHERE l.tenant_id = tn.id), $1) AS cap, \
                 (SELECT count(*) FROM timers x \
                  WHERE x.tenant_id = tn.id AND x.lease_until >= $2) AS in_flight \
             FROM tenants tn WHERE tn.suspended_at IS NULL",
        )
        .bind(i64::from(default_in_flight))
        .bind(now_real.0)
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TenantRoom::new(
                    TenantId(row.try_get("id")?),
                    row.try_get("cap")?,
                    row.try_get("in_flight")?,
                ))
            })
            .collect()
    }

    async fn due_timers(
        &mut self,
        wanted: &[(TenantId, u32)],
        now: Timestamp,
        now_real: Timestamp,
    ) -> StoreResult<Vec<DueTimer>> {
        let tenants: Vec<&str> = wanted.iter().map(|(tenant, _)| tenant.as_str()).collect();
        let takes: Vec<i64> = wanted.iter().map(|(_, take)| i64::from(*take)).collect();
        // Timers of runs that are no longer live are never offered (whoever ends a run outside
        // an activation deletes its timer in the same transaction). Locked rows are another
        // host's claim in progress: skipped, not waited for.
        let rows = sqlx::query(concat!(
            "SELECT d.run_id, d.tenant_id, d.due_at \
             FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS w(tenant_id, take, n) \
             CROSS JOIN LATERAL (\
                 SELECT t.run_id, t.tenant_id, t.due_at FROM timers t \
                 WHERE t.tenant_id = w.tenant_id AND t.due_at <= $3 \
                 AND (t.lease_until IS NULL OR t.lease_until < $4) \
                 AND (SELECT r.status FROM runs r WHERE r.id = t.run_id) IN ",
            live_statuses!(),
            " ORDER BY t.due_at, t.run_id LIMIT w.take FOR UPDATE OF t SKIP LOCKED) d \
             ORDER BY w.n, d.due_at, d.run_id"
        ))
        .bind(&tenants)
        .bind(&takes)
        .bind(now.0)
        .bind(now_real.0)
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DueTimer {
                    run_id: RunId(row.try_get("run_id")?),
                    tenant: TenantId(row.try_get("tenant_id")?),
                    due_at: row.try_get("due_at")?,
                })
            })
            .collect()
    }

    async fn lease_timers(
        &mut self,
        picked: &[DueTimer],
        lease: &Lease,
    ) -> StoreResult<Vec<ActivationInput>> {
        let ids: Vec<&str> = picked.iter().map(|timer| timer.run_id.as_str()).collect();
        // Each run is looked up by id (a LATERAL ... OFFSET 0 is never turned into a join, so
        // no plan scans every run), with its journal, in the order picked.
        let rows = sqlx::query(concat!(
            "WITH picked AS (SELECT * FROM unnest($1::text[]) WITH ORDINALITY AS p(run_id, n)), \
             claimed AS (\
                 UPDATE timers SET lease_owner = $2, lease_until = $3, attempts = attempts + 1 \
                 FROM picked WHERE timers.run_id = picked.run_id RETURNING picked.run_id, picked.n) \
             SELECT r.* FROM claimed c CROSS JOIN LATERAL (SELECT ",
            run_columns!(),
            ", input::text AS input, COALESCE((\
                 SELECT json_agg(json_build_array(j.seq, j.kind, j.request, j.response, \
                 j.recorded_at) ORDER BY j.seq) FROM journal j WHERE j.run_id = runs.id), '[]')::text \
             AS journal FROM runs WHERE runs.id = c.run_id OFFSET 0) r \
             ORDER BY c.n"
        ))
        .bind(&ids)
        .bind(&lease.owner)
        .bind(lease.until_real.0)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(activation_from_row).collect()
    }
}
