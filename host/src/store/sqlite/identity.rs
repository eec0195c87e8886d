//! The SQLite side of identity resolution: [`SqliteIdentityTx`] gives
//! [`crate::store::identity::resolve`] its primitives inside an open write transaction, and
//! the contact lookups shared with the contact queries (by key or alias) live here too.

use super::live_statuses;
use super::rows::{parse_object, to_json};
use crate::clock::Timestamp;
use crate::contacts::{IdentityKey, IdentityKind};
use crate::ids::{ContactId, TenantId};
use crate::store::identity::IdentityTx;
use crate::store::{Alias, ContactRecord, StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqliteTransaction};

/// The columns [`contact_from_row`] reads, unqualified.
macro_rules! contact_columns {
    () => {
        "id, tenant_id, key, external_id, email, anonymous_id, properties, first_seen_at, \
         last_seen_at, deleted_at"
    };
}
pub(super) use contact_columns;

/// The same columns qualified by the alias `c`, for joins.
macro_rules! contact_columns_c {
    () => {
        "c.id, c.tenant_id, c.key, c.external_id, c.email, c.anonymous_id, c.properties, \
         c.first_seen_at, c.last_seen_at, c.deleted_at"
    };
}
pub(super) use contact_columns_c;

pub(super) fn contact_from_row(row: &SqliteRow) -> StoreResult<ContactRecord> {
    Ok(ContactRecord {
        id: ContactId(row.try_get("id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        key: row.try_get("key")?,
        external_id: row.try_get("external_id")?,
        email: row.try_get("email")?,
        anonymous_id: row.try_get("anonymous_id")?,
        properties: parse_object("contact properties", row.try_get("properties")?)?,
        first_seen_at: Timestamp(row.try_get("first_seen_at")?),
        last_seen_at: Timestamp(row.try_get("last_seen_at")?),
        deleted_at: row.try_get::<Option<i64>, _>("deleted_at")?.map(Timestamp),
    })
}

/// The live contact whose own column for `kind` holds `value`.
async fn live_by_column(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    kind: IdentityKind,
    value: &str,
) -> StoreResult<Option<ContactRecord>> {
    macro_rules! by {
        ($column:literal) => {
            concat!(
                "SELECT ",
                contact_columns!(),
                " FROM contacts WHERE tenant_id = ? AND ",
                $column,
                " = ? AND deleted_at IS NULL"
            )
        };
    }
    let sql = match kind {
        IdentityKind::External => by!("external_id"),
        IdentityKind::Email => by!("email"),
        IdentityKind::Anonymous => by!("anonymous_id"),
        IdentityKind::Key => by!("key"),
    };
    sqlx::query(sql)
        .bind(tenant.as_str())
        .bind(value)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(contact_from_row)
        .transpose()
}

/// The live contact an alias of one of `kinds` with `value` leads to; the first kind listed
/// wins when several match.
async fn live_by_alias(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    kinds: &[IdentityKind],
    value: &str,
) -> StoreResult<Option<ContactRecord>> {
    for kind in kinds {
        let row = sqlx::query(concat!(
            "SELECT ",
            contact_columns_c!(),
            " FROM contact_aliases a JOIN contacts c ON c.id = a.contact_id \
             WHERE a.tenant_id = ? AND a.kind = ? AND a.value = ? AND c.deleted_at IS NULL"
        ))
        .bind(tenant.as_str())
        .bind(kind.as_str())
        .bind(value)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            return contact_from_row(&row).map(Some);
        }
    }
    Ok(None)
}

/// The live contact a resolved key designates: by its key column, else through an alias of a
/// key it had before, else through a user id or anonymous id that became an alias.
pub(super) async fn live_by_key(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    key: &str,
) -> StoreResult<Option<ContactRecord>> {
    if let Some(contact) = live_by_column(conn, tenant, IdentityKind::Key, key).await? {
        return Ok(Some(contact));
    }
    let kinds = [
        IdentityKind::Key,
        IdentityKind::External,
        IdentityKind::Anonymous,
    ];
    live_by_alias(conn, tenant, &kinds, key).await
}

/// The lookups of several values at once, as [`IdentityTx::live_contact`] answers each (the
/// contact's own column for the value's kind, else an alias of that kind), in one statement:
/// `?1` the tenant, `?2` a JSON array of `[kind, value]` pairs; each answer comes back with
/// its pair's position `n`. Every branch is a lookup on the full key of a unique index.
const LOOKUP_ALL: &str = concat!(
    "SELECT k.n, ",
    contact_columns_c!(),
    " FROM (SELECT key AS n, value ->> 0 AS kind, value ->> 1 AS value FROM json_each(?2)) k \
     JOIN contacts c ON c.id = (SELECT f.id FROM (\
         SELECT id, 0 AS rank FROM contacts WHERE k.kind = 'external' AND tenant_id = ?1 \
             AND external_id = k.value AND deleted_at IS NULL \
         UNION ALL SELECT id, 0 FROM contacts WHERE k.kind = 'email' AND tenant_id = ?1 \
             AND email = k.value AND deleted_at IS NULL \
         UNION ALL SELECT id, 0 FROM contacts WHERE k.kind = 'anonymous' AND tenant_id = ?1 \
             AND anonymous_id = k.value AND deleted_at IS NULL \
         UNION ALL SELECT id, 0 FROM contacts WHERE k.kind = 'key' AND tenant_id = ?1 \
             AND key = k.value AND deleted_at IS NULL \
         UNION ALL SELECT a.contact_id, 1 FROM contact_aliases a \
             JOIN contacts l ON l.id = a.contact_id \
             WHERE a.tenant_id = ?1 AND a.kind = k.kind AND a.value = k.value \
             AND l.deleted_at IS NULL\
     ) f ORDER BY f.rank LIMIT 1)"
);

/// Lookups answered ahead: for a tenant, each value with the live contact it designates.
type LookedUp = (TenantId, Vec<(IdentityKey, Option<ContactRecord>)>);

/// [`IdentityTx`] over an open SQLite write transaction (begun with `BEGIN IMMEDIATE` under the
/// store's writer lock, so resolutions are already serialised).
pub(super) struct SqliteIdentityTx<'a> {
    tx: &'a mut SqliteTransaction<'static>,
    /// The answers to the lookups `lock_identity` was given, read in one statement (each
    /// statement is a round trip to the connection's thread, the main cost of ingest here);
    /// valid until this transaction writes anything (`resolve` looks every key up before it
    /// writes), so every write clears them.
    looked_up: Option<LookedUp>,
}

impl<'a> SqliteIdentityTx<'a> {
    pub(super) fn new(tx: &'a mut SqliteTransaction<'static>) -> Self {
        Self {
            tx,
            looked_up: None,
        }
    }

    /// The connection, for a write: forget the looked-up answers, which it may change.
    fn conn(&mut self) -> &mut SqliteConnection {
        self.looked_up = None;
        self.tx
    }
}

#[async_trait]
impl IdentityTx for SqliteIdentityTx<'_> {
    async fn lock_identity(&mut self, tenant: &TenantId, keys: &[IdentityKey]) -> StoreResult<()> {
        // The writer lock and BEGIN IMMEDIATE already serialise every write transaction; what
        // is left is to look all the keys up at once for the `live_contact` calls that follow.
        self.looked_up = None;
        if keys.is_empty() {
            return Ok(());
        }
        let pairs: Vec<(&str, &str)> = keys
            .iter()
            .map(|k| (k.kind.as_str(), k.value.as_str()))
            .collect();
        let rows = sqlx::query(LOOKUP_ALL)
            .bind(tenant.as_str())
            .bind(to_json("identity lookup", &pairs)?)
            .fetch_all(&mut **self.tx)
            .await?;
        let mut answers: Vec<(IdentityKey, Option<ContactRecord>)> =
            keys.iter().map(|k| (k.clone(), None)).collect();
        for row in &rows {
            let n: i64 = row.try_get("n")?;
            let slot = usize::try_from(n)
                .ok()
                .and_then(|i| answers.get_mut(i))
                .ok_or_else(|| StoreError::corrupt("contact lookup", format!("row {n}")))?;
            slot.1 = Some(contact_from_row(row)?);
        }
        self.looked_up = Some((tenant.clone(), answers));
        Ok(())
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
        let conn = &mut **self.tx;
        if let Some(contact) = live_by_column(conn, tenant, key.kind, &key.value).await? {
            return Ok(Some(contact));
        }
        live_by_alias(conn, tenant, &[key.kind], &key.value).await
    }

    async fn insert_contact(&mut self, contact: &ContactRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO contacts (id, tenant_id, key, external_id, email, anonymous_id, \
             properties, first_seen_at, last_seen_at, updated_at, deleted_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(contact.last_seen_at.0)
        .bind(contact.deleted_at.map(|t| t.0))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn update_contact(&mut self, contact: &ContactRecord) -> StoreResult<()> {
        // The record carries no update time: resolve bumps `last_seen_at` to now on every
        // update, which is the update time.
        sqlx::query(
            "UPDATE contacts SET key = ?, external_id = ?, email = ?, anonymous_id = ?, \
             properties = ?, first_seen_at = ?, last_seen_at = ?, updated_at = ? \
             WHERE tenant_id = ? AND id = ?",
        )
        .bind(&contact.key)
        .bind(contact.external_id.as_deref())
        .bind(contact.email.as_deref())
        .bind(contact.anonymous_id.as_deref())
        .bind(to_json("contact properties", &contact.properties)?)
        .bind(contact.first_seen_at.0)
        .bind(contact.last_seen_at.0)
        .bind(contact.last_seen_at.0)
        .bind(contact.tenant_id.as_str())
        .bind(contact.id.as_str())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn soft_delete_contact(
        &mut self,
        tenant: &TenantId,
        id: &ContactId,
        at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE contacts SET deleted_at = ?, updated_at = ? \
             WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL",
        )
        .bind(at.0)
        .bind(at.0)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn upsert_alias(&mut self, alias: &Alias) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO contact_aliases \
             (tenant_id, kind, value, contact_id, from_contact_id, reason, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) \
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
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn move_aliases(
        &mut self,
        tenant: &TenantId,
        from: &ContactId,
        to: &ContactId,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE contact_aliases SET contact_id = ? WHERE tenant_id = ? AND contact_id = ?",
        )
        .bind(to.as_str())
        .bind(tenant.as_str())
        .bind(from.as_str())
        .execute(self.conn())
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
        if from == to {
            return Ok(());
        }
        let conn = self.conn();
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
        sqlx::query(concat!(
            "DELETE FROM timers WHERE run_id IN (",
            colliding!(),
            ")"
        ))
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .execute(&mut *conn)
        .await?;
        sqlx::query(concat!(
            "UPDATE runs SET status = 'exited', wake_at = NULL, updated_at = ?4 \
             WHERE id IN (",
            colliding!(),
            ")"
        ))
        .bind(tenant.as_str())
        .bind(from)
        .bind(to)
        .bind(at.0)
        .execute(&mut *conn)
        .await?;
        for sql in [
            "UPDATE runs SET contact_key = ?3 WHERE tenant_id = ?1 AND contact_key = ?2",
            "UPDATE events SET contact_key = ?3 WHERE tenant_id = ?1 AND contact_key = ?2",
            "UPDATE emails SET contact_key = ?3 WHERE tenant_id = ?1 AND contact_key = ?2",
        ] {
            sqlx::query(sql)
                .bind(tenant.as_str())
                .bind(from)
                .bind(to)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}
