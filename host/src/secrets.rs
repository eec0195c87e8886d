//! Secrets at rest: tenants' transport passwords and API keys are sealed with an AEAD
//! (ChaCha20-Poly1305, a random nonce per value) under a 32-byte key from the host's
//! configuration (`--secrets-key`), so a copy of the database alone reveals none of them.
//!
//! A sealed value reads `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id (a
//! fingerprint of the key, not the key) lets a host with another key say so plainly instead
//! of failing with "bad tag"; the tenant's id is the associated data, so a value copied into
//! another tenant's row does not open.

use crate::ids::TenantId;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::str::FromStr;

/// The file `waymark dev` keeps its generated key in, under the data dir.
pub const DEV_KEY_FILE: &str = "secrets.key";

const KEY_LEN: usize = 32;
const FORMAT: &str = "v1";

/// The host's secrets key: 32 bytes, written as 64 hex digits or in base64. Its `Debug` shows
/// only its id, so configuration dumps never print it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretsKey([u8; KEY_LEN]);

impl SecretsKey {
    pub fn generate() -> Self {
        let mut bytes = [0; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system's random source works");
        SecretsKey(bytes)
    }

    /// A fingerprint naming the key in errors and sealed values (8 hex digits).
    pub fn id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"waymark secrets key id\0")
            .chain_update(self.0)
            .finalize();
        hex::encode(&digest[..4])
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretsKey({})", self.id())
    }
}

impl FromStr for SecretsKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_LEN && text.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
                .ok()
        };
        bytes
            .and_then(|bytes| <[u8; KEY_LEN]>::try_from(bytes).ok())
            .map(SecretsKey)
            .ok_or_else(|| {
                "expected 32 bytes, as 64 hex digits or in base64 (e.g. from `openssl rand -hex 32`)"
                    .to_owned()
            })
    }
}

/// Read the key in `path`, or make one and write it there (mode 0600) when there is none.
/// Two processes starting at once agree: the file is created exclusively, and the loser reads
/// the winner's key.
pub fn load_or_create_key_file(path: &Path) -> std::io::Result<SecretsKey> {
    use std::io::Write;
    let read = |path: &Path| -> std::io::Result<SecretsKey> {
        let text = std::fs::read_to_string(path)?;
        text.parse().map_err(|e: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            let key = SecretsKey::generate();
            writeln!(file, "{}", key.to_hex())?;
            file.sync_all()?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "it was sealed under secrets key {sealed_with}, and this host's key is {ours}: start the \
         host with the key it was stored under, or store it again"
    )]
    OtherKey { sealed_with: String, ours: String },
    #[error("it does not open under secrets key {0}: it was altered, or belongs to another tenant")]
    DoesNotOpen(String),
    #[error("it is not a sealed value")]
    Malformed,
}

/// Seals and opens secrets under the host's key.
pub struct SecretBox {
    key: LessSafeKey,
    id: String,
    random: SystemRandom,
}

impl SecretBox {
    pub fn new(key: &SecretsKey) -> Self {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key.0).expect("a 32-byte key");
        SecretBox {
            key: LessSafeKey::new(unbound),
            id: key.id(),
            random: SystemRandom::new(),
        }
    }

    /// The id of the key this box seals under.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    pub fn seal(&self, tenant: &TenantId, plaintext: &str) -> String {
        let mut nonce = [0; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut sealed = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(tenant.as_str().as_bytes()),
                &mut sealed,
            )
            .expect("sealing fits in memory");
        let mut payload = nonce.to_vec();
        payload.extend_from_slice(&sealed);
        format!("{FORMAT}.{}.{}", self.id, URL_SAFE_NO_PAD.encode(payload))
    }

    pub fn open(&self, tenant: &TenantId, sealed: &str) -> Result<String, SecretError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(FORMAT), Some(key_id), Some(payload)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretError::Malformed);
        };
        if key_id != self.id {
            return Err(SecretError::OtherKey {
                sealed_with: key_id.to_owned(),
                ours: self.id.clone(),
            });
        }
        let mut payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| SecretError::Malformed)?;
        if payload.len() < NONCE_LEN {
            return Err(SecretError::Malformed);
        }
        let mut ciphertext = payload.split_off(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(&payload).map_err(|_| SecretError::Malformed)?;
        let plaintext = self
            .key
            .open_in_place(
                nonce,
                Aad::from(tenant.as_str().as_bytes()),
                &mut ciphertext,
            )
            .map_err(|_| SecretError::DoesNotOpen(self.id.clone()))?;
        String::from_utf8(plaintext.to_vec()).map_err(|_| SecretError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId(id.into())
    }

    #[test]
    fn a_sealed_secret_opens_under_its_key_for_its_tenant_only() {
        // Given a box and a secret sealed for tenant t1
        let secrets = SecretBox::new(&SecretsKey::generate());
        let sealed = secrets.seal(&tenant("t1"), "hunter2");

        // Then the stored form does not contain it, and two seals differ (random nonces)
        assert!(!sealed.contains("hunter2"));
        assert_ne!(sealed, secrets.seal(&tenant("t1"), "hunter2"));
        // And it opens for t1, not for another tenant
        assert_eq!(secrets.open(&tenant("t1"), &sealed).unwrap(), "hunter2");
        assert_eq!(
            secrets.open(&tenant("t2"), &sealed),
            Err(SecretError::DoesNotOpen(secrets.key_id().to_owned()))
        );
    }

    #[test]
    fn a_secret_read_with_another_key_is_an_error_naming_both_keys() {
        let (old, new) = (SecretsKey::generate(), SecretsKey::generate());
        let sealed = SecretBox::new(&old).seal(&tenant("t1"), "hunter2");

        let error = SecretBox::new(&new)
            .open(&tenant("t1"), &sealed)
            .unwrap_err();

        assert_eq!(
            error,
            SecretError::OtherKey {
                sealed_with: old.id(),
                ours: new.id()
            }
        );
        assert!(error.to_string().contains(&old.id()));
    }

    #[test]
    fn altered_or_garbled_values_are_errors_not_panics() {
        let secrets = SecretBox::new(&SecretsKey::generate());
        let sealed = secrets.seal(&tenant("t1"), "hunter2");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();

        assert!(matches!(
            secrets.open(&tenant("t1"), &altered),
            Err(SecretError::DoesNotOpen(_) | SecretError::Malformed)
        ));
        for garbage in [
            "",
            "v1",
            "v2.x.y",
            &format!("v1.{}.", secrets.key_id()),
            "v1.a.b.c",
        ] {
            assert!(secrets.open(&tenant("t1"), garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn keys_parse_from_hex_or_base64_and_anything_else_is_refused() {
        let key = SecretsKey::generate();
        assert_eq!(key.to_hex().parse::<SecretsKey>().unwrap(), key);
        assert_eq!(STANDARD.encode(key.0).parse::<SecretsKey>().unwrap(), key);
        assert_eq!(
            URL_SAFE_NO_PAD.encode(key.0).parse::<SecretsKey>().unwrap(),
            key
        );
        for bad in ["", "abc", &"ab".repeat(31), &STANDARD.encode([0u8; 16])] {
            assert!(bad.parse::<SecretsKey>().is_err(), "{bad:?}");
        }
        assert!(!format!("{key:?}").contains(&key.to_hex()));
    }

    #[test]
    fn the_dev_key_file_is_made_once_and_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEV_KEY_FILE);

        let made = load_or_create_key_file(&path).unwrap();
        let read = load_or_create_key_file(&path).unwrap();

        assert_eq!(made, read);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
