//! One sender: a From (and Reply-To) and the transport it sends through — the host's
//! command-line transport (plain SMTP, or only a log line), a tenant's SMTP server (STARTTLS or
//! implicit TLS, AUTH) or a tenant's HTTP provider. Every transport sends the same email: the
//! same headers, bodies and stable `Message-ID`.

use super::DeliveryError;
use super::http_provider::{HttpTransport, OutgoingEmail};
use crate::store::OutboxEmail;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// How long an SMTP conversation may go without an answer.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The host's own transport, from the command line: what every tenant without a sender of its
/// own sends through.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportConfig {
    /// Development default: log the email and mark it sent.
    Log,
    /// Plain SMTP (no TLS) to `host:port`, e.g. a local relay or a test sink.
    Smtp { host: String, port: u16 },
}

/// How a tenant's SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on a trusted network, and never with a password.
    None,
}

impl SmtpSecurity {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

/// A tenant's SMTP server, with its password opened.
#[derive(Debug, Clone)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// (username, password) for AUTH.
    pub credentials: Option<(String, String)>,
}

/// What the host trusts when a tenant's transport speaks TLS: the built-in web roots (Mozilla's
/// list, compiled in) plus, with `--mail-ca-file`, the certificates of a private CA. Servers'
/// certificates are always verified, names included.
#[derive(Clone)]
pub struct MailTls {
    /// The extra roots, PEM.
    ca_pem: Option<Vec<u8>>,
    /// The client HTTP providers are called with (it holds the same roots).
    pub(super) http: reqwest::Client,
}

impl MailTls {
    /// The built-in roots, plus the PEM certificates in `ca_file` when given.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, DeliveryError> {
        let ca_pem = ca_file
            .map(|path| {
                std::fs::read(path)
                    .map_err(|e| DeliveryError::Tls(format!("reading {}: {e}", path.display())))
            })
            .transpose()?;
        let mut http = reqwest::Client::builder()
            .timeout(SMTP_TIMEOUT)
            .user_agent(concat!("waymark/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| DeliveryError::Tls(format!("the CA file: {e}")))?;
            // Checked the same way lettre reads it, so an SMTP send never meets a bad file.
            Certificate::from_pem(pem)
                .map_err(|e| DeliveryError::Tls(format!("the CA file: {e}")))?;
            if certificates.is_empty() {
                return Err(DeliveryError::Tls(
                    "the CA file holds no PEM certificate".into(),
                ));
            }
            for certificate in certificates {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http
            .build()
            .map_err(|e| DeliveryError::Tls(format!("building the HTTP client: {e}")))?;
        Ok(MailTls { ca_pem, http })
    }

    fn smtp_parameters(&self, host: &str) -> Result<TlsParameters, DeliveryError> {
        let mut builder = TlsParameters::builder(host.to_owned());
        if let Some(pem) = &self.ca_pem {
            let roots =
                Certificate::from_pem(pem).map_err(|e| DeliveryError::Tls(e.to_string()))?;
            builder = builder.add_root_certificate(roots);
        }
        builder
            .build_rustls()
            .map_err(|e| DeliveryError::Tls(format!("TLS for {host}: {e}")))
    }
}

pub struct Mailer {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    transport: Transport,
}

enum Transport {
    Log,
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Http(HttpTransport),
}

impl Mailer {
    /// The host's sender: its command-line transport and `--mail-from`.
    pub fn new(config: &TransportConfig, from: &str) -> Result<Self, DeliveryError> {
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| DeliveryError::Address(from.to_owned(), e.to_string()))?;
        let transport = match config {
            TransportConfig::Log => Transport::Log,
            TransportConfig::Smtp { host, port } => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
                    .port(*port)
                    .timeout(Some(SMTP_TIMEOUT))
                    .build(),
            ),
        };
        Ok(Self {
            from,
            reply_to: None,
            transport,
        })
    }

    /// A tenant's sender through its own SMTP server.
    pub fn smtp(
        from: Mailbox,
        reply_to: Option<Mailbox>,
        server: &SmtpServer,
        tls: &MailTls,
    ) -> Result<Self, DeliveryError> {
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host.as_str())
                .port(server.port)
                .timeout(Some(SMTP_TIMEOUT));
        builder = match server.security {
            SmtpSecurity::Starttls => {
                builder.tls(Tls::Required(tls.smtp_parameters(&server.host)?))
            }
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls.smtp_parameters(&server.host)?)),
            SmtpSecurity::None => builder,
        };
        if let Some((username, password)) = &server.credentials {
            builder = builder
                .credentials(Credentials::new(username.clone(), password.clone()))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(Self {
            from,
            reply_to,
            transport: Transport::Smtp(builder.build()),
        })
    }

    /// A tenant's sender through an HTTP provider.
    pub fn http(from: Mailbox, reply_to: Option<Mailbox>, transport: HttpTransport) -> Self {
        Self {
            from,
            reply_to,
            transport: Transport::Http(transport),
        }
    }

    pub async fn send(&self, email: &OutboxEmail) -> Result<(), DeliveryError> {
        let to = email
            .to
            .parse::<Mailbox>()
            .map_err(|e| DeliveryError::Address(email.to.clone(), e.to_string()))?;
        let message_id = format!("<{}@waymark>", email.id);
        match &self.transport {
            Transport::Log => {
                tracing::info!(target: "waymark::delivery", email = %email.id, to = %email.to, subject = %email.subject, "email (log transport, not sent)");
                Ok(())
            }
            Transport::Smtp(smtp) => {
                let message = self.message(email, to, message_id)?;
                smtp.send(message)
                    .await
                    .map(drop)
                    .map_err(|e| DeliveryError::Smtp(e.to_string()))
            }
            Transport::Http(http) => {
                http.send(&OutgoingEmail {
                    from: &self.from,
                    reply_to: self.reply_to.as_ref(),
                    to: &to,
                    subject: &email.subject,
                    text: &email.body,
                    html: email.html.as_deref(),
                    message_id: &message_id,
                    unsubscribe_url: email.unsubscribe_url.as_deref(),
                })
                .await
            }
        }
    }

    fn message(
        &self,
        email: &OutboxEmail,
        to: Mailbox,
        message_id: String,
    ) -> Result<Message, DeliveryError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(message_id));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        if let Some(url) = &email.unsubscribe_url {
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{url}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
        }
        match &email.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                email.body.clone(),
                html.clone(),
            )),
            None => builder
                .header(ContentType::TEXT_PLAIN)
                .body(email.body.clone()),
        }
        .map_err(|e| DeliveryError::Message(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_sender_address_is_refused_up_front() {
        assert!(matches!(
            Mailer::new(&TransportConfig::Log, "not an address"),
            Err(DeliveryError::Address(..))
        ));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();

        assert!(matches!(
            MailTls::new(Some(&path)),
            Err(DeliveryError::Tls(_))
        ));
        assert!(matches!(
            MailTls::new(Some(&dir.path().join("missing.pem"))),
            Err(DeliveryError::Tls(_))
        ));
    }
}
