//! Implements [`crate::store::EmailTemplates`].
//!
//! A tenant's API-managed email templates (`/v1/templates`).

use super::PgStore;
use crate::ids::TenantId;
use crate::store::EmailTemplates;
use crate::store::rows::template_columns;
use crate::store::rows::template_from_row;
use crate::store::{StoreResult, TenantTemplate};
use async_trait::async_trait;

#[async_trait]
impl EmailTemplates for PgStore {
    async fn email_templates(&self, tenant: &TenantId) -> StoreResult<Vec<TenantTemplate>> {
        sqlx::query(concat!(
            "SELECT ",
            template_columns!(),
            " FROM email_templates WHERE tenant_id = $1 ORDER BY key"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(template_from_row)
        .collect()
    }

    async fn email_template(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> StoreResult<Option<TenantTemplate>> {
        sqlx::query(concat!(
            "SELECT ",
            template_columns!(),
            " FROM email_templates WHERE tenant_id = $1 AND key = $2"
        ))
        .bind(tenant.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(template_from_row)
        .transpose()
    }

    async fn put_email_template(
        &self,
        tenant: &TenantId,
        template: &TenantTemplate,
    ) -> StoreResult<bool> {
        // `xmax = 0` only on a freshly inserted row: it tells an insert from an update.
        let created: bool = sqlx::query_scalar(
            "INSERT INTO email_templates (tenant_id, key, subject, text_body, html_body, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant_id, key) DO UPDATE SET subject = EXCLUDED.subject, \
             text_body = EXCLUDED.text_body, html_body = EXCLUDED.html_body, \
             updated_at = EXCLUDED.updated_at \
             RETURNING (xmax = 0)",
        )
        .bind(tenant.as_str())
        .bind(&template.key)
        .bind(&template.subject)
        .bind(&template.text)
        .bind(&template.html)
        .bind(template.created_at.0)
        .bind(template.updated_at.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(created)
    }

    async fn delete_email_template(&self, tenant: &TenantId, key: &str) -> StoreResult<bool> {
        let deleted = sqlx::query("DELETE FROM email_templates WHERE tenant_id = $1 AND key = $2")
            .bind(tenant.as_str())
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }
}
