//! The app and on-behalf-of grants: client credentials, Entra's OBO
//! (`urn:ietf:params:oauth:grant-type:jwt-bearer` + `requested_token_use=on_behalf_of`)
//! and RFC 8693 token exchange, each through the cache.

use super::acquirer::{AcquireOptions, AcquiredToken, Acquirer, Grant, Job};
use super::error::AcquireError;
use super::http::FormValue;
use crate::cache::{Lookup, Subject};
use crate::schema::Secret;

/// Entra's on-behalf-of grant type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 8693 token exchange.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 `subject_token_type` of an access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// How an on-behalf-of request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OboForm {
    /// Entra's: `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, `assertion`,
    /// `requested_token_use=on_behalf_of`.
    #[default]
    Entra,
    /// RFC 8693: `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`,
    /// `subject_token`, `subject_token_type` (an access token).
    TokenExchange,
}

/// An on-behalf-of request.
#[derive(Debug, Clone, Copy)]
pub struct OboRequest<'a> {
    /// The incoming bearer token the web API received (never logged).
    pub assertion: &'a str,
    /// The scopes wanted for the downstream API.
    pub scopes: &'a [&'a str],
    /// The form of the request.
    pub form: OboForm,
    /// The user as the web app knows them (home account id): links the OBO partition to
    /// that user's sign-out even when the assertion names them differently.
    pub user: Option<&'a str>,
    /// Long-running OBO: the tokens go to (and are read from) the session partition
    /// under this key; `user` is then required (sign-out removes the session).
    pub session_key: Option<&'a str>,
}

impl<'a> OboRequest<'a> {
    /// An Entra-form OBO request for `scopes`.
    pub fn new(assertion: &'a str, scopes: &'a [&'a str]) -> Self {
        Self {
            assertion,
            scopes,
            form: OboForm::Entra,
            user: None,
            session_key: None,
        }
    }
}

impl Acquirer {
    /// A token for the application itself (client credentials), from the app partition,
    /// else from the provider (one request however many callers wait).
    pub async fn client_credentials(&self, scopes: &[&str]) -> Result<AcquiredToken, AcquireError> {
        self.client_credentials_with(scopes, &AcquireOptions::default())
            .await
    }

    /// [`client_credentials`](Self::client_credentials) with options (forced refresh,
    /// claims).
    pub async fn client_credentials_with(
        &self,
        scopes: &[&str],
        options: &AcquireOptions,
    ) -> Result<AcquiredToken, AcquireError> {
        check_scopes(scopes)?;
        let inner = &self.inner;
        if let Some(mi) = &inner.managed {
            // one resource per managed identity token
            let [scope] = scopes else {
                return Err(AcquireError::Config(
                    "a managed identity token is for one resource: give one scope".into(),
                ));
            };
            return mi.acquire_with(scope, options).await;
        }
        if inner.realm_needs_discovery() {
            // the realm of an Entra tenant named by domain is its id, which discovery names
            inner.provider().await?;
        }
        let lookup = inner.app_lookup(scopes);
        self.serve(
            &lookup,
            || Ok(Job::new(Grant::ClientCredentials, scopes)),
            options,
        )
        .await
    }

    /// A token on behalf of the user who sent `assertion` (Entra's OBO form), from the
    /// OBO partition of that assertion, else from the provider.
    pub async fn on_behalf_of(
        &self,
        assertion: &str,
        scopes: &[&str],
    ) -> Result<AcquiredToken, AcquireError> {
        self.on_behalf_of_with(
            &OboRequest::new(assertion, scopes),
            &AcquireOptions::default(),
        )
        .await
    }

    /// A token by RFC 8693 token exchange of `subject_token` (an access token), kept in
    /// the OBO partition of that token.
    pub async fn token_exchange(
        &self,
        subject_token: &str,
        scopes: &[&str],
    ) -> Result<AcquiredToken, AcquireError> {
        let mut r = OboRequest::new(subject_token, scopes);
        r.form = OboForm::TokenExchange;
        self.on_behalf_of_with(&r, &AcquireOptions::default()).await
    }

    /// The general on-behalf-of call: either form, linked to a user, or long-running
    /// under a session key.
    pub async fn on_behalf_of_with(
        &self,
        request: &OboRequest<'_>,
        options: &AcquireOptions,
    ) -> Result<AcquiredToken, AcquireError> {
        check_scopes(request.scopes)?;
        if request.assertion.trim().is_empty() {
            return Err(AcquireError::Config("the OBO assertion is empty".into()));
        }
        if request.session_key.is_some() && request.user.is_none() {
            return Err(AcquireError::Config(
                "a long-running OBO session needs the user it belongs to (for sign-out)".into(),
            ));
        }
        if let Some(u) = request.user {
            crate::partition::check_key(u)
                .map_err(|e| AcquireError::Config(format!("user: {e}")))?;
        }
        let inner = &self.inner;
        if inner.realm_needs_discovery() {
            // an Entra tenant named by domain: its id (which the assertion must name) is
            // what discovery says
            inner.provider().await?;
        }
        // another issuer's assertion never reaches the cache or the provider
        inner.check_assertion_issuer(request.assertion)?;
        let session_key = request.session_key.map(|k| inner.session_key(k));
        let subject = match session_key.as_deref() {
            Some(k) => Subject::OboSession { session_key: k },
            None => Subject::Obo {
                assertion: request.assertion,
            },
        };
        let mut lookup = Lookup::new(&inner.client_id, subject, request.scopes)
            .environment(&inner.authority.environment)
            .tenant_alias(inner.realm_alias());
        lookup.tenant = inner.realm_filter(None);
        let job = || {
            Ok(Job::new(
                Grant::Obo {
                    assertion: Secret::new(request.assertion),
                    exchange: match request.form {
                        OboForm::Entra => None,
                        OboForm::TokenExchange => Some(ACCESS_TOKEN_TYPE.to_string()),
                    },
                    user: request.user.map(str::to_owned),
                    session_key: session_key.as_deref().map(str::to_owned),
                },
                request.scopes,
            ))
        };
        self.serve(&lookup, job, options).await
    }
}

impl Acquirer {
    /// The cache lookup [`client_credentials`](Self::client_credentials) serves from: the
    /// app partition of this authority, records of its realm (docs/design.md §4). For
    /// a service that reads the cache itself before calling the acquirer.
    pub fn app_lookup<'a>(&'a self, scopes: &'a [&'a str]) -> Lookup<'a> {
        self.inner.app_lookup(scopes)
    }

    /// The cache lookup [`on_behalf_of`](Self::on_behalf_of) serves `assertion` from,
    /// after the check it makes first: an assertion another issuer family issued (its
    /// `iss` not this provider's), or another tenant, is refused with
    /// [`AcquireError::Config`] before any cache read. For a service that reads the cache
    /// itself before calling the acquirer.
    ///
    /// `Ok(None)`: the cache may not be read for it yet — the authority names an Entra
    /// tenant by its domain and discovery has not run, so the assertion's tenant cannot
    /// be checked; call [`on_behalf_of`](Self::on_behalf_of), which discovers, checks
    /// and serves (from the cache when it can).
    ///
    /// # Errors
    /// [`AcquireError::Config`] for an assertion of another issuer or tenant.
    pub fn obo_lookup<'a>(
        &'a self,
        assertion: &'a str,
        scopes: &'a [&'a str],
    ) -> Result<Option<Lookup<'a>>, AcquireError> {
        self.inner.check_assertion_issuer(assertion)?;
        Ok(self.obo_lookup_unchecked(assertion, scopes))
    }

    /// [`obo_lookup`](Self::obo_lookup) for a caller that has decoded (and validated) the
    /// assertion already: `iss` and `tid` must be that assertion's own claims. The same
    /// check, without decoding the assertion again (a service's cache hit).
    ///
    /// # Errors
    /// As [`obo_lookup`](Self::obo_lookup).
    pub fn obo_lookup_with_claims<'a>(
        &'a self,
        assertion: &'a str,
        iss: Option<&str>,
        tid: Option<&str>,
        scopes: &'a [&'a str],
    ) -> Result<Option<Lookup<'a>>, AcquireError> {
        self.inner.check_assertion_claims(iss, tid)?;
        Ok(self.obo_lookup_unchecked(assertion, scopes))
    }

    fn obo_lookup_unchecked<'a>(
        &'a self,
        assertion: &'a str,
        scopes: &'a [&'a str],
    ) -> Option<Lookup<'a>> {
        let inner = &self.inner;
        if inner.realm_needs_discovery() {
            // the tenant id is not known yet, so the assertion's was not checked against
            // it: nothing is read (the acquirer discovers it, checks, and serves)
            return None;
        }
        let mut l = Lookup::obo(&inner.client_id, assertion, scopes)
            .environment(&inner.authority.environment)
            .tenant_alias(inner.realm_alias());
        l.tenant = inner.realm_filter(None);
        Some(l)
    }
}

fn check_scopes(scopes: &[&str]) -> Result<(), AcquireError> {
    if scopes.is_empty()
        || scopes
            .iter()
            .any(|s| s.trim().is_empty() || s.contains(' '))
    {
        return Err(AcquireError::Config(
            "at least one scope is needed, each non-empty and without spaces".into(),
        ));
    }
    Ok(())
}

/// The grant's own form fields (scope, claims and client authentication are added by
/// the caller).
pub(crate) fn form(grant: &Grant) -> Vec<(&'static str, FormValue)> {
    match grant {
        Grant::ClientCredentials => {
            vec![("grant_type", FormValue::Plain("client_credentials".into()))]
        }
        Grant::Obo {
            assertion,
            exchange: None,
            ..
        } => vec![
            ("grant_type", FormValue::Plain(JWT_BEARER.into())),
            ("assertion", FormValue::Secret(assertion.clone())),
            (
                "requested_token_use",
                FormValue::Plain("on_behalf_of".into()),
            ),
        ],
        Grant::Obo {
            assertion,
            exchange: Some(token_type),
            ..
        } => vec![
            ("grant_type", FormValue::Plain(TOKEN_EXCHANGE.into())),
            ("subject_token", FormValue::Secret(assertion.clone())),
            ("subject_token_type", FormValue::Plain(token_type.clone())),
        ],
        // redeemed by super::refresh, which adds the refresh token itself
        Grant::Refresh { .. } | Grant::Session { .. } => {
            vec![("grant_type", FormValue::Plain("refresh_token".into()))]
        }
    }
}
