//! Implements [`crate::store::RunEffects`].
//!
//! Journey effects (`run_effects`): stored by an activation's commit, claimed (`SKIP LOCKED`,
//! so several hosts share them) and finished by the effect worker (`journeys::effects`).

use super::PgStore;
use crate::ids::{RunId, TenantId};
use crate::store::RunEffects;
use crate::store::codec::{parse_json, to_json};
use crate::store::{Effect, EffectFailure, Lease, RunEffect, StoreResult};
use async_trait::async_trait;
use sqlx::{PgConnection, Row};

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
        let mut claimed = rows
            .iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq")?;
                Ok((
                    row.try_get::<i64, _>("created_at")?,
                    RunEffect {
                        run_id: RunId(row.try_get("run_id")?),
                        seq: u32::try_from(seq).unwrap_or(u32::MAX),
                        tenant_id: TenantId(row.try_get("tenant_id")?),
                        effect: parse_json("run effect", row.try_get("payload")?)?,
                    },
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING does not keep the subquery's order.
        claimed.sort_by(|a, b| (a.0, &a.1.run_id, a.1.seq).cmp(&(b.0, &b.1.run_id, b.1.seq)));
        Ok(claimed.into_iter().map(|(_, effect)| effect).collect())
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
