//! Memory per cached partition in L1 (docs/design.md §11: ≤ 1.5× its serialized
//! size). Deterministic: a counting allocator measures the heap bytes that 200
//! decoded ~7 KB user partitions and their L1 entries hold, not time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use tokencache::clock::SystemClock;
use tokencache::memory::{L1Options, MemoryCache};
use tokencache::sample;
use tokencache::Partition;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_cached_partition_costs_at_most_one_and_a_half_times_its_blob() {
    // Built or written partitions are decoded whole; L2 loads keep three sections as
    // text until read (Partition::parse_deferred); that text, once also decoded, is
    // the most an L1 entry holds.
    let whole = held_per_serialized_byte("decoded whole", Partition::parse, |_| ());
    let deferred = held_per_serialized_byte("as L2 loads it", Partition::parse_deferred, |_| ());
    let both =
        held_per_serialized_byte("as L2 loads it, all read", Partition::parse_deferred, |p| {
            assert!(p.accounts().count() + p.id_tokens().count() + p.app_metadata().count() > 0);
        });
    for (what, ratio) in [
        ("whole", whole),
        ("deferred", deferred),
        ("deferred, read", both),
    ] {
        assert!(
            ratio <= 1.5,
            "L1 holds {ratio:.2}× the serialized size ({what})"
        );
    }
}

fn held_per_serialized_byte(
    what: &str,
    parse: fn(&[u8]) -> Result<Partition, tokencache::schema::SchemaError>,
    touch: fn(&Partition),
) -> f64 {
    const N: usize = 200;
    let now = 1_800_000_000;
    // Blobs as they come from L2.
    let blobs: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let oid = format!("{i:08}-0000-0000-0000-000000000000");
            sample::user_partition(&oid, sample::TENANT, now)
                .unwrap()
                .0
                .to_vec()
        })
        .collect();
    let serialized: usize = blobs.iter().map(Vec::len).sum();
    let l1: MemoryCache<Partition> = MemoryCache::new(&L1Options::default(), Arc::new(SystemClock));
    // Warm the cache's internals so that their one-time allocations are not counted.
    l1.insert("warm", Arc::new(Partition::new()), 1, u64::MAX / 2);
    l1.remove("warm");
    l1.run_pending_tasks();

    let before = LIVE.load(Ordering::SeqCst);
    let decoded: Vec<Arc<Partition>> = blobs
        .iter()
        .map(|b| {
            let p = parse(b).unwrap();
            touch(&p);
            Arc::new(p)
        })
        .collect();
    let parsed = (LIVE.load(Ordering::SeqCst) - before) as f64;
    for (i, (p, blob)) in decoded.into_iter().zip(&blobs).enumerate() {
        l1.insert(
            &format!("{i:08}.{}", sample::TENANT),
            p,
            blob.len(),
            u64::MAX / 2,
        );
    }
    l1.run_pending_tasks();
    let held = (LIVE.load(Ordering::SeqCst) - before) as f64;
    let ratio = held / serialized as f64;
    println!(
        "L1 memory, {what}: {N} partitions, {} serialized bytes each on average, {:.0} heap bytes each ({:.0} the partitions alone): ratio {ratio:.2}",
        serialized / N,
        held / N as f64,
        parsed / N as f64
    );
    assert_eq!(l1.entry_count(), N as u64);
    ratio
}
