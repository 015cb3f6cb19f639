//! The invalidation latency probe: while the traffic runs, a task of its own saves a
//! token for a probe user on replica A while replica B holds that user's partition in
//! L1, and measures the time from A's save returning to B's L1 no longer holding the
//! partition (B's listener received A's message and dropped it, or B cleared its L1
//! after a reconnect). A and B rotate over the replicas. Reported as p50 and p99 (an
//! invalidation that never comes counts as the probe's one-second cap); 0/0 with one
//! replica or without a backplane.

use std::time::{Duration, Instant};

use tokencache::sample::{CLIENT_ID, ENVIRONMENT};
use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache};

use super::tokens;

/// Longest wait for one invalidation.
const CAP: Duration = Duration::from_secs(1);
/// Pause between two samples (the probe is a small share of the traffic).
const PAUSE: Duration = Duration::from_millis(20);

/// Samples invalidation latency until `deadline`; returns the samples in µs.
pub(super) async fn probe(
    replicas: Vec<TokenCache>,
    oid: String,
    tenant: &'static str,
    deadline: Instant,
) -> Vec<u64> {
    let mut samples = Vec::new();
    if replicas.len() < 2 || !replicas.iter().all(|r| r.two_level().has_backplane()) {
        return samples;
    }
    let home = format!("{oid}.{tenant}");
    let scope = tokens::scope(0);
    let scopes = [scope.as_str()];
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, tenant, &scopes);
    let mut n = 0u64;
    while Instant::now() < deadline && !crate::cancel::requested() {
        n += 1;
        let (a, b) = (
            &replicas[n as usize % replicas.len()],
            &replicas[(n as usize + 1) % replicas.len()],
        );
        tokio::time::sleep(PAUSE).await;
        // B holds the partition in L1 (not while B bypasses L1 after a disconnect).
        let _ = b
            .find_access_token(&Lookup::user(CLIENT_ID, &home, &scopes))
            .await;
        if !in_l1(b, &home) {
            // Nothing saved yet, or B's L1 is bypassed now: save once, try again.
            if let Ok(resp) = tokens::response(&oid, tenant, &scope, n) {
                let _ = a.save_token_response(&req, &resp).await;
            }
            continue;
        }
        let Ok(resp) = tokens::response(&oid, tenant, &scope, n) else {
            continue;
        };
        if a.save_token_response(&req, &resp)
            .await
            .map_or(true, |s| !s.write.l2_written)
        {
            continue; // L2 did not take it: there is no message to wait for
        }
        let saved = Instant::now();
        while in_l1(b, &home) && saved.elapsed() < CAP {
            if saved.elapsed() < Duration::from_millis(2) {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        samples.push(saved.elapsed().min(CAP).as_micros() as u64);
    }
    samples
}

/// Whether `cache`'s L1 holds the partition of `home` now.
fn in_l1(cache: &TokenCache, home: &str) -> bool {
    cache
        .two_level()
        .l1()
        .is_some_and(|l1| l1.get(home).is_some())
}

/// The `p` quantile (0 to 1) of `samples` (0 when empty), nearest rank.
pub(super) fn quantile(samples: &mut [u64], p: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_of_samples() {
        assert_eq!(quantile(&mut [], 0.5), 0);
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(quantile(&mut v, 0.5), 51);
        assert_eq!(quantile(&mut v, 0.99), 99);
        assert_eq!(quantile(&mut [7], 0.99), 7);
    }
}
