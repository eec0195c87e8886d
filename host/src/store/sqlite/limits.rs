//! Implements [`crate::store::TenantLimitStore`].
//!
//! Each tenant's own limits (`tenant_limits`), set through the operator API.

use super::SqliteStore;
use super::rows::collect;
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::rows::{
    change_tenant_limits_sql, tenant_limits_columns, tenant_limits_from_row, tenant_limits_params,
};
use crate::store::{StoreResult, TenantLimitStore};
use crate::tenancy::limits::{LimitPatch, TenantLimitsRecord};
use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use std::sync::LazyLock;

static CHANGE: LazyLock<String> = LazyLock::new(|| change_tenant_limits_sql(|n| format!("?{n}")));

#[async_trait]
impl TenantLimitStore for SqliteStore {
    async fn tenant_limits(&self, tenant: &TenantId) -> StoreResult<Option<TenantLimitsRecord>> {
        let tenant = tenant.clone();
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(concat!(
                "SELECT ",
                tenant_limits_columns!(),
                " FROM tenant_limits WHERE tenant_id = ?1"
            ))?;
            let mut rows = statement.query([tenant.as_str()])?;
            rows.next()?.map(tenant_limits_from_row).transpose()
        })
        .await
    }

    async fn change_tenant_limits(
        &self,
        tenant: &TenantId,
        patch: &LimitPatch,
        at: Timestamp,
    ) -> StoreResult<Option<TenantLimitsRecord>> {
        let mut params = vec![SqlValue::Text(tenant.0.clone())];
        for (value, touched) in tenant_limits_params(patch) {
            params.push(value.map_or(SqlValue::Null, SqlValue::Integer));
            params.push(SqlValue::Integer(i64::from(touched)));
        }
        params.push(SqlValue::Integer(at.0));
        self.write_without_memberships(move |tx| {
            let mut statement = tx.prepare_cached(&CHANGE)?;
            let mut rows = statement.query(rusqlite::params_from_iter(params))?;
            rows.next()?.map(tenant_limits_from_row).transpose()
        })
        .await
    }

    async fn all_tenant_limits(&self) -> StoreResult<Vec<TenantLimitsRecord>> {
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(concat!(
                "SELECT ",
                tenant_limits_columns!(),
                " FROM tenant_limits"
            ))?;
            collect(statement.query([])?, |row| tenant_limits_from_row(row))
        })
        .await
    }
}
