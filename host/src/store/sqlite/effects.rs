//! Implements [`crate::store::RunEffects`].
//!
//! Journey effects (`run_effects`): stored by an activation's commit, claimed and finished by
//! the effect worker (`journeys::effects`).

use super::SqliteStore;
use super::rows::{collect, to_json};
use crate::store::rows::{claimed_effect_from_row, in_claim_order};

use crate::ids::RunId;
use crate::store::RunEffects;
use crate::store::{Effect, EffectFailure, Lease, RunEffect, StoreResult};
use async_trait::async_trait;
use rusqlite::{Connection, params};

/// Store an activation's effects (inside its commit's transaction).
pub(super) fn insert_effects(
    tx: &Connection,
    run_id: &str,
    tenant: &str,
    effects: &[(u32, Effect)],
    now: i64,
) -> StoreResult<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO run_effects (run_id, seq, tenant_id, kind, payload, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (seq, effect) in effects {
        insert.execute(params![
            run_id,
            i64::from(*seq),
            tenant,
            effect.kind(),
            to_json("run effect", effect)?,
            now
        ])?;
    }
    Ok(())
}

#[async_trait]
impl RunEffects for SqliteStore {
    async fn claim_run_effects(&self, lease: &Lease, limit: u32) -> StoreResult<Vec<RunEffect>> {
        let lease = lease.clone();
        let claimed = self
            .write_without_memberships(move |tx| {
                let mut claim = tx.prepare_cached(
                    "UPDATE run_effects SET lease_owner = ?1, lease_until = ?2, \
                     attempts = attempts + 1 \
                     WHERE (run_id, seq) IN (\
                         SELECT run_id, seq FROM run_effects \
                         WHERE lease_until IS NULL OR lease_until < ?3 \
                         ORDER BY created_at, run_id, seq LIMIT ?4) \
                     RETURNING run_id, seq, tenant_id, payload, created_at",
                )?;
                let rows = claim.query(params![
                    lease.owner,
                    lease.until_real.0,
                    lease.now_real.0,
                    i64::from(limit)
                ])?;
                collect(rows, |row| claimed_effect_from_row(row))
            })
            .await?;
        Ok(in_claim_order(claimed))
    }

    async fn finish_run_effect(
        &self,
        run_id: &RunId,
        seq: u32,
        lease_owner: &str,
        outcome: Result<(), EffectFailure>,
    ) -> StoreResult<()> {
        let (run_id, lease_owner) = (run_id.clone(), lease_owner.to_owned());
        self.write_without_memberships(move |tx| {
            match outcome {
                Ok(()) => tx
                    .prepare_cached(
                        "DELETE FROM run_effects WHERE run_id = ?1 AND seq = ?2 \
                             AND lease_owner = ?3",
                    )?
                    .execute(params![run_id.as_str(), i64::from(seq), lease_owner])?,
                Err(failure) => tx
                    .prepare_cached(
                        "UPDATE run_effects SET lease_owner = NULL, lease_until = ?4, \
                             last_error = ?5 WHERE run_id = ?1 AND seq = ?2 AND lease_owner = ?3",
                    )?
                    .execute(params![
                        run_id.as_str(),
                        i64::from(seq),
                        lease_owner,
                        failure.retry_at.0,
                        failure.error
                    ])?,
            };
            Ok(())
        })
        .await
    }
}
