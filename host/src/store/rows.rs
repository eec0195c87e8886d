//! Between rows and records, once for both backends: a row of either backend read by column
//! name ([`Columns`]), and each record's mapping from its columns. Every statement that
//! answers a record selects the columns its mapper names, JSON as text, in its own dialect;
//! parsing stored values (and reporting what does not parse as corruption) is in
//! [`super::codec`]. Where several rows make one answer (a page of members, journey stats,
//! the contacts a lookup finds) their assembly is here too.

use super::codec::{
    parse_email_status, parse_json, parse_object, parse_run_status, parse_skip_reason,
    parse_suppressed_reason, run_count, scopes_from_text, to_u32,
};
use super::flows::BackfillProgress;
use super::{
    ApiKeyRecord, BackfillStatus, BucketCounts, BucketMember, ContactRecord, EmailHistory,
    EmailRecord, EmailSenderRecord, EventRecord, JourneyHistory, JourneyStats, MemberPage,
    ModuleOrigin, ModuleRecord, ModuleVersionRecord, OperatorKeyRecord, OutboxEmail, RunEffect,
    RunRecord, StoreError, StoreResult, Tenant, TenantKey, TenantTemplate,
};
use crate::buckets::absence::{AbsenceCursor, AbsenceRow};
use crate::buckets::backfill_rules::{BackfillMode, BackfillState};
use crate::buckets::membership::ActiveMembership;
use crate::buckets::reconcile_rules::{JoinCandidate, ReconcileMember};
use crate::clock::Timestamp;
use crate::contacts::normalize_email;
use crate::ids::{ApiKeyId, ContactId, EmailId, EventId, RunId, TenantId};
use crate::tenancy::limits::{Limit, LimitOverrides, LimitPatch, Setting, TenantLimitsRecord};
use crate::usage::{Day, DayUsage, UsageCounts};
use serde_json::{Map, Value};
use sqlx::Postgres;
use std::collections::{HashMap, HashSet};

/// A value a column of either backend decodes to.
pub(crate) trait Column:
    rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>
{
}

impl<T> Column for T where
    T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>
{
}

/// A row of either backend, read by column name.
pub(crate) trait Columns {
    fn column<T: Column>(&self, name: &str) -> StoreResult<T>;

    /// A time column (milliseconds since the epoch).
    fn time(&self, name: &str) -> StoreResult<Timestamp> {
        self.column(name).map(Timestamp)
    }

    fn time_opt(&self, name: &str) -> StoreResult<Option<Timestamp>> {
        Ok(self.column::<Option<i64>>(name)?.map(Timestamp))
    }

    /// A count column, which is never negative.
    fn count(&self, what: &'static str, name: &str) -> StoreResult<u64> {
        u64::try_from(self.column::<i64>(name)?).map_err(|e| StoreError::corrupt(what, e))
    }

    /// A JSON object column, read as text.
    fn object(
        &self,
        what: &'static str,
        name: &str,
    ) -> StoreResult<serde_json::Map<String, serde_json::Value>> {
        parse_object(what, &self.column::<String>(name)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn column<T: Column>(&self, name: &str) -> StoreResult<T> {
        Ok(self.get(name)?)
    }

    /// Parsed from the row's own text, without a copy (contacts are read on ingest's path).
    fn object(&self, what: &'static str, name: &str) -> StoreResult<Map<String, Value>> {
        let text = self
            .get_ref(name)?
            .as_str()
            .map_err(|e| StoreError::corrupt(what, e))?;
        parse_object(what, text)
    }
}

impl Columns for sqlx::postgres::PgRow {
    fn column<T: Column>(&self, name: &str) -> StoreResult<T> {
        Ok(sqlx::Row::try_get(self, name)?)
    }
}

pub(crate) fn tenant_from_row(row: &impl Columns) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: TenantId(row.column("id")?),
        name: row.column("name")?,
        created_at: row.time("created_at")?,
        suspended_at: row.time_opt("suspended_at")?,
    })
}

/// A sum of usage counters: the columns `events`, `activations`, `cpu_us`, `emails_sent`.
pub(crate) fn usage_counts_from_row(row: &impl Columns) -> StoreResult<UsageCounts> {
    Ok(UsageCounts {
        events: row.count("usage events", "events")?,
        activations: row.count("usage activations", "activations")?,
        cpu_us: row.count("usage cpu", "cpu_us")?,
        emails_sent: row.count("usage emails", "emails_sent")?,
    })
}

/// A day's sum of usage counters: its `day` and [`usage_counts_from_row`]'s columns.
pub(crate) fn day_usage_from_row(row: &impl Columns) -> StoreResult<DayUsage> {
    Ok(DayUsage {
        day: Day(row.column("day")?),
        counts: usage_counts_from_row(row)?,
    })
}

/// The columns [`tenant_from_row`] reads.
macro_rules! tenant_columns {
    () => {
        "id, name, created_at, suspended_at"
    };
}
pub(crate) use tenant_columns;

/// The columns [`operator_key_from_row`] reads.
macro_rules! operator_key_columns {
    () => {
        "id, name, created_at, revoked_at"
    };
}
pub(crate) use operator_key_columns;

pub(crate) fn operator_key_from_row(row: &impl Columns) -> StoreResult<OperatorKeyRecord> {
    Ok(OperatorKeyRecord {
        id: ApiKeyId(row.column("id")?),
        name: row.column("name")?,
        created_at: row.time("created_at")?,
        revoked_at: row.time_opt("revoked_at")?,
    })
}

/// The columns [`api_key_from_row`] reads.
macro_rules! api_key_columns {
    () => {
        "id, tenant_id, name, scopes, created_at, revoked_at"
    };
}
pub(crate) use api_key_columns;

pub(crate) fn api_key_from_row(row: &impl Columns) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: ApiKeyId(row.column("id")?),
        tenant_id: TenantId(row.column("tenant_id")?),
        name: row.column("name")?,
        scopes: scopes_from_text(&row.column::<String>("scopes")?)?,
        created_at: row.time("created_at")?,
        revoked_at: row.time_opt("revoked_at")?,
    })
}

/// The columns [`tenant_key_from_row`] reads, from `api_keys k JOIN tenants t`.
macro_rules! tenant_key_columns {
    () => {
        "k.id, k.tenant_id, k.name, k.scopes, k.created_at, k.revoked_at, \
         t.name AS tenant_name, t.created_at AS tenant_created_at, t.suspended_at"
    };
}
pub(crate) use tenant_key_columns;

pub(crate) fn tenant_key_from_row(row: &impl Columns) -> StoreResult<TenantKey> {
    let key = api_key_from_row(row)?;
    let tenant = Tenant {
        id: key.tenant_id.clone(),
        name: row.column("tenant_name")?,
        created_at: row.time("tenant_created_at")?,
        suspended_at: row.time_opt("suspended_at")?,
    };
    Ok(TenantKey { key, tenant })
}

/// The columns [`module_version_from_row`] reads but `live_runs`, which each statement counts
/// in its own dialect; `manifest` is JSON text.
macro_rules! module_version_columns {
    () => {
        "tenant_id, hash, name, size_bytes, deployed_by, deployed_at, activated_at"
    };
}
pub(crate) use module_version_columns;

pub(crate) fn module_version_from_row(row: &impl Columns) -> StoreResult<ModuleVersionRecord> {
    Ok(ModuleVersionRecord {
        tenant_id: TenantId(row.column("tenant_id")?),
        hash: row.column("hash")?,
        name: row.column("name")?,
        manifest: parse_json("module manifest", &row.column::<String>("manifest")?)?,
        size_bytes: row.count("module size", "size_bytes")?,
        deployed_by: row.column::<Option<String>>("deployed_by")?.map(ApiKeyId),
        deployed_at: row.time("deployed_at")?,
        activated_at: row.time_opt("activated_at")?,
        live_runs: row.count("live run count", "live_runs")?,
    })
}

pub(crate) fn module_from_row(row: &impl Columns) -> StoreResult<ModuleRecord> {
    let origin: String = row.column("origin")?;
    Ok(ModuleRecord {
        name: row.column("name")?,
        active_hash: row.column("active_hash")?,
        origin: ModuleOrigin::parse(&origin)
            .ok_or_else(|| StoreError::corrupt("module origin", format!("{origin:?}")))?,
        updated_at: row.time("updated_at")?,
        active_bytes: row.count("module size", "active_bytes")?,
    })
}

/// The columns [`tenant_limits_from_row`] reads: the tenant, each limit's column in the
/// order of [`Limit::ALL`], and when they last changed.
macro_rules! tenant_limits_columns {
    () => {
        "tenant_id, activations_in_flight, cpu_budget_ms, memory_mb, ingest_rate, \
         ingest_burst, module_bytes, run_steps, updated_at"
    };
}
pub(crate) use tenant_limits_columns;

pub(crate) fn tenant_limits_from_row(row: &impl Columns) -> StoreResult<TenantLimitsRecord> {
    let mut own = LimitOverrides::default();
    for limit in Limit::ALL {
        *own.get_mut(limit) = row
            .column::<Option<i64>>(limit.column())?
            .map(|value| u64::try_from(value).map_err(|e| StoreError::corrupt("tenant limit", e)))
            .transpose()?;
    }
    Ok(TenantLimitsRecord {
        tenant_id: TenantId(row.column("tenant_id")?),
        own,
        updated_at: row.time("updated_at")?,
    })
}

/// The statement that applies a [`LimitPatch`] to a tenant's row in one go, in a dialect
/// whose `n`-th parameter is `placeholder(n)`: the tenant first, then each limit's new value
/// and whether the patch sets it, then the time (see [`tenant_limits_params`]). A tenant that
/// does not exist gets no row, and the statement answers none.
pub(crate) fn change_tenant_limits_sql(placeholder: impl Fn(usize) -> String) -> String {
    let value = |i: usize| placeholder(2 + 2 * i);
    let touched = |i: usize| placeholder(3 + 2 * i);
    let at = placeholder(2 + 2 * Limit::ALL.len());
    let columns = Limit::ALL.map(Limit::column).join(", ");
    let values: Vec<String> = (0..Limit::ALL.len()).map(value).collect();
    let updates: Vec<String> = Limit::ALL
        .iter()
        .enumerate()
        .map(|(i, limit)| {
            let column = limit.column();
            format!(
                "{column} = CASE WHEN {} THEN excluded.{column} ELSE tenant_limits.{column} END",
                touched(i)
            )
        })
        .collect();
    format!(
        "INSERT INTO tenant_limits (tenant_id, {columns}, updated_at) \
         SELECT id, {values}, {at} FROM tenants WHERE id = {tenant} \
         ON CONFLICT (tenant_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at \
         RETURNING {returning}",
        values = values.join(", "),
        tenant = placeholder(1),
        updates = updates.join(", "),
        returning = tenant_limits_columns!(),
    )
}

/// Each limit's parameters for [`change_tenant_limits_sql`], in order: the value it is set
/// to (`None`: the host's default, and for a new row also a limit left unchanged), and whether
/// the patch sets it.
pub(crate) fn tenant_limits_params(patch: &LimitPatch) -> Vec<(Option<i64>, bool)> {
    Limit::ALL
        .iter()
        .map(|&limit| match *patch.get(limit) {
            // Ranges end far below i64::MAX (see `LimitRules::range`).
            Setting::Own(value) => (Some(i64::try_from(value).unwrap_or(i64::MAX)), true),
            Setting::HostDefault => (None, true),
            Setting::Unchanged => (None, false),
        })
        .collect()
}

pub(crate) fn contact_from_row(row: &impl Columns) -> StoreResult<ContactRecord> {
    Ok(ContactRecord {
        id: ContactId(row.column("id")?),
        tenant_id: TenantId(row.column("tenant_id")?),
        key: row.column("key")?,
        external_id: row.column("external_id")?,
        email: row.column("email")?,
        anonymous_id: row.column("anonymous_id")?,
        properties: row.object("contact properties", "properties")?,
        first_seen_at: row.time("first_seen_at")?,
        last_seen_at: row.time("last_seen_at")?,
        deleted_at: row.time_opt("deleted_at")?,
    })
}

pub(crate) fn event_from_row(row: &impl Columns) -> StoreResult<EventRecord> {
    Ok(EventRecord {
        id: EventId(row.column("id")?),
        name: row.column("name")?,
        properties: row.object("event properties", "properties")?,
        occurred_at: row.time("occurred_at")?,
        received_at: row.time("received_at")?,
        idempotency_key: row.column("idempotency_key")?,
    })
}

/// The columns [`run_from_row`] reads.
macro_rules! run_columns {
    () => {
        "id, tenant_id, journey_id, module_hash, contact_key, status, created_at, updated_at, \
         wake_at, activations, error"
    };
}
pub(crate) use run_columns;

pub(crate) fn run_from_row(row: &impl Columns) -> StoreResult<RunRecord> {
    Ok(RunRecord {
        id: RunId(row.column("id")?),
        tenant_id: TenantId(row.column("tenant_id")?),
        journey_id: row.column("journey_id")?,
        module_hash: row.column("module_hash")?,
        contact_key: row.column("contact_key")?,
        status: parse_run_status(&row.column::<String>("status")?)?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        wake_at: row.time_opt("wake_at")?,
        activations: to_u32("run activations", row.column("activations")?)?,
        error: row.column("error")?,
    })
}

/// The columns [`email_from_row`] reads.
macro_rules! email_columns {
    () => {
        "id, tenant_id, run_id, contact_key, to_address, template, subject, body, html_body, \
         status, suppressed_reason, attempts, last_error, created_at, sent_at"
    };
}
pub(crate) use email_columns;

pub(crate) fn email_from_row(row: &impl Columns) -> StoreResult<EmailRecord> {
    Ok(EmailRecord {
        id: EmailId(row.column("id")?),
        tenant_id: TenantId(row.column("tenant_id")?),
        run_id: row.column::<Option<String>>("run_id")?.map(RunId),
        contact_key: row.column("contact_key")?,
        to: row.column("to_address")?,
        template: row.column("template")?,
        subject: row.column("subject")?,
        body: row.column("body")?,
        html: row.column("html_body")?,
        suppressed_reason: parse_suppressed_reason(row.column("suppressed_reason")?)?,
        status: parse_email_status(&row.column::<String>("status")?)?,
        attempts: to_u32("email attempts", row.column("attempts")?)?,
        last_error: row.column("last_error")?,
        created_at: row.time("created_at")?,
        sent_at: row.time_opt("sent_at")?,
    })
}

/// The columns [`template_from_row`] reads.
macro_rules! template_columns {
    () => {
        "key, subject, text_body, html_body, created_at, updated_at"
    };
}
pub(crate) use template_columns;

pub(crate) fn template_from_row(row: &impl Columns) -> StoreResult<TenantTemplate> {
    Ok(TenantTemplate {
        key: row.column("key")?,
        subject: row.column("subject")?,
        text: row.column("text_body")?,
        html: row.column("html_body")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// The columns [`email_sender_from_row`] reads.
macro_rules! email_sender_columns {
    () => {
        "from_name, from_address, reply_to, transport, secret, created_at, updated_at"
    };
}
pub(crate) use email_sender_columns;

pub(crate) fn email_sender_from_row(row: &impl Columns) -> StoreResult<EmailSenderRecord> {
    Ok(EmailSenderRecord {
        from_name: row.column("from_name")?,
        from_address: row.column("from_address")?,
        reply_to: row.column("reply_to")?,
        transport: row.column("transport")?,
        secret: row.column("secret")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// The columns [`backfill_status_from_row`] reads.
macro_rules! backfill_status_columns {
    () => {
        "bucket_id, criteria_hash, backfill_state, backfill_mode, target_hash, backfill_done, \
         backfill_total, backfill_joined, backfill_left, backfill_error, backfill_started_at, \
         backfill_finished_at, updated_at"
    };
}
pub(crate) use backfill_status_columns;

pub(crate) fn backfill_status_from_row(row: &impl Columns) -> StoreResult<BackfillStatus> {
    let state: String = row.column("backfill_state")?;
    let mode: String = row.column("backfill_mode")?;
    let lenient = |column: &str| -> StoreResult<u64> {
        Ok(u64::try_from(row.column::<i64>(column)?).unwrap_or(0))
    };
    Ok(BackfillStatus {
        bucket_id: row.column("bucket_id")?,
        criteria_hash: row.column("criteria_hash")?,
        state: BackfillState::parse(&state)
            .ok_or_else(|| StoreError::corrupt("backfill state", &state))?,
        mode: BackfillMode::parse(&mode)
            .ok_or_else(|| StoreError::corrupt("backfill mode", &mode))?,
        target_hash: row.column("target_hash")?,
        done: lenient("backfill_done")?,
        total: row
            .column::<Option<i64>>("backfill_total")?
            .map(|t| u64::try_from(t).unwrap_or(0)),
        joined: lenient("backfill_joined")?,
        left: lenient("backfill_left")?,
        error: row.column("backfill_error")?,
        started_at: row.time_opt("backfill_started_at")?,
        finished_at: row.time_opt("backfill_finished_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// The columns [`bucket_counts_from_row`] reads.
macro_rules! bucket_count_columns {
    () => {
        "COUNT(*) FILTER (WHERE m.status = 'active') AS active, \
         COUNT(*) FILTER (WHERE m.status = 'left') AS left_count"
    };
}
pub(crate) use bucket_count_columns;

pub(crate) fn bucket_counts_from_row(row: &impl Columns) -> StoreResult<BucketCounts> {
    Ok(BucketCounts {
        active: row.count("membership count", "active")?,
        left: row.count("membership count", "left_count")?,
    })
}

/// The columns [`contact_membership_from_row`] reads.
macro_rules! contact_membership_columns {
    () => {
        "m.id, m.bucket_id, m.contact_key, m.entered_at, m.entry_count"
    };
}
pub(crate) use contact_membership_columns;

/// A person's current membership, as the bucket reads answer it.
pub(crate) fn contact_membership_from_row(
    row: &impl Columns,
) -> StoreResult<super::ActiveMembership> {
    Ok(super::ActiveMembership {
        id: row.column("id")?,
        bucket_id: row.column("bucket_id")?,
        contact_key: row.column("contact_key")?,
        entered_at: row.time("entered_at")?,
        entry_count: to_u32("membership entry count", row.column("entry_count")?)?,
    })
}

pub(crate) fn bucket_member_from_row(row: &impl Columns) -> StoreResult<BucketMember> {
    Ok(BucketMember {
        id: row.column("id")?,
        contact_key: row.column("contact_key")?,
        email: row.column("email")?,
        entered_at: row.time("entered_at")?,
        entry_count: to_u32("membership entry count", row.column("entry_count")?)?,
    })
}

/// An active membership as the bucket rules see it.
pub(crate) fn active_membership_from_row(row: &impl Columns) -> StoreResult<ActiveMembership> {
    Ok(ActiveMembership {
        id: row.column("id")?,
        bucket_id: row.column("bucket_id")?,
        entry_count: to_u32("membership entry count", row.column("entry_count")?)?,
        entered_at: row.time("entered_at")?,
    })
}

/// A member a reconcile pass looks at: the membership, the person's properties, the dwell
/// anchor (`anchor`: the membership's, else its entry) and stamps.
pub(crate) fn reconcile_member_from_row(row: &impl Columns) -> StoreResult<ReconcileMember> {
    Ok(ReconcileMember {
        membership: active_membership_from_row(row)?,
        contact_key: row.column("contact_key")?,
        properties: row.object("contact properties", "properties")?,
        dwell_anchor: row.time("anchor")?,
        dwell_state: row.object("membership dwell state", "dwell_state")?,
    })
}

/// A page of a bucket's members from the `size + 1` read for it (the one past the page only
/// tells that another follows, and the page's last member is then the cursor) and the count
/// of current members.
pub(crate) fn member_page(
    mut members: Vec<BucketMember>,
    size: u32,
    total: i64,
) -> StoreResult<MemberPage> {
    let next_cursor = if members.len() > size as usize {
        members.truncate(size as usize);
        members.last().map(|m| m.id.clone())
    } else {
        None
    };
    Ok(MemberPage {
        members,
        next_cursor,
        total: u64::try_from(total).map_err(|e| StoreError::corrupt("member count", e))?,
    })
}

/// The values a lookup of contacts by user id or email matches: the user id trimmed, the
/// email normalised; `None` when neither is left to look up.
pub(crate) fn lookup_values<'a>(
    user_id: &'a Option<String>,
    email: &Option<String>,
) -> Option<(Option<&'a str>, Option<String>)> {
    let user_id = user_id.as_deref().map(str::trim).filter(|u| !u.is_empty());
    let email = email.as_deref().and_then(normalize_email);
    (user_id.is_some() || email.is_some()).then_some((user_id, email))
}

/// The contacts found, each once, where first found (one can match directly and through an
/// alias).
pub(crate) fn each_contact_once(
    found: impl IntoIterator<Item = StoreResult<ContactRecord>>,
) -> StoreResult<Vec<ContactRecord>> {
    let mut seen = HashSet::new();
    let mut contacts = Vec::new();
    for contact in found {
        let contact = contact?;
        if seen.insert(contact.id.clone()) {
            contacts.push(contact);
        }
    }
    Ok(contacts)
}

/// A running backfill's progress, from its config row's `backfill_*` columns.
pub(crate) fn backfill_progress_from_row(row: &impl Columns) -> StoreResult<BackfillProgress> {
    Ok(BackfillProgress {
        cursor: row.column("backfill_cursor")?,
        done: row.column("backfill_done")?,
        total: row.column("backfill_total")?,
        joined: row.column("backfill_joined")?,
        left: row.column("backfill_left")?,
    })
}

pub(crate) fn absence_cursor_from_row(row: &impl Columns) -> StoreResult<AbsenceCursor> {
    Ok(AbsenceCursor {
        after_at: row.column("after_at")?,
        after_id: row.column("after_id")?,
    })
}

/// An event an absence scan read, its person (`contact_key`, `properties`) a join candidate
/// when `candidate`.
pub(crate) fn absence_row_from_row(row: &impl Columns) -> StoreResult<AbsenceRow> {
    let candidate = if row.column("candidate")? {
        Some(JoinCandidate {
            contact_key: row.column("contact_key")?,
            properties: row.object("contact properties", "properties")?,
        })
    } else {
        None
    };
    Ok(AbsenceRow {
        occurred_at: row.column("occurred_at")?,
        event_id: row.column("id")?,
        candidate,
    })
}

/// A person's runs of a journey: `entries`, `completed` and `last_completed_at`.
pub(crate) fn journey_history_from_row(row: &impl Columns) -> StoreResult<JourneyHistory> {
    Ok(JourneyHistory {
        entries: run_count(row.column("entries")?)?,
        completed: run_count(row.column("completed")?)?,
        last_completed_at: row.time_opt("last_completed_at")?,
    })
}

/// The emails of a template to an address: how many (`n`) and `last_sent_at`.
pub(crate) fn email_history_from_row(row: &impl Columns) -> StoreResult<EmailHistory> {
    Ok(EmailHistory {
        count: run_count(row.column("n")?)?,
        last_sent_at: row.time_opt("last_sent_at")?,
    })
}

/// A tenant's journey stats, gathered from the rows of its three reads, each row naming its
/// `journey_id`.
#[derive(Default)]
pub(crate) struct JourneyStatsRows(HashMap<String, JourneyStats>);

impl JourneyStatsRows {
    /// A count of the journey's runs in one `status`: `n`.
    pub(crate) fn run_count(&mut self, row: &impl Columns) -> StoreResult<()> {
        let status = parse_run_status(&row.column::<String>("status")?)?;
        let n = run_count(row.column("n")?)?;
        self.of(row)?.runs.insert(status, n);
        Ok(())
    }

    /// A skip counter: `reason`, `count`.
    pub(crate) fn skip_count(&mut self, row: &impl Columns) -> StoreResult<()> {
        let reason = parse_skip_reason(&row.column::<String>("reason")?)?;
        let n = run_count(row.column("count")?)?;
        self.of(row)?.skips.insert(reason, n);
        Ok(())
    }

    /// The admin switch: `enabled`.
    pub(crate) fn switch(&mut self, row: &impl Columns) -> StoreResult<()> {
        self.of(row)?.admin_enabled = Some(row.column("enabled")?);
        Ok(())
    }

    fn of(&mut self, row: &impl Columns) -> StoreResult<&mut JourneyStats> {
        Ok(self.0.entry(row.column("journey_id")?).or_default())
    }

    pub(crate) fn into_map(self) -> HashMap<String, JourneyStats> {
        self.0
    }
}

/// A claimed email with its next-attempt time, for [`in_claim_order`].
pub(crate) fn claimed_email_from_row(row: &impl Columns) -> StoreResult<(i64, OutboxEmail)> {
    Ok((
        row.column("next_attempt_at")?,
        OutboxEmail {
            id: EmailId(row.column("id")?),
            tenant_id: TenantId(row.column("tenant_id")?),
            to: row.column("to_address")?,
            subject: row.column("subject")?,
            body: row.column("body")?,
            html: row.column("html_body")?,
            unsubscribe_url: row.column("unsubscribe_url")?,
            attempts: to_u32("email attempts", row.column("attempts")?)?,
        },
    ))
}

/// A claimed effect with its creation time, for [`in_claim_order`].
pub(crate) fn claimed_effect_from_row(row: &impl Columns) -> StoreResult<(i64, RunEffect)> {
    let seq: i64 = row.column("seq")?;
    Ok((
        row.column("created_at")?,
        RunEffect {
            run_id: RunId(row.column("run_id")?),
            seq: u32::try_from(seq).unwrap_or(u32::MAX),
            tenant_id: TenantId(row.column("tenant_id")?),
            effect: parse_json("run effect", &row.column::<String>("payload")?)?,
        },
    ))
}

/// What a claim took, oldest first (its time, then its identity): `UPDATE … RETURNING` does
/// not keep the order of the subquery that picked the rows.
pub(crate) fn in_claim_order<T: ClaimOrder>(mut claimed: Vec<(i64, T)>) -> Vec<T> {
    claimed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.tie_break(&b.1)));
    claimed.into_iter().map(|(_, item)| item).collect()
}

/// How two claimed items due at the same time are ordered.
pub(crate) trait ClaimOrder {
    fn tie_break(&self, other: &Self) -> std::cmp::Ordering;
}

impl ClaimOrder for OutboxEmail {
    fn tie_break(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}

impl ClaimOrder for RunEffect {
    fn tie_break(&self, other: &Self) -> std::cmp::Ordering {
        (&self.run_id, self.seq).cmp(&(&other.run_id, other.seq))
    }
}
