//! Strict reads (off by default): read-your-writes across replicas without waiting for
//! the backplane's message. Every L1 hit asks L2 for the digest of the partition's
//! value (Redis: a script that returns its SHA-1, 40 bytes on the wire) and serves L1
//! only when it is the digest of what L1 was filled from or wrote; else L1's copy is
//! dropped and the partition is loaded again. A hit then costs one small round trip
//! instead of none, in exchange for never serving a partition another replica (or a
//! .NET or MSAL writer, which publish nothing) changed a moment ago.
//!
//! When L2 fails, the check fails too and L1 serves, as without strict reads (the
//! caller never sees an L2 failure). An entry whose L2 value is unknown (kept in L1
//! only while L2 failed, or merged with a change still queued) never matches: its
//! first strict hit rereads L2.

use super::stats::bump;
use super::Core;
use crate::memory::L1Entry;
use crate::schema::Partition;

impl Core {
    /// Whether `entry` (L1's copy of `key`) is still what L2 holds; when it is not, it
    /// is dropped from L1.
    pub(super) async fn still_current(&self, key: &str, entry: &L1Entry<Partition>) -> bool {
        let full = self.keys.partition_str(key);
        bump(&self.counters.strict_checks);
        match self.call("digest", self.store.digest(&full)).await {
            Ok(Some(d)) if d.short() == entry.version() => true,
            Ok(_) => {
                bump(&self.counters.strict_stale);
                self.forget_l1(key);
                false
            }
            // L2 failed: L1 serves, as it does without strict reads.
            Err(_) => true,
        }
    }
}
