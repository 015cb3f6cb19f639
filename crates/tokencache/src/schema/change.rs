//! What one write did to a partition, record by record, so that it can be replayed onto
//! another copy of the partition: the copy L2 holds when the write could not read it.
//!
//! A [`PartitionChange`] is the records a change added or replaced, and the credential
//! keys it removed, per section. Applied to a copy ([`PartitionChange::apply_to`]):
//!
//! * an upserted record replaces the copy's record of the same key unless the copy's is
//!   *newer* (a later `cached_at` for access tokens, a later `last_modification_time`
//!   for refresh tokens, to the millisecond when both records carry tokencache's
//!   [`WRITTEN_AT_MS`](super::WRITTEN_AT_MS); a tie goes to the change), so a refresh token never goes back
//!   to an older one;
//! * a removed key is removed from the copy unless the copy's record was written after
//!   the change was made;
//! * records the change did not touch are kept as they are.
//!
//! Two changes compose ([`PartitionChange::then`]): the later one wins per key.

use super::section::Section;
use super::{AccessToken, Account, AppMetadata, IdToken, Partition, RefreshToken};

/// The credential keys a change removed, per section.
#[derive(Debug, Clone, Default, PartialEq)]
struct Removed {
    access_tokens: Vec<String>,
    refresh_tokens: Vec<String>,
    id_tokens: Vec<String>,
    accounts: Vec<String>,
    app_metadata: Vec<String>,
}

/// What a change did to a partition, record by record (see the module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionChange {
    upserts: Partition,
    removed: Removed,
}

/// When a record was written: its second, and the millisecond when tokencache recorded
/// it ([`WRITTEN_AT_MS`](super::WRITTEN_AT_MS), believed only when it falls in that second).
#[derive(Debug, Clone, Copy)]
struct Stamp {
    secs: i64,
    ms: Option<i64>,
    /// The write's place in its process's order ([`AccessToken::written_seq`]); 0 when
    /// unknown.
    seq: u64,
}

impl Stamp {
    fn of(secs: i64, ms: Option<i64>, seq: Option<u64>) -> Stamp {
        let ms = ms.filter(|ms| ms.div_euclid(1000) == secs);
        Stamp {
            secs,
            ms,
            seq: if ms.is_some() { seq.unwrap_or(0) } else { 0 },
        }
    }

    /// Whether this write is later than the instant `ms`: to the millisecond when it
    /// carries one, else by the second (a write of `ms`'s own second is not later).
    fn after_ms(self, ms: i64) -> bool {
        match self.ms {
            Some(mine) => mine > ms,
            None => self.secs > ms.div_euclid(1000),
        }
    }

    /// Whether this write is later than `other`: to the millisecond when both carry
    /// one (within one millisecond by their order of writes), else by the second.
    fn later_than(self, other: Stamp) -> bool {
        match (self.ms, other.ms) {
            (Some(a), Some(b)) => (a, self.seq) > (b, other.seq),
            _ => self.secs > other.secs,
        }
    }
}

/// The write time of a record, when its kind carries one.
trait Stamped {
    fn stamp(&self) -> Option<Stamp>;

    /// Whether the record was written after the instant `ms` (see [`Stamp::after_ms`]);
    /// a record without a time was not.
    fn written_after(&self, ms: i64) -> bool {
        self.stamp().is_some_and(|s| s.after_ms(ms))
    }
}

impl Stamped for AccessToken {
    fn stamp(&self) -> Option<Stamp> {
        Some(Stamp::of(
            self.cached_at,
            self.written_at_ms,
            self.written_seq,
        ))
    }
}

impl Stamped for RefreshToken {
    fn stamp(&self) -> Option<Stamp> {
        self.last_modification_time
            .map(|t| Stamp::of(t, self.written_at_ms, self.written_seq))
    }
}

impl AccessToken {
    /// Whether it was written after the instant `ms` (ms since the epoch): to the
    /// millisecond when it carries tokencache's [`WRITTEN_AT_MS`](super::WRITTEN_AT_MS),
    /// else by its `cached_at` second (a token of `ms`'s own second is not later). What
    /// a revocation stamp at `ms` refuses: the tokens not written after it.
    pub fn written_after(&self, ms: i64) -> bool {
        Stamped::written_after(self, ms)
    }
}

macro_rules! unstamped {
    ($($t:ty),*) => {$(impl Stamped for $t { fn stamp(&self) -> Option<Stamp> { None } })*};
}
unstamped!(IdToken, Account, AppMetadata);

fn between<T: Clone + PartialEq>(
    before: &Section<T>,
    after: &Section<T>,
    upserts: &mut Section<T>,
    removed: &mut Vec<String>,
) {
    for (k, v) in after.iter() {
        if before.get(k) != Some(v) {
            upserts.insert(k.clone(), v.clone());
        }
    }
    for (k, _) in before.iter() {
        if after.get(k).is_none() {
            removed.push(k.clone());
        }
    }
}

fn then<T: Clone>(
    upserts: &mut Section<T>,
    removed: &mut Vec<String>,
    later_upserts: &Section<T>,
    later_removed: &[String],
) {
    for k in later_removed {
        upserts.remove(k);
        if !removed.contains(k) {
            removed.push(k.clone());
        }
    }
    for (k, v) in later_upserts.iter() {
        removed.retain(|r| r != k);
        upserts.insert(k.clone(), v.clone());
    }
}

fn apply<T: Clone + Stamped>(
    target: &mut Section<T>,
    upserts: &Section<T>,
    removed: &[String],
    written_at: i64,
) {
    for k in removed {
        let newer = target
            .get(k)
            .and_then(Stamped::stamp)
            .is_some_and(|t| t.secs > written_at);
        if !newer {
            target.remove(k);
        }
    }
    for (k, v) in upserts.iter() {
        let keep_theirs = match (target.get(k).and_then(Stamped::stamp), v.stamp()) {
            (Some(theirs), Some(ours)) => theirs.later_than(ours),
            (Some(theirs), None) => theirs.secs > written_at,
            _ => false,
        };
        if !keep_theirs {
            target.insert(k.clone(), v.clone());
        }
    }
}

impl Partition {
    /// Whether an access or refresh token here was written after the instant `ms` (ms
    /// since the epoch): to the millisecond for records that carry [`WRITTEN_AT_MS`](super::WRITTEN_AT_MS),
    /// else by the second (a record of `ms`'s own second is not later).
    pub fn has_credentials_written_after(&self, ms: i64) -> bool {
        self.access_tokens.values().any(|t| t.written_after(ms))
            || self.refresh_tokens.values().any(|t| t.written_after(ms))
    }

    /// Removes the access and refresh tokens written at or before `ms` (as
    /// [`has_credentials_written_after`](Self::has_credentials_written_after) decides):
    /// what a removal made at `ms` removes when another writer stored newer tokens since.
    /// Returns how many went.
    pub fn remove_credentials_written_by(&mut self, ms: i64) -> usize {
        let before = self.len();
        self.access_tokens.retain(|_, t| t.written_after(ms));
        self.refresh_tokens.retain(|_, t| t.written_after(ms));
        before - self.len()
    }
}

impl PartitionChange {
    /// What turned `before` into `after`.
    pub fn between(before: &Partition, after: &Partition) -> Self {
        let mut c = Self::default();
        let (u, r) = (&mut c.upserts, &mut c.removed);
        between(
            &before.access_tokens,
            &after.access_tokens,
            &mut u.access_tokens,
            &mut r.access_tokens,
        );
        between(
            &before.refresh_tokens,
            &after.refresh_tokens,
            &mut u.refresh_tokens,
            &mut r.refresh_tokens,
        );
        between(
            &before.id_tokens,
            &after.id_tokens,
            &mut u.id_tokens,
            &mut r.id_tokens,
        );
        between(
            &before.accounts,
            &after.accounts,
            &mut u.accounts,
            &mut r.accounts,
        );
        between(
            &before.app_metadata,
            &after.app_metadata,
            &mut u.app_metadata,
            &mut r.app_metadata,
        );
        c
    }

    /// This change followed by `later` (the later one wins per key).
    pub fn then(mut self, later: &PartitionChange) -> Self {
        let (u, r) = (&mut self.upserts, &mut self.removed);
        let (lu, lr) = (&later.upserts, &later.removed);
        then(
            &mut u.access_tokens,
            &mut r.access_tokens,
            &lu.access_tokens,
            &lr.access_tokens,
        );
        then(
            &mut u.refresh_tokens,
            &mut r.refresh_tokens,
            &lu.refresh_tokens,
            &lr.refresh_tokens,
        );
        then(
            &mut u.id_tokens,
            &mut r.id_tokens,
            &lu.id_tokens,
            &lr.id_tokens,
        );
        then(&mut u.accounts, &mut r.accounts, &lu.accounts, &lr.accounts);
        then(
            &mut u.app_metadata,
            &mut r.app_metadata,
            &lu.app_metadata,
            &lr.app_metadata,
        );
        self
    }

    /// Replays the change onto `target` (see the module docs); `written_at` is when the
    /// change was made (Unix seconds).
    pub fn apply_to(&self, target: &mut Partition, written_at: i64) {
        let (u, r) = (&self.upserts, &self.removed);
        apply(
            &mut target.access_tokens,
            &u.access_tokens,
            &r.access_tokens,
            written_at,
        );
        apply(
            &mut target.refresh_tokens,
            &u.refresh_tokens,
            &r.refresh_tokens,
            written_at,
        );
        apply(
            &mut target.id_tokens,
            &u.id_tokens,
            &r.id_tokens,
            written_at,
        );
        apply(&mut target.accounts, &u.accounts, &r.accounts, written_at);
        apply(
            &mut target.app_metadata,
            &u.app_metadata,
            &r.app_metadata,
            written_at,
        );
    }

    /// This change without the credentials it adds that were written at or before
    /// `stamp_ms` (ms since the epoch; access tokens by `cached_at`, refresh tokens by
    /// `last_modification_time`, to the millisecond when they carry [`WRITTEN_AT_MS`](super::WRITTEN_AT_MS),
    /// else by the second, a token of the stamp's own second counting as before it):
    /// what a queued change may still write after its owner signed out at `stamp_ms`.
    /// A change composed in a queue of a part from before the sign-out and a part from
    /// after keeps the latter.
    pub fn without_credentials_written_by(&self, stamp_ms: i64) -> PartitionChange {
        let mut c = self.clone();
        c.upserts.remove_credentials_written_by(stamp_ms);
        c
    }

    /// The records the change added or replaced, as a partition.
    pub fn upserts(&self) -> &Partition {
        &self.upserts
    }

    /// How many credential keys the change removed.
    pub fn removed_count(&self) -> usize {
        let r = &self.removed;
        r.access_tokens.len()
            + r.refresh_tokens.len()
            + r.id_tokens.len()
            + r.accounts.len()
            + r.app_metadata.len()
    }

    /// Whether the change did nothing.
    pub fn is_empty(&self) -> bool {
        self.upserts.len() == 0 && self.removed_count() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    fn user(oid: &str, scopes: &[&str], now: i64) -> Partition {
        let mut p = Partition::new();
        add(&mut p, oid, scopes, now);
        p
    }

    /// A user token request of the sample client for `scopes`.
    fn request<'a>(scopes: &'a [&'a str]) -> super::super::TokenRequest<'a> {
        super::super::TokenRequest {
            client_id: sample::CLIENT_ID,
            environment: sample::ENVIRONMENT,
            realm: sample::TENANT,
            scopes,
            user_assertion: None,
        }
    }

    fn add(p: &mut Partition, oid: &str, scopes: &[&str], now: i64) {
        let resp = sample::user_response(oid, sample::TENANT, scopes, now, 3600).unwrap();
        p.add_token_response(&request(scopes), &resp, now).unwrap();
    }

    #[test]
    fn a_change_replays_onto_a_copy_that_moved_on() {
        let t = 1_800_000_000;
        let base = user("u1", &["a"], t);
        let mut ours = base.clone();
        add(&mut ours, "u1", &["b"], t + 10);
        let change = PartitionChange::between(&base, &ours);
        assert!(!change.is_empty());
        // meanwhile L2 got a token for scope c from another replica, later than ours
        let mut theirs = base.clone();
        add(&mut theirs, "u1", &["c"], t + 20);
        let mut merged = theirs.clone();
        change.apply_to(&mut merged, t + 10);
        let targets: Vec<_> = merged.access_tokens().map(|a| a.target.clone()).collect();
        assert!(targets.iter().any(|x| x == "b"), "{targets:?}");
        assert!(targets.iter().any(|x| x == "c"), "{targets:?}");
        // their refresh token is newer than ours: it stays
        let rt_theirs: Vec<_> = theirs.refresh_tokens().cloned().collect();
        let rt_merged: Vec<_> = merged.refresh_tokens().cloned().collect();
        assert_eq!(rt_theirs, rt_merged);
    }

    #[test]
    fn removals_replay_unless_the_copy_is_newer() {
        let t = 1_800_000_000;
        let base = user("u1", &["a"], t);
        let mut ours = base.clone();
        ours.remove_account(sample::CLIENT_ID, &format!("u1.{}", sample::TENANT));
        let change = PartitionChange::between(&base, &ours);
        assert!(change.removed_count() > 0);
        let mut copy = base.clone();
        change.apply_to(&mut copy, t + 5);
        assert!(!copy.has_credentials());
        // a copy rewritten after the removal keeps its newer records
        let newer = user("u1", &["a"], t + 60);
        let mut copy = newer.clone();
        change.apply_to(&mut copy, t + 5);
        assert!(copy.has_credentials());
    }

    #[test]
    fn changes_compose_later_wins() {
        let t = 1_800_000_000;
        let p0 = Partition::new();
        let p1 = user("u1", &["a"], t);
        let mut p2 = p1.clone();
        p2.remove_account(sample::CLIENT_ID, &format!("u1.{}", sample::TENANT));
        let c = PartitionChange::between(&p0, &p1).then(&PartitionChange::between(&p1, &p2));
        let mut target = p1.clone();
        c.apply_to(&mut target, t + 1);
        assert!(!target.has_credentials(), "the later removal wins");
        let mut p3 = p2.clone();
        add(&mut p3, "u1", &["b"], t + 2);
        let c = c.then(&PartitionChange::between(&p2, &p3));
        let mut target = Partition::new();
        c.apply_to(&mut target, t + 2);
        assert_eq!(target.access_tokens().count(), 1);
    }

    /// Two writes of one token in one second: the later millisecond wins a replay
    /// (tokencache's own `WRITTEN_AT_MS`); a millisecond that does not fall in the
    /// record's second is ignored, and without one the second decides as before (a tie
    /// goes to the change).
    #[test]
    fn a_replay_orders_writes_of_one_second_by_their_millisecond() {
        let t = 1_800_000_000;
        let resp = |secret: &str| {
            let mut r = sample::user_response("u1", sample::TENANT, &["a"], t, 3600).unwrap();
            r.access_token = Some(secret.into());
            r.refresh_token = Some(format!("rt-{secret}").into());
            r
        };
        let req = request(&["a"]);
        let form = super::super::AppAccountForm::default();
        let written = |secret: &str, ms: Option<i64>| {
            let mut p = Partition::new();
            match ms {
                Some(ms) => p.add_token_response_written_at(&req, &resp(secret), ms, form),
                None => p.add_token_response(&req, &resp(secret), t),
            }
            .unwrap();
            p
        };
        let secrets = |p: &Partition| {
            let at = p.access_tokens().next().unwrap().secret.expose().to_owned();
            let rt = p
                .refresh_tokens()
                .next()
                .unwrap()
                .secret
                .expose()
                .to_owned();
            (at, rt)
        };
        let replay = |ours: &Partition, theirs: &Partition| {
            let change = PartitionChange::between(&Partition::new(), ours);
            let mut merged = theirs.clone();
            change.apply_to(&mut merged, t);
            secrets(&merged)
        };
        let early = written("early", Some(t * 1000 + 100));
        let late = written("late", Some(t * 1000 + 900));
        let pair = |s: &str| (s.to_owned(), format!("rt-{s}"));
        // a queued earlier write over a later one: theirs stays; the other way: ours
        assert_eq!(replay(&early, &late), pair("late"));
        assert_eq!(replay(&late, &early), pair("late"));
        // a millisecond on one side only: the second decides; it ties, the change wins
        let plain = written("plain", None);
        assert_eq!(replay(&plain, &late), pair("plain"));
        assert_eq!(replay(&early, &plain), pair("early"));
        // a millisecond outside the record's second is not believed
        let mut lying = late.clone();
        let key = lying.access_token_entries().next().unwrap().0.to_owned();
        let at = lying.access_tokens.get_mut(&key).unwrap();
        at.written_at_ms = Some(9_999_999_999_999);
        let change = PartitionChange::between(&Partition::new(), &early);
        let mut merged = lying.clone();
        change.apply_to(&mut merged, t);
        let at = merged
            .access_tokens()
            .next()
            .unwrap()
            .secret
            .expose()
            .to_owned();
        assert_eq!(
            at, "early",
            "their millisecond is ignored: a tie of seconds"
        );
        // written records carry it, written as a string of the millisecond, read back
        let ms_field = super::super::WRITTEN_AT_MS;
        let at = late.access_tokens().next().unwrap();
        assert_eq!(
            (at.written_at_ms, at.cached_at),
            (Some(1_800_000_000_900), t)
        );
        let blob: serde_json::Value = serde_json::from_slice(&late.to_vec()).unwrap();
        let written = blob["AccessToken"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap();
        assert_eq!(written[ms_field], serde_json::json!("1800000000900"));
        assert_eq!(Partition::parse(&late.to_vec()).unwrap(), late);
        // a value that is not a millisecond is not ours to read: kept as an unknown field
        let text = String::from_utf8(late.to_vec())
            .unwrap()
            .replace("\"1800000000900\"", "{\"x\":1}");
        let odd = Partition::parse(text.as_bytes()).unwrap();
        let at = odd.access_tokens().next().unwrap();
        assert_eq!(at.written_at_ms, None);
        assert_eq!(at.extra.get(ms_field), Some(&serde_json::json!({"x": 1})));
        assert!(String::from_utf8(odd.to_vec())
            .unwrap()
            .contains("{\"x\":1}"));
    }

    /// What a queued change may still write after a sign-out at `stamp_ms`: to the
    /// millisecond when the records carry it, else by the second (the stamp's own second
    /// counts as before it).
    #[test]
    fn a_change_keeps_only_the_credentials_written_after_a_sign_out() {
        let t = 1_800_000_000;
        let req = request(&["a"]);
        let resp = sample::user_response("u1", sample::TENANT, &["a"], t, 3600).unwrap();
        let form = super::super::AppAccountForm::default();
        let change_at = |ms: Option<i64>| {
            let mut p = Partition::new();
            match ms {
                Some(ms) => p.add_token_response_written_at(&req, &resp, ms, form),
                None => p.add_token_response(&req, &resp, t),
            }
            .unwrap();
            PartitionChange::between(&Partition::new(), &p)
        };
        let kept = |c: &PartitionChange, stamp_ms: i64| {
            let c = c.without_credentials_written_by(stamp_ms);
            (
                c.upserts().access_tokens().count(),
                c.upserts().refresh_tokens().count(),
            )
        };
        let stamp = t * 1000 + 500;
        assert_eq!(
            kept(&change_at(Some(t * 1000 + 501)), stamp),
            (1, 1),
            "just after"
        );
        assert_eq!(
            kept(&change_at(Some(t * 1000 + 500)), stamp),
            (0, 0),
            "at it"
        );
        assert_eq!(
            kept(&change_at(Some(t * 1000 + 499)), stamp),
            (0, 0),
            "before"
        );
        // without a millisecond: by the second, the stamp's own second is before it
        assert_eq!(kept(&change_at(None), stamp), (0, 0));
        assert_eq!(kept(&change_at(None), (t - 1) * 1000 + 999), (1, 1));
    }
}
