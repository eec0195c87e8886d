//! Implements [`crate::store::TenantLimitStore`].
//!
//! Each tenant's own limits (`tenant_limits`), set through the operator API. A change is one
//! `INSERT … ON CONFLICT DO UPDATE` that sets only the limits the patch names, so two
//! operators changing different limits at once both keep theirs.

use super::PgStore;
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::rows::{
    change_tenant_limits_sql, tenant_limits_columns, tenant_limits_from_row, tenant_limits_params,
};
use crate::store::{StoreResult, TenantLimitStore};
use crate::tenancy::limits::{LimitPatch, TenantLimitsRecord};
use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use std::sync::LazyLock;

static CHANGE: LazyLock<String> = LazyLock::new(|| change_tenant_limits_sql(|n| format!("${n}")));

#[async_trait]
impl TenantLimitStore for PgStore {
    async fn tenant_limits(&self, tenant: &TenantId) -> StoreResult<Option<TenantLimitsRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            tenant_limits_columns!(),
            " FROM tenant_limits WHERE tenant_id = $1"
        ))
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(tenant_limits_from_row)
        .transpose()
    }

    async fn change_tenant_limits(
        &self,
        tenant: &TenantId,
        patch: &LimitPatch,
        at: Timestamp,
    ) -> StoreResult<Option<TenantLimitsRecord>> {
        let mut query = sqlx::query(AssertSqlSafe(CHANGE.as_str())).bind(tenant.as_str());
        for (value, touched) in tenant_limits_params(patch) {
            query = query.bind(value).bind(touched);
        }
        query
            .bind(at.0)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(tenant_limits_from_row)
            .transpose()
    }

    async fn all_tenant_limits(&self) -> StoreResult<Vec<TenantLimitsRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            tenant_limits_columns!(),
            " FROM tenant_limits"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(tenant_limits_from_row)
        .collect()
    }
}
