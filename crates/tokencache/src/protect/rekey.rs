//! Re-encryption of one stored partition under the current primary key, safe while
//! replicas keep serving: the new envelope replaces the old one only if L2 still holds
//! exactly the bytes that were read ([`Store::compare_and_swap`]), so a write another
//! replica made meanwhile is never overwritten (it is reread and, if it is not on the
//! primary yet, rekeyed in turn).

use super::{looks_like_json, Envelope, Found, ProtectError, Protection};
use crate::schema::Partition;
use crate::store::{Store, StoreResult};

/// Attempts of one key's compare-and-set before it is reported as contended.
pub const REKEY_ATTEMPTS: usize = 16;

/// What [`rekey`] did with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rekeyed {
    /// Sealed again with the primary key (it was on another key, or plaintext).
    Rekeyed,
    /// Already sealed with the primary key: nothing written.
    AlreadyCurrent,
    /// Could not be opened with the ring: left as it is.
    Unreadable(ProtectError),
    /// Opened (or plaintext) but not an MSAL partition holding credentials (a foreign
    /// JSON value, an empty object): left as it is.
    NotAPartition,
    /// Gone (expired or removed) before it could be read: nothing to do.
    Gone,
    /// tokencache's own key (`tc:`), which is not encrypted: left as it is.
    OwnKey,
    /// Changed by other writers at every one of [`REKEY_ATTEMPTS`] tries: left for a
    /// later run (a run is resumable: it skips what is already current).
    Contended,
}

/// Re-encrypts the value under `full_key` (a partition's full L2 key) with the primary
/// key of `protection`, preserving its TTL. `bare_key` is `full_key` without the
/// prefix (to recognise tokencache's own `tc:` keys). Plaintext partitions are sealed
/// too (this is how a plaintext cache is migrated), whatever the migration setting.
pub async fn rekey(
    store: &dyn Store,
    protection: &Protection,
    full_key: &str,
    bare_key: &str,
) -> StoreResult<Rekeyed> {
    if bare_key.starts_with("tc:") {
        return Ok(Rekeyed::OwnKey);
    }
    let migrating = protection.clone().accept_plaintext(true);
    for _ in 0..REKEY_ATTEMPTS {
        let Some(value) = store.get(full_key).await? else {
            return Ok(Rekeyed::Gone);
        };
        let sealed = match migrating.open(full_key, &value.bytes) {
            Ok((_, Found::Primary)) => return Ok(Rekeyed::AlreadyCurrent),
            Ok((plain, _)) => {
                // Only what tokencache would have written: a partition with credentials
                // (a foreign JSON value in a shared Redis is left alone, not sealed).
                if !Partition::parse(&plain).is_ok_and(|p| p.has_credentials()) {
                    return Ok(Rekeyed::NotAPartition);
                }
                protection.seal(full_key, &plain)
            }
            Err(e) => return Ok(Rekeyed::Unreadable(e)),
        };
        match value.ttl {
            // Expires while we look at it: let it go.
            Some(t) if t.is_zero() => return Ok(Rekeyed::Gone),
            _ => {}
        }
        if store
            .compare_and_swap(
                full_key,
                Some(&value.bytes),
                Some(&sealed),
                crate::store::EntryExpiry::after(value.ttl),
            )
            .await?
        {
            return Ok(Rekeyed::Rekeyed);
        }
        // Changed (or gone) since the read: look again.
    }
    Ok(Rekeyed::Contended)
}

/// How a stored value is protected, from its first bytes (nothing is decrypted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored<'a> {
    /// A JSON object: plaintext MSAL JSON.
    Plaintext,
    /// An envelope sealed with this key id.
    Sealed {
        /// The key id in the envelope.
        key_id: &'a str,
    },
    /// Neither: a malformed envelope or foreign bytes.
    Malformed(super::Malformed),
}

/// Tells how `bytes` are stored, for reports (`tokencache inspect`).
pub fn stored(bytes: &[u8]) -> Stored<'_> {
    if looks_like_json(bytes) {
        return Stored::Plaintext;
    }
    match Envelope::parse(bytes) {
        Ok(env) => Stored::Sealed {
            key_id: env.key_id(),
        },
        Err(ProtectError::Malformed(m)) => Stored::Malformed(m),
        Err(_) => Stored::Malformed(super::Malformed::UnknownMagic),
    }
}
