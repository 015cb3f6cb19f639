//! Key shapes: what a key names, judged from its name alone, and which key prefixes
//! (Redis "instance names") a store holds when none is given.

use std::collections::{BTreeSet, HashSet};

/// What a key is, from its shape (and, for sessions, from the link sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A user partition: `oid.tid`.
    User,
    /// An app partition: `{client}_{tenant}_AppTokenCache`.
    App,
    /// An OBO partition: base64url of SHA-256 of the incoming assertion (43 characters).
    Obo,
    /// A long-running OBO session partition: `obo-session:…`, or a key a link set
    /// names that has no other shape.
    Session,
    /// Anything else.
    Other,
}

/// The partition kinds in report order, with their report names.
pub(crate) const KINDS: [(Kind, &str); 5] = [
    (Kind::User, "user"),
    (Kind::App, "app"),
    (Kind::Obo, "obo"),
    (Kind::Session, "obo-session"),
    (Kind::Other, "other"),
];

impl Kind {
    /// The position in [`KINDS`].
    pub(crate) fn index(self) -> usize {
        KINDS.iter().position(|(k, _)| *k == self).unwrap_or(4)
    }
}

/// The namespace of tokencache's own keys (after the prefix).
pub(crate) const OWN: &str = "tc:";

/// Session partitions' namespace (outside [`OWN`]: they are partitions, not bookkeeping).
pub(crate) const SESSION: &str = tokencache::partition::SESSION_NAMESPACE;

/// Whether `key` looks like an OBO partition key: base64url (no padding) of SHA-256.
pub(crate) fn is_assertion_hash(key: &str) -> bool {
    key.len() == 43
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `key` looks like an MSAL home account id (`oid.tid` / `uid.utid`).
pub(crate) fn is_home_account_id(key: &str) -> bool {
    match key.split_once('.') {
        Some((a, b)) => {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            };
            ok(a) && ok(b)
        }
        None => false,
    }
}

/// The kind of a partition key: `bare` without its prefix, `full` with it (link sets
/// name full keys).
pub(crate) fn classify(bare: &str, full: &str, linked: &HashSet<String>) -> Kind {
    if bare.starts_with(SESSION) {
        Kind::Session
    } else if bare.ends_with("_AppTokenCache") {
        Kind::App
    } else if is_assertion_hash(bare) {
        Kind::Obo
    } else if linked.contains(full) {
        Kind::Session
    } else if is_home_account_id(bare) {
        Kind::User
    } else {
        Kind::Other
    }
}

/// Whether a key without its prefix has a shape this tool knows.
fn known_shape(bare: &str) -> bool {
    bare.starts_with(OWN)
        || bare.starts_with(SESSION)
        || bare.ends_with("_AppTokenCache")
        || is_assertion_hash(bare)
        || is_home_account_id(bare)
}

/// The key prefixes found in `keys`: every `p` ending in `:` such that some key is `p`
/// followed by a known shape: tokencache's `tc:` keys (the prefix is what comes before
/// `tc:`), or a user, app or OBO partition key (which hold no `:`, so the prefix ends
/// at the key's last `:`). The empty prefix is not listed.
pub(crate) fn find_prefixes<'a>(keys: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut found = BTreeSet::new();
    for key in keys {
        // tokencache's own keys and session partitions: the prefix is everything before
        // their `tc:` or `obo-session:` segment.
        let own = if key.starts_with(OWN) || key.starts_with(SESSION) {
            Some(0)
        } else {
            key.find(":tc:")
                .or_else(|| key.find(":obo-session:"))
                .map(|i| i + 1)
        };
        if let Some(i) = own {
            if i > 0 {
                found.insert(key[..i].to_string());
            }
            continue;
        }
        // A partition key has no ':' of its own: the prefix ends at the last one.
        if let Some(i) = key.rfind(':') {
            let (prefix, bare) = key.split_at(i + 1);
            if known_shape(bare) {
                found.insert(prefix.to_string());
            }
        }
    }
    found.into_iter().collect()
}

/// The longest of `prefixes` that `key` starts with, or "".
pub(crate) fn prefix_of<'a>(key: &str, prefixes: &'a [String]) -> &'a str {
    prefixes
        .iter()
        .filter(|p| key.starts_with(p.as_str()))
        .max_by_key(|p| p.len())
        .map_or("", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shapes() {
        let linked: HashSet<String> = ["p:lro-1".to_string()].into();
        assert_eq!(
            classify("cid_tid_AppTokenCache", "cid_tid_AppTokenCache", &linked),
            Kind::App
        );
        assert_eq!(
            classify("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0", "x", &linked),
            Kind::Obo
        );
        assert_eq!(classify("lro-1", "p:lro-1", &linked), Kind::Session);
        assert_eq!(
            classify(
                "obo-session:ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0",
                "x",
                &linked
            ),
            Kind::Session
        );
        assert_eq!(
            classify(
                "a11ce000-0000-0000-0000-000000000001.72f988bf-86f1-41af-91ab-2d7cd011db47",
                "x",
                &linked
            ),
            Kind::User
        );
        assert_eq!(classify("something else", "x", &linked), Kind::Other);
    }

    #[test]
    fn prefixes_are_found_from_known_shapes() {
        let keys: Vec<String> = [
            "tcsim:tokencache:tc:links:{a.b}",
            "tcsim:tokencache:lro-0123",
            "tcsim:msidweb-default:a.b",
            "tcsim:msidweb-default:c_d_AppTokenCache",
            "a.b",
            "obo-session:ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0",
            "tc:links:{a.b}",
            "h",
            "queue:jobs:42",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let found = find_prefixes(&keys);
        assert_eq!(found, ["tcsim:msidweb-default:", "tcsim:tokencache:"]);
        assert_eq!(
            prefix_of("tcsim:tokencache:lro-0123", &found),
            "tcsim:tokencache:"
        );
        assert_eq!(prefix_of("queue:jobs:42", &found), "");
        assert_eq!(prefix_of("a.b", &found), "");
    }
}
