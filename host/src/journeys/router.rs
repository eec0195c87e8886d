//! The journey router: which journeys an event starts. Matching is on the trigger event name
//! (exact) among the tenant's active, enabled journeys; entry limits are applied by the store
//! inside the ingest transaction, where they can see earlier runs consistently.

use crate::ids::TenantId;
use crate::modules::ModuleRegistry;
use crate::store::RunCandidate;

pub fn candidates(
    registry: &ModuleRegistry,
    tenant: &TenantId,
    event_name: &str,
) -> Vec<RunCandidate> {
    registry
        .triggered_by(tenant, event_name)
        .into_iter()
        .map(|(module, journey)| RunCandidate {
            journey_id: journey.id,
            module_hash: module.hash.clone(),
            entry_limit: journey.entry_limit,
        })
        .collect()
}
