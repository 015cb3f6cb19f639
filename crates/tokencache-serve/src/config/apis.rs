//! `[apis.NAME]`: one downstream API, its credential and scopes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokencache::acquire::{
    CertificateOptions, CertificatePassword, ClientCertificate, ClientCredential,
    ManagedIdentityId, ManagedIdentitySource, OboForm, SecretFile, WorkloadIdentity,
};
use tokencache::Secret;

use super::env::{At, Reader};
use super::{Config, ConfigError};

/// Where an API's tokens come from.
#[derive(Debug)]
pub(crate) enum CredentialConfig {
    /// A token endpoint, where the client authenticates with this (secrets redacted in
    /// `Debug`).
    Client(ClientCredential),
    /// Azure managed identity (the API's app tokens come from it).
    ManagedIdentity(ManagedIdentityConfig),
    /// A token endpoint, where the client assertion is the managed identity's token for
    /// `api://AzureADTokenExchange`.
    ManagedIdentityAssertion(ManagedIdentityConfig),
}

/// Which managed identity, where (the cache is made later: the identity is built then).
#[derive(Debug, Clone)]
pub(crate) struct ManagedIdentityConfig {
    /// System- or user-assigned.
    pub(crate) id: ManagedIdentityId,
    /// App Service or IMDS, from the environment.
    pub(crate) source: ManagedIdentitySource,
}

/// One downstream API.
#[derive(Debug)]
pub(crate) struct ApiConfig {
    /// The issuer URL (empty for `credential = "managed_identity"`).
    pub(crate) authority: String,
    /// The client id (empty for `credential = "managed_identity"`).
    pub(crate) client_id: String,
    /// Where the tokens come from.
    pub(crate) credential: CredentialConfig,
    /// The default scopes.
    pub(crate) scopes: Vec<String>,
    /// The scopes a caller may ask for with `?scopes=`: `scopes` and those `allowed_scopes`
    /// adds.
    pub(crate) allowed_scopes: Vec<String>,
    /// On behalf of the caller's user (the incoming bearer token) instead of the app.
    pub(crate) on_behalf_of: bool,
    /// The OBO form (Entra's jwt-bearer, or RFC 8693 token exchange).
    pub(crate) obo_form: OboForm,
    /// An on-behalf-of API may also serve app tokens (`allow_app_token`: Microsoft's
    /// `optionsOverride.RequestAppToken`, the `...Unauthenticated` routes).
    pub(crate) allow_app_token: bool,
    /// Where calls through serve go (`base_url`, `relative_path`, ...), when configured
    /// (src/downstream.rs).
    pub(crate) downstream: Option<crate::downstream::DownstreamConfig>,
}

/// The keys of an `[apis.NAME]` table.
pub(crate) const API_KEYS: [&str; 22] = [
    "authority",
    "client_id",
    "client_secret",
    "client_secret_env",
    "client_secret_file",
    "client_cert_file",
    "client_key_id",
    "secret_method",
    "scopes",
    "allowed_scopes",
    "on_behalf_of",
    "obo_form",
    // src/downstream.rs
    "allow_app_token",
    "base_url",
    "relative_path",
    "http_method",
    "accept_header",
    "content_type",
    "downstream_timeout_ms",
    "max_request_bytes",
    "max_response_bytes",
    "max_connections",
];

/// Fails on a `TOKENCACHE_APIS__NAME__KEY` variable (of `names`, the environment's)
/// that names no configured API, or no key of one: it would be ignored silently.
pub(crate) fn check_variables(
    shown: &str,
    config: &Config,
    names: &[String],
) -> Result<(), ConfigError> {
    const PREFIX: &str = "TOKENCACHE_APIS__";
    let env_name = |api: &str| api.to_ascii_uppercase().replace('-', "_");
    for var in names.iter().filter(|n| n.starts_with(PREFIX)) {
        let rest = &var[PREFIX.len()..];
        let (api, key) = rest.split_once("__").unwrap_or((rest, ""));
        let known: Vec<&str> = config.apis.keys().map(String::as_str).collect();
        if !known.iter().any(|a| env_name(a) == api) {
            return Err(ConfigError(format!(
                "{shown}: {var}: no API named {:?} in the file (its APIs: {}); the variable would be ignored",
                api.to_ascii_lowercase(),
                known.join(", ")
            )));
        }
        if !API_KEYS.iter().any(|k| k.to_ascii_uppercase() == key) {
            return Err(ConfigError(format!(
                "{shown}: {var}: {:?} is not a key of an API (keys: {}); the variable would be ignored",
                key.to_ascii_lowercase(),
                API_KEYS.join(", ")
            )));
        }
    }
    Ok(())
}

pub(crate) fn api_config(r: &mut Reader<'_>) -> Result<ApiConfig, ConfigError> {
    let kind = r.string("credential")?;
    let authority = r.string("authority")?;
    let client_id = r.string("client_id")?;
    if let Some(at) = r.present("client_secret") {
        return Err(r.error_at(
            &at,
            "a secret is not accepted in the file: use client_secret_env or client_secret_file",
        ));
    }
    let secret_env = r.string("client_secret_env")?;
    let secret_file = r.string("client_secret_file")?;
    let cert_file = r.string("client_cert_file")?;
    let assertion_file = r.string("client_assertion_file")?;
    let cert = CertificateKeys::read(r)?;
    let method = r.string("secret_method")?;
    let mi = managed_identity_id(r)?;
    let given = [&secret_env, &secret_file, &cert_file, &assertion_file]
        .iter()
        .filter(|v| v.is_some())
        .count();
    const ONE_OF: &str = "client_secret_env, client_secret_file, client_cert_file, client_assertion_file or credential";
    let non_empty = |r: &Reader<'_>, v: Option<(String, At)>, key: &str| match v {
        Some((v, at)) if v.trim().is_empty() => Err(r.error_at(&at, "is empty")),
        Some((v, _)) => Ok(v),
        None => Err(r.error_at(&r.here(key), "missing")),
    };
    let (authority, client_id, credential) = match kind {
        Some((k, at)) => {
            if given != 0 {
                return Err(r.error_at(&at, &format!("give only one of {ONE_OF}")));
            }
            let source = |r: &Reader<'_>| {
                ManagedIdentitySource::from_lookup(r.env)
                    .map_err(|e| r.error_at(&at, &format!("managed identity: {e}")))
            };
            match k.as_str() {
                "workload_identity" => {
                    let w = WorkloadIdentity::from_lookup(r.env)
                        .map_err(|e| r.error_at(&at, &e.to_string()))?;
                    let authority = authority.map(|(v, _)| v).unwrap_or(w.authority.clone());
                    let client_id = client_id.map(|(v, _)| v).unwrap_or(w.client_id.clone());
                    (authority, client_id, CredentialConfig::Client(w.credential()))
                }
                "managed_identity" => {
                    if let Some((_, at)) = authority.as_ref().or(client_id.as_ref()) {
                        return Err(r.error_at(
                            at,
                            "not used with credential = \"managed_identity\" (the tokens come from the managed identity)",
                        ));
                    }
                    let m = ManagedIdentityConfig {
                        id: mi.unwrap_or_default(),
                        source: source(r)?,
                    };
                    (String::new(), String::new(), CredentialConfig::ManagedIdentity(m))
                }
                "managed_identity_assertion" => {
                    let m = ManagedIdentityConfig {
                        id: mi.unwrap_or_default(),
                        source: source(r)?,
                    };
                    (
                        non_empty(r, authority, "authority")?,
                        non_empty(r, client_id, "client_id")?,
                        CredentialConfig::ManagedIdentityAssertion(m),
                    )
                }
                _ => {
                    return Err(r.error_at(
                        &at,
                        "must be \"workload_identity\", \"managed_identity\" or \"managed_identity_assertion\"",
                    ))
                }
            }
        }
        None => {
            if given != 1 {
                let at = r.here("client_secret_env");
                return Err(r.error_at(
                    &at,
                    &if given == 0 {
                        format!("missing: give one of {ONE_OF}")
                    } else {
                        format!("give only one of {ONE_OF}")
                    },
                ));
            }
            let authority = non_empty(r, authority, "authority")?;
            let client_id = non_empty(r, client_id, "client_id")?;
            let post = match &method {
                None => false,
                Some((m, _)) if m == "basic" => false,
                Some((m, _)) if m == "post" => true,
                Some((_, at)) => return Err(r.error_at(at, "must be \"basic\" or \"post\"")),
            };
            let secret = |s: Secret| {
                if post {
                    ClientCredential::SecretPost(s)
                } else {
                    ClientCredential::SecretBasic(s)
                }
            };
            let credential = match (secret_env, secret_file, cert_file, assertion_file) {
                (Some((var, at)), ..) => secret(r.secret_from_env(&var, &at)?),
                (None, Some((path, at)), ..) => {
                    let f = SecretFile::open(&path).map_err(|e| r.error_at(&at, &e.to_string()))?;
                    let f = Arc::new(f);
                    if post {
                        ClientCredential::SecretFilePost(f)
                    } else {
                        ClientCredential::SecretFileBasic(f)
                    }
                }
                (None, None, Some((path, at)), _) => cert.credential(r, &path, &at)?,
                (None, None, None, Some((path, at))) => {
                    if path.trim().is_empty() {
                        return Err(r.error_at(&at, "is empty (a file path)"));
                    }
                    ClientCredential::AssertionFile(PathBuf::from(path))
                }
                (None, None, None, None) => unreachable!("one is given"),
            };
            (authority, client_id, CredentialConfig::Client(credential))
        }
    };
    let (scopes, at) = r
        .strings("scopes")?
        .ok_or_else(|| r.error_at(&r.here("scopes"), "missing (a list of scopes)"))?;
    if let Err(p) = check_scopes(&scopes) {
        return Err(r.error_at(&at, &p));
    }
    // What `?scopes=` (or `optionsOverride.Scopes`) may name: the API's scopes and
    // those `allowed_scopes` adds.
    let allowed_scopes = match r.strings("allowed_scopes")? {
        None => scopes.clone(),
        Some((extra, aat)) => {
            check_scopes(&extra).map_err(|p| r.error_at(&aat, &p))?;
            let mut all = scopes.clone();
            for s in extra {
                if !all.contains(&s) {
                    all.push(s);
                }
            }
            all
        }
    };
    let on_behalf_of = r.bool("on_behalf_of")?.unwrap_or(false);
    if let CredentialConfig::ManagedIdentity(_) = &credential {
        if on_behalf_of {
            return Err(r.error_at(
                &r.here("on_behalf_of"),
                "a managed identity acquires app tokens only",
            ));
        }
        if scopes.len() != 1 {
            return Err(r.error_at(
                &at,
                "a managed identity token is for one resource: give one scope",
            ));
        }
    }
    let obo_form = match r.string("obo_form")? {
        None => OboForm::Entra,
        Some((f, _)) if f == "entra" => OboForm::Entra,
        Some((f, _)) if f == "token_exchange" => OboForm::TokenExchange,
        Some((_, at)) => return Err(r.error_at(&at, "must be \"entra\" or \"token_exchange\"")),
    };
    let allow_app_token = crate::downstream::read_allow_app_token(r, on_behalf_of)?;
    let downstream = crate::downstream::read_config(r)?;
    Ok(ApiConfig {
        authority,
        client_id,
        credential,
        scopes,
        allowed_scopes,
        on_behalf_of,
        obo_form,
        allow_app_token,
        downstream,
    })
}

/// `managed_identity_client_id` / `_object_id` / `_resource_id`: at most one.
fn managed_identity_id(r: &mut Reader<'_>) -> Result<Option<ManagedIdentityId>, ConfigError> {
    let c = r.string("managed_identity_client_id")?;
    let o = r.string("managed_identity_object_id")?;
    let i = r.string("managed_identity_resource_id")?;
    let ids: Vec<(ManagedIdentityId, At)> = [
        c.map(|(v, at)| (ManagedIdentityId::ClientId(v), at)),
        o.map(|(v, at)| (ManagedIdentityId::ObjectId(v), at)),
        i.map(|(v, at)| (ManagedIdentityId::ResourceId(v), at)),
    ]
    .into_iter()
    .flatten()
    .collect();
    match ids.len() {
        0 => Ok(None),
        1 => {
            let (id, at) = ids.into_iter().next().expect("one");
            match &id {
                ManagedIdentityId::ClientId(v)
                | ManagedIdentityId::ObjectId(v)
                | ManagedIdentityId::ResourceId(v)
                    if v.trim().is_empty() =>
                {
                    Err(r.error_at(&at, "is empty"))
                }
                _ => Ok(Some(id)),
            }
        }
        _ => Err(r.error_at(
            &ids[1].1,
            "give one of managed_identity_client_id, managed_identity_object_id, managed_identity_resource_id",
        )),
    }
}

/// The certificate keys of an API besides `client_cert_file`.
struct CertificateKeys {
    key_file: Option<(String, At)>,
    key_id: Option<(String, At)>,
    password_env: Option<(String, At)>,
    password_file: Option<(String, At)>,
    send_x5c: bool,
}

impl CertificateKeys {
    fn read(r: &mut Reader<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            key_file: r.string("client_cert_key_file")?,
            key_id: r.string("client_key_id")?,
            password_env: r.string("client_cert_password_env")?,
            password_file: r.string("client_cert_password_file")?,
            send_x5c: r.bool("send_x5c")?.unwrap_or(false),
        })
    }

    /// The certificate credential of `client_cert_file` = `path` (checked now: an
    /// expired certificate or a key that does not match is a start-up error).
    fn credential(
        self,
        r: &Reader<'_>,
        path: &str,
        at: &At,
    ) -> Result<ClientCredential, ConfigError> {
        let options = CertificateOptions {
            send_x5c: self.send_x5c,
            key_id: self.key_id.map(|(k, _)| k),
            ..CertificateOptions::default()
        };
        let pkcs12 = Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("pfx") || e.eq_ignore_ascii_case("p12"));
        let cert = if pkcs12 {
            if let Some((_, kat)) = &self.key_file {
                return Err(r.error_at(
                    kat,
                    "a PKCS#12 file holds its key: leave client_cert_key_file out",
                ));
            }
            let password = match (self.password_env, self.password_file) {
                (Some(_), Some((_, pat))) => {
                    return Err(r.error_at(
                        &pat,
                        "give client_cert_password_env or client_cert_password_file, not both",
                    ))
                }
                (Some((var, pat)), None) => {
                    CertificatePassword::Value(r.secret_from_env(&var, &pat)?)
                }
                (None, Some((f, _))) => CertificatePassword::File(PathBuf::from(f)),
                (None, None) => CertificatePassword::None,
            };
            ClientCertificate::from_pkcs12_file(path, password, options)
        } else {
            if let Some((_, pat)) = self.password_env.as_ref().or(self.password_file.as_ref()) {
                return Err(r.error_at(
                    pat,
                    "a password is for a PKCS#12 (.pfx, .p12) client_cert_file",
                ));
            }
            match self.key_file {
                // the key beside the certificate
                Some((key, _)) => {
                    ClientCertificate::from_pem_files(key, Some(PathBuf::from(path)), options)
                }
                None => ClientCertificate::from_pem_files(path, None, options),
            }
        };
        let cert = cert.map_err(|e| r.error_at(at, &e.to_string()))?;
        Ok(ClientCredential::Certificate(Arc::new(cert)))
    }
}

/// At least one scope, each 1 to 256 visible ASCII characters (no spaces, no quotes).
pub(crate) fn check_scopes(scopes: &[String]) -> Result<(), String> {
    if scopes.is_empty() || scopes.len() > 50 {
        return Err("needs 1 to 50 scopes".into());
    }
    for s in scopes {
        let ok = (1..=256).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if !ok {
            return Err(
                "a scope is 1 to 256 visible ASCII characters, without quotes or backslashes"
                    .into(),
            );
        }
    }
    Ok(())
}
