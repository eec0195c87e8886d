//! Implements [`crate::store::EmailSenders`].
//!
//! A tenant's own sender settings (`/v1/email/settings`).

use super::PgStore;
use crate::ids::TenantId;
use crate::store::EmailSenders;
use crate::store::rows::{email_sender_columns, email_sender_from_row};
use crate::store::{EmailSenderRecord, StoreResult};
use async_trait::async_trait;

#[async_trait]
impl EmailSenders for PgStore {
    async fn email_sender(&self, tenant: &TenantId) -> StoreResult<Option<EmailSenderRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            email_sender_columns!(),
            " FROM email_senders WHERE tenant_id = $1"
        ))
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(email_sender_from_row)
        .transpose()
    }

    async fn put_email_sender(
        &self,
        tenant: &TenantId,
        sender: &EmailSenderRecord,
    ) -> StoreResult<bool> {
        // `xmax = 0` only on a freshly inserted row: it tells an insert from an update.
        let created: bool = sqlx::query_scalar(
            "INSERT INTO email_senders (tenant_id, from_name, from_address, reply_to, \
             transport, secret, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (tenant_id) DO UPDATE SET from_name = EXCLUDED.from_name, \
             from_address = EXCLUDED.from_address, reply_to = EXCLUDED.reply_to, \
             transport = EXCLUDED.transport, secret = EXCLUDED.secret, \
             updated_at = EXCLUDED.updated_at \
             RETURNING (xmax = 0)",
        )
        .bind(tenant.as_str())
        .bind(&sender.from_name)
        .bind(&sender.from_address)
        .bind(&sender.reply_to)
        .bind(&sender.transport)
        .bind(&sender.secret)
        .bind(sender.created_at.0)
        .bind(sender.updated_at.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(created)
    }

    async fn delete_email_sender(&self, tenant: &TenantId) -> StoreResult<bool> {
        let deleted = sqlx::query("DELETE FROM email_senders WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }
}
