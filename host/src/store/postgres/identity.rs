//! Implements the identity primitives ([`crate::store::identity::IdentityTx`]).
//!
//! The PostgreSQL side of identity resolution: [`PgTx`] gives
//! [`crate::store::identity::resolve`] its primitives inside an open transaction, safely
//! against other host processes resolving at the same time.
//!
//! Two kinds of lock make that safe:
//! * **Advisory locks on identifying values.** `pg_advisory_xact_lock` on a 64-bit hash of
//!   (tenant, kind, value), held to the end of the transaction. Every lock a transaction takes
//!   follows one global order ([`LockTarget`]'s: tenant, then identity values before idempotency
//!   keys, then kind and value), which is the order `resolve` passes its sorted keys in and the
//!   order an ingest batch pre-locks all of its items in, so no two transactions wait on each
//!   other in a cycle. Two first events for one new person therefore run one after the other,
//!   and the second finds the contact the first created.
//! * **Row locks on contacts.** Every contact a resolution reads is read `FOR UPDATE`, so the
//!   read-modify-write of its properties never loses a concurrent one; the contacts of one
//!   resolution (and of a whole ingest batch, up front) are locked together in id order, so
//!   two transactions reaching the same contacts through different values cannot deadlock. A
//!   resolution can reach a contact through a value another transaction does not lock (an
//!   alias, or a loser being merged into someone else); when a row it waited for turns out
//!   deleted, the lookup runs again and, with a fresh snapshot, follows what the other
//!   transaction left.
//!
//! Round trips are the cost on this backend, so `lock_identity` looks up every value `resolve`
//! is about to ask for in the same statement that locks their contacts, and `live_contact`
//! answers from that until the transaction next writes. An ingest batch goes further: it locks
//! and looks up every value of all its items in one statement up front, and its items' plain
//! contact updates wait in memory ([`super::batch_contacts`]); its events are written together
//! at its end ([`PgTx::write_events`]; re-pointing history re-points them too). The contact
//! lookups shared with the contact queries (by key, through aliases) live here as well.

use super::live_statuses;
use super::rows::contact_columns;
use super::tx::{LockedPeople, PgTx};
use crate::clock::Timestamp;
use crate::contacts::{IdentityKey, IdentityKind};
use crate::ids::{ContactId, TenantId};
use crate::store::codec::to_json;
use crate::store::identity::IdentityTx;
use crate::store::rows::contact_from_row;
use crate::store::{Alias, ContactRecord, StoreError, StoreResult};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Row};

/// How many times a locking lookup re-reads a contact that concurrent transactions keep
/// deleting or merging away under it before giving up.
const MAX_LOOKUP_RETRIES: usize = 32;

/// What an advisory lock protects. The derived order (identity values first, then
/// idempotency keys) is part of the global lock order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum LockName {
    Identity(IdentityKey),
    Idempotency(String),
}

/// An advisory lock, ordered as every transaction takes its locks: by tenant, then by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct LockTarget {
    pub tenant: TenantId,
    pub name: LockName,
}

impl LockTarget {
    /// The advisory lock id: the first 8 bytes of a sha256 of the target, the same in every
    /// process (a collision only makes two unrelated values share a lock).
    fn lock_id(&self) -> i64 {
        let mut hash = Sha256::new();
        hash.update(b"waymark\0");
        hash.update(self.tenant.as_str().as_bytes());
        match &self.name {
            LockName::Identity(key) => {
                hash.update(b"\0identity\0");
                hash.update(key.kind.as_str().as_bytes());
                hash.update(b"\0");
                hash.update(key.value.as_bytes());
            }
            LockName::Idempotency(key) => {
                hash.update(b"\0idempotency\0");
                hash.update(key.as_bytes());
            }
        }
        let digest = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(first)
    }
}

/// Lock the live contacts that identity values designate, in id order: for each
/// `(tenant, kind, value)` of the arrays `$1`, `$2`, `$3`, the contact whose own column of that
/// kind holds the value, and the contact an alias of that kind and value leads to.
///
/// Shaped so that no plan can scan every contact, whatever PostgreSQL believes about the
/// tables' sizes (a generic plan made while they were empty, no statistics when autovacuum is
/// off): the values drive a nested loop (`LATERAL`, fenced by `OFFSET 0` so it is not
/// flattened into a join the planner could reorder) of lookups on the full key of a unique
/// index, and the sorted ids then drive one primary-key lookup each, locking as they go (in
/// id order). Likewise, no lookup by id also tests `deleted_at` in its `WHERE` (which would
/// let the planner scan a partial index of live rows instead of using the primary key).
const LOCK_DESIGNATED: &str = "SELECT l.tenant_id, l.key FROM (\
        SELECT DISTINCT x.id FROM unnest($1::text[], $2::text[], $3::text[]) \
            AS k(tenant_id, kind, value) \
        CROSS JOIN LATERAL (\
            SELECT id FROM contacts WHERE k.kind = 'external' AND tenant_id = k.tenant_id \
                AND external_id = k.value AND deleted_at IS NULL \
            UNION ALL SELECT id FROM contacts WHERE k.kind = 'email' AND tenant_id = k.tenant_id \
                AND email = k.value AND deleted_at IS NULL \
            UNION ALL SELECT id FROM contacts WHERE k.kind = 'anonymous' \
                AND tenant_id = k.tenant_id AND anonymous_id = k.value AND deleted_at IS NULL \
            UNION ALL SELECT id FROM contacts WHERE k.kind = 'key' AND tenant_id = k.tenant_id \
                AND key = k.value AND deleted_at IS NULL \
            UNION ALL SELECT contact_id FROM contact_aliases WHERE tenant_id = k.tenant_id \
                AND kind = k.kind AND value = k.value \
            OFFSET 0) x \
        ORDER BY x.id) i \
    CROSS JOIN LATERAL (SELECT c.tenant_id, c.key FROM contacts c WHERE c.id = i.id FOR UPDATE) l";

/// The lookups of several values at once, as [`live_contact`] answers each (the contact's own
/// column for the value's kind, else an alias of that kind), in one statement: `$1` tenants,
/// `$2` kinds, `$3` values, one of each per value; each answer comes back with the value's
/// position `n`. The contacts are locked in id order, and read as they are once any concurrent
/// writer committed (so one may come back deleted: the caller looks again). Same plan-proof
/// shape as [`LOCK_DESIGNATED`].
const LOOKUP_ALL: &str = concat!(
    "WITH found AS MATERIALIZED (\
         SELECT k.n, f.id FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY \
             AS k(tenant_id, kind, value, n) \
         CROSS JOIN LATERAL (SELECT f.id FROM (\
             SELECT id, 0 AS rank FROM contacts WHERE k.kind = 'external' \
                 AND tenant_id = k.tenant_id AND external_id = k.value AND deleted_at IS NULL \
             UNION ALL SELECT id, 0 FROM contacts WHERE k.kind = 'email' \
                 AND tenant_id = k.tenant_id AND email = k.value AND deleted_at IS NULL \
             UNION ALL SELECT id, 0 FROM contacts WHERE k.kind = 'anonymous' \
                 AND tenant_id = k.tenant_id AND anonymous_id = k.value AND deleted_at IS NULL \
             UNION ALL SELECT id, 0 FROM contacts WHERE k.kind = 'key' \
                 AND tenant_id = k.tenant_id AND key = k.value AND deleted_at IS NULL \
             UNION ALL SELECT a.contact_id, 1 FROM contact_aliases a \
                 WHERE a.tenant_id = k.tenant_id AND a.kind = k.kind AND a.value = k.value \
                 AND (SELECT l.deleted_at IS NULL FROM contacts l WHERE l.id = a.contact_id)\
         ) f ORDER BY f.rank LIMIT 1) f), \
     locked AS MATERIALIZED (\
         SELECT c.* FROM (SELECT DISTINCT id FROM found ORDER BY id) i \
         CROSS JOIN LATERAL (SELECT * FROM contacts c WHERE c.id = i.id FOR UPDATE) c) \
     SELECT found.n, ",
    contact_columns!(),
    " FROM found JOIN locked c ON c.id = found.id"
);

/// The lookup of one value: the live contact whose own `$column` holds `$2`, else the live
/// contact an alias of one of the kinds `$3` (the first listed wins) leads to. With
/// `FOR UPDATE`, the row is locked and read as it is once any concurrent writer committed, so
/// it may come back deleted: the caller looks again.
macro_rules! lookup_sql {
    ($column:literal, $lock:literal) => {
        concat!(
            "SELECT ",
            contact_columns!(),
            " FROM contacts c WHERE c.id = (SELECT found.id FROM (\
                 SELECT d.id, 0 AS rank FROM contacts d \
                 WHERE d.tenant_id = $1 AND d.",
            $column,
            " = $2 AND d.deleted_at IS NULL \
                 UNION ALL \
                 SELECT a.contact_id, ak.rank FROM unnest($3::text[]) WITH ORDINALITY \
                 AS ak(kind, rank) \
                 CROSS JOIN LATERAL (SELECT contact_id FROM contact_aliases \
                     WHERE tenant_id = $1 AND kind = ak.kind AND value = $2 OFFSET 0) a \
                 WHERE (SELECT l.deleted_at IS NULL FROM contacts l WHERE l.id = a.contact_id)\
             ) found ORDER BY found.rank LIMIT 1)",
            $lock
        )
    };
}

/// The lookup statement for values held in the contact's own column for `own`.
fn lookup_statement(own: IdentityKind, lock: bool) -> &'static str {
    match (own, lock) {
        (IdentityKind::External, false) => lookup_sql!("external_id", ""),
        (IdentityKind::External, true) => lookup_sql!("external_id", " FOR UPDATE"),
        (IdentityKind::Email, false) => lookup_sql!("email", ""),
        (IdentityKind::Email, true) => lookup_sql!("email", " FOR UPDATE"),
        (IdentityKind::Anonymous, false) => lookup_sql!("anonymous_id", ""),
        (IdentityKind::Anonymous, true) => lookup_sql!("anonymous_id", " FOR UPDATE"),
        (IdentityKind::Key, false) => lookup_sql!("key", ""),
        (IdentityKind::Key, true) => lookup_sql!("key", " FOR UPDATE"),
    }
}

/// The live contact `value` designates through the contact's own column for `own`, else
/// through an alias of one of `alias_kinds`. With `lock`, the contact row is locked until
/// the transaction ends (and re-read if a concurrent transaction deleted it meanwhile).
pub(super) async fn live_contact(
    conn: &mut PgConnection,
    tenant: &TenantId,
    own: IdentityKind,
    alias_kinds: &[IdentityKind],
    value: &str,
    lock: bool,
) -> StoreResult<Option<ContactRecord>> {
    let sql = lookup_statement(own, lock);
    let kinds: Vec<&'static str> = alias_kinds.iter().map(|k| k.as_str()).collect();
    for _ in 0..MAX_LOOKUP_RETRIES {
        let row = sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(value)
            .bind(&kinds)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let contact = contact_from_row(&row)?;
        if contact.deleted_at.is_none() {
            return Ok(Some(contact));
        }
        // Deleted (or merged away) by a transaction that committed while this one waited for
        // the row: look again with a snapshot that includes what it did.
    }
    Err(StoreError::Invalid(format!(
        "the contact for {} {value:?} kept changing under concurrent writes; retry",
        own.as_str()
    )))
}

/// The live contact a resolved key designates: by its key column, else through an alias of a
/// key it had before, else through a user id or anonymous id that became an alias.
pub(super) async fn live_by_key(
    conn: &mut PgConnection,
    tenant: &TenantId,
    key: &str,
    lock: bool,
) -> StoreResult<Option<ContactRecord>> {
    let kinds = [
        IdentityKind::Key,
        IdentityKind::External,
        IdentityKind::Anonymous,
    ];
    live_contact(conn, tenant, IdentityKind::Key, &kinds, key, lock).await
}

/// The identity side of [`PgTx`]: locks and lookups, taken up front by an ingest batch or by
/// each resolution.
impl PgTx<'_> {
    /// Look all `keys` up (and lock their contacts, in id order) in one statement, and keep
    /// the answers for the `live_contact` calls that follow.
    async fn look_up_all(&mut self, tenant: &TenantId, keys: &[IdentityKey]) -> StoreResult<()> {
        let values: Vec<(&TenantId, &IdentityKey)> = keys.iter().map(|k| (tenant, k)).collect();
        let found = self.look_up(&values).await?;
        let mut answers: Vec<(IdentityKey, Option<ContactRecord>)> =
            keys.iter().cloned().zip(found).collect();
        self.contacts.learn(tenant, &mut answers);
        self.looked_up = Some((tenant.clone(), answers));
        Ok(())
    }

    /// [`LOOKUP_ALL`] for `values`: each one's live contact, in order.
    async fn look_up(
        &mut self,
        values: &[(&TenantId, &IdentityKey)],
    ) -> StoreResult<Vec<Option<ContactRecord>>> {
        let tenants: Vec<&str> = values.iter().map(|(t, _)| t.as_str()).collect();
        let kinds: Vec<&str> = values.iter().map(|(_, k)| k.kind.as_str()).collect();
        let names: Vec<&str> = values.iter().map(|(_, k)| k.value.as_str()).collect();
        for _ in 0..MAX_LOOKUP_RETRIES {
            let rows = sqlx::query(LOOKUP_ALL)
                .bind(&tenants)
                .bind(&kinds)
                .bind(&names)
                .fetch_all(&mut *self.conn)
                .await?;
            let mut answers: Vec<Option<ContactRecord>> = vec![None; values.len()];
            let mut stale = false;
            for row in &rows {
                let n: i64 = row.try_get("n")?;
                let contact = contact_from_row(row)?;
                stale |= contact.deleted_at.is_some();
                let slot = usize::try_from(n - 1)
                    .ok()
                    .and_then(|i| answers.get_mut(i))
                    .ok_or_else(|| StoreError::corrupt("contact lookup", format!("row {n}")))?;
                *slot = Some(contact);
            }
            if !stale {
                return Ok(answers);
            }
            // A contact was deleted (or merged away) by a transaction that committed while
            // this one waited for its row: look again with a snapshot that includes that.
        }
        Err(StoreError::Invalid(
            "the contacts of an identity kept changing under concurrent writes; retry".into(),
        ))
    }

    /// Everything an ingest batch locks up front: the advisory locks on `targets` (sorted into
    /// the global order), then the contacts their identity values designate right now, locked
    /// in id order and looked up in the same statement ([`LOOKUP_ALL`]), so that each item's
    /// resolution reads nothing (see [`super::batch_contacts`]).
    ///
    /// Locking the rows up front matters when two transactions reach the same contacts through
    /// different values (one by user id, the other by email: different advisory locks): taken
    /// as each item's resolution meets them, in whatever order the items come, those row locks
    /// could form a cycle; taken together in id order, they cannot. The rows locked are the
    /// ones the items' resolutions will find: the only contacts they read or write, besides
    /// the ones they create.
    ///
    /// Answers the (tenant, key) of the contacts locked: no other writer changes them, or
    /// what is stored under their keys, until this transaction ends.
    pub(super) async fn lock(&mut self, targets: &[LockTarget]) -> StoreResult<LockedPeople> {
        self.lock_advisory(targets).await?;
        let values: Vec<(&TenantId, &IdentityKey)> = targets
            .iter()
            .filter_map(|target| match &target.name {
                LockName::Identity(key) => Some((&target.tenant, key)),
                LockName::Idempotency(_) => None,
            })
            .collect();
        let Some(&(first, _)) = values.first() else {
            return Ok(LockedPeople::new());
        };
        let found = self.look_up(&values).await?;
        let mut locked: LockedPeople = found
            .iter()
            .flatten()
            .map(|c| (c.tenant_id.clone(), c.key.clone()))
            .collect();
        locked.sort();
        locked.dedup();
        // Targets are sorted by tenant: learn each tenant's answers together.
        let mut answers: Vec<(IdentityKey, Option<ContactRecord>)> = Vec::new();
        let mut tenant = first;
        for ((value_tenant, key), contact) in values.iter().copied().zip(found) {
            if value_tenant != tenant {
                self.contacts.learn(tenant, &mut answers);
                answers.clear();
                tenant = value_tenant;
            }
            answers.push((key.clone(), contact));
        }
        self.contacts.learn(tenant, &mut answers);
        Ok(locked)
    }

    /// Lock the live contacts that `values` designate right now, in id order, in one
    /// statement (see [`LOCK_DESIGNATED`]); their (tenant, key).
    pub(super) async fn lock_designated(
        &mut self,
        values: &[(&TenantId, &IdentityKey)],
    ) -> StoreResult<LockedPeople> {
        if values.is_empty() {
            return Ok(LockedPeople::new());
        }
        let (tenants, keys): (Vec<&str>, Vec<(&str, &str)>) = values
            .iter()
            .map(|(tenant, key)| (tenant.as_str(), (key.kind.as_str(), key.value.as_str())))
            .unzip();
        let (kinds, values): (Vec<&str>, Vec<&str>) = keys.into_iter().unzip();
        let rows = sqlx::query(LOCK_DESIGNATED)
            .bind(&tenants)
            .bind(&kinds)
            .bind(&values)
            .fetch_all(self.writing())
            .await?;
        rows.iter()
            .map(|row| Ok((TenantId(row.try_get("tenant_id")?), row.try_get("key")?)))
            .collect()
    }

    /// Take the advisory locks on `targets` not held yet, in the order given (which must be
    /// the global order: sort them), in one statement: the function scan yields the lock ids
    /// in array order and each lock is taken as its row is produced.
    async fn lock_advisory(&mut self, targets: &[LockTarget]) -> StoreResult<()> {
        let ids: Vec<i64> = targets
            .iter()
            .map(LockTarget::lock_id)
            .filter(|id| !self.held.contains(id))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT pg_advisory_xact_lock(l.id) FROM unnest($1::int8[]) AS l(id)")
            .bind(&ids)
            .execute(&mut *self.conn)
            .await?;
        self.held.extend(ids);
        Ok(())
    }
}

impl IdentityTx for PgTx<'_> {
    async fn lock_identity(&mut self, tenant: &TenantId, keys: &[IdentityKey]) -> StoreResult<()> {
        let targets: Vec<LockTarget> = keys
            .iter()
            .map(|key| LockTarget {
                tenant: tenant.clone(),
                name: LockName::Identity(key.clone()),
            })
            .collect();
        self.lock_advisory(&targets).await?;
        if let Some(answers) = self.contacts.answers(tenant, keys) {
            self.looked_up = Some((tenant.clone(), answers));
            return Ok(());
        }
        self.look_up_all(tenant, keys).await
    }

    async fn live_contact(
        &mut self,
        tenant: &TenantId,
        key: &IdentityKey,
    ) -> StoreResult<Option<ContactRecord>> {
        if let Some((for_tenant, answers)) = &self.looked_up
            && for_tenant == tenant
            && let Some((_, answer)) = answers.iter().find(|(k, _)| k == key)
        {
            return Ok(answer.clone());
        }
        live_contact(self.conn, tenant, key.kind, &[key.kind], &key.value, true).await
    }

    async fn insert_contact(&mut self, contact: &ContactRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO contacts (id, tenant_id, key, external_id, email, anonymous_id, \
             properties, first_seen_at, last_seen_at, updated_at, deleted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $9, $10)",
        )
        .bind(contact.id.as_str())
        .bind(contact.tenant_id.as_str())
        .bind(&contact.key)
        .bind(contact.external_id.as_deref())
        .bind(contact.email.as_deref())
        .bind(contact.anonymous_id.as_deref())
        .bind(to_json("contact properties", &contact.properties)?)
        .bind(contact.first_seen_at.0)
        .bind(contact.last_seen_at.0)
        .bind(contact.deleted_at.map(|t| t.0))
        .execute(self.writing())
        .await?;
        self.contacts.written_at_once(contact);
        self.memberships.created(&contact.tenant_id, &contact.key);
        self.deferred_joins
            .created(&contact.tenant_id, &contact.key);
        Ok(())
    }

    /// Properties only when they changed: a large property (TOASTed JSON) rewritten on every
    /// event cost ~20 ms per event for a 1 MB one.
    async fn update_contact(
        &mut self,
        contact: &ContactRecord,
        properties_changed: bool,
    ) -> StoreResult<()> {
        // In an ingest batch, kept and written with the batch's others before its commit.
        if self.contacts.defer_update(contact, properties_changed) {
            return Ok(());
        }
        let properties_changed = self.contacts.written_at_once(contact) || properties_changed;
        // The record carries no update time: resolve bumps `last_seen_at` to now on every
        // update, which is the update time.
        let properties = if properties_changed {
            Some(to_json("contact properties", &contact.properties)?)
        } else {
            None
        };
        sqlx::query(
            "UPDATE contacts SET key = $1, external_id = $2, email = $3, anonymous_id = $4, \
             properties = COALESCE($5::jsonb, properties), first_seen_at = $6, \
             last_seen_at = $7, updated_at = $7 WHERE tenant_id = $8 AND id = $9",
        )
        .bind(&contact.key)
        .bind(contact.external_id.as_deref())
        .bind(contact.email.as_deref())
        .bind(contact.anonymous_id.as_deref())
        .bind(properties)
        .bind(contact.first_seen_at.0)
        .bind(contact.last_seen_at.0)
        .bind(contact.tenant_id.as_str())
        .bind(contact.id.as_str())
        .execute(self.writing())
        .await?;
        Ok(())
    }

    async fn soft_delete_contact(
        &mut self,
        tenant: &TenantId,
        id: &ContactId,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.contacts.write_and_forget(self.conn).await?;
        sqlx::query(
            "UPDATE contacts SET deleted_at = $1, updated_at = $1 \
             WHERE tenant_id = $2 AND id = $3 AND deleted_at IS NULL",
        )
        .bind(at.0)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .execute(self.writing())
        .await?;
        Ok(())
    }

    async fn upsert_alias(&mut self, alias: &Alias) -> StoreResult<()> {
        self.contacts.write_and_forget(self.conn).await?;
        sqlx::query(
            "INSERT INTO contact_aliases \
             (tenant_id, kind, value, contact_id, from_contact_id, reason, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant_id, kind, value) DO UPDATE SET \
             contact_id = excluded.contact_id, from_contact_id = excluded.from_contact_id, \
             reason = excluded.reason, created_at = excluded.created_at",
        )
        .bind(alias.tenant_id.as_str())
        .bind(alias.kind.as_str())
        .bind(&alias.value)
        .bind(alias.contact_id.as_str())
        .bind(alias.from_contact_id.as_ref().map(ContactId::as_str))
        .bind(alias.reason.as_str())
        .bind(alias.created_at.0)
        .execute(self.writing())
        .await?;
        Ok(())
    }

    async fn move_aliases(
        &mut self,
        tenant: &TenantId,
        from: &ContactId,
        to: &ContactId,
    ) -> StoreResult<()> {
        self.contacts.write_and_forget(self.conn).await?;
        sqlx::query(
            "UPDATE contact_aliases SET contact_id = $1 WHERE tenant_id = $2 AND contact_id = $3",
        )
        .bind(to.as_str())
        .bind(tenant.as_str())
        .bind(from.as_str())
        .execute(self.writing())
        .await?;
        Ok(())
    }

    async fn repoint_history(
        &mut self,
        tenant: &TenantId,
        from: &str,
        to: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        // Rows kept in memory are written first, so the statements below move them too; what
        // the batch read up front by key is forgotten.
        self.write_deferred_joins().await?;
        self.write_runs().await?;
        self.counts.forget();
        self.enrollment.forget();
        self.memberships.forget(tenant, from);
        self.memberships.forget(tenant, to);
        for event in self
            .pending_events
            .iter_mut()
            .chain(&mut self.pending_transitions)
        {
            if event.tenant_id == *tenant && event.contact_key == from {
                event.contact_key = to.to_owned();
            }
        }
        // Live runs under `from` whose journey already has a live run under `to`: the one live
        // run per person and journey is the one under `to`, these exit and lose their timers.
        // The status test sits on the updated row itself, so a run that a concurrent commit
        // ended meanwhile is re-checked after the wait, not exited twice.
        sqlx::query(concat!(
            "WITH exited AS (\
                 UPDATE runs f SET status = 'exited', wake_at = NULL, updated_at = $4 \
                 WHERE f.tenant_id = $1 AND f.contact_key = $2 AND f.status IN ",
            live_statuses!(),
            " AND EXISTS (SELECT 1 FROM runs t WHERE t.tenant_id = $1 AND t.contact_key = $3 \
                   AND t.journey_id = f.journey_id AND t.status IN ",
            live_statuses!(),
            ") RETURNING f.id) \
             DELETE FROM timers WHERE run_id IN (SELECT id FROM exited)"
        ))
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .bind(at.0)
        .execute(self.writing())
        .await?;
        // Likewise an active membership under `from` of a bucket `to` is already a member of
        // closes, silently (reason `merged`): one active membership per person and bucket.
        sqlx::query(
            "UPDATE bucket_memberships f SET status = 'left', left_at = $4, \
             leave_reason = 'merged', updated_at = $4 \
             WHERE f.tenant_id = $1 AND f.contact_key = $2 AND f.status = 'active' \
             AND EXISTS (SELECT 1 FROM bucket_memberships t WHERE t.tenant_id = $1 \
                 AND t.contact_key = $3 AND t.bucket_id = f.bucket_id AND t.status = 'active')",
        )
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .bind(at.0)
        .execute(self.writing())
        .await?;
        // Then everything under `from` moves, in one statement.
        sqlx::query(
            "WITH moved_runs AS (\
                 UPDATE runs SET contact_key = $3 WHERE tenant_id = $1 AND contact_key = $2), \
             moved_events AS (\
                 UPDATE events SET contact_key = $3 WHERE tenant_id = $1 AND contact_key = $2), \
             moved_memberships AS (\
                 UPDATE bucket_memberships SET contact_key = $3 \
                 WHERE tenant_id = $1 AND contact_key = $2) \
             UPDATE emails SET contact_key = $3 WHERE tenant_id = $1 AND contact_key = $2",
        )
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .execute(self.writing())
        .await?;
        super::preferences::repoint(self.writing(), tenant, from, to).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(tenant: &str, kind: IdentityKind, value: &str) -> LockTarget {
        LockTarget {
            tenant: TenantId(tenant.into()),
            name: LockName::Identity(IdentityKey {
                kind,
                value: value.into(),
            }),
        }
    }

    #[test]
    fn lock_ids_are_stable_and_tell_targets_apart() {
        let a = identity("t1", IdentityKind::External, "u1");
        assert_eq!(a.lock_id(), a.clone().lock_id());
        assert_ne!(
            a.lock_id(),
            identity("t2", IdentityKind::External, "u1").lock_id()
        );
        assert_ne!(
            a.lock_id(),
            identity("t1", IdentityKind::Anonymous, "u1").lock_id()
        );
        let idem = LockTarget {
            tenant: TenantId("t1".into()),
            name: LockName::Idempotency("u1".into()),
        };
        assert_ne!(a.lock_id(), idem.lock_id());
    }

    #[test]
    fn the_global_lock_order_is_tenant_then_identity_values_then_idempotency_keys() {
        let mut targets = [
            LockTarget {
                tenant: TenantId("t1".into()),
                name: LockName::Idempotency("k".into()),
            },
            identity("t2", IdentityKind::External, "a"),
            identity("t1", IdentityKind::Email, "a@x"),
            identity("t1", IdentityKind::External, "z"),
        ];
        targets.sort();
        assert_eq!(targets[0], identity("t1", IdentityKind::External, "z"));
        assert_eq!(targets[1], identity("t1", IdentityKind::Email, "a@x"));
        assert!(matches!(targets[2].name, LockName::Idempotency(_)));
        assert_eq!(targets[3].tenant.as_str(), "t2");
    }
}
