//! Tenancy: tenants, API keys and their scopes, and the operator's keys. Keys are random
//! secrets shown once; only their sha256 is stored. The embedded default creates one tenant on
//! first boot and writes its admin key to `<data-dir>/admin.key` (mode 0600); the first boot of
//! a database without operator keys writes one to `<data-dir>/operator.key` likewise. Each
//! tenant's limits, and the host's defaults for them, are in [`limits`].

pub mod limits;
mod scope;

pub use scope::Scope;

use crate::clock::{Clock, Timestamp};
use crate::ids::{ApiKeyId, TenantId};
use crate::store::{ApiKeyRecord, NewApiKey, NewOperatorKey, OperatorKeyRecord, Store, StoreError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const DEFAULT_TENANT: &str = "default";
pub const ADMIN_KEY_FILE: &str = "admin.key";
pub const OPERATOR_KEY_FILE: &str = "operator.key";
/// The longest tenant name.
pub const MAX_TENANT_NAME: usize = 64;
const KEY_PREFIX: &str = "wmk_";

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing a key to {0} failed: {1}")]
    KeyFile(PathBuf, std::io::Error),
}

/// The hash an API key is stored and looked up by.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.trim().as_bytes()))
}

/// A fresh secret: `wmk_` and 32 random bytes in hex.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// Parse a comma-separated scope list (`ingest,read,admin,deploy`).
pub fn parse_scopes(text: &str) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::new();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let scope = Scope::parse(name)
            .ok_or_else(|| format!("unknown scope {name:?}: use ingest, read, admin or deploy"))?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err("at least one scope is required".into());
    }
    scopes.sort();
    Ok(scopes)
}

/// A key name: 1 to 100 characters after trimming.
pub fn check_key_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err("must be 1 to 100 characters".into());
    }
    Ok(name)
}

/// A tenant name: 1 to 64 letters, digits, `-`, `_` or `.` after trimming, starting with a
/// letter or digit, and not shaped like a tenant id (routes accept either).
pub fn check_tenant_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_TENANT_NAME {
        return Err(format!("must be 1 to {MAX_TENANT_NAME} characters"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.chars().all(allowed) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(
            "may hold only letters, digits, '-', '_' and '.', and must start with a letter or digit"
                .into(),
        );
    }
    if uuid::Uuid::try_parse(name).is_ok() {
        return Err("must not look like a tenant id".into());
    }
    Ok(name)
}

/// Create an operator key; returns its record and the secret, which is never stored.
pub async fn create_operator_key(
    store: &dyn Store,
    name: &str,
    now: Timestamp,
) -> Result<(OperatorKeyRecord, String), StoreError> {
    let secret = generate_secret();
    let record = store
        .create_operator_key(NewOperatorKey {
            id: ApiKeyId::generate(),
            name: name.to_owned(),
            key_hash: hash_key(&secret),
            created_at: now,
        })
        .await?;
    Ok((record, secret))
}

/// On the first boot of a database without operator keys, make one and write it to
/// `<data-dir>/operator.key` (mode 0600); where it was written, when it was.
pub async fn bootstrap_operator_key(
    store: &dyn Store,
    data_dir: &Path,
    clock: &Clock,
) -> Result<Option<PathBuf>, TenancyError> {
    if store.operator_keys_exist().await? {
        return Ok(None);
    }
    let (_, secret) = create_operator_key(store, "operator (first boot)", clock.now()).await?;
    let path = data_dir.join(OPERATOR_KEY_FILE);
    write_secret_file(&path, &secret).map_err(|e| TenancyError::KeyFile(path.clone(), e))?;
    Ok(Some(path))
}

/// Create a key for a tenant; returns its record and the secret, which is never stored.
pub async fn create_key(
    store: &dyn Store,
    tenant: &TenantId,
    name: &str,
    scopes: Vec<Scope>,
    now: Timestamp,
) -> Result<(ApiKeyRecord, String), StoreError> {
    let secret = generate_secret();
    let record = store
        .create_api_key(NewApiKey {
            id: ApiKeyId::generate(),
            tenant_id: tenant.clone(),
            name: name.to_owned(),
            key_hash: hash_key(&secret),
            scopes,
            created_at: now,
        })
        .await?;
    Ok((record, secret))
}

/// What first boot did.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub tenant_id: TenantId,
    /// Where the admin key is, when this boot wrote it.
    pub admin_key_written: Option<PathBuf>,
}

/// Create the default tenant and its admin key on first boot; later boots (and a host that
/// lost the race to another booting at the same time) only look it up.
pub async fn bootstrap_default_tenant(
    store: &dyn Store,
    data_dir: &Path,
    clock: &Clock,
) -> Result<Bootstrap, TenancyError> {
    if let Some(tenant) = store.tenant_by_name(DEFAULT_TENANT).await? {
        return Ok(Bootstrap {
            tenant_id: tenant.id,
            admin_key_written: None,
        });
    }
    let now = clock.now();
    let (tenant, created) = store.create_tenant(DEFAULT_TENANT, now).await?;
    if !created {
        return Ok(Bootstrap {
            tenant_id: tenant.id,
            admin_key_written: None,
        });
    }
    let (_, secret) = create_key(
        store,
        &tenant.id,
        "admin (first boot)",
        Scope::ALL.to_vec(),
        now,
    )
    .await?;
    let path = data_dir.join(ADMIN_KEY_FILE);
    write_secret_file(&path, &secret).map_err(|e| TenancyError::KeyFile(path.clone(), e))?;
    Ok(Bootstrap {
        tenant_id: tenant.id,
        admin_key_written: Some(path),
    })
}

fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{secret}")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hash_stably() {
        let a = generate_secret();
        let b = generate_secret();
        assert!(a.starts_with("wmk_") && a.len() == 4 + 64);
        assert_ne!(a, b);
        assert_eq!(hash_key(&a), hash_key(&format!(" {a}\n")));
        assert_ne!(hash_key(&a), hash_key(&b));
    }

    #[test]
    fn tenant_names_are_short_plain_and_never_shaped_like_an_id() {
        assert_eq!(check_tenant_name(" acme-2.eu_west "), Ok("acme-2.eu_west"));
        assert!(check_tenant_name("").is_err());
        assert!(check_tenant_name(&"a".repeat(MAX_TENANT_NAME + 1)).is_err());
        assert!(check_tenant_name("acme corp").is_err());
        assert!(check_tenant_name("-acme").is_err());
        assert!(check_tenant_name("ünï").is_err());
        let id = crate::ids::TenantId::generate();
        assert!(
            check_tenant_name(id.as_str())
                .unwrap_err()
                .contains("tenant id")
        );
    }

    #[test]
    fn scopes_parse_from_a_list_and_unknown_ones_are_named() {
        assert_eq!(
            parse_scopes("read, ingest,read").unwrap(),
            vec![Scope::Ingest, Scope::Read]
        );
        assert!(parse_scopes("read,root").unwrap_err().contains("\"root\""));
        assert!(parse_scopes(" ").is_err());
    }
}
