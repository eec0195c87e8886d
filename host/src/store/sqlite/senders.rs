//! Implements [`crate::store::EmailSenders`].
//!
//! A tenant's own sender settings (`/v1/email/settings`).

use super::SqliteStore;
use crate::ids::TenantId;
use crate::store::EmailSenders;
use crate::store::rows::{email_sender_columns, email_sender_from_row};
use crate::store::{EmailSenderRecord, StoreResult};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

#[async_trait]
impl EmailSenders for SqliteStore {
    async fn email_sender(&self, tenant: &TenantId) -> StoreResult<Option<EmailSenderRecord>> {
        let tenant = tenant.clone();
        self.read(move |tx| {
            let mut statement = tx.prepare_cached(concat!(
                "SELECT ",
                email_sender_columns!(),
                " FROM email_senders WHERE tenant_id = ?1"
            ))?;
            let row = statement
                .query_row(params![tenant.as_str()], |row| {
                    Ok(email_sender_from_row(row))
                })
                .optional()?;
            row.transpose()
        })
        .await
    }

    async fn put_email_sender(
        &self,
        tenant: &TenantId,
        sender: &EmailSenderRecord,
    ) -> StoreResult<bool> {
        let (tenant, sender) = (tenant.clone(), sender.clone());
        self.write(move |tx| {
            let existed: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM email_senders WHERE tenant_id = ?1)")?
                .query_row(params![tenant.as_str()], |row| row.get(0))?;
            tx.prepare_cached(
                "INSERT INTO email_senders (tenant_id, from_name, from_address, reply_to, \
                 transport, secret, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (tenant_id) DO UPDATE SET from_name = excluded.from_name, \
                 from_address = excluded.from_address, reply_to = excluded.reply_to, \
                 transport = excluded.transport, secret = excluded.secret, \
                 updated_at = excluded.updated_at",
            )?
            .execute(params![
                tenant.as_str(),
                sender.from_name,
                sender.from_address,
                sender.reply_to,
                sender.transport,
                sender.secret,
                sender.created_at.0,
                sender.updated_at.0,
            ])?;
            Ok(!existed)
        })
        .await
    }

    async fn delete_email_sender(&self, tenant: &TenantId) -> StoreResult<bool> {
        let tenant = tenant.clone();
        self.write(move |tx| {
            let deleted = tx
                .prepare_cached("DELETE FROM email_senders WHERE tenant_id = ?1")?
                .execute(params![tenant.as_str()])?;
            Ok(deleted > 0)
        })
        .await
    }
}
