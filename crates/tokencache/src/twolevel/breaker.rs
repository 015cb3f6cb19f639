//! The circuit breaker in front of L2.
//!
//! * **Closed**: every call goes to L2. `failure_threshold` failures in a row (of the
//!   classes that say L2 is unwell: connection, timeout, server, config; not bad data,
//!   which means L2 answered) open it.
//! * **Open**: calls skip L2 at once (a read is served from L1 or is a miss, a write is
//!   queued), so a dead L2 costs the caller nothing. After `open_for` the breaker lets
//!   one call through as a probe.
//! * **Half-open**: the probe is in flight; other calls still skip. The probe's success
//!   closes the breaker; its failure opens it again for twice as long (capped at
//!   `max_open_for`). A probe that is dropped unanswered (its caller went away) reopens
//!   the breaker with the probe due at once.
//!
//! Time is `tokio::time::Instant`, so tests drive it with `tokio::time::pause()`.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Settings of the circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerOptions {
    /// Consecutive failures that open the breaker. Default 5; 0 disables the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before the first probe. Default 1 s.
    pub open_for: Duration,
    /// The longest open period (each failed probe doubles it up to this). Default 10 s.
    pub max_open_for: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(1),
            max_open_for: Duration::from_secs(10),
        }
    }
}

/// The state of the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go to L2.
    Closed,
    /// Calls skip L2 until the next probe.
    Open,
    /// One probe is in flight; other calls skip L2.
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 open, 2 half-open (the metrics gauge value).
    pub fn as_gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

/// Whether a call may go to L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Closed: go.
    Pass,
    /// Half-open: go, as the one probe.
    Probe,
    /// Open: skip L2.
    Reject,
}

/// What a recorded outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    Opened,
    Closed,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive: u32,
    open_until: Instant,
    open_for: Duration,
}

/// The breaker. Its mutex is held for a few instructions, never across an await.
#[derive(Debug)]
pub(crate) struct Breaker {
    options: BreakerOptions,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub(crate) fn new(options: BreakerOptions) -> Self {
        let open_for = options.open_for;
        Self {
            options,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive: 0,
                open_until: Instant::now(),
                open_for,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Time until a probe may go (zero when closed or due).
    pub(crate) fn probe_in(&self) -> Duration {
        let g = self.lock();
        match g.state {
            BreakerState::Closed => Duration::ZERO,
            BreakerState::Open => g.open_until.saturating_duration_since(Instant::now()),
            // the probe in flight decides; look again a little later
            BreakerState::HalfOpen => self.options.open_for.min(Duration::from_millis(100)),
        }
    }

    /// Asks to make a call.
    pub(crate) fn admit(&self) -> Admit {
        let mut g = self.lock();
        match g.state {
            BreakerState::Closed => Admit::Pass,
            BreakerState::HalfOpen => Admit::Reject,
            BreakerState::Open => {
                if Instant::now() >= g.open_until {
                    g.state = BreakerState::HalfOpen;
                    Admit::Probe
                } else {
                    Admit::Reject
                }
            }
        }
    }

    /// L2 answered (a success, or an error that says nothing about L2's health).
    pub(crate) fn on_success(&self, admit: Admit) -> Transition {
        let mut g = self.lock();
        g.consecutive = 0;
        // A call admitted while closed may finish after the breaker opened: only the
        // probe closes it (one late success does not prove L2 is back).
        if admit == Admit::Probe && g.state == BreakerState::HalfOpen {
            g.state = BreakerState::Closed;
            g.open_for = self.options.open_for;
            return Transition::Closed;
        }
        Transition::None
    }

    /// L2 failed in a way that says it is unwell.
    pub(crate) fn on_failure(&self, admit: Admit) -> Transition {
        let mut g = self.lock();
        match (admit, g.state) {
            (Admit::Probe, BreakerState::HalfOpen) => {
                g.open_for =
                    (g.open_for * 2).min(self.options.max_open_for.max(self.options.open_for));
                g.open_until = Instant::now() + g.open_for;
                g.state = BreakerState::Open;
                Transition::None // it was open before the probe
            }
            (_, BreakerState::Closed) => {
                g.consecutive = g.consecutive.saturating_add(1);
                if self.options.failure_threshold > 0
                    && g.consecutive >= self.options.failure_threshold
                {
                    g.state = BreakerState::Open;
                    g.open_for = self.options.open_for;
                    g.open_until = Instant::now() + g.open_for;
                    Transition::Opened
                } else {
                    Transition::None
                }
            }
            _ => Transition::None,
        }
    }

    /// The probe ended without an answer (its future was dropped): open again, with the
    /// next probe due at once.
    pub(crate) fn on_abandoned_probe(&self) {
        let mut g = self.lock();
        if g.state == BreakerState::HalfOpen {
            g.state = BreakerState::Open;
            g.open_until = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerOptions {
            failure_threshold: 3,
            open_for: Duration::from_secs(1),
            max_open_for: Duration::from_secs(4),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_probes_and_closes() {
        let b = breaker();
        assert_eq!(b.on_failure(Admit::Pass), Transition::None);
        assert_eq!(b.on_failure(Admit::Pass), Transition::None);
        assert_eq!(b.admit(), Admit::Pass);
        assert_eq!(b.on_failure(Admit::Pass), Transition::Opened);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(), Admit::Reject);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit(), Admit::Probe);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.admit(), Admit::Reject, "one probe at a time");
        assert_eq!(b.on_success(Admit::Probe), Transition::Closed);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(), Admit::Pass);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probes_double_the_open_period_up_to_the_cap() {
        let b = breaker();
        for _ in 0..3 {
            b.on_failure(Admit::Pass);
        }
        let mut waits = Vec::new();
        for _ in 0..4 {
            let wait = b.probe_in();
            waits.push(wait.as_secs());
            tokio::time::advance(wait).await;
            assert_eq!(b.admit(), Admit::Probe);
            b.on_failure(Admit::Probe);
        }
        assert_eq!(waits, vec![1, 2, 4, 4]);
        // a success resets the period
        tokio::time::advance(b.probe_in()).await;
        assert_eq!(b.admit(), Admit::Probe);
        b.on_success(Admit::Probe);
        for _ in 0..3 {
            b.on_failure(Admit::Pass);
        }
        assert_eq!(b.probe_in(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count_and_late_successes_do_not_close() {
        let b = breaker();
        b.on_failure(Admit::Pass);
        b.on_failure(Admit::Pass);
        b.on_success(Admit::Pass);
        b.on_failure(Admit::Pass);
        b.on_failure(Admit::Pass);
        assert_eq!(b.state(), BreakerState::Closed, "not three in a row");
        b.on_failure(Admit::Pass);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.on_success(Admit::Pass), Transition::None);
        assert_eq!(
            b.state(),
            BreakerState::Open,
            "a late answer to a call admitted earlier"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_the_next_call_probe() {
        let b = breaker();
        for _ in 0..3 {
            b.on_failure(Admit::Pass);
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit(), Admit::Probe);
        b.on_abandoned_probe();
        assert_eq!(b.admit(), Admit::Probe);
    }

    #[test]
    fn threshold_zero_never_opens() {
        let b = Breaker::new(BreakerOptions {
            failure_threshold: 0,
            ..BreakerOptions::default()
        });
        for _ in 0..100 {
            b.on_failure(Admit::Pass);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
