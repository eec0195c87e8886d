//! Reading buckets' members from a handler: [`Ctx::bucket_count`](crate::Ctx::bucket_count),
//! [`Ctx::bucket_has`](crate::Ctx::bucket_has) and
//! [`Ctx::bucket_members`](crate::Ctx::bucket_members), one journaled host call each.

use crate::ctx::TimestampMs;
use std::fmt;

/// Which page of a bucket's members to read: the first by default, 50 members a page.
///
/// ```
/// use waymark_guest::MemberPageRequest;
/// let first = MemberPageRequest::first().limit(20);
/// assert_eq!(first.page_size(), 20);
/// assert_eq!(MemberPageRequest::first().limit(500).page_size(), 100);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPageRequest {
    limit: Option<u32>,
    cursor: Option<String>,
}

impl MemberPageRequest {
    /// Members per page when no limit is set.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// The most members a page holds; a larger limit is clamped to it.
    pub const MAX_LIMIT: u32 = 100;

    /// The first page.
    pub fn first() -> Self {
        Self::default()
    }

    /// The page after the one whose [`MemberPage::next_cursor`] this is.
    pub fn after(cursor: impl Into<String>) -> Self {
        Self {
            limit: None,
            cursor: Some(cursor.into()),
        }
    }

    /// At most `limit` members (1 to 100; outside that range the host clamps it).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The members this page holds at most, as the host reads it.
    pub fn page_size(&self) -> u32 {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }

    pub(crate) fn requested_limit(&self) -> Option<u32> {
        self.limit
    }

    pub(crate) fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }
}

/// A current member of a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The contact's resolved key.
    pub key: String,
    /// The contact's email, if known.
    pub email: Option<String>,
    /// When this membership began, in ms since the Unix epoch.
    pub entered_at: TimestampMs,
    /// The membership's epoch: 1 for the person's first entry.
    pub entry_count: u32,
}

impl Member {
    /// A member with this key, no email, entered at 0 for the first time (handy in tests).
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            email: None,
            entered_at: 0,
            entry_count: 1,
        }
    }
}

/// One page of a bucket's members, in a stable order: walking the pages visits every person
/// who stays a member meanwhile exactly once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPage {
    /// This page's members.
    pub members: Vec<Member>,
    /// The next page's cursor; `None` on the last page.
    pub next_cursor: Option<String>,
    /// Current members when the page was read (it may change between pages).
    pub total: u64,
}

impl MemberPage {
    /// The request for the next page with the same limit as `request`, if there is one.
    pub fn next(&self, request: &MemberPageRequest) -> Option<MemberPageRequest> {
        self.next_cursor.as_ref().map(|cursor| MemberPageRequest {
            limit: request.limit,
            cursor: Some(cursor.clone()),
        })
    }
}

/// A bucket read the host refused (an unknown bucket, above all). Converts into a handler
/// error with `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketReadError {
    bucket: String,
    reason: String,
}

impl BucketReadError {
    pub(crate) fn new(bucket: &str, reason: String) -> Self {
        Self {
            bucket: bucket.to_owned(),
            reason,
        }
    }

    /// The bucket that was read.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Why the host refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for BucketReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reading bucket `{}` failed: {}",
            self.bucket, self.reason
        )
    }
}

impl std::error::Error for BucketReadError {}
