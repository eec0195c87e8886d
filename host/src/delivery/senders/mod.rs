//! A tenant's own sender (`/v1/email/settings`): its From and Reply-To and the transport its
//! email goes out through — its SMTP server or an HTTP provider. The rules live here: what a
//! valid setting is ([`check`]: checked whole before anything is stored, the host resolved),
//! that a password or API key is stored only sealed ([`crate::secrets`]), and which [`Mailer`]
//! an email of a tenant is sent with ([`Senders`]). A tenant without settings sends with the
//! host's command-line transport and `--mail-from`, as before tenants could choose.

mod check;

pub use check::{FromInput, SenderError, SenderInput, TransportInput, check};

use super::DeliveryError;
use super::http_provider::{HttpTransport, ProviderKind};
use super::mailer::{MailTls, Mailer, SmtpSecurity, SmtpServer};
use crate::ids::TenantId;
use crate::secrets::SecretBox;
use crate::store::{EmailSenderRecord, EmailSenders};
use lettre::Address;
use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A transport's settings as stored: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TransportSettings {
    Smtp {
        host: String,
        port: u16,
        security: SmtpSecurity,
        username: Option<String>,
    },
    Http {
        provider: ProviderKind,
        /// The provider's API base URL; its public one when absent.
        endpoint: Option<String>,
    },
}

/// The transport settings of a stored sender.
pub fn stored_transport(record: &EmailSenderRecord) -> Result<TransportSettings, DeliveryError> {
    serde_json::from_str(&record.transport)
        .map_err(|e| DeliveryError::Sender(format!("unreadable transport settings: {e}")))
}

/// Build the mailer a stored sender describes, opening its secret.
fn mailer_for(
    tenant: &TenantId,
    record: &EmailSenderRecord,
    secrets: Option<&SecretBox>,
    tls: &MailTls,
) -> Result<Mailer, DeliveryError> {
    let from_address = record
        .from_address
        .parse::<Address>()
        .map_err(|e| DeliveryError::Address(record.from_address.clone(), e.to_string()))?;
    let from = Mailbox::new(record.from_name.clone(), from_address);
    let reply_to = record
        .reply_to
        .as_deref()
        .map(|r| {
            r.parse::<Mailbox>()
                .map_err(|e| DeliveryError::Address(r.to_owned(), e.to_string()))
        })
        .transpose()?;
    let secret = |what: &str| -> Result<String, DeliveryError> {
        let sealed = record
            .secret
            .as_deref()
            .ok_or_else(|| DeliveryError::Sender(format!("no {what} is stored")))?;
        let secrets = secrets.ok_or_else(|| {
            DeliveryError::Sender(format!(
                "the {what} cannot be opened: this host has no secrets key (--secrets-key)"
            ))
        })?;
        secrets
            .open(tenant, sealed)
            .map_err(|e| DeliveryError::Sender(format!("the stored {what} cannot be opened: {e}")))
    };
    match stored_transport(record)? {
        TransportSettings::Smtp {
            host,
            port,
            security,
            username,
        } => {
            let credentials = match username {
                Some(user) => Some((user, secret("SMTP password")?)),
                None => None,
            };
            let server = SmtpServer {
                host,
                port,
                security,
                credentials,
            };
            Mailer::smtp(from, reply_to, &server, tls)
        }
        TransportSettings::Http { provider, endpoint } => {
            let provider = provider.provider();
            let endpoint = endpoint.unwrap_or_else(|| provider.default_endpoint().to_owned());
            let transport = HttpTransport {
                client: tls.http.clone(),
                provider,
                endpoint,
                api_key: secret("API key")?,
            };
            Ok(Mailer::http(from, reply_to, transport))
        }
    }
}

/// The sender of each tenant's email: its own when it has settings, else the host's. Each
/// lookup reads the tenant's settings (one row), so a change made through any host applies
/// to the next send; the mailer built from them is kept while they stay the same.
pub struct Senders {
    store: Arc<dyn EmailSenders>,
    host: Arc<Mailer>,
    secrets: Option<Arc<SecretBox>>,
    tls: MailTls,
    built: Mutex<HashMap<TenantId, (EmailSenderRecord, Arc<Mailer>)>>,
}

impl Senders {
    pub fn new(
        store: Arc<dyn EmailSenders>,
        host: Arc<Mailer>,
        secrets: Option<Arc<SecretBox>>,
        tls: MailTls,
    ) -> Self {
        Senders {
            store,
            host,
            secrets,
            tls,
            built: Mutex::new(HashMap::new()),
        }
    }

    /// The mailer for `tenant`'s next email. An error (settings that cannot be read, a secret
    /// that does not open) is that email's failed attempt, with the reason.
    pub async fn mailer(&self, tenant: &TenantId) -> Result<Arc<Mailer>, DeliveryError> {
        let record = self
            .store
            .email_sender(tenant)
            .await
            .map_err(|e| DeliveryError::Sender(format!("reading the settings failed: {e}")))?;
        let mut built = self
            .built
            .lock()
            .expect("the senders' lock is not poisoned");
        let Some(record) = record else {
            built.remove(tenant);
            return Ok(self.host.clone());
        };
        if let Some((seen, mailer)) = built.get(tenant)
            && *seen == record
        {
            return Ok(mailer.clone());
        }
        let mailer = Arc::new(mailer_for(
            tenant,
            &record,
            self.secrets.as_deref(),
            &self.tls,
        )?);
        built.insert(tenant.clone(), (record, mailer.clone()));
        Ok(mailer)
    }
}
