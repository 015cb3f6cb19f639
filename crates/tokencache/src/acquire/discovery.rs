//! Provider configuration from OpenID Connect discovery
//! (`{authority}/.well-known/openid-configuration`), with its JWKS.
//!
//! An authority is any issuer URL. Microsoft Entra v2 authorities
//! (`https://login.microsoftonline.com/{tenant}/v2.0`, and the other clouds' hosts) are
//! recognised: their tenant is the first path segment, their environment the host, as
//! MSAL stores them; the multi-tenant aliases (`common`, `organizations`, `consumers`)
//! publish an issuer template `https://login.microsoftonline.com/{tenantid}/v2.0`,
//! accepted as such.

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

/// Where an authority's tokens are kept in the cache: MSAL's environment and realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// The authority URL as given (no trailing `/`).
    pub url: url::Url,
    /// The host (with its port when not the default), lower-cased: the cache's
    /// `environment`.
    pub environment: String,
    /// The tenant: the first path segment (Entra: `{tenant}` in `/{tenant}/v2.0`), else
    /// `"default"`. The cache's `realm`; names the app partition.
    pub tenant: String,
    /// Whether the host is a Microsoft Entra login host.
    pub is_entra: bool,
}

/// Entra login hosts of the public and national clouds.
const ENTRA_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.windows.net",
    "login.microsoft.com",
    "sts.windows.net",
    "login.microsoftonline.us",
    "login.usgovcloudapi.net",
    "login.partner.microsoftonline.cn",
    "login.chinacloudapi.cn",
];

impl Authority {
    /// Parses an authority URL. It must be `https`, or `http` on a loopback host.
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
            _ => return Err(bad("only https (or http on a loopback host) is accepted")),
        }
        let environment = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let tenant = url
            .path_segments()
            .and_then(|mut s| s.next())
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        crate::partition::check_key(&tenant)
            .map_err(|e| bad(&format!("tenant {tenant:?}: {e}")))?;
        Ok(Self {
            is_entra: ENTRA_HOSTS.contains(&host.as_str()),
            url,
            environment,
            tenant,
        })
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

    /// Whether `issuer` is this authority's: equal (ignoring a trailing `/`), or Entra's
    /// multi-tenant template with `{tenantid}`.
    pub fn accepts_issuer(&self, issuer: &str) -> bool {
        let want = self.url.as_str().trim_end_matches('/');
        let got = issuer.trim_end_matches('/');
        if got == want {
            return true;
        }
        if self.is_entra {
            // e.g. https://login.microsoftonline.com/{tenantid}/v2.0 for /common/v2.0
            let template = got.replace("{tenantid}", &self.tenant);
            return template == want;
        }
        false
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

    /// Builds a provider from a discovery document already fetched.
    pub fn from_document(authority: Authority, document: &[u8]) -> Result<Self, AcquireError> {
        let bad = |reason: String| AcquireError::Discovery {
            authority: authority.url.to_string(),
            reason,
        };
        let v: serde_json::Value =
            serde_json::from_slice(document).map_err(|e| bad(format!("not JSON: {e}")))?;
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
        let issuer = s("issuer").ok_or_else(|| bad("no issuer".into()))?;
        if !authority.accepts_issuer(issuer) {
            return Err(bad(format!(
                "the document's issuer {issuer:?} is not the authority"
            )));
        }
        let endpoint = |k: &str| -> Result<Option<url::Url>, AcquireError> {
            let Some(raw) = s(k) else { return Ok(None) };
            let u = url::Url::parse(raw).map_err(|e| bad(format!("{k}: {e}")))?;
            match u.scheme() {
                "https" => Ok(Some(u)),
                "http" if is_loopback(&u) => Ok(Some(u)),
                _ => Err(bad(format!("{k} must be https"))),
            }
        };
        let token_endpoint =
            endpoint("token_endpoint")?.ok_or_else(|| bad("no token_endpoint".into()))?;
        let jwks_uri = endpoint("jwks_uri")?;
        let metadata = ProviderMetadata {
            issuer: issuer.to_string(),
            token_endpoint,
            authorization_endpoint: endpoint("authorization_endpoint")?,
            jwks_uri: jwks_uri.clone(),
            token_endpoint_auth_methods: list("token_endpoint_auth_methods_supported"),
            grant_types: list("grant_types_supported"),
        };
        let jwks = match jwks_uri {
            Some(u) => Some(Jwks::remote(u.as_str()).map_err(|e| bad(e.to_string()))?),
            None => None,
        };
        Ok(Self {
            authority,
            metadata,
            jwks,
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
        assert!(matches!(e, AcquireError::Discovery { .. }), "{e:?}");
        // a generic provider: exact issuer only
        let g = Authority::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(g.tenant, "default");
        assert_eq!(g.environment, "127.0.0.1:8080");
        assert!(g.accepts_issuer("http://127.0.0.1:8080/"));
        assert!(!g.accepts_issuer("http://127.0.0.1:8081"));
    }

    #[test]
    fn unusable_authorities_and_documents_are_refused() {
        for bad in [
            "http://login.example.com/t",
            "ftp://127.0.0.1/",
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
        for doc in [
            "[]",
            "{",
            r#"{"issuer":"https://login.example.com/t"}"#,
            r#"{"issuer":"https://login.example.com/t","token_endpoint":"http://evil.example/token"}"#,
        ] {
            assert!(
                matches!(
                    Provider::from_document(a.clone(), doc.as_bytes()),
                    Err(AcquireError::Discovery { .. })
                ),
                "{doc}"
            );
        }
    }
}
