//! The memberships of people an ingest transaction created, kept in memory and inserted
//! together before its events: one statement per batch instead of one per join (a new
//! user's sign-up joins their property buckets, a fifth of the bench's events).
//!
//! Exact, not a cache: a contact the transaction created has no membership rows in the
//! database (every row follows its person's key; see `MembershipCache::created`), and its
//! contact lock keeps every other writer away until the commit, so the rows kept here are
//! the person's whole history — epochs and the last leave are numbered from them. For such a
//! person the membership primitives answer from here and never read the table. Anything that
//! moves rows by SQL (a merge or a promotion re-points history) writes them out first
//! ([`PgTx::write_deferred_joins`](super::tx::PgTx)), after which the person is an
//! ordinary one again.

use crate::buckets::LeaveReason;
use crate::buckets::membership::{ActiveMembership, MembershipHistory, NewMembership};
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::store::StoreResult;
use sqlx::PgConnection;
use std::collections::HashMap;

/// One membership row, as it will be inserted.
#[derive(Debug)]
struct Row {
    new: NewMembership,
    entry_count: u32,
    left: Option<(Timestamp, LeaveReason)>,
    last_evaluated_at: Timestamp,
    updated_at: Timestamp,
}

impl Row {
    fn is_active(&self) -> bool {
        self.left.is_none()
    }

    fn active(&self) -> ActiveMembership {
        ActiveMembership {
            id: self.new.id.clone(),
            bucket_id: self.new.bucket_id.clone(),
            entry_count: self.entry_count,
            entered_at: self.new.entered_at,
        }
    }
}

/// What [`DeferredJoins::join`] did.
pub(super) enum DeferredJoin {
    /// The person's rows are not kept here: the table has them.
    NotHere,
    /// They already are a member (as the table's one-active index would refuse the join).
    AlreadyMember,
    /// Joined; the history the row was numbered from.
    Joined(MembershipHistory),
}

/// What [`DeferredJoins::leave`] did.
pub(super) enum DeferredLeave {
    /// The membership is not one of the rows kept here: the table has it, if anyone.
    NotHere,
    /// It is kept here and was not active.
    NotActive,
    /// It is kept here and left; the person's key.
    Left(String),
}

#[derive(Default)]
pub(super) struct DeferredJoins {
    /// Whether joins are deferred at all (ingest batches only).
    enabled: bool,
    /// The people whose rows are all here, by tenant and key (so a lookup borrows, never
    /// allocates): their rows' places in `rows`.
    people: HashMap<TenantId, HashMap<String, Vec<usize>>>,
    /// Each row's place in `rows`, by membership id (ids are unique across tenants).
    by_id: HashMap<String, usize>,
    rows: Vec<Row>,
}

impl DeferredJoins {
    pub(super) fn enabled() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }

    /// The transaction created this person's contact: their rows are kept here from now on.
    pub(super) fn created(&mut self, tenant: &TenantId, contact_key: &str) {
        if self.enabled {
            self.people
                .entry(tenant.clone())
                .or_default()
                .insert(contact_key.to_owned(), Vec::new());
        }
    }

    /// The places of the person's rows, when they are all here.
    fn places(&self, tenant: &TenantId, contact_key: &str) -> Option<&[usize]> {
        self.people.get(tenant)?.get(contact_key).map(Vec::as_slice)
    }

    /// Whether the person's rows are all here.
    pub(super) fn holds(&self, tenant: &TenantId, contact_key: &str) -> bool {
        self.places(tenant, contact_key).is_some()
    }

    /// The person's active memberships, when their rows are all here.
    pub(super) fn active_of(
        &self,
        tenant: &TenantId,
        contact_key: &str,
    ) -> Option<Vec<ActiveMembership>> {
        let places = self.places(tenant, contact_key)?;
        Some(
            places
                .iter()
                .map(|&i| &self.rows[i])
                .filter(|row| row.is_active())
                .map(Row::active)
                .collect(),
        )
    }

    /// A join of a person whose rows may all be here.
    pub(super) fn join(&mut self, m: &NewMembership) -> DeferredJoin {
        let Some(places) = self.places(&m.tenant_id, &m.contact_key) else {
            return DeferredJoin::NotHere;
        };
        let mut history = MembershipHistory {
            rows: 0,
            last_left_at: None,
        };
        for row in places
            .iter()
            .map(|&i| &self.rows[i])
            .filter(|row| row.new.bucket_id == m.bucket_id)
        {
            if row.is_active() {
                return DeferredJoin::AlreadyMember;
            }
            history.rows += 1;
            history.last_left_at = history.last_left_at.max(row.left.map(|(at, _)| at));
        }
        let place = self.rows.len();
        self.people
            .entry(m.tenant_id.clone())
            .or_default()
            .entry(m.contact_key.clone())
            .or_default()
            .push(place);
        self.by_id.insert(m.id.clone(), place);
        self.rows.push(Row {
            new: m.clone(),
            entry_count: history.next_epoch(),
            left: None,
            last_evaluated_at: m.entered_at,
            updated_at: m.entered_at,
        });
        DeferredJoin::Joined(history)
    }

    /// Close the membership `id` if it is kept here and active.
    pub(super) fn leave(
        &mut self,
        tenant: &TenantId,
        id: &str,
        at: Timestamp,
        reason: LeaveReason,
    ) -> DeferredLeave {
        let Some(row) = self.row_mut(tenant, id) else {
            return DeferredLeave::NotHere;
        };
        if !row.is_active() {
            return DeferredLeave::NotActive;
        }
        row.left = Some((at, reason));
        row.last_evaluated_at = at;
        row.updated_at = at;
        DeferredLeave::Left(row.new.contact_key.clone())
    }

    /// Re-evaluated at `at`, and a new expiry if given, when the membership `id` is kept
    /// here (and active); whether it is kept here.
    pub(super) fn touch(
        &mut self,
        tenant: &TenantId,
        id: &str,
        at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> bool {
        let Some(row) = self.row_mut(tenant, id) else {
            return false;
        };
        if row.is_active() {
            row.last_evaluated_at = at;
            row.new.expires_at = expires_at.or(row.new.expires_at);
        }
        true
    }

    fn row_mut(&mut self, tenant: &TenantId, id: &str) -> Option<&mut Row> {
        let place = *self.by_id.get(id)?;
        self.rows
            .get_mut(place)
            .filter(|row| row.new.tenant_id == *tenant)
    }

    /// Insert every row kept here (one statement); the people become ordinary ones, whose
    /// rows the table holds.
    pub(super) async fn write(&mut self, conn: &mut PgConnection) -> StoreResult<()> {
        self.people.clear();
        self.by_id.clear();
        let rows = std::mem::take(&mut self.rows);
        if rows.is_empty() {
            return Ok(());
        }
        let column = |f: fn(&Row) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
        let number = |f: fn(&Row) -> Option<i64>| rows.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO bucket_memberships (id, tenant_id, bucket_id, contact_key, status, \
             entry_count, source, entered_at, left_at, leave_reason, expires_at, max_dwell_at, \
             last_evaluated_at, updated_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::int8[], $7::text[], $8::int8[], $9::int8[], $10::text[], $11::int8[], \
             $12::int8[], $13::int8[], $14::int8[])",
        )
        .bind(column(|r| Some(r.new.id.clone())))
        .bind(column(|r| Some(r.new.tenant_id.as_str().to_owned())))
        .bind(column(|r| Some(r.new.bucket_id.clone())))
        .bind(column(|r| Some(r.new.contact_key.clone())))
        .bind(column(|r| {
            Some(if r.is_active() { "active" } else { "left" }.to_owned())
        }))
        .bind(number(|r| Some(i64::from(r.entry_count))))
        .bind(column(|r| Some(r.new.source.as_str().to_owned())))
        .bind(number(|r| Some(r.new.entered_at.0)))
        .bind(number(|r| r.left.map(|(at, _)| at.0)))
        .bind(column(|r| {
            r.left.map(|(_, reason)| reason.as_str().to_owned())
        }))
        .bind(number(|r| r.new.expires_at.map(|t| t.0)))
        .bind(number(|r| r.new.max_dwell_at.map(|t| t.0)))
        .bind(number(|r| Some(r.last_evaluated_at.0)))
        .bind(number(|r| Some(r.updated_at.0)))
        .execute(conn)
        .await?;
        Ok(())
    }
}
