//! The public [`TokenCache`] API.
//!
//! A token cache for confidential clients: find a cached access token, save a token
//! response, remove an account. It knows which partition each grant belongs to (user,
//! app, OBO) and what the token-derived expiry of each is; everything below it only
//! moves partitions.
//!
//! ```
//! # async fn demo() -> Result<(), tokencache::Error> {
//! use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache, TokenResponse};
//!
//! // The embedded store in a temporary folder; `TokenCache::builder().build()` uses
//! // a file in the platform cache folder, `.store_url("redis://...")` a shared Redis.
//! let dir = std::env::temp_dir().join(format!("tokencache-doc-{}", std::process::id()));
//! let cache = TokenCache::builder()
//!     .store_url(&format!("redb://{}", dir.join("cache.redb").display()))
//!     .build()
//!     .await?;
//!
//! // A daemon saves the response of a client-credentials grant...
//! let response = TokenResponse::from_json(
//!     br#"{"access_token":"eyJ0eXAi.fake.token","token_type":"Bearer","expires_in":3600}"#,
//! )?;
//! let scopes = ["https://graph.microsoft.com/.default"];
//! let request = SaveRequest::new("my-client-id", SaveFor::App, "login.microsoftonline.com", "my-tenant", &scopes);
//! cache.save_token_response(&request, &response).await?;
//!
//! // ...and finds it again, from memory, in well under a microsecond.
//! let token = cache
//!     .find_access_token(&Lookup::app("my-client-id", "my-tenant", &scopes))
//!     .await?
//!     .expect("cached");
//! assert!(token.expires_on > 0);
//! # drop(cache); let _ = std::fs::remove_dir_all(&dir);
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::partition::{
    check_key, session_partition_key, AssertionKeys, KeyError, PartitionKey, PartitionKind,
};
use crate::schema::{
    decode_jwt_claims, AccessTokenQuery, Ambiguous, AppAccountForm, Partition, RefreshTokenQuery,
    Secret, TokenRequest, TokenResponse,
};
use crate::twolevel::{EntryContext, StampWritten, Stats, TwoLevel, WriteScope, MAX_TTL};

mod builder;
mod request;

pub use builder::TokenCacheBuilder;
pub use request::{CachedToken, Lookup, SaveFor, SaveRequest, Saved, Subject};

/// The token cache: L1 in process over a shared L2 store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TokenCache {
    two: Arc<TwoLevel>,
    skew_secs: i64,
    /// The form of an empty `home_account_id` in partitions this cache creates.
    app_account_form: AppAccountForm,
    /// OBO partition keys of recently seen assertions (no SHA-256 on an OBO L1 hit).
    obo_keys: Arc<AssertionKeys>,
}

/// What a sign-out removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignOut {
    /// OBO partitions that were linked to the user.
    pub obo_partitions: usize,
    /// Keys L2 actually deleted (user partition, OBO partitions, link set).
    pub l2_keys_removed: u64,
    /// Every L2 step succeeded (false: L2 failed; this replica's L1 is clean and the
    /// stamp refuses older tokens here, but L2 may still hold keys).
    pub l2_complete: bool,
}

/// A resolved partition: kind, bare key, and the OBO assertion hash if any.
struct Target {
    kind: PartitionKind,
    key: String,
    /// Its context; `ctx.owner`: the user the partition belongs to (`oid.tid`), for the
    /// link set, the revocation stamp and the write's scope.
    ctx: EntryContext,
}

impl TokenCache {
    /// A builder with the defaults (embedded store, 256 MiB L1, token-derived expiry).
    pub fn builder() -> TokenCacheBuilder {
        TokenCacheBuilder::new()
    }

    /// The two-level layer underneath (stats, L1, store).
    pub fn two_level(&self) -> &Arc<TwoLevel> {
        &self.two
    }

    /// Counters: hits and misses per level, L2 errors.
    pub fn stats(&self) -> Stats {
        self.two.stats()
    }

    /// The cached access token for `lookup`, or `None` (then acquire a new one).
    /// L2 failures are not errors here: they are logged and read as a miss.
    pub async fn find_access_token(
        &self,
        lookup: &Lookup<'_>,
    ) -> Result<Option<CachedToken>, Error> {
        if lookup.client_id.is_empty() || lookup.scopes.is_empty() {
            return Err(Error::InvalidRequest(
                "a lookup needs a client id and at least one scope".into(),
            ));
        }
        // No allocation before the L1 lookup for users; OBO hashes the assertion (the
        // key) and decodes its claims only for a miss or a pending revocation.
        match lookup.subject {
            Subject::User(id) => {
                check_key(id).map_err(|e| bad_key("home account id", e))?;
                let owner = || Some(id.to_string());
                let ctx = || EntryContext::of_owner(id);
                self.find_in(id, PartitionKind::User, ctx, lookup, None, owner)
                    .await
            }
            Subject::OboSession { session_key } => {
                let key = session_partition_key(session_key);
                let (kind, ctx) = (PartitionKind::OboSession, EntryContext::default);
                self.find_in(&key, kind, ctx, lookup, None, || None).await
            }
            Subject::App { tenant } => {
                let key = PartitionKey::app(lookup.client_id, tenant);
                check_key(key.as_str()).map_err(|e| bad_key("app partition key", e))?;
                let ctx = EntryContext::default;
                self.find_in(key.as_str(), PartitionKind::App, ctx, lookup, None, || None)
                    .await
            }
            Subject::Obo { assertion } => {
                let hash = self.obo_keys.key(assertion);
                let ctx = || obo_context(assertion);
                let owner = || obo_owner(assertion);
                self.find_in(&hash, PartitionKind::Obo, ctx, lookup, Some(&hash), owner)
                    .await
            }
        }
    }

    async fn find_in(
        &self,
        key: &str,
        kind: PartitionKind,
        ctx: impl FnOnce() -> EntryContext,
        lookup: &Lookup<'_>,
        assertion_hash: Option<&str>,
        owner: impl FnOnce() -> Option<String>,
    ) -> Result<Option<CachedToken>, Error> {
        let now_ms = self.two.clock().now_millis();
        let Some(partition) = self.two.get_lazy(kind, key, ctx, now_ms).await else {
            return Ok(None);
        };
        // A sign-out refuses what was written at or before it: to the millisecond for
        // the records tokencache wrote, by the second for others'.
        let revoked_at = if self.two.any_revocation() {
            owner().and_then(|o| self.two.revocation_ms_of(&o))
        } else {
            None
        };
        if let Some(stamp) = revoked_at {
            if !partition.has_credentials_written_after(stamp) {
                self.two.forget_local(key); // all of it predates the sign-out
                return Ok(None);
            }
        }
        let now = (now_ms / 1000) as i64;
        let query = AccessTokenQuery {
            client_id: lookup.client_id,
            scopes: lookup.scopes,
            realm: lookup.tenant,
            realm_alias: lookup.tenant_alias,
            home_account_id: match lookup.subject {
                Subject::User(id) => Some(id),
                _ => None,
            },
            environment: lookup.environment,
            token_type: lookup.token_type,
            key_id: None,
            user_assertion_hash: assertion_hash,
            skew_secs: self.skew_secs,
        };
        let any_account = kind == PartitionKind::OboSession;
        let one_tenant = lookup.tenant.is_none() && !lookup.any_tenant;
        let one_cloud = lookup.environment.is_none() && !lookup.any_cloud;
        let found = match partition.find_access_token_in_one_authority(
            &query,
            now,
            any_account,
            one_tenant,
            one_cloud,
        ) {
            Ok(found) => found,
            Err(a) => {
                let what = match a {
                    Ambiguous::Tenant => "tenants: name one with Lookup::tenant, or accept any with Lookup::any_tenant",
                    Ambiguous::Cloud => "clouds: name one with Lookup::environment, or accept any with Lookup::any_cloud",
                };
                return Err(Error::InvalidRequest(format!(
                    "the cached tokens for this lookup are of several {what}"
                )));
            }
        };
        if let (Some(at), Some(stamp)) = (found, revoked_at) {
            if !at.written_after(stamp) {
                return Ok(None);
            }
        }
        Ok(found.map(|at| CachedToken {
            secret: at.secret.clone(),
            token_type: match &at.token_type {
                Some(t) => std::borrow::Cow::Owned(t.clone()),
                None => std::borrow::Cow::Borrowed("Bearer"),
            },
            expires_on: at.expires_on,
            refresh_on: at.refresh_on,
            needs_refresh: at.needs_refresh(now),
        }))
    }

    fn lookup_target(&self, subject: &Subject<'_>, client_id: &str) -> Target {
        match *subject {
            Subject::User(id) => Target {
                kind: PartitionKind::User,
                key: id.to_string(),
                ctx: EntryContext::of_owner(id),
            },
            Subject::App { tenant } => Target {
                kind: PartitionKind::App,
                key: PartitionKey::app(client_id, tenant).as_str().to_string(),
                ctx: EntryContext::default(),
            },
            Subject::Obo { assertion } => Target {
                kind: PartitionKind::Obo,
                key: self.obo_keys.key(assertion).to_string(),
                ctx: obo_context(assertion),
            },
            Subject::OboSession { session_key } => Target {
                kind: PartitionKind::OboSession,
                key: session_partition_key(session_key),
                ctx: EntryContext::default(),
            },
        }
    }

    /// Saves a token response into the right partition of both levels.
    pub async fn save_token_response(
        &self,
        request: &SaveRequest<'_>,
        response: &TokenResponse,
    ) -> Result<Saved, Error> {
        let now_ms = self.two.store_now_ms();
        self.save_requested_at(request, response, now_ms).await
    }

    /// [`save_token_response`](Self::save_token_response) with the records' `cached_at`
    /// (and the base of their expiry) at `cached_at`, Unix seconds: for a response to a
    /// request sent at `cached_at`. Acquisition saves with the time its request started,
    /// so that a sign-out while the request was in flight (a revocation stamp at or
    /// after that time) refuses the tokens it brought.
    pub async fn save_token_response_at(
        &self,
        request: &SaveRequest<'_>,
        response: &TokenResponse,
        cached_at: i64,
    ) -> Result<Saved, Error> {
        // (the start of that second: a sign-out within it refuses the tokens), on the
        // clock replicas compare sign-outs by
        let requested_at_ms = self.two.to_store_ms(cached_at.saturating_mul(1000));
        self.save_requested_at(request, response, requested_at_ms)
            .await
    }

    /// The save, for tokens requested at `requested_at_ms` (ms since the epoch).
    async fn save_requested_at(
        &self,
        request: &SaveRequest<'_>,
        response: &TokenResponse,
        requested_at_ms: i64,
    ) -> Result<Saved, Error> {
        if request.client_id.is_empty()
            || request.environment.is_empty()
            || request.tenant.is_empty()
        {
            return Err(Error::InvalidRequest(
                "a save needs a client id, an authority host and a tenant".into(),
            ));
        }
        // A known user's response that names nobody is stored under that user; a
        // non-Entra provider's user is always named by the cache (`{sub}.{issuer key}`).
        let generic = request.issuer_key;
        let mut account = None;
        let mut named: Option<String> = None;
        let (target, assertion) = match request.subject {
            SaveFor::KnownUser { home_account_id } => {
                check_key(home_account_id).map_err(|e| bad_key("home account id", e))?;
                if generic.is_some() {
                    account = Some(home_account_id);
                }
                match response.home_account_id_at(generic)? {
                    Some(named) if named != home_account_id => {
                        return Err(Error::InvalidRequest(
                            "the token response names another account than the one it was requested for".into(),
                        ))
                    }
                    Some(_) => {}
                    None => account = Some(home_account_id),
                }
                (
                    self.lookup_target(&Subject::User(home_account_id), request.client_id),
                    None,
                )
            }
            SaveFor::User => {
                let Some(home) = response.home_account_id_at(generic)? else {
                    return Err(Error::InvalidRequest(
                        "a user token response needs client_info or an id_token to name its account".into(),
                    ));
                };
                check_key(&home).map_err(|e| bad_key("home account id", e))?;
                named = Some(home);
                (
                    self.lookup_target(
                        &Subject::User(named.as_deref().unwrap_or_default()),
                        request.client_id,
                    ),
                    None,
                )
            }
            SaveFor::App => {
                let key = PartitionKey::app(request.client_id, request.tenant);
                check_key(key.as_str()).map_err(|e| bad_key("app partition key", e))?;
                (
                    self.lookup_target(
                        &Subject::App {
                            tenant: request.tenant,
                        },
                        request.client_id,
                    ),
                    None,
                )
            }
            SaveFor::Obo { assertion } => (
                self.lookup_target(&Subject::Obo { assertion }, request.client_id),
                Some(assertion),
            ),
            SaveFor::OboFor { assertion, user } => {
                check_key(user).map_err(|e| bad_key("home account id", e))?;
                let mut t = self.lookup_target(&Subject::Obo { assertion }, request.client_id);
                t.ctx.owner = Some(Arc::from(user));
                (t, Some(assertion))
            }
            SaveFor::OboSession { session_key, user } => {
                check_key(user).map_err(|e| bad_key("home account id", e))?;
                let mut t =
                    self.lookup_target(&Subject::OboSession { session_key }, request.client_id);
                t.ctx.owner = Some(Arc::from(user));
                (t, None)
            }
        };
        let req = TokenRequest {
            client_id: request.client_id,
            environment: request.environment,
            realm: request.realm.unwrap_or(request.tenant),
            scopes: request.scopes,
            user_assertion: assertion,
        };
        let alias = request.realm_alias;
        let now = requested_at_ms.div_euclid(1000);
        let obo = matches!(target.kind, PartitionKind::Obo | PartitionKind::OboSession);
        let form = self.app_account_form;
        // Its tokens were requested now (at the latest): a sign-out since refuses them.
        let owner = target.ctx.owner.clone();
        let scope = WriteScope {
            owner: owner.as_deref(),
            requested_at_ms,
        };
        // Linked before the write, so that a save cancelled mid-way never leaves a
        // partition its user's sign-out cannot find (a link to a partition that was not
        // written is harmless: it is pruned). The TTL is what the partition will most
        // likely get; it is extended after the write if the partition got longer.
        let link_ttl = self.expected_ttl(&target, now);
        match (owner.as_deref(), obo) {
            (Some(owner), true) => self.link(owner, &target.key, link_ttl).await,
            (None, true) => tracing::warn!(
                partition = %target.key,
                "OBO partition saved without a user to link it to (the assertion names no user: no oid/tid from Entra, no iss and sub from another issuer): sign-out cannot remove it; it ends with its deadline"
            ),
            _ => {}
        }
        let (added, write) = self
            .two
            .update(
                target.kind,
                &target.key,
                target.ctx,
                scope,
                |p: &mut Partition| {
                    // The write's place in this process's order of writes: two saves of
                    // one token in one millisecond are ordered too (docs/design.md §8).
                    let seq = crate::clock::record_seq();
                    let at = requested_at_ms;
                    match (generic, account.or(named.as_deref())) {
                        (Some(_), a) => {
                            p.add_token_response_of_issuer(&req, response, at, seq, form, a)
                        }
                        (None, Some(a)) => {
                            p.add_token_response_for_account(&req, response, at, seq, form, a)
                        }
                        (None, None) => p.add_token_response_written(&req, response, at, seq, form),
                    }
                    .map_err(Error::from)
                    .inspect(|added| {
                        if let (Some(k), Some(alias)) = (&added.access_token_key, alias) {
                            p.mirror_access_token(k, alias);
                        }
                    })
                },
            )
            .await?;
        if let (Some(owner), true, true) = (owner.as_deref(), obo, write.stored) {
            if write.ttl.unwrap_or(MAX_TTL) > link_ttl.unwrap_or(MAX_TTL) {
                self.link(owner, &target.key, write.ttl).await;
            }
        }
        Ok(Saved {
            partition: target.key,
            home_account_id: added.home_account_id,
            write,
        })
    }

    /// The TTL an OBO partition of `target` most likely gets when saved at `now`: the
    /// assertion's end for plain OBO, a refresh-token lifetime for sessions.
    fn expected_ttl(&self, target: &Target, now: i64) -> Option<Duration> {
        let rt = self.two.expiry().refresh_token_lifetime.min(MAX_TTL);
        match (target.kind, target.ctx.assertion_exp) {
            (PartitionKind::Obo, Some(exp)) => Some(Duration::from_secs(
                (exp.saturating_sub(now).max(1) as u64).min(MAX_TTL.as_secs()),
            )),
            _ => Some(rt),
        }
    }

    /// Records that OBO partition `key` belongs to `owner`: its full key joins the
    /// owner's link set, which lives at least as long as the partition.
    async fn link(&self, owner: &str, key: &str, ttl: Option<Duration>) {
        let keys = self.two.keys();
        let set = keys.link_set(owner);
        let member = keys.partition_str(key);
        let store = self.two.store();
        // A failed link is logged by `call`; the partition still ends with its deadline.
        let _ = self
            .two
            .call("link_add", store.link_add(&set, &member, ttl))
            .await;
    }

    /// Signs a user out of every cache that shares this L2: removes the user partition,
    /// every OBO partition linked to the user and the link set, from L2 (one call, O(k)
    /// keys, never a scan) and from this replica's L1, and writes a revocation stamp so
    /// that tokens cached before now are refused even where an L1 still holds them.
    /// Idempotent. L2 failures are reported in the outcome, not as an error.
    ///
    /// When L2 fails, the stamp and the removals wait in the recovery queue (and
    /// `l2_complete` is false); they are never dropped from it. When the queue already
    /// holds as many sign-outs as it may ([`TokenCacheBuilder::signout_queue_capacity`](crate::TokenCacheBuilder::signout_queue_capacity)),
    /// the sign-out is refused with [`Error::SignOutRefused`]: retry it (what could be
    /// queued of it stays queued; a retry is idempotent).
    pub async fn remove_account(&self, home_account_id: &str) -> Result<SignOut, Error> {
        check_key(home_account_id).map_err(|e| bad_key("home account id", e))?;
        // A sign-out runs to its end even when the caller is dropped mid-way (a client
        // that disconnects): half a sign-out would leave tokens nobody removes.
        let this = self.clone();
        let home = home_account_id.to_string();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => match rt
                .spawn(async move { this.sign_out_now(&home).await })
                .await
            {
                Ok(out) => out,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Err(Error::Store(crate::store::StoreError::new(
                    crate::store::StoreErrorKind::Connection,
                    self.two.store().endpoint(),
                    "sign-out not finished: the runtime is shutting down",
                ))),
            },
            Err(_) => self.sign_out_now(home_account_id).await,
        }
    }

    async fn sign_out_now(&self, home_account_id: &str) -> Result<SignOut, Error> {
        let keys = self.two.keys().clone();
        let store = self.two.store().clone();
        // Refused here at once, on every replica by the backplane, and in L2 (queued
        // when L2 does not take it, like the removals below), stamped by the store's
        // clock where it has one.
        let (_, stamp) = self.two.revoke_now(home_account_id).await;
        let stamp_written = matches!(stamp, StampWritten::Written(_));
        let mut refused = matches!(stamp, StampWritten::Refused(_));
        let set = keys.link_set(home_account_id);
        let (members, links_read) = match self
            .two
            .call("link_members", store.link_members(&set))
            .await
        {
            Ok(m) => (m, true),
            Err(_) => (Vec::new(), false),
        };
        let mut doomed = Vec::with_capacity(members.len() + 2);
        doomed.push(keys.partition_str(home_account_id));
        doomed.extend(members.iter().cloned());
        doomed.push(set);
        self.two.forget_local(home_account_id);
        for member in &members {
            if let Some(bare) = keys.strip(member) {
                self.two.forget_local(bare);
            }
        }
        // remove_keys holds the keys' locks and queues what L2 does not take, so a
        // queued write from before the sign-out can never put a partition back.
        let (removed, removals_refused) = self.two.remove_keys_for_signout(&doomed).await;
        refused |= removals_refused;
        if refused {
            return Err(Error::SignOutRefused {
                home_account_id: home_account_id.to_owned(),
            });
        }
        Ok(SignOut {
            obo_partitions: members.len(),
            l2_keys_removed: removed.as_ref().copied().unwrap_or(0),
            l2_complete: stamp_written && links_read && removed.is_ok(),
        })
    }

    /// Makes this replica refuse tokens of `home_account_id` cached at or before
    /// `stamp` (Unix seconds). [`remove_account`](Self::remove_account) does it on every
    /// replica (through the backplane); this is for tools and tests.
    pub fn revoke_locally(&self, home_account_id: &str, stamp: i64) {
        self.two.revoke_locally(home_account_id, stamp);
    }

    /// Reads the user's revocation stamp from L2 and applies it locally; returns it.
    pub async fn refresh_revocation(&self, home_account_id: &str) -> Result<Option<i64>, Error> {
        Ok(self.two.refresh_revocation(home_account_id).await?)
    }

    /// The refresh token of a user for a client (a family refresh token is accepted
    /// when `family_id` is given).
    pub async fn find_refresh_token(
        &self,
        client_id: &str,
        home_account_id: &str,
        family_id: Option<&str>,
    ) -> Result<Option<Secret>, Error> {
        check_key(home_account_id).map_err(|e| bad_key("home account id", e))?;
        let Some(partition) = self
            .two
            .get(
                PartitionKind::User,
                home_account_id,
                EntryContext::default(),
            )
            .await
        else {
            return Ok(None);
        };
        if let Some(stamp) = self.two.revocation_ms_of(home_account_id) {
            // refresh tokens carry no reliable cached_at: the partition's last write decides
            if !partition.has_credentials_written_after(stamp) {
                self.two.forget_local(home_account_id);
                return Ok(None);
            }
        }
        let query = RefreshTokenQuery {
            client_id,
            home_account_id,
            environment: None,
            family_id,
            user_assertion_hash: None,
        };
        Ok(partition
            .find_refresh_token(&query)
            .map(|rt| rt.secret.clone()))
    }

    /// The decoded partition of a subject, for inspection. One loaded from L2 decodes its
    /// id tokens, accounts and app metadata when first asked for them
    /// ([`Partition::parse_deferred`]): a section whose records are malformed then reads
    /// as empty, and [`Partition::deferred_error`] says why.
    pub async fn partition(
        &self,
        subject: &Subject<'_>,
        client_id: &str,
    ) -> Option<Arc<Partition>> {
        let t = self.lookup_target(subject, client_id);
        self.two.get(t.kind, &t.key, t.ctx).await
    }

    /// Removes a user's credentials for one `client_id` only (MSAL's `RemoveAccount` of
    /// one app in a shared partition), in L1 and L2; linked OBO partitions stay (use
    /// [`remove_account`](Self::remove_account) to sign the user out). When no
    /// credentials are left, the partition is removed from L2, not written empty.
    /// Returns how many records went.
    pub async fn remove_client_credentials(
        &self,
        client_id: &str,
        home_account_id: &str,
    ) -> Result<usize, Error> {
        check_key(home_account_id).map_err(|e| bad_key("home account id", e))?;
        let (removed, _) = self
            .two
            .update(
                PartitionKind::User,
                home_account_id,
                EntryContext::default(),
                WriteScope {
                    owner: Some(home_account_id),
                    requested_at_ms: self.two.store_now_ms(),
                },
                |p: &mut Partition| Ok(p.remove_account(client_id, home_account_id)),
            )
            .await?;
        Ok(removed)
    }
}

// The API validated the assertion before using it; here its claims only name the user
// (for the link and revocation checks) and its end (for the deadline).

/// The user an OBO assertion was issued to, by its issuer's rule
/// ([`crate::issuer::account_of`]: for Entra a guest's `home_oid` and home tenant when the
/// assertion names them, else `oid.tid`; for any other issuer `{sub}.{issuer key}`);
/// `None` for opaque assertions.
fn obo_owner(assertion: &str) -> Option<String> {
    crate::issuer::account_of(&decode_jwt_claims(assertion).ok()?)
}

/// A caller-given key that cannot be a partition key.
fn bad_key(what: &str, e: KeyError) -> Error {
    Error::InvalidRequest(format!("{what} refused: {e}"))
}

/// The context of an OBO partition: the assertion's `exp` (its deadline) and its user
/// (whose revocation stamp an L2 load reads), from one decoding of its claims.
fn obo_context(assertion: &str) -> EntryContext {
    let claims = decode_jwt_claims(assertion).ok();
    EntryContext {
        assertion_exp: claims.as_ref().and_then(|c| c.exp),
        owner: claims
            .as_ref()
            .and_then(crate::issuer::account_of)
            .map(Arc::from),
    }
}
