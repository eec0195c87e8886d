//! The store's interface, one small trait per concern. Each backend implements each trait in
//! the file of the same concern (`impl RunQueue for SqliteStore` in `sqlite/runs.rs`); a
//! component that needs one or two concerns takes just those, and [`Store`] is all of them,
//! for the places (the server's wiring, the tests) that hold the whole store.

mod backfills;
mod bucket_reads;
mod contacts;
mod effects;
mod email_preferences;
mod email_senders;
mod email_templates;
mod engine;
mod history;
mod host_settings;
mod ingest;
mod journey_admin;
mod memberships;
mod module_catalog;
mod operators;
mod outbox;
mod reconciles;
mod run_queue;
mod run_reads;
mod tenancy;
mod tenant_limits;
mod usage_reads;

pub use backfills::{Backfills, RETIRED};
pub use bucket_reads::BucketReads;
pub use contacts::Contacts;
pub use effects::RunEffects;
pub use email_preferences::EmailPreferences;
pub use email_senders::EmailSenders;
pub use email_templates::EmailTemplates;
pub use engine::Engine;
pub use history::History;
pub use host_settings::HostSettings;
pub use ingest::EventIngest;
pub use journey_admin::JourneyAdmin;
pub use memberships::ManualMemberships;
pub use memberships::{ManualChangeOutcome, MembershipChange};
pub use module_catalog::ModuleCatalog;
pub use operators::Operators;
pub use outbox::Outbox;
pub use reconciles::{ReconcileClaim, Reconciles};
pub use run_queue::RunQueue;
pub use run_reads::RunReads;
pub use tenancy::Tenancy;
pub use tenant_limits::TenantLimitStore;
pub use usage_reads::UsageReads;

/// Declares [`Store`] as every concern listed, and implements it for every type that has them
/// all: the list is written once.
macro_rules! store_of_concerns {
    ($($concern:ident),+ $(,)?) => {
        /// Every concern of the store: what a backend is. Implemented for every type that
        /// implements them all, so `Arc<dyn Store>` coerces to `Arc<dyn RunQueue>` (or any
        /// other concern).
        pub trait Store: $($concern +)+ 'static {}

        impl<S> Store for S where S: $($concern +)+ 'static {}
    };
}

store_of_concerns!(
    Tenancy,
    Operators,
    HostSettings,
    Engine,
    EventIngest,
    ManualMemberships,
    Contacts,
    RunQueue,
    RunReads,
    History,
    RunEffects,
    Outbox,
    EmailTemplates,
    EmailPreferences,
    EmailSenders,
    BucketReads,
    Backfills,
    JourneyAdmin,
    Reconciles,
    ModuleCatalog,
    TenantLimitStore,
    UsageReads,
);
