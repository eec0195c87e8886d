//! Memory of whose active memberships a writer knows: every event that can change a bucket
//! reads its person's active memberships, and a person's next event usually finds them as the
//! last one left them, so ingest answers that read from here. A hit answers exactly what the
//! query would: the person's active rows, each with its id, bucket, epoch and join time. For a
//! person the writer just created it also knows there are no rows at all, of any status, so
//! their first join needs no history read either.
//!
//! Only ingest's own membership primitives keep it: they write through it (a join adds the
//! membership, a leave removes it). Each backend keeps it true in its own way:
//! * SQLite: the single writer keeps one across transactions, inside its
//!   [`crate::store::sqlite`] contact cache, and shares its staleness rules (a rolled-back
//!   transaction or another connection's commit clears both). Every other writer of
//!   `bucket_memberships` — the reconcile passes, backfills, manual changes, merges, deletions —
//!   runs outside ingest, and the writer forgets all memberships before any such transaction
//!   or, for a merge inside ingest, the two people it re-points.
//! * PostgreSQL: one per ingest transaction, which holds its people's contact locks to the end;
//!   every writer of memberships takes the person's contact lock first, so nothing else can
//!   change a known person's rows meanwhile. A merge forgets the two people it re-points.

use crate::buckets::membership::ActiveMembership;
use crate::ids::TenantId;
use foldhash::HashMap;
use foldhash::fast::FixedState;
use std::hash::BuildHasher;

/// A person (tenant, resolved key) by its hash: a lookup allocates nothing. Two people with
/// one hash cost a database read, never a wrong answer: the entry names its person.
type PersonHash = u64;

fn person_hash(tenant: &TenantId, contact_key: &str) -> PersonHash {
    FixedState::default().hash_one((tenant.as_str(), contact_key))
}

struct Person {
    tenant: TenantId,
    contact_key: String,
    active: Vec<ActiveMembership>,
    /// No membership rows at all, active or left: a contact created in this writer's
    /// transaction, who has not joined anything since.
    no_history: bool,
}

impl Person {
    fn is(&self, tenant: &TenantId, contact_key: &str) -> bool {
        self.tenant == *tenant && self.contact_key == contact_key
    }
}

pub(crate) struct MembershipCache {
    capacity: usize,
    people: HashMap<PersonHash, Person>,
}

impl MembershipCache {
    /// A cache of at most `capacity` people; 0 keeps none.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            people: HashMap::default(),
        }
    }

    /// The person's active memberships, if known.
    pub(crate) fn get(&self, tenant: &TenantId, contact_key: &str) -> Option<&[ActiveMembership]> {
        self.people
            .get(&person_hash(tenant, contact_key))
            .filter(|person| person.is(tenant, contact_key))
            .map(|person| person.active.as_slice())
    }

    /// Remember what the database said the person's active memberships are. A full cache
    /// starts over (people come back; their next read fills it again).
    pub(crate) fn put(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        active: &[ActiveMembership],
    ) {
        self.remember(tenant, contact_key, active, false);
    }

    /// The writer created this person's contact: they have no memberships, and no history.
    /// (Every row follows its person's key — merges, promotions and deletions re-point them —
    /// so no row can wait under a key a new contact takes.)
    pub(crate) fn created(&mut self, tenant: &TenantId, contact_key: &str) {
        self.remember(tenant, contact_key, &[], true);
    }

    /// Whether the person is known to have no membership rows at all.
    pub(crate) fn has_no_history(&self, tenant: &TenantId, contact_key: &str) -> bool {
        self.people
            .get(&person_hash(tenant, contact_key))
            .is_some_and(|person| person.is(tenant, contact_key) && person.no_history)
    }

    fn remember(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        active: &[ActiveMembership],
        no_history: bool,
    ) {
        if self.capacity == 0 {
            return;
        }
        if self.people.len() >= self.capacity {
            self.people.clear();
        }
        self.people.insert(
            person_hash(tenant, contact_key),
            Person {
                tenant: tenant.clone(),
                contact_key: contact_key.to_owned(),
                active: active.to_vec(),
                no_history,
            },
        );
    }

    /// The person joined: their known memberships gain it (unknown ones stay unknown).
    pub(crate) fn joined(
        &mut self,
        tenant: &TenantId,
        contact_key: &str,
        membership: ActiveMembership,
    ) {
        if let Some(person) = self.known(tenant, contact_key) {
            person.active.push(membership);
            person.no_history = false;
        }
    }

    /// The membership `membership_id` of the person left. One the cache does not hold for
    /// them means it did not see something: it forgets everyone rather than guess.
    pub(crate) fn left(&mut self, tenant: &TenantId, contact_key: &str, membership_id: &str) {
        let Some(person) = self.known(tenant, contact_key) else {
            return;
        };
        match person.active.iter().position(|m| m.id == membership_id) {
            Some(index) => {
                person.active.swap_remove(index);
            }
            None => self.clear(),
        }
    }

    /// Forget one person (their rows were re-pointed or closed outside the primitives).
    pub(crate) fn forget(&mut self, tenant: &TenantId, contact_key: &str) {
        let hash = person_hash(tenant, contact_key);
        if self
            .people
            .get(&hash)
            .is_some_and(|p| p.is(tenant, contact_key))
        {
            self.people.remove(&hash);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.people.clear();
    }

    /// About how many bytes the cached memberships take.
    pub(crate) fn approximate_bytes(&self) -> u64 {
        let membership = |m: &ActiveMembership| {
            std::mem::size_of::<ActiveMembership>() + m.id.len() + m.bucket_id.len()
        };
        let bytes: usize = self
            .people
            .values()
            .map(|person| {
                std::mem::size_of::<(PersonHash, Person)>()
                    + person.tenant.as_str().len()
                    + person.contact_key.len()
                    + person.active.iter().map(membership).sum::<usize>()
            })
            .sum();
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    fn known(&mut self, tenant: &TenantId, contact_key: &str) -> Option<&mut Person> {
        self.people
            .get_mut(&person_hash(tenant, contact_key))
            .filter(|person| person.is(tenant, contact_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    fn membership(id: &str, bucket: &str) -> ActiveMembership {
        ActiveMembership {
            id: id.into(),
            bucket_id: bucket.into(),
            entry_count: 1,
            entered_at: Timestamp(7),
        }
    }

    fn ids(cache: &MembershipCache, tenant: &TenantId, key: &str) -> Option<Vec<String>> {
        cache
            .get(tenant, key)
            .map(|active| active.iter().map(|m| m.id.clone()).collect())
    }

    #[test]
    fn a_known_person_joins_and_leaves_through_the_cache_and_an_unknown_one_stays_unknown() {
        // Given ada known with one membership, and bob not known
        let tenant = TenantId("t".into());
        let mut cache = MembershipCache::new(10);
        cache.put(&tenant, "ada", &[membership("m1", "pro")]);

        // When ada joins a second bucket and bob joins one
        cache.joined(&tenant, "ada", membership("m2", "team"));
        cache.joined(&tenant, "bob", membership("m3", "pro"));

        // Then ada has both, bob is still unknown (his next read goes to the database)
        assert_eq!(
            ids(&cache, &tenant, "ada"),
            Some(vec!["m1".into(), "m2".into()])
        );
        assert_eq!(ids(&cache, &tenant, "bob"), None);

        // When ada leaves the first
        cache.left(&tenant, "ada", "m1");
        // Then only the second is left
        assert_eq!(ids(&cache, &tenant, "ada"), Some(vec!["m2".into()]));

        // And the same key in another tenant is another person
        assert_eq!(ids(&cache, &TenantId("u".into()), "ada"), None);
    }

    #[test]
    fn a_created_person_has_no_history_until_they_join() {
        // Given ada, whose contact the writer just created, and bob, read from the database
        let tenant = TenantId("t".into());
        let mut cache = MembershipCache::new(10);
        cache.created(&tenant, "ada");
        cache.put(&tenant, "bob", &[]);

        // Then ada is known to have no memberships and no history; bob's history is unknown
        assert_eq!(ids(&cache, &tenant, "ada"), Some(vec![]));
        assert!(cache.has_no_history(&tenant, "ada"));
        assert!(!cache.has_no_history(&tenant, "bob"));
        assert!(!cache.has_no_history(&TenantId("other".into()), "ada"));

        // When ada joins, then she has history (a later join counts her earlier rows)
        cache.joined(&tenant, "ada", membership("m1", "pro"));
        assert!(!cache.has_no_history(&tenant, "ada"));
    }

    #[test]
    fn a_leave_the_cache_did_not_know_of_forgets_everyone() {
        // Given ada and bob known
        let tenant = TenantId("t".into());
        let mut cache = MembershipCache::new(10);
        cache.put(&tenant, "ada", &[membership("m1", "pro")]);
        cache.put(&tenant, "bob", &[]);

        // When a membership of ada's the cache never saw leaves
        cache.left(&tenant, "ada", "m9");

        // Then nobody is known any more
        assert_eq!(ids(&cache, &tenant, "ada"), None);
        assert_eq!(ids(&cache, &tenant, "bob"), None);
    }

    #[test]
    fn a_full_cache_starts_over_and_a_forgotten_person_is_read_again() {
        // Given a cache of two people, full
        let tenant = TenantId("t".into());
        let mut cache = MembershipCache::new(2);
        cache.put(&tenant, "ada", &[]);
        cache.put(&tenant, "bob", &[]);

        // When a third is remembered
        cache.put(&tenant, "cy", &[membership("m1", "pro")]);

        // Then only the third is known
        assert_eq!(ids(&cache, &tenant, "ada"), None);
        assert_eq!(ids(&cache, &tenant, "cy"), Some(vec!["m1".into()]));

        // And a forgotten person is unknown
        cache.forget(&tenant, "cy");
        assert_eq!(ids(&cache, &tenant, "cy"), None);
    }
}
