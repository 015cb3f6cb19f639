//! Failures remembered for as long as the provider asked (`Retry-After` of a 429 or
//! 503 that was longer than the retries wait for): until then a flight of the same key
//! (partition, scopes, claims) is answered with that failure, without a request, so
//! that callers who retry every second do not each send one to a provider that asked
//! for quiet.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::AcquireError;

/// The longest a failure is remembered, whatever the provider asked.
pub(crate) const MAX_REMEMBERED: Duration = Duration::from_secs(3600);
/// Keys remembered at most (then the expired ones, else all, are forgotten).
const MAX_KEYS: usize = 10_000;

/// Flight keys whose last request the provider answered with a `Retry-After`.
#[derive(Default)]
pub(crate) struct RememberedFailures {
    until: Mutex<HashMap<String, (Instant, AcquireError)>>,
}

impl RememberedFailures {
    /// The remembered failure of `key`, its `Retry-After` the time left; `None` when
    /// there is none (or it has passed).
    pub(crate) fn get(&self, key: &str) -> Option<AcquireError> {
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let (until, e) = map.get(key)?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            map.remove(key);
            return None;
        }
        Some(with_retry_after(e.clone(), left))
    }

    /// Remembers `e` for `key` when the provider said how long to wait.
    pub(crate) fn remember(&self, key: &str, e: &AcquireError) {
        let Some(wait) = e.retry_after().filter(|d| !d.is_zero()) else {
            return;
        };
        let until = Instant::now() + wait.min(MAX_REMEMBERED);
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            let now = Instant::now();
            map.retain(|_, (u, _)| *u > now);
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        map.insert(key.to_string(), (until, e.clone()));
    }

    /// Forgets `key` (a request of it succeeded).
    pub(crate) fn forget(&self, key: &str) {
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

/// `e` with its `Retry-After` set to `left` (rounded up to the second).
fn with_retry_after(e: AcquireError, left: Duration) -> AcquireError {
    let secs = Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0));
    match e {
        AcquireError::OAuth(mut o) => {
            o.retry_after = Some(secs);
            AcquireError::OAuth(o)
        }
        AcquireError::Status {
            endpoint,
            status,
            excerpt,
            ..
        } => AcquireError::Status {
            endpoint,
            status,
            retry_after: Some(secs),
            excerpt,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(after: u64) -> AcquireError {
        AcquireError::Status {
            endpoint: "e".into(),
            status: 503,
            retry_after: Some(Duration::from_secs(after)),
            excerpt: None,
        }
    }

    #[test]
    fn a_failure_with_retry_after_is_remembered_for_its_key_until_it_passes() {
        let r = RememberedFailures::default();
        r.remember("k", &busy(30));
        let e = r.get("k").unwrap();
        let left = e.retry_after().unwrap();
        assert!(left <= Duration::from_secs(30) && left >= Duration::from_secs(1));
        assert!(r.get("other").is_none());
        r.forget("k");
        assert!(r.get("k").is_none());
        // nothing to remember without a Retry-After, or with a zero one
        r.remember("k", &busy(0));
        r.remember(
            "k",
            &AcquireError::Timeout {
                endpoint: "e".into(),
                after: Duration::from_secs(1),
            },
        );
        assert!(r.get("k").is_none());
        // a huge one is bounded
        r.remember("k", &busy(u64::MAX / 4));
        assert!(r.get("k").unwrap().retry_after().unwrap() <= MAX_REMEMBERED);
        // bounded in keys
        for i in 0..MAX_KEYS + 5 {
            r.remember(&i.to_string(), &busy(30));
        }
        assert!(r.until.lock().unwrap().len() <= MAX_KEYS);
    }
}
