//! The write path: read-modify-write of one partition, removals, bulk removals.

use std::sync::Arc;
use std::time::Duration;

use super::recovery::{Queued, QueuedOp};
use super::stats::bump;
use super::{Core, EntryContext, WriteOutcome};
use crate::error::Error;
use crate::partition::PartitionKind;
use crate::schema::{Partition, PartitionChange};
use crate::store::StoreResult;

impl Core {
    pub(super) async fn update<R>(
        &self,
        kind: PartitionKind,
        key: &str,
        ctx: EntryContext,
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
        bump(&self.counters.l2_reads);
        let read = self.call_with("get", || self.store.get(&full)).await;
        let l2_read = read.is_ok();
        // L2 holds an envelope sealed with a key this replica does not have.
        let mut foreign = false;
        let base = match read {
            Ok(current) => {
                let l2 = match current {
                    Some(v) => match self.decode(&full, &v.bytes) {
                        Ok(p) => p,
                        Err(e) if e.is_foreign_key() => {
                            let then = "not overwritten (sealed with a key this replica lacks): this write stays in this replica's L1";
                            self.unreadable(&full, v.bytes.len(), &e, then);
                            foreign = true;
                            Partition::new()
                        }
                        Err(e) => {
                            let then = "replaced by this write";
                            self.unreadable(&full, v.bytes.len(), &e, then);
                            Partition::new()
                        }
                    },
                    None => Partition::new(),
                };
                match &queued {
                    Some(q) => q.applied_to(l2),
                    None => l2,
                }
            }
            // L2 could not be read: our best knowledge of the partition.
            Err(_) => match &queued {
                Some(Queued {
                    op: QueuedOp::Set { partition, .. },
                    ..
                }) => Partition::clone(partition),
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
            },
        };
        // Whether `base` is the whole partition: L2's, or our queued full value of it.
        let whole = l2_read
            || matches!(
                &queued,
                Some(Queued {
                    op: QueuedOp::Set { .. } | QueuedOp::Remove,
                    ..
                })
            );
        let (mut partition, seen) = if whole {
            (base, None)
        } else {
            (base.clone(), Some(base))
        };
        let result = change(&mut partition)?;
        let now = self.clock.now_millis();
        let deadline = self.expiry.deadline(kind, &partition, &ctx, now);
        let ttl = deadline.ttl_at(now);
        let alive = partition.has_credentials() && !ttl.is_some_and(|t| t.is_zero());
        if foreign {
            // Never destroy another ring's valid partition (its refresh tokens) because
            // this replica cannot read it.
            if alive {
                let size = partition.to_vec().len();
                self.fill_l1(key, Arc::new(partition), size, now, deadline.at(now));
            } else {
                self.forget_l1(key);
            }
            stale_l1.armed = false;
            return Ok((
                result,
                WriteOutcome {
                    stored: alive,
                    l2_written: false,
                    ttl,
                    merged_later: false,
                },
            ));
        }
        if let Some(base) = seen {
            // Never write a whole key over a partition we could not see: queue what this
            // change did, record by record, to be merged into L2's copy when it is back.
            let diff = PartitionChange::between(&base, &partition);
            let change = match queued.map(|q| q.op) {
                Some(QueuedOp::Merge { change, .. }) => Box::new(change.then(&diff)),
                _ => Box::new(diff),
            };
            self.enqueue(&full, QueuedOp::Merge { change, kind, ctx });
            if alive {
                let size = partition.to_vec().len();
                self.fill_l1(key, Arc::new(partition), size, now, deadline.at(now));
            } else {
                self.forget_l1(key);
            }
            stale_l1.armed = false;
            return Ok((
                result,
                WriteOutcome {
                    stored: alive,
                    l2_written: false,
                    ttl,
                    merged_later: true,
                },
            ));
        }
        if !alive {
            let l2_written = self.remove_locked(key, &full).await;
            stale_l1.armed = false;
            return Ok((
                result,
                WriteOutcome {
                    stored: false,
                    l2_written,
                    ttl: None,
                    merged_later: false,
                },
            ));
        }
        let partition = Arc::new(partition);
        bump(&self.counters.l2_writes);
        let bytes = self.encode(&full, &partition);
        let l2_written = match self
            .call_with("set", || self.store.set(&full, &bytes, ttl))
            .await
        {
            Ok(()) => {
                self.settled(&full);
                true
            }
            Err(_) => {
                self.enqueue(
                    &full,
                    QueuedOp::Set {
                        partition: partition.clone(),
                        deadline_ms: deadline.at(now),
                    },
                );
                false
            }
        };
        self.fill_l1(key, partition, bytes.len(), now, deadline.at(now));
        stale_l1.armed = false;
        Ok((
            result,
            WriteOutcome {
                stored: true,
                l2_written,
                ttl,
                merged_later: false,
            },
        ))
    }

    /// Puts a partition into L1 (when enabled) with an L1 deadline derived from its L2
    /// deadline.
    pub(super) fn fill_l1(
        &self,
        key: &str,
        partition: Arc<Partition>,
        size: usize,
        now_ms: u64,
        l2_deadline: Option<u64>,
    ) {
        if let Some(l1) = &self.l1 {
            l1.insert(
                key,
                partition,
                size,
                self.expiry.l1_deadline(now_ms, l2_deadline),
            );
        }
    }

    /// Writes a revocation stamp (`full` is its full key): `at` Unix seconds, living
    /// `ttl`. When L2 does not take it, it is queued (a stamp only moves forward when
    /// drained). Returns whether L2 took it now.
    pub(super) async fn write_stamp(&self, full: &str, at: i64, ttl: Option<Duration>) -> bool {
        let bare = self.keys.strip(full).unwrap_or(full).to_string();
        let _guard = self.locks.lock(&bare).await;
        let bytes = at.to_string();
        bump(&self.counters.l2_writes);
        match self
            .call_with("set", || self.store.set(full, bytes.as_bytes(), ttl))
            .await
        {
            Ok(()) => {
                self.settled(full);
                true
            }
            Err(_) => {
                let now = self.clock.now_millis();
                let deadline_ms = ttl.map(|t| now.saturating_add(t.as_millis() as u64));
                self.enqueue(full, QueuedOp::Revoke { at, deadline_ms });
                false
            }
        }
    }

    /// L2 took a write or removal of `full` (under its lock): a change of it still
    /// queued was its base (or is replaced by it), so it has reached L2 too.
    pub(super) fn settled(&self, full: &str) {
        if self.queue.take(full).is_some() {
            bump(&self.counters.recovered);
            self.metrics.applied.increment(1);
            self.metrics.queue_depth.set(self.queue.len() as f64);
        }
    }

    pub(super) async fn remove_locked(&self, key: &str, full: &str) -> bool {
        self.forget_l1(key);
        bump(&self.counters.l2_writes);
        match self.call_with("remove", || self.store.remove(full)).await {
            Ok(_) => {
                self.settled(full);
                true
            }
            Err(_) => {
                self.enqueue(full, QueuedOp::Remove);
                false
            }
        }
    }

    pub(super) async fn remove_keys(&self, full_keys: &[String]) -> StoreResult<u64> {
        let mut bare: Vec<&str> = full_keys
            .iter()
            .map(|k| self.keys.strip(k).unwrap_or(k))
            .collect();
        bare.sort_unstable();
        bare.dedup();
        // Sorted order: two bulk removals never wait for each other in a cycle.
        let mut guards = Vec::with_capacity(bare.len());
        for k in &bare {
            guards.push(self.locks.lock(k).await);
        }
        for k in &bare {
            self.forget_l1(k);
        }
        bump(&self.counters.l2_writes);
        let result = self
            .call_with("remove_many", || self.store.remove_many(full_keys))
            .await;
        for full in full_keys {
            match &result {
                Ok(_) => self.settled(full),
                Err(_) => self.enqueue(full, QueuedOp::Remove),
            }
        }
        drop(guards);
        result
    }
}

/// Drops a key from L1 unless disarmed: armed across a write's L2 calls, so that a
/// cancelled write leaves no L1 copy that may differ from L2.
struct ForgetOnDrop<'a> {
    core: &'a Core,
    key: &'a str,
    armed: bool,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.core.forget_l1(self.key);
        }
    }
}
