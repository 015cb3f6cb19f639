//! Partition keys: which L2 key (and L1 entry) holds which credentials.
//!
//! The keys are those of Microsoft.Identity.Web / MSAL, so that an unencrypted
//! cache can be shared with them (docs/design.md §4):
//!
//! | partition | key |
//! |---|---|
//! | user | MSAL home account id, `"{oid}.{tid}"` (`uid.utid` from `client_info` when present) |
//! | app | `"{client_id}_{tenant_id}_AppTokenCache"` |
//! | OBO | base64url (no padding) of SHA-256 of the raw incoming assertion |
//! | long-running OBO session | `obo-session:` + base64url (no padding) of SHA-256 of the caller's session key |
//!
//! Session keys are chosen by the caller, so they are hashed into a namespace of their
//! own: whatever a session key is (another user's `oid.tid`, a `tc:` key), it can
//! never name another kind's partition or one of tokencache's own keys. User and app
//! keys are checked ([`check_key`]) so that they never enter the `tc:` or
//! `obo-session:` namespaces either.
//!
//! tokencache's own keys (link sets, revocation stamps) are namespaced `tc:` and
//! carry the user's hash tag `{oid.tid}` so that, in Redis Cluster, all of one
//! user's own keys share a slot. Pure: no I/O.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// What kind of credentials a partition holds; decides its default expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionKind {
    /// A signed-in user's tokens (auth code, refresh, silent).
    User,
    /// An application's own tokens (client credentials).
    App,
    /// Tokens a web API obtained on behalf of a user, keyed by the incoming assertion.
    Obo,
    /// A long-running OBO session keyed by a caller-chosen session key.
    OboSession,
}

impl PartitionKind {
    /// A short lower-case name (`user`, `app`, `obo`, `obo-session`).
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionKind::User => "user",
            PartitionKind::App => "app",
            PartitionKind::Obo => "obo",
            PartitionKind::OboSession => "obo-session",
        }
    }
}

impl fmt::Display for PartitionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key of one partition, without the store prefix. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    kind: PartitionKind,
    key: Arc<str>,
}

impl PartitionKey {
    /// The user partition of a home account id (`oid.tid` or `uid.utid`).
    pub fn user(home_account_id: &str) -> Self {
        Self::new(PartitionKind::User, home_account_id)
    }

    /// The app partition of a client in a tenant.
    pub fn app(client_id: &str, tenant_id: &str) -> Self {
        Self::new(
            PartitionKind::App,
            &format!("{client_id}_{tenant_id}_AppTokenCache"),
        )
    }

    /// The OBO partition of a raw incoming assertion (the bearer token the API received).
    pub fn obo(assertion: &str) -> Self {
        Self::new(PartitionKind::Obo, &assertion_hash(assertion))
    }

    /// A long-running OBO session partition, keyed by a caller-chosen session key
    /// (hashed into the `obo-session:` namespace; see the module docs).
    pub fn obo_session(session_key: &str) -> Self {
        Self::new(
            PartitionKind::OboSession,
            &session_partition_key(session_key),
        )
    }

    /// A key of a given kind taken as it is (for tools that list a store).
    pub fn new(kind: PartitionKind, key: &str) -> Self {
        Self {
            kind,
            key: Arc::from(key),
        }
    }

    /// The kind of partition.
    pub fn kind(&self) -> PartitionKind {
        self.kind
    }

    /// The key as MSAL / Microsoft.Identity.Web writes it (no prefix).
    pub fn as_str(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are hashes or account ids, never token secrets.
        write!(f, "{}:{}", self.kind, self.key)
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

/// Where long-running OBO session partitions live: `obo-session:{base64url(sha256(key))}`.
pub const SESSION_NAMESPACE: &str = "obo-session:";

/// The longest user or app partition key accepted (home account ids are ~73 bytes).
pub const MAX_KEY_LEN: usize = 1024;

/// The partition key of a long-running OBO session (see [`SESSION_NAMESPACE`]).
pub fn session_partition_key(session_key: &str) -> String {
    let mut k = String::with_capacity(SESSION_NAMESPACE.len() + 43);
    k.push_str(SESSION_NAMESPACE);
    URL_SAFE_NO_PAD.encode_string(Sha256::digest(session_key.as_bytes()), &mut k);
    k
}

/// Why a caller-given user or app partition key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Empty.
    #[error("the key is empty")]
    Empty,
    /// Longer than [`MAX_KEY_LEN`].
    #[error("the key is longer than {MAX_KEY_LEN} bytes")]
    TooLong,
    /// It would name one of tokencache's own keys (`tc:`) or a session partition.
    #[error("the key is in a namespace reserved for tokencache (`tc:` or `obo-session:`)")]
    Reserved,
}

/// Checks a user (home account id) or app partition key given by a caller: never
/// empty, at most [`MAX_KEY_LEN`] bytes, and outside the reserved namespaces. Cheap
/// enough for every lookup.
#[inline]
pub fn check_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        Err(KeyError::Empty)
    } else if key.len() > MAX_KEY_LEN {
        Err(KeyError::TooLong)
    } else if key.starts_with("tc:") || key.starts_with(SESSION_NAMESPACE) {
        Err(KeyError::Reserved)
    } else {
        Ok(())
    }
}

/// base64url (no padding) of SHA-256 of the raw assertion, as MSAL.NET and msal-node
/// compute the OBO partition key and the `user_assertion_hash` field.
pub fn assertion_hash(assertion: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(assertion.as_bytes()))
}

/// Remembers the OBO partition key ([`assertion_hash`]) of recently seen incoming
/// assertions, so that an L1 hit of an OBO partition does not hash a ~1.5 KB token
/// again (SHA-256 of it took about 1 µs, the rest of the hit about 0.5 µs).
///
/// Never a different token's key: a slot answers only for the very assertion it was
/// filled with, compared in full (in constant time: the slots hold other callers'
/// bearer tokens), so the key stays exactly SHA-256's, collision resistance included. The
/// slot is picked by a fast keyed hash of the assertion's length and last 64 bytes (a
/// JWT's signature): a crafted collision only evicts a memo, which costs one SHA-256.
///
/// Bounded: [`Self::SLOTS`] slots, one assertion each, assertions over
/// [`Self::MAX_ASSERTION`] bytes are never kept (at most 4 MiB of assertions and
/// their keys).
pub(crate) struct AssertionKeys {
    slots: Box<[std::sync::Mutex<Option<Memo>>]>,
    seed: foldhash::fast::RandomState,
}

struct Memo {
    assertion: Box<[u8]>,
    key: Arc<str>,
}

impl Default for AssertionKeys {
    fn default() -> Self {
        Self {
            slots: (0..Self::SLOTS)
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
            seed: foldhash::fast::RandomState::default(),
        }
    }
}

impl fmt::Debug for AssertionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Slots hold bearer tokens: show nothing of them.
        f.debug_struct("AssertionKeys")
            .field("slots", &Self::SLOTS)
            .finish()
    }
}

impl AssertionKeys {
    /// Slots (one assertion each).
    pub(crate) const SLOTS: usize = 1024;
    /// The longest assertion remembered, in bytes.
    pub(crate) const MAX_ASSERTION: usize = 4096;

    /// [`assertion_hash`] of `assertion`, remembered.
    pub(crate) fn key(&self, assertion: &str) -> Arc<str> {
        let bytes = assertion.as_bytes();
        if bytes.len() > Self::MAX_ASSERTION {
            return Arc::from(assertion_hash(assertion));
        }
        let tail = &bytes[bytes.len().saturating_sub(64)..];
        let h = std::hash::BuildHasher::hash_one(&self.seed, (bytes.len(), tail));
        let slot = &self.slots[(h as usize) % Self::SLOTS];
        {
            let memo = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(m) = memo.as_ref() {
                if equal_in_constant_time(&m.assertion, bytes) {
                    return m.key.clone();
                }
            }
        }
        let key: Arc<str> = Arc::from(assertion_hash(assertion));
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Memo {
            assertion: bytes.into(),
            key: key.clone(),
        });
        key
    }
}

/// Whether `a == b`, in a time that depends only on the lengths.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut diff = wa
        .remainder()
        .iter()
        .zip(wb.remainder())
        .fold(0u64, |d, (x, y)| d | u64::from(x ^ y));
    for (x, y) in wa.zip(wb) {
        let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
        diff |= word(x) ^ word(y);
    }
    std::hint::black_box(diff) == 0
}

/// Builds full store keys: the optional prefix ("instance name") in front of every key,
/// and tokencache's own `tc:` keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySpace {
    prefix: String,
}

impl KeySpace {
    /// A key space with a prefix put in front of every key (may be empty).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full store key of a partition.
    pub fn partition(&self, key: &PartitionKey) -> String {
        self.partition_str(key.as_str())
    }

    /// The full store key of a partition given as its bare key.
    pub fn partition_str(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    /// The link set of a user: keys of the OBO partitions derived from the user's tokens.
    pub fn link_set(&self, home_account_id: &str) -> String {
        format!("{}tc:links:{{{}}}", self.prefix, home_account_id)
    }

    /// The revocation stamp of a user: when the user last signed out.
    pub fn revocation(&self, home_account_id: &str) -> String {
        format!("{}tc:revoked:{{{}}}", self.prefix, home_account_id)
    }

    /// The account of a revocation stamp key (the inverse of [`revocation`](Self::revocation)).
    pub fn revoked_account<'a>(&self, full: &'a str) -> Option<&'a str> {
        self.strip(full)?
            .strip_prefix("tc:revoked:{")?
            .strip_suffix('}')
    }

    /// The backplane channel name.
    pub fn backplane_channel(&self) -> String {
        format!("{}tc:backplane", self.prefix)
    }

    /// The session index entry of a provider session: `(issuer, sid)` → the home account
    /// id that signed in with it (front- and back-channel logout carry only `sid`).
    /// `{prefix}tc:sid:{hash(issuer)}:{sid}`, the issuer as base64url(SHA-256).
    pub fn session_by_sid(&self, issuer: &str, sid: &str) -> String {
        format!("{}tc:sid:{}:{}", self.prefix, assertion_hash(issuer), sid)
    }

    /// The session index entry of a provider subject: `(issuer, sub)` → home account id.
    /// `{prefix}tc:sub:{hash(issuer)}:{sub}`.
    pub fn session_by_sub(&self, issuer: &str, sub: &str) -> String {
        format!("{}tc:sub:{}:{}", self.prefix, assertion_hash(issuer), sub)
    }

    /// The marker of an accepted logout token (`jti` of `issuer`), kept to refuse replays.
    /// `{prefix}tc:jti:{hash(issuer)}:{jti}`.
    pub fn logout_jti(&self, issuer: &str, jti: &str) -> String {
        format!("{}tc:jti:{}:{}", self.prefix, assertion_hash(issuer), jti)
    }

    /// Strips the prefix from a full store key; `None` when the key is not in this space.
    pub fn strip<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(self.prefix.as_str())
    }

    /// Whether a full store key (with prefix) is one of tokencache's own keys.
    pub fn is_own_key(&self, full: &str) -> bool {
        self.strip(full).is_some_and(|k| k.starts_with("tc:"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_keys_are_the_hash_of_that_very_assertion() {
        let memo = AssertionKeys::default();
        let a = "header.claims.signature-a";
        let b = "header.claims.signature-b";
        assert_eq!(&*memo.key(a), assertion_hash(a));
        assert_eq!(&*memo.key(a), assertion_hash(a), "remembered");
        assert_eq!(&*memo.key(b), assertion_hash(b));
        // Same length and tail, other content: never the other one's key.
        let c = format!("X{}", &a[1..]);
        assert_eq!(&*memo.key(&c), assertion_hash(&c));
        assert_eq!(&*memo.key(a), assertion_hash(a));
        let long = "x".repeat(AssertionKeys::MAX_ASSERTION + 1);
        assert_eq!(&*memo.key(&long), assertion_hash(&long));
        assert!(!equal_in_constant_time(b"ab", b"abc"));
        assert!(equal_in_constant_time(b"abc", b"abc"));
    }

    #[test]
    fn keys_match_msal() {
        assert_eq!(PartitionKey::user("oid.tid").as_str(), "oid.tid");
        assert_eq!(
            PartitionKey::app("cid", "tid").as_str(),
            "cid_tid_AppTokenCache"
        );
        // echo -n "abc" | sha256 | base64url: ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0
        assert_eq!(
            PartitionKey::obo("abc").as_str(),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        assert_eq!(PartitionKey::obo("abc").kind(), PartitionKind::Obo);
    }

    #[test]
    fn session_keys_live_in_their_own_namespace() {
        let victim = "00000000-0000-0000-0000-000000000001.tenant";
        let k = PartitionKey::obo_session(victim);
        assert_ne!(k.as_str(), victim);
        assert!(k.as_str().starts_with(SESSION_NAMESPACE));
        assert_eq!(k.as_str().len(), SESSION_NAMESPACE.len() + 43);
        let ks = KeySpace::new("p:");
        let link = ks.link_set("o.t");
        let hostile = PartitionKey::obo_session(&link);
        assert!(!ks.is_own_key(&ks.partition(&hostile)));
        assert_ne!(ks.partition(&hostile), link);
    }

    #[test]
    fn caller_keys_never_enter_reserved_namespaces() {
        assert_eq!(check_key("oid.tid"), Ok(()));
        assert_eq!(check_key(""), Err(KeyError::Empty));
        assert_eq!(check_key("tc:links:{o.t}"), Err(KeyError::Reserved));
        assert_eq!(check_key("obo-session:abc"), Err(KeyError::Reserved));
        assert_eq!(
            check_key(&"x".repeat(MAX_KEY_LEN + 1)),
            Err(KeyError::TooLong)
        );
    }

    #[test]
    fn key_space_prefixes_everything() {
        let ks = KeySpace::new("app1:");
        let k = PartitionKey::user("o.t");
        assert_eq!(ks.partition(&k), "app1:o.t");
        assert_eq!(ks.link_set("o.t"), "app1:tc:links:{o.t}");
        assert_eq!(ks.revocation("o.t"), "app1:tc:revoked:{o.t}");
        assert!(ks.is_own_key("app1:tc:links:{o.t}"));
        assert!(!ks.is_own_key("app1:o.t"));
        assert!(!ks.is_own_key("other:tc:x"));
        assert_eq!(ks.strip("app1:o.t"), Some("o.t"));
    }

    #[test]
    fn session_and_logout_keys_are_own_keys() {
        let ks = KeySpace::new("app1:");
        let iss = "https://login.example/tenant/v2.0";
        let h = assertion_hash(iss);
        assert_eq!(ks.session_by_sid(iss, "s1"), format!("app1:tc:sid:{h}:s1"));
        assert_eq!(ks.session_by_sub(iss, "u1"), format!("app1:tc:sub:{h}:u1"));
        assert_eq!(ks.logout_jti(iss, "j1"), format!("app1:tc:jti:{h}:j1"));
        assert!(ks.is_own_key(&ks.session_by_sid(iss, "s1")));
        assert_ne!(
            ks.session_by_sid(iss, "x"),
            ks.session_by_sid("https://other", "x")
        );
    }
}
