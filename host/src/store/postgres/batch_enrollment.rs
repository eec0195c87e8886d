//! What an ingest batch's enrollment guards read — the person's runs of each journey their
//! event triggers, the admin switch, and whether they opted out of email — read for the whole
//! batch in two statements right after its locks instead of two or more per triggering event.
//!
//! Which reads: for each item with journeys to start whose identity values lead to one known
//! person, or to nobody yet (the person it creates takes the user id or anonymous id as key),
//! that person's runs of each journey and their opt-out, as the per-event reads ask.
//!
//! Kept true by the batch: it holds the person's locks, and every run start of theirs is an
//! ingest that takes them, so the only runs that appear are the batch's own, which
//! [`BatchEnrollment::started`] adds (and [`BatchEnrollment::exited`] ends). A run that an
//! activation completes meanwhile still reads as live, as it would have to a read made at
//! the batch's start: either order is one the two could have run in. History moved to another
//! key (a merge, a new key) forgets everything.

use super::live_statuses;
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::journeys::PriorRuns;
use crate::store::codec::run_count;
use crate::store::flows::EnrollmentReads;
use crate::store::{ExitedRun, StoreResult};
use sqlx::{PgConnection, Row};
use std::collections::HashMap;

/// For each `(tenant, person, journey)` of `$1`…`$3` (`n` its position): the person's runs of
/// the journey (how many, the latest start, whether one is live) and whether an admin disabled
/// it, as `enrollment_reads` reads one.
const READ_RUNS: &str = concat!(
    "SELECT q.n, r.total, r.latest, r.live, \
         EXISTS (SELECT 1 FROM journey_configs WHERE tenant_id = q.tenant_id \
             AND journey_id = q.journey_id AND NOT enabled) AS disabled_by_admin \
     FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY \
         AS q(tenant_id, contact_key, journey_id, n) \
     CROSS JOIN LATERAL (SELECT COUNT(*) AS total, MAX(created_at) AS latest, \
         COALESCE(BOOL_OR(status IN ",
    live_statuses!(),
    "), FALSE) AS live FROM runs WHERE tenant_id = q.tenant_id \
         AND contact_key = q.contact_key AND journey_id = q.journey_id) r"
);

/// For each `(tenant, person, address)` of `$1`…`$3` (`n` its position): whether the person
/// or the address opted out, as `unsubscribed_in` reads one.
const READ_OPT_OUTS: &str = "SELECT q.n, \
     EXISTS (SELECT 1 FROM email_preferences WHERE tenant_id = q.tenant_id \
         AND unsubscribed AND contact_key = q.contact_key) \
     OR EXISTS (SELECT 1 FROM email_preferences WHERE tenant_id = q.tenant_id \
         AND unsubscribed AND email = q.email) AS unsubscribed \
     FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY \
         AS q(tenant_id, contact_key, email, n)";

/// A person the batch's guards will ask about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Person {
    pub tenant: TenantId,
    pub contact_key: String,
}

/// What the batch's guards will ask: runs by person and journey, opt-outs by person and
/// address.
#[derive(Debug, Default)]
pub(super) struct WantedEnrollment {
    pub runs: Vec<(Person, String)>,
    pub opt_outs: Vec<(Person, Option<String>)>,
}

/// By tenant, then person (looked up without allocating).
type ByPerson<T> = HashMap<TenantId, HashMap<String, T>>;

#[derive(Default)]
pub(super) struct BatchEnrollment {
    /// By journey.
    runs: ByPerson<HashMap<String, EnrollmentReads>>,
    /// By address (a person has one or two).
    opt_outs: ByPerson<Vec<(Option<String>, bool)>>,
}

impl BatchEnrollment {
    /// The reads for the person's runs of `journey_id`, if they were read.
    pub(super) fn reads(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        journey_id: &str,
    ) -> Option<EnrollmentReads> {
        self.runs
            .get(tenant)?
            .get(contact_key)?
            .get(journey_id)
            .copied()
    }

    /// Whether the person or `email` opted out, if it was read.
    pub(super) fn unsubscribed(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        email: Option<&str>,
    ) -> Option<bool> {
        self.opt_outs
            .get(tenant)?
            .get(contact_key)?
            .iter()
            .find(|(address, _)| address.as_deref() == email)
            .map(|(_, unsubscribed)| *unsubscribed)
    }

    /// The batch started a run of `journey_id` for the person at `at`.
    pub(super) fn started(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        journey_id: &str,
        at: Timestamp,
    ) {
        if let Some(reads) = self
            .journeys_of(tenant, contact_key)
            .and_then(|j| j.get_mut(journey_id))
        {
            let prior = &mut reads.prior;
            prior.total += 1;
            prior.latest_started_at = prior.latest_started_at.max(Some(at));
            prior.live = true;
        }
    }

    /// The batch ended these runs of the person.
    pub(super) fn exited(&mut self, tenant: &TenantId, contact_key: &str, exited: &[ExitedRun]) {
        if let Some(journeys) = self.journeys_of(tenant, contact_key) {
            for run in exited {
                if let Some(reads) = journeys.get_mut(&run.journey_id) {
                    reads.prior.live = false;
                }
            }
        }
    }

    fn journeys_of(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
    ) -> Option<&mut HashMap<String, EnrollmentReads>> {
        self.runs.get_mut(tenant)?.get_mut(contact_key)
    }

    /// Forget everything read (history moved between keys).
    pub(super) fn forget(&mut self) {
        self.runs.clear();
        self.opt_outs.clear();
    }

    /// Read what `wanted` asks, in two statements at most.
    pub(super) async fn read(
        &mut self,
        conn: &mut PgConnection,
        mut wanted: WantedEnrollment,
    ) -> StoreResult<()> {
        wanted.runs.sort_unstable();
        wanted.runs.dedup();
        if !wanted.runs.is_empty() {
            let rows = sqlx::query(READ_RUNS)
                .bind(column(&wanted.runs, |(p, _)| p.tenant.as_str()))
                .bind(column(&wanted.runs, |(p, _)| p.contact_key.as_str()))
                .bind(column(&wanted.runs, |(_, journey)| journey.as_str()))
                .fetch_all(&mut *conn)
                .await?;
            for row in &rows {
                let (who, journey) = nth(&wanted.runs, row.try_get("n")?)?;
                let total: i64 = row.try_get("total")?;
                let reads = EnrollmentReads {
                    prior: PriorRuns {
                        total: run_count(total)?,
                        latest_started_at: row.try_get::<Option<i64>, _>("latest")?.map(Timestamp),
                        live: row.try_get("live")?,
                    },
                    disabled_by_admin: row.try_get("disabled_by_admin")?,
                };
                self.runs
                    .entry(who.tenant.clone())
                    .or_default()
                    .entry(who.contact_key.clone())
                    .or_default()
                    .insert(journey.clone(), reads);
            }
        }
        wanted.opt_outs.sort_unstable();
        wanted.opt_outs.dedup();
        if !wanted.opt_outs.is_empty() {
            let rows = sqlx::query(READ_OPT_OUTS)
                .bind(column(&wanted.opt_outs, |(p, _)| p.tenant.as_str()))
                .bind(column(&wanted.opt_outs, |(p, _)| p.contact_key.as_str()))
                .bind(column(&wanted.opt_outs, |(_, email)| email.as_deref()))
                .fetch_all(&mut *conn)
                .await?;
            for row in &rows {
                let (who, email) = nth(&wanted.opt_outs, row.try_get("n")?)?;
                self.opt_outs
                    .entry(who.tenant.clone())
                    .or_default()
                    .entry(who.contact_key.clone())
                    .or_default()
                    .push((email.clone(), row.try_get("unsubscribed")?));
            }
        }
        Ok(())
    }
}

/// One array parameter: `f` of each of `rows`.
fn column<'a, T, V>(rows: &'a [T], f: impl Fn(&'a T) -> V) -> Vec<V> {
    rows.iter().map(f).collect()
}

/// The row of `rows` an answer's ordinality `n` (1-based) names.
fn nth<T>(rows: &[T], n: i64) -> StoreResult<&T> {
    usize::try_from(n - 1)
        .ok()
        .and_then(|i| rows.get(i))
        .ok_or_else(|| crate::store::StoreError::corrupt("enrollment reads", format!("row {n}")))
}
