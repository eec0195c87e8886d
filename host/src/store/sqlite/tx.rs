//! [`SqliteTx`]: the writer's open transaction, as the shared flows and rules see it. It
//! implements their primitives, each in the file of its concern: identity resolution in
//! `identity`, bucket membership in `membership`, ingest in `ingest`, the reconcile job's
//! reads and writes in `reconcile`.
//!
//! The primitives are synchronous (rusqlite on the writer thread); [`run_sync`] drives the
//! shared async algorithms over them without a runtime.

use super::contact_cache::ContactCache;
use crate::store::membership_cache::MembershipCache;
use crate::store::{StoreError, StoreResult};
use rusqlite::Connection;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

pub(super) struct SqliteTx<'a> {
    pub(super) conn: &'a Connection,
    /// The writer's contacts as last read or written, with the active memberships it knows,
    /// for the transactions that keep it true (`SqliteStore::write_with_contacts`). Identity
    /// lookups answer from it, and `update_contact` compares against it to write only what
    /// changed (an event from a known person usually changes only `last_seen_at` and
    /// properties, and rewriting the identity columns would rewrite their index entries too).
    contacts: Option<&'a mut ContactCache>,
}

impl<'a> SqliteTx<'a> {
    /// Primitives over `conn`, the writer's open transaction, without the contact cache: for
    /// writes that never resolve identities (the cache's memberships were forgotten first).
    pub(super) fn new(conn: &'a Connection) -> Self {
        Self {
            conn,
            contacts: None,
        }
    }

    /// Primitives over `conn` keeping the writer's contact cache (checked against other
    /// connections' commits first).
    pub(super) fn with_contacts(
        conn: &'a Connection,
        contacts: &'a mut ContactCache,
    ) -> StoreResult<Self> {
        contacts.check_version(conn)?;
        Ok(Self {
            conn,
            contacts: Some(contacts),
        })
    }

    /// The contact cache, which identity resolution needs.
    pub(super) fn contacts(&mut self) -> StoreResult<&mut ContactCache> {
        self.contacts.as_deref_mut().ok_or_else(|| {
            StoreError::Invalid(
                "identity resolution ran in a SQLite transaction without the contact cache".into(),
            )
        })
    }

    /// The active memberships the writer knows, when this transaction keeps them.
    pub(super) fn memberships(&mut self) -> Option<&mut MembershipCache> {
        self.contacts.as_deref_mut().map(ContactCache::memberships)
    }
}

/// Drive a future that never suspends to its output. The SQLite primitives are synchronous
/// underneath their `async fn`s, so the shared algorithms complete in one poll.
pub(super) fn run_sync<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("a SQLite store operation suspended"),
    }
}
