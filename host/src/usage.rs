//! Usage per tenant: what a tenant's work counted, per UTC day of the host clock — events
//! ingested, activations, the time guests ran, emails sent.
//!
//! This module owns the vocabulary: a [`Day`], the [`UsageCounts`] of one, the [`DayRange`] a
//! query asks for (and why one is refused), and the [`UsageTally`] a transaction adds. It
//! counts nothing itself and must not: each count is added by the store inside the
//! transaction that does the work (an ingest batch, a commit of activations, an email marked
//! sent), as that transaction's last statement, so a count is kept exactly when the work is.
//!
//! What counts:
//! - **events**: events ingested and stored — through the API or a journey's `trigger` — on
//!   the day they were received; not a duplicate of a used idempotency key, not an event
//!   refused as invalid, not a bucket transition's event (the host's, not the tenant's).
//! - **activations**: activations committed, on the day of the commit, whatever their
//!   outcome: a run failed by its guest counts (its guest ran), an activation whose lease was
//!   lost or that failed on the host side (retried) does not (nothing of it was kept).
//! - **CPU**: the time those activations' guests ran, in µs: instantiation and every poll of
//!   the handler — the host functions the guest calls synchronously included, waits for the
//!   host's I/O not (see `runtime::timed`).
//! - **emails sent**: emails marked sent after their transport took them, on the day of the
//!   send; not suppressed, cancelled or failed ones, and a late second report never.

use crate::clock::Timestamp;
use crate::ids::TenantId;
use chrono::{DateTime, NaiveDate};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The days a usage query covers when it names none: the last 30, today included.
pub const DEFAULT_DAYS: i32 = 30;
/// The most days one usage query may cover.
pub const MAX_DAYS: i32 = 366;

const MS_PER_DAY: i64 = 86_400_000;

/// A UTC day, as the days since 1970-01-01 (how the store keeps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

impl Day {
    /// The UTC day `at` falls on.
    pub fn of(at: Timestamp) -> Day {
        let days = at.0.div_euclid(MS_PER_DAY);
        Day(i32::try_from(days).unwrap_or(if days < 0 { i32::MIN } else { i32::MAX }))
    }

    /// `YYYY-MM-DD`, strictly.
    pub fn parse(text: &str) -> Option<Day> {
        // chrono accepts single-digit months and days; the API's dates are fixed-width.
        if text.len() != 10 {
            return None;
        }
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        let days = date
            .signed_duration_since(DateTime::UNIX_EPOCH.date_naive())
            .num_days();
        i32::try_from(days).ok().map(Day)
    }

    /// The day `days` after this one (before it, when negative).
    pub fn plus(self, days: i32) -> Day {
        Day(self.0.saturating_add(days))
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DateTime::from_timestamp_millis(i64::from(self.0) * MS_PER_DAY) {
            Some(at) => write!(f, "{}", at.format("%Y-%m-%d")),
            None => write!(f, "day {}", self.0),
        }
    }
}

/// What one tenant's work counted over some time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    pub events: u64,
    pub activations: u64,
    /// Time in guests, in microseconds.
    pub cpu_us: u64,
    pub emails_sent: u64,
}

impl UsageCounts {
    pub fn add(&mut self, other: &UsageCounts) {
        self.events = self.events.saturating_add(other.events);
        self.activations = self.activations.saturating_add(other.activations);
        self.cpu_us = self.cpu_us.saturating_add(other.cpu_us);
        self.emails_sent = self.emails_sent.saturating_add(other.emails_sent);
    }

    /// The time in guests in milliseconds, to the microsecond.
    pub fn cpu_ms(&self) -> f64 {
        self.cpu_us as f64 / 1000.0
    }
}

/// One day of a tenant's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayUsage {
    pub day: Day,
    pub counts: UsageCounts,
}

/// The days a usage query covers, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub from: Day,
    pub to: Day,
}

/// Why a usage query's range was refused, naming its parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("{param} must be a date as YYYY-MM-DD, not {value:?}")]
    Malformed { param: &'static str, value: String },
    #[error("from ({from}) is after to ({to})")]
    Reversed { from: Day, to: Day },
    #[error("from ({from}) to {to} covers {days} days; at most {MAX_DAYS} at once")]
    TooLong { from: Day, to: Day, days: i64 },
}

impl RangeError {
    /// The query parameter at fault.
    pub fn param(&self) -> &'static str {
        match self {
            RangeError::Malformed { param, .. } => param,
            RangeError::Reversed { .. } | RangeError::TooLong { .. } => "from",
        }
    }
}

impl DayRange {
    /// The range a query's `from` and `to` (`YYYY-MM-DD`, each optional) name: `to` defaults
    /// to `today`, `from` to the [`DEFAULT_DAYS`] ending at `to`.
    pub fn resolve(
        from: Option<&str>,
        to: Option<&str>,
        today: Day,
    ) -> Result<DayRange, RangeError> {
        let parse = |param: &'static str, value: &str| {
            Day::parse(value).ok_or_else(|| RangeError::Malformed {
                param,
                value: value.to_owned(),
            })
        };
        let to = to.map(|value| parse("to", value)).transpose()?;
        let from = from.map(|value| parse("from", value)).transpose()?;
        let to = to.unwrap_or(today);
        let from = from.unwrap_or_else(|| to.plus(1 - DEFAULT_DAYS));
        if from > to {
            return Err(RangeError::Reversed { from, to });
        }
        let days = i64::from(to.0) - i64::from(from.0) + 1;
        if days > i64::from(MAX_DAYS) {
            return Err(RangeError::TooLong { from, to, days });
        }
        Ok(DayRange { from, to })
    }
}

/// What one transaction adds to the counters: per tenant and day, so it writes each counter
/// row once, in (tenant, day) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageTally(BTreeMap<(TenantId, Day), UsageCounts>);

impl UsageTally {
    fn entry(&mut self, tenant: &TenantId, at: Timestamp) -> &mut UsageCounts {
        self.0.entry((tenant.clone(), Day::of(at))).or_default()
    }

    /// An event stored, received at `at`.
    pub fn event(&mut self, tenant: &TenantId, at: Timestamp) {
        self.entry(tenant, at).events += 1;
    }

    /// An activation committed at `at`, whose guest ran for `cpu`.
    pub fn activation(&mut self, tenant: &TenantId, at: Timestamp, cpu: Duration) {
        let counts = self.entry(tenant, at);
        counts.activations += 1;
        let cpu_us = u64::try_from(cpu.as_micros()).unwrap_or(u64::MAX);
        counts.cpu_us = counts.cpu_us.saturating_add(cpu_us);
    }

    /// An email marked sent at `at`.
    pub fn email_sent(&mut self, tenant: &TenantId, at: Timestamp) {
        self.entry(tenant, at).emails_sent += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (tenant, day, counts), in (tenant, day) order: the order rows are written in.
    pub fn rows(&self) -> impl Iterator<Item = (&TenantId, Day, &UsageCounts)> {
        self.0
            .iter()
            .map(|((tenant, day), counts)| (tenant, *day, counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = MS_PER_DAY;

    fn day(text: &str) -> Day {
        Day::parse(text).unwrap()
    }

    #[test]
    fn a_day_is_the_utc_date_of_the_host_clock_and_reads_back_as_written() {
        // 2026-12-07T23:59:59.999Z and the next millisecond
        let late = Timestamp(day("2026-12-07").0 as i64 * DAY + DAY - 1);
        assert_eq!(Day::of(late).to_string(), "2026-12-07");
        assert_eq!(Day::of(Timestamp(late.0 + 1)).to_string(), "2026-12-08");
        assert_eq!(Day::of(Timestamp(-1)).to_string(), "1969-12-31");
        assert_eq!(day("1970-01-01"), Day(0));
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "2026-1-01",
            "20261207",
            "",
            "today",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_range_defaults_to_the_last_thirty_days_and_refuses_naming_the_parameter() {
        let today = day("2026-12-07");
        let range = |from, to| DayRange::resolve(from, to, today);
        assert_eq!(
            range(None, None),
            Ok(DayRange {
                from: day("2026-11-08"),
                to: today
            })
        );
        assert_eq!(
            range(None, Some("2026-01-30")).unwrap().from,
            day("2026-01-01")
        );
        assert_eq!(range(Some("2026-12-01"), None).unwrap().to, today);
        let one_year = range(Some("2025-12-07"), Some("2026-12-07")).unwrap();
        assert_eq!(one_year.to.0 - one_year.from.0 + 1, 366);

        let param = |from, to| range(from, to).unwrap_err().param();
        assert_eq!(param(Some("2026-12-32"), None), "from");
        assert_eq!(param(None, Some("soon")), "to");
        assert_eq!(param(Some("2026-12-08"), Some("2026-12-07")), "from");
        assert_eq!(param(Some("2025-12-06"), Some("2026-12-07")), "from");
    }

    #[test]
    fn a_tally_adds_each_tenant_day_once_in_order() {
        let (acme, globex) = (TenantId("acme".into()), TenantId("globex".into()));
        let mut tally = UsageTally::default();
        tally.activation(&globex, Timestamp(DAY), Duration::from_micros(1500));
        tally.event(&acme, Timestamp(DAY + 5));
        tally.activation(&acme, Timestamp(DAY), Duration::from_micros(700));
        tally.email_sent(&acme, Timestamp(2 * DAY));
        tally.activation(&acme, Timestamp(DAY + 9), Duration::from_micros(300));

        let rows: Vec<(String, i32, UsageCounts)> = tally
            .rows()
            .map(|(tenant, day, counts)| (tenant.0.clone(), day.0, *counts))
            .collect();
        let counts = |events, activations, cpu_us, emails_sent| UsageCounts {
            events,
            activations,
            cpu_us,
            emails_sent,
        };
        assert_eq!(
            rows,
            [
                ("acme".into(), 1, counts(1, 2, 1000, 0)),
                ("acme".into(), 2, counts(0, 0, 0, 1)),
                ("globex".into(), 1, counts(0, 1, 1500, 0)),
            ]
        );
        assert_eq!(counts(0, 0, 1234, 0).cpu_ms(), 1.234);
    }
}
