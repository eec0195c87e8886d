//! What a journey can read about the past: event counts, runs of a journey, emails sent.

use crate::ctx::TimestampMs;

/// A person's runs of one journey ([`Ctx::journey_history`](crate::Ctx::journey_history)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JourneyHistory {
    /// Runs of any status, this one included.
    pub entries: u64,
    /// Runs that completed.
    pub completed: u64,
    /// When the latest completed.
    pub last_completed_at: Option<TimestampMs>,
}

/// The emails of one template to one address
/// ([`Ctx::email_history`](crate::Ctx::email_history)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmailHistory {
    /// Emails of any status (queued, sent, failed, suppressed, cancelled).
    pub count: u64,
    /// The latest delivery, if any was delivered.
    pub last_sent_at: Option<TimestampMs>,
}

/// A history read the host refused, and why (e.g. the person has no email address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryError {
    call: &'static str,
    reason: String,
}

impl HistoryError {
    pub(crate) fn new(call: &'static str, reason: String) -> Self {
        Self { call, reason }
    }

    /// Why the host refused it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl std::fmt::Display for HistoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} was refused: {}", self.call, self.reason)
    }
}

impl std::error::Error for HistoryError {}
