//! Typed durations: `days(2)`, `hours(6)`, `minutes(30)`, `seconds(10)`, `millis(250)`.
//!
//! They return [`std::time::Duration`], so they mix freely with anything else that speaks
//! `Duration` (`days(1) + hours(6)`, `Duration::from_secs(90)`, …). The host works in whole
//! milliseconds; anything finer is truncated and anything longer than `u64::MAX` ms saturates.

pub use core::time::Duration;

const SECS_PER_MINUTE: u64 = 60;
const SECS_PER_HOUR: u64 = 60 * SECS_PER_MINUTE;
const SECS_PER_DAY: u64 = 24 * SECS_PER_HOUR;

/// `n` weeks (7 days each).
pub const fn weeks(n: u64) -> Duration {
    Duration::from_secs(n.saturating_mul(7 * SECS_PER_DAY))
}

/// `n` days (24 hours each; the host counts elapsed time, not calendar days).
pub const fn days(n: u64) -> Duration {
    Duration::from_secs(n.saturating_mul(SECS_PER_DAY))
}

/// `n` hours.
pub const fn hours(n: u64) -> Duration {
    Duration::from_secs(n.saturating_mul(SECS_PER_HOUR))
}

/// `n` minutes.
pub const fn minutes(n: u64) -> Duration {
    Duration::from_secs(n.saturating_mul(SECS_PER_MINUTE))
}

/// `n` seconds.
pub const fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` milliseconds, the host's resolution.
pub const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Whole milliseconds of `d`, as the WIT `duration-ms` wants them (truncating, saturating).
pub(crate) fn to_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_in_milliseconds_as_expected() {
        assert_eq!(to_millis(millis(250)), 250);
        assert_eq!(to_millis(seconds(3)), 3_000);
        assert_eq!(to_millis(minutes(2)), 120_000);
        assert_eq!(to_millis(hours(1)), 3_600_000);
        assert_eq!(to_millis(days(2)), 172_800_000);
        assert_eq!(to_millis(weeks(1)), to_millis(days(7)));
    }

    #[test]
    fn durations_compose_with_std() {
        assert_eq!(days(1) + hours(6), hours(30));
        assert_eq!(minutes(90), Duration::from_secs(5_400));
    }

    #[test]
    fn sub_millisecond_truncates_and_huge_saturates() {
        assert_eq!(to_millis(Duration::from_micros(1_999)), 1);
        assert_eq!(to_millis(days(u64::MAX)), u64::MAX);
        assert_eq!(to_millis(Duration::MAX), u64::MAX);
    }
}
