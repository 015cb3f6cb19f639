//! The three cache policies the simulation compares (docs/design.md §12).
//!
//! * `msidweb-default` and `msidweb-sliding` are models of Microsoft.Identity.Web 4.x
//!   over MSAL.NET: the same MSAL V3 blobs under the same keys, written with the TTL its
//!   distributed adapter gives them. MSAL's suggested cache expiry exists only for a
//!   partition without a refresh token (its latest access-token expiry); the adapter
//!   combines it with the configured options (here: none, or a sliding window, which it
//!   refreshes in L2 on every cache access). Sign-out removes the user partition only.
//! * `tokencache` runs the real library: a web app and a web API, each a [`TokenCache`],
//!   on the same store, clock and key prefix, with token-derived expiry and linked
//!   sign-out.

use std::collections::HashMap;
use std::time::Duration;

use tokencache::clock::SharedClock;
use tokencache::schema::{AccessTokenQuery, TokenRequest};
use tokencache::store::SharedStore;
use tokencache::twolevel::ExpiryOptions;
use tokencache::{
    sample, Lookup, Partition, SaveFor, SaveRequest, Subject, TokenCache, TokenResponse,
};

use super::world::{Step, API_CLIENT, API_SCOPES, DOWNSTREAM, SKEW};

/// What a policy had to redo because its L2 lost something the traffic still needed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Losses {
    /// A refresh token (user or long-running session) was gone while still valid: the
    /// user must sign in again (or the background job fails).
    pub lost_refresh_tokens: u64,
    /// An access token was gone while still valid: one more token request.
    pub extra_token_requests: u64,
}

/// One policy under test.
pub(crate) enum Policy {
    /// A model of Microsoft.Identity.Web's distributed cache adapter.
    MsIdWeb(MsIdWeb),
    /// The tokencache library.
    TokenCache(Box<TcPolicy>),
}

impl Policy {
    /// Applies one step at `now` (seconds).
    pub(crate) async fn apply(&mut self, step: &Step, now: i64) -> Result<(), String> {
        match self {
            Policy::MsIdWeb(p) => p.apply(step, now).await,
            Policy::TokenCache(p) => p.apply(step, now).await,
        }
    }

    /// What it had to redo.
    pub(crate) fn losses(&self) -> Losses {
        match self {
            Policy::MsIdWeb(p) => p.losses,
            Policy::TokenCache(p) => p.losses,
        }
    }

    /// L2 errors seen (the tokencache library logs and absorbs them; the run reports them).
    pub(crate) fn l2_errors(&self) -> u64 {
        match self {
            Policy::MsIdWeb(_) => 0,
            Policy::TokenCache(p) => p.web_app.stats().l2_errors + p.web_api.stats().l2_errors,
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Microsoft.Identity.Web's distributed token cache, modelled (see the module docs).
pub(crate) struct MsIdWeb {
    store: SharedStore,
    clock: SharedClock,
    prefix: String,
    /// The configured sliding window (`None`: no expiry options at all).
    sliding: Option<Duration>,
    /// Each entry's absolute expiration (ms), as the adapter keeps it beside the value
    /// so that a sliding refresh never extends an entry past it.
    absolute: HashMap<String, Option<u64>>,
    losses: Losses,
}

impl MsIdWeb {
    /// A model writing under `prefix`, with or without a sliding window.
    pub(crate) fn new(
        store: SharedStore,
        clock: SharedClock,
        prefix: &str,
        sliding: Option<Duration>,
    ) -> Self {
        MsIdWeb {
            store,
            clock,
            prefix: prefix.to_string(),
            sliding,
            absolute: HashMap::new(),
            losses: Losses::default(),
        }
    }

    /// MSAL's `BeforeAccess` + `AfterAccess` around a token request: read the blob,
    /// add the response, write it back with the adapter's TTL.
    async fn write(
        &mut self,
        key: &str,
        req: &TokenRequest<'_>,
        resp: &TokenResponse,
        now: i64,
    ) -> Result<(), String> {
        let full = format!("{}{key}", self.prefix);
        let mut p = match self.store.get(&full).await.map_err(err)? {
            Some(v) => Partition::parse(&v.bytes).map_err(err)?,
            None => Partition::new(),
        };
        p.add_token_response(req, resp, now).map_err(err)?;
        // MSAL.NET's SuggestedCacheExpiry: only when no refresh token is kept.
        let suggested = if p.refresh_tokens().next().is_some() {
            None
        } else {
            p.latest_access_token_expiry()
                .map(|s| s.max(0) as u64 * 1000)
        };
        let now_ms = self.clock.now_millis();
        let ttl = self.ttl(suggested, now_ms);
        self.absolute.insert(key.to_string(), suggested);
        self.store.set(&full, &p.to_vec(), ttl).await.map_err(err)
    }

    /// The adapter's TTL: the suggested expiry, and the sliding window, the earliest.
    fn ttl(&self, absolute_ms: Option<u64>, now_ms: u64) -> Option<Duration> {
        let abs = absolute_ms.map(|a| Duration::from_millis(a.saturating_sub(now_ms)));
        match (abs, self.sliding) {
            (Some(a), Some(w)) => Some(a.min(w)),
            (a, w) => a.or(w),
        }
    }

    /// A cache hit in L1: with a sliding window the adapter refreshes the entry in L2
    /// (`IDistributedCache.RefreshAsync`); without one, L2 is not involved. Returns
    /// whether the entry was still in L2.
    async fn access(&mut self, key: &str) -> Result<bool, String> {
        if self.sliding.is_none() {
            // No expiry option: the entry's only end is the suggested expiry, and a hit
            // means the token is still valid, so it is there.
            return Ok(true);
        }
        let absolute = self.absolute.get(key).copied().flatten();
        let Some(ttl) = self.ttl(absolute, self.clock.now_millis()) else {
            return Ok(true);
        };
        let full = format!("{}{key}", self.prefix);
        self.store.touch(&full, ttl).await.map_err(err)
    }

    async fn apply(&mut self, step: &Step, now: i64) -> Result<(), String> {
        let user_req = |tenant, scopes| TokenRequest {
            client_id: sample::CLIENT_ID,
            environment: sample::ENVIRONMENT,
            realm: tenant,
            scopes,
            user_assertion: None,
        };
        match step {
            Step::SignIn {
                home,
                tenant,
                responses,
            } => {
                for (scopes, r) in responses {
                    self.write(home, &user_req(tenant, scopes), r, now).await?;
                }
            }
            Step::UserRefresh {
                home,
                tenant,
                response,
            } => {
                if !self.access(home).await? {
                    self.losses.lost_refresh_tokens += 1;
                }
                self.write(home, &user_req(tenant, API_SCOPES), response, now)
                    .await?;
            }
            Step::UserHit { home, current } => {
                if !self.access(home).await? {
                    self.losses.lost_refresh_tokens += 1;
                    let tenant = home.split_once('.').map(|(_, t)| t).unwrap_or_default();
                    self.write(home, &user_req(tenant, API_SCOPES), &current.make()?, now)
                        .await?;
                }
            }
            Step::OboAcquire {
                assertion,
                tenant,
                response,
            } => {
                let key = tokencache::partition::assertion_hash(assertion);
                let req = TokenRequest {
                    client_id: API_CLIENT,
                    environment: sample::ENVIRONMENT,
                    realm: tenant,
                    scopes: DOWNSTREAM,
                    user_assertion: Some(assertion),
                };
                self.write(&key, &req, response, now).await?;
            }
            Step::OboHit {
                assertion,
                tenant,
                current,
            } => {
                let key = tokencache::partition::assertion_hash(assertion);
                if !self.access(&key).await? {
                    self.losses.extra_token_requests += 1;
                    let req = TokenRequest {
                        client_id: API_CLIENT,
                        environment: sample::ENVIRONMENT,
                        realm: tenant,
                        scopes: DOWNSTREAM,
                        user_assertion: Some(assertion),
                    };
                    self.write(&key, &req, &current.make()?, now).await?;
                }
            }
            Step::AppAcquire { tenant, response } => {
                self.write_app(tenant, response, now).await?;
            }
            Step::AppHit { tenant, current } => {
                let key = format!("{API_CLIENT}_{tenant}_AppTokenCache");
                if !self.access(&key).await? {
                    self.losses.extra_token_requests += 1;
                    self.write_app(tenant, &current.make()?, now).await?;
                }
            }
            Step::JobStart {
                key,
                tenant,
                response,
                ..
            } => {
                self.write(key, &api_req(tenant), response, now).await?;
            }
            Step::JobRefresh {
                key,
                tenant,
                response,
                ..
            } => {
                if !self.access(key).await? {
                    self.losses.lost_refresh_tokens += 1;
                }
                self.write(key, &api_req(tenant), response, now).await?;
            }
            Step::JobHit {
                key,
                tenant,
                current,
                ..
            } => {
                if !self.access(key).await? {
                    self.losses.lost_refresh_tokens += 1;
                    self.write(key, &api_req(tenant), &current.make()?, now)
                        .await?;
                }
            }
            Step::SignOut { home } => {
                // RemoveAccountAsync: the user partition, from L1 and L2. Nothing else.
                let full = format!("{}{home}", self.prefix);
                self.store.remove(&full).await.map_err(err)?;
                self.absolute.remove(home.as_str());
            }
        }
        Ok(())
    }

    async fn write_app(
        &mut self,
        tenant: &str,
        response: &TokenResponse,
        now: i64,
    ) -> Result<(), String> {
        let key = format!("{API_CLIENT}_{tenant}_AppTokenCache");
        let scopes = [super::world::APP_SCOPE];
        let req = TokenRequest {
            client_id: API_CLIENT,
            environment: sample::ENVIRONMENT,
            realm: tenant,
            scopes: &scopes,
            user_assertion: None,
        };
        self.write(&key, &req, response, now).await
    }
}

/// The web API's request for a long-running session (user-bound tokens for downstream).
fn api_req(tenant: &str) -> TokenRequest<'_> {
    TokenRequest {
        client_id: API_CLIENT,
        environment: sample::ENVIRONMENT,
        realm: tenant,
        scopes: DOWNSTREAM,
        user_assertion: None,
    }
}

/// The tokencache library, as a web app and a web API sharing one L2.
pub(crate) struct TcPolicy {
    web_app: TokenCache,
    web_api: TokenCache,
    clock: SharedClock,
    losses: Losses,
}

impl TcPolicy {
    /// Two caches on `store` under `prefix`, on `clock`, with user partitions living a
    /// refresh-token lifetime past their last write.
    pub(crate) async fn new(
        store: SharedStore,
        clock: SharedClock,
        prefix: &str,
        refresh_token_lifetime: Duration,
    ) -> Result<Self, String> {
        let build = || {
            TokenCache::builder()
                .store(store.clone())
                .clock(clock.clone())
                .key_prefix(prefix)
                .probe_l2_at_start(false)
                // A busy machine must not turn into L2 timeouts (the run would then
                // depend on timing); errors are still counted and reported.
                .l2_timeout(Duration::from_secs(30))
                .expiry(ExpiryOptions {
                    refresh_token_lifetime,
                    ..ExpiryOptions::default()
                })
                .build()
        };
        Ok(TcPolicy {
            web_app: build().await.map_err(err)?,
            web_api: build().await.map_err(err)?,
            clock,
            losses: Losses::default(),
        })
    }

    async fn save(
        cache: &TokenCache,
        req: SaveRequest<'_>,
        resp: &TokenResponse,
    ) -> Result<(), String> {
        cache
            .save_token_response(&req, resp)
            .await
            .map(|_| ())
            .map_err(err)
    }

    /// Whether the long-running session still has a usable access token.
    async fn session_token(&self, key: &str, home: &str) -> bool {
        let Some(p) = self
            .web_api
            .partition(&Subject::OboSession { session_key: key }, API_CLIENT)
            .await
        else {
            return false;
        };
        let mut q = AccessTokenQuery::new(API_CLIENT, DOWNSTREAM);
        q.home_account_id = Some(home);
        q.skew_secs = SKEW;
        p.find_access_token(&q, self.clock.now_secs()).is_some()
    }

    async fn apply(&mut self, step: &Step, now: i64) -> Result<(), String> {
        let _ = now; // the caches read the same clock
        let env = sample::ENVIRONMENT;
        match step {
            Step::SignIn {
                tenant, responses, ..
            } => {
                for (scopes, r) in responses {
                    let req =
                        SaveRequest::new(sample::CLIENT_ID, SaveFor::User, env, tenant, scopes);
                    Self::save(&self.web_app, req, r).await?;
                }
            }
            Step::UserRefresh {
                home,
                tenant,
                response,
            } => {
                let rt = self
                    .web_app
                    .find_refresh_token(sample::CLIENT_ID, home, None)
                    .await
                    .map_err(err)?;
                if rt.is_none() {
                    self.losses.lost_refresh_tokens += 1;
                }
                let req =
                    SaveRequest::new(sample::CLIENT_ID, SaveFor::User, env, tenant, API_SCOPES);
                Self::save(&self.web_app, req, response).await?;
            }
            Step::UserHit { home, current } => {
                let found = self
                    .web_app
                    .find_access_token(&Lookup::user(sample::CLIENT_ID, home, API_SCOPES))
                    .await
                    .map_err(err)?;
                if found.is_none() {
                    self.losses.lost_refresh_tokens += 1;
                    let tenant = home.split_once('.').map(|(_, t)| t).unwrap_or_default();
                    let req =
                        SaveRequest::new(sample::CLIENT_ID, SaveFor::User, env, tenant, API_SCOPES);
                    Self::save(&self.web_app, req, &current.make()?).await?;
                }
            }
            Step::OboAcquire {
                assertion,
                tenant,
                response,
            } => {
                let req = SaveRequest::new(
                    API_CLIENT,
                    SaveFor::Obo { assertion },
                    env,
                    tenant,
                    DOWNSTREAM,
                );
                Self::save(&self.web_api, req, response).await?;
            }
            Step::OboHit {
                assertion,
                tenant,
                current,
            } => {
                let found = self
                    .web_api
                    .find_access_token(&Lookup::obo(API_CLIENT, assertion, DOWNSTREAM))
                    .await
                    .map_err(err)?;
                if found.is_none() {
                    self.losses.extra_token_requests += 1;
                    let req = SaveRequest::new(
                        API_CLIENT,
                        SaveFor::Obo { assertion },
                        env,
                        tenant,
                        DOWNSTREAM,
                    );
                    Self::save(&self.web_api, req, &current.make()?).await?;
                }
            }
            Step::AppAcquire { tenant, response } => {
                let scopes = [super::world::APP_SCOPE];
                let req = SaveRequest::new(API_CLIENT, SaveFor::App, env, tenant, &scopes);
                Self::save(&self.web_api, req, response).await?;
            }
            Step::AppHit { tenant, current } => {
                let scopes = [super::world::APP_SCOPE];
                let found = self
                    .web_api
                    .find_access_token(&Lookup::app(API_CLIENT, tenant, &scopes))
                    .await
                    .map_err(err)?;
                if found.is_none() {
                    self.losses.extra_token_requests += 1;
                    let req = SaveRequest::new(API_CLIENT, SaveFor::App, env, tenant, &scopes);
                    Self::save(&self.web_api, req, &current.make()?).await?;
                }
            }
            Step::JobStart {
                key,
                home,
                tenant,
                response,
            } => {
                let subject = SaveFor::OboSession {
                    session_key: key,
                    user: home,
                };
                Self::save(
                    &self.web_api,
                    SaveRequest::new(API_CLIENT, subject, env, tenant, DOWNSTREAM),
                    response,
                )
                .await?;
            }
            Step::JobRefresh {
                key,
                home,
                tenant,
                response,
            } => {
                let has_rt = self
                    .web_api
                    .partition(&Subject::OboSession { session_key: key }, API_CLIENT)
                    .await
                    .is_some_and(|p| p.refresh_tokens().next().is_some());
                if !has_rt {
                    self.losses.lost_refresh_tokens += 1;
                }
                let subject = SaveFor::OboSession {
                    session_key: key,
                    user: home,
                };
                Self::save(
                    &self.web_api,
                    SaveRequest::new(API_CLIENT, subject, env, tenant, DOWNSTREAM),
                    response,
                )
                .await?;
            }
            Step::JobHit {
                key,
                home,
                tenant,
                current,
            } => {
                if !self.session_token(key, home).await {
                    self.losses.lost_refresh_tokens += 1;
                    let subject = SaveFor::OboSession {
                        session_key: key,
                        user: home,
                    };
                    let req = SaveRequest::new(API_CLIENT, subject, env, tenant, DOWNSTREAM);
                    Self::save(&self.web_api, req, &current.make()?).await?;
                }
            }
            Step::SignOut { home } => {
                let out = self.web_app.remove_account(home).await.map_err(err)?;
                if !out.l2_complete {
                    return Err(format!("sign-out of {home} did not complete in L2"));
                }
            }
        }
        Ok(())
    }
}
