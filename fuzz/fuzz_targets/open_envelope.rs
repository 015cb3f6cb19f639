//! Fuzz target: the envelope parser and `Protection::open` must never panic on any
//! bytes, never open bytes they did not seal (a forgery would need the key), and
//! `open(seal(x)) == x` under the same L2 key while any other L2 key fails.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokencache::protect::{Envelope, Found, Key, KeyId, KeyRing, Protection};

fuzz_target!(|data: &[u8]| {
    let ring = KeyRing::new(Key::new(KeyId::new("fz").unwrap(), &[0x42; 32]))
        .with_decrypt_only(Key::new(KeyId::new("old").unwrap(), &[0x17; 32]))
        .unwrap();
    let p = Protection::new(ring).accept_plaintext(data.first() == Some(&b'{'));

    // Arbitrary bytes: a typed answer, never a panic, never an opened envelope.
    let _ = Envelope::parse(data);
    match p.open("fuzz:o.t", data) {
        Ok((plain, Found::Plaintext)) => assert_eq!(&*plain, data),
        Ok((_, found)) => panic!("opened bytes it never sealed ({found:?})"),
        Err(_) => {}
    }

    // Round trip under one key; bound to it.
    let sealed = p.seal("fuzz:o.t", data);
    let (plain, found) = p.open("fuzz:o.t", &sealed).expect("opens what it sealed");
    assert_eq!(found, Found::Primary);
    assert_eq!(&*plain, data);
    assert!(p.open("fuzz:o.u", &sealed).is_err(), "bound to its L2 key");
});
