//! The envelope: the byte format of an encrypted L2 value (see `docs/encryption.md`).
//!
//! ```text
//! offset      size  field
//! 0           4     magic      FF 54 43 45 ("\xFFTCE"; 0xFF never starts UTF-8 text, so an
//!                              envelope is never mistaken for MSAL's JSON)
//! 4           1     version    1
//! 5           1     id_len     L, 1..=32
//! 6           L     key id     ASCII [A-Za-z0-9_-]
//! 6+L         12    nonce      random (AES-256-GCM-SIV's 96-bit nonce)
//! 18+L        n+16  ciphertext the plaintext's n bytes, then the 16-byte POLYVAL tag
//! ```
//!
//! Associated data: the header (bytes `0 .. 6+L`: magic, version, id length, key id)
//! followed by the full L2 key (prefix included, UTF-8). A value copied under another
//! key, or with its key id changed, does not open. Pure: no I/O, no clock.

use aws_lc_rs::aead::{Aad, Nonce, NONCE_LEN as AEAD_NONCE_LEN};

use super::error::{Malformed, ProtectError};
use super::ring::{is_valid_id, Key, KeyRing, MAX_KEY_ID_LEN};

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = [0xFF, b'T', b'C', b'E'];
/// The format version this build writes (and the only one it reads).
pub const VERSION: u8 = 1;
/// Bytes of the nonce.
pub const NONCE_LEN: usize = AEAD_NONCE_LEN;
/// Bytes of the authentication tag.
pub const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext, for a key id of `id_len` bytes.
pub const fn overhead(id_len: usize) -> usize {
    MAGIC.len() + 2 + id_len + NONCE_LEN + TAG_LEN
}

/// An envelope's parts, borrowed from its bytes (nothing is decrypted yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    header: &'a [u8],
    key_id: &'a str,
    nonce: &'a [u8],
    sealed: &'a [u8],
}

/// Whether `bytes` begin as an envelope does (the magic, or a prefix of it).
pub fn is_envelope(bytes: &[u8]) -> bool {
    let n = bytes.len().min(MAGIC.len());
    n > 0 && bytes[..n] == MAGIC[..n]
}

impl<'a> Envelope<'a> {
    /// Reads an envelope's header. Checks the magic, version, key id and lengths; the
    /// ciphertext is checked only by [`open`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ProtectError> {
        let bad = |m| Err(ProtectError::Malformed(m));
        if bytes.len() < MAGIC.len() {
            return bad(if is_envelope(bytes) {
                Malformed::Truncated
            } else {
                Malformed::UnknownMagic
            });
        }
        if bytes[..4] != MAGIC {
            return bad(Malformed::UnknownMagic);
        }
        let Some(&version) = bytes.get(4) else {
            return bad(Malformed::Truncated);
        };
        if version != VERSION {
            return bad(Malformed::UnsupportedVersion(version));
        }
        let Some(&id_len) = bytes.get(5) else {
            return bad(Malformed::Truncated);
        };
        let id_len = id_len as usize;
        if id_len == 0 || id_len > MAX_KEY_ID_LEN {
            return bad(Malformed::BadKeyId);
        }
        let head = 6 + id_len;
        if bytes.len() < head + NONCE_LEN + TAG_LEN {
            return bad(Malformed::Truncated);
        }
        let id = &bytes[6..head];
        if !is_valid_id(id) {
            return bad(Malformed::BadKeyId);
        }
        let key_id =
            std::str::from_utf8(id).map_err(|_| ProtectError::Malformed(Malformed::BadKeyId))?;
        Ok(Envelope {
            header: &bytes[..head],
            key_id,
            nonce: &bytes[head..head + NONCE_LEN],
            sealed: &bytes[head + NONCE_LEN..],
        })
    }

    /// The id of the key that sealed it.
    pub fn key_id(&self) -> &'a str {
        self.key_id
    }
}

/// The associated data: header, then the full L2 key (neither is secret).
fn aad(header: &[u8], full_key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + full_key.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(full_key.as_bytes());
    aad
}

/// Seals `plaintext` for L2 key `full_key` with `key`, under a fresh random nonce.
pub fn seal(key: &Key, full_key: &str, plaintext: &[u8]) -> Vec<u8> {
    let id = key.id().as_str().as_bytes();
    let mut out = Vec::with_capacity(plaintext.len() + overhead(id.len()));
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(id.len() as u8); // ≤ MAX_KEY_ID_LEN, checked by KeyId
    out.extend_from_slice(id);
    let head = out.len();
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce)
        .unwrap_or_else(|_| unreachable!("the OS random generator does not fail"));
    out.extend_from_slice(&nonce);
    let aad = aad(&out[..head], full_key);
    let body = out.len();
    out.extend_from_slice(plaintext);
    let tag = key
        .cipher
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad[..]),
            &mut out[body..],
        )
        // Fails only for messages over the AEAD's limit (GiBs); a partition is KBs.
        .unwrap_or_else(|_| unreachable!("partition larger than the AEAD's limit"));
    out.extend_from_slice(tag.as_ref());
    out
}

/// Opens an envelope stored under `full_key` with the ring's key of its id.
///
/// The plaintext is not zeroized: it is parsed at once into a partition whose token
/// strings live on in L1 for as long as the partition does, so wiping this transient
/// copy (a byte-at-a-time volatile loop, ~15 % of an L2 hit for a 7 KB partition) would
/// protect nothing they do not already expose. Key bytes are zeroized (by the cipher).
pub fn open(ring: &KeyRing, full_key: &str, bytes: &[u8]) -> Result<Vec<u8>, ProtectError> {
    let env = Envelope::parse(bytes)?;
    let key = ring
        .get(env.key_id)
        .ok_or_else(|| ProtectError::UnknownKeyId {
            key_id: env.key_id.to_string(),
        })?;
    let aad = aad(env.header, full_key);
    let failed = || ProtectError::AuthenticationFailed {
        key_id: env.key_id.to_string(),
    };
    let nonce = Nonce::try_assume_unique_for_key(env.nonce).map_err(|_| failed())?;
    let mut buf = env.sealed.to_vec();
    let n = key
        .cipher
        .open_in_place(nonce, Aad::from(&aad[..]), &mut buf)
        .map_err(|_| failed())?
        .len();
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protect::ring::KeyId;

    fn key(id: &str, fill: u8) -> Key {
        Key::new(KeyId::new(id).unwrap(), &[fill; 32])
    }

    #[test]
    fn layout_is_as_documented() {
        let k = key("k1", 7);
        let sealed = seal(&k, "p:o.t", b"{}");
        assert_eq!(&sealed[..4], b"\xFFTCE");
        assert_eq!(sealed[4], 1);
        assert_eq!(sealed[5], 2);
        assert_eq!(&sealed[6..8], b"k1");
        assert_eq!(sealed.len(), 2 + overhead(2));
        assert_eq!(Envelope::parse(&sealed).unwrap().key_id(), "k1");
        let ring = KeyRing::new(k);
        assert_eq!(&open(&ring, "p:o.t", &sealed).unwrap()[..], b"{}");
    }

    #[test]
    fn nonces_are_fresh() {
        let k = key("k1", 7);
        assert_ne!(seal(&k, "a", b"x"), seal(&k, "a", b"x"));
    }

    #[test]
    fn bound_to_key_and_key_id() {
        let ring = KeyRing::new(key("k1", 1))
            .with_decrypt_only(key("k2", 1))
            .unwrap();
        let sealed = seal(ring.primary(), "p:a.t", b"{\"a\":1}");
        assert_eq!(
            open(&ring, "p:b.t", &sealed).unwrap_err(),
            ProtectError::AuthenticationFailed {
                key_id: "k1".into()
            }
        );
        // Same key bytes under another id: the id is in the associated data.
        let mut relabeled = sealed.clone();
        relabeled[7] = b'2';
        assert_eq!(
            open(&ring, "p:a.t", &relabeled).unwrap_err(),
            ProtectError::AuthenticationFailed {
                key_id: "k2".into()
            }
        );
    }
}

#[cfg(test)]
mod tamper {
    use super::*;
    use crate::protect::ring::KeyId;

    fn ring() -> KeyRing {
        KeyRing::new(Key::new(KeyId::new("k1").unwrap(), &[9; 32]))
    }

    #[test]
    fn every_flipped_bit_is_a_typed_error() {
        let ring = ring();
        let sealed = seal(ring.primary(), "o.t", b"{\"secret\":\"x\"}");
        for i in 0..sealed.len() * 8 {
            let mut b = sealed.clone();
            b[i / 8] ^= 1 << (i % 8);
            let e = open(&ring, "o.t", &b).unwrap_err();
            assert!(
                matches!(
                    e,
                    ProtectError::Malformed(_)
                        | ProtectError::AuthenticationFailed { .. }
                        | ProtectError::UnknownKeyId { .. }
                ),
                "bit {i}: {e:?}"
            );
        }
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let ring = ring();
        let sealed = seal(ring.primary(), "o.t", b"{}");
        for n in 0..sealed.len() {
            let e = open(&ring, "o.t", &sealed[..n]).unwrap_err();
            let expect_trunc = n >= 4 || n == 0;
            match e {
                ProtectError::Malformed(Malformed::Truncated) => {}
                ProtectError::Malformed(Malformed::UnknownMagic) if n == 0 => {}
                ProtectError::AuthenticationFailed { .. } if n >= overhead(2) => {}
                other => panic!("{n} bytes: {other:?} (truncated expected: {expect_trunc})"),
            }
        }
    }

    #[test]
    fn version_and_magic() {
        let ring = ring();
        let mut sealed = seal(ring.primary(), "o.t", b"{}");
        sealed[4] = 2;
        assert_eq!(
            open(&ring, "o.t", &sealed).unwrap_err(),
            ProtectError::Malformed(Malformed::UnsupportedVersion(2))
        );
        sealed[4] = 1;
        sealed[0] = 0xFE;
        assert_eq!(
            open(&ring, "o.t", &sealed).unwrap_err(),
            ProtectError::Malformed(Malformed::UnknownMagic)
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::protect::ring::KeyId;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn open_of_seal_is_identity(
            plain in proptest::collection::vec(any::<u8>(), 0..4096),
            full_key in "[ -~]{0,80}",
            id in "[A-Za-z0-9_-]{1,32}",
            key in any::<[u8; 32]>(),
        ) {
            let ring = KeyRing::new(Key::new(KeyId::new(&id).unwrap(), &key));
            let sealed = seal(ring.primary(), &full_key, &plain);
            prop_assert_eq!(sealed.len(), plain.len() + overhead(id.len()));
            prop_assert_eq!(&open(&ring, &full_key, &sealed).unwrap()[..], &plain[..]);
            let other = format!("{full_key}x");
            prop_assert!(
                matches!(
                    open(&ring, &other, &sealed),
                    Err(ProtectError::AuthenticationFailed { .. })
                ),
                "bound to its key"
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_never_open(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            prefix in any::<bool>(),
        ) {
            let ring = KeyRing::new(Key::new(KeyId::new("k1").unwrap(), &[3; 32]));
            let mut b = bytes;
            if prefix {
                let mut head = MAGIC.to_vec();
                head.push(VERSION);
                head.extend_from_slice(&b);
                b = head;
            }
            prop_assert!(open(&ring, "o.t", &b).is_err());
        }
    }
}
