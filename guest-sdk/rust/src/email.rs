//! Email sends: `email("welcome").to("a@b.c").var("plan", "pro")`.

use serde_json::{Map, Value};
use std::fmt;

/// Starts an email that renders the module template `template`.
///
/// The recipient defaults to the person's email; template variables default to the person's
/// properties, `email` and `key`, and anything set with [`Email::var`] overrides them.
///
/// ```
/// use waymark_guest::prelude::*;
/// let e = email("tips-a").var("plan", "pro").var("seats", 3).to("ops@example.com");
/// assert_eq!(e.vars()["seats"], json!(3));
/// ```
pub fn email(template: impl Into<String>) -> Email {
    Email {
        template: template.into(),
        to: None,
        vars: Map::new(),
    }
}

/// An email to send with [`Ctx::send_email`](crate::Ctx::send_email), built with [`email`].
#[derive(Debug, Clone, PartialEq)]
#[must_use = "an email is only sent by `ctx.send_email(..)`"]
pub struct Email {
    template: String,
    to: Option<String>,
    vars: Map<String, Value>,
}

impl Email {
    /// Sends to this address instead of the person's email.
    pub fn to(mut self, address: impl Into<String>) -> Self {
        self.to = Some(address.into());
        self
    }

    /// Sets one template variable. Anything convertible into a JSON value works: strings,
    /// numbers, bools, `Option`s, `Vec`s, or a [`json!`](serde_json::json) value.
    pub fn var(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.vars.insert(key.into(), value.into());
        self
    }

    /// Sets several template variables at once.
    pub fn vars_from<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<Value>,
    {
        self.vars
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The template key.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The explicit recipient, if any.
    pub fn recipient(&self) -> Option<&str> {
        self.to.as_deref()
    }

    /// The template variables set so far.
    pub fn vars(&self) -> &Map<String, Value> {
        &self.vars
    }

    pub(crate) fn vars_json(&self) -> String {
        Value::Object(self.vars.clone()).to_string()
    }
}

/// The id the host gave a queued email (its outbox id). Stable across replays.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailId(pub(crate) String);

impl EmailId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<EmailId> for String {
    fn from(id: EmailId) -> String {
        id.0
    }
}

/// Why the host could not queue an email (unknown template, no recipient, bad vars, …).
///
/// It is journaled like a success: a replay sees the same error. Use `?` to fail the run with
/// it, or handle it and carry on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendEmailError {
    template: String,
    reason: String,
}

impl SendEmailError {
    pub(crate) fn new(template: &str, reason: String) -> Self {
        Self {
            template: template.to_owned(),
            reason,
        }
    }

    /// The template the failed email used.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The host's reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for SendEmailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sending email with template `{}` failed: {}",
            self.template, self.reason
        )
    }
}

impl std::error::Error for SendEmailError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn email_builder_collects_vars_and_recipient() {
        let e = email("welcome")
            .var("plan", "pro")
            .var("seats", 3)
            .var("beta", true)
            .var("nick", None::<String>)
            .vars_from([("a", 1), ("b", 2)])
            .to("x@example.com");
        assert_eq!(e.template(), "welcome");
        assert_eq!(e.recipient(), Some("x@example.com"));
        let parsed: Value = serde_json::from_str(&e.vars_json()).unwrap();
        assert_eq!(
            parsed,
            json!({"plan": "pro", "seats": 3, "beta": true, "nick": null, "a": 1, "b": 2})
        );
    }

    #[test]
    fn email_without_vars_is_an_empty_object() {
        let e = email("t");
        assert_eq!(e.recipient(), None);
        assert_eq!(e.vars_json(), "{}");
    }

    #[test]
    fn send_error_names_template_and_reason() {
        let err = SendEmailError::new("welcome", "person has no email".into());
        assert_eq!(
            err.to_string(),
            "sending email with template `welcome` failed: person has no email"
        );
    }
}
