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

mod change;
mod de;
mod error;
mod lazy;
mod records;
mod response;
mod secret;
mod section;
#[cfg(test)]
mod tests;

pub use change::PartitionChange;
pub use error::{SchemaError, MAX_BLOB_BYTES};
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

/// What to look for in [`Partition::find_access_token`].
#[derive(Debug, Clone, Copy)]
pub struct AccessTokenQuery<'a> {
    /// The client id.
    pub client_id: &'a str,
    /// Requested scopes: all must be in the stored target (case-insensitive). Empty
    /// matches any target.
    pub scopes: &'a [&'a str],
    /// Tenant; `None` = any.
    pub realm: Option<&'a str>,
    /// The user; `None` = an app token (stored `home_account_id` empty or null).
    pub home_account_id: Option<&'a str>,
    /// Authority host; `None` = any.
    pub environment: Option<&'a str>,
    /// Token type; `None` = Bearer (case-insensitive; a missing `token_type` is Bearer).
    pub token_type: Option<&'a str>,
    /// Key id of a key-bound token; `None` matches only tokens without one.
    pub key_id: Option<&'a str>,
    /// OBO assertion hash; `None` matches only tokens without one.
    pub user_assertion_hash: Option<&'a str>,
    /// A token expiring within this many seconds of `now` is not returned.
    pub skew_secs: i64,
}

impl<'a> AccessTokenQuery<'a> {
    /// A query for an app token of `client_id` with `scopes`, any realm and environment,
    /// Bearer, skew [`DEFAULT_SKEW_SECS`].
    pub fn new(client_id: &'a str, scopes: &'a [&'a str]) -> Self {
        AccessTokenQuery {
            client_id,
            scopes,
            realm: None,
            home_account_id: None,
            environment: None,
            token_type: None,
            key_id: None,
            user_assertion_hash: None,
            skew_secs: DEFAULT_SKEW_SECS,
        }
    }
}

/// Which part of the authority a lookup left open matches tokens of several values
/// (see [`Partition::find_access_token_in_one_authority`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguous {
    /// Tokens of several tenants match.
    Tenant,
    /// Tokens of several clouds match.
    Cloud,
}

/// What to look for in [`Partition::find_refresh_token`].
#[derive(Debug, Clone, Copy)]
pub struct RefreshTokenQuery<'a> {
    /// The client id.
    pub client_id: &'a str,
    /// The user.
    pub home_account_id: &'a str,
    /// Authority host; `None` = any.
    pub environment: Option<&'a str>,
    /// `Some("1")`: also accept a family (FOCI) token of that family from any client.
    pub family_id: Option<&'a str>,
    /// OBO hash / session key; `None` matches only tokens without one.
    pub user_assertion_hash: Option<&'a str>,
}

impl<'a> RefreshTokenQuery<'a> {
    /// A query for the refresh token of `client_id` for `home_account_id`, any
    /// environment, no family, no assertion hash.
    pub fn new(client_id: &'a str, home_account_id: &'a str) -> Self {
        RefreshTokenQuery {
            client_id,
            home_account_id,
            environment: None,
            family_id: None,
            user_assertion_hash: None,
        }
    }
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

/// Equal ignoring ASCII case; the usual case, bytes equal as stored, first (a plain
/// comparison is several times cheaper than a case-folding one).
fn eq_ci(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a == b || a.eq_ignore_ascii_case(b))
}

fn split_scopes<'s>(scopes: &'s [&'s str]) -> impl Iterator<Item = &'s str> + 's {
    scopes.iter().flat_map(|s| s.split_ascii_whitespace())
}

fn target_has(target: &str, scope: &str) -> bool {
    match target.len().cmp(&scope.len()) {
        std::cmp::Ordering::Less => false,
        // The common single-scope target (`api://x/.default`), no split needed.
        std::cmp::Ordering::Equal => eq_ci(target, scope),
        std::cmp::Ordering::Greater => target.split_ascii_whitespace().any(|t| eq_ci(t, scope)),
    }
}

/// One bit of a scope set's mask: a hash of the scope's length and last 16 bytes,
/// lower-cased (scopes compare case-insensitively), picks one of 64 bits. Scopes of one
/// resource share their start (`https://graph.microsoft.com/`), not their end.
fn scope_bit(scope: &str) -> u64 {
    let b = scope.as_bytes();
    let mut h: u32 = 0x811c_9dc5 ^ (b.len() as u32); // FNV-1a
    for b in &b[b.len().saturating_sub(16)..] {
        h = (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0193);
    }
    1u64 << (h >> 26)
}

/// The mask of a stored target, computed once per cached partition (the access-token
/// section keeps it): every scope's bit.
fn target_mask(at: &AccessToken) -> u64 {
    at.target
        .split_ascii_whitespace()
        .fold(0, |m, s| m | scope_bit(s))
}

/// OpenID Connect scopes that every user response echoes.
const OIDC_SCOPES: [&str; 3] = ["openid", "profile", "offline_access"];

fn is_oidc_scope(s: &str) -> bool {
    OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(s))
}

/// Whether a new target overlaps an old one, as msal-common decides: the OIDC scopes
/// (`openid profile offline_access`) do not count, unless the new target has nothing
/// else.
fn targets_intersect(old: &str, new: &str) -> bool {
    let only_oidc = new.split_ascii_whitespace().all(is_oidc_scope);
    new.split_ascii_whitespace()
        .filter(|s| only_oidc || !is_oidc_scope(s))
        .any(|s| target_has(old, s))
}

/// Access tokens that need a query part we do not model (MSAL's extended cache keys,
/// e.g. FMI paths) are never served to a plain query.
fn has_extended_key(at: &AccessToken) -> bool {
    let nonempty = |k: &str| match at.extra.get(k) {
        None | Some(Value::Null) => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    at.credential_type.eq_ignore_ascii_case("atext")
        || nonempty("ext_cache_key")
        || nonempty("ext")
        || nonempty("additionalCacheKeyComponents")
}

fn opt_eq(stored: Option<&str>, wanted: Option<&str>) -> bool {
    match (stored, wanted) {
        (None, None) => true,
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Same (user, environment, client, realm, token type, key id, OBO hash): the slot in
/// which a new access token replaces overlapping ones.
fn same_at_slot(a: &AccessToken, b: &AccessToken) -> bool {
    eq_ci(&a.home_account_id, &b.home_account_id)
        && same_cloud(&a.environment, &b.environment)
        && eq_ci(&a.client_id, &b.client_id)
        && eq_ci(&a.realm, &b.realm)
        && token_type_eq(a.token_type.as_deref(), b.token_type.as_deref())
        && opt_eq(a.key_id.as_deref(), b.key_id.as_deref())
        && opt_eq(
            a.user_assertion_hash.as_deref(),
            b.user_assertion_hash.as_deref(),
        )
}

fn token_type_eq(a: Option<&str>, b: Option<&str>) -> bool {
    match (is_bearer(a), is_bearer(b)) {
        (true, true) => true,
        (false, false) => eq_ci(a.unwrap_or(""), b.unwrap_or("")),
        _ => false,
    }
}

impl AccessTokenQuery<'_> {
    /// The bits every matching token's [`target_mask`] has: a token whose mask lacks one
    /// lacks a scope, and is passed over without comparing strings (the exact test,
    /// [`matches`](Self::matches), decides for the others).
    fn scope_mask(&self) -> u64 {
        split_scopes(self.scopes).fold(0, |m, s| m | scope_bit(s))
    }

    /// The most selective test first: in a user partition every access token has the
    /// same client, account and realm, and only the target tells them apart.
    fn matches(&self, at: &AccessToken, any_account: bool) -> bool {
        split_scopes(self.scopes).all(|s| target_has(&at.target, s))
            && eq_ci(&at.client_id, self.client_id)
            && match self.home_account_id {
                _ if any_account => true,
                Some(h) => eq_ci(&at.home_account_id, h),
                // An OBO lookup is by assertion hash, whatever account the token names
                // (MSAL.NET and msal-node ignore it there); otherwise: app tokens only.
                None => self.user_assertion_hash.is_some() || at.home_account_id.is_empty(),
            }
            && self.realm.is_none_or(|r| eq_ci(&at.realm, r))
            && self
                .environment
                .is_none_or(|e| same_cloud(&at.environment, e))
            && token_type_eq(at.token_type.as_deref(), self.token_type)
            && opt_eq(at.key_id.as_deref(), self.key_id)
            && opt_eq(at.user_assertion_hash.as_deref(), self.user_assertion_hash)
            && !has_extended_key(at)
    }
}

/// Host names of one cloud that MSAL treats as the same environment (msal-common's
/// built-in instance metadata): msal-node stores the preferred cache host
/// (`login.windows.net`) whatever authority host was used.
const CLOUD_ALIASES: [&[&str]; 3] = [
    &[
        "login.microsoftonline.com",
        "login.windows.net",
        "login.microsoft.com",
        "sts.windows.net",
    ],
    &["login.partner.microsoftonline.cn", "login.chinacloudapi.cn"],
    &["login.microsoftonline.us", "login.usgovcloudapi.net"],
];

/// Whether two environments are the same cloud: equal ignoring case, or aliases.
pub fn same_cloud(a: &str, b: &str) -> bool {
    eq_ci(a, b)
        || CLOUD_ALIASES
            .iter()
            .any(|group| group.iter().any(|h| eq_ci(h, a)) && group.iter().any(|h| eq_ci(h, b)))
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

    /// The access tokens that may have every scope `q` asks for: those whose scope
    /// mask has the query's bits (the masks are computed once per partition).
    fn candidates<'s>(&'s self, q: &AccessTokenQuery<'_>) -> impl Iterator<Item = &'s AccessToken> {
        let want = q.scope_mask();
        self.access_tokens
            .values_with_summary(target_mask)
            .filter(move |(_, mask)| mask & want == want)
            .map(|(at, _)| at)
    }

    /// Removes access tokens that expired at or before `now`; returns how many.
    pub fn remove_expired_access_tokens(&mut self, now: i64) -> usize {
        let before = self.access_tokens.len();
        self.access_tokens.retain(|_, at| at.expires_on > now);
        before - self.access_tokens.len()
    }

    /// The matching access token that is still valid `skew_secs` after `now`; among
    /// several, the one expiring last. A token whose `refresh_on` has passed is still
    /// returned (see [`AccessToken::needs_refresh`]).
    pub fn find_access_token(&self, q: &AccessTokenQuery<'_>, now: i64) -> Option<&AccessToken> {
        self.candidates(q)
            .filter(|at| !at.is_expired(now, q.skew_secs) && q.matches(at, false))
            .max_by_key(|at| at.expires_on)
    }

    /// Like [`find_access_token`](Self::find_access_token) (`any_account`: like
    /// [`find_access_token_for_any_account`](Self::find_access_token_for_any_account)),
    /// but where the query leaves the realm open and `one_tenant` is set (or the
    /// environment open and `one_cloud`), the matching tokens must all be of one tenant
    /// (one cloud): the tenant and cloud they were saved for. When they span several, no
    /// guess is made: `Err` says which is ambiguous.
    pub fn find_access_token_in_one_authority(
        &self,
        q: &AccessTokenQuery<'_>,
        now: i64,
        any_account: bool,
        one_tenant: bool,
        one_cloud: bool,
    ) -> Result<Option<&AccessToken>, Ambiguous> {
        let mut best: Option<&AccessToken> = None;
        let mut first: Option<&AccessToken> = None;
        for at in self.candidates(q) {
            if at.is_expired(now, q.skew_secs) || !q.matches(at, any_account) {
                continue;
            }
            match first {
                None => first = Some(at),
                Some(f) => {
                    if one_tenant && q.realm.is_none() && !eq_ci(&f.realm, &at.realm) {
                        return Err(Ambiguous::Tenant);
                    }
                    if one_cloud
                        && q.environment.is_none()
                        && !same_cloud(&f.environment, &at.environment)
                    {
                        return Err(Ambiguous::Cloud);
                    }
                }
            }
            if best.is_none_or(|b| at.expires_on > b.expires_on) {
                best = Some(at);
            }
        }
        Ok(best)
    }

    /// Like [`find_access_token`](Self::find_access_token), but `q.home_account_id` is
    /// ignored: any account's token matches. For partitions that hold one user's tokens
    /// under a key the caller chose (long-running OBO sessions).
    pub fn find_access_token_for_any_account(
        &self,
        q: &AccessTokenQuery<'_>,
        now: i64,
    ) -> Option<&AccessToken> {
        self.candidates(q)
            .filter(|at| !at.is_expired(now, q.skew_secs) && q.matches(at, true))
            .max_by_key(|at| at.expires_on)
    }

    /// The refresh token of the client for the user; with `family_id`, a family token of
    /// another client is accepted when the client's own is absent.
    pub fn find_refresh_token(&self, q: &RefreshTokenQuery<'_>) -> Option<&RefreshToken> {
        let base = |rt: &&RefreshToken| {
            eq_ci(&rt.home_account_id, q.home_account_id)
                && q.environment.is_none_or(|e| same_cloud(&rt.environment, e))
                && opt_eq(rt.user_assertion_hash.as_deref(), q.user_assertion_hash)
        };
        let own = self
            .refresh_tokens
            .values()
            .filter(base)
            .filter(|rt| eq_ci(&rt.client_id, q.client_id))
            .max_by_key(|rt| rt.last_modification_time);
        own.or_else(|| {
            let fam = q.family_id.filter(|f| !f.is_empty())?;
            self.refresh_tokens
                .values()
                .filter(base)
                .filter(|rt| rt.family_id.as_deref() == Some(fam))
                .max_by_key(|rt| rt.last_modification_time)
        })
    }

    /// The account record of a home account id (the first, in key order, if the user has
    /// several realms or environments).
    pub fn find_account(&self, home_account_id: &str) -> Option<&Account> {
        self.accounts
            .values()
            .find(|a| eq_ci(&a.home_account_id, home_account_id))
    }

    /// The id token of the client for the user; with `realm`, only that tenant's.
    pub fn find_id_token(
        &self,
        client_id: &str,
        home_account_id: &str,
        realm: Option<&str>,
    ) -> Option<&IdToken> {
        self.id_tokens.values().find(|t| {
            eq_ci(&t.client_id, client_id)
                && eq_ci(&t.home_account_id, home_account_id)
                && realm.is_none_or(|r| eq_ci(&t.realm, r))
        })
    }

    /// Stores a token response as MSAL does; like
    /// [`add_token_response_with_form`](Self::add_token_response_with_form) with the default
    /// [`AppAccountForm::Empty`] for partitions that have no account-less record yet.
    pub fn add_token_response(
        &mut self,
        req: &TokenRequest<'_>,
        resp: &TokenResponse,
        now: i64,
    ) -> Result<Added, SchemaError> {
        self.add_token_response_with_form(req, resp, now, AppAccountForm::default())
    }

    /// The form of `home_account_id` the partition's account-less records have (see
    /// [`AppAccountForm`]): that of the most recently cached access token with an empty
    /// `home_account_id`, else of the first such refresh token, id token or account (key
    /// order); `None` when every record names an account (or there is none).
    pub fn app_account_form(&self) -> Option<AppAccountForm> {
        let at = self
            .access_tokens
            .values()
            .filter(|t| t.home_account_id.is_empty())
            .max_by_key(|t| t.cached_at)
            .map(|t| t.home_account_id_form);
        at.or_else(|| {
            let rt = self.refresh_tokens.values();
            let rt = rt.filter(|t| t.home_account_id.is_empty());
            rt.map(|t| t.home_account_id_form).next()
        })
        .or_else(|| {
            let idt = self.id_tokens.values();
            let idt = idt.filter(|t| t.home_account_id.is_empty());
            idt.map(|t| t.home_account_id_form).next()
        })
        .or_else(|| {
            let acc = self.accounts.values();
            let acc = acc.filter(|a| a.home_account_id.is_empty());
            acc.map(|a| a.home_account_id_form).next()
        })
    }

    /// Stores a token response as MSAL does:
    ///
    /// * home account id: `uid.utid` from `client_info`, else the id token's `sub`
    ///   (MSAL Python), else none (app token, or OBO without user identity: stored empty, in
    ///   the partition's own [`AppAccountForm`] — [`app_account_form`](Self::app_account_form),
    ///   so that an update keeps the form of the SDK that wrote the blob — or, when the
    ///   partition has none yet, in `new_form`);
    /// * realm: the id token's `tid`, else the request's realm (MSAL.NET);
    /// * access token: target = the response's `scope` echo, else the requested scopes
    ///   (sorted); `expires_on = now + expires_in` (default [`DEFAULT_EXPIRES_IN`]),
    ///   `extended_expires_on = now + ext_expires_in` (else `expires_on`),
    ///   `refresh_on = now + refresh_in` only when the response has `refresh_in`; existing
    ///   tokens of the same user, environment, client, realm, token type, key id and
    ///   assertion hash whose target intersects the new one are removed first;
    /// * refresh token: replaces the previous one of the user for this client (or of the
    ///   same family); `family_id` from `foci`; `last_modification_time = now`;
    /// * id token, account, app metadata (user responses only): upserted, never
    ///   duplicated; unknown fields of a replaced account or app metadata are kept.
    ///
    /// Errors: a bad id token or `client_info`, or a response with no token at all.
    pub fn add_token_response_with_form(
        &mut self,
        req: &TokenRequest<'_>,
        resp: &TokenResponse,
        now: i64,
        new_form: AppAccountForm,
    ) -> Result<Added, SchemaError> {
        self.add_token_response_inner(req, resp, now, new_form, None)
    }

    /// [`add_token_response_with_form`](Self::add_token_response_with_form) at `now_ms`
    /// (milliseconds since the epoch): the records' times are its second, and the access
    /// and refresh tokens also carry the millisecond ([`WRITTEN_AT_MS`]), so that a
    /// replay orders two writes of the same second.
    pub fn add_token_response_written_at(
        &mut self,
        req: &TokenRequest<'_>,
        resp: &TokenResponse,
        now_ms: i64,
        new_form: AppAccountForm,
    ) -> Result<Added, SchemaError> {
        let now = now_ms.div_euclid(1000);
        self.add_token_response_inner(req, resp, now, new_form, Some(now_ms))
    }

    fn add_token_response_inner(
        &mut self,
        req: &TokenRequest<'_>,
        resp: &TokenResponse,
        now: i64,
        new_form: AppAccountForm,
        written_ms: Option<i64>,
    ) -> Result<Added, SchemaError> {
        if resp.access_token.is_none() && resp.refresh_token.is_none() && resp.id_token.is_none() {
            return Err(SchemaError::MissingField {
                path: "token_response".to_owned(),
                field: "access_token",
            });
        }
        let claims = match &resp.id_token {
            Some(t) => Some(decode_jwt_claims(t.expose())?),
            None => None,
        };
        let client_info = match resp.client_info.as_deref().map(str::trim) {
            Some(raw) if !raw.is_empty() => Some(ClientInfo::decode(raw)?),
            _ => None,
        };
        let hid: Option<String> = client_info
            .as_ref()
            .and_then(ClientInfo::home_account_id)
            .or_else(|| claims.as_ref().and_then(|c| c.sub.clone()));
        let hid_str = hid.clone().unwrap_or_default();
        let env = req.environment.to_lowercase();
        let realm = claims
            .as_ref()
            .and_then(|c| c.tid.clone())
            .unwrap_or_else(|| req.realm.to_owned());
        let uah = req.user_assertion.map(assertion_hash);
        let target = normalize_target(resp.scope.as_deref(), req.scopes);
        // Only an empty id has a form; a non-empty one has the default, as when parsed.
        let form = if hid_str.is_empty() {
            self.app_account_form().unwrap_or(new_form)
        } else {
            AppAccountForm::default()
        };

        let mut added = Added {
            home_account_id: hid.clone(),
            access_token_key: None,
            expires_on: None,
        };

        if let Some(secret) = &resp.access_token {
            let expires_in = resp
                .expires_in
                .or_else(|| absolute_expiry(resp).map(|e| e.saturating_sub(now)))
                .unwrap_or(DEFAULT_EXPIRES_IN)
                .max(0);
            let expires_on = now.saturating_add(expires_in);
            let ext = resp
                .ext_expires_in
                .map_or(expires_on, |e| now.saturating_add(e.max(0)));
            let at = AccessToken {
                home_account_id: hid_str.clone(),
                home_account_id_form: form,
                environment: env.clone(),
                client_id: req.client_id.to_owned(),
                credential_type: CREDENTIAL_ACCESS_TOKEN.to_owned(),
                realm: realm.clone(),
                target: target.clone(),
                secret: secret.clone(),
                cached_at: now,
                expires_on,
                extended_expires_on: Some(ext),
                refresh_on: resp.refresh_in.map(|r| now.saturating_add(r.max(0))),
                token_type: resp.token_type.clone().filter(|t| !is_bearer(Some(t))),
                key_id: None,
                user_assertion_hash: uah.clone(),
                written_at_ms: written_ms,
                extra: Extra::default(),
            };
            self.access_tokens.retain(|_, old| {
                !(same_at_slot(old, &at) && targets_intersect(&old.target, &at.target))
            });
            added.access_token_key = Some(self.insert_access_token(at));
            added.expires_on = Some(expires_on);
        }

        if let Some(secret) = &resp.refresh_token {
            let family_id = resp.foci.clone().filter(|f| !f.trim().is_empty());
            self.refresh_tokens.retain(|_, old| {
                let same_user = eq_ci(&old.home_account_id, &hid_str)
                    && same_cloud(&old.environment, &env)
                    && opt_eq(old.user_assertion_hash.as_deref(), uah.as_deref());
                let same_slot = eq_ci(&old.client_id, req.client_id)
                    || (family_id.is_some() && old.family_id == family_id);
                !(same_user && same_slot)
            });
            self.insert_refresh_token(RefreshToken {
                home_account_id: hid_str.clone(),
                home_account_id_form: form,
                environment: env.clone(),
                client_id: req.client_id.to_owned(),
                secret: secret.clone(),
                family_id,
                target: Some(target.clone()),
                user_assertion_hash: uah.clone(),
                last_modification_time: Some(now),
                written_at_ms: written_ms,
                extra: Extra::default(),
            });
        }

        if let Some(secret) = &resp.id_token {
            self.id_tokens.retain(|_, old| {
                !(eq_ci(&old.home_account_id, &hid_str)
                    && same_cloud(&old.environment, &env)
                    && eq_ci(&old.client_id, req.client_id)
                    && eq_ci(&old.realm, &realm))
            });
            self.insert_id_token(IdToken {
                home_account_id: hid_str.clone(),
                home_account_id_form: form,
                environment: env.clone(),
                client_id: req.client_id.to_owned(),
                realm: realm.clone(),
                secret: secret.clone(),
                extra: Extra::default(),
            });
        }

        if hid.is_some() {
            self.upsert_account(
                &hid_str,
                &env,
                &realm,
                claims.as_ref(),
                client_info.as_ref(),
                resp,
            );
            let mut meta = AppMetadata {
                client_id: req.client_id.to_owned(),
                environment: env.clone(),
                family_id: resp.foci.clone(),
                extra: Extra::default(),
            };
            let old: Vec<String> = self
                .app_metadata
                .iter()
                .filter(|(_, m)| {
                    eq_ci(&m.client_id, req.client_id) && same_cloud(&m.environment, &env)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in old {
                if let Some(m) = self.app_metadata.remove(&k) {
                    meta.extra = m.extra;
                }
            }
            self.insert_app_metadata(meta);
        }
        Ok(added)
    }

    fn upsert_account(
        &mut self,
        hid: &str,
        env: &str,
        realm: &str,
        claims: Option<&JwtClaims>,
        client_info: Option<&ClientInfo>,
        resp: &TokenResponse,
    ) {
        let local = claims
            .and_then(|c| c.oid.clone().or_else(|| c.sub.clone()))
            .or_else(|| client_info.and_then(|c| c.uid.clone()));
        let mut acc = Account {
            home_account_id: hid.to_owned(),
            home_account_id_form: AppAccountForm::default(),
            environment: env.to_owned(),
            realm: realm.to_owned(),
            local_account_id: local.unwrap_or_default(),
            username: claims
                .and_then(JwtClaims::username)
                .unwrap_or_default()
                .to_owned(),
            authority_type: if eq_ci(realm, "adfs") {
                AUTHORITY_TYPE_ADFS
            } else {
                AUTHORITY_TYPE_MSSTS
            }
            .to_owned(),
            name: claims.and_then(|c| c.name.clone()),
            client_info: resp.client_info.clone(),
            extra: Extra::default(),
        };
        let old: Vec<String> = self
            .accounts
            .iter()
            .filter(|(_, a)| {
                eq_ci(&a.home_account_id, hid)
                    && same_cloud(&a.environment, env)
                    && eq_ci(&a.realm, realm)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            if let Some(prev) = self.accounts.remove(&k) {
                // A response without an id token must not blank what we knew.
                if acc.local_account_id.is_empty() {
                    acc.local_account_id = prev.local_account_id;
                }
                if acc.username.is_empty() {
                    acc.username = prev.username;
                }
                if acc.name.is_none() {
                    acc.name = prev.name;
                }
                if acc.client_info.is_none() {
                    acc.client_info = prev.client_info;
                }
                acc.extra = prev.extra;
            }
        }
        self.insert_account(acc);
    }

    /// Signs a user out of one client: removes the user's access, refresh and id tokens
    /// of `client_id`, and the user's account records when no credential of any client
    /// refers to the user anymore. Returns the number of records removed.
    pub fn remove_account(&mut self, client_id: &str, home_account_id: &str) -> usize {
        let before = self.len();
        let hit = |cid: &str, hid: &str| eq_ci(cid, client_id) && eq_ci(hid, home_account_id);
        self.access_tokens
            .retain(|_, t| !hit(&t.client_id, &t.home_account_id));
        self.refresh_tokens
            .retain(|_, t| !hit(&t.client_id, &t.home_account_id));
        self.id_tokens
            .retain(|_, t| !hit(&t.client_id, &t.home_account_id));
        let still_used = self
            .access_tokens
            .values()
            .any(|t| eq_ci(&t.home_account_id, home_account_id))
            || self
                .refresh_tokens
                .values()
                .any(|t| eq_ci(&t.home_account_id, home_account_id))
            || self
                .id_tokens
                .values()
                .any(|t| eq_ci(&t.home_account_id, home_account_id));
        if !still_used {
            self.accounts
                .retain(|_, a| !eq_ci(&a.home_account_id, home_account_id));
        }
        before - self.len()
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

/// The target written for a new access token: the response's scope echo if present,
/// else the requested scopes; sorted by bytes, de-duplicated case-insensitively.
fn normalize_target(scope_echo: Option<&str>, requested: &[&str]) -> String {
    let mut scopes: Vec<&str> = match scope_echo.filter(|s| !s.trim().is_empty()) {
        Some(s) => s.split_ascii_whitespace().collect(),
        None => split_scopes(requested).collect(),
    };
    scopes.sort_unstable();
    let mut out: Vec<&str> = Vec::with_capacity(scopes.len());
    for s in scopes {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(s)) {
            out.push(s);
        }
    }
    out.join(" ")
}

/// An absolute `expires_on` some endpoints (managed identity) send instead of
/// `expires_in`.
fn absolute_expiry(resp: &TokenResponse) -> Option<i64> {
    match resp.extra.get("expires_on")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => de::parse_secs(s.trim()).ok(),
        _ => None,
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
