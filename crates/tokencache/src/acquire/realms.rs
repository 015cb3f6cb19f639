//! Which records an acquirer's authority owns (docs/design.md §4.7): their realm (the
//! tenant id for Microsoft Entra — with the domain as a second name for a tenant named
//! by it — or the issuer key), the lookups that name it, and the checks that keep
//! another issuer's accounts and assertions away from this provider and its cache.

use std::borrow::Cow;

use super::acquirer::{Acquirer, Inner};
use super::error::AcquireError;
use super::http::FormValue;
use crate::cache::Lookup;
use crate::schema::{Secret, TokenResponse};

impl Acquirer {
    /// The realm a response's records are saved under (docs/design.md §4): for a
    /// provider that is not Microsoft Entra its issuer key, whatever the tokens say; for
    /// Entra the tenant id (`tid`) of the response's id token, else of its access token,
    /// else the one discovery named, else the authority's tenant — as MSAL writes it.
    pub(crate) async fn realm_of(&self, response: &TokenResponse) -> String {
        let a = &self.inner.authority;
        if !a.is_entra {
            return a.tenant.clone();
        }
        let tid = |t: &Secret| {
            crate::schema::decode_jwt_claims(t.expose())
                .ok()
                .and_then(|c| c.tid)
                .filter(|t| crate::issuer::is_guid(t))
        };
        if let Some(t) = response.id_token.as_ref().and_then(tid) {
            return t;
        }
        if let Some(t) = response.access_token.as_ref().and_then(tid) {
            return t;
        }
        match self.inner.provider().await {
            Ok(p) => p.tenant_id.clone().unwrap_or_else(|| a.tenant.clone()),
            Err(_) => a.tenant.clone(),
        }
    }
}

impl Inner {
    /// Form fields every user request (code, refresh) carries: Entra's `client_info=1`,
    /// so that the response names the account as `uid.utid`, the home account id
    /// MSAL.NET, msal-node and Microsoft.Identity.Web key the user partition by.
    pub(crate) fn user_form(&self) -> Vec<(&'static str, FormValue)> {
        if self.authority.is_entra {
            vec![("client_info", FormValue::Plain("1".into()))]
        } else {
            Vec::new()
        }
    }

    /// The realm (`tenant`) lookups of this authority's records name (docs/design.md §4):
    /// the issuer key for a provider that is not Microsoft Entra; for Entra the tenant id
    /// — the authority's when it is a GUID, the account's home tenant (`home`'s part after
    /// the last `.`) for the multi-tenant aliases, the one discovery named for a tenant
    /// named by domain (when discovery ran) — else `None` (the records' one tenant).
    pub(crate) fn realm_filter<'a>(&'a self, home: Option<&'a str>) -> Option<&'a str> {
        let a = &self.authority;
        if !a.is_entra || crate::issuer::is_guid(&a.tenant) {
            return Some(&a.tenant);
        }
        if crate::issuer::is_multi_tenant(&a.tenant) {
            return home
                .and_then(|h| h.rsplit_once('.'))
                .map(|(_, t)| t)
                .filter(|t| crate::issuer::is_guid(t));
        }
        self.provider.get().and_then(|p| p.tenant_id.as_deref())
    }

    /// Whether the authority is a Microsoft Entra tenant named by its domain (not by its
    /// id, nor a multi-tenant alias): its records' realm is the tenant id discovery names.
    fn named_by_domain(&self) -> bool {
        let a = &self.authority;
        a.is_entra
            && self.managed.is_none()
            && !crate::issuer::is_guid(&a.tenant)
            && !crate::issuer::is_multi_tenant(&a.tenant)
    }

    /// Whether the realm of this authority's records is only known after discovery (an
    /// Entra tenant named by its domain).
    pub(crate) fn realm_needs_discovery(&self) -> bool {
        self.named_by_domain() && self.provider.get().is_none()
    }

    /// The other name of the realm [`realm_filter`](Self::realm_filter) names, for an
    /// Entra tenant named by its domain: the domain, as the authority writes it
    /// (docs/design.md §4.7). MSAL.NET writes and looks up every record under it, and
    /// msal-node its app tokens, where MSAL Python uses the tenant id: lookups match
    /// records of either, and each access token is written under both. `None` otherwise.
    pub(crate) fn realm_alias(&self) -> Option<&str> {
        self.named_by_domain()
            .then_some(self.authority.tenant.as_str())
    }

    /// The app partition lookup of `scopes` (client credentials): the partition of the
    /// authority's tenant; records of its realm ([`realm_filter`](Self::realm_filter)),
    /// or, when that is not known yet, of any realm in the partition (they are all of
    /// that tenant: the partition is named by it).
    pub(crate) fn app_lookup<'a>(&'a self, scopes: &'a [&'a str]) -> Lookup<'a> {
        let mut l = Lookup::app(&self.client_id, &self.authority.tenant, scopes)
            .environment(&self.authority.environment);
        match self.realm_filter(None) {
            Some(r) => {
                l.tenant = Some(r);
                l.tenant_alias = self.realm_alias();
            }
            None => {
                l.tenant = None;
                l.any_tenant = true;
            }
        }
        l
    }

    /// The cache's key of a long-running OBO session: the caller's key as is for
    /// Microsoft Entra (Microsoft.Identity.Web's), qualified by the issuer key for any
    /// other provider (`{key}@{issuer key}`), so that two providers' sessions of one key
    /// never share a partition (nor a refresh token).
    pub(crate) fn session_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        match self.authority.issuer_key() {
            Some(k) => Cow::Owned(format!("{key}@{k}")),
            None => Cow::Borrowed(key),
        }
    }

    /// Refuses a home account id another provider's sign-in made: for a provider that is
    /// not Microsoft Entra, one that does not end with `.{issuer key}`
    /// ([`crate::issuer::generic_home_account_id`]). Its refresh token is never sent to
    /// this provider.
    pub(crate) fn check_account_issuer(&self, home: &str) -> Result<(), AcquireError> {
        match self.authority.issuer_key() {
            Some(k) if home.rsplit_once('.').map(|(_, t)| t) != Some(k) => {
                Err(AcquireError::Config(format!(
                    "this account was not signed in at this provider ({}): its home account id does not end with the provider's issuer key .{k}",
                    self.authority.url
                )))
            }
            _ => Ok(()),
        }
    }

    /// Refuses an incoming assertion (OBO, token exchange) that another issuer family
    /// issued, before any cache lookup or token request: for a provider that is not
    /// Microsoft Entra, a JWT whose `iss` is not this authority's issuer; for Entra, one
    /// whose `iss` is not an Entra issuer, or (for an authority of one tenant id) names
    /// another tenant. An opaque assertion (not a JWT) names no issuer: it is sent as
    /// is, and its tokens are kept under this authority's realm only.
    pub(crate) fn check_assertion_issuer(&self, assertion: &str) -> Result<(), AcquireError> {
        let Ok(claims) = crate::schema::decode_jwt_claims(assertion) else {
            return Ok(());
        };
        self.check_assertion_claims(claims.iss.as_deref(), claims.tid.as_deref())
    }

    /// [`check_assertion_issuer`](Self::check_assertion_issuer) of an assertion whose
    /// `iss` and `tid` claims are these (read by a caller that decoded it already).
    pub(crate) fn check_assertion_claims(
        &self,
        iss: Option<&str>,
        tid: Option<&str>,
    ) -> Result<(), AcquireError> {
        let refuse = |why: &str| {
            Err(AcquireError::Config(format!(
                "the incoming assertion {why}: it is not for this API's provider ({})",
                self.authority.url
            )))
        };
        let Some(iss) = iss else {
            return refuse("names no issuer (iss)");
        };
        let a = &self.authority;
        if !a.is_entra {
            // The usual case first, without parsing: the issuer as discovery checked it
            // (the authority's own URL, which is already in normal form).
            let plain = a.url.query().is_none()
                && a.url.fragment().is_none()
                && a.url.username().is_empty();
            if plain && iss.trim_end_matches('/') == a.url.as_str().trim_end_matches('/') {
                return Ok(());
            }
            return match (
                crate::issuer::normalize(iss),
                crate::issuer::normalize(a.url.as_str()),
            ) {
                (Some(got), Some(want)) if got == want => Ok(()),
                _ => refuse("was issued by another issuer"),
            };
        }
        if !crate::issuer::is_entra_issuer(iss) {
            return refuse("was not issued by Microsoft Entra");
        }
        if let Some(want) = self.realm_filter(None) {
            if !tid.is_some_and(|t| t.eq_ignore_ascii_case(want)) {
                return refuse("was issued by another tenant");
            }
        }
        Ok(())
    }
}
