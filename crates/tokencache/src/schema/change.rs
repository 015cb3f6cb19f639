//! What one write did to a partition, record by record, so that it can be replayed onto
//! another copy of the partition: the copy L2 holds when the write could not read it.
//!
//! A [`PartitionChange`] is the records a change added or replaced, and the credential
//! keys it removed, per section. Applied to a copy ([`PartitionChange::apply_to`]):
//!
//! * an upserted record replaces the copy's record of the same key unless the copy's is
//!   *newer* (a later `cached_at` for access tokens, a later `last_modification_time`
//!   for refresh tokens), so a refresh token never goes back to an older one;
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

/// The write time of a record, when its kind carries one.
trait Stamped {
    fn stamp(&self) -> Option<i64>;
}

impl Stamped for AccessToken {
    fn stamp(&self) -> Option<i64> {
        Some(self.cached_at)
    }
}

impl Stamped for RefreshToken {
    fn stamp(&self) -> Option<i64> {
        self.last_modification_time
    }
}

macro_rules! unstamped {
    ($($t:ty),*) => {$(impl Stamped for $t { fn stamp(&self) -> Option<i64> { None } })*};
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
            .is_some_and(|t| t > written_at);
        if !newer {
            target.remove(k);
        }
    }
    for (k, v) in upserts.iter() {
        let keep_theirs = match (target.get(k).and_then(Stamped::stamp), v.stamp()) {
            (Some(theirs), Some(ours)) => theirs > ours,
            (Some(theirs), None) => theirs > written_at,
            _ => false,
        };
        if !keep_theirs {
            target.insert(k.clone(), v.clone());
        }
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

    /// This change without the credentials it adds that were cached at or before
    /// `stamp` (Unix seconds; access tokens by `cached_at`, refresh tokens by
    /// `last_modification_time`): what a queued change may still write after its owner
    /// signed out at `stamp`. Reads refuse such tokens anyway; a change composed in a
    /// queue of a part from before the sign-out and a part from after keeps the latter.
    pub fn without_credentials_cached_by(&self, stamp: i64) -> PartitionChange {
        let mut c = self.clone();
        c.upserts.access_tokens.retain(|_, at| at.cached_at > stamp);
        c.upserts
            .refresh_tokens
            .retain(|_, rt| rt.last_modification_time.is_some_and(|t| t > stamp));
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

    fn add(p: &mut Partition, oid: &str, scopes: &[&str], now: i64) {
        let resp = sample::user_response(oid, sample::TENANT, scopes, now, 3600).unwrap();
        let req = super::super::TokenRequest {
            client_id: sample::CLIENT_ID,
            environment: sample::ENVIRONMENT,
            realm: sample::TENANT,
            scopes,
            user_assertion: None,
        };
        p.add_token_response(&req, &resp, now).unwrap();
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
}
