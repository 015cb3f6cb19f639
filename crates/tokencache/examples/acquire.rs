//! Client credentials through the cache, twice: the first from the provider, the second
//! from memory.
//!
//! ```text
//! TOKENCACHE_CLIENT_SECRET=... cargo run -p tokencache --example acquire -- \
//!     https://login.microsoftonline.com/TENANT/v2.0 CLIENT_ID https://graph.microsoft.com/.default
//! ```
//!
//! Any OpenID provider works (its discovery document is read from
//! `AUTHORITY/.well-known/openid-configuration`); `TOKENCACHE_STORE` names a shared store
//! (default: in memory).

use tokencache::acquire::{Acquirer, ClientCredential};
use tokencache::{Secret, TokenCache};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [authority, client_id, scope] = args.as_slice() else {
        return Err(
            "usage: acquire AUTHORITY CLIENT_ID SCOPE (secret in TOKENCACHE_CLIENT_SECRET)".into(),
        );
    };
    let secret =
        std::env::var("TOKENCACHE_CLIENT_SECRET").map_err(|_| "set TOKENCACHE_CLIENT_SECRET")?;
    let store = std::env::var("TOKENCACHE_STORE").unwrap_or_else(|_| "memory://".into());
    let cache = TokenCache::builder().store_url(&store).build().await?;
    let acquirer = Acquirer::builder(
        cache,
        authority,
        client_id,
        ClientCredential::SecretBasic(Secret::new(secret)),
    )
    .build()?;
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let token = acquirer.client_credentials(&[scope.as_str()]).await?;
        println!(
            "source: {:<8} expires_on: {}  took {:?}",
            token.source.as_str(),
            token.expires_on,
            started.elapsed()
        );
    }
    Ok(())
}
