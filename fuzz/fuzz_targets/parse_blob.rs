//! Fuzz target: `Partition::parse` must never panic, and whatever parses must survive a
//! serialize → parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokencache::schema::Partition;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Partition::parse(data) {
        let blob = p.to_vec();
        let q = Partition::parse(&blob).expect("a re-serialized partition parses");
        assert_eq!(q.len(), p.len());
        assert_eq!(q.to_vec(), blob, "serialization is stable");
    }
});
