//! Sending through an HTTP email API. The common providers share one shape — an API key in a
//! header, the email as a JSON body, the verdict in the status and a JSON answer — so a
//! provider is just [`HttpMailProvider`]: how to write the request and how to read the answer.
//! [`Postmark`] is the one implemented; another is a new type and a new [`ProviderKind`].

use super::DeliveryError;
use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// Most of a provider's answer kept in an error.
const MAX_ANSWER_CHARS: usize = 500;

/// An email as an HTTP provider receives it.
#[derive(Debug)]
pub struct OutgoingEmail<'a> {
    pub from: &'a Mailbox,
    pub reply_to: Option<&'a Mailbox>,
    pub to: &'a Mailbox,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
    /// `<email-id@waymark>`: the same on every attempt, so a receiver can drop a duplicate.
    pub message_id: &'a str,
    pub unsubscribe_url: Option<&'a str>,
}

impl OutgoingEmail<'_> {
    /// The headers beyond From, To, Reply-To and Subject: the stable `Message-ID` and the
    /// one-click unsubscribe pair.
    fn extra_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("Message-ID", self.message_id.to_owned())];
        if let Some(url) = self.unsubscribe_url {
            headers.push(("List-Unsubscribe", format!("<{url}>")));
            headers.push(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".into()));
        }
        headers
    }
}

/// A request to a provider: POST `url` with these headers and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

pub trait HttpMailProvider: Send + Sync {
    /// The provider's name, in errors.
    fn name(&self) -> &'static str;
    /// Where its API is when the settings name no endpoint.
    fn default_endpoint(&self) -> &'static str;
    /// The request that sends `email` with `api_key` to the API at `endpoint`.
    fn request(&self, endpoint: &str, api_key: &str, email: &OutgoingEmail) -> ProviderRequest;
    /// Whether the provider took the email, from its answer; else its message.
    fn outcome(&self, status: u16, body: &str) -> Result<(), String>;
}

/// The providers a tenant may choose, by the name its settings use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Postmark,
}

impl ProviderKind {
    pub const NAMES: &[&str] = &["postmark"];

    pub fn provider(self) -> Arc<dyn HttpMailProvider> {
        match self {
            ProviderKind::Postmark => Arc::new(Postmark),
        }
    }
}

/// Postmark's `POST /email` (<https://postmarkapp.com/developer/api/email-api>): the server
/// token in `X-Postmark-Server-Token`; an answer with `ErrorCode` 0 is a sent email, anything
/// else carries a `Message`.
pub struct Postmark;

impl HttpMailProvider for Postmark {
    fn name(&self) -> &'static str {
        "Postmark"
    }

    fn default_endpoint(&self) -> &'static str {
        "https://api.postmarkapp.com"
    }

    fn request(&self, endpoint: &str, api_key: &str, email: &OutgoingEmail) -> ProviderRequest {
        let mut body = json!({
            "From": email.from.to_string(),
            "To": email.to.to_string(),
            "Subject": email.subject,
            "TextBody": email.text,
            "Headers": email
                .extra_headers()
                .into_iter()
                .map(|(name, value)| json!({ "Name": name, "Value": value }))
                .collect::<Vec<_>>(),
        });
        if let Some(html) = email.html {
            body["HtmlBody"] = json!(html);
        }
        if let Some(reply_to) = email.reply_to {
            body["ReplyTo"] = json!(reply_to.to_string());
        }
        ProviderRequest {
            url: format!("{}/email", endpoint.trim_end_matches('/')),
            headers: vec![
                ("X-Postmark-Server-Token", api_key.to_owned()),
                ("Accept", "application/json".into()),
            ],
            body,
        }
    }

    fn outcome(&self, status: u16, body: &str) -> Result<(), String> {
        let answer: Option<Value> = serde_json::from_str(body).ok();
        let code = answer
            .as_ref()
            .and_then(|a| a.get("ErrorCode"))
            .and_then(Value::as_i64);
        if (200..300).contains(&status) && code.unwrap_or(0) == 0 {
            return Ok(());
        }
        let message = answer
            .as_ref()
            .and_then(|a| a.get("Message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| body.chars().take(MAX_ANSWER_CHARS).collect());
        Err(match code {
            Some(code) => format!("HTTP {status}: {message} (ErrorCode {code})"),
            None => format!("HTTP {status}: {message}"),
        })
    }
}

/// A provider, its endpoint and the key it is called with.
pub struct HttpTransport {
    pub client: reqwest::Client,
    pub provider: Arc<dyn HttpMailProvider>,
    pub endpoint: String,
    pub api_key: String,
}

impl HttpTransport {
    pub async fn send(&self, email: &OutgoingEmail<'_>) -> Result<(), DeliveryError> {
        let name = self.provider.name();
        let failed = |message: String| DeliveryError::Provider {
            provider: name,
            message,
        };
        let request = self.provider.request(&self.endpoint, &self.api_key, email);
        let mut call = self.client.post(&request.url).json(&request.body);
        for (header, value) in request.headers {
            call = call.header(header, value);
        }
        let response = call.send().await.map_err(|e| failed(error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| failed(error_chain(&e)))?;
        self.provider.outcome(status, &body).map_err(failed)
    }
}

/// An error with its causes: reqwest's own message ("error sending request") hides why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(text: &str) -> Mailbox {
        text.parse().unwrap()
    }

    #[test]
    fn a_postmark_request_carries_the_key_the_bodies_and_the_stable_headers() {
        // Given an HTML email with a reply-to and an unsubscribe link
        let (from, to, reply_to) = (
            mailbox("Acme <hello@acme.test>"),
            mailbox("ada@example.com"),
            mailbox("support@acme.test"),
        );
        let email = OutgoingEmail {
            from: &from,
            reply_to: Some(&reply_to),
            to: &to,
            subject: "Welcome",
            text: "Hello",
            html: Some("<p>Hello</p>"),
            message_id: "<e1@waymark>",
            unsubscribe_url: Some("https://mail.test/u?t=1"),
        };

        // When Postmark's request is written
        let request = Postmark.request("http://127.0.0.1:9/", "token-1", &email);

        // Then it posts to /email with the token and Postmark's field names
        assert_eq!(request.url, "http://127.0.0.1:9/email");
        assert!(
            request
                .headers
                .contains(&("X-Postmark-Server-Token", "token-1".into()))
        );
        assert_eq!(request.body["From"], "Acme <hello@acme.test>");
        assert_eq!(request.body["To"], "ada@example.com");
        assert_eq!(request.body["ReplyTo"], "support@acme.test");
        assert_eq!(request.body["HtmlBody"], "<p>Hello</p>");
        assert_eq!(
            request.body["Headers"][0],
            json!({ "Name": "Message-ID", "Value": "<e1@waymark>" })
        );
        assert_eq!(
            request.body["Headers"][1]["Value"],
            "<https://mail.test/u?t=1>"
        );
    }

    #[test]
    fn postmark_answers_are_read_as_sent_or_as_the_providers_message() {
        assert_eq!(
            Postmark.outcome(200, r#"{"ErrorCode":0,"Message":"OK","MessageID":"x"}"#),
            Ok(())
        );
        assert_eq!(
            Postmark.outcome(
                401,
                r#"{"ErrorCode":10,"Message":"Bad or missing API token"}"#
            ),
            Err("HTTP 401: Bad or missing API token (ErrorCode 10)".into())
        );
        assert_eq!(
            Postmark.outcome(502, "Bad Gateway"),
            Err("HTTP 502: Bad Gateway".into())
        );
    }
}
