//! The optimistic write of one partition (docs/design.md §8): read it with its exact
//! bytes, change a copy, and write it only if L2 still holds those bytes
//! (`Store::compare_and_swap`). When another replica wrote in between, the change is
//! replayed record by record onto what L2 holds now ([`PartitionChange`]: newest
//! `cached_at` per credential key wins, a refresh token never goes back to an older
//! one) and the write is tried again, so two replicas saving into one partition at once
//! both end up in it.
//!
//! **Sign-out wins.** With the partition, the owner's revocation stamp is read (after
//! the partition: a sign-out writes its stamp before it removes the partition, so a
//! read that missed the removal is caught by the compare-and-swap, and a read that saw
//! it sees the stamp). A write whose tokens were requested at or before the stamp
//! writes nothing: a token whose request started before a sign-out is never served
//! afterwards, and no refresh token of the user is left in L2.
//!
//! When L2 cannot be read or written, the change goes to the recovery queue as a
//! record-level change (merged into L2's partition when L2 is back, by the same rules).

use std::sync::Arc;

use super::recovery::{Queued, QueuedOp};
use super::stats::bump;
use super::{Core, EntryContext, WriteOutcome, WriteScope};
use crate::error::Error;
use crate::partition::PartitionKind;
use crate::schema::{Partition, PartitionChange};
use crate::store::stamp::parse_stamp;

/// How many times a write is replayed onto a partition another replica changed before
/// it gives up and queues the change (a partition written this often at once is a bug
/// elsewhere, not contention).
pub(super) const MAX_REPLAYS: usize = 32;

/// How a commit ended.
pub(super) enum Committed {
    /// L2 took it.
    Written(WriteOutcome),
    /// The owner signed out after the tokens were requested: nothing written.
    Revoked,
    /// The key now holds another application's encrypted value: never written over.
    Protected,
    /// The key now holds a value sealed with a key this ring lacks: never written over.
    Foreign(Partition),
    /// L2 failed: the partition this replica would have written.
    Failed(Partition),
}

/// A partition as L2 holds it, for a write.
pub(super) struct Current {
    /// The exact bytes (`None`: no entry): what the compare-and-swap expects.
    pub(super) raw: Option<Vec<u8>>,
    /// Decoded (empty when absent or unreadable: a write replaces an unreadable one).
    pub(super) partition: Partition,
    /// The owner's revocation stamp (ms since the epoch), from L2 or known here.
    pub(super) stamp: Option<i64>,
    /// The value is another application's, encrypted by .NET Data Protection: it is
    /// never written over.
    pub(super) protected: bool,
    /// The value is sealed with a key this replica's ring lacks: another replica's
    /// valid data (a rotation not caught up with here), never written over.
    pub(super) foreign: bool,
}

impl Core {
    /// Reads `full` and its owner's revocation stamp; `None` when L2 failed.
    pub(super) async fn read_current(&self, full: &str, owner: Option<&str>) -> Option<Current> {
        bump(&self.counters.l2_reads);
        let value = self.call_with("get", || self.store.get(full)).await.ok()?;
        let (mut protected, mut foreign) = (false, false);
        let (raw, partition) = match value {
            None => (None, Partition::new()),
            Some(v) => match self.decode(full, &v.bytes) {
                Ok(p) => (Some(v.bytes), p),
                Err(e @ super::codec::DecodeError::DataProtected) => {
                    self.unreadable(full, v.bytes.len(), &e, "left as it is");
                    protected = true;
                    (Some(v.bytes), Partition::new())
                }
                Err(e) if e.is_foreign_key() => {
                    let then = "not overwritten (sealed with a key this replica lacks): writes stay in this replica's L1";
                    self.unreadable(full, v.bytes.len(), &e, then);
                    foreign = true;
                    (Some(v.bytes), Partition::new())
                }
                Err(e) => {
                    self.unreadable(full, v.bytes.len(), &e, "replaced by this write");
                    (Some(v.bytes), Partition::new())
                }
            },
        };
        let mut stamp = None;
        if let Some(owner) = owner {
            let key = self.keys.revocation(owner);
            bump(&self.counters.l2_reads);
            let v = self.call_with("get", || self.store.get(&key)).await.ok()?;
            stamp = v.and_then(|v| parse_stamp(&v.bytes));
            if let Some(s) = stamp {
                self.revoke_locally_ms(owner, s);
            }
            stamp = stamp.max(self.revocation_ms(owner));
        }
        Some(Current {
            raw,
            partition,
            stamp,
            protected,
            foreign,
        })
    }

    pub(super) async fn update<R>(
        &self,
        kind: PartitionKind,
        key: &str,
        ctx: EntryContext,
        scope: WriteScope<'_>,
        change: impl FnOnce(&mut Partition) -> Result<R, Error>,
    ) -> Result<(R, WriteOutcome), Error> {
        let _guard = self.locks.lock(key).await;
        // Dropped mid-write (a cancelled caller): L2 may or may not have the new value,
        // so L1's copy is no longer known to match it; the next read rereads L2.
        let mut stale_l1 = ForgetOnDrop {
            core: self,
            key,
            armed: true,
        };
        let full = self.keys.partition_str(key);
        let queued = self.queue.peek(&full);
        let Some(mut current) = self.read_current(&full, scope.owner).await else {
            // L2 could not be read: our best knowledge of the partition, and the change
            // queued record by record (never a whole key over what we could not see).
            let base = match &queued {
                Some(Queued {
                    op: QueuedOp::Remove,
                    ..
                }) => Partition::new(),
                _ => self
                    .l1
                    .as_ref()
                    .and_then(|l1| l1.get(key))
                    .map(|entry| Partition::clone(entry.value()))
                    .or_else(|| match &queued {
                        Some(Queued {
                            op: QueuedOp::Merge { change, .. },
                            ..
                        }) => Some(change.upserts().clone()),
                        _ => None,
                    })
                    .unwrap_or_default(),
            };
            let mut partition = base.clone();
            let result = change(&mut partition)?;
            let diff = PartitionChange::between(&base, &partition);
            stale_l1.armed = false;
            let outcome = self.queue_change(kind, key, &full, ctx, scope, queued, diff, partition);
            return Ok((result, outcome));
        };
        if current.protected {
            // Another application's encrypted partition: never replaced.
            self.forget_l1(key);
            stale_l1.armed = false;
            return Err(Error::DataProtected { key: full });
        }
        if scope.revoked_by(current.stamp) {
            let result = change(&mut Partition::new())?;
            return Ok((result, self.refused(key, &mut stale_l1)));
        }
        if current.foreign {
            // Never destroy another ring's valid partition (its refresh tokens) because
            // this replica cannot read it: the change is served from this L1 only.
            let mut partition = Partition::new();
            let result = change(&mut partition)?;
            let outcome = self.keep_in_l1(kind, key, &ctx, partition, false);
            stale_l1.armed = false;
            return Ok((result, outcome));
        }
        let base = match &queued {
            Some(q) => q.applied_to(std::mem::take(&mut current.partition)),
            None => std::mem::take(&mut current.partition),
        };
        let mut partition = base.clone();
        let result = change(&mut partition)?;
        let diff = PartitionChange::between(&base, &partition);
        let outcome = match self
            .commit(
                kind,
                key,
                &full,
                &ctx,
                scope,
                queued.as_ref(),
                &diff,
                current,
                partition,
            )
            .await
        {
            Committed::Written(outcome) => {
                // a change of the key queued earlier was in the base: it reached L2 too
                self.settled(&full);
                outcome
            }
            Committed::Revoked => self.refused(key, &mut stale_l1),
            Committed::Protected => {
                self.forget_l1(key);
                stale_l1.armed = false;
                return Err(Error::DataProtected { key: full });
            }
            Committed::Foreign(partition) => self.keep_in_l1(kind, key, &ctx, partition, false),
            Committed::Failed(partition) => {
                stale_l1.armed = false;
                self.queue_change(kind, key, &full, ctx, scope, queued, diff, partition)
            }
        };
        stale_l1.armed = false;
        Ok((result, outcome))
    }

    /// Writes `partition` (`diff` made to `current`) over exactly `current`; when another
    /// writer changed the key, replays `diff` (after `queued`, a change of the key still
    /// queued) onto what it wrote and tries again, at most [`MAX_REPLAYS`] times.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn commit(
        &self,
        kind: PartitionKind,
        key: &str,
        full: &str,
        ctx: &EntryContext,
        scope: WriteScope<'_>,
        queued: Option<&Queued>,
        diff: &PartitionChange,
        mut current: Current,
        mut partition: Partition,
    ) -> Committed {
        let mut replay = 0;
        loop {
            replay += 1;
            // What L2 holds from before the owner's last sign-out is no one's to keep
            // (a race another writer lost, a writer that knows nothing of stamps).
            if let Some(stamp) = current.stamp {
                partition.remove_credentials_written_by(stamp);
            }
            let now = self.clock.now_millis();
            let (deadline, ttl, alive) = self.life(kind, &partition, ctx, now);
            let bytes = alive.then(|| self.encode(full, &partition));
            // Both ends, for a store that keeps them (a .NET hash slides and expires by them).
            let expiry = crate::store::EntryExpiry {
                absolute: deadline
                    .hard_ms
                    .map(|h| std::time::Duration::from_millis(h.saturating_sub(now))),
                sliding: deadline.sliding,
            };
            bump(&self.counters.l2_writes);
            // As a load does (`coherence`): a message that arrives between the swap and
            // the fill may be of a write that came after ours; then ours is not kept.
            let seen = self.invalidations();
            let swapped = self
                .call_with("compare_and_swap", || {
                    self.store.compare_and_swap(
                        full,
                        current.raw.as_deref(),
                        bytes.as_deref(),
                        expiry,
                    )
                })
                .await;
            match swapped {
                Ok(true) => {
                    let version = bytes.as_deref().map_or(0, super::coherence::version_of);
                    self.publish_changed(full, version);
                    match bytes {
                        Some(b) => {
                            // (not kept when a message came meanwhile: the next read loads)
                            self.forget_l1(key);
                            let (size, at) = (b.len(), deadline.at(now));
                            self.fill_l1_unless_invalidated(
                                key,
                                Arc::new(partition),
                                size,
                                now,
                                at,
                                Some(&b),
                                seen,
                            )
                        }
                        None => self.forget_l1(key),
                    }
                    // A sign-out whose stamp we did not see may have removed the key
                    // before our swap (a removal finds nothing to compare with when the
                    // key was absent): look at the stamp once more, and take back what
                    // predates it. Then either the sign-out came after this look, so its
                    // removal follows our write, or we see it here.
                    if let (Some(owner), true) = (scope.owner, alive) {
                        if let Some(stamp) =
                            self.signed_out_since(key, full, owner, current.stamp).await
                        {
                            if scope.revoked_by(Some(stamp)) {
                                return Committed::Revoked;
                            }
                        }
                    }
                    return Committed::Written(WriteOutcome {
                        stored: alive,
                        l2_written: true,
                        ttl: if alive { ttl } else { None },
                        merged_later: false,
                        revoked: false,
                    });
                }
                Ok(false) if replay <= MAX_REPLAYS => {
                    // Another writer came first: replay our change onto what it wrote,
                    // after a short random pause that grows with the replays (two
                    // replicas writing one key in lockstep would otherwise keep
                    // colliding).
                    bump(&self.counters.write_conflicts);
                    tokio::time::sleep(self.replay_pause(replay)).await;
                    let Some(mut fresh) = self.read_current(full, scope.owner).await else {
                        return Committed::Failed(partition);
                    };
                    if fresh.protected {
                        return Committed::Protected;
                    }
                    if fresh.foreign {
                        return Committed::Foreign(partition);
                    }
                    if scope.revoked_by(fresh.stamp) {
                        return Committed::Revoked;
                    }
                    partition = std::mem::take(&mut fresh.partition);
                    if let Some(q) = queued {
                        partition = q.applied_to(partition);
                    }
                    diff.apply_to(&mut partition, scope.requested_at_ms / 1000);
                    current = fresh;
                }
                // L2 failed (or the partition is written too often to win).
                Ok(false) | Err(_) => return Committed::Failed(partition),
            }
        }
    }

    /// After a write of `owner`'s partition `full`: the owner's stamp in L2, when it is
    /// later than `seen` (the one the write saw), with the credentials written at or
    /// before it removed from L2's partition (by compare-and-swap, replayed on
    /// conflict) and from this replica's L1. `None`: no newer stamp (or L2 did not
    /// answer: then the sign-out's own removal, which follows its stamp, is what is left
    /// to rely on).
    async fn signed_out_since(
        &self,
        key: &str,
        full: &str,
        owner: &str,
        seen: Option<i64>,
    ) -> Option<i64> {
        let stamp_key = self.keys.revocation(owner);
        bump(&self.counters.l2_reads);
        let value = self
            .call_with("get", || self.store.get(&stamp_key))
            .await
            .ok()??;
        let stamp = parse_stamp(&value.bytes)?;
        if seen.is_some_and(|s| s >= stamp) {
            return None;
        }
        self.revoke_locally_ms(owner, stamp);
        self.forget_l1(key);
        for _ in 0..MAX_REPLAYS {
            bump(&self.counters.l2_reads);
            let Ok(Some(v)) = self.call_with("get", || self.store.get(full)).await else {
                break; // gone (the sign-out removed it) or L2 failed
            };
            let Ok(mut p) = self.decode(full, &v.bytes) else {
                break;
            };
            if p.remove_credentials_written_by(stamp) == 0 {
                break;
            }
            let bytes = p.has_credentials().then(|| self.encode(full, &p));
            bump(&self.counters.l2_writes);
            let swapped = self
                .call_with("compare_and_swap", || {
                    self.store.compare_and_swap(
                        full,
                        Some(&v.bytes),
                        bytes.as_deref(),
                        crate::store::EntryExpiry::after(v.ttl),
                    )
                })
                .await;
            match swapped {
                Ok(true) => {
                    let version = bytes.as_deref().map_or(0, super::coherence::version_of);
                    self.publish_changed(full, version);
                    break;
                }
                Ok(false) => continue,
                Err(_) => {
                    // Taken back when L2 is back (unless a change of the key is queued:
                    // its drain reads the stamp and removes the same).
                    if self.queue.peek(full).is_none() {
                        self.enqueue_at(full, QueuedOp::Remove, stamp);
                    }
                    break;
                }
            }
        }
        Some(stamp)
    }

    /// A random pause of up to `replay` ms (at most 20 ms) before replay `replay`.
    fn replay_pause(&self, replay: usize) -> std::time::Duration {
        use std::hash::BuildHasher;
        let cap = (replay as u64).clamp(1, 20) * 1000;
        let seed = foldhash::fast::RandomState::default().hash_one((
            self.origin,
            replay,
            self.clock.now_millis(),
        ));
        std::time::Duration::from_micros(seed % cap)
    }

    /// When `partition` ends if written at `now`: its deadline, TTL, and whether it is
    /// still worth keeping (credentials left, deadline not passed).
    fn life(
        &self,
        kind: PartitionKind,
        partition: &Partition,
        ctx: &EntryContext,
        now: u64,
    ) -> (super::Deadline, Option<std::time::Duration>, bool) {
        let deadline = self.expiry.deadline(kind, partition, ctx, now);
        let ttl = deadline.ttl_at(now);
        let alive = partition.has_credentials() && !ttl.is_some_and(|t| t.is_zero());
        (deadline, ttl, alive)
    }

    /// Keeps `partition` in this replica's L1 only (L2 did not take it): filled when it
    /// is alive, else dropped. The outcome of such a write.
    fn keep_in_l1(
        &self,
        kind: PartitionKind,
        key: &str,
        ctx: &EntryContext,
        partition: Partition,
        merged_later: bool,
    ) -> WriteOutcome {
        let now = self.clock.now_millis();
        let (deadline, ttl, alive) = self.life(kind, &partition, ctx, now);
        if alive {
            let size = partition.to_vec().len();
            self.fill_l1(key, Arc::new(partition), size, now, deadline.at(now), None);
        } else {
            self.forget_l1(key);
        }
        WriteOutcome {
            stored: alive,
            l2_written: false,
            ttl,
            merged_later,
            revoked: false,
        }
    }

    /// A write refused by a newer sign-out: nothing written, nothing kept here.
    fn refused(&self, key: &str, stale_l1: &mut ForgetOnDrop<'_>) -> WriteOutcome {
        self.forget_l1(key);
        stale_l1.armed = false;
        bump(&self.counters.refused_writes);
        WriteOutcome {
            stored: false,
            l2_written: false,
            ttl: None,
            merged_later: false,
            revoked: true,
        }
    }

    /// Queues `diff` (after any change of the key queued before) to be merged into L2's
    /// partition when L2 is back; L1 holds `partition` meanwhile. A removal queued
    /// before (a sign-out during the same outage) is kept in the new entry: what L2
    /// holds from before it is still removed when the change is applied.
    #[allow(clippy::too_many_arguments)]
    fn queue_change(
        &self,
        kind: PartitionKind,
        key: &str,
        full: &str,
        ctx: EntryContext,
        scope: WriteScope<'_>,
        queued: Option<Queued>,
        diff: PartitionChange,
        partition: Partition,
    ) -> WriteOutcome {
        let (change, prune_before_ms) = match queued {
            Some(Queued {
                op:
                    QueuedOp::Merge {
                        change,
                        prune_before_ms,
                        ..
                    },
                ..
            }) => (Box::new(change.then(&diff)), prune_before_ms),
            Some(Queued {
                op: QueuedOp::Remove,
                written_at_ms,
            }) => (Box::new(diff), Some(written_at_ms)),
            _ => (Box::new(diff), None),
        };
        let queued = self.enqueue(
            full,
            QueuedOp::Merge {
                change,
                kind,
                ctx: ctx.clone(),
                owner: scope.owner.map(Arc::from),
                requested_at_ms: scope.requested_at_ms,
                prune_before_ms,
            },
        );
        // (A removal queued before is a sign-out: the entry stays one, so it needs no
        // new room and is never refused here.)
        self.keep_in_l1(kind, key, &ctx, partition, queued)
    }
}

/// Drops a key from L1 unless disarmed: armed across a write's L2 calls, so that a
/// cancelled write leaves no L1 copy that may differ from L2.
pub(super) struct ForgetOnDrop<'a> {
    pub(super) core: &'a Core,
    pub(super) key: &'a str,
    pub(super) armed: bool,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.core.forget_l1(self.key);
        }
    }
}
