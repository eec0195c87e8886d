//! What the `send-email` and `is-subscribed` imports read: a run's tenant's own templates,
//! who unsubscribed, what the journey sent recently (its `suppress` window), and the signed
//! unsubscribe link, through the narrow [`MailReader`] an activation is given. [`StoreMail`]
//! is the real one (reading through the store on every send, so a template changed through
//! the API, on this host or another one on the same database, takes effect at the next
//! send); tests give their own.
//!
//! Every method's error is a host failure (the database is unavailable): the activation ends
//! as a host-side error, to be retried, and records nothing.

use crate::clock::Timestamp;
use crate::delivery::templates::TemplateSource;
use crate::delivery::unsubscribe::{self, UnsubscribeClaims};
use crate::ids::TenantId;
use crate::store::{EmailPreferences, EmailTemplates, Outbox, Store};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub type MailRead<T> = Result<T, String>;

/// Email facts as one tenant's journeys see them.
#[async_trait]
pub trait MailReader: Send + Sync {
    /// The tenant's own template of this key, which overrides the module's.
    async fn tenant_template(&self, key: &str) -> MailRead<Option<TemplateSource>>;
    /// Whether the person `contact_key`, or the address `email`, opted out.
    async fn is_unsubscribed(&self, contact_key: &str, email: Option<&str>) -> MailRead<bool>;
    /// Whether the journey queued or sent an email to `to` at or after `since`.
    async fn journey_emailed_since(
        &self,
        journey_id: &str,
        to: &str,
        since: Timestamp,
    ) -> MailRead<bool>;
    /// The signed unsubscribe link for this person and address.
    async fn unsubscribe_url(
        &self,
        contact_key: &str,
        email: &str,
        issued_at: Timestamp,
    ) -> MailRead<String>;
}

/// No tenant templates, nobody unsubscribed, nothing sent before; links under
/// `http://localhost` signed with a fixed key. For activations outside a host (tests, tools).
pub struct NoMail;

#[async_trait]
impl MailReader for NoMail {
    async fn tenant_template(&self, _key: &str) -> MailRead<Option<TemplateSource>> {
        Ok(None)
    }

    async fn is_unsubscribed(&self, _contact_key: &str, _email: Option<&str>) -> MailRead<bool> {
        Ok(false)
    }

    async fn journey_emailed_since(&self, _: &str, _: &str, _: Timestamp) -> MailRead<bool> {
        Ok(false)
    }

    async fn unsubscribe_url(
        &self,
        contact_key: &str,
        email: &str,
        issued_at: Timestamp,
    ) -> MailRead<String> {
        let claims = UnsubscribeClaims {
            tenant: TenantId("none".into()),
            contact_key: contact_key.to_owned(),
            email: email.to_owned(),
            issued_at,
        };
        Ok(unsubscribe::url(
            "http://localhost",
            &unsubscribe::sign("unsigned", &claims),
        ))
    }
}

/// Signs unsubscribe links under the host's public base URL. Shared by every activation of
/// a host: each tenant's secret is read (or created) once, then kept, since it never changes.
pub struct UnsubscribeLinks {
    store: Arc<dyn EmailPreferences>,
    public_url: String,
    secrets: RwLock<HashMap<TenantId, Arc<str>>>,
}

impl UnsubscribeLinks {
    pub fn new(store: Arc<dyn EmailPreferences>, public_url: String) -> Self {
        Self {
            store,
            public_url,
            secrets: RwLock::new(HashMap::new()),
        }
    }

    async fn secret(&self, tenant: &TenantId, now: Timestamp) -> MailRead<Arc<str>> {
        if let Some(secret) = self
            .secrets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
        {
            return Ok(secret.clone());
        }
        let candidate = unsubscribe::new_secret();
        let secret: Arc<str> = self
            .store
            .email_signing_secret(tenant, Some(&candidate), now)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the signing key was not stored")?
            .into();
        self.secrets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.clone(), secret.clone());
        Ok(secret)
    }

    pub async fn url(&self, claims: &UnsubscribeClaims) -> MailRead<String> {
        let secret = self.secret(&claims.tenant, claims.issued_at).await?;
        Ok(unsubscribe::url(
            &self.public_url,
            &unsubscribe::sign(&secret, claims),
        ))
    }
}

/// The store's email reads for one tenant: its templates, preferences and recent sends.
pub struct StoreMail<S: ?Sized = dyn Store> {
    store: Arc<S>,
    tenant: TenantId,
    links: Arc<UnsubscribeLinks>,
}

impl<S: ?Sized> StoreMail<S> {
    pub fn new(store: Arc<S>, tenant: TenantId, links: Arc<UnsubscribeLinks>) -> Self {
        Self {
            store,
            tenant,
            links,
        }
    }
}

#[async_trait]
impl<S> MailReader for StoreMail<S>
where
    S: EmailTemplates + EmailPreferences + Outbox + ?Sized,
{
    async fn tenant_template(&self, key: &str) -> MailRead<Option<TemplateSource>> {
        let found = self
            .store
            .email_template(&self.tenant, key)
            .await
            .map_err(|e| e.to_string())?;
        Ok(found.map(|t| TemplateSource {
            subject: t.subject,
            text: t.text,
            html: t.html,
        }))
    }

    async fn is_unsubscribed(&self, contact_key: &str, email: Option<&str>) -> MailRead<bool> {
        self.store
            .is_unsubscribed(&self.tenant, contact_key, email)
            .await
            .map_err(|e| e.to_string())
    }

    async fn journey_emailed_since(
        &self,
        journey_id: &str,
        to: &str,
        since: Timestamp,
    ) -> MailRead<bool> {
        self.store
            .journey_emailed_since(&self.tenant, journey_id, to, since)
            .await
            .map_err(|e| e.to_string())
    }

    async fn unsubscribe_url(
        &self,
        contact_key: &str,
        email: &str,
        issued_at: Timestamp,
    ) -> MailRead<String> {
        self.links
            .url(&UnsubscribeClaims {
                tenant: self.tenant.clone(),
                contact_key: contact_key.to_owned(),
                email: email.to_owned(),
                issued_at,
            })
            .await
    }
}
