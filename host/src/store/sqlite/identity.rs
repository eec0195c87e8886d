//! Implements the identity primitives ([`crate::store::identity::IdentityTx`]).
//!
//! The SQLite side of identity resolution: [`SqliteTx`] gives
//! [`crate::store::identity::resolve`] its primitives inside an open write transaction, and
//! the contact lookups shared with the contact queries (by key or alias) live here too.

use super::contact_cache::ContactCache;
use super::rows::to_json;
use crate::store::rows::contact_from_row;

use super::tx::SqliteTx;
use super::{live_statuses, tenant_number};
use crate::clock::Timestamp;
use crate::contacts::{IdentityKey, IdentityKind};
use crate::ids::{ContactId, TenantId};
use crate::store::identity::IdentityTx;
use crate::store::{Alias, ContactRecord, StoreError, StoreResult};
use rusqlite::{Connection, params};

/// The columns [`contact_from_row`] reads, unqualified. The last seen time is the later of the
/// row's and `contact_activity`'s (see [`SqliteTx::update_contact`]).
macro_rules! contact_columns {
    () => {
        "id, tenant_id, key, external_id, email, anonymous_id, properties, first_seen_at, \
         MAX(last_seen_at, IFNULL((SELECT ca.last_seen_at FROM contact_activity ca \
         WHERE ca.contact_id = contacts.id), 0)) AS last_seen_at, deleted_at"
    };
}
pub(super) use contact_columns;

/// The same columns qualified by the alias `c`, for joins.
macro_rules! contact_columns_c {
    () => {
        "c.id, c.tenant_id, c.key, c.external_id, c.email, c.anonymous_id, c.properties, \
         c.first_seen_at, MAX(c.last_seen_at, IFNULL((SELECT ca.last_seen_at \
         FROM contact_activity ca WHERE ca.contact_id = c.id), 0)) AS last_seen_at, c.deleted_at"
    };
}
pub(super) use contact_columns_c;

/// The live contact whose own column for `kind` holds `value`: a lookup on a unique index.
fn by_column_sql(kind: IdentityKind) -> &'static str {
    macro_rules! by {
        ($column:literal) => {
            concat!(
                "SELECT ",
                contact_columns!(),
                " FROM contacts WHERE tenant_id = ?1 AND ",
                $column,
                " = ?2 AND deleted_at IS NULL"
            )
        };
    }
    match kind {
        IdentityKind::External => by!("external_id"),
        IdentityKind::Email => by!("email"),
        IdentityKind::Anonymous => by!("anonymous_id"),
        IdentityKind::Key => by!("key"),
    }
}

/// The live contact an alias of `kind` with `value` leads to.
const BY_ALIAS: &str = concat!(
    "SELECT ",
    contact_columns_c!(),
    " FROM contact_aliases a JOIN contacts c ON c.id = a.contact_id \
     WHERE a.tenant_id = ?1 AND a.kind = ?2 AND a.value = ?3 AND c.deleted_at IS NULL"
);

/// The first row of `rows` as a contact; one the cache knows (same id) is answered from it,
/// without decoding the row's properties again.
fn first_contact(
    mut rows: rusqlite::Rows<'_>,
    known: Option<&ContactCache>,
) -> StoreResult<Option<ContactRecord>> {
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let id = row
        .get_ref("id")?
        .as_str()
        .map_err(|e| StoreError::corrupt("contact id", e))?;
    if let Some(contact) = known.and_then(|cache| cache.get(id)) {
        return Ok(Some(contact.clone()));
    }
    contact_from_row(row).map(Some)
}

/// The live contact a value of `kind` identifies: by the contact's own column for the kind,
/// else through an alias of that kind.
fn live_contact(
    conn: &Connection,
    tenant: &TenantId,
    kind: IdentityKind,
    value: &str,
    known: Option<&ContactCache>,
) -> StoreResult<Option<ContactRecord>> {
    let mut statement = conn.prepare_cached(by_column_sql(kind))?;
    if let Some(contact) = first_contact(statement.query(params![tenant.as_str(), value])?, known)?
    {
        return Ok(Some(contact));
    }
    live_by_alias(conn, tenant, kind, value, known)
}

/// The live contact a resolved key designates: by its key column, else through an alias of a
/// key it had before, else through a user id or anonymous id that became an alias.
pub(super) fn live_by_key(
    conn: &Connection,
    tenant: &TenantId,
    key: &str,
) -> StoreResult<Option<ContactRecord>> {
    for kind in [
        IdentityKind::Key,
        IdentityKind::External,
        IdentityKind::Anonymous,
    ] {
        let found = if kind == IdentityKind::Key {
            live_contact(conn, tenant, kind, key, None)?
        } else {
            live_by_alias(conn, tenant, kind, key, None)?
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

fn live_by_alias(
    conn: &Connection,
    tenant: &TenantId,
    kind: IdentityKind,
    value: &str,
    known: Option<&ContactCache>,
) -> StoreResult<Option<ContactRecord>> {
    let mut statement = conn.prepare_cached(BY_ALIAS)?;
    first_contact(
        statement.query(params![tenant.as_str(), kind.as_str(), value])?,
        known,
    )
}

/// SQLite has one writer, so resolutions are already serialised and `lock_identity` has
/// nothing to do.
impl IdentityTx for SqliteTx<'_> {
    async fn lock_identity(
        &mut self,
        _tenant: &TenantId,
        _keys: &[IdentityKey],
    ) -> StoreResult<()> {
        Ok(())
    }

    async fn live_contact(
        &mut self,
        tenant: &TenantId,
        key: &IdentityKey,
    ) -> StoreResult<Option<ContactRecord>> {
        let conn = self.conn;
        let cache = self.contacts()?;
        if let Some(contact) = cache.find(tenant, key.kind, &key.value) {
            return Ok(Some(contact));
        }
        let found = live_contact(conn, tenant, key.kind, &key.value, Some(&*cache))?;
        if let Some(contact) = &found {
            cache.remember(contact);
        }
        Ok(found)
    }

    async fn insert_contact(&mut self, contact: &ContactRecord) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO contacts (id, tenant_id, key, external_id, email, anonymous_id, \
                 properties, first_seen_at, last_seen_at, updated_at, deleted_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
            )?
            .execute(params![
                contact.id.as_str(),
                contact.tenant_id.as_str(),
                contact.key,
                contact.external_id,
                contact.email,
                contact.anonymous_id,
                to_json("contact properties", &contact.properties)?,
                contact.first_seen_at.0,
                contact.last_seen_at.0,
                contact.deleted_at.map(|t| t.0),
            ])?;
        let cache = self.contacts()?;
        cache.remember(contact);
        cache
            .memberships()
            .created(&contact.tenant_id, &contact.key);
        Ok(())
    }

    /// Compares with the contact cache instead of trusting `properties_changed`: the cache
    /// also knows whether the identity columns moved.
    async fn update_contact(&mut self, contact: &ContactRecord, _: bool) -> StoreResult<()> {
        let before = self.contacts()?.get(contact.id.as_str());
        let same_identity = before.is_some_and(|before| {
            before.key == contact.key
                && before.external_id == contact.external_id
                && before.email == contact.email
                && before.anonymous_id == contact.anonymous_id
        });
        let only_seen = same_identity
            && before.is_some_and(|before| {
                before.properties == contact.properties
                    && before.first_seen_at == contact.first_seen_at
            });
        if only_seen {
            // Most events from a known person change nothing but when they were last seen:
            // bump the narrow `contact_activity` row instead of rewriting the contact's (a
            // random page of `contacts` per event, each a WAL frame at commit).
            self.conn
                .prepare_cached(
                    "INSERT INTO contact_activity (contact_id, last_seen_at) VALUES (?1, ?2) \
                     ON CONFLICT (contact_id) \
                     DO UPDATE SET last_seen_at = MAX(last_seen_at, excluded.last_seen_at)",
                )?
                .execute(params![contact.id.as_str(), contact.last_seen_at.0])?;
            self.contacts()?.seen(&contact.id, contact.last_seen_at);
            return Ok(());
        }
        // The record carries no update time: resolve bumps `last_seen_at` to now on every
        // update, which is the update time.
        let properties = to_json("contact properties", &contact.properties)?;
        if same_identity {
            self.conn
                .prepare_cached(
                    "UPDATE contacts SET properties = ?1, first_seen_at = ?2, \
                     last_seen_at = ?3, updated_at = ?3 WHERE id = ?4",
                )?
                .execute(params![
                    properties,
                    contact.first_seen_at.0,
                    contact.last_seen_at.0,
                    contact.id.as_str(),
                ])?;
        } else {
            self.conn
                .prepare_cached(
                    "UPDATE contacts SET key = ?1, external_id = ?2, email = ?3, \
                     anonymous_id = ?4, properties = ?5, first_seen_at = ?6, \
                     last_seen_at = ?7, updated_at = ?7 WHERE tenant_id = ?8 AND id = ?9",
                )?
                .execute(params![
                    contact.key,
                    contact.external_id,
                    contact.email,
                    contact.anonymous_id,
                    properties,
                    contact.first_seen_at.0,
                    contact.last_seen_at.0,
                    contact.tenant_id.as_str(),
                    contact.id.as_str(),
                ])?;
        }
        self.contacts()?.remember(contact);
        Ok(())
    }

    async fn soft_delete_contact(
        &mut self,
        tenant: &TenantId,
        id: &ContactId,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.contacts()?.forget(id);
        self.conn
            .prepare_cached(
                "UPDATE contacts SET deleted_at = ?1, updated_at = ?1 \
                 WHERE tenant_id = ?2 AND id = ?3 AND deleted_at IS NULL",
            )?
            .execute(params![at.0, tenant.as_str(), id.as_str()])?;
        Ok(())
    }

    async fn upsert_alias(&mut self, alias: &Alias) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO contact_aliases \
                 (tenant_id, kind, value, contact_id, from_contact_id, reason, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (tenant_id, kind, value) DO UPDATE SET \
                 contact_id = excluded.contact_id, from_contact_id = excluded.from_contact_id, \
                 reason = excluded.reason, created_at = excluded.created_at",
            )?
            .execute(params![
                alias.tenant_id.as_str(),
                alias.kind.as_str(),
                alias.value,
                alias.contact_id.as_str(),
                alias.from_contact_id.as_ref().map(ContactId::as_str),
                alias.reason.as_str(),
                alias.created_at.0,
            ])?;
        Ok(())
    }

    async fn move_aliases(
        &mut self,
        tenant: &TenantId,
        from: &ContactId,
        to: &ContactId,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE contact_aliases SET contact_id = ?1 \
                 WHERE tenant_id = ?2 AND contact_id = ?3",
            )?
            .execute(params![to.as_str(), tenant.as_str(), from.as_str()])?;
        Ok(())
    }

    async fn repoint_history(
        &mut self,
        tenant: &TenantId,
        from: &str,
        to: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        // Memberships move and close below, outside the membership primitives.
        let memberships = self.contacts()?.memberships();
        memberships.forget(tenant, from);
        memberships.forget(tenant, to);
        // Live runs under `from` whose journey already has a live run under `to`: the one
        // live run per person and journey is the one under `to`, these exit.
        macro_rules! colliding {
            () => {
                concat!(
                    "SELECT f.id FROM runs f WHERE f.tenant_id = ?1 AND f.contact_key = ?2 \
                     AND f.status IN ",
                    live_statuses!(),
                    " AND EXISTS (SELECT 1 FROM runs t WHERE t.tenant_id = ?1 \
                     AND t.contact_key = ?3 AND t.journey_id = f.journey_id AND t.status IN ",
                    live_statuses!(),
                    ")"
                )
            };
        }
        let keys = params![tenant.as_str(), from, to];
        self.conn
            .prepare_cached(concat!(
                "DELETE FROM timers WHERE run_id IN (",
                colliding!(),
                ")"
            ))?
            .execute(keys)?;
        self.conn
            .prepare_cached(concat!(
                "UPDATE runs SET status = 'exited', wake_at = NULL, updated_at = ?4 \
                 WHERE id IN (",
                colliding!(),
                ")"
            ))?
            .execute(params![tenant.as_str(), from, to, at.0])?;
        // Likewise an active membership under `from` of a bucket `to` is already a member of
        // closes, silently (reason `merged`): one active membership per person and bucket.
        self.conn
            .prepare_cached(concat!(
                "UPDATE bucket_memberships SET status = 'left', left_at = ?4, \
                 leave_reason = 'merged', updated_at = ?4 WHERE tenant = ",
                tenant_number!("?1"),
                " AND contact_key = ?2 AND status = 'active' \
                 AND bucket_id IN (SELECT bucket_id FROM bucket_memberships WHERE tenant = ",
                tenant_number!("?1"),
                " AND contact_key = ?3 AND status = 'active')"
            ))?
            .execute(params![tenant.as_str(), from, to, at.0])?;
        for sql in [
            concat!(
                "UPDATE bucket_memberships SET contact_key = ?3 WHERE tenant = ",
                tenant_number!("?1"),
                " AND contact_key = ?2"
            ),
            "UPDATE runs SET contact_key = ?3 WHERE tenant_id = ?1 AND contact_key = ?2",
            concat!(
                "UPDATE events SET contact_key = ?3 WHERE tenant = ",
                tenant_number!("?1"),
                " AND contact_key = ?2"
            ),
            "UPDATE emails SET contact_key = ?3 WHERE tenant_id = ?1 AND contact_key = ?2",
        ] {
            self.conn.prepare_cached(sql)?.execute(keys)?;
        }
        super::preferences::repoint(self.conn, tenant, from, to)?;
        Ok(())
    }
}
