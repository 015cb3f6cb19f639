//! MSAL "V3" unified-cache JSON ⇄ typed records; credential keys; lookups.
//!
//! A [`Partition`] is one partition blob: the sections `AccessToken`, `RefreshToken`,
//! `IdToken`, `Account` and `AppMetadata`, each an object of credential key → record,
//! plus any unknown top-level sections (kept verbatim). Pure: no I/O, no clock of its
//! own (every time-dependent call takes `now`, Unix seconds).
//!
//! # Compatibility
//!
//! Blobs are **written the MSAL.NET way** and **read leniently**:
//!
//! | topic | written | also read |
//! |---|---|---|
//! | timestamps | strings of Unix seconds | JSON numbers, `"123.0"`, `null`/`""` for optional ones |
//! | access token key | `{hid}-{env}-accesstoken-{client_id}-{realm}-{target}` lower-cased | any key (msal-node's trailing `-`, Python's); records are matched by their fields, not their keys |
//! | refresh token key | `{hid}-{env}-refreshtoken-{client_id or family_id}--` | any |
//! | target | scopes sorted (byte order), de-duplicated case-insensitively, space-separated (MSAL.NET and MSAL Python both sort) | any order, compared as a case-insensitive set |
//! | `token_type` | omitted for Bearer | any case; missing = Bearer |
//! | key id | `kid` | `kid`, `key_id` |
//! | OBO hash | `user_assertion_hash` | `user_assertion_hash`, `userAssertionHash` (msal-node) |
//! | empty `home_account_id` (app tokens, OBO without user) | as read: `null`, `""` or no field, kept per record; in a partition without one, [`AppAccountForm`] (default `""`) | `""`, `null`, missing |
//! | extended expiry | `extended_expires_on` | also the legacy `ext_expires_on` |
//! | write time in ms | `tc_written_at_ms` ([`WRITTEN_AT_MS`]) on the access and refresh tokens a [`TokenCache`](crate::TokenCache) save writes (other readers keep or drop it as an unknown field) | only when it names the record's own second |
//!
//! Known cross-SDK gaps of these choices (the interop tests pin them down):
//! * App tokens: MSAL Python looks them up with `home_account_id == null` exactly (`""` and
//!   a missing field are misses), msal-node with `=== ""` (`null` and a missing field are
//!   misses), MSAL.NET does not look at the field (it reads a missing one as `""`). No form
//!   serves all three, so:
//!   - every record keeps the form it was read with ([`AppAccountForm`]), and a token added
//!     to a partition that already has account-less records takes theirs
//!     ([`Partition::app_account_form`]): MSAL Python still finds its app tokens, and ours,
//!     after tokencache updated its blob, and so does msal-node in its blobs;
//!   - a partition without such records gets the form the caller passes to
//!     [`Partition::add_token_response_with_form`]; [`Partition::add_token_response`] uses
//!     the default, `""` (what tokencache always wrote; msal-node and MSAL.NET read it).
//!     Pass [`AppAccountForm::Null`] for new app partitions MSAL Python must read (msal-node
//!     then misses them). [`AppAccountForm::Omitted`], MSAL.NET's own form, is read only by
//!     MSAL.NET.
//! * msal-node reads only `userAssertionHash`, MSAL.NET only `user_assertion_hash`: OBO
//!   access tokens are written with both (each reader ignores the other's field).
//! * msal-node stores the cloud's preferred host (`login.windows.net`) whatever authority
//!   host was used: environments are compared as clouds ([`same_cloud`]), not strings.
//! * `refresh_on` is set only from the response's `refresh_in` (as MSAL Python and
//!   msal-node do for token endpoint responses); no `expires_in / 2` heuristic.
//!
//! Secrets are [`Secret`]s: `Debug`/`Display` print a fingerprint, never the value.
//! [`Partition::summary`] gives a secret-free JSON view for tools and logs.

mod add;
mod change;
mod de;
mod error;
mod lazy;
mod lookup;
mod records;
mod response;
mod secret;
mod section;
#[cfg(test)]
mod tests;

pub use change::PartitionChange;
pub use error::{SchemaError, MAX_BLOB_BYTES};
pub use lookup::{same_cloud, AccessTokenQuery, Ambiguous, RefreshTokenQuery};
pub use records::{
    AccessToken, Account, AppAccountForm, AppMetadata, Extra, IdToken, RefreshToken,
    AUTHORITY_TYPE_ADFS, AUTHORITY_TYPE_MSSTS, CREDENTIAL_ACCESS_TOKEN, CREDENTIAL_ID_TOKEN,
    CREDENTIAL_REFRESH_TOKEN,
};
pub use response::{decode_jwt_claims, ClientInfo, JwtClaims, TokenRequest, TokenResponse};
pub use secret::Secret;

use crate::partition::assertion_hash;
use de::{reject_scalars_and_seq, AnyValue, Ctx, Key, Slot};
use lazy::Lazy;
use lookup::{eq_ci, opt_eq, same_at_slot, split_scopes, targets_intersect};
use records::{is_bearer, SectionSeed};
use section::Section;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

/// The field in which tokencache records, on the access and refresh tokens it writes, the
/// millisecond of the write: `cached_at` and `last_modification_time` are whole seconds
/// (MSAL's format), and two replicas that write the same token within one second must
/// still be told apart when a queued change is replayed over another's
/// ([`PartitionChange::apply_to`]). A string of milliseconds since the epoch; ignored
/// unless it falls in the record's own second.
pub const WRITTEN_AT_MS: &str = "tc_written_at_ms";

/// Default number of seconds before expiry at which an access token is no longer served.
pub const DEFAULT_SKEW_SECS: i64 = 300;

/// Lifetime assumed when a response carries an access token but no `expires_in`
/// (MSAL Python's default).
pub const DEFAULT_EXPIRES_IN: i64 = 600;

/// One partition: the decoded MSAL V3 cache blob.
///
/// `Debug` shows records with redacted secrets and only the names of unknown fields.
///
/// A partition read by [`parse_deferred`](Self::parse_deferred) decodes its id tokens,
/// accounts and app metadata on first use (see there); every other way of making one
/// decodes everything at once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Partition {
    access_tokens: Section<AccessToken>,
    refresh_tokens: Section<RefreshToken>,
    id_tokens: Lazy<IdToken>,
    accounts: Lazy<Account>,
    app_metadata: Lazy<AppMetadata>,
    unknown: Extra,
}

/// What [`Partition::add_token_response`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// Home account id derived from `client_info` (or the id token's `sub`); `None` for
    /// app tokens and responses without user identity.
    pub home_account_id: Option<String>,
    /// Credential key of the stored access token.
    pub access_token_key: Option<String>,
    /// Expiry of the stored access token (Unix seconds).
    pub expires_on: Option<i64>,
}

impl Partition {
    /// An empty partition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a partition blob. Empty (or all-whitespace) input and `{}` give an empty
    /// partition; input over [`MAX_BLOB_BYTES`] is rejected before parsing. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Partition, SchemaError> {
        Self::parse_with(bytes, false)
    }

    /// Parses a partition blob as [`parse`](Self::parse) does, except that the
    /// `IdToken`, `Account` and `AppMetadata` sections are only read as JSON here (a
    /// syntax error is still an error) and decoded into records when something first
    /// asks for them: the read path of an access token (an L2 hit) never does, and
    /// they are about a quarter of a user partition. Access and refresh tokens are
    /// decoded and checked as by `parse`.
    ///
    /// A deferred section whose records turn out malformed reads as empty;
    /// [`deferred_error`](Self::deferred_error) says why, and [`to_vec`](Self::to_vec)
    /// writes it back as it was read.
    pub fn parse_deferred(bytes: &[u8]) -> Result<Partition, SchemaError> {
        Self::parse_with(bytes, true)
    }

    /// Why a section [`parse_deferred`](Self::parse_deferred) left for later could not
    /// be decoded, if one could not (decodes those not decoded yet). `None` for a
    /// partition read by [`parse`](Self::parse) or built.
    pub fn deferred_error(&self) -> Option<&SchemaError> {
        self.id_tokens
            .error()
            .or_else(|| self.accounts.error())
            .or_else(|| self.app_metadata.error())
    }

    fn parse_with(bytes: &[u8], defer: bool) -> Result<Partition, SchemaError> {
        if bytes.len() > MAX_BLOB_BYTES {
            return Err(SchemaError::TooLarge {
                size: bytes.len(),
                limit: MAX_BLOB_BYTES,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| SchemaError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim_ascii().is_empty() {
            return Ok(Partition::new());
        }
        let slot: Slot = RefCell::new(None);
        let mut d = serde_json::Deserializer::from_str(text);
        let r = PartitionSeed { slot: &slot, defer }
            .deserialize(&mut d)
            .and_then(|p| d.end().map(|()| p));
        r.map_err(|e| match slot.borrow_mut().take() {
            Some(err) => err.at(&e),
            None => SchemaError::from_json(&e),
        })
    }

    /// Serializes to compact UTF-8 JSON, MSAL.NET style: all five sections (possibly
    /// empty), then unknown sections verbatim.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.approx_json_len());
        // Serializing into a Vec cannot fail: every map key is a string.
        if serde_json::to_writer(&mut out, self).is_err() {
            out.clear();
            out.extend_from_slice(b"{}");
        }
        out
    }

    fn approx_json_len(&self) -> usize {
        let at: usize = self
            .access_tokens
            .iter()
            .map(|(k, v)| k.len() + v.secret.len() + v.target.len() + 400)
            .sum();
        let rt: usize = self
            .refresh_tokens
            .iter()
            .map(|(k, v)| k.len() + v.secret.len() + 250)
            .sum();
        let idt: usize = self
            .id_tokens
            .iter()
            .map(|(k, v)| k.len() + v.secret.len() + 200)
            .sum();
        128 + at + rt + idt + (self.accounts.len() + self.app_metadata.len()) * 300
    }

    /// An estimate of the heap bytes this decoded partition holds (for L1 accounting).
    pub fn approx_heap_bytes(&self) -> usize {
        fn extra(e: &Extra) -> usize {
            e.iter().map(|(k, v)| k.len() + 48 + value_bytes(v)).sum()
        }
        fn value_bytes(v: &Value) -> usize {
            match v {
                Value::String(s) => s.len(),
                Value::Array(a) => a.iter().map(|x| 32 + value_bytes(x)).sum(),
                Value::Object(m) => m.iter().map(|(k, x)| k.len() + 48 + value_bytes(x)).sum(),
                _ => 0,
            }
        }
        const NODE: usize = 64; // B-tree node share per entry
        let at: usize = self
            .access_tokens
            .iter()
            .map(|(k, v)| {
                NODE + k.len()
                    + std::mem::size_of::<AccessToken>()
                    + v.home_account_id.len()
                    + v.environment.len()
                    + v.client_id.len()
                    + v.credential_type.len()
                    + v.realm.len()
                    + v.target.len()
                    + v.secret.len()
                    + v.token_type.as_ref().map_or(0, String::len)
                    + v.key_id.as_ref().map_or(0, String::len)
                    + v.user_assertion_hash.as_ref().map_or(0, String::len)
                    + extra(&v.extra)
            })
            .sum();
        let rt: usize = self
            .refresh_tokens
            .iter()
            .map(|(k, v)| {
                NODE + k.len()
                    + std::mem::size_of::<RefreshToken>()
                    + v.home_account_id.len()
                    + v.environment.len()
                    + v.client_id.len()
                    + v.secret.len()
                    + v.family_id.as_ref().map_or(0, String::len)
                    + v.target.as_ref().map_or(0, String::len)
                    + v.user_assertion_hash.as_ref().map_or(0, String::len)
                    + extra(&v.extra)
            })
            .sum();
        let idt: usize = self
            .id_tokens
            .iter()
            .map(|(k, v)| {
                NODE + k.len()
                    + std::mem::size_of::<IdToken>()
                    + v.home_account_id.len()
                    + v.environment.len()
                    + v.client_id.len()
                    + v.realm.len()
                    + v.secret.len()
                    + extra(&v.extra)
            })
            .sum();
        let acc: usize = self
            .accounts
            .iter()
            .map(|(k, v)| {
                NODE + k.len()
                    + std::mem::size_of::<Account>()
                    + v.home_account_id.len()
                    + v.environment.len()
                    + v.realm.len()
                    + v.local_account_id.len()
                    + v.username.len()
                    + v.authority_type.len()
                    + v.name.as_ref().map_or(0, String::len)
                    + v.client_info.as_ref().map_or(0, String::len)
                    + extra(&v.extra)
            })
            .sum();
        let am: usize = self
            .app_metadata
            .iter()
            .map(|(k, v)| {
                NODE + k.len()
                    + std::mem::size_of::<AppMetadata>()
                    + v.client_id.len()
                    + v.environment.len()
                    + v.family_id.as_ref().map_or(0, String::len)
                    + extra(&v.extra)
            })
            .sum();
        std::mem::size_of::<Partition>() + at + rt + idt + acc + am + extra(&self.unknown)
    }

    /// Whether any access, refresh or id token is left.
    pub fn has_credentials(&self) -> bool {
        !(self.access_tokens.is_empty()
            && self.refresh_tokens.is_empty()
            && self.id_tokens.is_empty())
    }

    /// Whether the partition holds no record and no unknown section.
    pub fn is_empty(&self) -> bool {
        !self.has_credentials()
            && self.accounts.is_empty()
            && self.app_metadata.is_empty()
            && self.unknown.is_empty()
    }

    /// Number of records in all five sections.
    pub fn len(&self) -> usize {
        self.access_tokens.len()
            + self.refresh_tokens.len()
            + self.id_tokens.len()
            + self.accounts.len()
            + self.app_metadata.len()
    }

    /// The access tokens.
    pub fn access_tokens(&self) -> impl Iterator<Item = &AccessToken> {
        self.access_tokens.values()
    }

    /// The refresh tokens.
    pub fn refresh_tokens(&self) -> impl Iterator<Item = &RefreshToken> {
        self.refresh_tokens.values()
    }

    /// The id tokens.
    pub fn id_tokens(&self) -> impl Iterator<Item = &IdToken> {
        self.id_tokens.values()
    }

    /// The accounts.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// The app metadata records.
    pub fn app_metadata(&self) -> impl Iterator<Item = &AppMetadata> {
        self.app_metadata.values()
    }

    /// Access tokens with the credential keys they are stored under.
    pub fn access_token_entries(&self) -> impl Iterator<Item = (&str, &AccessToken)> {
        self.access_tokens.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Refresh tokens with the credential keys they are stored under.
    pub fn refresh_token_entries(&self) -> impl Iterator<Item = (&str, &RefreshToken)> {
        self.refresh_tokens.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Unknown top-level sections, kept verbatim.
    pub fn unknown_sections(&self) -> &Map<String, Value> {
        &self.unknown
    }

    /// Stores an access token under its [`AccessToken::key`], replacing a record with the
    /// same key; returns the key. (No overlap removal: see [`Self::add_token_response`].)
    pub fn insert_access_token(&mut self, at: AccessToken) -> String {
        let k = at.key();
        self.access_tokens.insert(k.clone(), at);
        k
    }

    /// Stores a refresh token under its [`RefreshToken::key`]; returns the key.
    pub fn insert_refresh_token(&mut self, rt: RefreshToken) -> String {
        let k = rt.key();
        self.refresh_tokens.insert(k.clone(), rt);
        k
    }

    /// Stores an id token under its [`IdToken::key`]; returns the key.
    pub fn insert_id_token(&mut self, idt: IdToken) -> String {
        let k = idt.key();
        self.id_tokens.insert(k.clone(), idt);
        k
    }

    /// Stores an account under its [`Account::key`]; returns the key.
    pub fn insert_account(&mut self, a: Account) -> String {
        let k = a.key();
        self.accounts.insert(k.clone(), a);
        k
    }

    /// Stores app metadata under its [`AppMetadata::key`]; returns the key.
    pub fn insert_app_metadata(&mut self, m: AppMetadata) -> String {
        let k = m.key();
        self.app_metadata.insert(k.clone(), m);
        k
    }

    /// The latest `expires_on` of any access token (an app or OBO partition's natural
    /// deadline).
    pub fn latest_access_token_expiry(&self) -> Option<i64> {
        self.access_tokens.values().map(|t| t.expires_on).max()
    }

    /// The latest `cached_at` of access tokens / `last_modification_time` of refresh
    /// tokens.
    pub fn last_cached_at(&self) -> Option<i64> {
        let at = self.access_tokens.values().map(|t| t.cached_at);
        let rt = self
            .refresh_tokens
            .values()
            .filter_map(|t| t.last_modification_time);
        at.chain(rt).max()
    }

    /// A secret-free JSON view: `{"records": [...], "unknown_sections": [...]}`; each
    /// record has its section, kind, key and fields, with secrets replaced by
    /// [`Secret::fingerprint`] and unknown fields listed by name only.
    pub fn summary(&self) -> Value {
        let names = |e: &Extra| Value::from(e.keys().cloned().collect::<Vec<_>>());
        let mut records = Vec::with_capacity(self.len());
        for (k, t) in &self.access_tokens {
            records.push(json!({
                "section": "AccessToken",
                "kind": "access_token",
                "key": k,
                "home_account_id": t.home_account_id,
                "environment": t.environment,
                "client_id": t.client_id,
                "realm": t.realm,
                "target": t.target,
                "token_type": t.token_type.as_deref().unwrap_or("Bearer"),
                "key_id": t.key_id,
                "user_assertion_hash": t.user_assertion_hash,
                "cached_at": t.cached_at,
                "expires_on": t.expires_on,
                "extended_expires_on": t.extended_expires_on,
                "refresh_on": t.refresh_on,
                "secret": t.secret.fingerprint(),
                "secret_len": t.secret.len(),
                "extra_fields": names(&t.extra),
            }));
        }
        for (k, t) in &self.refresh_tokens {
            records.push(json!({
                "section": "RefreshToken",
                "kind": "refresh_token",
                "key": k,
                "home_account_id": t.home_account_id,
                "environment": t.environment,
                "client_id": t.client_id,
                "family_id": t.family_id,
                "target": t.target,
                "user_assertion_hash": t.user_assertion_hash,
                "last_modification_time": t.last_modification_time,
                "secret": t.secret.fingerprint(),
                "secret_len": t.secret.len(),
                "extra_fields": names(&t.extra),
            }));
        }
        for (k, t) in self.id_tokens.iter() {
            records.push(json!({
                "section": "IdToken",
                "kind": "id_token",
                "key": k,
                "home_account_id": t.home_account_id,
                "environment": t.environment,
                "client_id": t.client_id,
                "realm": t.realm,
                "secret": t.secret.fingerprint(),
                "secret_len": t.secret.len(),
                "extra_fields": names(&t.extra),
            }));
        }
        for (k, a) in self.accounts.iter() {
            records.push(json!({
                "section": "Account",
                "kind": "account",
                "key": k,
                "home_account_id": a.home_account_id,
                "environment": a.environment,
                "realm": a.realm,
                "local_account_id": a.local_account_id,
                "username": a.username,
                "authority_type": a.authority_type,
                "extra_fields": names(&a.extra),
            }));
        }
        for (k, m) in self.app_metadata.iter() {
            records.push(json!({
                "section": "AppMetadata",
                "kind": "app_metadata",
                "key": k,
                "client_id": m.client_id,
                "environment": m.environment,
                "family_id": m.family_id,
                "extra_fields": names(&m.extra),
            }));
        }
        json!({
            "records": records,
            "unknown_sections": names(&self.unknown),
        })
    }
}

impl Serialize for Partition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("AccessToken", &self.access_tokens)?;
        m.serialize_entry("RefreshToken", &self.refresh_tokens)?;
        m.serialize_entry("IdToken", &self.id_tokens)?;
        m.serialize_entry("Account", &self.accounts)?;
        m.serialize_entry("AppMetadata", &self.app_metadata)?;
        for (k, v) in self.unknown.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

struct PartitionSeed<'a> {
    slot: &'a Slot,
    /// Keep the id token, account and app metadata sections as text (see
    /// [`Partition::parse_deferred`]).
    defer: bool,
}

impl PartitionSeed<'_> {
    fn reject<E: serde::de::Error>(&self) -> E {
        Ctx {
            section: "(root)",
            key: "",
            slot: self.slot,
        }
        .wrong("", "object of sections")
    }
    fn section<'de, A: MapAccess<'de>, T: records::Record>(
        &self,
        map: &mut A,
    ) -> Result<Section<T>, A::Error> {
        map.next_value_seed(SectionSeed::<T> {
            slot: self.slot,
            _t: PhantomData,
        })
    }
    /// A section that may wait: its text when deferring (an object or `null`; anything
    /// else is decoded now, for the error the eager parse gives), else its records.
    fn lazy_section<'de, A: MapAccess<'de>, T: records::Record>(
        &self,
        map: &mut A,
    ) -> Result<Lazy<T>, A::Error> {
        if !self.defer {
            return self.section(map).map(Lazy::Ready);
        }
        let json: Box<RawValue> = map.next_value()?;
        let object_or_null = matches!(json.get().as_bytes().first(), Some(b'{' | b'n'));
        let lazy = Lazy::deferred(json);
        if !object_or_null {
            if let Some(e) = lazy.error() {
                return Err(de::fail(self.slot, e.clone()));
            }
        }
        Ok(lazy)
    }
}

impl<'de> DeserializeSeed<'de> for PartitionSeed<'_> {
    type Value = Partition;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Partition, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PartitionSeed<'_> {
    type Value = Partition;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an MSAL V3 cache object")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Partition, E> {
        Err(self.reject())
    }
    reject_scalars_and_seq!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Partition, A::Error> {
        let mut p = Partition::new();
        while let Some(k) = map.next_key::<Key<'de>>()? {
            match k.as_str() {
                "AccessToken" => p.access_tokens = self.section(&mut map)?,
                "RefreshToken" => p.refresh_tokens = self.section(&mut map)?,
                "IdToken" => p.id_tokens = self.lazy_section(&mut map)?,
                "Account" => p.accounts = self.lazy_section(&mut map)?,
                "AppMetadata" => p.app_metadata = self.lazy_section(&mut map)?,
                _ => {
                    let v = map.next_value_seed(AnyValue)?;
                    p.unknown.insert(k.into_owned(), v);
                }
            }
        }
        Ok(p)
    }
}
