//! A claim of due runs, fair across tenants, once for both backends.
//!
//! Every tenant that is not suspended has room: its activations-in-flight limit (its own, or
//! the host's default) less its runs leased now, on every host. Each tenant with room offers its
//! oldest due runs, no more than its room, and the claim takes them **least loaded first**: a
//! tenant's k-th offer counts as the k-th activation it would add to those it has in flight,
//! and offers are taken in that order (then oldest due first). One tenant's 100,000 due runs
//! therefore fill only its own room, and another tenant's single due run goes before that
//! tenant's second; across claims the tenants' in-flight counts are levelled (max-min fair),
//! without state kept between claims.
//!
//! A tenant with activations in flight offers again only once a quarter of its limit is free:
//! at its limit it would otherwise be offered one run per finished activation, a claim (a write
//! transaction) for each. A tenant with nothing in flight always offers.
//!
//! Several hosts claim at once on PostgreSQL: each counts the leases committed when it looks,
//! so two claims at the same moment can each fill the same tenant's room — a tenant can
//! overshoot its limit by what one claim per host takes, never more, and only until those
//! activations end.

use crate::clock::Timestamp;
use crate::ids::{RunId, TenantId};
use crate::store::{ActivationInput, Lease, StoreResult};
use std::collections::HashMap;

/// A tenant's share of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRoom {
    pub tenant: TenantId,
    /// Its runs leased now (activations in flight, or leases a dead host left to lapse).
    pub in_flight: u32,
    /// How many more it may have in flight.
    pub room: u32,
}

impl TenantRoom {
    /// Whether the tenant offers runs to this claim: it has room, and either nothing in
    /// flight or a quarter of its limit free (see the module doc).
    pub fn offers(&self) -> bool {
        let limit = self.in_flight.saturating_add(self.room);
        self.room > 0 && (self.in_flight == 0 || self.room >= (limit / 4).max(1))
    }

    /// From what the store counts: the tenant's limit and its leases now (a limit lowered
    /// below what is in flight leaves no room, not a negative one).
    pub fn new(tenant: TenantId, limit: i64, in_flight: i64) -> Self {
        let clamp = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        TenantRoom {
            tenant,
            in_flight: clamp(in_flight),
            room: clamp(limit - in_flight),
        }
    }
}

/// A due, unleased timer of a live run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    pub run_id: RunId,
    pub tenant: TenantId,
    /// Host clock.
    pub due_at: i64,
}

/// What [`claim_due_runs`] asks of a backend inside its open write transaction.
#[allow(async_fn_in_trait)] // implemented only by this crate's backends; see `IdentityTx`
pub trait FairClaimTx {
    /// Every tenant that is not suspended, with its room under its activations-in-flight
    /// limit (its own, else `default_in_flight`), counting leases alive at `now_real`.
    async fn tenant_rooms(
        &mut self,
        default_in_flight: u32,
        now_real: Timestamp,
    ) -> StoreResult<Vec<TenantRoom>>;
    /// For each `(tenant, take)`: up to `take` of the tenant's timers due at `now` (host clock)
    /// and not leased at `now_real`, of live runs, oldest due first (then by run id); locked
    /// for this transaction where other hosts claim too (they skip them).
    async fn due_timers(
        &mut self,
        wanted: &[(TenantId, u32)],
        now: Timestamp,
        now_real: Timestamp,
    ) -> StoreResult<Vec<DueTimer>>;
    /// Lease the timers to `lease.owner` and read what each one's activation needs, in the
    /// order given.
    async fn lease_timers(
        &mut self,
        picked: &[DueTimer],
        lease: &Lease,
    ) -> StoreResult<Vec<ActivationInput>>;
}

/// Claim up to `limit` due runs, fairly across tenants (see the module doc).
pub async fn claim_due_runs(
    tx: &mut impl FairClaimTx,
    now: Timestamp,
    lease: &Lease,
    limit: u32,
    default_in_flight: u32,
) -> StoreResult<Vec<ActivationInput>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let rooms = tx.tenant_rooms(default_in_flight, lease.now_real).await?;
    let wanted: Vec<(TenantId, u32)> = rooms
        .iter()
        .filter(|room| room.offers())
        .map(|room| (room.tenant.clone(), room.room.min(limit)))
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let due = tx.due_timers(&wanted, now, lease.now_real).await?;
    let picked = least_loaded_first(&rooms, due, limit);
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    tx.lease_timers(&picked, lease).await
}

/// The offers in the order the claim takes them, cut at `limit`: by the load each would bring
/// its tenant to (in flight plus its place among the tenant's offers), then oldest due first,
/// then by run id. `due` holds each tenant's offers oldest first.
pub fn least_loaded_first(rooms: &[TenantRoom], due: Vec<DueTimer>, limit: u32) -> Vec<DueTimer> {
    // Each tenant's load so far: its in flight, then one more per offer ranked.
    let mut load: HashMap<TenantId, u32> = rooms
        .iter()
        .map(|room| (room.tenant.clone(), room.in_flight))
        .collect();
    let mut ranked: Vec<(u32, DueTimer)> = due
        .into_iter()
        .map(|timer| {
            let tenant_load = load.entry(timer.tenant.clone()).or_insert(0);
            *tenant_load += 1;
            (*tenant_load, timer)
        })
        .collect();
    ranked.sort_by(|(load_a, a), (load_b, b)| {
        load_a
            .cmp(load_b)
            .then(a.due_at.cmp(&b.due_at))
            .then_with(|| a.run_id.cmp(&b.run_id))
    });
    ranked
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|(_, timer)| timer)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(tenant: &str, in_flight: u32, room: u32) -> TenantRoom {
        TenantRoom {
            tenant: TenantId(tenant.into()),
            in_flight,
            room,
        }
    }

    fn due(tenant: &str, n: usize, due_at: i64) -> DueTimer {
        DueTimer {
            run_id: RunId(format!("{tenant}-{n:06}")),
            tenant: TenantId(tenant.into()),
            due_at,
        }
    }

    fn tenants_of(picked: &[DueTimer]) -> String {
        picked.iter().map(|t| t.tenant.as_str()).collect()
    }

    #[test]
    fn a_tenant_at_its_limit_offers_again_once_a_quarter_is_free_unless_nothing_is_in_flight() {
        let at = |in_flight, limit| TenantRoom::new(TenantId("a".into()), limit, in_flight);
        assert!(!at(32, 32).offers());
        assert!(!at(25, 32).offers());
        assert!(at(24, 32).offers());
        assert!(at(0, 32).offers());
        assert!(at(0, 1).offers() && !at(1, 1).offers());
        assert!(
            at(2, 3).offers(),
            "a limit under four refills one at a time"
        );
        assert!(!at(40, 32).offers(), "a lowered limit leaves no room");
    }

    #[test]
    fn a_single_due_run_goes_before_a_flooding_tenants_second_though_it_is_due_later() {
        // Given tenant a with a backlog due since 0 and tenant b with one run due at 500,
        let rooms = [room("a", 0, 32), room("b", 0, 32)];
        let mut offers: Vec<DueTimer> = (0..32).map(|n| due("a", n, 0)).collect();
        offers.push(due("b", 0, 500));
        // when four are claimed,
        let picked = least_loaded_first(&rooms, offers, 4);
        // then b's run is second: after a's oldest, before a's second.
        assert_eq!(tenants_of(&picked), "abaa");
        assert_eq!(picked[0].run_id.as_str(), "a-000000");
    }

    #[test]
    fn tenants_with_fewer_in_flight_are_served_first_levelling_the_counts() {
        // Given a with 5 in flight, b with 1 and c with none, each with plenty due,
        let rooms = [room("a", 5, 10), room("b", 1, 10), room("c", 0, 10)];
        let offers: Vec<DueTimer> = ["a", "b", "c"]
            .iter()
            .flat_map(|t| (0..10).map(move |n| due(t, n, 0)))
            .collect();
        // when six are claimed,
        let picked = least_loaded_first(&rooms, offers, 6);
        // then c gets to 1 first, b and c climb together, and a waits until they reach 5.
        assert_eq!(tenants_of(&picked), "cbcbcb");
    }

    #[test]
    fn at_equal_load_the_oldest_due_goes_first_then_the_run_id() {
        let rooms = [room("a", 0, 2), room("b", 0, 2), room("c", 0, 2)];
        let offers = vec![
            due("a", 1, 20),
            due("a", 2, 30),
            due("b", 1, 10),
            due("b", 2, 10),
            due("c", 1, 10),
        ];
        let picked = least_loaded_first(&rooms, offers, 5);
        let ids: Vec<&str> = picked.iter().map(|t| t.run_id.as_str()).collect();
        assert_eq!(
            ids,
            ["b-000001", "c-000001", "a-000001", "b-000002", "a-000002"]
        );
    }
}
