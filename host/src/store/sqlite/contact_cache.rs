//! The writer's memory of live contacts: a known person's event resolves from here instead of
//! reading the contact tables (an index seek, a row, its properties' JSON) on every event.
//!
//! It is sound because the writer thread is the only writer of the file in this process and
//! every write to `contacts` on it either goes through here ([`super::identity`]'s primitives
//! remember what they read and write) or forgets everything ([`ContactCache::clear`], which a
//! contact deletion calls). What could still make it stale is handled where it happens:
//!
//! - a transaction that rolls back: the writer clears the cache after any failed transaction
//!   (it may hold what the transaction wrote);
//! - another connection's commit (a second process on the same file): `PRAGMA data_version`
//!   changes, and [`ContactCache::check_version`] clears the cache before it is used.
//!
//! A hit answers exactly what the by-column lookup would: the entry's record still holds the
//! looked-up value in its own column, is live, and at most one live contact can hold a value
//! (the partial unique indexes). Misses, and values only an alias knows, go to the database.
//!
//! It holds at most [`ContactCache::capacity`] contacts, in two generations: new and touched
//! contacts go to the current one; when it is full, it becomes the previous one and the
//! previous one is dropped. A contact seen within the last generation is always found.

use crate::clock::Timestamp;
use crate::contacts::IdentityKind;
use crate::ids::{ContactId, TenantId};
use crate::store::ContactRecord;
use crate::store::membership_cache::MembershipCache;
use foldhash::HashMap;
use foldhash::fast::FixedState;
use rusqlite::Connection;
use std::hash::BuildHasher;
use std::mem;

/// Contacts kept by default: ~0.5 KiB each with a few properties, so about 25 MiB.
pub(super) const DEFAULT_CAPACITY: usize = 50_000;

/// An identity value (tenant, kind, value) by its hash: a lookup allocates nothing. Two values
/// with one hash cost a database lookup, never a wrong answer: a hit is checked against the
/// record's own columns.
type IdentityHash = u64;

fn identity_hash(tenant: &TenantId, kind: IdentityKind, value: &str) -> IdentityHash {
    FixedState::default().hash_one((tenant.as_str(), kind, value))
}

#[derive(Default)]
struct Generation {
    contacts: HashMap<ContactId, ContactRecord>,
    ids: HashMap<IdentityHash, ContactId>,
}

impl Generation {
    fn insert(&mut self, contact: &ContactRecord) {
        match self.contacts.get_mut(&contact.id) {
            // The same values lead to it already: only the record changes.
            Some(cached) if own_values(cached).eq(own_values(contact)) => {
                cached.clone_from(contact);
                return;
            }
            Some(cached) => cached.clone_from(contact),
            None => {
                self.contacts.insert(contact.id.clone(), contact.clone());
            }
        }
        for (kind, value) in own_values(contact) {
            self.ids.insert(
                identity_hash(&contact.tenant_id, kind, value),
                contact.id.clone(),
            );
        }
    }

    /// The contact a value designates, if this generation knows it and it still holds the
    /// value in its own column.
    fn find(&self, tenant: &TenantId, kind: IdentityKind, value: &str) -> Option<&ContactRecord> {
        let id = self.ids.get(&identity_hash(tenant, kind, value))?;
        self.contacts
            .get(id)
            .filter(|contact| holds(contact, tenant, kind, value))
    }
}

pub(super) struct ContactCache {
    capacity: usize,
    current: Generation,
    previous: Generation,
    /// The active memberships of people ingest read or changed: kept by the same rules.
    memberships: MembershipCache,
    /// The writer connection's `PRAGMA data_version` when the cache was last checked.
    data_version: Option<i64>,
}

impl ContactCache {
    /// A cache of at most `capacity` contacts; 0 keeps none.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            current: Generation::default(),
            previous: Generation::default(),
            memberships: MembershipCache::new(capacity),
            data_version: None,
        }
    }

    /// Forget everything if another connection committed since the last check. Called at the
    /// start of each transaction that uses the cache, on the writer connection.
    pub(super) fn check_version(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        if self.capacity == 0 {
            return Ok(());
        }
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?;
        if self.data_version != Some(version) {
            self.clear();
            self.data_version = Some(version);
        }
        Ok(())
    }

    /// The live contact of `tenant` whose own column for `kind` holds `value`, if cached.
    pub(super) fn find(
        &mut self,
        tenant: &TenantId,
        kind: IdentityKind,
        value: &str,
    ) -> Option<ContactRecord> {
        if let Some(contact) = self.current.find(tenant, kind, value) {
            return Some(contact.clone());
        }
        let contact = self.previous.find(tenant, kind, value)?.clone();
        self.remember(&contact);
        Some(contact)
    }

    /// The contact with this id as last read or written, if cached.
    pub(super) fn get(&self, id: &str) -> Option<&ContactRecord> {
        self.current
            .contacts
            .get(id)
            .or_else(|| self.previous.contacts.get(id))
    }

    /// Remember `contact` as it now is in the database (read, inserted or updated by this
    /// transaction). A deleted contact is forgotten instead.
    pub(super) fn remember(&mut self, contact: &ContactRecord) {
        if self.capacity == 0 {
            return;
        }
        if contact.deleted_at.is_some() {
            self.forget(&contact.id);
            return;
        }
        let half = self.capacity.div_ceil(2);
        // The id entries are bounded too: a contact whose values keep changing leaves stale
        // ones behind until its generation goes.
        if (self.current.contacts.len() >= half && !self.current.contacts.contains_key(&contact.id))
            || self.current.ids.len() >= half * 8
        {
            self.previous = mem::take(&mut self.current);
        }
        self.previous.contacts.remove(&contact.id);
        self.current.insert(contact);
    }

    /// The cached contact with this id was last seen at `at` (its only change): no copy of
    /// the record is made.
    pub(super) fn seen(&mut self, id: &ContactId, at: Timestamp) {
        if let Some(contact) = self
            .current
            .contacts
            .get_mut(id)
            .or_else(|| self.previous.contacts.get_mut(id))
        {
            contact.last_seen_at = at;
        }
    }

    pub(super) fn forget(&mut self, id: &ContactId) {
        self.current.contacts.remove(id);
        self.previous.contacts.remove(id);
    }

    pub(super) fn clear(&mut self) {
        self.current = Generation::default();
        self.previous = Generation::default();
        self.memberships.clear();
    }

    /// The active memberships ingest knows (see [`MembershipCache`]).
    pub(super) fn memberships(&mut self) -> &mut MembershipCache {
        &mut self.memberships
    }

    /// About how many bytes the cached contacts take (records, their strings and properties,
    /// the id entries): what the memory report counts with SQLite's caches.
    pub(super) fn approximate_bytes(&self) -> u64 {
        let generation = |g: &Generation| -> usize {
            let records: usize = g.contacts.values().map(record_bytes).sum();
            let ids: usize = g
                .ids
                .values()
                .map(|id| ENTRY_OVERHEAD + id.as_str().len())
                .sum();
            records + ids
        };
        u64::try_from(generation(&self.current) + generation(&self.previous))
            .unwrap_or(u64::MAX)
            .saturating_add(self.memberships.approximate_bytes())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.contacts.len() + self.previous.contacts.len()
    }
}

/// A hash-table slot, a string's header, an ordered map's node share: rough, and on the high side.
const ENTRY_OVERHEAD: usize = 64;

fn record_bytes(contact: &ContactRecord) -> usize {
    let strings = contact.id.as_str().len()
        + contact.tenant_id.as_str().len()
        + contact.key.len()
        + own_values(contact).map(|(_, v)| v.len()).sum::<usize>();
    let properties: usize = contact
        .properties
        .iter()
        .map(|(k, v)| ENTRY_OVERHEAD + k.len() + value_bytes(v))
        .sum();
    ENTRY_OVERHEAD + mem::size_of::<ContactRecord>() + strings + properties
}

fn value_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    mem::size_of::<Value>()
        + match value {
            Value::String(s) => s.len(),
            Value::Array(items) => items.iter().map(value_bytes).sum(),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| ENTRY_OVERHEAD + k.len() + value_bytes(v))
                .sum(),
            _ => 0,
        }
}

/// The identity values a contact holds in its own columns.
fn own_values(contact: &ContactRecord) -> impl Iterator<Item = (IdentityKind, &str)> {
    [
        IdentityKind::Key,
        IdentityKind::External,
        IdentityKind::Email,
        IdentityKind::Anonymous,
    ]
    .into_iter()
    .filter_map(|kind| contact.own_value(kind).map(|value| (kind, value)))
}

fn holds(contact: &ContactRecord, tenant: &TenantId, kind: IdentityKind, value: &str) -> bool {
    contact.deleted_at.is_none()
        && &contact.tenant_id == tenant
        && contact.own_value(kind) == Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn contact(id: &str, user: &str, email: Option<&str>) -> ContactRecord {
        ContactRecord {
            id: ContactId(id.into()),
            tenant_id: TenantId("t".into()),
            key: user.into(),
            external_id: Some(user.into()),
            email: email.map(str::to_owned),
            anonymous_id: None,
            properties: Map::new(),
            first_seen_at: Timestamp(1),
            last_seen_at: Timestamp(1),
            deleted_at: None,
        }
    }

    fn tenant() -> TenantId {
        TenantId("t".into())
    }

    fn knows(cache: &mut ContactCache, kind: IdentityKind, value: &str) -> bool {
        cache.find(&tenant(), kind, value).is_some()
    }

    #[test]
    fn given_a_remembered_contact_when_looked_up_by_any_of_its_own_values_then_it_is_found() {
        let mut cache = ContactCache::new(10);
        cache.remember(&contact("c1", "u1", Some("a@x.io")));
        for (kind, value) in [
            (IdentityKind::External, "u1"),
            (IdentityKind::Key, "u1"),
            (IdentityKind::Email, "a@x.io"),
        ] {
            let found = cache.find(&tenant(), kind, value).expect("cached");
            assert_eq!(found.id, ContactId("c1".into()));
        }
        assert!(
            cache
                .find(&TenantId("other".into()), IdentityKind::External, "u1")
                .is_none()
        );
    }

    #[test]
    fn given_a_contact_whose_email_changed_when_looked_up_by_the_old_email_then_it_misses() {
        let mut cache = ContactCache::new(10);
        cache.remember(&contact("c1", "u1", Some("old@x.io")));
        cache.remember(&contact("c1", "u1", Some("new@x.io")));
        assert!(!knows(&mut cache, IdentityKind::Email, "old@x.io"));
        assert!(knows(&mut cache, IdentityKind::Email, "new@x.io"));
    }

    #[test]
    fn given_a_contact_in_either_generation_when_seen_then_only_its_last_seen_time_changes() {
        let mut cache = ContactCache::new(2);
        cache.remember(&contact("c1", "u1", Some("a@x.io")));
        // c1 goes to the previous generation
        cache.remember(&contact("c2", "u2", None));
        cache.seen(&ContactId("c1".into()), Timestamp(7));
        cache.seen(&ContactId("c2".into()), Timestamp(8));
        let mut expected = contact("c1", "u1", Some("a@x.io"));
        expected.last_seen_at = Timestamp(7);
        assert_eq!(cache.get("c1"), Some(&expected));
        assert_eq!(cache.get("c2").map(|c| c.last_seen_at), Some(Timestamp(8)));
        // An unknown contact stays unknown
        cache.seen(&ContactId("c3".into()), Timestamp(9));
        assert!(cache.get("c3").is_none());
    }

    #[test]
    fn given_a_deleted_contact_when_remembered_then_it_is_forgotten() {
        let mut cache = ContactCache::new(10);
        cache.remember(&contact("c1", "u1", None));
        let mut deleted = contact("c1", "u1", None);
        deleted.deleted_at = Some(Timestamp(2));
        cache.remember(&deleted);
        assert!(!knows(&mut cache, IdentityKind::External, "u1"));
        assert!(cache.get("c1").is_none());
    }

    #[test]
    fn given_more_contacts_than_its_capacity_then_it_keeps_at_most_that_many_and_the_latest() {
        let mut cache = ContactCache::new(4);
        for i in 0..10 {
            cache.remember(&contact(&format!("c{i}"), &format!("u{i}"), None));
            assert!(cache.len() <= 4, "holds {} after {i}", cache.len());
        }
        assert!(knows(&mut cache, IdentityKind::External, "u9"));
        assert!(knows(&mut cache, IdentityKind::External, "u8"));
        assert!(!knows(&mut cache, IdentityKind::External, "u0"));
    }

    #[test]
    fn given_capacity_zero_then_nothing_is_kept() {
        let mut cache = ContactCache::new(0);
        cache.remember(&contact("c1", "u1", None));
        assert!(!knows(&mut cache, IdentityKind::External, "u1"));
    }
}
