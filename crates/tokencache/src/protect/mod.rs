//! Encryption at rest (docs/design.md §9; the byte format is in `docs/encryption.md`).
//!
//! When a key ring is configured, every partition tokencache writes to L2 is sealed in
//! an AEAD envelope ([`envelope`]: AES-256-GCM-SIV, random 96-bit nonces) whose
//! associated data is the full L2 key, so that a value copied under another key
//! (another user's, for instance) does not open. The ring ([`ring`]) holds one primary
//! key, which seals, and any number of decrypt-only keys; the envelope names the key
//! id that sealed it, so rotation is: add the new key everywhere, make it primary,
//! `tokencache rekey`, remove the old one.
//!
//! A value that cannot be opened is a typed [`ProtectError`] (unknown key id,
//! authentication failed, malformed envelope, plaintext where encryption is required),
//! logged once per key id and kind with the key id and the partition kind, and a
//! miss for the caller.
//!
//! What is encrypted: partitions (they hold refresh, access and id tokens). Not:
//! tokencache's own `tc:` keys, which hold no credentials: link sets (full keys of
//! OBO partitions, which are hashes), revocation stamps (a time), session-index
//! entries (a home account id, which is already the name of the user's partition key
//! in the same store) and logout-token markers (`1`). Their integrity against someone
//! who can write the store is not in scope: that someone can delete every key anyway.
//!
//! Encrypted entries cannot be read by MSAL Python, msal-node or Microsoft.Identity.Web;
//! encryption is off unless keys are configured.

pub mod envelope;
mod error;
mod rekey;
pub mod ring;

pub use envelope::{is_envelope, Envelope};
pub(crate) use error::Reporter;
pub use error::{kind_of_key, Malformed, ProtectError, ProtectErrorKind};
pub use rekey::{rekey, stored, Rekeyed, Stored, REKEY_ATTEMPTS};
pub use ring::{
    accept_plaintext_from_env, Key, KeyId, KeyProvider, KeyRing, KeysError, ACCEPT_PLAINTEXT_ENV,
    KEYS_ENV, KEYS_FILE_ENV,
};

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// How L2 values are protected: a key ring, and whether plaintext partitions are
/// accepted (migration). Cheap to clone; `Debug` shows key ids only.
#[derive(Clone)]
pub struct Protection {
    ring: Arc<KeyRing>,
    accept_plaintext: bool,
}

impl fmt::Debug for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Protection")
            .field("ring", &self.ring)
            .field("accept_plaintext", &self.accept_plaintext)
            .finish()
    }
}

/// What [`Protection::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// An envelope sealed with the current primary key.
    Primary,
    /// An envelope sealed with a decrypt-only key (`rekey` moves it to the primary).
    DecryptOnly,
    /// Plaintext, accepted by the migration setting.
    Plaintext,
}

impl Protection {
    /// Encrypts with `ring`; plaintext partitions are refused
    /// ([`ProtectError::PlaintextFound`]) unless [`accept_plaintext`](Self::accept_plaintext).
    pub fn new(ring: KeyRing) -> Self {
        Self {
            ring: Arc::new(ring),
            accept_plaintext: false,
        }
    }

    /// The migration setting: plaintext partitions are read (and sealed on their next
    /// write) instead of being an error.
    pub fn accept_plaintext(mut self, accept: bool) -> Self {
        self.accept_plaintext = accept;
        self
    }

    /// Whether plaintext partitions are accepted.
    pub fn accepts_plaintext(&self) -> bool {
        self.accept_plaintext
    }

    /// The key ring.
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Seals `plaintext` for `full_key` with the primary key.
    pub fn seal(&self, full_key: &str, plaintext: &[u8]) -> Vec<u8> {
        envelope::seal(self.ring.primary(), full_key, plaintext)
    }

    /// The plaintext of a value stored under `full_key`, and what it was.
    pub fn open<'a>(
        &self,
        full_key: &str,
        bytes: &'a [u8],
    ) -> Result<(Plain<'a>, Found), ProtectError> {
        if is_envelope(bytes) {
            let env = Envelope::parse(bytes)?;
            let found = if env.key_id() == self.ring.primary().id().as_str() {
                Found::Primary
            } else {
                Found::DecryptOnly
            };
            let plain = envelope::open(&self.ring, full_key, bytes)?;
            return Ok((Plain::Decrypted(plain), found));
        }
        if looks_like_json(bytes) {
            return if self.accept_plaintext {
                Ok((Plain::Stored(bytes), Found::Plaintext))
            } else {
                Err(ProtectError::PlaintextFound)
            };
        }
        Err(ProtectError::Malformed(Malformed::UnknownMagic))
    }
}

/// The plaintext of an opened value: decrypted, or the stored bytes themselves
/// (plaintext accepted by the migration setting). See [`envelope::open`] on why it is
/// not zeroized.
pub enum Plain<'a> {
    /// Decrypted from an envelope.
    Decrypted(Vec<u8>),
    /// Stored as plaintext.
    Stored(&'a [u8]),
}

impl Deref for Plain<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Plain::Decrypted(v) => v,
            Plain::Stored(b) => b,
        }
    }
}

impl fmt::Debug for Plain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Plaintext holds tokens: its size only.
        write!(f, "Plain(<{} bytes>)", self.len())
    }
}

/// The partition stored as `bytes` under `full_key`, read as the two levels read it:
/// opened with `protection` when given (an envelope found without one is
/// [`ProtectError::UnknownKeyId`]), else parsed as plaintext MSAL JSON. For tools that
/// read L2 directly (`tokencache load`'s final check, `bench`).
pub fn read_partition(
    protection: Option<&Protection>,
    full_key: &str,
    bytes: &[u8],
) -> Result<crate::Partition, crate::Error> {
    match protection {
        Some(p) => {
            let (plain, _) = p.open(full_key, bytes)?;
            Ok(crate::Partition::parse(&plain)?)
        }
        None if is_envelope(bytes) => Err(unopenable(bytes).into()),
        None => Ok(crate::Partition::parse(bytes)?),
    }
}

/// The error for an envelope found where no keys are configured: its key id is
/// unknown (or the envelope is malformed).
pub fn unopenable(bytes: &[u8]) -> ProtectError {
    match Envelope::parse(bytes) {
        Ok(env) => ProtectError::UnknownKeyId {
            key_id: env.key_id().to_string(),
        },
        Err(e) => e,
    }
}

/// Whether `bytes` look like a JSON object (MSAL's plaintext blob): `{` after optional
/// whitespace (and a UTF-8 byte-order mark, as some writers put one).
pub fn looks_like_json(bytes: &[u8]) -> bool {
    let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    b.iter()
        .find(|c| !c.is_ascii_whitespace())
        .is_some_and(|c| *c == b'{')
}
