//! Tenancy: tenants, API keys and their scopes. Keys are random secrets shown once; only their
//! sha256 is stored. The embedded default creates one tenant on first boot and writes its admin
//! key to `<data-dir>/admin.key` (mode 0600).

mod scope;

pub use scope::Scope;

use crate::clock::{Clock, Timestamp};
use crate::ids::{ApiKeyId, TenantId};
use crate::store::{ApiKeyRecord, NewApiKey, Store, StoreError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const DEFAULT_TENANT: &str = "default";
pub const ADMIN_KEY_FILE: &str = "admin.key";
const KEY_PREFIX: &str = "wmk_";

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the admin key to {0} failed: {1}")]
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
    fn scopes_parse_from_a_list_and_unknown_ones_are_named() {
        assert_eq!(
            parse_scopes("read, ingest,read").unwrap(),
            vec![Scope::Ingest, Scope::Read]
        );
        assert!(parse_scopes("read,root").unwrap_err().contains("\"root\""));
        assert!(parse_scopes(" ").is_err());
    }
}
