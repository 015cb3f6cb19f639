//! When an entry ends (docs/design.md §5).
//!
//! Configured options mirror the .NET ones (absolute, absolute relative to now,
//! sliding) and combine with a token-derived deadline by taking the **earliest**;
//! none silently overrides another. Every input comes from the partition itself, the
//! options and the caller's context, so any replica that reads a partition computes
//! the same hard deadline as the replica that wrote it:
//!
//! * "written at" is the partition's latest `cached_at` (a save stamps it);
//! * app partitions end at their latest access-token expiry;
//! * OBO partitions end at the incoming assertion's `exp` (nobody can present that
//!   key afterwards), or at the latest access-token expiry when the assertion is
//!   opaque or [`OboExpiry::LatestAccessToken`] is chosen;
//! * user and long-running OBO partitions end a refresh-token lifetime after they
//!   were last written (each use of the refresh token rewrites the partition), or at
//!   their latest access-token expiry when they hold no refresh token, and a
//!   refresh-token lifetime after their last write when they hold neither (an id token
//!   alone);
//! * every deadline is at most [`MAX_TTL`] after the partition was written, whatever
//!   a token response claims (`expires_in` near `i64::MAX` would otherwise become a TTL
//!   that Redis refuses). So every entry ends.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::partition::PartitionKind;
use crate::schema::Partition;

/// The longest any entry lives after it was written (400 days: longer than any refresh
/// token lifetime providers issue). Deadlines beyond it are clamped to it.
pub const MAX_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

/// How long an OBO partition lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OboExpiry {
    /// Until the incoming assertion expires (default): its key cannot be presented later.
    #[default]
    AssertionExpiry,
    /// Until the latest access token in it expires, if that is later.
    LatestAccessToken,
}

/// Expiry settings. The defaults give every entry a token-derived end and no
/// configured limit.
#[derive(Debug, Clone)]
pub struct ExpiryOptions {
    /// A fixed point in time after which every entry is gone.
    pub absolute_expiration: Option<SystemTime>,
    /// Entries end this long after they were last written.
    pub absolute_expiration_relative_to_now: Option<Duration>,
    /// Entries end this long after they were last read or written.
    pub sliding_expiration: Option<Duration>,
    /// How long a user's refresh token stays usable without use (Entra: 90 days).
    pub refresh_token_lifetime: Duration,
    /// How long an OBO partition lives.
    pub obo_expiry: OboExpiry,
    /// L1 keeps an entry for this fraction of its remaining L2 life (0 < ratio ≤ 1).
    pub l1_ratio: f64,
    /// With sliding expiration, L2's TTL is refreshed at most once per this fraction of
    /// the window (so L1 hits cost no round trip).
    pub touch_fraction: f64,
}

impl Default for ExpiryOptions {
    fn default() -> Self {
        Self {
            absolute_expiration: None,
            absolute_expiration_relative_to_now: None,
            sliding_expiration: None,
            refresh_token_lifetime: Duration::from_secs(90 * 24 * 3600),
            obo_expiry: OboExpiry::AssertionExpiry,
            l1_ratio: 1.0,
            touch_fraction: 0.1,
        }
    }
}

/// What the caller knows about a partition beyond its content.
#[derive(Debug, Clone, Default)]
pub struct EntryContext {
    /// `exp` of the incoming assertion (OBO partitions), Unix seconds.
    pub assertion_exp: Option<i64>,
    /// The user the partition belongs to (a user partition's account, an OBO
    /// partition's user): an L2 load reads this user's revocation stamp alongside the
    /// partition, so a replica that missed a sign-out still refuses what predates it.
    pub owner: Option<Arc<str>>,
}

impl EntryContext {
    /// The context of a user's partition: only its owner.
    pub fn of_owner(home_account_id: &str) -> Self {
        Self {
            assertion_exp: None,
            owner: Some(Arc::from(home_account_id)),
        }
    }
}

/// The computed life of one entry, in clock milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The latest the entry may live, whatever reads happen (`None`: no end).
    pub hard_ms: Option<u64>,
    /// The sliding window, when one is configured.
    pub sliding: Option<Duration>,
}

impl Deadline {
    /// The deadline if the entry is read or written at `now_ms`.
    pub fn at(&self, now_ms: u64) -> Option<u64> {
        let sliding = self
            .sliding
            .map(|s| now_ms.saturating_add(s.as_millis() as u64));
        min_opt(self.hard_ms, sliding)
    }

    /// The TTL to give L2 at `now_ms`: `None` = no expiry, `Some(ZERO)` = already over.
    pub fn ttl_at(&self, now_ms: u64) -> Option<Duration> {
        self.at(now_ms)
            .map(|d| Duration::from_millis(d.saturating_sub(now_ms)))
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn secs_to_ms(secs: i64) -> u64 {
    (secs.max(0) as u64).saturating_mul(1000)
}

impl ExpiryOptions {
    /// The deadline of `partition` of `kind` (see the module docs). `now_ms` stands in
    /// for "written at" when the partition carries no `cached_at`.
    pub fn deadline(
        &self,
        kind: PartitionKind,
        partition: &Partition,
        ctx: &EntryContext,
        now_ms: u64,
    ) -> Deadline {
        let written_ms = partition.last_cached_at().map(secs_to_ms).unwrap_or(now_ms);
        let latest_at = partition.latest_access_token_expiry().map(secs_to_ms);
        let rt_life = written_ms.saturating_add(self.refresh_token_lifetime.as_millis() as u64);
        let token = match kind {
            PartitionKind::App => latest_at,
            PartitionKind::Obo => match (self.obo_expiry, ctx.assertion_exp.map(secs_to_ms)) {
                (OboExpiry::AssertionExpiry, Some(exp)) => Some(exp),
                (OboExpiry::LatestAccessToken, Some(exp)) => {
                    Some(latest_at.map_or(exp, |a| a.max(exp)))
                }
                (_, None) => latest_at,
            },
            PartitionKind::User | PartitionKind::OboSession => {
                if partition.refresh_tokens().next().is_some() {
                    Some(rt_life)
                } else {
                    latest_at
                }
            }
        };
        // Nothing token-derived (an id token alone, an opaque assertion and no access
        // token): the refresh-token lifetime. And never beyond MAX_TTL.
        // (A `cached_at` in the future, from a hostile blob, is bounded by now.)
        let max = written_ms
            .min(now_ms)
            .saturating_add(MAX_TTL.as_millis() as u64);
        let token = Some(token.unwrap_or(rt_life).min(max));
        let absolute = self.absolute_expiration.map(|t| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        });
        let relative = self
            .absolute_expiration_relative_to_now
            .map(|d| written_ms.saturating_add(d.as_millis() as u64));
        Deadline {
            hard_ms: min_opt(min_opt(token, absolute), relative),
            sliding: self.sliding_expiration,
        }
    }

    /// The L1 deadline for an entry whose L2 deadline is `l2_deadline_ms`: never later.
    pub fn l1_deadline(&self, now_ms: u64, l2_deadline_ms: Option<u64>) -> u64 {
        match l2_deadline_ms {
            None => u64::MAX,
            Some(d) => {
                let left = d.saturating_sub(now_ms) as f64;
                let ratio = self.l1_ratio.clamp(0.0, 1.0);
                now_ms.saturating_add((left * ratio) as u64).min(d)
            }
        }
    }

    /// How long after a touch the next L2 touch is due (sliding only).
    pub fn touch_interval(&self) -> Option<Duration> {
        self.sliding_expiration
            .map(|s| s.mul_f64(self.touch_fraction.clamp(0.0, 1.0)))
    }
}
