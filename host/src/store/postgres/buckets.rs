//! Implements [`crate::store::BucketReads`].
//!
//! Bucket membership reads: counts, member pages, one person's membership and a contact's
//! memberships. Every query joins the membership to the live contact its `contact_key`
//! designates, so a deleted (or merged-away) contact's rows never show. Reads take no locks;
//! a member page and its total are read in one REPEATABLE READ snapshot.

use super::PgStore;
use super::identity::live_by_key;
use crate::ids::TenantId;
use crate::store::BucketReads;
use crate::store::rows::bucket_count_columns;
use crate::store::rows::contact_membership_columns;
use crate::store::rows::{
    bucket_counts_from_row, bucket_member_from_row, contact_membership_from_row, member_page,
};
use crate::store::{
    ActiveMembership, BucketCounts, BucketMember, MemberPage, MemberPageRequest, StoreResult,
};
use async_trait::async_trait;
use sqlx::Row;
use std::collections::HashMap;

/// `bucket_memberships m` joined to its live contact `c`, for counts (a hash join over the
/// bucket's members; pages and lists look each row's contact up with `live_contact_of`).
macro_rules! live_memberships {
    () => {
        "bucket_memberships m JOIN contacts c ON c.tenant_id = m.tenant_id \
         AND c.key = m.contact_key AND c.deleted_at IS NULL"
    };
}

#[async_trait]
impl BucketReads for PgStore {
    async fn bucket_counts(&self, tenant: &TenantId) -> StoreResult<HashMap<String, BucketCounts>> {
        let rows = sqlx::query(concat!(
            "SELECT m.bucket_id, ",
            bucket_count_columns!(),
            " FROM ",
            live_memberships!(),
            " WHERE m.tenant_id = $1 GROUP BY m.bucket_id"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("bucket_id")?, bucket_counts_from_row(row)?)))
            .collect()
    }

    async fn bucket_counts_of(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<BucketCounts> {
        let row = sqlx::query(concat!(
            "SELECT ",
            bucket_count_columns!(),
            " FROM ",
            live_memberships!(),
            " WHERE m.tenant_id = $1 AND m.bucket_id = $2"
        ))
        .bind(tenant.as_str())
        .bind(bucket_id)
        .fetch_one(&self.pool)
        .await?;
        bucket_counts_from_row(&row)
    }

    async fn bucket_members(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        page: &MemberPageRequest,
    ) -> StoreResult<MemberPage> {
        let size = page.page_size();
        // Every id sorts after the empty string: no cursor starts at the beginning.
        let after = page.cursor.as_deref().unwrap_or_default();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        // One more than the page, to know whether another follows.
        let rows = sqlx::query(concat!(
            "SELECT m.id, m.contact_key, c.email, m.entered_at, m.entry_count \
             FROM bucket_memberships m ",
            live_contact_of!("m", "c.email"),
            " WHERE m.tenant_id = $1 AND m.bucket_id = $2 AND m.status = 'active' \
             AND m.id > $3 ORDER BY m.id LIMIT $4"
        ))
        .bind(tenant.as_str())
        .bind(bucket_id)
        .bind(after)
        .bind(i64::from(size) + 1)
        .fetch_all(&mut *tx)
        .await?;
        let total: i64 = sqlx::query_scalar(concat!(
            "SELECT COUNT(*) FROM ",
            live_memberships!(),
            " WHERE m.tenant_id = $1 AND m.bucket_id = $2 AND m.status = 'active'"
        ))
        .bind(tenant.as_str())
        .bind(bucket_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let members = rows
            .iter()
            .map(bucket_member_from_row)
            .collect::<StoreResult<_>>()?;
        member_page(members, size, total)
    }

    async fn recent_members(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<BucketMember>> {
        let limit = MemberPageRequest::size_of(limit);
        sqlx::query(concat!(
            "SELECT m.id, m.contact_key, c.email, m.entered_at, m.entry_count \
             FROM bucket_memberships m ",
            live_contact_of!("m", "c.email"),
            " WHERE m.tenant_id = $1 AND m.bucket_id = $2 AND m.status = 'active' \
             ORDER BY m.id DESC LIMIT $3"
        ))
        .bind(tenant.as_str())
        .bind(bucket_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(bucket_member_from_row)
        .collect()
    }

    async fn bucket_membership(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        key: &str,
    ) -> StoreResult<Option<ActiveMembership>> {
        let mut conn = self.pool.acquire().await?;
        let Some(contact) = live_by_key(&mut conn, tenant, key, false).await? else {
            return Ok(None);
        };
        sqlx::query(concat!(
            "SELECT ",
            contact_membership_columns!(),
            " FROM bucket_memberships m WHERE m.tenant_id = $1 AND m.bucket_id = $2 \
             AND m.contact_key = $3 AND m.status = 'active'"
        ))
        .bind(tenant.as_str())
        .bind(bucket_id)
        .bind(&contact.key)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(contact_membership_from_row)
        .transpose()
    }

    async fn contact_memberships(
        &self,
        tenant: &TenantId,
        contact_key: &str,
    ) -> StoreResult<Vec<ActiveMembership>> {
        sqlx::query(concat!(
            "SELECT ",
            contact_membership_columns!(),
            " FROM bucket_memberships m ",
            live_contact_of!("m", "c.key"),
            " WHERE m.tenant_id = $1 AND m.contact_key = $2 AND m.status = 'active' \
             ORDER BY m.bucket_id"
        ))
        .bind(tenant.as_str())
        .bind(contact_key)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(contact_membership_from_row)
        .collect()
    }
}
