//! `Lazy<T>`: a section kept as its JSON text until something reads it.
//!
//! An L2 hit serves an access token; the id tokens, accounts and app metadata of the
//! same blob (about a quarter of its bytes, and of its records) are read by nothing on
//! that path. [`Partition::parse_deferred`](super::Partition::parse_deferred) checks
//! those sections as JSON (serde_json's own scan, so the text is valid JSON) and keeps
//! their text; the records are decoded on first use, once, and kept, and the text is
//! then dropped (an L1 entry never holds both).
//!
//! A deferred section that does not decode (valid JSON, wrong records) reads as empty;
//! [`Lazy::error`] says why, and it serializes back verbatim (its text is kept), so
//! nothing is lost. Changing it (`DerefMut`) decodes it first; a section that did not
//! decode is then replaced by what the change makes of an empty one.

use super::de::Slot;
use super::error::SchemaError;
use super::records::{Record, SectionSeed};
use super::section::Section;
use serde::de::DeserializeSeed;
use serde::ser::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// A section, decoded or still JSON text.
#[derive(Clone)]
pub(crate) enum Lazy<T> {
    /// Decoded (parsed eagerly, built, or changed).
    Ready(Section<T>),
    /// As read; decoded on first use.
    Deferred(Box<Deferred<T>>),
}

/// A section read as text.
pub(crate) struct Deferred<T> {
    /// The section's JSON text (an object or `null`) until it decodes; kept when it
    /// does not (to be written back).
    text: Mutex<Option<Box<RawValue>>>,
    /// The records, or why they could not be decoded (then: none).
    decoded: OnceLock<(Section<T>, Option<SchemaError>)>,
}

impl<T: Clone> Clone for Deferred<T> {
    fn clone(&self) -> Self {
        Deferred {
            text: Mutex::new(self.text().clone()),
            decoded: self.decoded.clone(),
        }
    }
}

impl<T> Deferred<T> {
    fn text(&self) -> MutexGuard<'_, Option<Box<RawValue>>> {
        self.text.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: Record> Deferred<T> {
    /// The records, decoded on the first call (the text goes if they decode).
    fn get(&self) -> &(Section<T>, Option<SchemaError>) {
        self.decoded.get_or_init(|| {
            let mut text = self.text();
            // The text is gone only once decoded, i.e. never here.
            let Some(json) = text.as_ref() else {
                return (Section::default(), None);
            };
            match decode(json) {
                Ok(records) => {
                    *text = None;
                    (records, None)
                }
                Err(e) => (Section::default(), Some(e)),
            }
        })
    }
}

impl<T> Default for Lazy<T> {
    fn default() -> Self {
        Lazy::Ready(Section::default())
    }
}

impl<T: Record> Lazy<T> {
    /// A section to decode when first read.
    pub(crate) fn deferred(json: Box<RawValue>) -> Self {
        Lazy::Deferred(Box::new(Deferred {
            text: Mutex::new(Some(json)),
            decoded: OnceLock::new(),
        }))
    }

    /// Why a deferred section could not be decoded (it reads as empty); decodes it if it
    /// was not yet.
    pub(crate) fn error(&self) -> Option<&SchemaError> {
        match self {
            Lazy::Ready(_) => None,
            Lazy::Deferred(d) => d.get().1.as_ref(),
        }
    }

    /// Whether the section is still JSON text that nothing has read.
    #[cfg(test)]
    pub(crate) fn is_untouched(&self) -> bool {
        matches!(self, Lazy::Deferred(d) if d.decoded.get().is_none())
    }

    /// Whether the section still holds its text.
    #[cfg(test)]
    pub(crate) fn holds_text(&self) -> bool {
        matches!(self, Lazy::Deferred(d) if d.text().is_some())
    }

    /// Whether the section has no record, without decoding `{}` or `null`.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Lazy::Ready(s) => s.is_empty(),
            Lazy::Deferred(d) => {
                if d.decoded.get().is_none()
                    && d.text().as_ref().is_some_and(|j| is_empty_json(j.get()))
                {
                    return true;
                }
                d.get().0.is_empty()
            }
        }
    }
}

fn is_empty_json(text: &str) -> bool {
    let t = text.trim_ascii();
    t == "null"
        || (t.starts_with('{') && t.ends_with('}') && t[1..t.len() - 1].trim_ascii().is_empty())
}

/// Decodes a section's text as the eager parse does (same seeds, same errors; the
/// position is within the section's text).
fn decode<T: Record>(json: &RawValue) -> Result<Section<T>, SchemaError> {
    let slot: Slot = RefCell::new(None);
    let mut d = serde_json::Deserializer::from_str(json.get());
    let r = SectionSeed::<T> {
        slot: &slot,
        _t: PhantomData,
    }
    .deserialize(&mut d)
    .and_then(|s| d.end().map(|()| s));
    r.map_err(|e| match slot.borrow_mut().take() {
        Some(err) => err.at(&e),
        None => SchemaError::from_json(&e),
    })
}

impl<T: Record> Deref for Lazy<T> {
    type Target = Section<T>;
    fn deref(&self) -> &Section<T> {
        match self {
            Lazy::Ready(s) => s,
            Lazy::Deferred(d) => &d.get().0,
        }
    }
}

impl<T: Record> DerefMut for Lazy<T> {
    fn deref_mut(&mut self) -> &mut Section<T> {
        if let Lazy::Deferred(d) = self {
            d.get();
            let records = d.decoded.take().map(|(r, _)| r).unwrap_or_default();
            *self = Lazy::Ready(records);
        }
        let Lazy::Ready(records) = self else {
            unreachable!("a deferred section was made ready above")
        };
        records
    }
}

/// Equal records are equal sections, decoded or not.
impl<T: Record + PartialEq> PartialEq for Lazy<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// A section that did not decode is written back as it was read; any other as its
/// records (what the eager parse would have written).
impl<T: Record + Serialize> Serialize for Lazy<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Lazy::Ready(r) => r.serialize(s),
            Lazy::Deferred(d) => match d.get() {
                (records, None) => records.serialize(s),
                (records, Some(_)) => match d.text().as_ref() {
                    Some(json) => json.serialize(s),
                    None => records.serialize(s),
                },
            },
        }
    }
}

/// Records as a section prints them (secrets redacted); text that was not decoded is
/// never printed (it holds secrets), only its size.
impl<T: Record + fmt::Debug> fmt::Debug for Lazy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lazy::Ready(s) => s.fmt(f),
            Lazy::Deferred(d) => {
                // The text is there whenever the records are not (see `Deferred::get`).
                let len = || d.text().as_ref().map_or(0, |j| j.get().len());
                match d.decoded.get() {
                    Some((s, None)) => s.fmt(f),
                    Some((_, Some(e))) => write!(f, "<{} bytes not decoded: {e}>", len()),
                    None => write!(f, "<{} bytes, not decoded yet>", len()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AccessTokenQuery, Partition, SchemaError};
    use crate::sample::{self, CLIENT_ID, TENANT};
    use serde_json::{json, Value};

    const OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";
    const NOW: i64 = 1_700_000_000;

    fn blob() -> (Vec<u8>, String) {
        let (p, home) = sample::user_partition(OID, TENANT, NOW).unwrap();
        (p.to_vec(), home)
    }

    fn with(blob: &[u8], section: &str, value: Value) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(blob).unwrap();
        v[section] = value;
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_token_lookup_decodes_no_deferred_section() {
        let (blob, home) = blob();
        let p = Partition::parse_deferred(&blob).unwrap();
        let scopes = sample::USER_SCOPES[0];
        let mut q = AccessTokenQuery::new(CLIENT_ID, scopes);
        q.home_account_id = Some(&home);
        assert!(p.find_access_token(&q, NOW).is_some());
        assert!(p
            .find_refresh_token(&super::super::RefreshTokenQuery::new(CLIENT_ID, &home))
            .is_some());
        assert!(p.has_credentials());
        for untouched in [
            p.id_tokens.is_untouched(),
            p.accounts.is_untouched(),
            p.app_metadata.is_untouched(),
        ] {
            assert!(untouched, "a lookup decoded a deferred section");
        }
        // Asked for, they are the eager parse's records.
        let eager = Partition::parse(&blob).unwrap();
        assert_eq!(p.find_account(&home), eager.find_account(&home));
        assert!(!p.accounts.is_untouched());
        assert!(!p.accounts.holds_text(), "decoded, the text goes");
        assert!(p.id_tokens.holds_text(), "not read yet");
        assert_eq!(p.id_tokens().count(), 1);
        assert_eq!(p, eager);
        assert_eq!(p.to_vec(), eager.to_vec());
    }

    #[test]
    fn a_malformed_deferred_section_reads_empty_says_why_and_is_written_back() {
        let (blob, home) = blob();
        // Valid JSON, but an id token without its secret and with a wrong type.
        let bad = json!({"k": {"home_account_id": home, "secret": 5}});
        let blob = with(&blob, "IdToken", bad.clone());
        assert!(
            Partition::parse(&blob).is_err(),
            "the eager parse refuses it"
        );
        let p = Partition::parse_deferred(&blob).unwrap();
        let mut q = AccessTokenQuery::new(CLIENT_ID, sample::USER_SCOPES[0]);
        q.home_account_id = Some(&home);
        assert!(
            p.find_access_token(&q, NOW).is_some(),
            "access tokens still serve"
        );
        assert_eq!(p.id_tokens().count(), 0);
        let err = p.deferred_error().expect("the reason");
        assert!(
            matches!(err, SchemaError::WrongType { path, .. } if path.starts_with("IdToken.k"))
        );
        assert!(p.id_tokens.holds_text(), "kept, to be written back");
        let out: Value = serde_json::from_slice(&p.to_vec()).unwrap();
        assert_eq!(out["IdToken"], bad, "written back as read");
        // Changed, it is decoded first: what the change makes of an empty section.
        let mut changed = p.clone();
        let resp = sample::user_response(OID, TENANT, sample::USER_SCOPES[1], NOW, 3600).unwrap();
        let req = super::super::TokenRequest {
            client_id: CLIENT_ID,
            environment: sample::ENVIRONMENT,
            realm: TENANT,
            scopes: sample::USER_SCOPES[1],
            user_assertion: None,
        };
        changed.add_token_response(&req, &resp, NOW).unwrap();
        assert_eq!(changed.id_tokens().count(), 1);
        assert!(changed.deferred_error().is_none());
        assert!(Partition::parse(&changed.to_vec()).is_ok());
    }

    #[test]
    fn what_the_eager_parse_refuses_as_json_the_deferred_one_refuses_too() {
        let (blob, _) = blob();
        // Not an object of records.
        for value in [json!(5), json!("x"), json!([1])] {
            let b = with(&blob, "Account", value);
            let eager = Partition::parse(&b).unwrap_err();
            let deferred = Partition::parse_deferred(&b).unwrap_err();
            assert!(
                matches!((&eager, &deferred), (SchemaError::WrongType { path: a, .. }, SchemaError::WrongType { path: b, .. }) if a == b),
                "{eager} / {deferred}"
            );
        }
        // A syntax error inside a deferred section.
        let text = String::from_utf8(blob).unwrap();
        let broken = text.replacen("\"AppMetadata\":{", "\"AppMetadata\":{,", 1);
        assert!(matches!(
            Partition::parse_deferred(broken.as_bytes()),
            Err(SchemaError::NotJson { .. })
        ));
        // Null and empty sections are empty without decoding.
        let b = with(text.as_bytes(), "IdToken", Value::Null);
        let p = Partition::parse_deferred(&b).unwrap();
        assert_eq!(p.id_tokens().count(), 0);
        assert!(p.deferred_error().is_none());
    }

    #[test]
    fn debug_of_a_deferred_section_never_prints_its_text() {
        let (blob, _) = blob();
        let p = Partition::parse_deferred(&blob).unwrap();
        let eager = Partition::parse(&blob).unwrap();
        let id_token = eager.id_tokens().next().unwrap().secret.expose().to_owned();
        let printed = format!("{p:?}");
        assert!(!printed.contains(&id_token));
        assert!(printed.contains("not decoded yet"));
        let _ = p.id_tokens().count();
        assert!(!format!("{p:?}").contains(&id_token));
    }
}
