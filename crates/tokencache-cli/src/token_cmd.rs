//! `tokencache token client-credentials|obo|managed-identity`: acquire a token the way a
//! deployment would, through the cache, to check its credentials.
//!
//! Prints a secret-free summary (partition key, scopes, expiry, `source: cache` or
//! `source: provider`), or only the token with `--raw`. The client authenticates with
//! `--client-cert-file` (private_key_jwt: PEM, or PKCS#12 whose password comes from
//! `TOKENCACHE_CLIENT_CERT_PASSWORD` or `--client-cert-password-file`),
//! `--client-assertion-file` (a signed assertion read for every request: workload
//! identity federation), `--workload-identity` (Azure's `AZURE_*` variables), or a
//! secret from `TOKENCACHE_CLIENT_SECRET` (never a flag: flags show in `ps`).
//! `managed-identity` asks Azure's managed identity endpoint (App Service's
//! `IDENTITY_ENDPOINT`, else IMDS). A provider error exits 2 with one line naming the
//! OAuth error code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use tokencache::acquire::{
    AcquireError, AcquiredToken, Acquirer, AssertionKey, CertificateOptions, CertificatePassword,
    ClientCertificate, ClientCredential, ManagedIdentity, ManagedIdentityId, OboForm, OboRequest,
    WorkloadIdentity,
};
use tokencache::partition::{assertion_hash, PartitionKey};
use tokencache::{Secret, TokenCache};

/// `token` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Acquire an app token (client credentials) through the cache.
    ClientCredentials(ClientCredentialsArgs),
    /// Acquire a token on behalf of the user who sent the assertion in --assertion-file.
    Obo(OboArgs),
    /// Acquire a token of this Azure resource's managed identity (App Service's
    /// IDENTITY_ENDPOINT + IDENTITY_HEADER, else IMDS), through the cache.
    ManagedIdentity(ManagedIdentityArgs),
}

/// How the client secret is sent.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum SecretMethod {
    /// `client_secret_basic` (HTTP Basic).
    Basic,
    /// `client_secret_post` (form body).
    Post,
}

/// What every `token` command takes.
#[derive(Args, Debug)]
struct Common {
    /// The authority (issuer URL), e.g. `https://login.microsoftonline.com/TENANT/v2.0`
    /// (with --workload-identity: from AZURE_AUTHORITY_HOST and AZURE_TENANT_ID).
    #[arg(long, required_unless_present = "workload_identity")]
    authority: Option<String>,
    /// The client (application) id (with --workload-identity: AZURE_CLIENT_ID).
    #[arg(long, required_unless_present = "workload_identity")]
    client_id: Option<String>,
    /// A scope to ask for (repeat for several).
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    #[command(flatten)]
    store: StoreArgs,
    /// Authenticate with this certificate file instead of TOKENCACHE_CLIENT_SECRET: PEM
    /// (the private key, and its certificate when Entra knows the app by certificate), or
    /// PKCS#12 (`.pfx`/`.p12`, password in TOKENCACHE_CLIENT_CERT_PASSWORD or
    /// --client-cert-password-file).
    #[arg(long, conflicts_with_all = ["client_assertion_file", "workload_identity"])]
    client_cert_file: Option<PathBuf>,
    /// The key id the provider knows the --client-cert-file key by (default: the
    /// certificate's thumbprint, when the file has one).
    #[arg(long, requires = "client_cert_file")]
    client_key_id: Option<String>,
    /// The file holding the password of a PKCS#12 --client-cert-file.
    #[arg(long, requires = "client_cert_file")]
    client_cert_password_file: Option<PathBuf>,
    /// Send the certificate chain in the assertion's x5c header (Entra's subject name +
    /// issuer authentication).
    #[arg(long, requires = "client_cert_file")]
    send_x5c: bool,
    /// Authenticate with the signed client assertion in this file, read for every token
    /// request (workload identity federation; the platform rewrites the file).
    #[arg(long, conflicts_with = "workload_identity")]
    client_assertion_file: Option<PathBuf>,
    /// Azure workload identity: the authority, client id and assertion file come from
    /// AZURE_AUTHORITY_HOST, AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE.
    #[arg(long)]
    workload_identity: bool,
    /// How TOKENCACHE_CLIENT_SECRET is sent.
    #[arg(long, value_enum, default_value_t = SecretMethod::Basic)]
    secret_method: SecretMethod,
    /// Print only the access token (for piping into a request), no summary.
    #[arg(long)]
    raw: bool,
}

/// Where the cache is.
#[derive(Args, Debug)]
struct StoreArgs {
    /// The store: `redis://…`, `redb:///…`, `memory://` (default: the embedded store in
    /// the platform cache folder).
    #[arg(long, env = "TOKENCACHE_STORE", hide_env_values = true)]
    store: Option<String>,
    /// The key prefix (Redis "instance name") the applications use.
    #[arg(
        long,
        default_value = "",
        env = "TOKENCACHE_PREFIX",
        hide_env_values = true
    )]
    prefix: String,
}

/// Arguments of `token managed-identity`.
#[derive(Args, Debug)]
pub(crate) struct ManagedIdentityArgs {
    /// The resource to get a token for (e.g. `https://vault.azure.net`; a scope ending in
    /// `/.default` names its resource).
    #[arg(long)]
    resource: String,
    /// A user-assigned identity, by its client id.
    #[arg(long, conflicts_with_all = ["object_id", "resource_id"])]
    client_id: Option<String>,
    /// A user-assigned identity, by its object (principal) id.
    #[arg(long, conflicts_with = "resource_id")]
    object_id: Option<String>,
    /// A user-assigned identity, by its Azure resource id.
    #[arg(long)]
    resource_id: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    /// Print only the access token, no summary.
    #[arg(long)]
    raw: bool,
}

/// Arguments of `token client-credentials`.
#[derive(Args, Debug)]
pub(crate) struct ClientCredentialsArgs {
    #[command(flatten)]
    common: Common,
}

/// Arguments of `token obo`.
#[derive(Args, Debug)]
pub(crate) struct OboArgs {
    #[command(flatten)]
    common: Common,
    /// A file holding the incoming bearer token (the assertion), as the web API got it.
    #[arg(long)]
    assertion_file: PathBuf,
    /// Send RFC 8693 token exchange instead of Entra's jwt-bearer OBO form.
    #[arg(long)]
    token_exchange: bool,
}

pub(crate) fn run(cmd: TokenCommand) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return crate::fail(format!("cannot start the runtime: {e}")),
    };
    crate::finish(rt.block_on(acquire(cmd)))
}

/// The authority, client id and credential the flags (and the environment) name.
fn credential(c: &Common) -> Result<(String, String, ClientCredential), String> {
    if c.workload_identity {
        let w = WorkloadIdentity::from_env().map_err(|e| format!("--workload-identity: {e}"))?;
        let authority = c.authority.clone().unwrap_or_else(|| w.authority.clone());
        let client_id = c.client_id.clone().unwrap_or_else(|| w.client_id.clone());
        return Ok((authority, client_id, w.credential()));
    }
    let (Some(authority), Some(client_id)) = (c.authority.clone(), c.client_id.clone()) else {
        return Err("--authority and --client-id are needed (or --workload-identity)".into());
    };
    if let Some(path) = &c.client_assertion_file {
        return Ok((
            authority,
            client_id,
            ClientCredential::AssertionFile(path.clone()),
        ));
    }
    if let Some(path) = &c.client_cert_file {
        let pkcs12 = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("pfx") || e.eq_ignore_ascii_case("p12"));
        let options = CertificateOptions {
            send_x5c: c.send_x5c,
            key_id: c.client_key_id.clone(),
            ..CertificateOptions::default()
        };
        let credential = if pkcs12 {
            let password = match (
                &c.client_cert_password_file,
                std::env::var("TOKENCACHE_CLIENT_CERT_PASSWORD"),
            ) {
                (Some(f), _) => CertificatePassword::File(f.clone()),
                (None, Ok(p)) => CertificatePassword::Value(Secret::new(p)),
                (None, Err(_)) => CertificatePassword::None,
            };
            let cert = ClientCertificate::from_pkcs12_file(path, password, options)
                .map_err(|e| format!("--client-cert-file: {e}"))?;
            ClientCredential::Certificate(Arc::new(cert))
        } else {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --client-cert-file {}: {e}", path.display()))?;
            let key = AssertionKey::from_pem(&pem, c.client_key_id.as_deref())
                .map_err(|e| format!("--client-cert-file {}: {e}", path.display()))?
                .with_x5c(c.send_x5c);
            ClientCredential::PrivateKeyJwt(Arc::new(key))
        };
        return Ok((authority, client_id, credential));
    }
    let secret = std::env::var("TOKENCACHE_CLIENT_SECRET").map_err(|_| {
        "set TOKENCACHE_CLIENT_SECRET to the client secret, or give --client-cert-file, --client-assertion-file or --workload-identity".to_string()
    })?;
    if secret.is_empty() {
        return Err("TOKENCACHE_CLIENT_SECRET is empty".into());
    }
    let secret = Secret::new(secret);
    let credential = match c.secret_method {
        SecretMethod::Basic => ClientCredential::SecretBasic(secret),
        SecretMethod::Post => ClientCredential::SecretPost(secret),
    };
    Ok((authority, client_id, credential))
}

/// A provider or acquisition error as one line that starts with its code.
fn describe(e: &AcquireError) -> String {
    format!("{}: {e}", e.code())
}

async fn cache(store: &StoreArgs) -> Result<TokenCache, String> {
    // a one-shot command: nothing of its own written (`tokencache check` probes)
    let mut builder = TokenCache::builder()
        .key_prefix(&store.prefix)
        .probe_l2_at_start(false);
    if let Some(url) = &store.store {
        crate::stores::check_url(url)?;
        builder = builder.store_url(url);
    }
    builder.build().await.map_err(|e| e.to_string())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The summary (or the token alone with `raw`).
fn print(token: &AcquiredToken, partition: &str, what: (&str, &str), raw: bool) {
    if raw {
        outln!("{}", token.secret.expose());
        return;
    }
    let now = unix_now();
    outln!("partition: {partition}");
    outln!("{}: {}", what.0, what.1);
    outln!(
        "expires_on: {} (in {} s)",
        token.expires_on,
        token.expires_on - now
    );
    outln!("source: {}", token.source.as_str());
}

async fn managed_identity(a: &ManagedIdentityArgs) -> Result<(), String> {
    let id = match (&a.client_id, &a.object_id, &a.resource_id) {
        (Some(c), _, _) => ManagedIdentityId::ClientId(c.clone()),
        (_, Some(o), _) => ManagedIdentityId::ObjectId(o.clone()),
        (_, _, Some(r)) => ManagedIdentityId::ResourceId(r.clone()),
        _ => ManagedIdentityId::SystemAssigned,
    };
    let cache = cache(&a.store).await?;
    let mi = ManagedIdentity::builder(cache)
        .identity(id)
        .build()
        .map_err(|e| describe(&e))?;
    let token = mi.acquire(&a.resource).await.map_err(|e| describe(&e))?;
    mi.cache().two_level().recover_now().await;
    print(
        &token,
        &mi.partition_key(),
        ("resource", &a.resource),
        a.raw,
    );
    Ok(())
}

async fn acquire(cmd: TokenCommand) -> Result<(), String> {
    let (common, obo) = match &cmd {
        TokenCommand::ClientCredentials(a) => (&a.common, None),
        TokenCommand::Obo(a) => (&a.common, Some(a)),
        TokenCommand::ManagedIdentity(a) => return managed_identity(a).await,
    };
    let (authority, client_id, credential) = credential(common)?;
    let assertion = match obo {
        Some(a) => {
            let text = std::fs::read_to_string(&a.assertion_file).map_err(|e| {
                format!(
                    "cannot read --assertion-file {}: {e}",
                    a.assertion_file.display()
                )
            })?;
            let t = text.trim().to_string();
            if t.is_empty() {
                return Err(format!(
                    "--assertion-file {} is empty",
                    a.assertion_file.display()
                ));
            }
            Some(t)
        }
        None => None,
    };
    let cache = cache(&common.store).await?;
    let acquirer = Acquirer::builder(cache, &authority, &client_id, credential)
        // a command exits at once: no background refresh would finish
        .proactive_refresh(false)
        .build()
        .map_err(|e| describe(&e))?;
    let scopes: Vec<&str> = common.scopes.iter().map(String::as_str).collect();
    let (token, partition): (AcquiredToken, String) = match (&assertion, obo) {
        (Some(assertion), Some(a)) => {
            let mut r = OboRequest::new(assertion, &scopes);
            if a.token_exchange {
                r.form = OboForm::TokenExchange;
            }
            let t = acquirer
                .on_behalf_of_with(&r, &Default::default())
                .await
                .map_err(|e| describe(&e))?;
            (t, assertion_hash(assertion))
        }
        _ => {
            let t = acquirer
                .client_credentials(&scopes)
                .await
                .map_err(|e| describe(&e))?;
            let key = PartitionKey::app(&client_id, &acquirer.authority().tenant);
            (t, key.as_str().to_string())
        }
    };
    // L2 writes that failed are queued: give them their chance before exiting.
    acquirer.cache().two_level().recover_now().await;
    print(
        &token,
        &partition,
        ("scopes", &common.scopes.join(" ")),
        common.raw,
    );
    Ok(())
}
