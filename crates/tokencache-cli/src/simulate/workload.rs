//! The simulated traffic, drawn once from a seed and replayed against every policy.
//!
//! Users arrive at a steady rate over the horizon. A visit lasts 20 min to 3 h, with a
//! web API call every 5 to 20 min. At the end of a visit a user signs out (a share of
//! visits) or just leaves (the session cookie stays). Some users come back after half an
//! hour to a day and a half (some of them after their refresh token has died), others
//! never do. A share of visits starts a long-running OBO job of 1 to 8 h that acquires a
//! token every 30 min under its own session key.

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same traffic.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`, whole seconds.
    pub(crate) fn secs(&mut self, lo: u64, hi: u64) -> u64 {
        lo + ((hi - lo) as f64 * self.unit()) as u64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A GUID-shaped identifier.
    pub(crate) fn guid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }
}

/// The knobs of the traffic.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    /// Users signing in for the first time per 24 virtual hours.
    pub users_per_day: u32,
    /// The horizon, in virtual hours.
    pub hours: u32,
    /// Share of visits that end with a sign-out (the rest just leave).
    pub sign_out_share: f64,
    /// Share of visits after which the user comes back.
    pub return_share: f64,
    /// Share of visits that start a long-running OBO job.
    pub session_share: f64,
    /// The seed.
    pub seed: u64,
}

/// What happens at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// The user's browser calls the web app, which calls the web API.
    Call {
        /// The user.
        user: usize,
    },
    /// The visit ends: a sign-out, or the user just leaves.
    EndVisit {
        /// The user.
        user: usize,
        /// Signs out (else leaves).
        sign_out: bool,
    },
    /// A long-running OBO job wakes up and needs a token.
    JobTick {
        /// The job.
        job: usize,
    },
    /// Count what L2 holds.
    Sample,
}

/// One event, at whole seconds after the start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    /// Seconds after the start.
    pub at: u64,
    /// What happens.
    pub kind: EventKind,
}

/// A user of the simulated web app.
#[derive(Debug, Clone)]
pub(crate) struct UserSpec {
    /// Object id.
    pub oid: String,
    /// Index into the tenants.
    pub tenant: usize,
}

/// A long-running OBO job.
#[derive(Debug, Clone)]
pub(crate) struct JobSpec {
    /// The user it acts for.
    pub user: usize,
    /// The caller-chosen session key.
    pub key: String,
}

/// The whole traffic, in time order.
#[derive(Debug)]
pub(crate) struct Workload {
    /// Users.
    pub users: Vec<UserSpec>,
    /// Long-running jobs.
    pub jobs: Vec<JobSpec>,
    /// Events sorted by time (samples last at equal times).
    pub events: Vec<Event>,
    /// Visits started within the horizon.
    pub visits: u64,
    /// Visits that end with a sign-out within the horizon.
    pub sign_outs: u64,
    /// Web API calls.
    pub calls: u64,
}

/// How many tenants the users come from (one app partition each).
pub(crate) const TENANTS: usize = 4;

/// Draws the traffic of `shape`, with a sample every `sample_secs`.
pub(crate) fn generate(shape: &Shape, sample_secs: u64) -> Workload {
    let horizon = u64::from(shape.hours) * 3600;
    let mut rng = Rng::new(shape.seed);
    let n_users = (u64::from(shape.users_per_day) * u64::from(shape.hours)).div_ceil(24) as usize;
    let mut users = Vec::with_capacity(n_users);
    let mut jobs = Vec::new();
    let mut events = Vec::new();
    let (mut visits, mut sign_outs, mut calls) = (0u64, 0u64, 0u64);
    for user in 0..n_users {
        users.push(UserSpec {
            oid: rng.guid(),
            tenant: (rng.next_u64() % TENANTS as u64) as usize,
        });
        let mut start = rng.secs(0, horizon);
        while start < horizon {
            visits += 1;
            let end = start + rng.secs(20 * 60, 3 * 3600);
            let mut t = start;
            while t < end.min(horizon) {
                events.push(Event {
                    at: t,
                    kind: EventKind::Call { user },
                });
                calls += 1;
                t += rng.secs(5 * 60, 20 * 60);
            }
            if rng.chance(shape.session_share) {
                let job = jobs.len();
                let first = start + rng.secs(0, end - start);
                let job_end = first + rng.secs(3600, 8 * 3600);
                jobs.push(JobSpec {
                    user,
                    key: format!("lro-{:016x}{:016x}", rng.next_u64(), rng.next_u64()),
                });
                let mut tick = first;
                while tick < job_end.min(horizon) {
                    events.push(Event {
                        at: tick,
                        kind: EventKind::JobTick { job },
                    });
                    tick += 30 * 60;
                }
            }
            let sign_out = rng.chance(shape.sign_out_share);
            if end < horizon {
                sign_outs += u64::from(sign_out);
                events.push(Event {
                    at: end,
                    kind: EventKind::EndVisit { user, sign_out },
                });
            }
            if !rng.chance(shape.return_share) {
                break;
            }
            start = end + rng.secs(1800, 36 * 3600);
        }
    }
    let mut t = 0;
    while t <= horizon {
        events.push(Event {
            at: t,
            kind: EventKind::Sample,
        });
        if t == horizon {
            break;
        }
        t = (t + sample_secs).min(horizon);
    }
    // Stable sort: equal times keep generation order; samples come after the traffic.
    events.sort_by_key(|e| (e.at, matches!(e.kind, EventKind::Sample)));
    Workload {
        users,
        jobs,
        events,
        visits,
        sign_outs,
        calls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(seed: u64) -> Shape {
        Shape {
            users_per_day: 50,
            hours: 24,
            sign_out_share: 0.3,
            return_share: 0.6,
            session_share: 0.2,
            seed,
        }
    }

    #[test]
    fn same_seed_same_traffic() {
        let (a, b) = (generate(&shape(7), 3600), generate(&shape(7), 3600));
        assert_eq!(a.events.len(), b.events.len());
        assert!(a
            .events
            .iter()
            .zip(&b.events)
            .all(|(x, y)| x.at == y.at && x.kind == y.kind));
        let c = generate(&shape(8), 3600);
        assert_ne!(a.users[0].oid, c.users[0].oid);
    }

    #[test]
    fn events_are_in_time_order_and_samples_cover_the_horizon() {
        let w = generate(&shape(1), 3600);
        assert!(w.events.windows(2).all(|p| p[0].at <= p[1].at));
        let samples: Vec<u64> = w
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Sample)
            .map(|e| e.at)
            .collect();
        assert_eq!(samples.first(), Some(&0));
        assert_eq!(samples.last(), Some(&(24 * 3600)));
        assert_eq!(samples.len(), 25);
        assert_eq!(w.users.len(), 50);
        assert!(w.calls > 0 && w.visits >= 50);
    }
}
