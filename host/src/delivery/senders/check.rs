//! Checking a tenant's sender settings before anything is stored: every field, the port's
//! range, that the host resolves, and what becomes of the secret — sealed when given, the
//! stored one kept when left out for the same server and account, refused without a secrets
//! key. The API answers a refusal with the field it names.

use super::{TransportSettings, stored_transport};
use crate::clock::Timestamp;
use crate::delivery::SmtpSecurity;
use crate::delivery::http_provider::ProviderKind;
use crate::ids::TenantId;
use crate::secrets::SecretBox;
use crate::store::EmailSenderRecord;
use lettre::Address;
use lettre::message::Mailbox;
use serde::Deserialize;
use std::time::Duration;

/// How long a PUT waits for a host name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_NAME_CHARS: usize = 200;
const MAX_SECRET_BYTES: usize = 4096;

/// A tenant's sender as the API takes it: secrets in the clear, every field optional so a
/// missing one is reported by name. Field names are the API's (`transport.apiKey`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SenderInput {
    pub from: Option<FromInput>,
    pub reply_to: Option<String>,
    pub transport: Option<TransportInput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromInput {
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TransportInput {
    pub kind: Option<String>,
    pub host: Option<String>,
    /// Wide, so an out-of-range port is reported as the port rather than as a bad body.
    pub port: Option<i64>,
    pub security: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub provider: Option<String>,
    pub endpoint: Option<String>,
    pub api_key: Option<String>,
}

/// Why settings were refused; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// `field` is the API's path to it, e.g. `transport.port`.
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(
        "storing {field} needs a secrets key: start the host with --secrets-key (or \
         WAYMARK_SECRETS_KEY); see the README's \"Sender set-up\""
    )]
    NoSecretsKey { field: &'static str },
}

fn invalid(field: &'static str, message: impl Into<String>) -> SenderError {
    SenderError::Invalid {
        field,
        message: message.into(),
    }
}

/// Check `input` whole and make the record to store: the secret sealed for `tenant`, or the
/// stored one kept when the input leaves it out and still addresses the same server and
/// account as `previous` (secrets are never shown, so a client cannot send them back).
pub async fn check(
    input: SenderInput,
    tenant: &TenantId,
    previous: Option<&EmailSenderRecord>,
    secrets: Option<&SecretBox>,
    now: Timestamp,
) -> Result<EmailSenderRecord, SenderError> {
    let from = input.from.ok_or_else(|| invalid("from", "is required"))?;
    let from_name = from
        .name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    if let Some(name) = &from_name
        && (name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control))
    {
        return Err(invalid(
            "from.name",
            format!("must be at most {MAX_NAME_CHARS} characters, without control characters"),
        ));
    }
    let from_address = from
        .address
        .map(|a| a.trim().to_owned())
        .ok_or_else(|| invalid("from.address", "is required"))?;
    from_address.parse::<Address>().map_err(|e| {
        invalid(
            "from.address",
            format!("{from_address:?} is not an address: {e}"),
        )
    })?;
    let reply_to = input
        .reply_to
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if let Some(reply_to) = &reply_to {
        reply_to
            .parse::<Mailbox>()
            .map_err(|e| invalid("replyTo", format!("{reply_to:?} is not an address: {e}")))?;
    }
    let transport = input
        .transport
        .ok_or_else(|| invalid("transport", "is required"))?;
    let previous_transport = previous.and_then(|p| stored_transport(p).ok());
    let previous_secret = previous.and_then(|p| p.secret.clone());
    let (transport, secret) = match transport.kind.as_deref() {
        Some("smtp") => check_smtp(transport, previous_transport.as_ref()).await?,
        Some("http") => check_http(transport, previous_transport.as_ref()).await?,
        Some(other) => {
            return Err(invalid(
                "transport.kind",
                format!("{other:?} is not a transport: use \"smtp\" or \"http\""),
            ));
        }
        None => {
            return Err(invalid(
                "transport.kind",
                "is required: \"smtp\" or \"http\"",
            ));
        }
    };
    let secret = match secret {
        Secret::None => None,
        Secret::Keep => previous_secret,
        Secret::New { field, value } => {
            let secrets = secrets.ok_or(SenderError::NoSecretsKey { field })?;
            Some(secrets.seal(tenant, &value))
        }
    };
    Ok(EmailSenderRecord {
        from_name,
        from_address,
        reply_to,
        transport: serde_json::to_string(&transport).expect("settings serialize"),
        secret,
        created_at: previous.map_or(now, |p| p.created_at),
        updated_at: now,
    })
}

/// A setting given that belongs to another kind of transport than `kind` is refused, naming it.
fn refuse_settings_of_other_kinds<const N: usize>(
    kind: &str,
    settings: [(&'static str, bool); N],
) -> Result<(), SenderError> {
    match settings.into_iter().find(|(_, given)| *given) {
        Some((field, _)) => Err(invalid(
            field,
            format!("is not a setting of an {kind} transport"),
        )),
        None => Ok(()),
    }
}

/// What becomes of a transport's secret.
enum Secret {
    None,
    Keep,
    New { field: &'static str, value: String },
}

async fn check_smtp(
    input: TransportInput,
    previous: Option<&TransportSettings>,
) -> Result<(TransportSettings, Secret), SenderError> {
    refuse_settings_of_other_kinds(
        "smtp",
        [
            ("transport.provider", input.provider.is_some()),
            ("transport.endpoint", input.endpoint.is_some()),
            ("transport.apiKey", input.api_key.is_some()),
        ],
    )?;
    let security = match input.security.as_deref() {
        None | Some("starttls") => SmtpSecurity::Starttls,
        Some("tls") => SmtpSecurity::Tls,
        Some("none") => SmtpSecurity::None,
        Some(other) => {
            return Err(invalid(
                "transport.security",
                format!("{other:?} is not one of \"starttls\", \"tls\", \"none\""),
            ));
        }
    };
    let host = check_host_name("transport.host", input.host)?;
    let port = match input.port {
        None => security.default_port(),
        Some(port) => u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("transport.port", format!("{port} is not a port (1-65535)")))?,
    };
    let username = input
        .username
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    let password = input.password.filter(|p| !p.is_empty());
    let secret = match (&username, password) {
        (None, Some(_)) => {
            return Err(invalid("transport.password", "is given without a username"));
        }
        (None, None) => Secret::None,
        (Some(_), _) if security == SmtpSecurity::None => {
            return Err(invalid(
                "transport.security",
                "\"none\" would send the password in the clear: use \"starttls\" or \"tls\"",
            ));
        }
        (Some(_), Some(password)) => {
            check_secret_size("transport.password", &password)?;
            Secret::New {
                field: "transport.password",
                value: password,
            }
        }
        (Some(user), None) => match previous {
            Some(TransportSettings::Smtp {
                host: old_host,
                username: Some(old_user),
                ..
            }) if *old_host == host && old_user == user => Secret::Keep,
            _ => {
                return Err(invalid(
                    "transport.password",
                    "is required with a username (the stored one is kept only while the host \
                     and username stay the same)",
                ));
            }
        },
    };
    resolve("transport.host", &host, port).await?;
    Ok((
        TransportSettings::Smtp {
            host,
            port,
            security,
            username,
        },
        secret,
    ))
}

async fn check_http(
    input: TransportInput,
    previous: Option<&TransportSettings>,
) -> Result<(TransportSettings, Secret), SenderError> {
    refuse_settings_of_other_kinds(
        "http",
        [
            ("transport.host", input.host.is_some()),
            ("transport.port", input.port.is_some()),
            ("transport.security", input.security.is_some()),
            ("transport.username", input.username.is_some()),
            ("transport.password", input.password.is_some()),
        ],
    )?;
    let provider = match input.provider.as_deref() {
        Some("postmark") => ProviderKind::Postmark,
        Some(other) => {
            return Err(invalid(
                "transport.provider",
                format!(
                    "{other:?} is not a provider: one of {:?}",
                    ProviderKind::NAMES
                ),
            ));
        }
        None => return Err(invalid("transport.provider", "is required")),
    };
    let endpoint = input
        .endpoint
        .map(|e| e.trim().trim_end_matches('/').to_owned())
        .filter(|e| !e.is_empty());
    let url = endpoint
        .as_deref()
        .unwrap_or(provider.provider().default_endpoint());
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| invalid("transport.endpoint", format!("{url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
        return Err(invalid(
            "transport.endpoint",
            format!("{url:?} is not an http(s) URL with a host"),
        ));
    }
    let secret = match input.api_key.filter(|k| !k.is_empty()) {
        Some(key) => {
            check_secret_size("transport.apiKey", &key)?;
            Secret::New {
                field: "transport.apiKey",
                value: key,
            }
        }
        None => match previous {
            Some(TransportSettings::Http {
                provider: old_provider,
                endpoint: old_endpoint,
            }) if *old_provider == provider && *old_endpoint == endpoint => Secret::Keep,
            _ => {
                return Err(invalid(
                    "transport.apiKey",
                    "is required (the stored one is kept only while the provider and endpoint \
                     stay the same)",
                ));
            }
        },
    };
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']']);
    let port = parsed.port_or_known_default().unwrap_or(443);
    resolve("transport.endpoint", host, port).await?;
    Ok((TransportSettings::Http { provider, endpoint }, secret))
}

fn check_host_name(field: &'static str, host: Option<String>) -> Result<String, SenderError> {
    let host = host
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid(field, "is required"))?;
    if host.len() > 253
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(invalid(field, format!("{host:?} is not a host name")));
    }
    Ok(host)
}

fn check_secret_size(field: &'static str, secret: &str) -> Result<(), SenderError> {
    if secret.len() > MAX_SECRET_BYTES {
        return Err(invalid(
            field,
            format!("is longer than {MAX_SECRET_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A host a tenant names must resolve now: a typo is refused at once rather than found out
/// by the first email failing.
async fn resolve(field: &'static str, host: &str, port: u16) -> Result<(), SenderError> {
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(mut addresses)) => match addresses.next() {
            Some(_) => Ok(()),
            None => Err(invalid(field, format!("{host} has no address"))),
        },
        Ok(Err(e)) => Err(invalid(field, format!("{host} does not resolve: {e}"))),
        Err(_) => Err(invalid(
            field,
            format!(
                "{host} did not resolve within {}s",
                RESOLVE_TIMEOUT.as_secs()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SecretsKey;
    use serde_json::json;

    fn tenant() -> TenantId {
        TenantId("t1".into())
    }

    fn input(value: serde_json::Value) -> SenderInput {
        serde_json::from_value(value).unwrap()
    }

    fn smtp(extra: serde_json::Value) -> SenderInput {
        let mut transport = json!({ "kind": "smtp", "host": "localhost" });
        transport
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        input(json!({
            "from": { "name": "Acme", "address": "hello@acme.test" },
            "transport": transport,
        }))
    }

    async fn refusal(input: SenderInput, secrets: Option<&SecretBox>) -> String {
        match check(input, &tenant(), None, secrets, Timestamp(1)).await {
            Err(SenderError::Invalid { field, .. }) => field.to_owned(),
            Err(other) => panic!("expected an invalid field, got {other}"),
            Ok(record) => panic!("expected a refusal, got {record:?}"),
        }
    }

    #[tokio::test]
    async fn a_smtp_sender_with_a_password_is_stored_with_the_password_sealed() {
        // Given a host with a secrets key
        let secrets = SecretBox::new(&SecretsKey::generate());

        // When a tenant sets an SMTP server with AUTH
        let record = check(
            smtp(json!({ "port": 2525, "username": "acme", "password": "hunter2" })),
            &tenant(),
            None,
            Some(&secrets),
            Timestamp(1),
        )
        .await
        .unwrap();

        // Then the transport is stored without the password, which is sealed
        assert_eq!(
            stored_transport(&record).unwrap(),
            TransportSettings::Smtp {
                host: "localhost".into(),
                port: 2525,
                security: SmtpSecurity::Starttls,
                username: Some("acme".into()),
            }
        );
        assert!(!record.transport.contains("hunter2"));
        let sealed = record.secret.as_deref().unwrap();
        assert_eq!(secrets.open(&tenant(), sealed).unwrap(), "hunter2");
    }

    #[tokio::test]
    async fn a_left_out_password_is_kept_only_for_the_same_host_and_username() {
        let secrets = SecretBox::new(&SecretsKey::generate());
        let first = check(
            smtp(json!({ "username": "acme", "password": "hunter2" })),
            &tenant(),
            None,
            Some(&secrets),
            Timestamp(1),
        )
        .await
        .unwrap();

        // When the From changes but not the server: the password stays
        let same = check(
            smtp(json!({ "username": "acme" })),
            &tenant(),
            Some(&first),
            Some(&secrets),
            Timestamp(2),
        )
        .await
        .unwrap();
        assert_eq!(same.secret, first.secret);
        assert_eq!(same.created_at, Timestamp(1));

        // When the username changes: the password must come again
        let other = check(
            smtp(json!({ "username": "someone-else" })),
            &tenant(),
            Some(&first),
            Some(&secrets),
            Timestamp(2),
        )
        .await;
        assert!(matches!(
            other,
            Err(SenderError::Invalid {
                field: "transport.password",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn settings_that_cannot_work_are_refused_naming_the_field() {
        let secrets = SecretBox::new(&SecretsKey::generate());
        let cases = [
            (smtp(json!({ "host": "smtp.invalid" })), "transport.host"),
            (smtp(json!({ "host": " " })), "transport.host"),
            (smtp(json!({ "port": 0 })), "transport.port"),
            (smtp(json!({ "port": 70000 })), "transport.port"),
            (smtp(json!({ "security": "ssl3" })), "transport.security"),
            (smtp(json!({ "password": "x" })), "transport.password"),
            (smtp(json!({ "username": "u" })), "transport.password"),
            (
                smtp(json!({ "security": "none", "username": "u", "password": "p" })),
                "transport.security",
            ),
            (smtp(json!({ "apiKey": "k" })), "transport.apiKey"),
            (
                input(json!({ "from": { "address": "nope" }, "transport": { "kind": "smtp" } })),
                "from.address",
            ),
            (
                input(
                    json!({ "from": { "address": "a@b.test" }, "replyTo": "<<", "transport": {} }),
                ),
                "replyTo",
            ),
            (
                input(json!({ "from": { "address": "a@b.test" }, "transport": { "kind": "fax" } })),
                "transport.kind",
            ),
            (
                input(json!({ "from": { "address": "a@b.test" },
                              "transport": { "kind": "http", "provider": "pigeon" } })),
                "transport.provider",
            ),
            (
                input(json!({ "from": { "address": "a@b.test" },
                              "transport": { "kind": "http", "provider": "postmark" } })),
                "transport.apiKey",
            ),
            (
                input(json!({ "from": { "address": "a@b.test" },
                              "transport": { "kind": "http", "provider": "postmark",
                                             "apiKey": "k", "endpoint": "ftp://x" } })),
                "transport.endpoint",
            ),
            (
                input(json!({ "from": { "address": "a@b.test" },
                              "transport": { "kind": "http", "provider": "postmark",
                                             "apiKey": "k", "endpoint": "https://api.invalid" } })),
                "transport.endpoint",
            ),
        ];
        for (input, field) in cases {
            assert_eq!(refusal(input, Some(&secrets)).await, field);
        }
    }

    #[tokio::test]
    async fn a_secret_without_a_secrets_key_is_refused_and_one_without_a_secret_is_not() {
        let refused = check(
            smtp(json!({ "username": "acme", "password": "hunter2" })),
            &tenant(),
            None,
            None,
            Timestamp(1),
        )
        .await;
        assert!(matches!(
            refused,
            Err(SenderError::NoSecretsKey {
                field: "transport.password"
            })
        ));

        let relay = check(
            smtp(json!({ "security": "none" })),
            &tenant(),
            None,
            None,
            Timestamp(1),
        )
        .await
        .unwrap();
        assert_eq!(relay.secret, None);
    }
}
