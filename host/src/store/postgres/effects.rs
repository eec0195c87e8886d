//! Implements [`crate::store::RunEffects`].
//!
//! Journey effects (`run_effects`): stored by an activation's commit, claimed (`SKIP LOCKED`,
//! so several hosts share them) and finished by the effect worker (`journeys::effects`).

use super::PgStore;
use crate::ids::RunId;
use crate::store::RunEffects;
use crate::store::codec::to_json;
use crate::store::rows::{claimed_effect_from_row, in_claim_order};
use crate::store::{Effect, EffectFailure, Lease, RunEffect, StoreResult};
use async_trait::async_trait;
use sqlx::PgConnection;

/// Store an activation's effects (inside its commit's transaction).
pub(super) async fn insert_effects(
    conn: &mut PgConnection,
    run_id: &str,
    tenant: &str,
    effects: &[(u32, Effect)],
    now: i64,
) -> StoreResult<()> {
    if effects.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO run_effects (run_id, seq, tenant_id, kind, payload, created_at) \
         SELECT $1, e.seq, $2, e.kind, e.payload, $3 \
         FROM unnest($4::int8[], $5::text[], $6::text[]) AS e(seq, kind, payload)",
    )
    .bind(run_id)
    .bind(tenant)
    .bind(now)
    .bind(
        effects
            .iter()
            .map(|(seq, _)| i64::from(*seq))
            .collect::<Vec<_>>(),
    )
    .bind(effects.iter().map(|(_, e)| e.kind()).collect::<Vec<_>>())
    .bind(
        effects
            .iter()
            .map(|(_, e)| to_json("run effect", e))
            .collect::<StoreResult<Vec<_>>>()?,
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl RunEffects for PgStore {
    async fn claim_run_effects(&self, lease: &Lease, limit: u32) -> StoreResult<Vec<RunEffect>> {
        let rows = sqlx::query(
            "UPDATE run_effects SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE (run_id, seq) IN (\
                 SELECT run_id, seq FROM run_effects \
                 WHERE lease_until IS NULL OR lease_until < $3 \
                 ORDER BY created_at, run_id, seq LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING run_id, seq, tenant_id, payload, created_at",
        )
        .bind(&lease.owner)
        .bind(lease.until_real.0)
        .bind(lease.now_real.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let claimed = rows
            .iter()
            .map(claimed_effect_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(in_claim_order(claimed))
    }

    async fn finish_run_effect(
        &self,
        run_id: &RunId,
        seq: u32,
        lease_owner: &str,
        outcome: Result<(), EffectFailure>,
    ) -> StoreResult<()> {
        match outcome {
            Ok(()) => {
                sqlx::query(
                    "DELETE FROM run_effects WHERE run_id = $1 AND seq = $2 AND lease_owner = $3",
                )
                .bind(run_id.as_str())
                .bind(i64::from(seq))
                .bind(lease_owner)
                .execute(&self.pool)
                .await?;
            }
            Err(failure) => {
                sqlx::query(
                    "UPDATE run_effects SET lease_owner = NULL, lease_until = $4, last_error = $5 \
                     WHERE run_id = $1 AND seq = $2 AND lease_owner = $3",
                )
                .bind(run_id.as_str())
                .bind(i64::from(seq))
                .bind(lease_owner)
                .bind(failure.retry_at.0)
                .bind(failure.error)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }
}
