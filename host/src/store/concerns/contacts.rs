//! Contacts: upsert without an event, lookups, a person's events, deletion.

use crate::clock::Timestamp;
use crate::contacts::Identity;
use crate::ids::TenantId;
use crate::store::{
    ContactLookup, ContactRecord, ContactUpsert, DeletedContact, EventRecord, IngestRouting,
    ReceivedEvents, StoreResult,
};
use async_trait::async_trait;
use serde_json::Map;
use serde_json::Value;
use std::sync::Arc;

#[async_trait]
pub trait Contacts: Send + Sync {
    /// Create or update a contact through [`identity::resolve`], without an event. The
    /// property buckets the changed properties can move are re-evaluated in the same
    /// transaction, and each transition ingested as [`crate::store::EventIngest::ingest`] does.
    async fn upsert_contact(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        properties: &Map<String, Value>,
        now: Timestamp,
        routing: Arc<dyn IngestRouting>,
    ) -> StoreResult<ContactUpsert>;
    /// Live contacts matching the lookup (through aliases too). A key or user id finds at
    /// most one; `Any` finds each live contact matching either of its keys.
    async fn find_contacts(
        &self,
        tenant: &TenantId,
        lookup: &ContactLookup,
    ) -> StoreResult<Vec<ContactRecord>>;
    /// A person's events (stored under this resolved key), newest first by occurred-at, at
    /// most `limit` (0 for the default page, capped), only those named `name` when given.
    async fn contact_events(
        &self,
        tenant: &TenantId,
        contact_key: &str,
        name: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>>;
    /// A person's events of one name received in a span, oldest first (see
    /// [`ReceivedEvents`]): what a waiting run looks through.
    async fn events_received(
        &self,
        tenant: &TenantId,
        request: &ReceivedEvents,
    ) -> StoreResult<Vec<EventRecord>>;
    /// Soft-delete the live contact with this key (or alias): it stops resolving, its live runs
    /// exit (timers removed), its queued emails are cancelled, and its personal data (email,
    /// properties, run inputs' person snapshot, email addresses and contents) is erased.
    async fn delete_contact(
        &self,
        tenant: &TenantId,
        key: &str,
        now: Timestamp,
    ) -> StoreResult<Option<DeletedContact>>;
}
