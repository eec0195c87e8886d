//! Each write transaction's workflow, written once above both backends.
//!
//! A flow is the order of steps and the rules between them; it runs inside a transaction the
//! backend opened, through the primitives the backend implements in its dialect (the SQL and
//! row mapping stay in `sqlite/` and `postgres/`). What differs between the backends stays in
//! their wrappers around a flow: SQLite runs it as one closure on its single writer thread;
//! PostgreSQL takes its locks up front, defers some writes to the end of the batch, and runs a
//! deadlock victim again.
//!
//! - [`ingest`]: an event in — dedupe, resolve the person, store the event, end the runs it
//!   exits, start the runs it triggers, move the person's buckets and ingest each transition.
//! - [`contacts`]: a contact upserted without an event, a manual bucket's member changed.
//! - [`bucket_configs`]: a module load's buckets recorded, a backfill restarted by hand.
//! - [`fair_claim`]: a claim of due runs, fair across tenants under their in-flight limits.
//! - [`backfill_page`]: one page of a bucket backfill.
//! - [`module_changes`]: a deploy, rollback or removal of a tenant's modules.
//! - [`reconcile_pass`]: one pass of the reconcile job, and when a pass can next have work.

pub mod backfill_page;
pub mod bucket_configs;
pub mod contacts;
pub mod fair_claim;
pub mod ingest;
pub mod module_changes;
pub mod reconcile_pass;

pub use backfill_page::{BackfillProgress, BackfillTx};
pub use bucket_configs::BucketConfigTx;
pub use contacts::LiveContactTx;
pub use ingest::{EnrollmentReads, IngestTx, NewRun};
pub use module_changes::ModuleChangeTx;
pub use reconcile_pass::{Earliest, MemberFilterSql, NextWorkReads, member_page};
