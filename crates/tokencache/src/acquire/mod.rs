//! Token acquisition through the cache (feature `acquire`, on by default).
//!
//! An [`Acquirer`] is one confidential client at one authority. Each grant reads the
//! cache first and writes the result through it, into the partition MSAL and
//! Microsoft.Identity.Web would use:
//!
//! | call | grant | partition |
//! |---|---|---|
//! | [`client_credentials`](Acquirer::client_credentials) | `client_credentials` | app |
//! | [`on_behalf_of`](Acquirer::on_behalf_of) | Entra's jwt-bearer OBO | OBO (assertion hash), linked to the user |
//! | [`token_exchange`](Acquirer::token_exchange) | RFC 8693 | OBO |
//! | [`on_behalf_of_with`](Acquirer::on_behalf_of_with) + `session_key` | either | OBO session |
//! | [`acquire_in_session`](Acquirer::acquire_in_session) | the session's `refresh_token` | OBO session |
//! | [`authorization_url`](Acquirer::authorization_url) / [`redeem_code`](Acquirer::redeem_code) | `authorization_code` + PKCE | user |
//! | [`acquire_silent`](Acquirer::acquire_silent) | `refresh_token` | user |
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tokencache::acquire::{Acquirer, ClientCredential};
//! use tokencache::{Secret, TokenCache};
//!
//! let cache = TokenCache::builder().store_url("redis://127.0.0.1:6379").build().await?;
//! let acquirer = Acquirer::builder(
//!     cache,
//!     "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0",
//!     "my-client-id",
//!     ClientCredential::SecretPost(Secret::new(std::env::var("CLIENT_SECRET")?)),
//! )
//! .build()?;
//! // one request to Entra however many tasks ask at once; then served from memory
//! let token = acquirer.client_credentials(&["https://graph.microsoft.com/.default"]).await?;
//! println!("expires at {} ({})", token.expires_on, token.source.as_str());
//! # Ok(()) }
//! ```
//!
//! Concurrency and safety (docs/design.md §13): one request per (partition, scopes) in a
//! process (`single_flight.rs`); an optional L2 lock around refresh-token redemption
//! across replicas ([`lock`]); failures are never cached; a token acquired for a user who
//! signed out while the request was in flight is neither saved nor returned.
//! HTTP ([`http`]): timeouts, retries with backoff on 5xx and 429 honouring
//! `Retry-After`, typed OAuth errors ([`error`]); tokens, secrets and assertions are
//! never logged.

mod acquirer;
mod auth_code;
pub mod certificate;
pub mod client_auth;
pub mod discovery;
pub mod error;
pub mod files;
mod grants;
pub mod http;
mod id_token;
pub mod lock;
pub mod managed_identity;
mod random;
mod realms;
mod refresh;
mod retry_after;
mod single_flight;
pub mod workload_identity;

pub use acquirer::{AcquireOptions, AcquiredToken, Acquirer, AcquirerBuilder, TokenSource};
pub use auth_code::{AuthorizationParams, AuthorizationRequest, SignIn};
pub use certificate::{CertificateOptions, CertificatePassword, ClientCertificate};
pub use client_auth::{AssertionKey, ClientCredential};
pub use discovery::{Authority, Provider, ProviderMetadata};
pub use error::{AcquireError, OAuthError, OAuthErrorCode};
pub use files::SecretFile;
pub use grants::{OboForm, OboRequest, ACCESS_TOKEN_TYPE, JWT_BEARER, TOKEN_EXCHANGE};
pub use http::HttpOptions;
pub use lock::RefreshLockOptions;
pub use managed_identity::{
    ManagedIdentity, ManagedIdentityBuilder, ManagedIdentityId, ManagedIdentitySource,
};
pub use workload_identity::WorkloadIdentity;
