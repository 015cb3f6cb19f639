//! Lenient, allocation-light reading of record fields, with typed errors.
//!
//! Every visitor here accepts every JSON type and reports wrong types itself, so no
//! serde "invalid type: string \"...\"" message (which would quote a value, possibly a
//! secret) ever reaches an error. The typed error is parked in a [`Slot`] and picked up
//! by the caller, which adds the line and column from serde_json.

use super::error::{sanitize, SchemaError};
use super::records::AppAccountForm;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::fmt;

/// Where a typed error waits while serde unwinds.
pub(crate) type Slot = RefCell<Option<SchemaError>>;

/// Parks `err` in the slot and returns a serde error carrying the same one-line message.
pub(crate) fn fail<E: de::Error>(slot: &Slot, err: SchemaError) -> E {
    let msg = err.to_string();
    *slot.borrow_mut() = Some(err);
    E::custom(msg)
}

/// Implements the non-map `visit_*` methods of a visitor by calling `self.reject()`.
macro_rules! reject_scalars_and_seq {
    () => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(self.reject())
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(self.reject())
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(self.reject())
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(self.reject())
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(self.reject())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.reject())
        }
    };
}
pub(crate) use reject_scalars_and_seq;

/// A map key, borrowed from the input when it has no escapes.
pub(crate) enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }

    pub(crate) fn into_owned(self) -> String {
        match self {
            Key::Borrowed(s) => s.to_owned(),
            Key::Owned(s) => s,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON value, loosely typed; compound values are skipped.
pub(crate) enum Scalar<S = String> {
    Null,
    Str(S),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool,
    Compound,
}

/// `S`: what a string is read into (a `String`, or a [`Secret`](super::secret::Secret)
/// straight from the input, without an intermediate `String`).
impl<'de, S: From<String> + for<'a> From<&'a str>> de::Deserialize<'de> for Scalar<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<S>(std::marker::PhantomData<S>);
        impl<'de, S: From<String> + for<'a> From<&'a str>> Visitor<'de> for V<S> {
            type Value = Scalar<S>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar<S>, E> {
                Ok(Scalar::Bool)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<S>, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<S>, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<S>, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<S>, E> {
                Ok(Scalar::Str(S::from(v)))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar<S>, E> {
                Ok(Scalar::Str(S::from(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar<S>, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar<S>, E> {
                Ok(Scalar::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar<S>, D::Error> {
                d.deserialize_any(V(std::marker::PhantomData))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Scalar<S>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Scalar<S>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Names the record being read, to build error paths lazily.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) section: &'static str,
    pub(crate) key: &'a str,
    pub(crate) slot: &'a Slot,
}

impl Ctx<'_> {
    pub(crate) fn path(&self, field: &str) -> String {
        if self.key.is_empty() && field.is_empty() {
            self.section.to_owned()
        } else if field.is_empty() {
            format!("{}.{}", self.section, sanitize(self.key))
        } else if self.section.is_empty() {
            sanitize(field)
        } else if self.key.is_empty() {
            format!("{}.{}", self.section, sanitize(field))
        } else {
            format!(
                "{}.{}.{}",
                self.section,
                sanitize(self.key),
                sanitize(field)
            )
        }
    }

    pub(crate) fn wrong<E: de::Error>(&self, field: &str, expected: &'static str) -> E {
        fail(
            self.slot,
            SchemaError::wrong_type(self.path(field), expected),
        )
    }

    pub(crate) fn missing<E: de::Error>(&self, field: &'static str) -> E {
        fail(
            self.slot,
            SchemaError::MissingField {
                path: self.path(""),
                field,
            },
        )
    }

    /// A string field; `null` reads as empty (MSAL.NET and Python disagree on null vs "").
    pub(crate) fn string<E: de::Error>(&self, field: &str, v: Scalar) -> Result<String, E> {
        match v {
            Scalar::Str(s) => Ok(s),
            Scalar::Null => Ok(String::new()),
            _ => Err(self.wrong(field, "string")),
        }
    }

    /// A `home_account_id`: the id (`null` reads as empty) and the form it was written in,
    /// so that re-serialization keeps it.
    pub(crate) fn account_id<E: de::Error>(
        &self,
        field: &str,
        v: Scalar,
    ) -> Result<(String, AppAccountForm), E> {
        match v {
            Scalar::Null => Ok((String::new(), AppAccountForm::Null)),
            Scalar::Str(s) if s.is_empty() => Ok((s, AppAccountForm::Empty)),
            Scalar::Str(s) => Ok((s, AppAccountForm::default())),
            _ => Err(self.wrong(field, "string")),
        }
    }

    /// An optional string field; `null` reads as absent.
    /// A `secret` field: as [`opt_string`](Self::opt_string), read into a `Secret`.
    pub(crate) fn opt_secret<E: de::Error>(
        &self,
        field: &str,
        v: Scalar<super::secret::Secret>,
    ) -> Result<Option<super::secret::Secret>, E> {
        match v {
            Scalar::Str(s) => Ok(Some(s)),
            Scalar::Null => Ok(None),
            _ => Err(self.wrong(field, "string")),
        }
    }

    pub(crate) fn opt_string<E: de::Error>(
        &self,
        field: &str,
        v: Scalar,
    ) -> Result<Option<String>, E> {
        match v {
            Scalar::Str(s) => Ok(Some(s)),
            Scalar::Null => Ok(None),
            _ => Err(self.wrong(field, "string")),
        }
    }

    /// A timestamp: a string of Unix seconds, or (leniently) a number; `null` and `""` read
    /// as absent.
    pub(crate) fn opt_secs<E: de::Error>(&self, field: &str, v: Scalar) -> Result<Option<i64>, E> {
        let r = match v {
            Scalar::Null => Ok(None),
            Scalar::Str(s) => {
                let t = s.trim();
                if t.is_empty() {
                    Ok(None)
                } else {
                    parse_secs(t).map(Some)
                }
            }
            Scalar::Int(n) => Ok(Some(n)),
            Scalar::UInt(n) => i64::try_from(n).map(Some).map_err(|_| ()),
            Scalar::Float(f) => float_secs(f).map(Some),
            Scalar::Bool | Scalar::Compound => Err(()),
        };
        r.map_err(|()| self.wrong(field, "string of seconds"))
    }
}

/// Parses a decimal string of seconds; a fractional part (some writers emit `"123.0"`)
/// is truncated.
pub(crate) fn parse_secs(t: &str) -> Result<i64, ()> {
    if let Ok(n) = t.parse::<i64>() {
        return Ok(n);
    }
    let valid = !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+');
    if valid {
        if let Ok(f) = t.parse::<f64>() {
            return float_secs(f);
        }
    }
    Err(())
}

fn float_secs(f: f64) -> Result<i64, ()> {
    // i64 range is about ±9.2e18; stay well inside it.
    if f.is_finite() && f.abs() < 9.0e18 {
        Ok(f.trunc() as i64)
    } else {
        Err(())
    }
}

/// Serializes seconds as a JSON string without allocating.
pub(crate) struct Secs(pub(crate) i64);

impl serde::Serialize for Secs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Seed for an unknown value kept verbatim.
pub(crate) struct AnyValue;

impl<'de> DeserializeSeed<'de> for AnyValue {
    type Value = serde_json::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        de::Deserialize::deserialize(d)
    }
}
