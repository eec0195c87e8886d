//! Implements [`crate::store::BucketReads`].
//!
//! Bucket membership reads: counts, member pages, one person's membership and a contact's
//! memberships. Every query joins the membership to the live contact its `contact_key`
//! designates, so a deleted (or merged-away) contact's rows never show.

use super::identity::live_by_key;
use super::rows::collect;
use crate::store::rows::bucket_count_columns;
use crate::store::rows::contact_membership_columns;
use crate::store::rows::{
    bucket_counts_from_row, bucket_member_from_row, contact_membership_from_row, member_page,
};

use super::{SqliteStore, tenant_number};
use crate::ids::TenantId;
use crate::store::BucketReads;
use crate::store::{
    ActiveMembership, BucketCounts, BucketMember, MemberPage, MemberPageRequest, StoreResult,
};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use std::collections::HashMap;

/// `bucket_memberships m` joined to its live contact `c`, in the tenant whose id is `?1`
/// (every query here names it so).
macro_rules! live_memberships {
    () => {
        "bucket_memberships m JOIN contacts c ON c.tenant_id = ?1 \
         AND c.key = m.contact_key AND c.deleted_at IS NULL"
    };
}

#[async_trait]
impl BucketReads for SqliteStore {
    async fn bucket_counts(&self, tenant: &TenantId) -> StoreResult<HashMap<String, BucketCounts>> {
        let tenant = tenant.clone();
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(concat!(
                "SELECT m.bucket_id, ",
                bucket_count_columns!(),
                " FROM ",
                live_memberships!(),
                " WHERE m.tenant = ",
                tenant_number!("?1"),
                " GROUP BY m.bucket_id"
            ))?;
            let mut rows = statement.query([tenant.as_str()])?;
            let mut counts = HashMap::new();
            while let Some(row) = rows.next()? {
                counts.insert(row.get("bucket_id")?, bucket_counts_from_row(row)?);
            }
            Ok(counts)
        })
        .await
    }

    async fn bucket_counts_of(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
    ) -> StoreResult<BucketCounts> {
        let (tenant, bucket_id) = (tenant.clone(), bucket_id.to_owned());
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(concat!(
                "SELECT ",
                bucket_count_columns!(),
                " FROM ",
                live_memberships!(),
                " WHERE m.tenant = ",
                tenant_number!("?1"),
                " AND m.bucket_id = ?2"
            ))?;
            let mut rows = statement.query(params![tenant.as_str(), bucket_id])?;
            rows.next()?
                .map(bucket_counts_from_row)
                .transpose()
                .map(Option::unwrap_or_default)
        })
        .await
    }

    async fn bucket_members(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        page: &MemberPageRequest,
    ) -> StoreResult<MemberPage> {
        let (tenant, bucket_id) = (tenant.clone(), bucket_id.to_owned());
        let size = page.page_size();
        // Every id sorts after the empty string: no cursor starts at the beginning.
        let after = page.cursor.clone().unwrap_or_default();
        self.read(move |tx| {
            // One more than the page, to know whether another follows.
            let mut statement = tx.prepare_cached(concat!(
                "SELECT m.id, m.contact_key, c.email, m.entered_at, m.entry_count FROM ",
                live_memberships!(),
                " WHERE m.tenant = ",
                tenant_number!("?1"),
                " AND m.bucket_id = ?2 AND m.status = 'active' \
                     AND m.id > ?3 ORDER BY m.id LIMIT ?4"
            ))?;
            let rows = statement.query(params![
                tenant.as_str(),
                bucket_id,
                after,
                i64::from(size) + 1
            ])?;
            let members = collect(rows, |row| bucket_member_from_row(row))?;
            let total: i64 = tx
                .prepare_cached(concat!(
                    "SELECT COUNT(*) FROM ",
                    live_memberships!(),
                    " WHERE m.tenant = ",
                    tenant_number!("?1"),
                    " AND m.bucket_id = ?2 AND m.status = 'active'"
                ))?
                .query_row(params![tenant.as_str(), bucket_id], |row| row.get(0))?;
            member_page(members, size, total)
        })
        .await
    }

    async fn recent_members(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<BucketMember>> {
        let (tenant, bucket_id) = (tenant.clone(), bucket_id.to_owned());
        let limit = MemberPageRequest::size_of(limit);
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(concat!(
                "SELECT m.id, m.contact_key, c.email, m.entered_at, m.entry_count FROM ",
                live_memberships!(),
                " WHERE m.tenant = ",
                tenant_number!("?1"),
                " AND m.bucket_id = ?2 AND m.status = 'active' \
                     ORDER BY m.id DESC LIMIT ?3"
            ))?;
            let rows = statement.query(params![tenant.as_str(), bucket_id, i64::from(limit)])?;
            collect(rows, |row| bucket_member_from_row(row))
        })
        .await
    }

    async fn bucket_membership(
        &self,
        tenant: &TenantId,
        bucket_id: &str,
        key: &str,
    ) -> StoreResult<Option<ActiveMembership>> {
        let (tenant, bucket_id, key) = (tenant.clone(), bucket_id.to_owned(), key.to_owned());
        self.read(move |tx| {
            let Some(contact) = live_by_key(tx, &tenant, &key)? else {
                return Ok(None);
            };
            tx.prepare_cached(concat!(
                "SELECT ",
                contact_membership_columns!(),
                " FROM bucket_memberships m WHERE m.tenant = ",
                tenant_number!("?1"),
                " AND m.bucket_id = ?2 \
                     AND m.contact_key = ?3 AND m.status = 'active'"
            ))?
            .query_row(params![tenant.as_str(), bucket_id, contact.key], |row| {
                Ok(contact_membership_from_row(row))
            })
            .optional()?
            .transpose()
        })
        .await
    }

    async fn contact_memberships(
        &self,
        tenant: &TenantId,
        contact_key: &str,
    ) -> StoreResult<Vec<ActiveMembership>> {
        let (tenant, contact_key) = (tenant.clone(), contact_key.to_owned());
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(concat!(
                "SELECT ",
                contact_membership_columns!(),
                " FROM ",
                live_memberships!(),
                " WHERE m.tenant = ",
                tenant_number!("?1"),
                " AND m.contact_key = ?2 AND m.status = 'active' \
                     ORDER BY m.bucket_id"
            ))?;
            collect(
                statement.query(params![tenant.as_str(), contact_key])?,
                |row| contact_membership_from_row(row),
            )
        })
        .await
    }
}
