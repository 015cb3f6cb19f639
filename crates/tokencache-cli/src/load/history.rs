//! The recorded history of a `load` run and the three checks against it.
//!
//! Every save and sign-out is recorded with its start and its end on one monotonic
//! clock (all replicas are in this process), read under the history's lock: a start is
//! recorded before the operation begins and an end after it returned, so every
//! interval recorded contains the real one, and each save's end is later than every
//! end recorded before it. Reads are checked when they end, against what is recorded
//! then (all that can matter to a read has started by its end; see [`History::check_read`]).
//!
//! "X is older than Y" means X's save ended before Y's began: only then must Y's
//! token have replaced X's. Saves that overlap are concurrent: either may be the one
//! the store keeps, and the checks never flag either.
//!
//! The checks, with `bound` = `--stale-bound-ms`:
//! - **stale read**: a read that began more than `bound` after a save of its (user,
//!   scope) was acknowledged and returned a token older than that save, or nothing
//!   (unless a sign-out of the user can explain the nothing); reads of a replica that
//!   cannot rely on L2 at the time are not checked (it serves what it knows, by design);
//! - **served after sign-out**: a read that began more than `bound` after a sign-out
//!   of its user was acknowledged returned a token whose save ended before the
//!   sign-out began;
//! - **lost update** (at the end, from L2 itself): a (user, scope) whose latest
//!   stored save, not followed by a sign-out of the user, is not in L2, or L2 holds a
//!   token older than it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::tokens::SCOPES;

/// Microseconds since the run began (one monotonic clock for every replica).
pub(super) type Micros = u64;

/// An end not reached yet: later than anything.
const OPEN: Micros = Micros::MAX;

/// How soon after a sign-out ended a save may begin and still be removed by it in L2:
/// a sign-out removes the credentials requested in or before its stamp's millisecond on
/// the store's clock (docs/design.md §7.1), and a replica gives its request times on that
/// clock through an offset it measured, rounded to the millisecond and off by up to half
/// a round trip. One millisecond of grain plus two of measure: a save that begins in that
/// window is concurrent with the sign-out.
const STAMP_MS_WINDOW: Micros = 3_000;

/// The stamp's grain on reads: a replica refuses a user's tokens cached (in whole
/// seconds) at or before the sign-out's second, so a token saved up to a second after
/// a sign-out can legitimately read as nothing (it is kept in L2; see `lost_update`).
const STAMP_GRAIN: Micros = 1_000_000;

/// How a save ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SaveOutcome {
    /// Ok, and L2 took it: acknowledged.
    Stored,
    /// Ok, but L2 failed: the change waits in the saving replica's recovery queue
    /// (visible to other replicas only once drained; required at the end).
    StoredLater,
    /// Ok, but refused because the user signed out after the tokens were requested.
    Refused,
    /// An error: not acknowledged (it may or may not have been written).
    Failed,
}

/// What a read returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Got {
    /// No token.
    Nothing,
    /// The token of save `id`.
    Token(u64),
    /// A token that is none of the run's saves.
    Foreign,
}

/// A finished read, to check.
#[derive(Debug, Clone, Copy)]
pub(super) struct Read {
    pub(super) user: usize,
    pub(super) scope: usize,
    pub(super) start: Micros,
    pub(super) end: Micros,
    pub(super) got: Got,
    /// The reading replica could not rely on L2: its L2 calls failed (or were skipped)
    /// during the read, or it was degraded (an outage, or changes queued) when the read
    /// began or ended.
    pub(super) degraded: bool,
}

/// What a read did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Anomaly {
    /// An older token, or nothing, where a newer one was acknowledged.
    Stale,
    /// A token acquired before an acknowledged sign-out of its user.
    ServedAfterSignOut,
}

#[derive(Debug, Clone, Copy)]
struct Save {
    user: usize,
    scope: usize,
    start: Micros,
    end: Micros,
    /// `None` while in flight.
    outcome: Option<SaveOutcome>,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: Micros,
    end: Micros,
}

#[derive(Debug, Clone, Copy)]
struct SignOut {
    start: Micros,
    end: Micros,
    /// Returned with every L2 step done.
    acked: bool,
}

#[derive(Debug, Default)]
struct User {
    /// Acknowledged saves per scope, in the order they ended (ends increase).
    stored: [Vec<Span>; SCOPES],
    /// Saves L2 took later (recovery queue), per scope.
    stored_later: [Vec<Span>; SCOPES],
    sign_outs: Vec<SignOut>,
}

/// A user nothing was recorded for.
static NOBODY: User = User {
    stored: [const { Vec::new() }; SCOPES],
    stored_later: [const { Vec::new() }; SCOPES],
    sign_outs: Vec::new(),
};

/// The history of a run: every save (by id) and sign-out, with their intervals. It
/// keeps every save (about 50 bytes each, plus 8 bytes a user): a long run's memory
/// grows with its saves.
#[derive(Debug)]
pub(super) struct History {
    bound: Micros,
    saves: Vec<Save>,
    /// Made on a user's first record (`--users` goes to a million).
    users: Vec<Option<Box<User>>>,
}

impl History {
    /// An empty history of `users` users, checking reads with `bound`.
    pub(super) fn new(users: usize, bound: Duration) -> Self {
        Self {
            bound: bound.as_micros() as Micros,
            saves: Vec::new(),
            users: (0..users).map(|_| None).collect(),
        }
    }

    /// What was recorded for `user`.
    fn user(&self, user: usize) -> &User {
        self.users
            .get(user)
            .and_then(|u| u.as_deref())
            .unwrap_or(&NOBODY)
    }

    /// What was recorded for `user`, to record more (`None`: not one of the run's users).
    fn user_mut(&mut self, user: usize) -> Option<&mut User> {
        Some(self.users.get_mut(user)?.get_or_insert_with(Box::default))
    }

    /// Records that a save of (user, scope) begins at `at`; returns its id (ids
    /// increase with starts).
    pub(super) fn begin_save(&mut self, user: usize, scope: usize, at: Micros) -> u64 {
        self.saves.push(Save {
            user,
            scope,
            start: at,
            end: OPEN,
            outcome: None,
        });
        (self.saves.len() - 1) as u64
    }

    /// Records that save `id` ended at `at` with `outcome`.
    pub(super) fn end_save(&mut self, id: u64, at: Micros, outcome: SaveOutcome) {
        let Some(save) = self.saves.get_mut(id as usize) else {
            return;
        };
        save.end = at;
        save.outcome = Some(outcome);
        let span = Span {
            start: save.start,
            end: at,
        };
        let (user, scope) = (save.user, save.scope);
        let Some(u) = self.user_mut(user) else {
            return;
        };
        match outcome {
            SaveOutcome::Stored => u.stored[scope].push(span),
            SaveOutcome::StoredLater => u.stored_later[scope].push(span),
            SaveOutcome::Refused | SaveOutcome::Failed => {}
        }
    }

    /// Records that a sign-out of `user` begins at `at`; returns its index.
    pub(super) fn begin_sign_out(&mut self, user: usize, at: Micros) -> usize {
        let Some(u) = self.user_mut(user) else {
            return usize::MAX;
        };
        let outs = &mut u.sign_outs;
        outs.push(SignOut {
            start: at,
            end: OPEN,
            acked: false,
        });
        outs.len() - 1
    }

    /// Records that sign-out `index` of `user` ended at `at` (`acked`: it returned
    /// with every L2 step done).
    pub(super) fn end_sign_out(&mut self, user: usize, index: usize, at: Micros, acked: bool) {
        if let Some(o) = self.user_mut(user).and_then(|u| u.sign_outs.get_mut(index)) {
            o.end = at;
            o.acked = acked;
        }
    }

    /// The start of the latest save of (user, scope) acknowledged before `cutoff`.
    fn latest_stored_before(&self, user: usize, scope: usize, cutoff: Micros) -> Option<Micros> {
        let mut latest: Option<Micros> = None;
        // Ends increase along the list: walk back past those not before the cutoff,
        // and stop at an end no later than the best start (starts precede ends).
        for s in self.user(user).stored[scope].iter().rev() {
            if latest.is_some_and(|l| s.end <= l) {
                break;
            }
            if s.end < cutoff {
                latest = Some(latest.map_or(s.start, |l| l.max(s.start)));
            }
        }
        latest
    }

    /// Checks a read that has just ended. Exact for a read checked when it ends:
    /// a save or sign-out not ended yet has an end later than anything recorded, so it
    /// is older than nothing that began, and every sign-out that began before the read
    /// ended is recorded.
    pub(super) fn check_read(&self, r: &Read) -> Option<Anomaly> {
        // Acknowledged more than the bound before the read began.
        let cutoff = r.start.checked_sub(self.bound)?;
        // A replica cut off from L2 serves what it knows, by design (docs/design.md §6:
        // an L2 failure reads as a miss, its own writes are kept in its L1 and queued),
        // and cannot see what others wrote meanwhile: its reads say nothing about the
        // backplane. What it did to L2 is checked at the end (`lost_update`).
        if r.degraded {
            return None;
        }
        let user = self.user(r.user);
        let latest = self.latest_stored_before(r.user, r.scope, cutoff);
        match r.got {
            Got::Token(id) => {
                let Some(x) = self.saves.get(id as usize) else {
                    return Some(Anomaly::Stale); // not a token this run saved
                };
                if (x.user, x.scope) != (r.user, r.scope) {
                    return Some(Anomaly::Stale); // another user's or scope's token
                }
                // Acquired before the sign-out: its save ended before the sign-out
                // began. (A save that overlaps the sign-out may survive it: the
                // library refuses a write when the stamp is at or after the write's
                // request time, which lies somewhere in the save's interval.)
                if user
                    .sign_outs
                    .iter()
                    .any(|o| o.acked && o.end < cutoff && x.end < o.start)
                {
                    return Some(Anomaly::ServedAfterSignOut);
                }
                latest.is_some_and(|y| x.end < y).then_some(Anomaly::Stale)
            }
            Got::Foreign => Some(Anomaly::Stale),
            Got::Nothing => {
                let y = latest?;
                // A sign-out that began before the read ended, and did not end more
                // than the stamp's grain before the save began, can explain nothing:
                // it removed the save, or its stamp (in whole seconds on reads)
                // covers the save's second.
                let explained = user
                    .sign_outs
                    .iter()
                    .any(|o| o.start < r.end && o.end.saturating_add(STAMP_GRAIN) > y);
                (!explained).then_some(Anomaly::Stale)
            }
        }
    }

    /// What `got` is, for the log.
    fn describe(&self, got: Got) -> String {
        match got {
            Got::Nothing => "nothing".to_string(),
            Got::Foreign => "a token of no save of the run".to_string(),
            Got::Token(id) => match self.saves.get(id as usize) {
                Some(x) => format!(
                    "save #{id} of scope {} (began {}, ended {}, {:?})",
                    x.scope,
                    at(x.start),
                    at(x.end),
                    x.outcome
                ),
                None => format!("an unknown save #{id}"),
            },
        }
    }

    /// What a flagged lost update was checked against, for the log.
    pub(super) fn explain_lost(&self, user: usize, scope: usize, found: Got) -> String {
        let u = self.user(user);
        let saves: Vec<String> = self
            .saves
            .iter()
            .enumerate()
            .filter(|(_, x)| x.user == user)
            .rev()
            .take(6)
            .map(|(id, _)| self.describe(Got::Token(id as u64)))
            .collect();
        let outs: Vec<String> = u
            .sign_outs
            .iter()
            .map(|o| format!("{}..{}", at(o.start), at(o.end)))
            .collect();
        format!(
            "user {user} scope {scope}: L2 holds {}; the user's last saves: [{}]; sign-outs: [{}]",
            self.describe(found),
            saves.join("; "),
            outs.join(", ")
        )
    }

    /// What a flagged read was checked against, for the log (ids and instants only,
    /// never a token).
    pub(super) fn explain(&self, r: &Read) -> String {
        let got = self.describe(r.got);
        let cutoff = r.start.saturating_sub(self.bound);
        let latest = self
            .latest_stored_before(r.user, r.scope, cutoff)
            .map_or("none".to_string(), at);
        let outs: Vec<String> = self
            .user(r.user)
            .sign_outs
            .iter()
            .map(|o| {
                format!(
                    "{}..{}{}",
                    at(o.start),
                    at(o.end),
                    if o.acked { "" } else { " (incomplete)" }
                )
            })
            .collect();
        format!(
            "read of user {} scope {} from {} to {} got {got}; latest save acknowledged before the bound began {latest}; sign-outs of the user: [{}]",
            r.user,
            r.scope,
            at(r.start),
            at(r.end),
            outs.join(", ")
        )
    }

    /// Whether (user, scope)'s latest token is missing from L2 at the end, where L2
    /// holds `found`: the latest save that L2 took (at once or from a recovery queue)
    /// and that no sign-out of the user overlapped or followed must be there, or one
    /// not older than it.
    pub(super) fn lost_update(&self, user: usize, scope: usize, found: Got) -> bool {
        let u = self.user(user);
        let required = u.stored[scope]
            .iter()
            .chain(&u.stored_later[scope])
            // A sign-out that ended before the save began cannot remove it: the
            // save's request came after the stamp, unless within the stamp's grain
            // (see [`STAMP_MS_WINDOW`]).
            .filter(|y| {
                !u.sign_outs
                    .iter()
                    .any(|o| o.end.saturating_add(STAMP_MS_WINDOW) > y.start)
            })
            .map(|y| y.start)
            .max();
        let Some(y) = required else {
            return false;
        };
        match found {
            Got::Token(id) => self
                .saves
                .get(id as usize)
                .is_none_or(|x| (x.user, x.scope) != (user, scope) || x.end < y),
            Got::Nothing | Got::Foreign => true,
        }
    }

    /// Whether `found`, in L2 at the end for `user`, was acquired before one of the
    /// user's acknowledged sign-outs (it should have been removed).
    pub(super) fn resurrected(&self, user: usize, found: Got) -> bool {
        let Got::Token(id) = found else {
            return false;
        };
        self.saves.get(id as usize).is_some_and(|x| {
            self.user(user)
                .sign_outs
                .iter()
                .any(|o| o.acked && x.end < o.start)
        })
    }

    /// Whether any save of `user` was recorded (a user never saved has nothing to check).
    pub(super) fn saved_any(&self, user: usize) -> bool {
        let u = self.user(user);
        u.stored
            .iter()
            .chain(&u.stored_later)
            .any(|s| !s.is_empty())
            || !u.sign_outs.is_empty()
    }
}

/// An instant of the run, for the log.
fn at(t: Micros) -> String {
    if t == OPEN {
        "(not ended)".to_string()
    } else {
        format!("{:.6} s", t as f64 / 1e6)
    }
}

/// The history behind a lock, with the run's clock: every instant is read under the
/// lock, so that the order of recorded instants is the order of recording.
#[derive(Debug)]
pub(super) struct Recorder {
    t0: Instant,
    history: Mutex<History>,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub(super) fn new(history: History) -> Self {
        Self {
            t0: Instant::now(),
            history: Mutex::new(history),
        }
    }

    /// Microseconds since the recorder was made.
    pub(super) fn now(&self) -> Micros {
        self.t0.elapsed().as_micros() as Micros
    }

    /// Runs `f` on the history under its lock, with the clock read under it.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut History, Micros) -> R) -> R {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.now();
        f(&mut h, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Micros = 1000;

    /// A history of 2 users with a 50 ms bound.
    fn history() -> History {
        History::new(2, Duration::from_millis(50))
    }

    /// A stored save (call in the order of ends, as the recorder does).
    fn save(h: &mut History, user: usize, scope: usize, start: Micros, end: Micros) -> u64 {
        let id = h.begin_save(user, scope, start);
        h.end_save(id, end, SaveOutcome::Stored);
        id
    }

    fn sign_out(h: &mut History, user: usize, start: Micros, end: Micros) {
        let i = h.begin_sign_out(user, start);
        h.end_sign_out(user, i, end, true);
    }

    fn read(start: Micros, got: Got) -> Read {
        Read {
            user: 0,
            scope: 0,
            start,
            end: start + MS,
            got,
            degraded: false,
        }
    }

    #[test]
    fn an_older_token_after_the_bound_is_a_stale_read() {
        let mut h = history();
        let x = save(&mut h, 0, 0, 0, 10 * MS);
        let y = save(&mut h, 0, 0, 20 * MS, 30 * MS);
        // More than the bound after y was acknowledged: x is stale, y is fine.
        assert_eq!(
            h.check_read(&read(81 * MS, Got::Token(x))),
            Some(Anomaly::Stale)
        );
        assert_eq!(h.check_read(&read(81 * MS, Got::Token(y))), None);
        // Nothing at all, with no sign-out to explain it: stale too.
        assert_eq!(
            h.check_read(&read(81 * MS, Got::Nothing)),
            Some(Anomaly::Stale)
        );
        // A token the run never saved, or of another scope, is wrong data.
        assert_eq!(
            h.check_read(&read(81 * MS, Got::Foreign)),
            Some(Anomaly::Stale)
        );
        let other = save(&mut h, 0, 1, 0, MS);
        assert_eq!(
            h.check_read(&read(81 * MS, Got::Token(other))),
            Some(Anomaly::Stale)
        );
    }

    #[test]
    fn within_the_bound_or_concurrent_is_not_stale() {
        let mut h = history();
        let x = save(&mut h, 0, 0, 0, 10 * MS);
        let _y = save(&mut h, 0, 0, 20 * MS, 30 * MS);
        // Within the bound of y's acknowledgement: the message may still be on its way.
        assert_eq!(h.check_read(&read(79 * MS, Got::Token(x))), None);
        // Nothing, within the bound of the first save's acknowledgement; not after.
        assert_eq!(h.check_read(&read(59 * MS, Got::Nothing)), None);
        assert_eq!(
            h.check_read(&read(61 * MS, Got::Nothing)),
            Some(Anomaly::Stale)
        );
        // z overlaps w: either may win, both are fine long after.
        let w = save(&mut h, 0, 0, 110 * MS, 120 * MS);
        let z = save(&mut h, 0, 0, 100 * MS, 140 * MS);
        assert_eq!(h.check_read(&read(500 * MS, Got::Token(z))), None);
        assert_eq!(h.check_read(&read(500 * MS, Got::Token(w))), None);
        // A save still in flight is older than nothing.
        let v = h.begin_save(0, 0, 600 * MS);
        assert_eq!(h.check_read(&read(700 * MS, Got::Token(v))), None);
        // A refused or failed save is no acknowledgement.
        let mut h = history();
        let x = save(&mut h, 0, 0, 0, 10 * MS);
        let r = h.begin_save(0, 0, 20 * MS);
        h.end_save(r, 30 * MS, SaveOutcome::Refused);
        let f = h.begin_save(0, 0, 40 * MS);
        h.end_save(f, 50 * MS, SaveOutcome::Failed);
        let q = h.begin_save(0, 0, 60 * MS);
        h.end_save(q, 70 * MS, SaveOutcome::StoredLater);
        assert_eq!(h.check_read(&read(500 * MS, Got::Token(x))), None);
    }

    #[test]
    fn nothing_is_explained_by_a_sign_out_or_an_l2_failure() {
        let mut h = history();
        save(&mut h, 0, 0, 0, 10 * MS);
        // A sign-out after the save.
        sign_out(&mut h, 0, 20 * MS, 30 * MS);
        assert_eq!(h.check_read(&read(500 * MS, Got::Nothing)), None);
        // A save after it, more than the stamp's grain later: must be read.
        save(&mut h, 0, 0, 2000 * MS, 2010 * MS);
        assert_eq!(
            h.check_read(&read(2100 * MS, Got::Nothing)),
            Some(Anomaly::Stale)
        );
        // ... unless the replica could not rely on L2 then.
        let mut failed = read(2100 * MS, Got::Nothing);
        failed.degraded = true;
        assert_eq!(h.check_read(&failed), None);
        // A save within the grain of a sign-out may read as nothing (whole seconds).
        save(&mut h, 1, 0, 0, 10 * MS);
        sign_out(&mut h, 1, 20 * MS, 30 * MS);
        save(&mut h, 1, 0, 500 * MS, 510 * MS);
        let mut r = read(800 * MS, Got::Nothing);
        r.user = 1;
        assert_eq!(h.check_read(&r), None);
        // A sign-out that overlaps the read explains its nothing; one after it does not.
        let mut h = history();
        save(&mut h, 0, 0, 0, 10 * MS);
        let i = h.begin_sign_out(0, 200 * MS);
        assert_eq!(h.check_read(&read(199 * MS + 500, Got::Nothing)), None);
        h.end_sign_out(0, i, 210 * MS, true);
        assert_eq!(
            h.check_read(&read(100 * MS, Got::Nothing)),
            Some(Anomaly::Stale)
        );
    }

    #[test]
    fn a_token_acquired_before_a_sign_out_is_served_after_it() {
        let mut h = history();
        let x = save(&mut h, 0, 0, 0, 10 * MS);
        sign_out(&mut h, 0, 20 * MS, 30 * MS);
        assert_eq!(
            h.check_read(&read(81 * MS, Got::Token(x))),
            Some(Anomaly::ServedAfterSignOut)
        );
        // Within the bound: the stamp may still be on its way.
        assert_eq!(h.check_read(&read(79 * MS, Got::Token(x))), None);
        // A save that overlapped the sign-out may survive it.
        let mut h = history();
        let y = save(&mut h, 0, 0, 0, 25 * MS);
        sign_out(&mut h, 0, 20 * MS, 30 * MS);
        assert_eq!(h.check_read(&read(500 * MS, Got::Token(y))), None);
        // A sign-out that did not finish its L2 steps is no acknowledgement.
        let mut h = history();
        let z = save(&mut h, 0, 0, 0, 10 * MS);
        let i = h.begin_sign_out(0, 20 * MS);
        h.end_sign_out(0, i, 30 * MS, false);
        assert_eq!(h.check_read(&read(500 * MS, Got::Token(z))), None);
    }

    #[test]
    fn the_latest_token_missing_at_the_end_is_a_lost_update() {
        let mut h = history();
        let x = save(&mut h, 0, 0, 0, 10 * MS);
        let y = save(&mut h, 0, 0, 20 * MS, 30 * MS);
        assert!(h.lost_update(0, 0, Got::Nothing));
        assert!(h.lost_update(0, 0, Got::Token(x)), "older than y");
        assert!(h.lost_update(0, 0, Got::Foreign));
        assert!(!h.lost_update(0, 0, Got::Token(y)));
        // Concurrent saves: either may be the one kept.
        let b = save(&mut h, 0, 1, 10 * MS, 20 * MS);
        let a = save(&mut h, 0, 1, 0, 50 * MS);
        assert!(!h.lost_update(0, 1, Got::Token(a)));
        assert!(!h.lost_update(0, 1, Got::Token(b)));
        // A scope never saved requires nothing.
        assert!(!h.lost_update(0, 2, Got::Nothing));
        // A change that waited in a recovery queue is required too.
        let q = h.begin_save(1, 0, 0);
        h.end_save(q, 10 * MS, SaveOutcome::StoredLater);
        assert!(h.lost_update(1, 0, Got::Nothing));
        assert!(!h.lost_update(1, 0, Got::Token(q)));
    }

    #[test]
    fn a_sign_out_afterwards_excuses_a_missing_token_but_not_a_resurrected_one() {
        let mut h = history();
        let x = save(&mut h, 0, 0, 0, 10 * MS);
        sign_out(&mut h, 0, 20 * MS, 30 * MS);
        assert!(!h.lost_update(0, 0, Got::Nothing));
        assert!(h.resurrected(0, Got::Token(x)));
        // A save after the sign-out ended must survive it.
        let y = save(&mut h, 0, 0, 40 * MS, 50 * MS);
        assert!(h.lost_update(0, 0, Got::Nothing));
        assert!(!h.lost_update(0, 0, Got::Token(y)));
        assert!(!h.resurrected(0, Got::Token(y)));
        // A save that overlapped a sign-out may be gone, or kept.
        let mut h = history();
        let z = save(&mut h, 0, 0, 0, 25 * MS);
        sign_out(&mut h, 0, 20 * MS, 30 * MS);
        assert!(!h.lost_update(0, 0, Got::Nothing));
        assert!(!h.resurrected(0, Got::Token(z)));
    }

    #[test]
    fn a_save_within_the_stamp_s_millisecond_after_a_sign_out_is_concurrent_with_it() {
        let mut h = history();
        sign_out(&mut h, 0, 20 * MS, 30 * MS);
        // Began 0.3 ms after the sign-out ended: the stamp's millisecond may hold both.
        let y = save(&mut h, 0, 0, 30 * MS + 300, 31 * MS);
        assert!(!h.lost_update(0, 0, Got::Nothing));
        assert!(!h.lost_update(0, 0, Got::Token(y)));
        // Past the window it must survive.
        let z = save(&mut h, 0, 0, 30 * MS + STAMP_MS_WINDOW, 40 * MS);
        assert!(h.lost_update(0, 0, Got::Nothing));
        assert!(!h.lost_update(0, 0, Got::Token(z)));
    }

    #[test]
    fn the_walk_back_finds_the_latest_start_among_long_saves() {
        let mut h = history();
        // A long save that began late ends after a short one that began early.
        save(&mut h, 0, 0, 0, 10 * MS);
        save(&mut h, 0, 0, 9 * MS, 12 * MS);
        save(&mut h, 0, 0, 5 * MS, 13 * MS);
        save(&mut h, 0, 0, 100 * MS, 200 * MS);
        assert_eq!(h.latest_stored_before(0, 0, 14 * MS), Some(9 * MS));
        assert_eq!(h.latest_stored_before(0, 0, 11 * MS), Some(0));
        assert_eq!(h.latest_stored_before(0, 0, 10 * MS), None);
        assert_eq!(h.latest_stored_before(0, 0, 201 * MS), Some(100 * MS));
    }
}
