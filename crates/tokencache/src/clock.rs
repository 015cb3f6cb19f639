//! Injected time source.
//!
//! Everything that compares against "now" (token validity, entry deadlines, the
//! simulation) asks a [`Clock`], so tests and the simulation can move time.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;

    /// Whole seconds since the Unix epoch (the unit of MSAL timestamps).
    fn now_secs(&self) -> i64 {
        (self.now_millis() / 1000) as i64
    }
}

/// The real clock ([`SystemTime`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to; cheap to clone (shared state).
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock standing at `millis` since the Unix epoch.
    pub fn new(millis: u64) -> Self {
        Self(Arc::new(AtomicU64::new(millis)))
    }

    /// A clock standing at `secs` seconds since the Unix epoch.
    pub fn at_secs(secs: i64) -> Self {
        Self::new(secs.max(0) as u64 * 1000)
    }

    /// Moves the clock to `millis`.
    pub fn set_millis(&self, millis: u64) {
        self.0.store(millis, Ordering::Release);
    }

    /// Moves the clock forward by `millis`.
    pub fn advance_millis(&self, millis: u64) {
        self.0.fetch_add(millis, Ordering::AcqRel);
    }

    /// Moves the clock forward by `secs` seconds.
    pub fn advance_secs(&self, secs: u64) {
        self.advance_millis(secs * 1000);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The next place in this process's order of writes: a process-wide counter (upper 40
/// bits) and a random id of the process (lower 24 bits). Records written by a save carry
/// it after their millisecond ([`AccessToken::written_seq`](crate::schema::AccessToken::written_seq)):
/// two writes of one record in one millisecond are ordered by it (the later one is
/// greater, whatever the clock says), and a tie between processes is broken by their
/// ids, the same way on every replica.
pub fn record_seq() -> u64 {
    use std::sync::OnceLock;
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    static PROCESS: OnceLock<u64> = OnceLock::new();
    let process = *PROCESS.get_or_init(|| {
        use std::hash::BuildHasher;
        // RandomState is seeded from the OS: distinct across processes.
        std::collections::hash_map::RandomState::new().hash_one(std::process::id()) & 0xff_ffff
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & ((1 << 40) - 1);
    (n << 24) | process
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at_secs(100);
        assert_eq!(c.now_secs(), 100);
        c.advance_secs(5);
        assert_eq!(c.now_millis(), 105_000);
        let c2 = c.clone();
        c2.set_millis(1);
        assert_eq!(c.now_millis(), 1);
    }

    #[test]
    fn record_seqs_grow_and_carry_one_process_id() {
        let a = record_seq();
        let b = record_seq();
        assert!(b > a);
        assert_eq!(a & 0xff_ffff, b & 0xff_ffff);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_secs() > 1_577_836_800);
    }
}
