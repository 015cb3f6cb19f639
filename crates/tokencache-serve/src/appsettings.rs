//! `--config appsettings.json` (detected by the extension): the configuration of
//! Microsoft's token sidecar (Microsoft.Identity.Web's `AzureAd` and `DownstreamApis`
//! sections), and the same names from the environment (`AzureAd__ClientId`,
//! `DownstreamApis__graph__Scopes__0`, in any case, winning over the file), mapped onto
//! serve's own configuration: one `[apis.NAME]` per downstream API, with the `AzureAd`
//! authority, client and credential.
//!
//! | appsettings | serve |
//! |---|---|
//! | `AzureAd:Instance` + `TenantId` (or `Authority`) | `authority` = Instance/TenantId/v2.0 |
//! | `AzureAd:ClientId` | `client_id` |
//! | `AzureAd:ClientCredentials:0` `SourceType` `ClientSecret` (its `ClientSecret` from the environment) | `client_secret_env` |
//! | … `SignedAssertionFilePath` (`SignedAssertionFileDiskPath`, else `AZURE_FEDERATED_TOKEN_FILE`) | `client_assertion_file` |
//! | … `Path` (`CertificateDiskPath`, `CertificatePassword` from the environment), `AzureAd:SendX5C` | `client_cert_file`, `client_cert_password_env`, `send_x5c` |
//! | … `SignedAssertionFromManagedIdentity` (`ManagedIdentityClientId`) | `credential = "managed_identity_assertion"` |
//! | `AzureAd:Audience`, `Audiences`, `Scopes` | the inbound token checks ([`Inbound`]) |
//! | `DownstreamApis:NAME:Scopes` (a list or one space-separated string) | `scopes` |
//! | `…:RequestAppToken` | `on_behalf_of = false` (default: on behalf of the caller) |
//! | `…:BaseUrl`, `RelativePath`, `HttpMethod`, `AcceptHeader`, `ContentType` | `base_url`, `relative_path`, `http_method`, `accept_header`, `content_type` |
//! | `…:ExtraHeaderParameters:NAME` | `headers.NAME` |
//!
//! Anything else is a one-line error naming the setting (`Logging`, `AllowedHosts` and
//! `$schema` are ignored). A secret written in the file itself is refused, as in serve's
//! TOML: it comes from the environment. The file may hold `//` and `/* */` comments and
//! trailing commas, as ASP.NET's reader allows.

use std::collections::BTreeMap;

use crate::config::Env;

/// What `AzureAd` says about incoming tokens: written into the mapped configuration as
/// `[inbound]` (issuer, audiences, required scopes), so they are validated like any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Inbound {
    /// The issuer of incoming tokens (the authority).
    pub(crate) issuer: String,
    /// `Audience`, `Audiences`, else the client id and `api://<client id>`.
    pub(crate) audiences: Vec<String>,
    /// `AzureAd:Scopes`: one of them must be in an incoming token (`/Validate`).
    pub(crate) scopes: Vec<String>,
}

/// The mapping's result: serve's configuration as TOML, and how to name its keys in
/// errors as the appsettings names them.
#[derive(Debug)]
pub(crate) struct Mapped {
    /// serve's configuration (no secret in it: secrets stay in their variables).
    pub(crate) toml: String,
    /// `apis.NAME.key` → the appsettings setting it came from.
    pub(crate) names: Vec<(String, String)>,
    /// The inbound token settings.
    pub(crate) inbound: Inbound,
}

impl Mapped {
    /// An error of serve's configuration, with serve's key replaced by the setting.
    pub(crate) fn rename(&self, message: &str) -> String {
        for (ours, theirs) in &self.names {
            let key = format!(": {ours}:");
            let key_env = format!(": {ours} (from ");
            if message.contains(&key) || message.contains(&key_env) {
                return message.replacen(&key, &format!(": {theirs}:"), 1).replacen(
                    &key_env,
                    &format!(": {theirs} (from "),
                    1,
                );
            }
        }
        message.to_string()
    }
}

/// One setting: its name as written (`AzureAd:ClientId`), its value, where it came from.
#[derive(Debug, Clone)]
struct Setting {
    name: String,
    value: String,
    /// The environment variable it came from.
    var: Option<String>,
}

/// All settings by lower-case name (`azuread:clientcredentials:0:sourcetype`).
struct Settings {
    all: BTreeMap<String, Setting>,
    used: std::collections::BTreeSet<String>,
}

impl Settings {
    fn get(&mut self, name: &str) -> Option<Setting> {
        let k = name.to_ascii_lowercase();
        self.used.insert(k.clone());
        self.all.get(&k).cloned()
    }

    /// The names directly under `prefix` (`DownstreamApis` → the API names), as written.
    fn children(&self, prefix: &str) -> Vec<String> {
        let p = format!("{}:", prefix.to_ascii_lowercase());
        let mut out: Vec<String> = Vec::new();
        for (k, s) in &self.all {
            if let Some(rest) = k.strip_prefix(&p) {
                let child_len = rest.find(':').unwrap_or(rest.len());
                let shown = &s.name[p.len()..p.len() + child_len];
                if !out.iter().any(|o| o.eq_ignore_ascii_case(shown)) {
                    out.push(shown.to_string());
                }
            }
        }
        out
    }

    /// A list (`Scopes:0`, `Scopes:1`, ...) or one space-separated string.
    fn list(&mut self, name: &str) -> Option<Vec<String>> {
        if let Some(s) = self.get(name) {
            return Some(s.value.split_whitespace().map(str::to_owned).collect());
        }
        let mut indexed: Vec<(usize, String)> = Vec::new();
        for child in self.children(name) {
            let Ok(i) = child.parse::<usize>() else {
                continue;
            };
            if let Some(s) = self.get(&format!("{name}:{child}")) {
                indexed.push((i, s.value));
            }
        }
        if indexed.is_empty() {
            return None;
        }
        indexed.sort();
        Some(indexed.into_iter().map(|(_, v)| v).collect())
    }
}

/// Maps the appsettings `text` (and the environment: `vars` are the variables' names) to
/// serve's configuration, or a one-line error naming the setting.
pub(crate) fn map(text: &str, vars: &[String], env: Env<'_>) -> Result<Mapped, String> {
    let json = strip_jsonc(text);
    let root: serde_json::Value = serde_json::from_str(&json).map_err(|e| {
        format!(
            "not JSON (line {}, column {}): {}",
            e.line(),
            e.column(),
            match e.classify() {
                serde_json::error::Category::Eof => "it ends too early",
                _ => "a syntax error (the text is not repeated: it may hold a secret)",
            }
        )
    })?;
    if !root.is_object() {
        return Err("not a JSON object".into());
    }
    let mut all = BTreeMap::new();
    flatten(&root, "", &mut all);
    for var in vars {
        let lower = var.to_ascii_lowercase();
        if !(lower.starts_with("azuread__") || lower.starts_with("downstreamapis__")) {
            continue;
        }
        let Some(value) = env(var) else { continue };
        let name = var.replace("__", ":");
        all.insert(
            name.to_ascii_lowercase(),
            Setting {
                name,
                value,
                var: Some(var.clone()),
            },
        );
    }
    let mut s = Settings {
        all,
        used: Default::default(),
    };
    let mut toml = String::new();
    let mut names = Vec::new();
    let q = |v: &str| serde_json::to_string(v).unwrap_or_default();

    // AzureAd: the authority, the client, its credential
    let required = |s: &mut Settings, name: &str| -> Result<Setting, String> {
        match s.get(name) {
            Some(v) if v.value.trim().is_empty() => Err(format!("{name}: is empty")),
            Some(v) => Ok(v),
            None => Err(format!("{name}: missing")),
        }
    };
    let mut authority_name = "AzureAd:Authority".to_string();
    let authority = match s.get("AzureAd:Authority") {
        Some(a) => {
            if let Some(i) = s.get("AzureAd:Instance").or(s.get("AzureAd:TenantId")) {
                return Err(format!(
                    "{}: give Authority or Instance and TenantId, not both",
                    i.name
                ));
            }
            let a = a.value.trim().trim_end_matches('/');
            if a.ends_with("/v2.0") {
                a.to_string()
            } else {
                format!("{a}/v2.0")
            }
        }
        None => {
            let instance = s
                .get("AzureAd:Instance")
                .map(|i| i.value)
                .unwrap_or_else(|| "https://login.microsoftonline.com/".into());
            let tenant = required(&mut s, "AzureAd:TenantId")?;
            authority_name = tenant.name.clone();
            format!(
                "{}/{}/v2.0",
                instance.trim().trim_end_matches('/'),
                tenant.value.trim()
            )
        }
    };
    let client_id = required(&mut s, "AzureAd:ClientId")?;
    let mut credential = String::new();
    let mut cred_names: Vec<(&str, String)> = vec![("client_id", client_id.name.clone())];
    credential.push_str(&format!(
        "authority = {}\nclient_id = {}\n",
        q(&authority),
        q(client_id.value.trim())
    ));
    let creds = s.children("AzureAd:ClientCredentials");
    if let Some(extra) = creds.iter().find(|c| c.as_str() != "0") {
        return Err(format!(
            "AzureAd:ClientCredentials:{extra}: tokencache serve takes one credential (AzureAd:ClientCredentials:0)"
        ));
    }
    let legacy_secret = s.get("AzureAd:ClientSecret");
    match (creds.is_empty(), legacy_secret) {
        (true, Some(secret)) => {
            credential.push_str(&secret_env(&secret, "AzureAd__ClientSecret")?);
            cred_names.push(("client_secret_env", secret.name));
        }
        (true, None) => {
            return Err("AzureAd:ClientCredentials: missing (one credential: SourceType ClientSecret, SignedAssertionFilePath, Path or SignedAssertionFromManagedIdentity)".into())
        }
        (false, Some(secret)) => {
            return Err(format!("{}: give it as AzureAd:ClientCredentials:0 only", secret.name))
        }
        (false, None) => {
            let at = "AzureAd:ClientCredentials:0";
            let kind = required(&mut s, &format!("{at}:SourceType"))?;
            match kind.value.trim().to_ascii_lowercase().as_str() {
                "clientsecret" => {
                    let secret = required(&mut s, &format!("{at}:ClientSecret"))?;
                    credential.push_str(&secret_env(&secret, "AzureAd__ClientCredentials__0__ClientSecret")?);
                    cred_names.push(("client_secret_env", secret.name));
                }
                "signedassertionfilepath" => {
                    let path = s
                        .get(&format!("{at}:SignedAssertionFileDiskPath"))
                        .or_else(|| s.get(&format!("{at}:SignedAssertionFilePath")));
                    let path = match path {
                        Some(p) => {
                            cred_names.push(("client_assertion_file", p.name));
                            p.value
                        }
                        None => env("AZURE_FEDERATED_TOKEN_FILE").ok_or_else(|| {
                            format!("{at}:SignedAssertionFileDiskPath: missing (and AZURE_FEDERATED_TOKEN_FILE is not set)")
                        })?,
                    };
                    credential.push_str(&format!("client_assertion_file = {}\n", q(path.trim())));
                }
                "path" => {
                    let path = required(&mut s, &format!("{at}:CertificateDiskPath"))?;
                    credential.push_str(&format!("client_cert_file = {}\n", q(path.value.trim())));
                    cred_names.push(("client_cert_file", path.name));
                    if let Some(pw) = s.get(&format!("{at}:CertificatePassword")) {
                        let Some(var) = pw.var.clone() else {
                            return Err(format!(
                                "{}: a secret is not accepted in the file: set the environment variable AzureAd__ClientCredentials__0__CertificatePassword",
                                pw.name
                            ));
                        };
                        credential.push_str(&format!("client_cert_password_env = {}\n", q(&var)));
                        cred_names.push(("client_cert_password_env", pw.name));
                    }
                    if let Some(x5c) = s.get("AzureAd:SendX5C") {
                        credential.push_str(&format!("send_x5c = {}\n", boolean(&x5c)?));
                    }
                }
                "signedassertionfrommanagedidentity" => {
                    credential.push_str("credential = \"managed_identity_assertion\"\n");
                    if let Some(id) = s.get(&format!("{at}:ManagedIdentityClientId")) {
                        credential.push_str(&format!("managed_identity_client_id = {}\n", q(id.value.trim())));
                    }
                }
                _ => {
                    return Err(format!(
                        "{}: {:?} is not supported by tokencache serve (ClientSecret, SignedAssertionFilePath, Path or SignedAssertionFromManagedIdentity)",
                        kind.name,
                        kind.value.trim()
                    ))
                }
            }
        }
    }

    // the incoming tokens' issuer, audiences and scopes
    let mut audiences = Vec::new();
    if let Some(a) = s.get("AzureAd:Audience") {
        audiences.push(a.value.trim().to_string());
    }
    if let Some(list) = s.list("AzureAd:Audiences") {
        audiences.extend(list);
    }
    if audiences.is_empty() {
        audiences = vec![
            client_id.value.trim().to_string(),
            format!("api://{}", client_id.value.trim()),
        ];
    }
    let inbound = Inbound {
        issuer: authority.clone(),
        audiences,
        scopes: s.list("AzureAd:Scopes").unwrap_or_default(),
    };

    // one [apis.NAME] per downstream API
    let apis = s.children("DownstreamApis");
    if apis.is_empty() {
        return Err(
            "DownstreamApis: no API configured (add DownstreamApis:NAME with its Scopes)".into(),
        );
    }
    for name in apis {
        let at = format!("DownstreamApis:{name}");
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(format!(
                "{at}: an API name is 1 to 64 of a-z A-Z 0-9 _ - (it is a URL path segment)"
            ));
        }
        toml.push_str(&format!("[apis.{}]\n{credential}", q(&name)));
        for (ours, theirs) in &cred_names {
            names.push((format!("apis.{name}.{ours}"), theirs.clone()));
        }
        names.push((format!("apis.{name}.authority"), authority_name.clone()));
        let scopes = s
            .list(&format!("{at}:Scopes"))
            .ok_or_else(|| format!("{at}:Scopes: missing (the scopes of the API's tokens)"))?;
        toml.push_str(&format!(
            "scopes = [{}]\n",
            scopes.iter().map(|v| q(v)).collect::<Vec<_>>().join(", ")
        ));
        names.push((format!("apis.{name}.scopes"), format!("{at}:Scopes")));
        let app = match s.get(&format!("{at}:RequestAppToken")) {
            Some(b) => boolean(&b)?,
            None => false,
        };
        toml.push_str(&format!("on_behalf_of = {}\n", !app));
        for (theirs, ours) in [
            ("BaseUrl", "base_url"),
            ("RelativePath", "relative_path"),
            ("HttpMethod", "http_method"),
            ("AcceptHeader", "accept_header"),
            ("ContentType", "content_type"),
        ] {
            if let Some(v) = s.get(&format!("{at}:{theirs}")) {
                toml.push_str(&format!("{ours} = {}\n", q(v.value.trim())));
                names.push((format!("apis.{name}.{ours}"), v.name));
            }
        }
        let headers = s.children(&format!("{at}:ExtraHeaderParameters"));
        if !headers.is_empty() {
            let mut pairs = Vec::new();
            for h in headers {
                let v = s
                    .get(&format!("{at}:ExtraHeaderParameters:{h}"))
                    .ok_or_else(|| format!("{at}:ExtraHeaderParameters:{h}: must be a string"))?;
                pairs.push(format!("{} = {}", q(&h), q(&v.value)));
            }
            toml.push_str(&format!("headers = {{ {} }}\n", pairs.join(", ")));
        }
        toml.push('\n');
    }

    // Sidecar: only what serve does anyway
    if let Some(r) = s.get("Sidecar:AllowOutboundRedirects") {
        if boolean(&r)? {
            return Err(format!(
                "{}: tokencache serve never follows a downstream redirect",
                r.name
            ));
        }
    }
    // what is left does not map
    let ignored = |k: &str| k == "allowedhosts" || k == "$schema" || k.starts_with("logging:");
    if let Some((_, left)) = s
        .all
        .iter()
        .find(|(k, _)| !s.used.contains(*k) && !ignored(k))
    {
        return Err(format!(
            "{}: not supported by tokencache serve (see the README's appsettings.json table)",
            left.name
        ));
    }
    // AzureAd's incoming-token settings: serve's [inbound] (validated before any lookup)
    let tenant = inbound
        .issuer
        .trim_end_matches("/v2.0")
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if tokencache::issuer::is_multi_tenant(&tenant) {
        return Err(format!(
            "{authority_name}: names no single tenant ({tenant}), so incoming tokens have no one issuer to be validated against: use the tenant id, or a TOML configuration with [inbound] issuers = [the accepted tenants' issuers]"
        ));
    }
    let list = |v: &[String]| v.iter().map(|x| q(x)).collect::<Vec<_>>().join(", ");
    toml.push_str(&format!(
        "[inbound]\nissuer = {}\naudiences = [{}]\n",
        q(&inbound.issuer),
        list(&inbound.audiences)
    ));
    if !inbound.scopes.is_empty() {
        toml.push_str(&format!("required_scopes = [{}]\n", list(&inbound.scopes)));
    }
    names.push(("inbound.issuer".to_string(), authority_name.clone()));
    Ok(Mapped {
        toml,
        names,
        inbound,
    })
}

/// `client_secret_env` for a secret that came from the environment; a secret written in
/// the file is refused.
fn secret_env(secret: &Setting, var_hint: &str) -> Result<String, String> {
    match &secret.var {
        Some(var) => Ok(format!(
            "client_secret_env = {}\n",
            serde_json::to_string(var).unwrap_or_default()
        )),
        None => Err(format!(
            "{}: a secret is not accepted in the file: set the environment variable {var_hint}",
            secret.name
        )),
    }
}

fn boolean(s: &Setting) -> Result<bool, String> {
    match s.value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{}: must be true or false", s.name)),
    }
}

/// Every leaf of `v` as a setting named by its path (`a:b:0`).
fn flatten(v: &serde_json::Value, prefix: &str, out: &mut BTreeMap<String, Setting>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}:{k}")
        }
    };
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                flatten(v, &join(k), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(v, &join(&i.to_string()), out);
            }
        }
        serde_json::Value::Null => {}
        leaf => {
            let value = match leaf {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.insert(
                prefix.to_ascii_lowercase(),
                Setting {
                    name: prefix.to_string(),
                    value,
                    var: None,
                },
            );
        }
    }
}

/// JSON with `//` and `/* */` comments and trailing commas (as appsettings files are
/// written) made plain JSON; strings are left as they are.
fn strip_jsonc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                    }
                    if last == '*' && n == '/' {
                        break;
                    }
                    last = n;
                }
            }
            _ => out.push(c),
        }
    }
    // trailing commas: a comma whose next non-space character closes an object or array
    let mut cleaned = String::with_capacity(out.len());
    let mut in_string = false;
    let bytes: Vec<char> = out.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            cleaned.push(c);
            if c == '\\' && i + 1 < bytes.len() {
                cleaned.push(bytes[i + 1]);
                i += 2;
                continue;
            }
            if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            cleaned.push(c);
        } else if c == ',' {
            let next = bytes[i + 1..].iter().find(|n| !n.is_whitespace());
            if !matches!(next, Some('}') | Some(']')) {
                cleaned.push(c);
            }
        } else {
            cleaned.push(c);
        }
        i += 1;
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn map_with(
        text: &str,
        pairs: &'static [(&'static str, &'static str)],
    ) -> Result<Mapped, String> {
        let names: Vec<String> = pairs.iter().map(|(k, _)| k.to_string()).collect();
        map(text, &names, &env_of(pairs))
    }

    const SIDECAR: &str = r#"{
      "$schema": "https://example/schema.json",
      /* as Microsoft's sidecar ships it */
      "AzureAd": {
        "Instance": "https://login.microsoftonline.com/",
        "TenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47", // the tenant
        "ClientId": "6e2ab7a5-4c3b-4bd6-9a7e-1f2f3c4d5e6f",
        "ClientCredentials": [
          { "SourceType": "ClientSecret" },
        ],
      },
      "DownstreamApis": {
        "graph": {
          "BaseUrl": "https://graph.microsoft.com/v1.0/",
          "RelativePath": "me",
          "Scopes": [ "User.Read", "Mail.Read" ]
        },
        "orders": { "Scopes": "api://orders/.default", "RequestAppToken": true, "HttpMethod": "Post" }
      },
      "Logging": { "LogLevel": { "Default": "Information" } },
      "AllowedHosts": "*"
    }"#;

    #[test]
    fn microsofts_sidecar_settings_map_to_apis() {
        let m = map_with(
            SIDECAR,
            &[(
                "AzureAd__ClientCredentials__0__ClientSecret",
                "s3cret-value",
            )],
        )
        .unwrap();
        let t: toml::Table = m.toml.parse().unwrap();
        let g = t["apis"]["graph"].as_table().unwrap();
        assert_eq!(
            g["authority"].as_str(),
            Some("https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0")
        );
        assert_eq!(
            g["client_id"].as_str(),
            Some("6e2ab7a5-4c3b-4bd6-9a7e-1f2f3c4d5e6f")
        );
        assert_eq!(
            g["client_secret_env"].as_str(),
            Some("AzureAd__ClientCredentials__0__ClientSecret")
        );
        assert_eq!(g["scopes"].as_array().unwrap().len(), 2);
        assert_eq!(g["on_behalf_of"].as_bool(), Some(true));
        assert_eq!(
            g["base_url"].as_str(),
            Some("https://graph.microsoft.com/v1.0/")
        );
        assert_eq!(g["relative_path"].as_str(), Some("me"));
        let o = t["apis"]["orders"].as_table().unwrap();
        assert_eq!(o["on_behalf_of"].as_bool(), Some(false));
        assert_eq!(o["http_method"].as_str(), Some("Post"));
        assert_eq!(
            o["scopes"].as_array().unwrap()[0].as_str(),
            Some("api://orders/.default")
        );
        assert!(!m.toml.contains("s3cret-value"));
        assert_eq!(
            m.inbound.issuer,
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"
        );
        assert_eq!(
            m.inbound.audiences,
            [
                "6e2ab7a5-4c3b-4bd6-9a7e-1f2f3c4d5e6f",
                "api://6e2ab7a5-4c3b-4bd6-9a7e-1f2f3c4d5e6f"
            ]
        );
    }

    #[test]
    fn the_environment_gives_and_overrides_settings_in_any_case() {
        let m = map_with(
            "{}",
            &[
                ("AzureAd__Instance", "http://127.0.0.1:9/"),
                ("azuread__tenantid", "tenant1"),
                ("AzureAd__ClientId", "app"),
                (
                    "AzureAd__ClientCredentials__0__SourceType",
                    "SignedAssertionFilePath",
                ),
                (
                    "AzureAd__ClientCredentials__0__SignedAssertionFilePath",
                    "/var/run/token",
                ),
                ("AzureAd__Audiences__0", "api://app"),
                ("DownstreamApis__graph__Scopes__0", "User.Read"),
                ("DownstreamApis__graph__Scopes__1", "Mail.Read"),
                ("DOWNSTREAMAPIS__graph__BaseUrl", "http://127.0.0.1:10/"),
                ("PATH", "/bin"),
            ],
        )
        .unwrap();
        let t: toml::Table = m.toml.parse().unwrap();
        let g = t["apis"]["graph"].as_table().unwrap();
        assert_eq!(
            g["authority"].as_str(),
            Some("http://127.0.0.1:9/tenant1/v2.0")
        );
        assert_eq!(g["client_assertion_file"].as_str(), Some("/var/run/token"));
        assert_eq!(g["scopes"].as_array().unwrap().len(), 2);
        assert_eq!(g["base_url"].as_str(), Some("http://127.0.0.1:10/"));
        assert_eq!(m.inbound.audiences, ["api://app"]);
        // the environment wins over the file, index by index
        let m = map_with(
            r#"{"AzureAd":{"TenantId":"t","ClientId":"file-id","ClientCredentials":[{"SourceType":"SignedAssertionFilePath","SignedAssertionFileDiskPath":"/f"}]},
                "DownstreamApis":{"a":{"Scopes":["one","two"]}}}"#,
            &[("AzureAd__ClientId", "env-id"), ("DownstreamApis__a__Scopes__1", "three")],
        )
        .unwrap();
        let t: toml::Table = m.toml.parse().unwrap();
        assert_eq!(t["apis"]["a"]["client_id"].as_str(), Some("env-id"));
        assert_eq!(
            t["apis"]["a"]["scopes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect::<Vec<_>>(),
            ["one", "three"]
        );
    }

    type Pairs = &'static [(&'static str, &'static str)];

    #[test]
    fn what_does_not_map_is_one_line_naming_the_setting() {
        let base = r#""TenantId":"t","ClientId":"c","ClientCredentials":[{"SourceType":"SignedAssertionFilePath","SignedAssertionFileDiskPath":"/f"}]"#;
        let api = r#""DownstreamApis":{"a":{"Scopes":["s"]}}"#;
        let cases: Vec<(String, Pairs, &str)> = vec![
            (format!(r#"{{"AzureAd":{{"TenantId":"t","ClientId":"c","ClientCredentials":[{{"SourceType":"KeyVault","KeyVaultUrl":"https://v"}}]}},{api}}}"#), &[], "AzureAd:ClientCredentials:0:SourceType: \"KeyVault\" is not supported"),
            (format!(r#"{{"AzureAd":{{"TenantId":"t","ClientId":"c","ClientCredentials":[{{"SourceType":"ClientSecret","ClientSecret":"hunter2-secret"}}]}},{api}}}"#), &[], "AzureAd:ClientCredentials:0:ClientSecret: a secret is not accepted in the file"),
            (format!(r#"{{"AzureAd":{{{base},"TokenDecryptionCredentials":[{{"SourceType":"Path"}}]}},{api}}}"#), &[], "AzureAd:TokenDecryptionCredentials:0:SourceType: not supported by tokencache serve"),
            (format!(r#"{{"AzureAd":{{{base}}},"DownstreamApis":{{"a":{{"Scopes":["s"],"AcquireTokenOptions":{{"Tenant":"x"}}}}}}}}"#), &[], "DownstreamApis:a:AcquireTokenOptions:Tenant: not supported"),
            (format!(r#"{{"AzureAd":{{{base}}},"DownstreamApis":{{"a":{{"BaseUrl":"https://x/"}}}}}}"#), &[], "DownstreamApis:a:Scopes: missing"),
            (format!(r#"{{"AzureAd":{{{base}}}}}"#), &[], "DownstreamApis: no API configured"),
            (format!(r#"{{"AzureAd":{{"TenantId":"t","ClientCredentials":[{{"SourceType":"ClientSecret"}}]}},{api}}}"#), &[], "AzureAd:ClientId: missing"),
            (format!(r#"{{"AzureAd":{{"TenantId":"t","ClientId":"","ClientCredentials":[]}},{api}}}"#), &[], "AzureAd:ClientId: is empty"),
            (format!(r#"{{"AzureAd":{{{base}}},"DownstreamApis":{{"a b":{{"Scopes":["s"]}}}}}}"#), &[], "DownstreamApis:a b: an API name is"),
            (format!(r#"{{"AzureAd":{{{base}}},{api},"Sidecar":{{"AllowOutboundRedirects":true}}}}"#), &[], "Sidecar:AllowOutboundRedirects: tokencache serve never follows"),
            (format!(r#"{{"AzureAd":{{{base}}},{api},"Sidecar":{{"AllowOverrides":{{"GetAuthorizationHeader":false}}}}}}"#), &[], "Sidecar:AllowOverrides:GetAuthorizationHeader: not supported"),
            (format!(r#"{{"AzureAd":{{{base}}},{api}}}"#), &[("DownstreamApis__a__Nope", "1")], "DownstreamApis:a:Nope: not supported"),
            (format!(r#"{{"AzureAd":{{{base}}},"DownstreamApis":{{"a":{{"Scopes":["s"],"RequestAppToken":"yes"}}}}}}"#), &[], "DownstreamApis:a:RequestAppToken: must be true or false"),
            ("{\"AzureAd\": [1,".into(), &[], "not JSON"),
        ];
        for (text, env, want) in cases {
            let e = map_with(&text, env).unwrap_err();
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
            assert!(!e.contains('\n') && !e.contains("hunter2"), "{e:?}");
        }
    }

    #[test]
    fn comments_and_trailing_commas_are_read_strings_kept() {
        let j = strip_jsonc("{\"a\": \"x // not a comment, /* nor this */\", // c\n \"b\": [1, 2,], /* c */ \"c\": \"q\\\"//\",}");
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["a"], "x // not a comment, /* nor this */");
        assert_eq!(v["b"], serde_json::json!([1, 2]));
        assert_eq!(v["c"], "q\"//");
    }

    #[test]
    fn errors_of_the_mapped_configuration_name_the_setting() {
        let m = map_with(
            SIDECAR,
            &[("AzureAd__ClientCredentials__0__ClientSecret", "x")],
        )
        .unwrap();
        assert_eq!(
            m.rename("appsettings.json: apis.graph.base_url: must be https"),
            "appsettings.json: DownstreamApis:graph:BaseUrl: must be https"
        );
        assert_eq!(
            m.rename("appsettings.json: apis.orders.client_id: still holds the placeholder <id>"),
            "appsettings.json: AzureAd:ClientId: still holds the placeholder <id>"
        );
    }
}
