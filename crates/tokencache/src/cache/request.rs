//! What callers hand the cache and get back: whose tokens ([`Subject`], [`SaveFor`]),
//! what to look up ([`Lookup`]), what a response answered ([`SaveRequest`]), and the
//! results ([`CachedToken`], [`Saved`]).

use crate::twolevel::WriteOutcome;
use crate::Secret;

/// Whose tokens a lookup is for: decides the partition.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A signed-in user, by MSAL home account id (`oid.tid`, or `uid.utid`).
    User(&'a str),
    /// The application itself (client credentials) in a tenant.
    App {
        /// The tenant id.
        tenant: &'a str,
    },
    /// A web API calling on behalf of the user who sent this bearer token.
    Obo {
        /// The raw incoming assertion (never logged; only its hash is kept).
        assertion: &'a str,
    },
    /// A long-running OBO session, keyed by a caller-chosen session key.
    OboSession {
        /// The session key.
        session_key: &'a str,
    },
}

impl std::fmt::Debug for Subject<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::User(id) => write!(f, "User({id})"),
            Subject::App { tenant } => write!(f, "App({tenant})"),
            Subject::Obo { .. } => f.write_str("Obo(<assertion>)"),
            Subject::OboSession { session_key } => write!(f, "OboSession({session_key})"),
        }
    }
}

/// What to look up: a token for a client, a subject and scopes.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    /// The client (application) id that acquired the token.
    pub client_id: &'a str,
    /// Whose token.
    pub subject: Subject<'a>,
    /// Scopes wanted; all must be in the token's target (case-insensitive).
    pub scopes: &'a [&'a str],
    /// The tenant (realm). `None`: the tenant the matching tokens were saved for, when
    /// they are all of one tenant (one token written under two names of its tenant, as
    /// [`SaveRequest::realm_alias`] writes it, is one); when they span several, the lookup fails with
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest) asking to name one (or to set
    /// [`any_tenant`](Self::any_tenant)). For [`Subject::App`] the subject's tenant.
    pub tenant: Option<&'a str>,
    /// Another name of `tenant` (ignored without one): records of either realm match
    /// (among them, the token expiring last). For a Microsoft Entra tenant named by its domain, the domain,
    /// which MSAL.NET writes as every record's realm and msal-node as its app tokens'
    /// (docs/design.md §4.7).
    pub tenant_alias: Option<&'a str>,
    /// The authority host (compared as clouds: `login.windows.net` is
    /// `login.microsoftonline.com`). `None`: the cloud the matching tokens were saved
    /// for, when they are all of one cloud; else, as for `tenant`, an error.
    pub environment: Option<&'a str>,
    /// Match tokens of any tenant when `tenant` is `None` (the newest wins). Off by
    /// default: a multi-tenant app must not get one tenant's token for another's request.
    pub any_tenant: bool,
    /// Match tokens of any cloud when `environment` is `None`. Off by default.
    pub any_cloud: bool,
    /// `None` = Bearer.
    pub token_type: Option<&'a str>,
}

impl<'a> Lookup<'a> {
    /// A user's token.
    pub fn user(client_id: &'a str, home_account_id: &'a str, scopes: &'a [&'a str]) -> Self {
        Self::new(client_id, Subject::User(home_account_id), scopes)
    }

    /// An app token (client credentials).
    pub fn app(client_id: &'a str, tenant: &'a str, scopes: &'a [&'a str]) -> Self {
        let mut l = Self::new(client_id, Subject::App { tenant }, scopes);
        l.tenant = Some(tenant);
        l
    }

    /// A token acquired on behalf of the sender of `assertion`.
    pub fn obo(client_id: &'a str, assertion: &'a str, scopes: &'a [&'a str]) -> Self {
        Self::new(client_id, Subject::Obo { assertion }, scopes)
    }

    /// Any subject.
    pub fn new(client_id: &'a str, subject: Subject<'a>, scopes: &'a [&'a str]) -> Self {
        Self {
            client_id,
            subject,
            scopes,
            tenant: None,
            tenant_alias: None,
            environment: None,
            any_tenant: false,
            any_cloud: false,
            token_type: None,
        }
    }

    /// Restricts to a tenant.
    pub fn tenant(mut self, tenant: &'a str) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Restricts to a tenant when one is given (`None`: as [`new`](Self::new) leaves it).
    pub fn tenant_opt(mut self, tenant: Option<&'a str>) -> Self {
        if tenant.is_some() {
            self.tenant = tenant;
        }
        self
    }

    /// Also matches records of realm `alias`, another name of the tenant
    /// ([`tenant_alias`](Self::tenant_alias)).
    pub fn tenant_alias(mut self, alias: Option<&'a str>) -> Self {
        self.tenant_alias = alias;
        self
    }

    /// Restricts to a cloud (an authority host, e.g. `login.microsoftonline.com`).
    pub fn environment(mut self, host: &'a str) -> Self {
        self.environment = Some(host);
        self
    }

    /// Accepts tokens of any tenant when none is named (the newest wins).
    pub fn any_tenant(mut self) -> Self {
        self.any_tenant = true;
        self
    }

    /// Accepts tokens of any cloud when none is named.
    pub fn any_cloud(mut self) -> Self {
        self.any_cloud = true;
        self
    }
}

/// Whose tokens a token response holds, when saving it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SaveFor<'a> {
    /// A user's (auth code, refresh token): the partition is the home account id read
    /// from the response (`client_info`, else the id token).
    User,
    /// This known user's (a refresh-token redemption: the request was made for the
    /// user, whose refresh token it redeemed): the partition is `home_account_id`'s. A
    /// response that names no account (a refresh response without `id_token`, which
    /// OIDC allows) is saved under this account, so its rotated refresh token is kept; a
    /// response that names another account is refused
    /// ([`Error::InvalidRequest`](crate::Error::InvalidRequest)).
    KnownUser {
        /// The user's home account id (the user partition key).
        home_account_id: &'a str,
    },
    /// The application's own (client credentials).
    App,
    /// On behalf of the sender of this incoming assertion.
    Obo {
        /// The raw incoming assertion.
        assertion: &'a str,
    },
    /// On behalf of the sender of this incoming assertion, who is known to the web app
    /// as `user` (its MSAL home account id): the partition is linked to that account, so
    /// the web app's sign-out of `user` removes it even when the assertion names the
    /// user differently (a B2B guest's assertion carries the resource tenant's ids).
    OboFor {
        /// The raw incoming assertion.
        assertion: &'a str,
        /// The user's home account id (`oid.tid` / `uid.utid`).
        user: &'a str,
    },
    /// A long-running OBO session, linked to its user so that sign-out removes it.
    OboSession {
        /// The session key.
        session_key: &'a str,
        /// The user's home account id (`oid.tid`).
        user: &'a str,
    },
}

impl std::fmt::Debug for SaveFor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaveFor::User => f.write_str("User"),
            SaveFor::KnownUser { home_account_id } => write!(f, "KnownUser({home_account_id})"),
            SaveFor::App => f.write_str("App"),
            SaveFor::Obo { .. } => f.write_str("Obo(<assertion>)"),
            SaveFor::OboFor { user, .. } => write!(f, "OboFor(<assertion>, {user})"),
            SaveFor::OboSession { session_key, user } => {
                write!(f, "OboSession({session_key}, {user})")
            }
        }
    }
}

/// The request a token response answered.
#[derive(Debug, Clone, Copy)]
pub struct SaveRequest<'a> {
    /// The client id that made the request.
    pub client_id: &'a str,
    /// Whose tokens.
    pub subject: SaveFor<'a>,
    /// The authority host (e.g. `login.microsoftonline.com`).
    pub environment: &'a str,
    /// The tenant the request went to.
    pub tenant: &'a str,
    /// The scopes requested (the response's `scope` echo wins when present).
    pub scopes: &'a [&'a str],
    /// The issuer key ([`crate::issuer::issuer_key`]) of a provider that is not
    /// Microsoft Entra, `None` for Entra (docs/design.md §4). With a key, the user is
    /// named `{sub}.{key}` from the id token (never by `client_info` or `tid`) and every
    /// record's realm is `tenant` (the key); without, by MSAL's rules (`uid.utid`, the id
    /// token's `tid` as realm).
    pub issuer_key: Option<&'a str>,
    /// The records' realm when it is not `tenant` (`None`: `tenant`): for Microsoft
    /// Entra the tenant id of the response's tokens, while `tenant` — the authority's
    /// tenant as written, a domain maybe — names the app partition (docs/design.md §4).
    /// An id token's `tid` still wins, as MSAL writes it.
    pub realm: Option<&'a str>,
    /// Another name of the records' realm (`None`: none): each access token is written
    /// under it too ([`Partition::mirror_access_token`](crate::Partition::mirror_access_token)).
    /// For a Microsoft Entra tenant named by its domain, the domain: MSAL.NET finds
    /// tokens under it, MSAL Python under the tenant id (docs/design.md §4.7).
    pub realm_alias: Option<&'a str>,
}

impl<'a> SaveRequest<'a> {
    /// A request description.
    pub fn new(
        client_id: &'a str,
        subject: SaveFor<'a>,
        environment: &'a str,
        tenant: &'a str,
        scopes: &'a [&'a str],
    ) -> Self {
        Self {
            client_id,
            subject,
            environment,
            tenant,
            scopes,
            issuer_key: None,
            realm: None,
            realm_alias: None,
        }
    }

    /// Writes each access token under realm `alias` too ([`realm_alias`](Self::realm_alias)).
    pub fn realm_alias(mut self, alias: &'a str) -> Self {
        self.realm_alias = Some(alias);
        self
    }

    /// The records' realm, when it is not the tenant ([`realm`](Self::realm)).
    pub fn realm(mut self, realm: &'a str) -> Self {
        self.realm = Some(realm);
        self
    }

    /// For a provider that is not Microsoft Entra, of issuer key `key`
    /// ([`issuer_key`](Self::issuer_key)).
    pub fn of_issuer(mut self, key: &'a str) -> Self {
        self.issuer_key = Some(key);
        self
    }
}

/// A cached access token, as a lookup returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    /// The token itself (redacted in `Debug`).
    pub secret: Secret,
    /// `Bearer` unless the token says otherwise (borrowed: no allocation on the hit path).
    pub token_type: std::borrow::Cow<'static, str>,
    /// Expiry, Unix seconds.
    pub expires_on: i64,
    /// When the provider suggests refreshing, Unix seconds.
    pub refresh_on: Option<i64>,
    /// `refresh_on` has passed: still valid, but acquire a new one soon.
    pub needs_refresh: bool,
}

/// What a save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The partition key the tokens went to (no prefix).
    pub partition: String,
    /// The user's home account id, when the response names one.
    pub home_account_id: Option<String>,
    /// The write: stored, reached L2, TTL.
    pub write: WriteOutcome,
}
