//! The work of a `send-email` call at the journal's frontier: resolve the recipient, pick the
//! template (the tenant's own first, then the module's; see [`crate::delivery::templates`]),
//! sign the unsubscribe link, render, and decide whether the email is deliverable or
//! suppressed — the person unsubscribed, or the journey emailed this address within its
//! suppress window. The result is buffered in the activation's journal and committed with it.

use super::activation::{QueuedEmail, RunScope, SharedJournal, lock};
use crate::clock::Timestamp;
use crate::ids::EmailId;
use crate::runtime::bindings::types::Email;
use crate::store::{EmailStatus, SuppressedReason};
use serde_json::{Value, json};

/// Render and queue an email at the journal's frontier, deciding whether it is
/// deliverable or suppressed (unsubscribed, or within the journey's suppress window).
pub(super) async fn prepare_email(
    journal: &SharedJournal,
    scope: &RunScope,
    seq: u32,
    email: &Email,
    vars: &serde_json::Map<String, Value>,
) -> Result<QueuedEmail, PrepareError> {
    let unavailable = PrepareError::Unavailable;
    let to = match &email.to {
        Some(to) => crate::contacts::normalize_email(to).ok_or("the recipient address is empty")?,
        None => scope.person.email.clone().ok_or_else(|| {
            format!(
                "person {:?} has no email address and the email names no recipient",
                scope.person.key
            )
        })?,
    };
    if !to.contains('@') {
        return Err(format!("{to:?} is not an email address").into());
    }
    // The tenant's own template wins over the module's (see delivery::templates).
    let template = match scope.mail.tenant_template(&email.template).await {
        Err(message) => return Err(unavailable(message)),
        Ok(Some(template)) => template,
        Ok(None) => scope
            .templates
            .get(&email.template)
            .cloned()
            .ok_or_else(|| format!("unknown template {:?}", email.template))?,
    };
    let now = lock(journal).clock.now();
    let unsubscribe_url = scope
        .mail
        .unsubscribe_url(&scope.person.key, &to, now)
        .await
        .map_err(unavailable)?;
    let mut context = scope.person.properties.clone();
    context.insert("email".into(), json!(to));
    context.insert("key".into(), json!(scope.person.key));
    context.insert("unsubscribe_url".into(), json!(unsubscribe_url));
    for (k, v) in vars {
        context.insert(k.clone(), v.clone());
    }
    let rendered = template.render(&email.template, &Value::Object(context))?;
    let suppressed = if scope
        .mail
        .is_unsubscribed(&scope.person.key, Some(&to))
        .await
        .map_err(unavailable)?
    {
        Some(SuppressedReason::Unsubscribed)
    } else if scope.suppress_ms > 0 && journey_emailed_within(journal, scope, &to, now).await? {
        Some(SuppressedReason::JourneySuppressWindow)
    } else {
        None
    };
    Ok(QueuedEmail {
        id: EmailId::generate(),
        step_seq: seq,
        to,
        template: email.template.clone(),
        subject: rendered.subject,
        body: rendered.text,
        html: rendered.html,
        unsubscribe_url: Some(unsubscribe_url),
        status: if suppressed.is_some() {
            EmailStatus::Suppressed
        } else {
            EmailStatus::Queued
        },
        suppressed_reason: suppressed,
    })
}

/// Whether the journey emailed `to` within its suppress window: earlier in this activation
/// (not committed yet) or in any committed run.
async fn journey_emailed_within(
    journal: &SharedJournal,
    scope: &RunScope,
    to: &str,
    now: Timestamp,
) -> Result<bool, PrepareError> {
    let this_activation = lock(journal)
        .emails
        .iter()
        .any(|e| e.to == to && e.status == EmailStatus::Queued);
    if this_activation {
        return Ok(true);
    }
    let since = Timestamp(
        now.0
            .saturating_sub(i64::try_from(scope.suppress_ms).unwrap_or(i64::MAX)),
    );
    scope
        .mail
        .journey_emailed_since(&scope.journey_id, to, since)
        .await
        .map_err(PrepareError::Unavailable)
}

/// Why `send-email` queued nothing.
pub(super) enum PrepareError {
    /// The guest's mistake (unknown template, no recipient, a render error); journaled.
    Refused(String),
    /// The store failed; the activation is retried and nothing is journaled.
    Unavailable(String),
}

impl From<String> for PrepareError {
    fn from(message: String) -> Self {
        PrepareError::Refused(message)
    }
}

impl From<&str> for PrepareError {
    fn from(message: &str) -> Self {
        PrepareError::Refused(message.to_owned())
    }
}
