//! Counters of what the cache did, and their public snapshot ([`Stats`]).

use std::sync::atomic::{AtomicU64, Ordering};

use super::Core;
use crate::store::StoreErrorKind;

/// Counters of what the cache did.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) l1_hits: Striped,
    pub(super) l1_misses: Striped,
    pub(super) l2_hits: AtomicU64,
    pub(super) l2_misses: AtomicU64,
    pub(super) l2_reads: AtomicU64,
    pub(super) l2_writes: AtomicU64,
    pub(super) l2_errors: AtomicU64,
    pub(super) errors_by_class: [AtomicU64; 5],
    pub(super) l2_skipped: AtomicU64,
    pub(super) l2_retries: AtomicU64,
    pub(super) breaker_opened: AtomicU64,
    pub(super) bad_blobs: AtomicU64,
    pub(super) queued: AtomicU64,
    pub(super) recovered: AtomicU64,
    pub(super) dropped_overflow: AtomicU64,
    pub(super) superseded: AtomicU64,
    pub(super) expired: AtomicU64,
    pub(super) published: AtomicU64,
    pub(super) write_conflicts: AtomicU64,
    pub(super) refused_writes: AtomicU64,
    pub(super) refused_signouts: AtomicU64,
    pub(super) invalidated: AtomicU64,
    pub(super) backplane_losses: AtomicU64,
    pub(super) publish_retries: AtomicU64,
    pub(super) strict_checks: AtomicU64,
    pub(super) strict_stale: AtomicU64,
}

pub(super) fn class_index(kind: StoreErrorKind) -> usize {
    match kind {
        StoreErrorKind::Connection => 0,
        StoreErrorKind::Timeout => 1,
        StoreErrorKind::Server => 2,
        StoreErrorKind::BadData => 3,
        StoreErrorKind::Config => 4,
    }
}

/// L2 errors by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsByClass {
    /// Unreachable: refused, reset, DNS, TLS handshake.
    pub connection: u64,
    /// No answer within the timeout.
    pub timeout: u64,
    /// Error replies (auth, OOM, wrong type...).
    pub server: u64,
    /// Answers that could not be understood.
    pub bad_data: u64,
    /// The store cannot do what its configuration asks.
    pub config: u64,
}

impl ErrorsByClass {
    /// The count of one class.
    pub fn get(&self, kind: StoreErrorKind) -> u64 {
        match kind {
            StoreErrorKind::Connection => self.connection,
            StoreErrorKind::Timeout => self.timeout,
            StoreErrorKind::Server => self.server,
            StoreErrorKind::BadData => self.bad_data,
            StoreErrorKind::Config => self.config,
        }
    }
}

/// A snapshot of the cache's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Reads answered by L1.
    pub l1_hits: u64,
    /// Reads L1 could not answer.
    pub l1_misses: u64,
    /// L2 reads that found a usable partition.
    pub l2_hits: u64,
    /// L2 reads that found nothing usable.
    pub l2_misses: u64,
    /// L2 `get` calls made (reads and the read half of writes).
    pub l2_reads: u64,
    /// L2 `set`/`remove` calls made.
    pub l2_writes: u64,
    /// L2 calls that failed or timed out (each attempt; skipped calls are not errors).
    pub l2_errors: u64,
    /// [`l2_errors`](Self::l2_errors) by class.
    pub l2_errors_by_class: ErrorsByClass,
    /// L2 calls skipped because the circuit breaker was open.
    pub l2_skipped: u64,
    /// Retries the `on_l2_failure` callback asked for.
    pub l2_retries: u64,
    /// Times the circuit breaker opened.
    pub breaker_opened: u64,
    /// L2 values that could not be parsed.
    pub bad_blobs: u64,
    /// Writes and removals that went to the recovery queue.
    pub queued: u64,
    /// Keys in the recovery queue now.
    pub queue_depth: u64,
    /// Queued changes L2 took after it recovered (or that a later write carried there).
    pub recovered: u64,
    /// Queued changes dropped because the queue was full.
    pub dropped_overflow: u64,
    /// Queued changes not applied because L2 held newer tokens (another replica's).
    pub superseded: u64,
    /// Queued writes whose deadline passed before L2 recovered (nothing to write).
    pub expired: u64,
    /// Messages this replica published on the backplane (changes, stamps, heartbeats).
    pub published: u64,
    /// Writes that found the partition changed by another writer and were replayed.
    pub write_conflicts: u64,
    /// Writes refused because the owner signed out after the tokens were requested.
    pub refused_writes: u64,
    /// Sign-outs L2 did not take that the recovery queue refused too (its sign-outs at
    /// their bound; none queued is ever dropped): their callers got an error.
    pub refused_signouts: u64,
    /// Other replicas' messages that dropped an L1 entry or revoked a user here.
    pub invalidated: u64,
    /// Times the backplane subscription was lost (L1 cleared and bypassed meanwhile).
    pub backplane_losses: u64,
    /// Backplane publishes retried after a failure.
    pub publish_retries: u64,
    /// Strict reads: L1 hits checked against L2's digest.
    pub strict_checks: u64,
    /// Strict reads: L1 hits whose copy was no longer L2's (dropped and reloaded).
    pub strict_stale: u64,
    /// L1 is bypassed now: the backplane subscription is down or refused (and L2 is
    /// healthy), so every read goes to L2.
    pub l1_bypassed: bool,
    /// The backplane subscription is refused for lack of permission (a Redis ACL user
    /// without the channel): L1 stays bypassed until it is granted.
    pub backplane_refused: bool,
}

/// A counter bumped by L1 hits on every thread: stripes of a cache line each, a thread
/// bumps its own, so that hits on two cores do not fight over one line (a shared
/// counter made two threads' hits barely faster than one thread's).
#[derive(Default)]
pub(super) struct Striped([Stripe; STRIPES]);

const STRIPES: usize = 8;

#[derive(Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

impl Striped {
    pub(super) fn bump(&self) {
        self.0[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn load(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

impl std::fmt::Debug for Striped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.load().fmt(f)
    }
}

/// This thread's stripe: threads take stripes in turn.
fn stripe() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static MINE: usize = (NEXT.fetch_add(1, Ordering::Relaxed) as usize) % STRIPES;
    }
    MINE.with(|s| *s)
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Core {
    pub(super) fn stats(&self) -> Stats {
        let c = &self.counters;
        let e = &c.errors_by_class;
        Stats {
            l1_hits: c.l1_hits.load(),
            l1_misses: c.l1_misses.load(),
            l2_hits: load(&c.l2_hits),
            l2_misses: load(&c.l2_misses),
            l2_reads: load(&c.l2_reads),
            l2_writes: load(&c.l2_writes),
            l2_errors: load(&c.l2_errors),
            l2_errors_by_class: ErrorsByClass {
                connection: load(&e[0]),
                timeout: load(&e[1]),
                server: load(&e[2]),
                bad_data: load(&e[3]),
                config: load(&e[4]),
            },
            l2_skipped: load(&c.l2_skipped),
            l2_retries: load(&c.l2_retries),
            breaker_opened: load(&c.breaker_opened),
            bad_blobs: load(&c.bad_blobs),
            queued: load(&c.queued),
            queue_depth: self.queue.len() as u64,
            recovered: load(&c.recovered),
            dropped_overflow: load(&c.dropped_overflow),
            superseded: load(&c.superseded),
            expired: load(&c.expired),
            published: load(&c.published),
            write_conflicts: load(&c.write_conflicts),
            refused_writes: load(&c.refused_writes),
            refused_signouts: load(&c.refused_signouts),
            invalidated: load(&c.invalidated),
            backplane_losses: load(&c.backplane_losses),
            publish_retries: load(&c.publish_retries),
            strict_checks: load(&c.strict_checks),
            strict_stale: load(&c.strict_stale),
            l1_bypassed: !self.l1_trusted(),
            backplane_refused: matches!(
                *self
                    .backplane_status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
                super::BackplaneStatus::Refused(_)
            ),
        }
    }
}
