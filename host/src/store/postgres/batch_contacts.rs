//! The contacts an ingest batch works on, as the batch sees them: what each identity value
//! designates (answered for the whole batch in one statement, right after its locks), the
//! contacts' latest state, and the plain updates (properties and timestamps) written together
//! in one statement before the commit instead of one per event.
//!
//! Exact, not a cache. The batch holds the advisory locks of every value it looks up and the
//! row locks of the contacts they designate, so no other writer changes those contacts or
//! what those values designate until the commit; the only changes are the batch's own, and
//! every one of them passes through here:
//! * an update that keeps the contact's identity columns (the common case: a known person's
//!   event bumps `last_seen_at`, maybe a property) is kept in memory, and a later lookup of
//!   that contact answers the kept state, also when it reads the row again;
//! * an insert, or an update that changes an identity column, is written at once and forgets
//!   the answers it may change, which are then looked up again;
//! * anything rarer (a merge's delete, an alias) first writes what is kept, then forgets
//!   every answer.
//!
//! Outside ingest batches (`disabled`) it keeps nothing, and every primitive writes at once.

use crate::contacts::IdentityKey;
use crate::ids::{ContactId, TenantId};
use crate::store::codec::to_json;
use crate::store::{ContactRecord, StoreResult};
use sqlx::PgConnection;
use std::collections::HashMap;

/// Whom an item's identity values lead to (see [`BatchContacts::designated`]).
pub(super) enum Designated<'a> {
    /// Some value was not looked up (or its answer was forgotten).
    Unknown,
    /// No one: the item will create its person.
    Nobody,
    /// This person, and no other.
    One(&'a ContactRecord),
    /// Several people: the item will merge them.
    Several,
}

/// The batch's answers per identity value, and the contacts they lead to.
#[derive(Default)]
pub(super) struct BatchContacts {
    enabled: bool,
    /// What each value looked up designates (a contact id, or none), by tenant.
    designates: HashMap<TenantId, HashMap<IdentityKey, Option<ContactId>>>,
    /// Every contact an answer leads to, as this transaction sees it.
    known: HashMap<ContactId, ContactRecord>,
    /// The known contacts with an update not written yet: whether it changed the properties.
    pending: HashMap<ContactId, bool>,
}

impl BatchContacts {
    pub(super) fn enabled() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }

    /// The answers for every one of `keys` in `tenant`, if the batch knows them all.
    pub(super) fn answers(
        &self,
        tenant: &TenantId,
        keys: &[IdentityKey],
    ) -> Option<Vec<(IdentityKey, Option<ContactRecord>)>> {
        let designates = self.designates.get(tenant)?;
        keys.iter()
            .map(|key| {
                let contact = match designates.get(key)? {
                    Some(id) => Some(self.known.get(id)?.clone()),
                    None => None,
                };
                Some((key.clone(), contact))
            })
            .collect()
    }

    /// Whom `keys` lead to, as far as the batch knows.
    pub(super) fn designated(&self, tenant: &TenantId, keys: &[IdentityKey]) -> Designated<'_> {
        let Some(designates) = self.designates.get(tenant) else {
            return Designated::Unknown;
        };
        let mut person: Option<&ContactId> = None;
        for key in keys {
            match designates.get(key) {
                None => return Designated::Unknown,
                Some(None) => {}
                Some(Some(id)) if person.is_some_and(|p| p != id) => return Designated::Several,
                Some(Some(id)) => person = Some(id),
            }
        }
        match person {
            None => Designated::Nobody,
            Some(id) => self
                .known
                .get(id)
                .map_or(Designated::Unknown, Designated::One),
        }
    }

    /// Take in what a lookup statement read: a contact the batch already knows is answered as
    /// the batch sees it (the row may lack an update kept here), and the answers are kept.
    pub(super) fn learn(
        &mut self,
        tenant: &TenantId,
        answers: &mut [(IdentityKey, Option<ContactRecord>)],
    ) {
        if !self.enabled {
            return;
        }
        let designates = self.designates.entry(tenant.clone()).or_default();
        for (key, contact) in answers.iter_mut() {
            if let Some(contact) = contact {
                match self.known.get(&contact.id) {
                    Some(seen) => *contact = seen.clone(),
                    None => {
                        self.known.insert(contact.id.clone(), contact.clone());
                    }
                }
            }
            designates.insert(key.clone(), contact.as_ref().map(|c| c.id.clone()));
        }
    }

    /// Keep `contact`'s update for [`BatchContacts::write`] when the batch knows the contact
    /// and the update leaves its identity columns as they are: whether it was kept.
    pub(super) fn defer_update(
        &mut self,
        contact: &ContactRecord,
        properties_changed: bool,
    ) -> bool {
        let Some(seen) = self.known.get_mut(&contact.id) else {
            return false;
        };
        let same_identity = seen.key == contact.key
            && seen.external_id == contact.external_id
            && seen.email == contact.email
            && seen.anonymous_id == contact.anonymous_id
            && seen.deleted_at.is_none()
            && contact.deleted_at.is_none();
        if !same_identity {
            return false;
        }
        *seen = contact.clone();
        *self.pending.entry(contact.id.clone()).or_default() |= properties_changed;
        true
    }

    /// `contact` is about to be written at once, which may change what its values designate:
    /// forget its answers and its kept state; whether a kept update had changed its
    /// properties (the write must then write them too).
    pub(super) fn written_at_once(&mut self, contact: &ContactRecord) -> bool {
        let mut values: Vec<&str> = [&contact.external_id, &contact.email, &contact.anonymous_id]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        values.push(&contact.key);
        if let Some(seen) = self.known.remove(&contact.id) {
            self.forget(&contact.tenant_id, &contact.id, &values);
            let old: Vec<&str> = [&seen.external_id, &seen.email, &seen.anonymous_id]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .chain([seen.key.as_str()])
                .collect();
            self.forget(&contact.tenant_id, &contact.id, &old);
        } else {
            self.forget(&contact.tenant_id, &contact.id, &values);
        }
        self.pending.remove(&contact.id).unwrap_or(false)
    }

    /// Forget the answers that lead to `id` or look up one of `values`.
    fn forget(&mut self, tenant: &TenantId, id: &ContactId, values: &[&str]) {
        if let Some(designates) = self.designates.get_mut(tenant) {
            designates.retain(|key, answer| {
                answer.as_ref() != Some(id) && !values.contains(&key.value.as_str())
            });
        }
    }

    /// Write every kept update (one statement), then forget every answer: for a write that
    /// can change what any value designates (a merge, an alias).
    pub(super) async fn write_and_forget(&mut self, conn: &mut PgConnection) -> StoreResult<()> {
        self.write(conn).await?;
        self.designates.clear();
        self.known.clear();
        Ok(())
    }

    /// Write every kept update, in one statement: properties only where they changed (see
    /// `update_contact`), the first and last seen times always.
    ///
    /// The ids drive primary-key lookups (`id = ANY`), whatever the planner believes about
    /// the table's size; the arrays are then joined to the rows found.
    pub(super) async fn write(&mut self, conn: &mut PgConnection) -> StoreResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(self.pending.len());
        let mut properties = Vec::with_capacity(self.pending.len());
        let mut first_seen = Vec::with_capacity(self.pending.len());
        let mut last_seen = Vec::with_capacity(self.pending.len());
        for (id, properties_changed) in self.pending.drain() {
            let contact = &self.known[&id];
            properties.push(if properties_changed {
                Some(to_json("contact properties", &contact.properties)?)
            } else {
                None
            });
            first_seen.push(contact.first_seen_at.0);
            last_seen.push(contact.last_seen_at.0);
            ids.push(id.as_str().to_owned());
        }
        sqlx::query(
            "UPDATE contacts c SET properties = COALESCE(u.properties::jsonb, c.properties), \
             first_seen_at = u.first_seen_at, last_seen_at = u.last_seen_at, \
             updated_at = u.last_seen_at \
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[]) \
               AS u(id, properties, first_seen_at, last_seen_at) \
             WHERE c.id = ANY($1::text[]) AND c.id = u.id",
        )
        .bind(&ids)
        .bind(&properties)
        .bind(&first_seen)
        .bind(&last_seen)
        .execute(conn)
        .await?;
        Ok(())
    }
}
