//! `Section<T>`: one section of a partition (credential key → record), stored as a
//! vector sorted by key.
//!
//! Why not a `BTreeMap`: a B-tree leaf reserves room for 11 entries, and records are
//! ~200-400 bytes inline, so a section with one or three records cost 3-5 KB of
//! mostly empty node; five sections made a decoded 8 KB partition weigh 22 KB in L1.
//! An exact-size sorted vector costs what its records cost, and a partition has a
//! handful of records per section, so lookups by scan or binary search are as fast.

use serde::ser::{Serialize, SerializeMap, Serializer};
use std::fmt;
use std::sync::OnceLock;

/// Credential key → record, sorted by key, keys unique; plus, computed on the first
/// lookup that asks and dropped by every change, one `u64` summary per record (the access
/// tokens' pre-lower-cased scope sets, see [`Section::values_with_summary`]).
#[derive(Clone)]
pub(crate) struct Section<T>(Vec<(String, T)>, OnceLock<Box<[u64]>>);

impl<T> Default for Section<T> {
    fn default() -> Self {
        Section(Vec::new(), OnceLock::new())
    }
}

/// Equal records are equal sections, whether or not their summaries were computed.
impl<T: PartialEq> PartialEq for Section<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<T> Section<T> {
    /// Builds a section from parsed entries: sorted by key; of duplicate keys the last
    /// one wins (as a JSON object read into a map); no spare capacity kept.
    pub(crate) fn from_parsed(mut entries: Vec<(String, T)>) -> Self {
        // Stable sort keeps document order among equal keys; keep the last of each run.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, T)> = Vec::with_capacity(entries.len());
        for e in entries {
            match out.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => out.push(e),
            }
        }
        out.shrink_to_fit();
        Section(out, OnceLock::new())
    }

    /// The records with their summaries by `summarize`, computed once (a section's
    /// summaries come from one function: the crate has one, the access tokens' scope
    /// masks) and forgotten by any change of the section.
    pub(crate) fn values_with_summary(
        &self,
        summarize: fn(&T) -> u64,
    ) -> impl Iterator<Item = (&T, u64)> {
        let sums = self
            .1
            .get_or_init(|| self.0.iter().map(|(_, v)| summarize(v)).collect());
        self.0.iter().map(|(_, v)| v).zip(sums.iter().copied())
    }

    /// Forgets the summaries (the records are about to change).
    fn changed(&mut self) {
        self.1.take();
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// Inserts or replaces the record under `key`; returns the replaced one.
    pub(crate) fn insert(&mut self, key: String, value: T) -> Option<T> {
        self.changed();
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// The record under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&T> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }

    /// The record under `key`, to change in place.
    #[cfg(test)]
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut T> {
        self.changed();
        let i = self.position(key).ok()?;
        Some(&mut self.0[i].1)
    }

    /// Removes the record under `key`.
    pub(crate) fn remove(&mut self, key: &str) -> Option<T> {
        self.changed();
        let i = self.position(key).ok()?;
        let (_, v) = self.0.remove(i);
        Some(v)
    }

    /// Keeps the records for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&String, &mut T) -> bool) {
        self.changed();
        self.0.retain_mut(|(k, v)| keep(k, v));
    }

    /// The records, in key order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|(_, v)| v)
    }

    /// Keys and records, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Number of records.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no record.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a, T> IntoIterator for &'a Section<T> {
    type Item = (&'a String, &'a T);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, T)>,
        fn(&'a (String, T)) -> (&'a String, &'a T),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<T: fmt::Debug> fmt::Debug for Section<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<T: Serialize> Serialize for Section<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_last_wins() {
        let s = Section::from_parsed(vec![("b".into(), 1), ("a".into(), 2), ("b".into(), 3)]);
        assert_eq!(
            s.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(),
            vec![("a", 2), ("b", 3)]
        );
        assert_eq!(s.0.capacity(), 2);
    }

    #[test]
    fn insert_remove_retain() {
        let mut s = Section::default();
        assert_eq!(s.insert("m".into(), 1), None);
        assert_eq!(s.insert("a".into(), 2), None);
        assert_eq!(s.insert("z".into(), 3), None);
        assert_eq!(s.insert("m".into(), 4), Some(1));
        assert_eq!(s.values().copied().collect::<Vec<_>>(), vec![2, 4, 3]);
        assert_eq!(s.remove("a"), Some(2));
        assert_eq!(s.remove("a"), None);
        s.retain(|_, v| *v > 3);
        assert_eq!(s.len(), 1);
        assert!(!s.is_empty());
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"m":4}"#);
    }
}
