//! The five record types of the MSAL V3 unified cache, their credential keys, and their
//! JSON form (written the MSAL.NET way, read leniently).

use super::de::{reject_scalars_and_seq, AnyValue, Ctx, Key, Secs, Slot};
use super::secret::Secret;
use super::section::Section;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::ops::{Deref, DerefMut};

/// `credential_type` of an access token.
pub const CREDENTIAL_ACCESS_TOKEN: &str = "AccessToken";
/// `credential_type` of a refresh token.
pub const CREDENTIAL_REFRESH_TOKEN: &str = "RefreshToken";
/// `credential_type` of an id token.
pub const CREDENTIAL_ID_TOKEN: &str = "IdToken";
/// `authority_type` of Entra ID (AAD v2, MSA) accounts.
pub const AUTHORITY_TYPE_MSSTS: &str = "MSSTS";
/// `authority_type` of ADFS accounts.
pub const AUTHORITY_TYPE_ADFS: &str = "ADFS";

/// Fields of a record that tokencache does not know, kept verbatim (in input order) and
/// written back after the known ones.
///
/// `Debug` lists only the field names: unknown values might be sensitive.
#[derive(Clone, PartialEq, Default)]
pub struct Extra(pub Map<String, Value>);

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Deref for Extra {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Extra {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// How an **empty** `home_account_id` (app-only tokens; OBO tokens whose response names no
/// user) appears in a blob. The MSAL SDKs disagree, and each one's lookup of app tokens
/// accepts only some forms (checked against the real clients by `tests/interop_python.rs`, `tests/interop_node.rs`):
///
/// | form | written by | `acquire_token_for_client` finds it in |
/// |---|---|---|
/// | [`Null`](Self::Null) | MSAL Python | MSAL Python, MSAL.NET |
/// | [`Empty`](Self::Empty) | msal-node (and tokencache by default) | msal-node, MSAL.NET |
/// | [`Omitted`](Self::Omitted) | MSAL.NET | MSAL.NET |
///
/// MSAL Python matches `home_account_id == None` exactly (a missing field or `""` is a
/// miss); msal-node matches `=== ""` (`null` or a missing field is a miss); MSAL.NET reads a
/// missing field as `""` and does not look at the field for app tokens. No form serves all
/// three, so every record remembers the form it was read with and is written back the same
/// way, and [`Partition::add_token_response_with_form`](super::Partition::add_token_response_with_form)
/// takes the form for partitions that have none yet.
///
/// The form says nothing about a non-empty `home_account_id`, which is always written as a
/// string and reads as the default form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AppAccountForm {
    /// `"home_account_id": null` (MSAL Python's form).
    Null,
    /// `"home_account_id": ""` (msal-node's form). The default: it is what tokencache wrote
    /// before the form was configurable, and msal-node and MSAL.NET read it.
    #[default]
    Empty,
    /// No `home_account_id` field (MSAL.NET's form). Only MSAL.NET finds app tokens
    /// written this way.
    Omitted,
}

/// An access token record (section `AccessToken`).
#[derive(Debug, Clone, PartialEq)]
pub struct AccessToken {
    /// `uid.utid` (or `oid.tid`, or `sub`) of the user; empty for app tokens.
    pub home_account_id: String,
    /// How `home_account_id` is written while it is empty: as read from the blob (a missing
    /// field reads as [`AppAccountForm::Omitted`]), or as chosen for a new record. Ignored
    /// when `home_account_id` is not empty.
    pub home_account_id_form: AppAccountForm,
    /// Authority host, e.g. `login.microsoftonline.com`.
    pub environment: String,
    /// The client (application) id that obtained the token.
    pub client_id: String,
    /// `credential_type`, normally `AccessToken` (msal-node writes
    /// `AccessToken_With_AuthScheme` for non-Bearer tokens).
    pub credential_type: String,
    /// Tenant id.
    pub realm: String,
    /// Space-separated scopes the token is good for.
    pub target: String,
    /// The token.
    pub secret: Secret,
    /// When it was cached (Unix seconds).
    pub cached_at: i64,
    /// When it expires (Unix seconds).
    pub expires_on: i64,
    /// Extended expiry (Unix seconds), usable when the authority is unavailable.
    pub extended_expires_on: Option<i64>,
    /// When the authority suggests refreshing it proactively (Unix seconds).
    pub refresh_on: Option<i64>,
    /// Token type; `None` means Bearer (a `Bearer` value read from a blob becomes `None`,
    /// and MSAL.NET also omits it).
    pub token_type: Option<String>,
    /// Key id of a key-bound (PoP, SSH) token; written as `kid` (MSAL.NET), read from
    /// `kid` or `key_id`.
    pub key_id: Option<String>,
    /// OBO: base64url SHA-256 of the incoming assertion; written under both
    /// `user_assertion_hash` (MSAL.NET) and `userAssertionHash` (msal-node), read from either.
    pub user_assertion_hash: Option<String>,
    /// The millisecond tokencache wrote it (ms since the epoch), `tc_written_at_ms`
    /// ([`WRITTEN_AT_MS`](super::WRITTEN_AT_MS)): orders two writes of one `cached_at`
    /// second. `None` for records of other writers.
    pub written_at_ms: Option<i64>,
    /// The write's place in its process's order of writes (a process-wide counter and
    /// that process's id, [`crate::clock::record_seq`]), written after the millisecond
    /// (`"1800000000123.2a00f3b1c"`): two writes of one record in one millisecond are
    /// ordered by it, so no replay puts the earlier over the later; between processes
    /// it breaks a tie the same way on every replica.
    pub written_seq: Option<u64>,
    /// Unknown fields, kept verbatim.
    pub extra: Extra,
}

/// A refresh token record (section `RefreshToken`).
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshToken {
    /// Home account id of the user (empty when unknown, e.g. some OBO flows).
    pub home_account_id: String,
    /// How `home_account_id` is written while it is empty: as read from the blob (a missing
    /// field reads as [`AppAccountForm::Omitted`]), or as chosen for a new record. Ignored
    /// when `home_account_id` is not empty.
    pub home_account_id_form: AppAccountForm,
    /// Authority host.
    pub environment: String,
    /// The client id that obtained it.
    pub client_id: String,
    /// The token.
    pub secret: Secret,
    /// FOCI family (`"1"`): any client of the family may redeem it.
    pub family_id: Option<String>,
    /// Scopes it was obtained for (informational; MSAL Python writes it).
    pub target: Option<String>,
    /// OBO: hash of the incoming assertion (or the long-running OBO session key).
    pub user_assertion_hash: Option<String>,
    /// When it was last written (Unix seconds).
    pub last_modification_time: Option<i64>,
    /// The millisecond tokencache wrote it, as for access tokens
    /// ([`AccessToken::written_at_ms`]).
    pub written_at_ms: Option<i64>,
    /// Its place in its process's order of writes ([`AccessToken::written_seq`]).
    pub written_seq: Option<u64>,
    /// Unknown fields, kept verbatim.
    pub extra: Extra,
}

/// An id token record (section `IdToken`).
#[derive(Debug, Clone, PartialEq)]
pub struct IdToken {
    /// Home account id of the user.
    pub home_account_id: String,
    /// How `home_account_id` is written while it is empty: as read from the blob (a missing
    /// field reads as [`AppAccountForm::Omitted`]), or as chosen for a new record. Ignored
    /// when `home_account_id` is not empty.
    pub home_account_id_form: AppAccountForm,
    /// Authority host.
    pub environment: String,
    /// The client id it was issued to.
    pub client_id: String,
    /// Tenant id.
    pub realm: String,
    /// The raw JWT.
    pub secret: Secret,
    /// Unknown fields, kept verbatim.
    pub extra: Extra,
}

/// An account record (section `Account`). Holds no secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// Home account id.
    pub home_account_id: String,
    /// How `home_account_id` is written while it is empty: as read from the blob (a missing
    /// field reads as [`AppAccountForm::Omitted`]), or as chosen for a new record. Ignored
    /// when `home_account_id` is not empty.
    pub home_account_id_form: AppAccountForm,
    /// Authority host.
    pub environment: String,
    /// Tenant id of this account record.
    pub realm: String,
    /// The user's object id in that tenant (`oid`, else `sub`).
    pub local_account_id: String,
    /// `preferred_username`, `upn` or `email`; may be empty.
    pub username: String,
    /// `MSSTS` (Entra ID) or `ADFS`; missing reads as `MSSTS`.
    pub authority_type: String,
    /// Display name (`name` claim).
    pub name: Option<String>,
    /// Raw `client_info` of the response (MSAL.NET writes it).
    pub client_info: Option<String>,
    /// Unknown fields (e.g. `given_name`, msal-node's `tenantProfiles`), kept verbatim.
    pub extra: Extra,
}

/// An app metadata record (section `AppMetadata`). Holds no secret.
#[derive(Debug, Clone, PartialEq)]
pub struct AppMetadata {
    /// The client id.
    pub client_id: String,
    /// Authority host.
    pub environment: String,
    /// FOCI family the client belongs to (`"1"`), if any.
    pub family_id: Option<String>,
    /// Unknown fields, kept verbatim.
    pub extra: Extra,
}

fn lower_join(parts: &[&str]) -> String {
    let len = parts.iter().map(|p| p.len() + 1).sum();
    let mut s = String::with_capacity(len);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        s.push_str(p);
    }
    s.to_lowercase()
}

/// Whether a token type is Bearer (case-insensitive); `None` counts as Bearer.
pub(crate) fn is_bearer(token_type: Option<&str>) -> bool {
    token_type.is_none_or(|t| t.eq_ignore_ascii_case("bearer"))
}

impl AccessToken {
    /// The credential key, as MSAL.NET writes it:
    /// `{home_account_id}-{environment}-accesstoken-{client_id}-{realm}-{target}`,
    /// lower-cased; a non-Bearer token uses `accesstoken_with_authscheme` and appends
    /// `-{token_type}`.
    pub fn key(&self) -> String {
        match self.token_type.as_deref() {
            Some(tt) if !is_bearer(Some(tt)) => lower_join(&[
                &self.home_account_id,
                &self.environment,
                "accesstoken_with_authscheme",
                &self.client_id,
                &self.realm,
                &self.target,
                tt,
            ]),
            _ => lower_join(&[
                &self.home_account_id,
                &self.environment,
                "accesstoken",
                &self.client_id,
                &self.realm,
                &self.target,
            ]),
        }
    }

    /// Whether the authority's suggested refresh time has passed (`refresh_on <= now`):
    /// the token is still valid, but the caller should refresh it proactively.
    pub fn needs_refresh(&self, now: i64) -> bool {
        self.refresh_on.is_some_and(|r| r <= now)
    }

    /// Whether the token has expired, or expires within `skew_secs` of `now`.
    pub fn is_expired(&self, now: i64, skew_secs: i64) -> bool {
        self.expires_on <= now.saturating_add(skew_secs)
    }

    /// The scopes of `target` (split on whitespace).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.target.split_ascii_whitespace()
    }
}

impl RefreshToken {
    /// The credential key, as MSAL.NET writes it:
    /// `{home_account_id}-{environment}-refreshtoken-{client_id}--`, or with the family id
    /// in place of the client id for a family (FOCI) token; lower-cased.
    pub fn key(&self) -> String {
        let id = match self.family_id.as_deref() {
            Some(f) if !f.trim().is_empty() => f,
            _ => &self.client_id,
        };
        lower_join(&[
            &self.home_account_id,
            &self.environment,
            "refreshtoken",
            id,
            "",
            "",
        ])
    }

    /// Whether this is a family (FOCI) refresh token.
    pub fn is_family(&self) -> bool {
        self.family_id.as_deref().is_some_and(|f| !f.is_empty())
    }
}

impl IdToken {
    /// The credential key: `{home_account_id}-{environment}-idtoken-{client_id}-{realm}-`,
    /// lower-cased.
    pub fn key(&self) -> String {
        lower_join(&[
            &self.home_account_id,
            &self.environment,
            "idtoken",
            &self.client_id,
            &self.realm,
            "",
        ])
    }
}

impl Account {
    /// The account key: `{home_account_id}-{environment}-{realm}`, lower-cased.
    pub fn key(&self) -> String {
        lower_join(&[&self.home_account_id, &self.environment, &self.realm])
    }
}

impl AppMetadata {
    /// The key: `appmetadata-{environment}-{client_id}`, lower-cased.
    pub fn key(&self) -> String {
        lower_join(&["appmetadata", &self.environment, &self.client_id])
    }
}

// ---------------------------------------------------------------------------------------
// Writing (MSAL.NET conventions: timestamps as strings, Bearer token_type omitted, `kid`).

/// Writes `home_account_id`: the id when there is one, else the record's empty form.
fn write_home_account_id<M: SerializeMap>(
    m: &mut M,
    id: &str,
    form: AppAccountForm,
) -> Result<(), M::Error> {
    match form {
        _ if !id.is_empty() => m.serialize_entry("home_account_id", id),
        AppAccountForm::Empty => m.serialize_entry("home_account_id", ""),
        AppAccountForm::Null => m.serialize_entry("home_account_id", &()),
        AppAccountForm::Omitted => Ok(()),
    }
}

fn write_extra<M: SerializeMap>(m: &mut M, extra: &Extra, known: &[&str]) -> Result<(), M::Error> {
    for (k, v) in extra.iter() {
        if !known.contains(&k.as_str()) {
            m.serialize_entry(k, v)?;
        }
    }
    Ok(())
}

/// `tc_written_at_ms` when the record has one (`"{ms}"`, or `"{ms}.{seq in hex}"`), then
/// the unknown fields (an unknown field of that name, a value that was not ours, only
/// when it has none).
fn write_ms_and_extra<M: SerializeMap>(
    m: &mut M,
    written_at_ms: Option<i64>,
    written_seq: Option<u64>,
    extra: &Extra,
    known: &[&str],
) -> Result<(), M::Error> {
    match written_at_ms {
        Some(ms) => {
            let value = match written_seq {
                Some(seq) => format!("{ms}.{seq:x}"),
                None => ms.to_string(),
            };
            m.serialize_entry(super::WRITTEN_AT_MS, &value)?;
            for (k, v) in extra.iter() {
                if !known.contains(&k.as_str()) && k != super::WRITTEN_AT_MS {
                    m.serialize_entry(k, v)?;
                }
            }
            Ok(())
        }
        None => write_extra(m, extra, known),
    }
}

const AT_KNOWN: &[&str] = &[
    "home_account_id",
    "environment",
    "client_id",
    "credential_type",
    "secret",
    "realm",
    "target",
    "cached_at",
    "expires_on",
    "extended_expires_on",
    "ext_expires_on",
    "refresh_on",
    "token_type",
    "kid",
    "key_id",
    "user_assertion_hash",
    "userAssertionHash",
];

impl Serialize for AccessToken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        write_home_account_id(&mut m, &self.home_account_id, self.home_account_id_form)?;
        m.serialize_entry("environment", &self.environment)?;
        m.serialize_entry("client_id", &self.client_id)?;
        m.serialize_entry("credential_type", &self.credential_type)?;
        m.serialize_entry("secret", &self.secret)?;
        m.serialize_entry("realm", &self.realm)?;
        m.serialize_entry("target", &self.target)?;
        m.serialize_entry("cached_at", &Secs(self.cached_at))?;
        m.serialize_entry("expires_on", &Secs(self.expires_on))?;
        if let Some(v) = self.extended_expires_on {
            m.serialize_entry("extended_expires_on", &Secs(v))?;
        }
        if let Some(v) = self.refresh_on {
            m.serialize_entry("refresh_on", &Secs(v))?;
        }
        // Written always (MSAL Python and MSAL.NET write it; a rewrite of their blob
        // keeps it).
        m.serialize_entry("token_type", self.token_type.as_deref().unwrap_or("Bearer"))?;
        if let Some(k) = &self.key_id {
            m.serialize_entry("kid", k)?;
        }
        if let Some(h) = &self.user_assertion_hash {
            // Both spellings: MSAL.NET reads the first, msal-node only the second.
            m.serialize_entry("user_assertion_hash", h)?;
            m.serialize_entry("userAssertionHash", h)?;
        }
        write_ms_and_extra(
            &mut m,
            self.written_at_ms,
            self.written_seq,
            &self.extra,
            AT_KNOWN,
        )?;
        m.end()
    }
}

const RT_KNOWN: &[&str] = &[
    "home_account_id",
    "environment",
    "client_id",
    "credential_type",
    "secret",
    "family_id",
    "target",
    "user_assertion_hash",
    "userAssertionHash",
    "last_modification_time",
];

impl Serialize for RefreshToken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        write_home_account_id(&mut m, &self.home_account_id, self.home_account_id_form)?;
        m.serialize_entry("environment", &self.environment)?;
        m.serialize_entry("client_id", &self.client_id)?;
        m.serialize_entry("credential_type", CREDENTIAL_REFRESH_TOKEN)?;
        m.serialize_entry("secret", &self.secret)?;
        if let Some(f) = &self.family_id {
            m.serialize_entry("family_id", f)?;
        }
        if let Some(t) = &self.target {
            m.serialize_entry("target", t)?;
        }
        if let Some(h) = &self.user_assertion_hash {
            m.serialize_entry("user_assertion_hash", h)?;
        }
        if let Some(t) = self.last_modification_time {
            m.serialize_entry("last_modification_time", &Secs(t))?;
        }
        write_ms_and_extra(
            &mut m,
            self.written_at_ms,
            self.written_seq,
            &self.extra,
            RT_KNOWN,
        )?;
        m.end()
    }
}

const IDT_KNOWN: &[&str] = &[
    "home_account_id",
    "environment",
    "client_id",
    "credential_type",
    "secret",
    "realm",
];

impl Serialize for IdToken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        write_home_account_id(&mut m, &self.home_account_id, self.home_account_id_form)?;
        m.serialize_entry("environment", &self.environment)?;
        m.serialize_entry("client_id", &self.client_id)?;
        m.serialize_entry("credential_type", CREDENTIAL_ID_TOKEN)?;
        m.serialize_entry("secret", &self.secret)?;
        m.serialize_entry("realm", &self.realm)?;
        write_extra(&mut m, &self.extra, IDT_KNOWN)?;
        m.end()
    }
}

const ACCOUNT_KNOWN: &[&str] = &[
    "home_account_id",
    "environment",
    "realm",
    "local_account_id",
    "username",
    "authority_type",
    "name",
    "client_info",
];

impl Serialize for Account {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        write_home_account_id(&mut m, &self.home_account_id, self.home_account_id_form)?;
        m.serialize_entry("environment", &self.environment)?;
        m.serialize_entry("realm", &self.realm)?;
        m.serialize_entry("local_account_id", &self.local_account_id)?;
        m.serialize_entry("username", &self.username)?;
        m.serialize_entry("authority_type", &self.authority_type)?;
        if let Some(n) = &self.name {
            m.serialize_entry("name", n)?;
        }
        if let Some(c) = &self.client_info {
            m.serialize_entry("client_info", c)?;
        }
        write_extra(&mut m, &self.extra, ACCOUNT_KNOWN)?;
        m.end()
    }
}

const APPMETA_KNOWN: &[&str] = &["client_id", "environment", "family_id"];

impl Serialize for AppMetadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("client_id", &self.client_id)?;
        m.serialize_entry("environment", &self.environment)?;
        if let Some(f) = &self.family_id {
            m.serialize_entry("family_id", f)?;
        }
        write_extra(&mut m, &self.extra, APPMETA_KNOWN)?;
        m.end()
    }
}

// ---------------------------------------------------------------------------------------
// Reading (lenient: null vs "", msal-node / Python field spellings, numbers for strings).

/// A record type of one section.
pub(crate) trait Record: Sized {
    const SECTION: &'static str;
    fn from_map<'de, A: MapAccess<'de>>(map: A, ctx: Ctx<'_>) -> Result<Self, A::Error>;
}

fn put_extra<'de, A: MapAccess<'de>>(
    map: &mut A,
    extra: &mut Extra,
    k: Key<'de>,
) -> Result<(), A::Error> {
    let v = map.next_value_seed(AnyValue)?;
    extra.insert(k.into_owned(), v);
    Ok(())
}

/// `tc_written_at_ms`: a string (or number) of milliseconds, optionally followed by `.`
/// and the write's sequence number in hex; anything else is kept as an unknown field (it
/// is not ours to read, and nothing is lost).
fn written_at<'de, A: MapAccess<'de>>(
    map: &mut A,
    extra: &mut Extra,
    k: Key<'de>,
) -> Result<Option<(i64, Option<u64>)>, A::Error> {
    let v = map.next_value_seed(AnyValue)?;
    let written = match &v {
        Value::String(s) => parse_written_at(s.trim()),
        Value::Number(n) => n.as_i64().map(|ms| (ms, None)),
        _ => None,
    };
    if written.is_none() {
        extra.insert(k.into_owned(), v);
    }
    Ok(written)
}

/// `"{ms}"` or `"{ms}.{seq in hex}"` (at most 16 hex digits).
fn parse_written_at(s: &str) -> Option<(i64, Option<u64>)> {
    match s.split_once('.') {
        None => Some((s.parse().ok()?, None)),
        Some((ms, seq)) => {
            if seq.is_empty() || seq.len() > 16 || !seq.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            Some((ms.parse().ok()?, Some(u64::from_str_radix(seq, 16).ok()?)))
        }
    }
}

impl Record for AccessToken {
    const SECTION: &'static str = "AccessToken";
    fn from_map<'de, A: MapAccess<'de>>(mut map: A, ctx: Ctx<'_>) -> Result<Self, A::Error> {
        let mut hid = String::new();
        let mut hid_form = AppAccountForm::Omitted;
        let mut env = String::new();
        let mut cid = String::new();
        let mut ctype: Option<String> = None;
        let mut secret: Option<Secret> = None;
        let mut realm = String::new();
        let mut target = String::new();
        let mut cached_at = None;
        let mut expires_on = None;
        let mut ext = None;
        let mut ext_compat = None;
        let mut refresh_on = None;
        let mut token_type = None;
        let mut key_id = None;
        let mut uah = None;
        let mut written = None;
        let mut extra = Extra::default();
        while let Some(k) = map.next_key::<Key<'de>>()? {
            let f = k.as_str();
            match f {
                "home_account_id" => (hid, hid_form) = ctx.account_id(f, map.next_value()?)?,
                "environment" => env = ctx.string(f, map.next_value()?)?,
                "client_id" => cid = ctx.string(f, map.next_value()?)?,
                "credential_type" => ctype = ctx.opt_string(f, map.next_value()?)?,
                "secret" => secret = ctx.opt_secret(f, map.next_value()?)?,
                "realm" => realm = ctx.string(f, map.next_value()?)?,
                "target" => target = ctx.string(f, map.next_value()?)?,
                "cached_at" => cached_at = ctx.opt_secs(f, map.next_value()?)?,
                "expires_on" => expires_on = ctx.opt_secs(f, map.next_value()?)?,
                "extended_expires_on" => ext = ctx.opt_secs(f, map.next_value()?)?,
                "ext_expires_on" => ext_compat = ctx.opt_secs(f, map.next_value()?)?,
                "refresh_on" => refresh_on = ctx.opt_secs(f, map.next_value()?)?,
                "token_type" => {
                    token_type = ctx
                        .opt_string(f, map.next_value()?)?
                        .filter(|t: &String| !is_bearer(Some(t)))
                }
                "kid" | "key_id" => {
                    let v = ctx.opt_string(f, map.next_value()?)?;
                    if key_id.is_none() {
                        key_id = v;
                    }
                }
                "user_assertion_hash" | "userAssertionHash" => {
                    let v = ctx.opt_string(f, map.next_value()?)?;
                    if uah.is_none() {
                        uah = v;
                    }
                }
                super::WRITTEN_AT_MS => written = written_at(&mut map, &mut extra, k)?,
                _ => put_extra(&mut map, &mut extra, k)?,
            }
        }
        Ok(AccessToken {
            home_account_id: hid,
            home_account_id_form: hid_form,
            environment: env,
            client_id: cid,
            credential_type: ctype.unwrap_or_else(|| CREDENTIAL_ACCESS_TOKEN.to_owned()),
            realm,
            target,
            secret: secret.ok_or_else(|| ctx.missing("secret"))?,
            cached_at: cached_at.unwrap_or(0),
            expires_on: expires_on.ok_or_else(|| ctx.missing("expires_on"))?,
            extended_expires_on: ext.or(ext_compat),
            refresh_on,
            token_type,
            key_id,
            user_assertion_hash: uah,
            written_at_ms: written.map(|w| w.0),
            written_seq: written.and_then(|w| w.1),
            extra,
        })
    }
}

impl Record for RefreshToken {
    const SECTION: &'static str = "RefreshToken";
    fn from_map<'de, A: MapAccess<'de>>(mut map: A, ctx: Ctx<'_>) -> Result<Self, A::Error> {
        let mut hid = String::new();
        let mut hid_form = AppAccountForm::Omitted;
        let mut env = String::new();
        let mut cid = String::new();
        let mut secret: Option<Secret> = None;
        let mut family_id = None;
        let mut target = None;
        let mut uah = None;
        let mut lmt = None;
        let mut written = None;
        let mut extra = Extra::default();
        while let Some(k) = map.next_key::<Key<'de>>()? {
            let f = k.as_str();
            match f {
                "home_account_id" => (hid, hid_form) = ctx.account_id(f, map.next_value()?)?,
                "environment" => env = ctx.string(f, map.next_value()?)?,
                "client_id" => cid = ctx.string(f, map.next_value()?)?,
                "credential_type" => {
                    ctx.opt_string(f, map.next_value()?)?;
                }
                "secret" => secret = ctx.opt_secret(f, map.next_value()?)?,
                "family_id" => family_id = ctx.opt_string(f, map.next_value()?)?,
                "target" => target = ctx.opt_string(f, map.next_value()?)?,
                "last_modification_time" => lmt = ctx.opt_secs(f, map.next_value()?)?,
                "user_assertion_hash" | "userAssertionHash" => {
                    let v = ctx.opt_string(f, map.next_value()?)?;
                    if uah.is_none() {
                        uah = v;
                    }
                }
                super::WRITTEN_AT_MS => written = written_at(&mut map, &mut extra, k)?,
                _ => put_extra(&mut map, &mut extra, k)?,
            }
        }
        Ok(RefreshToken {
            home_account_id: hid,
            home_account_id_form: hid_form,
            environment: env,
            client_id: cid,
            secret: secret.ok_or_else(|| ctx.missing("secret"))?,
            family_id,
            target,
            user_assertion_hash: uah,
            last_modification_time: lmt,
            written_at_ms: written.map(|w| w.0),
            written_seq: written.and_then(|w| w.1),
            extra,
        })
    }
}

impl Record for IdToken {
    const SECTION: &'static str = "IdToken";
    fn from_map<'de, A: MapAccess<'de>>(mut map: A, ctx: Ctx<'_>) -> Result<Self, A::Error> {
        let mut hid = String::new();
        let mut hid_form = AppAccountForm::Omitted;
        let mut env = String::new();
        let mut cid = String::new();
        let mut realm = String::new();
        let mut secret: Option<Secret> = None;
        let mut extra = Extra::default();
        while let Some(k) = map.next_key::<Key<'de>>()? {
            let f = k.as_str();
            match f {
                "home_account_id" => (hid, hid_form) = ctx.account_id(f, map.next_value()?)?,
                "environment" => env = ctx.string(f, map.next_value()?)?,
                "client_id" => cid = ctx.string(f, map.next_value()?)?,
                "realm" => realm = ctx.string(f, map.next_value()?)?,
                "credential_type" => {
                    ctx.opt_string(f, map.next_value()?)?;
                }
                "secret" => secret = ctx.opt_secret(f, map.next_value()?)?,
                _ => put_extra(&mut map, &mut extra, k)?,
            }
        }
        Ok(IdToken {
            home_account_id: hid,
            home_account_id_form: hid_form,
            environment: env,
            client_id: cid,
            realm,
            secret: secret.ok_or_else(|| ctx.missing("secret"))?,
            extra,
        })
    }
}

impl Record for Account {
    const SECTION: &'static str = "Account";
    fn from_map<'de, A: MapAccess<'de>>(mut map: A, ctx: Ctx<'_>) -> Result<Self, A::Error> {
        let mut hid = String::new();
        let mut hid_form = AppAccountForm::Omitted;
        let mut env = String::new();
        let mut realm = String::new();
        let mut local = String::new();
        let mut username = String::new();
        let mut authority_type = None;
        let mut name = None;
        let mut client_info = None;
        let mut extra = Extra::default();
        while let Some(k) = map.next_key::<Key<'de>>()? {
            let f = k.as_str();
            match f {
                "home_account_id" => (hid, hid_form) = ctx.account_id(f, map.next_value()?)?,
                "environment" => env = ctx.string(f, map.next_value()?)?,
                "realm" => realm = ctx.string(f, map.next_value()?)?,
                "local_account_id" => local = ctx.string(f, map.next_value()?)?,
                "username" => username = ctx.string(f, map.next_value()?)?,
                "authority_type" => authority_type = ctx.opt_string(f, map.next_value()?)?,
                "name" => name = ctx.opt_string(f, map.next_value()?)?,
                "client_info" => client_info = ctx.opt_string(f, map.next_value()?)?,
                _ => put_extra(&mut map, &mut extra, k)?,
            }
        }
        Ok(Account {
            home_account_id: hid,
            home_account_id_form: hid_form,
            environment: env,
            realm,
            local_account_id: local,
            username,
            authority_type: authority_type.unwrap_or_else(|| AUTHORITY_TYPE_MSSTS.to_owned()),
            name,
            client_info,
            extra,
        })
    }
}

impl Record for AppMetadata {
    const SECTION: &'static str = "AppMetadata";
    fn from_map<'de, A: MapAccess<'de>>(mut map: A, ctx: Ctx<'_>) -> Result<Self, A::Error> {
        let mut cid = String::new();
        let mut env = String::new();
        let mut family_id = None;
        let mut extra = Extra::default();
        while let Some(k) = map.next_key::<Key<'de>>()? {
            let f = k.as_str();
            match f {
                "client_id" => cid = ctx.string(f, map.next_value()?)?,
                "environment" => env = ctx.string(f, map.next_value()?)?,
                "family_id" => family_id = ctx.opt_string(f, map.next_value()?)?,
                _ => put_extra(&mut map, &mut extra, k)?,
            }
        }
        Ok(AppMetadata {
            client_id: cid,
            environment: env,
            family_id,
            extra,
        })
    }
}

/// Reads one record (a JSON object) of section `T`.
struct RecordSeed<'a, T> {
    key: &'a str,
    slot: &'a Slot,
    _t: std::marker::PhantomData<T>,
}

impl<'de, T: Record> DeserializeSeed<'de> for RecordSeed<'_, T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Record> Visitor<'de> for RecordSeed<'_, T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_map(map, self.ctx())
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Err(self.reject())
    }
    reject_scalars_and_seq!();
}

impl<T: Record> RecordSeed<'_, T> {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            section: T::SECTION,
            key: self.key,
            slot: self.slot,
        }
    }
    fn reject<E: de::Error>(&self) -> E {
        self.ctx().wrong("", "object")
    }
}

/// Reads one section: an object of credential key → record; `null` reads as empty.
pub(crate) struct SectionSeed<'a, T> {
    pub(crate) slot: &'a Slot,
    pub(crate) _t: std::marker::PhantomData<T>,
}

impl<'de, T: Record> DeserializeSeed<'de> for SectionSeed<'_, T> {
    type Value = Section<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Record> Visitor<'de> for SectionSeed<'_, T> {
    type Value = Section<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of records")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(k) = map.next_key::<Key<'de>>()? {
            let key = k.into_owned();
            let rec = map.next_value_seed(RecordSeed::<T> {
                key: &key,
                slot: self.slot,
                _t: std::marker::PhantomData,
            })?;
            out.push((key, rec));
        }
        Ok(Section::from_parsed(out))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Section::default())
    }
    reject_scalars_and_seq!();
}

impl<T: Record> SectionSeed<'_, T> {
    fn reject<E: de::Error>(&self) -> E {
        Ctx {
            section: T::SECTION,
            key: "",
            slot: self.slot,
        }
        .wrong("", "object of records")
    }
}
