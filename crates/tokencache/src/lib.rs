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

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
