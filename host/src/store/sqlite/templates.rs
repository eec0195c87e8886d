//! Implements [`crate::store::EmailTemplates`].
//!
//! A tenant's API-managed email templates (`/v1/templates`).

use super::SqliteStore;
use super::rows::collect;
use crate::ids::TenantId;
use crate::store::EmailTemplates;
use crate::store::rows::template_columns;
use crate::store::rows::template_from_row;
use crate::store::{StoreResult, TenantTemplate};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

#[async_trait]
impl EmailTemplates for SqliteStore {
    async fn email_templates(&self, tenant: &TenantId) -> StoreResult<Vec<TenantTemplate>> {
        let tenant = tenant.clone();
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(concat!(
                "SELECT ",
                template_columns!(),
                " FROM email_templates WHERE tenant_id = ?1 ORDER BY key"
            ))?;
            collect(statement.query(params![tenant.as_str()])?, |row| {
                template_from_row(row)
            })
        })
        .await
    }

    async fn email_template(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> StoreResult<Option<TenantTemplate>> {
        let (tenant, key) = (tenant.clone(), key.to_owned());
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(concat!(
                "SELECT ",
                template_columns!(),
                " FROM email_templates WHERE tenant_id = ?1 AND key = ?2"
            ))?;
            let row = statement
                .query_row(params![tenant.as_str(), key], |row| {
                    Ok(template_from_row(row))
                })
                .optional()?;
            row.transpose()
        })
        .await
    }

    async fn put_email_template(
        &self,
        tenant: &TenantId,
        template: &TenantTemplate,
    ) -> StoreResult<bool> {
        let (tenant, template) = (tenant.clone(), template.clone());
        self
            .write(move |tx| {
                let existed: bool = tx
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM email_templates WHERE tenant_id = ?1 AND key = ?2)",
                    )?
                    .query_row(params![tenant.as_str(), template.key], |row| row.get(0))?;
                tx.prepare_cached(
                    "INSERT INTO email_templates (tenant_id, key, subject, text_body, html_body, \
                     created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                     ON CONFLICT (tenant_id, key) DO UPDATE SET subject = excluded.subject, \
                     text_body = excluded.text_body, html_body = excluded.html_body, \
                     updated_at = excluded.updated_at",
                )?
                .execute(params![
                    tenant.as_str(),
                    template.key,
                    template.subject,
                    template.text,
                    template.html,
                    template.created_at.0,
                    template.updated_at.0,
                ])?;
                Ok(!existed)
            })
            .await
    }

    async fn delete_email_template(&self, tenant: &TenantId, key: &str) -> StoreResult<bool> {
        let (tenant, key) = (tenant.clone(), key.to_owned());
        self.write(move |tx| {
            let deleted = tx
                .prepare_cached("DELETE FROM email_templates WHERE tenant_id = ?1 AND key = ?2")?
                .execute(params![tenant.as_str(), key])?;
            Ok(deleted > 0)
        })
        .await
    }
}
