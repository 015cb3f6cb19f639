//! The key ring: one primary key (encrypts and decrypts) and any number of
//! decrypt-only keys, each under a short id; where keys come from (the builder, a
//! [`KeyProvider`], or the environment); how they are written (`id:base64key`).
//!
//! Key bytes live only inside the AEAD's key schedule in aws-lc, which wipes every
//! allocation it frees; the copies this module makes while parsing are zeroized on
//! drop. `Debug` shows ids only. Parsing errors name the entry's position or id, never its
//! bytes.

use async_trait::async_trait;
use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_256_GCM_SIV};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The environment variable holding the key ring: `id:base64key` entries separated by
/// commas (or newlines); the first is the primary.
pub const KEYS_ENV: &str = "TOKENCACHE_KEYS";
/// The environment variable naming a file with the same content as [`KEYS_ENV`].
pub const KEYS_FILE_ENV: &str = "TOKENCACHE_KEYS_FILE";
/// The environment variable of the migration setting: `1` reads plaintext partitions
/// (and encrypts them on their next write) while keys are configured.
pub const ACCEPT_PLAINTEXT_ENV: &str = "TOKENCACHE_ACCEPT_PLAINTEXT";

/// Bytes of a key (AES-256-GCM-SIV keys are 256 bits).
pub const KEY_LEN: usize = 32;
/// The longest key id.
pub const MAX_KEY_ID_LEN: usize = 32;

/// Why a key ring could not be built or loaded. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// No key at all (an empty variable or file).
    #[error("the key ring is empty")]
    Empty,
    /// A key id that is empty, longer than [`MAX_KEY_ID_LEN`], or has characters
    /// outside `[A-Za-z0-9_-]`.
    #[error(
        "entry {position}: a key id must be 1 to {MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 _ -"
    )]
    BadId {
        /// 1-based position of the entry.
        position: usize,
    },
    /// An entry without `id:` in front of its key.
    #[error("entry {position}: expected id:base64key")]
    NoId {
        /// 1-based position of the entry.
        position: usize,
    },
    /// The key is not base64 of exactly [`KEY_LEN`] bytes.
    #[error("key `{id}`: not base64 of {KEY_LEN} bytes")]
    BadKey {
        /// The entry's key id.
        id: String,
    },
    /// Two keys under one id.
    #[error("key id `{id}` appears twice")]
    DuplicateId {
        /// The repeated id.
        id: String,
    },
    /// Both [`KEYS_ENV`] and [`KEYS_FILE_ENV`] are set.
    #[error("both {KEYS_ENV} and {KEYS_FILE_ENV} are set; set one")]
    Ambiguous,
    /// The keys file could not be read.
    #[error("cannot read the keys file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why (the OS's words).
        message: String,
    },
    /// A key provider failed.
    #[error("key provider: {0}")]
    Provider(String),
}

/// A key id: 1 to [`MAX_KEY_ID_LEN`] characters of `[A-Za-z0-9_-]`, written in every
/// envelope sealed with its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Checks and wraps an id.
    pub fn new(id: &str) -> Option<Self> {
        is_valid_id(id.as_bytes()).then(|| KeyId(id.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn is_valid_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

/// One key under its id. The bytes are held by the cipher (wiped when freed); `Debug`
/// shows the id only.
#[derive(Clone)]
pub struct Key {
    id: KeyId,
    pub(crate) cipher: Arc<LessSafeKey>,
}

impl Key {
    /// A key from its 32 bytes (copied into the cipher; zeroize your copy).
    pub fn new(id: KeyId, bytes: &[u8; KEY_LEN]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM_SIV, bytes)
            .unwrap_or_else(|_| unreachable!("AES-256-GCM-SIV takes any 32 bytes"));
        Self {
            id,
            cipher: Arc::new(LessSafeKey::new(unbound)),
        }
    }

    /// A key from `id:base64key` (as [`KEYS_ENV`] holds it; `position` is for errors).
    fn parse_entry(entry: &str, position: usize) -> Result<Self, KeysError> {
        let (id, b64) = entry.split_once(':').ok_or(KeysError::NoId { position })?;
        let id = KeyId::new(id.trim()).ok_or(KeysError::BadId { position })?;
        let b64 = b64.trim();
        let mut buf = Zeroizing::new([0u8; KEY_LEN + 3]);
        let n = STANDARD
            .decode_slice(b64, &mut buf[..])
            .or_else(|_| STANDARD_NO_PAD.decode_slice(b64, &mut buf[..]))
            .map_err(|_| KeysError::BadKey { id: id.to_string() })?;
        if n != KEY_LEN {
            return Err(KeysError::BadKey { id: id.to_string() });
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        bytes.copy_from_slice(&buf[..KEY_LEN]);
        Ok(Self::new(id, &bytes))
    }

    /// A fresh random key (the OS's generator) and its `id:base64key` line, ready for
    /// [`KEYS_ENV`]. The line is the only copy of the key's bytes outside the cipher:
    /// store it in your secret manager.
    pub fn generate(id: KeyId) -> (Self, Zeroizing<String>) {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        aws_lc_rs::rand::fill(&mut bytes[..])
            .unwrap_or_else(|_| unreachable!("the OS random generator does not fail"));
        let mut line = Zeroizing::new(String::with_capacity(id.as_str().len() + 45));
        line.push_str(id.as_str());
        line.push(':');
        STANDARD.encode_string(&bytes[..], &mut line);
        (Self::new(id, &bytes), line)
    }

    /// The key's id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id.as_str())
            .field("bytes", &"<redacted>")
            .finish()
    }
}

/// One primary key (seals) and any number of decrypt-only keys (open only), each
/// under a distinct id.
#[derive(Clone)]
pub struct KeyRing {
    /// `keys[0]` is the primary.
    keys: Vec<Key>,
}

impl KeyRing {
    /// A ring with `primary` only.
    pub fn new(primary: Key) -> Self {
        Self {
            keys: vec![primary],
        }
    }

    /// Adds a decrypt-only key (an older primary, or a new one not yet promoted).
    pub fn with_decrypt_only(mut self, key: Key) -> Result<Self, KeysError> {
        if self.get(key.id().as_str()).is_some() {
            return Err(KeysError::DuplicateId {
                id: key.id().to_string(),
            });
        }
        self.keys.push(key);
        Ok(self)
    }

    /// Parses `id:base64key` entries separated by commas or newlines (the first is the
    /// primary; blank lines and lines starting with `#` are skipped), as
    /// [`KEYS_ENV`] and [`KEYS_FILE_ENV`] hold them.
    pub fn parse(text: &str) -> Result<Self, KeysError> {
        let mut keys: Vec<Key> = Vec::new();
        let entries = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty());
        for (i, entry) in entries.enumerate() {
            let key = Key::parse_entry(entry, i + 1)?;
            if keys.iter().any(|k| k.id == key.id) {
                return Err(KeysError::DuplicateId {
                    id: key.id.to_string(),
                });
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeysError::Empty);
        }
        Ok(Self { keys })
    }

    /// The ring the environment configures: [`KEYS_ENV`], or the file named by
    /// [`KEYS_FILE_ENV`]; `None` when neither is set (encryption stays off).
    pub fn from_env() -> Result<Option<Self>, KeysError> {
        let inline = std::env::var(KEYS_ENV).ok().map(Zeroizing::new);
        Self::from_sources(inline, std::env::var_os(KEYS_FILE_ENV))
    }

    /// [`from_env`](Self::from_env) with the two variables' values given.
    fn from_sources(
        inline: Option<Zeroizing<String>>,
        file: Option<std::ffi::OsString>,
    ) -> Result<Option<Self>, KeysError> {
        let inline = inline.filter(|v| !v.trim().is_empty());
        let file = file.filter(|v| !v.is_empty());
        match (inline, file) {
            (Some(_), Some(_)) => Err(KeysError::Ambiguous),
            (Some(v), None) => Self::parse(&v).map(Some),
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                let text = std::fs::read_to_string(&path).map_err(|e| KeysError::File {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                let text = Zeroizing::new(text);
                Self::parse(&text).map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// The key that seals.
    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// The key under `id`, primary or decrypt-only.
    pub fn get(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id.as_str() == id)
    }

    /// Every id, the primary's first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|k| &k.id)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("primary", &self.primary().id().as_str())
            .field(
                "decrypt_only",
                &self.keys[1..]
                    .iter()
                    .map(|k| k.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Where a key ring comes from when it is not given to the builder: a KMS, a vault,
/// a secret manager. Asked once, when the cache is built.
#[async_trait]
pub trait KeyProvider: Send + Sync + 'static {
    /// The current ring (primary first). Errors become [`KeysError::Provider`] or any
    /// other [`KeysError`]; the cache is not built without its keys.
    async fn key_ring(&self) -> Result<KeyRing, KeysError>;
}

/// Whether [`ACCEPT_PLAINTEXT_ENV`] is set to `1` (or `true`).
pub fn accept_plaintext_from_env() -> bool {
    std::env::var(ACCEPT_PLAINTEXT_ENV)
        .map(|v| matches!(v.trim(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // bytes 0..32

    #[test]
    fn parses_ids_and_keys_primary_first() {
        let ring = KeyRing::parse(&format!("k2:{K1}, k1:{}", K1.trim_end_matches('='))).unwrap();
        assert_eq!(ring.primary().id().as_str(), "k2");
        let ids: Vec<_> = ring.ids().map(KeyId::as_str).collect();
        assert_eq!(ids, ["k2", "k1"]);
        let file = format!("# rotated 2026-12\nk2:{K1}\n\nk1:{K1}\n");
        assert_eq!(KeyRing::parse(&file).unwrap().ids().count(), 2);
    }

    #[test]
    fn bad_entries_are_typed_errors_without_key_material() {
        assert_eq!(KeyRing::parse(" , ").unwrap_err(), KeysError::Empty);
        let e = KeyRing::parse(K1).unwrap_err();
        assert_eq!(e, KeysError::NoId { position: 1 });
        assert!(!e.to_string().contains(K1));
        assert_eq!(
            KeyRing::parse(&format!("k 1:{K1}")).unwrap_err(),
            KeysError::BadId { position: 1 }
        );
        let short = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==";
        let e = KeyRing::parse(short).unwrap_err();
        assert_eq!(e, KeysError::BadKey { id: "k1".into() });
        assert!(!e.to_string().contains("AAEC"));
        assert_eq!(
            KeyRing::parse(&format!("k1:{K1},k1:{K1}")).unwrap_err(),
            KeysError::DuplicateId { id: "k1".into() }
        );
    }

    #[test]
    fn environment_sources() {
        let none = KeyRing::from_sources(None, None).unwrap();
        assert!(none.is_none(), "no variable: no encryption");
        let blank = KeyRing::from_sources(Some(Zeroizing::new(" ".into())), Some("".into()));
        assert!(blank.unwrap().is_none());
        let inline = Zeroizing::new(format!("k1:{K1}"));
        let r = KeyRing::from_sources(Some(inline.clone()), None)
            .unwrap()
            .unwrap();
        assert_eq!(r.primary().id().as_str(), "k1");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("# ring\nk2:{K1}\nk1:{K1}\n")).unwrap();
        let r = KeyRing::from_sources(None, Some(path.clone().into()))
            .unwrap()
            .unwrap();
        assert_eq!(r.ids().count(), 2);
        assert_eq!(
            KeyRing::from_sources(Some(inline), Some(path.into())).unwrap_err(),
            KeysError::Ambiguous
        );
        let missing = KeyRing::from_sources(None, Some(dir.path().join("nope").into()));
        assert!(matches!(missing, Err(KeysError::File { .. })));
    }

    #[test]
    fn debug_shows_ids_only() {
        let (key, line) = Key::generate(KeyId::new("gen").unwrap());
        let ring = KeyRing::parse(&line).unwrap();
        let b64 = line.split_once(':').unwrap().1;
        for shown in [format!("{key:?}"), format!("{ring:?}")] {
            assert!(shown.contains("gen"), "{shown}");
            assert!(!shown.contains(b64), "{shown}");
        }
        assert_eq!(b64.len(), 44);
    }
}
