//! Signed unsubscribe links. Every email carries a link (and a `List-Unsubscribe` header) to
//! `GET /v1/email/unsubscribe?token=…`, where the token names the tenant, the person and the
//! address and is signed with the tenant's key (HMAC-SHA256), so nobody can unsubscribe
//! someone else by editing a URL.
//!
//! Token: `base64url(payload JSON) "." base64url(HMAC-SHA256(secret, first part))`, payload
//! `{"t": tenant id, "k": contact key, "e": address, "iat": issued at (ms, host clock)}`. A
//! token is good for [`TOKEN_LIFETIME`]: long enough for an old email's link to keep working.
//!
//! The secret is per tenant, created on first use and stored in the database
//! ([`crate::store::EmailPreferences::email_signing_secret`]), so every host on one database signs and
//! verifies alike.

use crate::clock::Timestamp;
use crate::ids::TenantId;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;

/// How long an unsubscribe link works after the email was queued.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Tolerated skew for a token issued "in the future" by another host's clock.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Who an unsubscribe link is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsubscribeClaims {
    #[serde(rename = "t")]
    pub tenant: TenantId,
    /// The contact's resolved key when the email was queued.
    #[serde(rename = "k")]
    pub contact_key: String,
    /// The (normalised) address the email went to.
    #[serde(rename = "e")]
    pub email: String,
    #[serde(rename = "iat")]
    pub issued_at: Timestamp,
}

/// Why a token was refused. Each is the client's fault (a 400), never a server error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the unsubscribe link is malformed")]
    Malformed,
    #[error("the unsubscribe link's signature is not valid")]
    BadSignature,
    #[error("the unsubscribe link has expired")]
    Expired,
}

/// A new random signing secret (hex), offered to the store on a tenant's first use.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}

fn mac(secret: &str, payload: &str) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(payload.as_bytes());
    mac
}

/// Sign `claims` with the tenant's secret.
pub fn sign(secret: &str, claims: &UnsubscribeClaims) -> String {
    let json = serde_json::to_vec(claims).expect("claims serialise");
    let payload = URL_SAFE_NO_PAD.encode(json);
    let signature = URL_SAFE_NO_PAD.encode(mac(secret, &payload).finalize().into_bytes());
    format!("{payload}.{signature}")
}

/// A token read but not yet verified: its claims say which tenant's secret checks it.
pub struct UnverifiedToken<'a> {
    pub claims: UnsubscribeClaims,
    payload: &'a str,
    signature: Vec<u8>,
}

/// Read a token's claims without trusting them.
pub fn decode(token: &str) -> Result<UnverifiedToken<'_>, TokenError> {
    let (payload, signature) = token.trim().split_once('.').ok_or(TokenError::Malformed)?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: UnsubscribeClaims =
        serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    Ok(UnverifiedToken {
        claims,
        payload,
        signature,
    })
}

impl UnverifiedToken<'_> {
    /// Check the signature (in constant time) with the tenant's secret, then the age.
    pub fn verify(self, secret: &str, now: Timestamp) -> Result<UnsubscribeClaims, TokenError> {
        mac(secret, self.payload)
            .verify_slice(&self.signature)
            .map_err(|_| TokenError::BadSignature)?;
        let issued = self.claims.issued_at;
        if issued > now.saturating_add(CLOCK_SKEW) || issued.saturating_add(TOKEN_LIFETIME) < now {
            return Err(TokenError::Expired);
        }
        Ok(self.claims)
    }
}

/// The unsubscribe URL for a token, under the host's public base URL.
pub fn url(public_base: &str, token: &str) -> String {
    format!(
        "{}/v1/email/unsubscribe?token={token}",
        public_base.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;

    fn claims() -> UnsubscribeClaims {
        UnsubscribeClaims {
            tenant: TenantId("tenant-1".into()),
            contact_key: "user-1".into(),
            email: "ada@example.com".into(),
            issued_at: Timestamp(1_000 * DAY_MS),
        }
    }

    #[test]
    fn a_signed_token_verifies_with_the_same_secret() {
        let token = sign("s3cret", &claims());
        let verified = decode(&token)
            .unwrap()
            .verify("s3cret", Timestamp(1_001 * DAY_MS))
            .unwrap();
        assert_eq!(verified, claims());
    }

    #[test]
    fn another_secret_or_an_edited_payload_is_a_bad_signature() {
        let token = sign("s3cret", &claims());
        let now = Timestamp(1_001 * DAY_MS);
        assert_eq!(
            decode(&token).unwrap().verify("other", now),
            Err(TokenError::BadSignature)
        );
        let mut forged = claims();
        forged.email = "someone-else@example.com".into();
        let forged_payload = sign("attacker", &forged);
        let (payload, _) = forged_payload.split_once('.').unwrap();
        let (_, signature) = token.split_once('.').unwrap();
        let spliced = format!("{payload}.{signature}");
        assert_eq!(
            decode(&spliced).unwrap().verify("s3cret", now),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        for token in ["", "abc", "abc.def", "!!.??", "e30.AAAA"] {
            assert!(
                matches!(decode(token), Err(TokenError::Malformed)),
                "{token:?}"
            );
        }
    }

    #[test]
    fn a_token_past_its_lifetime_has_expired() {
        let token = sign("s3cret", &claims());
        let lifetime_days = (TOKEN_LIFETIME.as_secs() / 86_400) as i64;
        let last_day = Timestamp((1_000 + lifetime_days) * DAY_MS);
        assert!(decode(&token).unwrap().verify("s3cret", last_day).is_ok());
        assert_eq!(
            decode(&token)
                .unwrap()
                .verify("s3cret", Timestamp(last_day.0 + 1)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn the_url_hangs_under_the_public_base() {
        assert_eq!(
            url("https://mail.example.com/", "abc.def"),
            "https://mail.example.com/v1/email/unsubscribe?token=abc.def"
        );
    }
}
