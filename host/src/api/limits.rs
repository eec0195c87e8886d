//! Per-key rate limiting: a token bucket (GCRA) per API key, in memory per host process. Over
//! the limit a request gets 429 with `Retry-After`.

use super::error::ApiError;
use crate::ids::ApiKeyId;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

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
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::TooManyRequests {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
