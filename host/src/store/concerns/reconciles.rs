//! Buckets over time: the SQL side of the reconcile job (the job is [`crate::reconcile_job`], its
//! rules [`crate::buckets::reconcile_rules`]).

use crate::buckets::BucketDef;
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::{IngestRouting, Lease, ReconcileReport, StoreResult};
use async_trait::async_trait;
use std::sync::Arc;

/// What [`Reconciles::claim_reconcile`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileClaim {
    /// The lease is this owner's; the last tick the tenant completed, if any.
    Taken { last_tick: Option<Timestamp> },
    /// Another host is reconciling the tenant.
    HeldElsewhere,
}

impl ReconcileClaim {
    /// From the stored answer: `None` when another owner holds the lease, else the last tick.
    pub(crate) fn from_stored(claimed: Option<Option<i64>>) -> Self {
        match claimed {
            Some(tick) => ReconcileClaim::Taken {
                last_tick: tick.map(Timestamp),
            },
            None => ReconcileClaim::HeldElsewhere,
        }
    }
}

#[async_trait]
pub trait Reconciles: Send + Sync {
    /// Run one pass of the reconcile job over one bucket as of `now`, reading at most `limit`
    /// rows, in ONE write transaction ([`crate::buckets::reconcile_rules::run_pass`]: the shared
    /// join and leave rules with source `reconcile`, dwell stamps), ingesting each transition
    /// like [`crate::store::EventIngest::ingest`] does (deduplicated on its deterministic key, routed to journeys),
    /// in the same transaction.
    async fn reconcile_pass(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        pass: crate::buckets::reconcile_rules::Pass,
        now: Timestamp,
        limit: u32,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<ReconcileReport>;
    /// A lower bound on the earliest instant after `after` at which a pass of `bucket` can
    /// have work ([`crate::buckets::reconcile_rules::work_plan`]); `None` when nothing the clock
    /// does can change it. Lets a catch-up skip the schedule ticks where nothing can happen.
    async fn reconcile_next_work(
        &self,
        tenant: &TenantId,
        bucket: &BucketDef,
        after: Timestamp,
    ) -> StoreResult<Option<Timestamp>>;
    /// Take (or renew) the tenant's reconcile lease for `lease.owner` until `lease.until_real`
    /// unless another owner holds an unexpired one.
    async fn claim_reconcile(
        &self,
        tenant: &TenantId,
        lease: &Lease,
    ) -> StoreResult<ReconcileClaim>;
    /// Record the last completed tick (it never moves back) and, when `release`, give the
    /// lease up; false when `owner` no longer holds it.
    async fn finish_reconcile(
        &self,
        tenant: &TenantId,
        owner: &str,
        tick: Option<Timestamp>,
        release: bool,
    ) -> StoreResult<bool>;
}
