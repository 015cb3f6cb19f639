//! Provider configuration from OpenID Connect discovery
//! (`{authority}/.well-known/openid-configuration`), with its JWKS.
//!
//! An authority is any issuer URL; its cache keys follow its issuer family
//! ([`crate::issuer`], docs/design.md §4). Microsoft Entra authorities
//! (`https://login.microsoftonline.com/{tenant}/v2.0`, the other clouds' hosts, B2C,
//! External ID) are recognised: their tenant is the path's tenant segment, their
//! environment the host, as MSAL stores them; the multi-tenant aliases (`common`,
//! `organizations`, `consumers`) publish an issuer template
//! `https://login.microsoftonline.com/{tenantid}/v2.0`, accepted as such, and a tenant
//! named by domain an issuer with its tenant id, which the provider then knows
//! ([`Provider::tenant_id`]). Any other authority is keyed by its issuer, which must be
//! the authority exactly.

use super::error::AcquireError;
use super::http::Http;
use crate::signout::Jwks;

/// What tokencache uses of a discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderMetadata {
    /// `issuer`.
    pub issuer: String,
    /// `token_endpoint`.
    pub token_endpoint: url::Url,
    /// `authorization_endpoint` (authorization code flow).
    pub authorization_endpoint: Option<url::Url>,
    /// `jwks_uri` (id token validation).
    pub jwks_uri: Option<url::Url>,
    /// `token_endpoint_auth_methods_supported` (empty: not published).
    pub token_endpoint_auth_methods: Vec<String>,
    /// `grant_types_supported` (empty: not published).
    pub grant_types: Vec<String>,
}

/// Where an authority's tokens are kept in the cache (docs/design.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// The authority URL as given (no trailing `/`).
    pub url: url::Url,
    /// The host (with its port when not the default), lower-cased: the cache's
    /// `environment`.
    pub environment: String,
    /// The key component that names the app partition (`{client_id}_{tenant}_AppTokenCache`).
    /// Microsoft Entra: the tenant as the authority names it (`{tenant}` in
    /// `/{tenant}/v2.0`, a GUID, a domain or `organizations`; B2C's after `tfp/`; for an
    /// External ID host without a path, `{subdomain}.onmicrosoft.com`), as
    /// Microsoft.Identity.Web keys it. Any other provider: the issuer key
    /// ([`crate::issuer::issuer_key`] of the authority URL, which discovery checks is the
    /// issuer), which is also every record's realm: two realms of one host never share it.
    pub tenant: String,
    /// Whether the host is a Microsoft Entra host ([`crate::issuer::is_entra_host`]).
    pub is_entra: bool,
}

impl Authority {
    /// Parses an authority URL. It must be `https`, or `http` on a loopback host; a
    /// remote `http` authority is [`AcquireError::ProviderMisconfigured`].
    pub fn parse(authority: &str) -> Result<Self, AcquireError> {
        let bad = |reason: &str| AcquireError::Discovery {
            authority: crate::store::redact_url(authority),
            reason: reason.to_string(),
        };
        let trimmed = authority.trim().trim_end_matches('/');
        let url = url::Url::parse(trimmed).map_err(|e| bad(&e.to_string()))?;
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(bad("an authority has no query, fragment or credentials"));
        }
        let host = url.host_str().ok_or_else(|| bad("no host"))?.to_lowercase();
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            _ => {
                return Err(AcquireError::ProviderMisconfigured {
                    authority: crate::store::redact_url(authority),
                    reason: "only https (or http on a loopback host) is accepted".into(),
                })
            }
        }
        let environment = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let is_entra = crate::issuer::is_entra_host(&host);
        let tenant = if is_entra {
            entra_tenant(&url, &host).ok_or_else(|| bad("an Entra authority names its tenant"))?
        } else {
            crate::issuer::issuer_key(url.as_str())
        };
        crate::partition::check_key(&tenant)
            .map_err(|e| bad(&format!("tenant {tenant:?}: {e}")))?;
        Ok(Self {
            is_entra,
            url,
            environment,
            tenant,
        })
    }

    /// The issuer key of a provider that is not Microsoft Entra (its
    /// [`tenant`](Self::tenant)); `None` for Entra, whose records follow MSAL's rules.
    pub fn issuer_key(&self) -> Option<&str> {
        (!self.is_entra).then_some(self.tenant.as_str())
    }

    /// The discovery document's URL.
    pub fn discovery_url(&self) -> url::Url {
        let mut u = self.url.clone();
        let path = format!(
            "{}/.well-known/openid-configuration",
            u.path().trim_end_matches('/')
        );
        u.set_path(&path);
        u
    }

    /// Whether `issuer` is this authority's: equal (ignoring a trailing `/` and the
    /// spelling of scheme and host), or for Entra its multi-tenant template with
    /// `{tenantid}`, or for an Entra tenant named by domain the same issuer with the
    /// tenant id (a GUID) in its place (B2C and External ID: on their own hosts).
    pub fn accepts_issuer(&self, issuer: &str) -> bool {
        self.tenant_id_of_issuer(issuer).is_some()
    }

    /// [`accepts_issuer`](Self::accepts_issuer), with the tenant id the issuer names
    /// (`Some(None)`: accepted, names none — a template, or a non-Entra issuer).
    fn tenant_id_of_issuer(&self, issuer: &str) -> Option<Option<String>> {
        let want = crate::issuer::normalize(self.url.as_str())?;
        let got = crate::issuer::normalize(issuer)?;
        if !self.is_entra {
            return (got == want).then_some(None);
        }
        let parts = |s: &str| -> Option<(String, Vec<String>)> {
            let u = url::Url::parse(s).ok()?;
            if u.scheme() != "https" {
                return None;
            }
            let host = u.host_str()?.to_lowercase();
            let segs = u
                .path_segments()
                .map(|p| p.filter(|x| !x.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default();
            Some((host, segs))
        };
        let guid = |t: &str| crate::issuer::is_guid(t).then(|| t.to_lowercase());
        let (want_host, want_segs) = parts(&want)?;
        let (got_host, got_segs) = parts(&got)?;
        if got == want {
            return Some(got_segs.first().and_then(|t| guid(t)));
        }
        let tenant = self.tenant.to_lowercase();
        let (got_tenant, got_rest) = got_segs.split_first()?;
        // the multi-tenant aliases publish a template
        // (`https://login.microsoftonline.com/{tenantid}/v2.0`)
        if crate::issuer::is_multi_tenant(&tenant) {
            let rest_ok = want_segs.get(1..).unwrap_or_default() == got_rest;
            let template = got_tenant.eq_ignore_ascii_case("%7Btenantid%7D");
            return (template && got_host == want_host && rest_ok).then_some(None);
        }
        // otherwise the issuer names the tenant id: the authority's own when it is one,
        // else (a tenant named by domain) the one it stands for
        let tid = guid(got_tenant)?;
        if crate::issuer::is_guid(&tenant) && tid != tenant {
            return None;
        }
        let host_ok = got_host == want_host
            || (want_host.ends_with(".ciamlogin.com") && got_host.ends_with(".ciamlogin.com"))
            || (got_host == "sts.windows.net"
                && crate::issuer::ENTRA_HOSTS.contains(&want_host.as_str()));
        let rest_ok = if got_host == "sts.windows.net" {
            got_rest.is_empty() && want_segs.len() == 1
        } else {
            got_rest == ["v2.0"]
                && (want_segs.is_empty() || want_segs.last().is_some_and(|l| l == "v2.0"))
                || got_rest.is_empty() && want_segs.len() == 1
        };
        (host_ok && rest_ok).then_some(Some(tid))
    }
}

/// The tenant of an Entra authority as MSAL names it (see [`Authority::tenant`]).
fn entra_tenant(url: &url::Url, host: &str) -> Option<String> {
    let mut segs = url.path_segments()?.filter(|s| !s.is_empty());
    match segs.next() {
        Some(t) if t.eq_ignore_ascii_case("tfp") => segs.next().map(str::to_owned),
        Some(t) => Some(t.to_owned()),
        None => host
            .strip_suffix(".ciamlogin.com")
            .map(|sub| format!("{sub}.onmicrosoft.com")),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A provider: its authority, metadata and (when it publishes one) key set.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The authority.
    pub authority: Authority,
    /// Its discovery document.
    pub metadata: ProviderMetadata,
    /// Its keys, fetched on first use and cached (see [`Jwks::remote`]).
    pub jwks: Option<Jwks>,
    /// Microsoft Entra: the tenant id (a GUID) the issuer names, when it names one (not
    /// for the multi-tenant aliases, whose tokens say their tenant). `None` for other
    /// providers.
    pub tenant_id: Option<String>,
}

impl Provider {
    /// Fetches the discovery document of `authority` and checks it.
    pub(crate) async fn discover(http: &Http, authority: &str) -> Result<Self, AcquireError> {
        let authority = Authority::parse(authority)?;
        let body =
            http.get(&authority.discovery_url())
                .await
                .map_err(|e| AcquireError::Discovery {
                    authority: authority.url.to_string(),
                    reason: e.to_string(),
                })?;
        Self::from_document(authority, &body)
    }

    /// Fetches the discovery document of `authority` (any OpenID issuer URL: `https`,
    /// or `http` on a loopback host) over a client with these options, and checks it
    /// (its `issuer` must be the authority). Its [`jwks`](Self::jwks) fetches the keys
    /// on first use.
    pub async fn fetch(
        authority: &str,
        options: super::http::HttpOptions,
    ) -> Result<Self, AcquireError> {
        let http = Http::new(options)?;
        Self::discover(&http, authority).await
    }

    /// Builds a provider from a discovery document already fetched. A document that is
    /// not a JSON object is [`AcquireError::Discovery`] (a proxy's error page: it may
    /// pass); one that names another issuer, has no `token_endpoint` or `jwks_uri`, or
    /// a non-HTTPS one, is [`AcquireError::ProviderMisconfigured`].
    pub fn from_document(authority: Authority, document: &[u8]) -> Result<Self, AcquireError> {
        let shown = authority.url.to_string();
        let misconfigured = |reason: String| AcquireError::ProviderMisconfigured {
            authority: shown.clone(),
            reason,
        };
        let not_json = |reason: String| AcquireError::Discovery {
            authority: shown.clone(),
            reason,
        };
        let v: serde_json::Value =
            serde_json::from_slice(document).map_err(|e| not_json(format!("not JSON: {e}")))?;
        if !v.is_object() {
            return Err(not_json(
                "the discovery document is not a JSON object".into(),
            ));
        }
        let s = |k: &str| v.get(k).and_then(|x| x.as_str());
        let list = |k: &str| -> Vec<String> {
            v.get(k)
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let issuer = s("issuer").ok_or_else(|| misconfigured("no issuer".into()))?;
        let Some(tenant_id) = authority.tenant_id_of_issuer(issuer) else {
            return Err(misconfigured(format!(
                "the discovery document's issuer {issuer:?} is not the authority {shown:?}"
            )));
        };
        let endpoint = |k: &str| -> Result<Option<url::Url>, AcquireError> {
            let Some(raw) = s(k) else { return Ok(None) };
            let u = url::Url::parse(raw).map_err(|e| misconfigured(format!("{k}: {e}")))?;
            match u.scheme() {
                "https" => Ok(Some(u)),
                "http" if is_loopback(&u) => Ok(Some(u)),
                _ => Err(misconfigured(format!("{k} must be https"))),
            }
        };
        let token_endpoint = endpoint("token_endpoint")?
            .ok_or_else(|| misconfigured("the discovery document has no token_endpoint".into()))?;
        let jwks_uri = endpoint("jwks_uri")?
            .ok_or_else(|| misconfigured("the discovery document has no jwks_uri".into()))?;
        let metadata = ProviderMetadata {
            issuer: issuer.to_string(),
            token_endpoint,
            authorization_endpoint: endpoint("authorization_endpoint")?,
            jwks_uri: Some(jwks_uri.clone()),
            token_endpoint_auth_methods: list("token_endpoint_auth_methods_supported"),
            grant_types: list("grant_types_supported"),
        };
        let jwks = Jwks::remote(jwks_uri.as_str()).map_err(|e| misconfigured(e.to_string()))?;
        Ok(Self {
            authority,
            metadata,
            jwks: Some(jwks),
            tenant_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Entra's v2 discovery document for a tenant (trimmed to what is read).
    fn entra_document(tenant: &str, issuer_tenant: &str) -> String {
        format!(
            r#"{{"token_endpoint":"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported":["client_secret_post","private_key_jwt","client_secret_basic"],
            "jwks_uri":"https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys",
            "authorization_endpoint":"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
            "issuer":"https://login.microsoftonline.com/{issuer_tenant}/v2.0",
            "end_session_endpoint":"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/logout"}}"#
        )
    }

    #[test]
    fn entra_v2_authorities_name_their_tenant_and_cloud() {
        let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let a =
            Authority::parse(&format!("https://login.microsoftonline.com/{tid}/v2.0/")).unwrap();
        assert!(a.is_entra);
        assert_eq!(a.environment, "login.microsoftonline.com");
        assert_eq!(a.tenant, tid);
        assert_eq!(
            a.discovery_url().as_str(),
            format!(
                "https://login.microsoftonline.com/{tid}/v2.0/.well-known/openid-configuration"
            )
        );
        let p = Provider::from_document(a, entra_document(tid, tid).as_bytes()).unwrap();
        assert_eq!(
            p.metadata.token_endpoint.as_str(),
            format!("https://login.microsoftonline.com/{tid}/oauth2/v2.0/token")
        );
        assert!(p.jwks.is_some());
        assert!(p
            .metadata
            .token_endpoint_auth_methods
            .contains(&"private_key_jwt".to_string()));
        // national cloud
        let us = Authority::parse("https://login.microsoftonline.us/contoso.onmicrosoft.us/v2.0")
            .unwrap();
        assert!(us.is_entra);
        assert_eq!(us.tenant, "contoso.onmicrosoft.us");
    }

    #[test]
    fn entra_multi_tenant_issuer_template_is_accepted_and_other_issuers_refused() {
        let a = Authority::parse("https://login.microsoftonline.com/common/v2.0").unwrap();
        assert_eq!(a.tenant, "common");
        Provider::from_document(a.clone(), entra_document("common", "{tenantid}").as_bytes())
            .unwrap();
        let e =
            Provider::from_document(a, entra_document("common", "another").as_bytes()).unwrap_err();
        assert!(
            matches!(e, AcquireError::ProviderMisconfigured { .. }),
            "{e:?}"
        );
        // a generic provider: exact issuer only; its tenant is its issuer key
        let g = Authority::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(g.tenant, crate::issuer::issuer_key("http://127.0.0.1:8080"));
        assert_eq!(g.issuer_key(), Some(g.tenant.as_str()));
        assert_eq!(g.environment, "127.0.0.1:8080");
        assert!(g.accepts_issuer("http://127.0.0.1:8080/"));
        assert!(!g.accepts_issuer("http://127.0.0.1:8081"));
        assert!(!g.accepts_issuer("http://localhost:8080"));
    }

    #[test]
    fn realms_of_one_host_and_providers_without_tenants_get_their_issuers_keys() {
        let a = Authority::parse("https://kc.example/realms/prod").unwrap();
        let b = Authority::parse("https://kc.example/realms/staging").unwrap();
        assert!(!a.is_entra);
        assert_ne!(a.tenant, b.tenant, "Keycloak realms share no key");
        assert_ne!(a.tenant, "realms");
        let okta1 = Authority::parse("https://acme.okta.com/oauth2/aus1").unwrap();
        let okta2 = Authority::parse("https://acme.okta.com/oauth2/default").unwrap();
        assert_ne!(okta1.tenant, okta2.tenant);
        let auth0 = Authority::parse("https://acme.eu.auth0.com/").unwrap();
        let google = Authority::parse("https://accounts.google.com").unwrap();
        assert_ne!(auth0.tenant, google.tenant);
        assert_ne!(google.tenant, "default");
        // another realm's document is refused as misconfigured
        let doc = r#"{"issuer":"https://kc.example/realms/staging","token_endpoint":"https://kc.example/t","jwks_uri":"https://kc.example/k"}"#;
        let e = Provider::from_document(a, doc.as_bytes()).unwrap_err();
        assert!(
            matches!(e, AcquireError::ProviderMisconfigured { .. }),
            "{e:?}"
        );
        Provider::from_document(b, doc.as_bytes()).unwrap();
    }

    #[test]
    fn entra_tenants_named_by_domain_learn_their_id_from_the_issuer() {
        let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let a = Authority::parse("https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0")
            .unwrap();
        assert_eq!(a.tenant, "contoso.onmicrosoft.com");
        assert_eq!(a.issuer_key(), None);
        let p = Provider::from_document(
            a.clone(),
            entra_document("contoso.onmicrosoft.com", tid).as_bytes(),
        )
        .unwrap();
        assert_eq!(p.tenant_id.as_deref(), Some(tid));
        // a GUID authority names its own id; another tenant's issuer is refused
        let g = Authority::parse(&format!("https://login.microsoftonline.com/{tid}/v2.0")).unwrap();
        let p = Provider::from_document(g.clone(), entra_document(tid, tid).as_bytes()).unwrap();
        assert_eq!(p.tenant_id.as_deref(), Some(tid));
        let other = "11111111-2222-3333-4444-555555555555";
        assert!(!g.accepts_issuer(&format!("https://login.microsoftonline.com/{other}/v2.0")));
        // a v1 authority's issuer is sts.windows.net
        let v1 = Authority::parse("https://login.microsoftonline.com/contoso.com").unwrap();
        assert!(v1.accepts_issuer(&format!("https://sts.windows.net/{tid}/")));
        assert!(!a.accepts_issuer(&format!("https://sts.windows.net/{tid}/")));
        // not an Entra host, not https: refused
        assert!(!a.accepts_issuer(&format!("https://evil.example/{tid}/v2.0")));
        assert!(!a.accepts_issuer(&format!("http://login.microsoftonline.com/{tid}/v2.0")));
        // B2C and External ID
        let b2c = Authority::parse(
            "https://contoso.b2clogin.com/tfp/contoso.onmicrosoft.com/B2C_1_signin/v2.0",
        )
        .unwrap();
        assert!(b2c.is_entra);
        assert_eq!(b2c.tenant, "contoso.onmicrosoft.com");
        assert!(b2c.accepts_issuer(&format!("https://contoso.b2clogin.com/{tid}/v2.0/")));
        let ciam = Authority::parse("https://contoso.ciamlogin.com/").unwrap();
        assert_eq!(ciam.tenant, "contoso.onmicrosoft.com");
        assert!(ciam.accepts_issuer(&format!("https://{tid}.ciamlogin.com/{tid}/v2.0")));
    }

    #[test]
    fn unusable_authorities_and_documents_are_refused() {
        for remote_http in ["http://login.example.com/t", "ftp://127.0.0.1/"] {
            assert!(
                matches!(
                    Authority::parse(remote_http),
                    Err(AcquireError::ProviderMisconfigured { .. })
                ),
                "{remote_http}"
            );
        }
        for bad in [
            "https://u:p@login.example.com/t",
            "https://login.example.com/t?x=1",
            "not a url",
        ] {
            assert!(
                matches!(Authority::parse(bad), Err(AcquireError::Discovery { .. })),
                "{bad}"
            );
        }
        let a = Authority::parse("https://login.example.com/t").unwrap();
        for doc in ["[]", "{"] {
            assert!(
                matches!(
                    Provider::from_document(a.clone(), doc.as_bytes()),
                    Err(AcquireError::Discovery { .. })
                ),
                "{doc}"
            );
        }
        for doc in [
            r#"{"issuer":"https://login.example.com/t"}"#,
            r#"{"issuer":"https://login.example.com/t","token_endpoint":"http://evil.example/token","jwks_uri":"https://login.example.com/k"}"#,
            r#"{"issuer":"https://login.example.com/t","token_endpoint":"https://login.example.com/token"}"#,
            r#"{"issuer":"https://login.example.com/other","token_endpoint":"https://login.example.com/token","jwks_uri":"https://login.example.com/k"}"#,
            r#"{"token_endpoint":"https://login.example.com/token","jwks_uri":"https://login.example.com/k"}"#,
        ] {
            assert!(
                matches!(
                    Provider::from_document(a.clone(), doc.as_bytes()),
                    Err(AcquireError::ProviderMisconfigured { .. })
                ),
                "{doc}"
            );
        }
    }
}
