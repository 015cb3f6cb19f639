//! `tokencache token client-credentials|obo`: acquire a token the way a deployment
//! would, through the cache, to check its credentials.
//!
//! Prints a secret-free summary (partition key, scopes, expiry, `source: cache` or
//! `source: provider`), or only the token with `--raw`. The client secret comes from
//! `TOKENCACHE_CLIENT_SECRET` (never a flag: flags show in `ps`), or the client
//! authenticates with `--client-cert-file` (private_key_jwt). A provider error exits 2
//! with one line naming the OAuth error code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use tokencache::acquire::{
    AcquireError, AcquiredToken, Acquirer, AssertionKey, ClientCredential, OboForm, OboRequest,
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
    /// The authority (issuer URL), e.g. `https://login.microsoftonline.com/TENANT/v2.0`.
    #[arg(long)]
    authority: String,
    /// The client (application) id.
    #[arg(long)]
    client_id: String,
    /// A scope to ask for (repeat for several).
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
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
    /// Authenticate with this PEM file (private key, and its certificate when Entra
    /// knows the app by certificate) instead of TOKENCACHE_CLIENT_SECRET.
    #[arg(long)]
    client_cert_file: Option<PathBuf>,
    /// The key id the provider knows the --client-cert-file key by (default: the
    /// certificate's thumbprint, when the file has one).
    #[arg(long, requires = "client_cert_file")]
    client_key_id: Option<String>,
    /// How TOKENCACHE_CLIENT_SECRET is sent.
    #[arg(long, value_enum, default_value_t = SecretMethod::Basic)]
    secret_method: SecretMethod,
    /// Print only the access token (for piping into a request), no summary.
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

fn credential(c: &Common) -> Result<ClientCredential, String> {
    if let Some(path) = &c.client_cert_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read --client-cert-file {}: {e}", path.display()))?;
        let key = AssertionKey::from_pem(&pem, c.client_key_id.as_deref())
            .map_err(|e| format!("--client-cert-file {}: {e}", path.display()))?;
        return Ok(ClientCredential::PrivateKeyJwt(Arc::new(key)));
    }
    let secret = std::env::var("TOKENCACHE_CLIENT_SECRET").map_err(|_| {
        "set TOKENCACHE_CLIENT_SECRET to the client secret, or give --client-cert-file".to_string()
    })?;
    if secret.is_empty() {
        return Err("TOKENCACHE_CLIENT_SECRET is empty".into());
    }
    let secret = Secret::new(secret);
    Ok(match c.secret_method {
        SecretMethod::Basic => ClientCredential::SecretBasic(secret),
        SecretMethod::Post => ClientCredential::SecretPost(secret),
    })
}

/// A provider or acquisition error as one line that starts with its code.
fn describe(e: &AcquireError) -> String {
    format!("{}: {e}", e.code())
}

async fn acquire(cmd: TokenCommand) -> Result<(), String> {
    let (common, obo) = match &cmd {
        TokenCommand::ClientCredentials(a) => (&a.common, None),
        TokenCommand::Obo(a) => (&a.common, Some(a)),
    };
    let credential = credential(common)?;
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
    let mut builder = TokenCache::builder().key_prefix(&common.prefix);
    if let Some(url) = &common.store {
        crate::stores::check_url(url)?;
        builder = builder.store_url(url);
    }
    let cache = builder.build().await.map_err(|e| e.to_string())?;
    let acquirer = Acquirer::builder(cache, &common.authority, &common.client_id, credential)
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
            let key = PartitionKey::app(&common.client_id, &acquirer.authority().tenant);
            (t, key.as_str().to_string())
        }
    };
    // L2 writes that failed are queued: give them their chance before exiting.
    acquirer.cache().two_level().recover_now().await;
    if common.raw {
        outln!("{}", token.secret.expose());
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    outln!("partition: {partition}");
    outln!("scopes: {}", common.scopes.join(" "));
    outln!(
        "expires_on: {} (in {} s)",
        token.expires_on,
        token.expires_on - now
    );
    outln!("source: {}", token.source.as_str());
    Ok(())
}
