//! What every backend does the same way between records and columns, whatever its dialect:
//! parsing stored text (JSON, statuses, scopes, counts) and reporting what does not parse as
//! corruption, serialising JSON, list paging limits, and the tallies of runs a transaction
//! started and skipped.
//! Only plain Rust here: the SQL stays in each backend.

use super::{
    EmailStatus, ExitedRun, IngestOutcome, SkippedRun, StartedRun, StoreError, StoreResult,
    SuppressedReason,
};
use crate::clock::MAX_OFFSET_MS;
use crate::ids::TenantId;
use crate::journeys::journal::StepKind;
use crate::journeys::{RunStatus, SkipReason};
use crate::tenancy::Scope;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// List endpoints: the page when the filter says 0, and the cap.
const DEFAULT_LIST_LIMIT: u32 = 100;
const MAX_LIST_LIMIT: u32 = 1000;

/// The number of rows a list query returns for a requested limit (0 for the default page).
pub(super) fn list_limit(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_LIST_LIMIT,
        n => n.min(MAX_LIST_LIMIT),
    }
}

/// A row count as reported in a record (saturating: counts this large never happen).
/// The key a deleted contact's history moves to: its own, never a live contact's (a `#` and
/// the contact id cannot come from an identity value alone being reused).
pub(super) fn deleted_key(key: &str, contact_id: &str) -> String {
    format!("{key}#deleted:{contact_id}")
}

pub(super) fn count(rows: u64) -> u32 {
    u32::try_from(rows).unwrap_or(u32::MAX)
}

/// The host setting that holds the dev clock's offset, in milliseconds.
pub(super) const CLOCK_OFFSET_KEY: &str = "clock_offset_ms";

/// The dev clock's offset as stored (decimal text), 0 when none is stored.
/// The stored dev-clock offset, at most [`MAX_OFFSET_MS`] (an offset stored before there was a
/// maximum is read as the maximum, so the host still starts).
pub(super) fn parse_clock_offset(value: Option<String>) -> StoreResult<i64> {
    match value {
        None => Ok(0),
        Some(text) => text
            .parse::<i128>()
            .map(|offset| offset.clamp(0, i128::from(MAX_OFFSET_MS)) as i64)
            .map_err(|e| StoreError::corrupt("clock offset", format!("{text:?}: {e}"))),
    }
}

/// A `COUNT(*)` of a person's runs as the entry limits read it.
pub(super) fn run_count(total: i64) -> StoreResult<u64> {
    u64::try_from(total).map_err(|e| StoreError::corrupt("run count", e))
}

pub(super) fn to_u32(what: &'static str, value: i64) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| StoreError::corrupt(what, format!("{value} is out of range")))
}

pub(super) fn parse_run_status(text: &str) -> StoreResult<RunStatus> {
    RunStatus::parse(text).ok_or_else(|| StoreError::corrupt("run status", format!("{text:?}")))
}

pub(super) fn parse_email_status(text: &str) -> StoreResult<EmailStatus> {
    EmailStatus::parse(text).ok_or_else(|| StoreError::corrupt("email status", format!("{text:?}")))
}

pub(super) fn parse_suppressed_reason(
    text: Option<String>,
) -> StoreResult<Option<SuppressedReason>> {
    text.map(|text| {
        SuppressedReason::parse(&text)
            .ok_or_else(|| StoreError::corrupt("email suppressed reason", format!("{text:?}")))
    })
    .transpose()
}

pub(super) fn parse_step_kind(text: &str) -> StoreResult<StepKind> {
    StepKind::parse(text)
        .ok_or_else(|| StoreError::corrupt("journal step kind", format!("{text:?}")))
}

/// Scopes as stored: their names, space-separated.
pub(super) fn scopes_to_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn scopes_from_text(text: &str) -> StoreResult<Vec<Scope>> {
    text.split_whitespace()
        .map(|name| {
            Scope::parse(name)
                .ok_or_else(|| StoreError::corrupt("api key scope", format!("{name:?}")))
        })
        .collect()
}

pub(super) fn parse_json<T: DeserializeOwned>(what: &'static str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, e))
}

pub(super) fn parse_object(what: &'static str, text: &str) -> StoreResult<Map<String, Value>> {
    match parse_json(what, text)? {
        Value::Object(map) => Ok(map),
        other => Err(StoreError::corrupt(
            what,
            format!("expected a JSON object, found {other}"),
        )),
    }
}

/// JSON text for a column. Serialising these types cannot fail in practice (string-keyed maps
/// and derived structs); the error is reported rather than unwrapped all the same.
pub(super) fn to_json<T: Serialize + ?Sized>(what: &'static str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::corrupt(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_limits_default_and_cap() {
        assert_eq!(list_limit(0), DEFAULT_LIST_LIMIT);
        assert_eq!(list_limit(7), 7);
        assert_eq!(list_limit(u32::MAX), MAX_LIST_LIMIT);
    }

    #[test]
    fn scopes_round_trip_and_unknown_names_are_corruption() {
        let text = scopes_to_text(&[Scope::Ingest, Scope::Admin]);
        assert_eq!(text, "ingest admin");
        assert_eq!(
            scopes_from_text(&text).unwrap(),
            [Scope::Ingest, Scope::Admin]
        );
        assert!(matches!(
            scopes_from_text("ingest root"),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn objects_must_be_objects() {
        assert!(parse_object("x", r#"{"a":1}"#).is_ok());
        assert!(matches!(
            parse_object("x", "[1]"),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(to_u32("n", -1), Err(StoreError::Corrupt { .. })));
    }
}

/// The runs storing events started, those the enrollment guards skipped, and the live runs
/// the events ended (`exitOn`).
#[derive(Debug, Default)]
pub(super) struct StartedRuns {
    pub started: Vec<StartedRun>,
    pub skipped: Vec<SkippedRun>,
    pub exited: Vec<ExitedRun>,
}

impl StartedRuns {
    pub fn extend(&mut self, more: StartedRuns) {
        self.started.extend(more.started);
        self.skipped.extend(more.skipped);
        self.exited.extend(more.exited);
    }
}

/// Skips to add to the persisted counters, by (tenant, journey, reason), in that order: one
/// increment per key, and a fixed order so concurrent writers lock counter rows alike.
#[derive(Debug, Default)]
pub(super) struct SkipTally(BTreeMap<(TenantId, String, SkipReason), u64>);

impl SkipTally {
    /// The skips of one tenant's runs, for a write that counts them once at its end.
    pub fn of(tenant: &TenantId, skipped: &[SkippedRun]) -> SkipTally {
        let mut tally = SkipTally::default();
        tally.add(tenant, skipped);
        tally
    }

    pub fn add(&mut self, tenant: &TenantId, skipped: &[SkippedRun]) {
        for skip in skipped {
            *self
                .0
                .entry((tenant.clone(), skip.journey_id.clone(), skip.reason))
                .or_default() += 1;
        }
    }

    /// The outcome's skips, for a stored one.
    pub fn add_outcome(&mut self, tenant: &TenantId, outcome: &IngestOutcome) {
        if let IngestOutcome::Stored { skipped, .. } = outcome {
            self.add(tenant, skipped);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (tenant, journey, reason, increment), sorted.
    pub fn rows(&self) -> impl Iterator<Item = (&TenantId, &str, SkipReason, i64)> {
        self.0.iter().map(|((tenant, journey, reason), n)| {
            (
                tenant,
                journey.as_str(),
                *reason,
                i64::try_from(*n).unwrap_or(i64::MAX),
            )
        })
    }
}

pub(super) fn parse_skip_reason(text: &str) -> StoreResult<SkipReason> {
    SkipReason::parse(text).ok_or_else(|| StoreError::corrupt("skip reason", format!("{text:?}")))
}
