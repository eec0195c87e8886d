//! A change of a tenant's modules, once for both backends: the revision compare-and-swap that
//! makes a deploy commit only over the set it checked, then each change, then the word to
//! other hosts.

use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::{ModuleChange, ModuleOrigin, NewModuleVersion, StoreResult};

/// What [`change_modules`] asks of a backend inside its open write transaction.
#[allow(async_fn_in_trait)] // implemented only by this crate's backends; see `IdentityTx`
pub trait ModuleChangeTx {
    /// Move the tenant's module revision on from `expected`; `None` when it is elsewhere.
    async fn bump_module_revision(
        &mut self,
        tenant: &TenantId,
        expected: i64,
    ) -> StoreResult<Option<i64>>;
    /// Store the version unless it is stored (a version recorded without its component gets
    /// it), as activated now.
    async fn put_module_version(
        &mut self,
        tenant: &TenantId,
        version: &NewModuleVersion,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Stamp a stored version of the module as activated now.
    async fn mark_module_version_activated(
        &mut self,
        tenant: &TenantId,
        name: &str,
        hash: &str,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Point the module at `active_hash` (`None`: removed), creating its row when new.
    async fn set_active_module_version(
        &mut self,
        tenant: &TenantId,
        name: &str,
        active_hash: Option<&str>,
        origin: Option<ModuleOrigin>,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Tell the other hosts on the database, once the transaction commits.
    async fn announce_module_change(&mut self, tenant: &TenantId) -> StoreResult<()>;
}

/// Apply `changes` if the tenant's modules are still at `expected_revision`; the new revision,
/// or `None` (nothing written) when another change got there first.
pub async fn change_modules(
    tx: &mut impl ModuleChangeTx,
    tenant: &TenantId,
    expected_revision: i64,
    changes: &[ModuleChange],
    at: Timestamp,
) -> StoreResult<Option<i64>> {
    let Some(revision) = tx.bump_module_revision(tenant, expected_revision).await? else {
        return Ok(None);
    };
    for change in changes {
        match change {
            ModuleChange::Deploy { version, origin } => {
                tx.put_module_version(tenant, version, at).await?;
                tx.set_active_module_version(
                    tenant,
                    &version.name,
                    Some(&version.hash),
                    Some(*origin),
                    at,
                )
                .await?;
            }
            ModuleChange::Activate { name, hash, origin } => {
                tx.mark_module_version_activated(tenant, name, hash, at)
                    .await?;
                tx.set_active_module_version(tenant, name, Some(hash), Some(*origin), at)
                    .await?;
            }
            ModuleChange::Remove { name } => {
                tx.set_active_module_version(tenant, name, None, None, at)
                    .await?;
            }
        }
    }
    tx.announce_module_change(tenant).await?;
    Ok(Some(revision))
}
