//! # tokencache
//!
//! A two-level cache for OAuth 2.0 / OpenID Connect tokens, for web apps and web APIs
//! that call other APIs on behalf of their users (and daemons that call as themselves).
//!
//! * **L1** lives in the process: byte-bounded, holds *decoded* partitions, so a hit
//!   costs no parsing, no copy and no network.
//! * **L2** is shared by every replica: Redis (standalone or Cluster), or an embedded
//!   redb file when there is one machine.
//!
//! Blobs are MSAL "V3" unified-cache JSON under Microsoft.Identity.Web's keys, so a
//! Rust service can share a cache with .NET, Python and Node services.
//!
//! # Example
//!
//! A web API caches the token it got on behalf of its caller and finds it again for the
//! next request with the same incoming token (the README shows these examples without
//! their hidden lines; `crates/tokencache-cli/tests/readme.rs` keeps the two the same):
//!
//! ```rust
//! use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache, TokenResponse};
//!
//! async fn demo(store_url: &str) -> Result<(), tokencache::Error> {
//!     // An embedded file here; "redis://127.0.0.1:6379" for a Redis the replicas share.
//!     let cache = TokenCache::builder().store_url(store_url).build().await?;
//!
//!     // A web API saves what it got on behalf of the caller (the raw incoming bearer token)...
//!     let assertion = "eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDB9.sig"; // exp: 2100-01-01
//!     let response = TokenResponse::from_json(
//!         br#"{"access_token":"eyJ0eXAi.fake.token","token_type":"Bearer","expires_in":3600,
//!              "scope":"api://downstream/Orders.Read"}"#,
//!     )?;
//!     let scopes = ["api://downstream/Orders.Read"];
//!     let subject = SaveFor::Obo { assertion };
//!     let save = SaveRequest::new("api-client-id", subject, "login.microsoftonline.com", "tenant-id", &scopes);
//!     cache.save_token_response(&save, &response).await?;
//!
//!     // ...and the next request with the same incoming token is served from memory.
//!     let token = cache.find_access_token(&Lookup::obo("api-client-id", assertion, &scopes)).await?;
//!     assert!(token.is_some());
//!     Ok(())
//! }
//! # let dir = std::env::temp_dir().join(format!("tokencache-doc-{}", std::process::id()));
//! # let url = format!("redb://{}", dir.join("cache.redb").display());
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo(&url)).unwrap();
//! # let _ = std::fs::remove_dir_all(&dir);
//! ```
//!
//! Acquiring through the cache ([`acquire`], feature `acquire`, on by default), the way
//! Microsoft.Identity.Web and MSAL do:
//!
//! ```rust,no_run
//! use tokencache::acquire::{Acquirer, AuthorizationParams, ClientCredential, RefreshLockOptions};
//! use tokencache::{Secret, TokenCache};
//!
//! async fn demo(incoming_bearer_token: &str) -> Result<(), Box<dyn std::error::Error>> {
//!     let cache = TokenCache::builder().store_url("redis://127.0.0.1:6379").build().await?;
//!     let acquirer = Acquirer::builder(
//!         cache,
//!         "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0", // OIDC discovery
//!         "my-client-id",
//!         ClientCredential::SecretBasic(Secret::new(std::env::var("CLIENT_SECRET")?)),
//!     )
//!     .refresh_lock(RefreshLockOptions::default()) // replicas share the Redis: one redemption per refresh token
//!     .build()?;
//!
//!     // A daemon: the app partition; one token request however many tasks ask at once.
//!     let app = acquirer.client_credentials(&["https://graph.microsoft.com/.default"]).await?;
//!
//!     // A web API calling another on behalf of its caller: the OBO partition of the incoming token.
//!     let obo = acquirer.on_behalf_of(incoming_bearer_token, &["api://orders/Orders.Read"]).await?;
//!
//!     // A web app: sign-in with PKCE (state, nonce, S256 challenge), then silent acquisition.
//!     let pending = acquirer
//!         .authorization_url(&AuthorizationParams {
//!             redirect_uri: "https://app.example/signin-oidc",
//!             scopes: &["api://orders/Orders.Read"],
//!             login_hint: None,
//!             prompt: None,
//!         })
//!         .await?;
//!     // Redirect the browser to pending.url; the callback brings code and state back.
//!     let (code, state) = your_callback_handler(pending.url.as_str());
//!     let signed_in = acquirer.redeem_code(&pending, code, state).await?; // id token validated
//!     let token = acquirer.acquire_silent(&signed_in.home_account_id, &["api://orders/Orders.Read"]).await?;
//!     println!("{} {} {}", app.source.as_str(), obo.source.as_str(), token.source.as_str());
//!     Ok(())
//! }
//! # fn your_callback_handler(_url: &str) -> (&'static str, &'static str) { ("", "") }
//! ```
//!
//! Credentials without secrets ([`acquire::WorkloadIdentity`], certificates,
//! [`acquire::ManagedIdentity`]):
//!
//! ```rust,no_run
//! use std::sync::Arc;
//! use tokencache::acquire::{
//!     Acquirer, CertificateOptions, CertificatePassword, ClientCertificate, ClientCredential,
//!     ManagedIdentity, ManagedIdentityId, WorkloadIdentity,
//! };
//! use tokencache::{Secret, TokenCache};
//!
//! async fn credentials() -> Result<(), Box<dyn std::error::Error>> {
//!     let cache = TokenCache::builder().store_url("redis://127.0.0.1:6379").build().await?;
//!
//!     // In a Kubernetes pod with Azure workload identity: everything comes from the environment.
//!     let wi = WorkloadIdentity::from_env()?;
//!     let daemon = Acquirer::builder(cache.clone(), &wi.authority, &wi.client_id, wi.credential()).build()?;
//!     let _ = daemon.client_credentials(&["https://graph.microsoft.com/.default"]).await?;
//!
//!     // A certificate in a PKCS#12 file, its password in the environment.
//!     let cert = ClientCertificate::from_pkcs12_file(
//!         "/etc/app/client.pfx",
//!         CertificatePassword::Value(Secret::new(std::env::var("PFX_PASSWORD")?)),
//!         CertificateOptions::default(),
//!     )?;
//!     let _app = Acquirer::builder(
//!         cache.clone(),
//!         "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0",
//!         "my-client-id",
//!         ClientCredential::Certificate(Arc::new(cert)),
//!     )
//!     .build()?;
//!
//!     // On an Azure VM or App Service: the managed identity's own tokens, cached per resource.
//!     let mi = ManagedIdentity::builder(cache)
//!         .identity(ManagedIdentityId::ClientId("user-assigned-client-id".into()))
//!         .build()?; // App Service's IDENTITY_ENDPOINT, else IMDS
//!     let vault = mi.acquire("https://vault.azure.net").await?;
//!     println!("{}", vault.source.as_str());
//!     Ok(())
//! }
//! ```
//!
//! # Layout
//!
//! | module | role |
//! |---|---|
//! | [`schema`] | MSAL V3 JSON ⇄ typed records; lookups. Pure. |
//! | [`partition`] | partition keys (user, app, OBO) and tokencache's own keys. Pure. |
//! | [`protect`] | encryption at rest: the AEAD envelope bound to the L2 key, the key ring. |
//! | [`memory`] | L1: byte-bounded, per-entry expiry, `Arc` of decoded partitions. |
//! | [`store`] | the [`Store`](store::Store) trait; embedded (redb), Redis, memory backends. |
//! | [`backplane`] | cross-replica L1 invalidation: Redis pub/sub, or in process. |
//! | [`twolevel`] | L1 + L2: read path, write path, expiry, single-flight, coherence. |
//! | [`cache`] | the public [`TokenCache`] API. |
//! | [`acquire`] | token acquisition through the cache: discovery, client auth, the grants (feature `acquire`). |
//! | [`signout`] | sign-out entry points: framework-neutral, axum routes, OIDC front- and back-channel logout. |
//! | [`sample`] | realistic fake token responses (benchmarks, docs, simulation). |
//! | [`clock`] | the injected time source. |
#![warn(missing_docs)]

#[cfg(feature = "acquire")]
pub mod acquire;
pub mod backplane;
pub mod cache;
pub mod clock;
mod error;
pub mod issuer;
pub mod memory;
pub mod partition;
pub mod protect;
pub mod sample;
pub mod schema;
pub mod signout;
pub mod store;
pub mod twolevel;

pub use cache::{
    CachedToken, Lookup, SaveFor, SaveRequest, Saved, SignOut, Subject, TokenCache,
    TokenCacheBuilder,
};
pub use error::Error;
pub use protect::{KeyProvider, KeyRing, ProtectError, Protection};
pub use schema::{Partition, Secret, TokenResponse};
