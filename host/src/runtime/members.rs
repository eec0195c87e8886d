//! What the `bucket-count`, `bucket-has` and `bucket-members` imports read: a run's tenant's
//! buckets, through the narrow [`BucketReader`] an activation is given. [`StoreBuckets`] is
//! the real one (the store, and the tenant's declared buckets to refuse unknown ids); tests
//! give their own.
//!
//! A reader tells a guest-visible answer (a bucket the tenant does not have) from a host
//! failure (the database is unavailable): the first is journaled and returned to the guest,
//! the second ends the activation as a host-side error, to be retried, and records nothing.

use crate::buckets::BucketRegistry;
use crate::ids::TenantId;
use crate::store::{BucketReads, MemberPage, MemberPageRequest};
use async_trait::async_trait;
use std::sync::Arc;

/// Why a read was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberReadError {
    /// The guest asked for something that does not exist; it gets this message.
    #[error("{0}")]
    Refused(String),
    /// The host could not answer; the activation is retried later.
    #[error("{0}")]
    Unavailable(String),
}

impl MemberReadError {
    pub fn unknown_bucket(bucket: &str) -> Self {
        MemberReadError::Refused(format!("unknown bucket {bucket:?}"))
    }
}

pub type MemberRead<T> = Result<T, MemberReadError>;

/// Bucket membership as one tenant's journeys see it.
#[async_trait]
pub trait BucketReader: Send + Sync {
    /// The bucket's current members (live contacts only).
    async fn count(&self, bucket: &str) -> MemberRead<u64>;
    /// Whether the live contact `key` designates is a current member.
    async fn has(&self, bucket: &str, key: &str) -> MemberRead<bool>;
    /// One keyset page of the current members.
    async fn members(&self, bucket: &str, page: &MemberPageRequest) -> MemberRead<MemberPage>;
}

/// A reader with no buckets: every bucket is unknown. For activations outside a tenant's
/// module set (tests, tools).
pub struct NoBuckets;

#[async_trait]
impl BucketReader for NoBuckets {
    async fn count(&self, bucket: &str) -> MemberRead<u64> {
        Err(MemberReadError::unknown_bucket(bucket))
    }

    async fn has(&self, bucket: &str, _key: &str) -> MemberRead<bool> {
        Err(MemberReadError::unknown_bucket(bucket))
    }

    async fn members(&self, bucket: &str, _page: &MemberPageRequest) -> MemberRead<MemberPage> {
        Err(MemberReadError::unknown_bucket(bucket))
    }
}

/// The store's membership reads for one tenant, limited to the buckets it declares.
pub struct StoreBuckets {
    store: Arc<dyn BucketReads>,
    tenant: TenantId,
    buckets: Arc<BucketRegistry>,
}

impl StoreBuckets {
    pub fn new(
        store: Arc<dyn BucketReads>,
        tenant: TenantId,
        buckets: Arc<BucketRegistry>,
    ) -> Self {
        Self {
            store,
            tenant,
            buckets,
        }
    }

    fn known(&self, bucket: &str) -> MemberRead<()> {
        match self.buckets.get(bucket) {
            Some(_) => Ok(()),
            None => Err(MemberReadError::unknown_bucket(bucket)),
        }
    }
}

fn unavailable(error: crate::store::StoreError) -> MemberReadError {
    MemberReadError::Unavailable(error.to_string())
}

#[async_trait]
impl BucketReader for StoreBuckets {
    async fn count(&self, bucket: &str) -> MemberRead<u64> {
        self.known(bucket)?;
        let counts = self
            .store
            .bucket_counts_of(&self.tenant, bucket)
            .await
            .map_err(unavailable)?;
        Ok(counts.active)
    }

    async fn has(&self, bucket: &str, key: &str) -> MemberRead<bool> {
        self.known(bucket)?;
        let found = self
            .store
            .bucket_membership(&self.tenant, bucket, key)
            .await
            .map_err(unavailable)?;
        Ok(found.is_some())
    }

    async fn members(&self, bucket: &str, page: &MemberPageRequest) -> MemberRead<MemberPage> {
        self.known(bucket)?;
        self.store
            .bucket_members(&self.tenant, bucket, page)
            .await
            .map_err(unavailable)
    }
}
