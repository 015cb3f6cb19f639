//! Why a stored value could not be opened, and the log line that says so once.
//!
//! Every error names the key id it concerns (ids are short labels chosen by the
//! operator, never key material) and never carries a key, a token or the stored bytes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What is wrong with an envelope's bytes (before any key is tried).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// Shorter than its header, or no room for the authentication tag.
    Truncated,
    /// The first bytes are neither the envelope's magic nor a JSON object.
    UnknownMagic,
    /// A format version this build does not know.
    UnsupportedVersion(u8),
    /// The key id is empty, too long, or has characters outside `[A-Za-z0-9_-]`.
    BadKeyId,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Truncated => f.write_str("truncated"),
            Malformed::UnknownMagic => f.write_str("unknown magic bytes"),
            Malformed::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Malformed::BadKeyId => f.write_str("invalid key id"),
        }
    }
}

/// Why a value stored in L2 could not be opened with the key ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtectError {
    /// The envelope names a key id the ring does not hold (a replica with another ring,
    /// a key removed too early, or no keys configured at all).
    #[error("encrypted with key id `{key_id}`, which this key ring does not hold")]
    UnknownKeyId {
        /// The key id written in the envelope.
        key_id: String,
    },
    /// The ring holds the key id but the ciphertext does not authenticate: the key under
    /// that id has other bytes here, or the value was tampered with or moved to
    /// another L2 key.
    #[error("authentication failed with key id `{key_id}` (wrong key bytes for this id, a tampered value, or a value moved from another key)")]
    AuthenticationFailed {
        /// The key id written in the envelope.
        key_id: String,
    },
    /// Not a well-formed envelope.
    #[error("malformed envelope: {0}")]
    Malformed(Malformed),
    /// A plaintext partition where encryption is required (set the migration setting
    /// `TOKENCACHE_ACCEPT_PLAINTEXT=1`, or the builder's `accept_plaintext`, to read
    /// it and encrypt it on its next write).
    #[error("plaintext entry found where encryption is required")]
    PlaintextFound,
}

/// The kind of a [`ProtectError`], for logs, metrics and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtectErrorKind {
    /// [`ProtectError::UnknownKeyId`].
    UnknownKeyId,
    /// [`ProtectError::AuthenticationFailed`].
    AuthenticationFailed,
    /// [`ProtectError::Malformed`].
    Malformed,
    /// [`ProtectError::PlaintextFound`].
    PlaintextFound,
}

impl ProtectErrorKind {
    /// A short snake-case name (`unknown_key_id`, `authentication_failed`,
    /// `malformed_envelope`, `plaintext_found`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProtectErrorKind::UnknownKeyId => "unknown_key_id",
            ProtectErrorKind::AuthenticationFailed => "authentication_failed",
            ProtectErrorKind::Malformed => "malformed_envelope",
            ProtectErrorKind::PlaintextFound => "plaintext_found",
        }
    }
}

impl fmt::Display for ProtectErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ProtectError {
    /// The kind of error.
    pub fn kind(&self) -> ProtectErrorKind {
        match self {
            ProtectError::UnknownKeyId { .. } => ProtectErrorKind::UnknownKeyId,
            ProtectError::AuthenticationFailed { .. } => ProtectErrorKind::AuthenticationFailed,
            ProtectError::Malformed(_) => ProtectErrorKind::Malformed,
            ProtectError::PlaintextFound => ProtectErrorKind::PlaintextFound,
        }
    }

    /// The key id the error concerns, when the envelope could be read that far.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            ProtectError::UnknownKeyId { key_id }
            | ProtectError::AuthenticationFailed { key_id } => Some(key_id),
            _ => None,
        }
    }
}

/// The partition kind a full L2 key names, as far as its shape tells, for log lines:
/// `user`, `app`, `obo`, `obo-session`, `own` (tokencache's `tc:` keys) or `other`.
pub fn kind_of_key(bare: &str) -> &'static str {
    if bare.starts_with("tc:") {
        "own"
    } else if bare.starts_with(crate::partition::SESSION_NAMESPACE) {
        "obo-session"
    } else if bare.ends_with("_AppTokenCache") {
        "app"
    } else if bare.len() == 43
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        "obo"
    } else if bare.contains('.') {
        "user"
    } else {
        "other"
    }
}

/// How often the same (key id, kind) is logged again, with a count, at most.
pub(crate) const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// Distinct (key id, kind) pairs remembered; past it, pairs share one slot (the ids
/// come from L2 data, which must not grow this table without bound).
const MAX_TRACKED: usize = 256;

/// Logs each (key id, error kind) once, then at most once per [`REPEAT_EVERY`] with
/// the count since the last line. Never logs a key, a token or the stored bytes.
#[derive(Debug, Default)]
pub(crate) struct Reporter {
    // std Mutex: a map lookup per failed open, never across an await.
    seen: Mutex<HashMap<(String, ProtectErrorKind), (Instant, u64)>>,
}

impl Reporter {
    /// Records one failed open of `full_key` (the L2 key, never secret: account ids
    /// and hashes) whose partition kind is `partition_kind`; `then` says what the cache
    /// does about it. Returns whether a line was written.
    pub(crate) fn report(
        &self,
        error: &ProtectError,
        full_key: &str,
        partition_kind: &'static str,
        then: &str,
    ) -> bool {
        let id = error.key_id().unwrap_or("-").to_string();
        let kind = error.kind();
        let now = Instant::now();
        let count = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let slot = if seen.len() >= MAX_TRACKED && !seen.contains_key(&(id.clone(), kind)) {
                ("*".to_string(), kind)
            } else {
                (id.clone(), kind)
            };
            match seen.get_mut(&slot) {
                None => {
                    seen.insert(slot, (now, 0));
                    Some(1)
                }
                Some((at, n)) if now.duration_since(*at) >= REPEAT_EVERY => {
                    let count = *n + 1;
                    *at = now;
                    *n = 0;
                    Some(count)
                }
                Some((_, n)) => {
                    *n += 1;
                    None
                }
            }
        };
        let Some(count) = count else {
            tracing::debug!(key_id = %id, error_kind = %kind, partition_kind, key = %full_key, "L2 value could not be opened");
            return false;
        };
        tracing::error!(
            key_id = %id,
            error_kind = %kind,
            partition_kind,
            key = %full_key,
            count,
            "{partition_kind} partition in L2 could not be opened ({error}); {then}; this line is written once per key id and kind (then with a count at most once a minute)",
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_key_shapes() {
        assert_eq!(kind_of_key("oid.tid"), "user");
        assert_eq!(kind_of_key("c_t_AppTokenCache"), "app");
        assert_eq!(
            kind_of_key("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"),
            "obo"
        );
        assert_eq!(kind_of_key("obo-session:abc"), "obo-session");
        assert_eq!(kind_of_key("tc:links:{o.t}"), "own");
    }

    #[test]
    fn reported_once_per_key_id_and_kind() {
        let r = Reporter::default();
        let a = ProtectError::UnknownKeyId {
            key_id: "k1".into(),
        };
        let b = ProtectError::AuthenticationFailed {
            key_id: "k1".into(),
        };
        let c = ProtectError::UnknownKeyId {
            key_id: "k2".into(),
        };
        assert!(r.report(&a, "o.t", "user", "read as a miss"));
        assert!(!r.report(&a, "o2.t", "user", "read as a miss"));
        assert!(
            r.report(&b, "o.t", "user", "read as a miss"),
            "another kind"
        );
        assert!(r.report(&c, "o.t", "user", "read as a miss"), "another id");
    }

    #[test]
    fn the_table_is_bounded() {
        let r = Reporter::default();
        for i in 0..(MAX_TRACKED + 100) {
            let e = ProtectError::UnknownKeyId {
                key_id: format!("k{i}"),
            };
            r.report(&e, "o.t", "user", "read as a miss");
        }
        let len = r.seen.lock().unwrap().len();
        assert!(len <= MAX_TRACKED + 1, "{len}");
    }
}
