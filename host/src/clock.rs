//! The host clock. Everything time-based (timers, journaled `now`, event timestamps) reads
//! [`Clock::now`]; leases read [`Clock::real_now`] so that moving the dev clock never breaks
//! a claim. In dev mode the clock can be advanced (never moved back) to fire timers without
//! waiting.
//!
//! The offset belongs to the database, not the process: an advance adds to the stored offset
//! in one statement, and every process sharing the database re-reads it every
//! [`OFFSET_REFRESH`] and raises its own to match ([`Clock::observe_offset`]). So a restart
//! keeps time monotonic, and several hosts on one PostgreSQL agree on the time (within the
//! refresh interval) whichever of them was asked to advance it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a process re-reads the shared clock offset from the store.
pub const OFFSET_REFRESH: Duration = Duration::from_millis(250);

/// Milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// This time plus `ms` milliseconds (saturating).
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)))
    }

    pub fn saturating_add(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// RFC 3339 with milliseconds, UTC.
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| self.0.to_string())
    }

    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Timestamp(t.timestamp_millis()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// The furthest the dev clock moves ahead of real time: a hundred years (of 365.25 days, as
/// durations are written), far past any journey's horizon and far from overflowing a
/// timestamp.
pub const MAX_OFFSET_MS: i64 = 100 * 31_557_600_000;

/// The process clock: real time plus a dev-mode offset that only grows, at most
/// [`MAX_OFFSET_MS`].
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn with_offset(offset_ms: i64) -> Self {
        Self {
            offset_ms: Arc::new(AtomicI64::new(offset_ms.clamp(0, MAX_OFFSET_MS))),
        }
    }

    /// The host's notion of now: what timers, journals and events use.
    pub fn now(&self) -> Timestamp {
        Timestamp(Self::real_now().0 + self.offset_ms.load(Ordering::SeqCst))
    }

    /// Wall-clock time, unaffected by dev advances. Used for leases.
    pub fn real_now() -> Timestamp {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }

    /// Move the clock forward; returns the new offset. Only this process's clock moves: the
    /// server advances the stored offset and [`observe`](Self::observe_offset)s the result.
    pub fn advance(&self, by: Duration) -> i64 {
        let ms = i64::try_from(by.as_millis()).unwrap_or(MAX_OFFSET_MS);
        let moved = |offset: i64| Some(offset.saturating_add(ms).min(MAX_OFFSET_MS));
        let before = self
            .offset_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, moved)
            .unwrap_or_else(|offset| offset);
        before.saturating_add(ms).min(MAX_OFFSET_MS)
    }

    /// Take an offset read from the store: the clock moves forward to it, never back. Returns
    /// whether the clock moved.
    pub fn observe_offset(&self, offset_ms: i64) -> bool {
        let offset_ms = offset_ms.min(MAX_OFFSET_MS);
        self.offset_ms.fetch_max(offset_ms, Ordering::SeqCst) < offset_ms
    }
}

/// Parse a human duration such as `2d`, `36h`, `90m`, `1h 30m` or `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_forward_by_the_given_amount() {
        let clock = Clock::default();
        let before = clock.now();
        clock.advance(Duration::from_secs(2 * 86_400));
        let after = clock.now();
        assert!(after.0 - before.0 >= 2 * 86_400_000);
        assert!(after.0 - before.0 < 2 * 86_400_000 + 5_000);
    }

    #[test]
    fn the_clock_never_moves_further_ahead_than_its_maximum() {
        let clock = Clock::with_offset(i64::MAX);
        assert_eq!(clock.offset_ms(), MAX_OFFSET_MS);
        assert_eq!(clock.advance(Duration::from_secs(u64::MAX)), MAX_OFFSET_MS);
        assert!(!clock.observe_offset(i64::MAX));
        assert!(clock.now().0 > Clock::real_now().0);
    }

    #[test]
    fn an_observed_offset_moves_the_clock_forward_but_never_back() {
        let clock = Clock::with_offset(1_000);
        assert!(clock.observe_offset(5_000));
        assert_eq!(clock.offset_ms(), 5_000);
        assert!(!clock.observe_offset(2_000), "an older offset is ignored");
        assert!(
            !clock.observe_offset(5_000),
            "the same offset changes nothing"
        );
        assert_eq!(clock.offset_ms(), 5_000);
    }

    #[test]
    fn durations_parse_in_human_units() {
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(
            parse_duration("1h 30m").unwrap(),
            Duration::from_secs(5_400)
        );
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn timestamps_render_as_rfc3339_and_parse_back() {
        let t = Timestamp(1_700_000_000_123);
        let text = t.to_rfc3339();
        assert_eq!(text, "2023-11-14T22:13:20.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&text), Some(t));
    }
}
