//! Identity resolution: the one algorithm every backend runs, inside its own transaction,
//! through the [`IdentityTx`] primitives it implements in its dialect.
//!
//! Given the identifying values of an event (user id, email, anonymous id) it finds the live
//! contacts they point to (directly or through aliases) and then creates a contact (none
//! found), fills one in (one found) or merges them (several found) into a deterministic
//! survivor, re-pointing history to the survivor's key and keeping aliases so old values still
//! resolve. The rules themselves (survivor, property fold, resolved key) are in
//! [`crate::contacts`].

use super::{Alias, AliasReason, ContactRecord, Resolution, StoreError, StoreResult};
use crate::clock::Timestamp;
use crate::contacts::{self, Identity, IdentityKey, IdentityKind};
use crate::ids::{ContactId, TenantId};
use serde_json::{Map, Value};

/// What a backend provides, within one open write transaction, for [`resolve`].
///
/// Plain `async fn`s, without a `Send` bound: whether a resolution's future is `Send` follows
/// from the backend's type (PostgreSQL's is; SQLite's runs synchronously on its writer thread,
/// where its transaction lives, and never leaves it).
#[allow(async_fn_in_trait)] // implemented only by this crate's backends
pub trait IdentityTx {
    /// Serialise concurrent resolutions that touch any of these keys until the transaction
    /// ends (PostgreSQL: transaction-scoped advisory locks taken in the given, sorted order;
    /// SQLite: its single writer already serialises).
    async fn lock_identity(&mut self, tenant: &TenantId, keys: &[IdentityKey]) -> StoreResult<()>;
    /// The live contact a value identifies: by its own column (`external_id`, `email`,
    /// `anonymous_id`, `key`), else through an alias of that kind.
    async fn live_contact(
        &mut self,
        tenant: &TenantId,
        key: &IdentityKey,
    ) -> StoreResult<Option<ContactRecord>>;
    async fn insert_contact(&mut self, contact: &ContactRecord) -> StoreResult<()>;
    /// Write every mutable field of the contact (keys, properties, timestamps) by id; the
    /// properties may be left as stored when `properties_changed` is false (a contact's
    /// properties can be large, and most events change none of them).
    async fn update_contact(
        &mut self,
        contact: &ContactRecord,
        properties_changed: bool,
    ) -> StoreResult<()>;
    async fn soft_delete_contact(
        &mut self,
        tenant: &TenantId,
        id: &ContactId,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Insert an alias, or re-point an existing one with the same (tenant, kind, value).
    async fn upsert_alias(&mut self, alias: &Alias) -> StoreResult<()>;
    /// Re-point every alias of `from` to `to` (a merge: values that led to the loser, from
    /// earlier merges or key changes, must now lead to the survivor).
    async fn move_aliases(
        &mut self,
        tenant: &TenantId,
        from: &ContactId,
        to: &ContactId,
    ) -> StoreResult<()>;
    /// Move history stored under `from` to another key `to`: events, emails and bucket
    /// memberships are rewritten; a live run (active or waiting) whose journey already has a
    /// live run under `to` is exited first (its timer removed), and an active membership of a
    /// bucket `to` is already a member of is closed (reason `merged`, no transition), then the
    /// rest move.
    async fn repoint_history(
        &mut self,
        tenant: &TenantId,
        from: &str,
        to: &str,
        at: Timestamp,
    ) -> StoreResult<()>;
}

/// The values [`resolve`] looks up, and locks, for `identity`, in lookup order: its user id,
/// email and anonymous id, then its user id and anonymous id as resolved keys. A backend that
/// takes the locks of many resolutions ahead of them (a batch, in one global order) takes
/// these.
pub fn lookup_keys(identity: &Identity) -> Vec<IdentityKey> {
    let mut keys = identity.keys();
    // A user id or anonymous id that is already some contact's resolved key names that
    // contact: keys identify people, and two live contacts can never share one.
    for value in [&identity.user_id, &identity.anonymous_id]
        .into_iter()
        .flatten()
    {
        let key = IdentityKey {
            kind: IdentityKind::Key,
            value: value.clone(),
        };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// Resolve `identity` to one live contact, merging `patch` into its properties.
pub async fn resolve(
    tx: &mut impl IdentityTx,
    tenant: &TenantId,
    identity: &Identity,
    patch: &Map<String, Value>,
    now: Timestamp,
) -> StoreResult<Resolution> {
    let keys = lookup_keys(identity);
    if keys.is_empty() {
        return Err(StoreError::Invalid(
            "an email, user id or anonymous id is required".into(),
        ));
    }
    let mut lock_order = keys.clone();
    lock_order.sort();
    tx.lock_identity(tenant, &lock_order).await?;

    let mut found: Vec<ContactRecord> = Vec::new();
    for key in &keys {
        // Two live contacts never hold one value in the same column: a contact already found
        // that holds this one is the answer (and is not read again).
        if found
            .iter()
            .any(|c| c.own_value(key.kind) == Some(key.value.as_str()))
        {
            continue;
        }
        if let Some(contact) = tx.live_contact(tenant, key).await?
            && !found.iter().any(|c| c.id == contact.id)
        {
            found.push(contact);
        }
    }

    match found.len() {
        0 => create(tx, tenant, identity, patch, now).await,
        1 => {
            let contact = found.pop().expect("one contact");
            fill_in(tx, contact, identity, patch, now).await
        }
        _ => merge(tx, found, identity, patch, now).await,
    }
}

async fn create(
    tx: &mut impl IdentityTx,
    tenant: &TenantId,
    identity: &Identity,
    patch: &Map<String, Value>,
    now: Timestamp,
) -> StoreResult<Resolution> {
    let id = ContactId::generate();
    let mut properties = Map::new();
    let changed_properties = contacts::merge_properties(&mut properties, patch);
    let contact = ContactRecord {
        key: contacts::resolved_key(
            identity.user_id.as_deref(),
            identity.anonymous_id.as_deref(),
            id.as_str(),
        ),
        id,
        tenant_id: tenant.clone(),
        external_id: identity.user_id.clone(),
        email: identity.email.clone(),
        anonymous_id: identity.anonymous_id.clone(),
        properties,
        first_seen_at: now,
        last_seen_at: now,
        deleted_at: None,
    };
    tx.insert_contact(&contact).await?;
    Ok(Resolution {
        contact,
        created: true,
        linked: false,
        merged: vec![],
        changed_properties,
    })
}

/// Give the contact the identity values it lacks; returns the (kind, value) pairs it gained.
fn fill_missing(contact: &mut ContactRecord, identity: &Identity) -> Vec<(IdentityKind, String)> {
    let mut gained = Vec::new();
    for (slot, value, kind) in [
        (
            &mut contact.external_id,
            &identity.user_id,
            IdentityKind::External,
        ),
        (&mut contact.email, &identity.email, IdentityKind::Email),
        (
            &mut contact.anonymous_id,
            &identity.anonymous_id,
            IdentityKind::Anonymous,
        ),
    ] {
        if slot.is_none()
            && let Some(value) = value
        {
            *slot = Some(value.clone());
            gained.push((kind, value.clone()));
        }
    }
    gained
}

fn rekey(contact: &mut ContactRecord) {
    contact.key = contacts::resolved_key(
        contact.external_id.as_deref(),
        contact.anonymous_id.as_deref(),
        contact.id.as_str(),
    );
}

fn alias(
    contact: &ContactRecord,
    kind: IdentityKind,
    value: String,
    from: Option<&ContactId>,
    reason: AliasReason,
    now: Timestamp,
) -> Alias {
    Alias {
        tenant_id: contact.tenant_id.clone(),
        kind,
        value,
        contact_id: contact.id.clone(),
        from_contact_id: from.cloned(),
        reason,
        created_at: now,
    }
}

async fn fill_in(
    tx: &mut impl IdentityTx,
    mut contact: ContactRecord,
    identity: &Identity,
    patch: &Map<String, Value>,
    now: Timestamp,
) -> StoreResult<Resolution> {
    let old_key = contact.key.clone();
    let gained = fill_missing(&mut contact, identity);
    let changed_properties = contacts::merge_properties(&mut contact.properties, patch);
    contact.last_seen_at = now;
    rekey(&mut contact);
    tx.update_contact(&contact, !changed_properties.is_empty())
        .await?;
    if contact.key != old_key {
        tx.repoint_history(&contact.tenant_id, &old_key, &contact.key, now)
            .await?;
        tx.upsert_alias(&alias(
            &contact,
            IdentityKind::Key,
            old_key,
            None,
            AliasReason::Promote,
            now,
        ))
        .await?;
    }
    for (kind, value) in gained {
        tx.upsert_alias(&alias(
            &contact,
            kind,
            value,
            None,
            AliasReason::Promote,
            now,
        ))
        .await?;
    }
    Ok(Resolution {
        contact,
        created: false,
        linked: true,
        merged: vec![],
        changed_properties,
    })
}

async fn merge(
    tx: &mut impl IdentityTx,
    mut found: Vec<ContactRecord>,
    identity: &Identity,
    patch: &Map<String, Value>,
    now: Timestamp,
) -> StoreResult<Resolution> {
    let ranking: Vec<(bool, i64, &str)> = found
        .iter()
        .map(|c| (c.external_id.is_some(), c.first_seen_at.0, c.id.as_str()))
        .collect();
    let mut survivor = found.remove(contacts::survivor_index(&ranking));
    let losers = found;
    let old_key = survivor.key.clone();

    survivor.properties = contacts::fold_properties(
        losers.iter().map(|l| &l.properties),
        &survivor.properties,
        patch,
    );
    survivor.first_seen_at = losers
        .iter()
        .map(|l| l.first_seen_at)
        .fold(survivor.first_seen_at, Ord::min);
    survivor.last_seen_at = now;
    // Values the survivor lacks come from this call, else from the first loser that has them.
    let mut gained = fill_missing(&mut survivor, identity);
    for loser in &losers {
        gained.extend(fill_missing(
            &mut survivor,
            &Identity {
                user_id: loser.external_id.clone(),
                email: loser.email.clone(),
                anonymous_id: loser.anonymous_id.clone(),
            },
        ));
    }
    rekey(&mut survivor);

    // Losers go first: the partial unique indexes cover live rows only, so the survivor can
    // only take over their values once they are deleted.
    for loser in &losers {
        tx.soft_delete_contact(&survivor.tenant_id, &loser.id, now)
            .await?;
    }
    tx.update_contact(&survivor, true).await?;

    let tenant = survivor.tenant_id.clone();
    if survivor.key != old_key {
        tx.repoint_history(&tenant, &old_key, &survivor.key, now)
            .await?;
        tx.upsert_alias(&alias(
            &survivor,
            IdentityKind::Key,
            old_key,
            None,
            AliasReason::Promote,
            now,
        ))
        .await?;
    }
    for (kind, value) in gained {
        tx.upsert_alias(&alias(
            &survivor,
            kind,
            value,
            None,
            AliasReason::Promote,
            now,
        ))
        .await?;
    }
    for loser in &losers {
        tx.move_aliases(&tenant, &loser.id, &survivor.id).await?;
        if loser.key != survivor.key {
            tx.repoint_history(&tenant, &loser.key, &survivor.key, now)
                .await?;
        }
        let values = [
            (IdentityKind::External, loser.external_id.clone()),
            (IdentityKind::Email, loser.email.clone()),
            (IdentityKind::Anonymous, loser.anonymous_id.clone()),
            (IdentityKind::Key, Some(loser.key.clone())),
        ];
        for (kind, value) in values {
            if let Some(value) = value {
                tx.upsert_alias(&alias(
                    &survivor,
                    kind,
                    value,
                    Some(&loser.id),
                    AliasReason::Merge,
                    now,
                ))
                .await?;
            }
        }
    }
    let merged = losers.into_iter().map(|l| l.id).collect();
    // The merged memberships are not what either person's were: every property counts as
    // changed, so the property buckets look at the merged contact afresh.
    let mut changed_properties: Vec<String> = survivor.properties.keys().cloned().collect();
    changed_properties.extend(
        patch
            .keys()
            .filter(|key| !survivor.properties.contains_key(*key))
            .cloned(),
    );
    Ok(Resolution {
        contact: survivor,
        created: false,
        linked: true,
        merged,
        changed_properties,
    })
}
