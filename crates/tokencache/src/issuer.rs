//! Issuer identity: which provider a token comes from, as the cache's keys name it
//! (docs/design.md §4).
//!
//! Two families:
//!
//! * **Microsoft Entra** (`login.microsoftonline.com` and the national clouds' hosts,
//!   `*.ciamlogin.com`, `*.b2clogin.com`): the keys are Microsoft.Identity.Web's and
//!   MSAL's — the app partition is named by the authority's tenant path segment, a
//!   user by `uid.utid` / `oid.tid`, a record's `realm` is the tenant id (`tid`).
//! * **Any other OpenID provider** (Keycloak, Okta, Auth0, Google, …): everything is
//!   qualified by the issuer. Its [`issuer_key`] — a short base64url SHA-256 of the
//!   normalised issuer URL — is the realm of every record and names the app partition;
//!   a user is `{sub}.{issuer_key}` (the subject qualified by its issuer, in the shape
//!   of MSAL's `uid.utid`). Two realms of one host (`/realms/a`, `/realms/b`) never
//!   share a key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::schema::JwtClaims;

/// Characters of an [`issuer_key`]: 22 base64url characters, 132 bits of SHA-256.
pub const ISSUER_KEY_LEN: usize = 22;

/// Entra login hosts of the public and national clouds.
pub const ENTRA_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.windows.net",
    "login.microsoft.com",
    "sts.windows.net",
    "login.microsoftonline.us",
    "login.usgovcloudapi.net",
    "login.partner.microsoftonline.cn",
    "login.chinacloudapi.cn",
];

/// Whether `host` (lower-case, no port) is a Microsoft Entra host: a login host of a
/// cloud, an External ID (CIAM) host `*.ciamlogin.com`, or a B2C host `*.b2clogin.com`.
pub fn is_entra_host(host: &str) -> bool {
    ENTRA_HOSTS.contains(&host)
        || host.ends_with(".ciamlogin.com")
        || host.ends_with(".b2clogin.com")
}

/// Whether `issuer` is an `https` URL on a Microsoft Entra host.
pub fn is_entra_issuer(issuer: &str) -> bool {
    match url::Url::parse(issuer) {
        Ok(u) => u.scheme() == "https" && u.host_str().is_some_and(is_entra_host),
        Err(_) => false,
    }
}

/// The normalised form of an issuer URL: scheme and host lower-cased, the default port
/// dropped, no trailing `/`; `None` when it is not an absolute URL with a host, or has
/// a query, fragment or credentials (which no issuer has).
pub fn normalize(issuer: &str) -> Option<String> {
    let u = url::Url::parse(issuer.trim()).ok()?;
    u.host_str()?;
    if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
        return None;
    }
    Some(u.as_str().trim_end_matches('/').to_string())
}

/// The key component of a (non-Entra) issuer: base64url of SHA-256 of its normalised
/// URL ([`normalize`]; the raw string when it does not parse), first
/// [`ISSUER_KEY_LEN`] characters. `https://kc.example/realms/a` and `…/realms/b` have
/// different keys; `https://kc.example/realms/a/` and `HTTPS://KC.example/realms/a` the
/// same.
pub fn issuer_key(issuer: &str) -> String {
    let n = normalize(issuer).unwrap_or_else(|| issuer.to_string());
    let mut k = URL_SAFE_NO_PAD.encode(Sha256::digest(n.as_bytes()));
    k.truncate(ISSUER_KEY_LEN);
    k
}

/// The home account id of a user of a non-Entra issuer: `{sub}.{issuer_key(issuer)}`.
pub fn generic_home_account_id(sub: &str, issuer: &str) -> String {
    format!("{sub}.{}", issuer_key(issuer))
}

/// The home account id of the user a token's claims describe, by its issuer's family:
/// an Entra issuer (or a token naming no issuer, as before issuers were read) by
/// [`JwtClaims::home_account_id`] (`oid.tid`, a guest's home ids); any other issuer by
/// [`generic_home_account_id`] of its `sub` — never by `oid`/`tid` claims, which a
/// non-Entra issuer may send with any value. `None` when the claims name nobody.
pub fn account_of(claims: &JwtClaims) -> Option<String> {
    match claims.iss.as_deref() {
        Some(iss) if !is_entra_issuer(iss) => {
            let sub = claims.sub.as_deref().filter(|s| !s.is_empty())?;
            Some(generic_home_account_id(sub, iss))
        }
        _ => claims.home_account_id(),
    }
}

/// Whether `s` is a GUID (`8-4-4-4-12` hex digits), the form of an Entra tenant id.
/// Allocation-free: it is asked on every acquirer lookup.
pub fn is_guid(s: &str) -> bool {
    let mut parts = s.split('-');
    [8, 4, 4, 4, 12].iter().all(|&n| {
        parts
            .next()
            .is_some_and(|p| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
    }) && parts.next().is_none()
}

/// Whether an Entra tenant is one of the multi-tenant aliases (`common`,
/// `organizations`, `consumers`, any case): it names no single tenant.
pub fn is_multi_tenant(tenant: &str) -> bool {
    ["common", "organizations", "consumers"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tell_realms_of_one_host_apart_and_ignore_spelling() {
        let a = issuer_key("https://kc.example/realms/a");
        let b = issuer_key("https://kc.example/realms/b");
        assert_ne!(a, b);
        assert_eq!(a.len(), ISSUER_KEY_LEN);
        assert_eq!(a, issuer_key("https://kc.example/realms/a/"));
        assert_eq!(a, issuer_key("HTTPS://KC.EXAMPLE:443/realms/a"));
        // path case matters (Keycloak realms are case-sensitive)
        assert_ne!(a, issuer_key("https://kc.example/realms/A"));
        assert_ne!(a, issuer_key("http://kc.example/realms/a"));
        assert_ne!(a, issuer_key("https://kc.example:8443/realms/a"));
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn generic_users_are_named_by_subject_and_issuer_entra_users_by_oid_tid() {
        let generic = JwtClaims {
            sub: Some("u1".into()),
            iss: Some("https://kc.example/realms/a".into()),
            // a non-Entra issuer may send anything here: never read
            oid: Some("victim-oid".into()),
            tid: Some("victim-tid".into()),
            ..JwtClaims::default()
        };
        let home = account_of(&generic).unwrap();
        assert_eq!(
            home,
            format!("u1.{}", issuer_key("https://kc.example/realms/a"))
        );
        let other = JwtClaims {
            iss: Some("https://kc.example/realms/b".into()),
            ..generic.clone()
        };
        assert_ne!(account_of(&other).unwrap(), home);
        let entra = JwtClaims {
            sub: Some("pairwise".into()),
            iss: Some("https://login.microsoftonline.com/t1/v2.0".into()),
            oid: Some("o1".into()),
            tid: Some("t1".into()),
            ..JwtClaims::default()
        };
        assert_eq!(account_of(&entra).as_deref(), Some("o1.t1"));
        let no_sub = JwtClaims {
            sub: None,
            ..generic
        };
        assert_eq!(account_of(&no_sub), None);
    }

    #[test]
    fn entra_hosts_and_guids() {
        assert!(is_entra_issuer("https://sts.windows.net/t/"));
        assert!(is_entra_issuer("https://contoso.ciamlogin.com/t/v2.0"));
        assert!(!is_entra_issuer("http://login.microsoftonline.com/t/v2.0"));
        assert!(!is_entra_issuer(
            "https://login.microsoftonline.com.evil.example/t"
        ));
        assert!(!is_entra_issuer("not a url"));
        assert!(is_guid("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(!is_guid("contoso.onmicrosoft.com"));
        assert!(!is_guid("72f988bf-86f1-41af-91ab-2d7cd011db4"));
        assert_eq!(normalize("https://a.example/x?y=1"), None);
        assert_eq!(normalize("nope"), None);
    }
}
