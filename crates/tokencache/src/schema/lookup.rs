//! Lookups in a partition: the queries ([`AccessTokenQuery`], [`RefreshTokenQuery`]),
//! how a stored record matches one (scopes as a case-insensitive set, clouds by their
//! aliases, the OBO hash, key ids), and the scope masks that let a lookup pass over
//! tokens without comparing strings.

use super::*;

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
    /// Another name of `realm` (ignored without one): tokens of either match, and among
    /// them the one expiring last is found. For a Microsoft Entra tenant named by its
    /// domain, the domain (docs/design.md §4.7).
    pub realm_alias: Option<&'a str>,
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
            realm_alias: None,
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

/// Equal ignoring ASCII case; the usual case, bytes equal as stored, first (a plain
/// comparison is several times cheaper than a case-folding one).
pub(super) fn eq_ci(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a == b || a.eq_ignore_ascii_case(b))
}

pub(super) fn split_scopes<'s>(scopes: &'s [&'s str]) -> impl Iterator<Item = &'s str> + 's {
    scopes.iter().flat_map(|s| s.split_ascii_whitespace())
}

pub(super) fn target_has(target: &str, scope: &str) -> bool {
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
pub(super) fn scope_bit(scope: &str) -> u64 {
    let b = scope.as_bytes();
    let mut h: u32 = 0x811c_9dc5 ^ (b.len() as u32); // FNV-1a
    for b in &b[b.len().saturating_sub(16)..] {
        h = (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0193);
    }
    1u64 << (h >> 26)
}

/// The mask of a stored target, computed once per cached partition (the access-token
/// section keeps it): every scope's bit.
pub(super) fn target_mask(at: &AccessToken) -> u64 {
    at.target
        .split_ascii_whitespace()
        .fold(0, |m, s| m | scope_bit(s))
}

/// OpenID Connect scopes that every user response echoes.
pub(super) const OIDC_SCOPES: [&str; 3] = ["openid", "profile", "offline_access"];

pub(super) fn is_oidc_scope(s: &str) -> bool {
    OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(s))
}

/// Whether a new target overlaps an old one, as msal-common decides: the OIDC scopes
/// (`openid profile offline_access`) do not count, unless the new target has nothing
/// else.
pub(super) fn targets_intersect(old: &str, new: &str) -> bool {
    let only_oidc = new.split_ascii_whitespace().all(is_oidc_scope);
    new.split_ascii_whitespace()
        .filter(|s| only_oidc || !is_oidc_scope(s))
        .any(|s| target_has(old, s))
}

/// Access tokens that need a query part we do not model (MSAL's extended cache keys,
/// e.g. FMI paths) are never served to a plain query.
pub(super) fn has_extended_key(at: &AccessToken) -> bool {
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

pub(super) fn opt_eq(stored: Option<&str>, wanted: Option<&str>) -> bool {
    match (stored, wanted) {
        (None, None) => true,
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Same (user, environment, client, realm, token type, key id, OBO hash): the slot in
/// which a new access token replaces overlapping ones.
pub(super) fn same_at_slot(a: &AccessToken, b: &AccessToken) -> bool {
    // a token with an extended cache key (MSAL.NET's additional key components) is a
    // slot of its own, as MSAL.NET keeps it
    has_extended_key(a) == has_extended_key(b)
        && eq_ci(&a.home_account_id, &b.home_account_id)
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

pub(super) fn token_type_eq(a: Option<&str>, b: Option<&str>) -> bool {
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
            && self.realm.is_none_or(|r| {
                eq_ci(&at.realm, r) || self.realm_alias.is_some_and(|a| eq_ci(&at.realm, a))
            })
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
pub(super) const CLOUD_ALIASES: [&[&str]; 3] = [
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
                    // one token written under two names of its tenant (the tenant id
                    // and its domain, docs/design.md §4.7) is one tenant's
                    if one_tenant
                        && q.realm.is_none()
                        && !eq_ci(&f.realm, &at.realm)
                        && f.secret != at.secret
                    {
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
}
