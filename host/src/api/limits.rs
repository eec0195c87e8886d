//! Rate limiting, in memory per host process: requests per API key ([`RateLimits`]), and
//! events per tenant on ingest ([`IngestLimits`]), each a token bucket (GCRA). Over a limit a
//! request gets 429 with `Retry-After`.
//!
//! A tenant's ingest rate is counted by each host on its own: N hosts behind a balancer admit
//! up to N times the tenant's `ingestRate` (and burst) between them.

use super::error::ApiError;
use crate::ids::{ApiKeyId, TenantId};
use crate::tenancy::limits::TenantLimits;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

pub struct RateLimits {
    limiter: Option<DefaultKeyedRateLimiter<ApiKeyId>>,
}

impl RateLimits {
    /// `per_second` sustained requests per key with bursts of `burst`; 0 disables limiting.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self { limiter }
    }

    pub fn check(&self, key: &ApiKeyId) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(key)
            .map_err(|not_until| ApiError::TooManyRequests {
                retry_after_secs: whole_seconds(
                    not_until.wait_time_from(DefaultClock::default().now()),
                ),
            })
    }
}

/// Each tenant's ingest bucket, made from its limits as they are when its events arrive: a
/// changed `ingestRate` or `ingestBurst` starts a bucket of the new size at once.
pub struct IngestLimits {
    limits: Arc<TenantLimits>,
    buckets: Mutex<HashMap<TenantId, Arc<IngestBucket>>>,
}

struct IngestBucket {
    /// The tenant's rate and burst the bucket was made for.
    quota: (u64, u64),
    limiter: DefaultDirectRateLimiter,
}

impl IngestLimits {
    pub fn new(limits: Arc<TenantLimits>) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take `events` tokens of the tenant's bucket, or refuse them all: 429 while the bucket
    /// refills, 400 for a batch larger than the bucket could ever hold.
    pub fn admit(&self, tenant: &TenantId, events: usize) -> Result<(), ApiError> {
        let limits = self.limits.effective(tenant);
        let (rate, burst) = (limits.ingest_rate, limits.ingest_burst);
        let Some(rate_per_second) = NonZeroU32::new(u32::try_from(rate).unwrap_or(u32::MAX)) else {
            return Ok(());
        };
        // 0: one second's worth.
        let burst =
            NonZeroU32::new(u32::try_from(burst).unwrap_or(u32::MAX)).unwrap_or(rate_per_second);
        let bucket = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            let quota = (rate, u64::from(burst.get()));
            match buckets.get(tenant) {
                Some(bucket) if bucket.quota == quota => bucket.clone(),
                _ => {
                    let bucket = Arc::new(IngestBucket {
                        quota,
                        limiter: RateLimiter::direct(
                            Quota::per_second(rate_per_second).allow_burst(burst),
                        ),
                    });
                    buckets.insert(tenant.clone(), bucket.clone());
                    bucket
                }
            }
        };
        let Some(n) = NonZeroU32::new(u32::try_from(events).unwrap_or(u32::MAX)) else {
            return Ok(());
        };
        let events_per =
            |n: u64, what: &str| format!("{n} event{} {what}", if n == 1 { "" } else { "s" });
        match bucket.limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let retry_after_secs =
                    whole_seconds(not_until.wait_time_from(DefaultClock::default().now()));
                Err(ApiError::TooManyRequestsNamed {
                    message: format!(
                        "this tenant's ingest limit is reached: {} with bursts of {} \
                         (ingestRate {rate}, ingestBurst {}); retry in {retry_after_secs} s",
                        events_per(rate, "per second"),
                        burst.get(),
                        limits.ingest_burst,
                    ),
                    retry_after_secs,
                })
            }
            Err(_) => Err(ApiError::invalid_field(
                "events",
                format!(
                    "the batch holds {events} events, more than this tenant may ingest at once \
                     (its burst, ingestBurst, is {}): send at most {} per request",
                    burst.get(),
                    burst.get()
                ),
            )),
        }
    }
}

/// A wait in whole seconds, rounded up: what `Retry-After` carries.
fn whole_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::limits::{HostBounds, LimitOverrides, LimitValues, TenantLimitsRecord};

    #[test]
    fn a_key_over_its_burst_is_refused_with_a_retry_time_while_others_are_not() {
        let limits = RateLimits::new(1, 2);
        let (a, b) = (ApiKeyId("a".into()), ApiKeyId("b".into()));
        assert!(limits.check(&a).is_ok() && limits.check(&a).is_ok());
        match limits.check(&a) {
            Err(ApiError::TooManyRequests { retry_after_secs }) => {
                assert!((1..=2).contains(&retry_after_secs))
            }
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(limits.check(&b).is_ok());
    }

    #[test]
    fn zero_disables_limiting() {
        let limits = RateLimits::new(0, 0);
        let key = ApiKeyId("a".into());
        assert!((0..10_000).all(|_| limits.check(&key).is_ok()));
    }

    fn tenant_limits() -> Arc<TenantLimits> {
        Arc::new(TenantLimits::new(
            LimitValues {
                ingest_rate: 1,
                ingest_burst: 2,
                ..LimitValues::default()
            },
            HostBounds {
                activation_timeout: std::time::Duration::from_secs(10),
                pool_memory_mb: 128,
            },
        ))
    }

    fn refused_for(result: Result<(), ApiError>) -> u64 {
        match result {
            Err(ApiError::TooManyRequestsNamed {
                message,
                retry_after_secs,
            }) => {
                assert!(
                    message.contains("1 event per second with bursts of 2"),
                    "{message}"
                );
                retry_after_secs
            }
            other => panic!("expected 429, got {other:?}"),
        }
    }

    #[test]
    fn a_tenant_over_its_ingest_burst_is_refused_while_another_is_not() {
        // Given two tenants at 1 event per second, bursts of 2
        let ingest = IngestLimits::new(tenant_limits());
        let (acme, globex) = (TenantId("acme".into()), TenantId("globex".into()));

        // When acme sends two events and a third
        assert!(ingest.admit(&acme, 1).is_ok() && ingest.admit(&acme, 1).is_ok());

        // Then the third waits about a second; globex's batch of two still passes
        assert!((1..=2).contains(&refused_for(ingest.admit(&acme, 1))));
        assert!(ingest.admit(&globex, 2).is_ok());
        // And a batch larger than the burst could never pass: it is refused as bad input
        match ingest.admit(&globex, 3) {
            Err(ApiError::BadRequest { message, .. }) => {
                assert!(message.contains("at most 2 per request"), "{message}")
            }
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn a_changed_ingest_limit_applies_to_the_next_event() {
        // Given acme spent its burst
        let limits = tenant_limits();
        let ingest = IngestLimits::new(limits.clone());
        let acme = TenantId("acme".into());
        ingest.admit(&acme, 2).unwrap();
        refused_for(ingest.admit(&acme, 1));

        // When its rate is raised (0: unlimited)
        limits.install(&TenantLimitsRecord {
            tenant_id: acme.clone(),
            own: LimitOverrides {
                ingest_rate: Some(0),
                ..Default::default()
            },
            updated_at: crate::clock::Timestamp(0),
        });

        // Then its events pass at once
        assert!((0..1_000).all(|_| ingest.admit(&acme, 1_000).is_ok()));
    }
}
