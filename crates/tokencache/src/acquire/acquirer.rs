//! [`Acquirer`]: one confidential client at one authority, acquiring through a
//! [`TokenCache`]. The grants themselves are in [`super::grants`] (the request each one
//! sends), [`super::refresh`] (refresh-token redemption under the cross-replica lock)
//! and [`super::auth_code`].
//!
//! Every acquisition runs the same way:
//!
//! 1. the cache is read (L1, then L2); a hit is served, and when its `refresh_on` has
//!    passed a refresh starts in the background while it is served;
//! 2. on a miss, the callers for one (partition, scopes, claims) join one single flight;
//!    its leader reads the cache once more (another flight may just have saved), then
//!    sends the token request;
//! 3. the response is saved with `cached_at` = when the request started, after checking
//!    that the user did not sign out meanwhile; an error is returned to the flight's
//!    callers and kept nowhere.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::client_auth::ClientCredential;
use super::discovery::{Authority, Provider};
use super::error::AcquireError;
use super::http::{FormValue, Http, HttpOptions, Replay};
use super::lock::RefreshLockOptions;
use super::single_flight::SingleFlight;
use crate::cache::{CachedToken, Lookup, SaveRequest, TokenCache};
use crate::schema::{Secret, TokenResponse};

/// Where a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// The cache (this replica's L1, or the shared L2).
    Cache,
    /// The provider's token endpoint, just now.
    Provider,
}

impl TokenSource {
    /// `cache` or `provider`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Cache => "cache",
            TokenSource::Provider => "provider",
        }
    }
}

/// An access token, acquired or found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquiredToken {
    /// The token (redacted in `Debug`).
    pub secret: Secret,
    /// `Bearer`.
    pub token_type: Cow<'static, str>,
    /// Expiry, Unix seconds.
    pub expires_on: i64,
    /// When the provider suggests refreshing (`refresh_in`), Unix seconds.
    pub refresh_on: Option<i64>,
    /// Cache or provider.
    pub source: TokenSource,
}

impl AcquiredToken {
    pub(crate) fn from_cache(t: CachedToken) -> Self {
        Self {
            secret: t.secret,
            token_type: t.token_type,
            expires_on: t.expires_on,
            refresh_on: t.refresh_on,
            source: TokenSource::Cache,
        }
    }

    /// The token of a response to a request sent at `started` (the times the cache stores).
    pub(crate) fn from_response(r: &TokenResponse, started: i64) -> Result<Self, AcquireError> {
        let secret = r
            .access_token
            .clone()
            .ok_or_else(|| AcquireError::Malformed {
                endpoint: "token endpoint".into(),
                reason: "no access_token".into(),
            })?;
        let expires_in = r
            .expires_in
            .unwrap_or(crate::schema::DEFAULT_EXPIRES_IN)
            .max(0);
        Ok(Self {
            secret,
            token_type: Cow::Borrowed("Bearer"),
            expires_on: started.saturating_add(expires_in),
            refresh_on: r.refresh_in.map(|s| started.saturating_add(s.max(0))),
            source: TokenSource::Provider,
        })
    }
}

/// Per-call options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcquireOptions {
    /// Skip the cache and ask the provider; the new token replaces the cached one. For a
    /// claims challenge, or a token the resource refused.
    pub force_refresh: bool,
    /// A claims challenge (the `claims` JSON of a `WWW-Authenticate` header or an
    /// `interaction_required` error), sent as the `claims` parameter. Implies
    /// [`force_refresh`](Self::force_refresh).
    pub claims: Option<String>,
}

impl AcquireOptions {
    /// A forced refresh.
    pub fn force_refresh() -> Self {
        Self {
            force_refresh: true,
            claims: None,
        }
    }

    /// A forced refresh answering a claims challenge.
    pub fn claims(claims: &str) -> Self {
        Self {
            force_refresh: true,
            claims: Some(claims.to_string()),
        }
    }

    fn bypasses_cache(&self) -> bool {
        self.force_refresh || self.claims.is_some()
    }
}

/// Acquires tokens for one confidential client at one authority, through a cache.
/// Cheap to clone; clones share the cache, the HTTP client, the discovery result and
/// the single flights.
#[derive(Debug, Clone)]
pub struct Acquirer {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cache: TokenCache,
    pub(crate) client_id: String,
    /// `None` for an acquirer over a managed identity (it sends no token request).
    pub(crate) credential: Option<ClientCredential>,
    /// The managed identity app tokens come from, instead of a token endpoint.
    pub(crate) managed: Option<super::managed_identity::ManagedIdentity>,
    pub(crate) authority: Authority,
    pub(crate) http: Http,
    /// The discovery result, once discovery ran ([`Inner::provider`]).
    pub(crate) provider: tokio::sync::OnceCell<Arc<Provider>>,
    pub(crate) flights: SingleFlight<Result<AcquiredToken, AcquireError>>,
    pub(crate) refresh_lock: Option<RefreshLockOptions>,
    proactive: bool,
    backoff: ProactiveBackoff,
    /// Failures the provider asked to be left alone after (`Retry-After`), per flight key.
    remembered: super::retry_after::RememberedFailures,
    requests: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acquirer")
            .field("client_id", &self.client_id)
            .field("authority", &self.authority.url.as_str())
            .field("credential", &self.credential)
            .field("managed_identity", &self.managed)
            .field("refresh_lock", &self.refresh_lock)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Acquirer`].
#[derive(Debug)]
pub struct AcquirerBuilder {
    cache: TokenCache,
    authority: String,
    client_id: String,
    credential: ClientCredential,
    http: HttpOptions,
    provider: Option<Provider>,
    refresh_lock: Option<RefreshLockOptions>,
    proactive: bool,
}

impl AcquirerBuilder {
    /// Timeouts and retries of provider calls.
    pub fn http(mut self, options: HttpOptions) -> Self {
        self.http = options;
        self
    }

    /// Uses this provider configuration instead of discovering it.
    pub fn provider(mut self, provider: Provider) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Takes a short L2 lock around every refresh-token redemption, so that replicas
    /// sharing the L2 never redeem the same (rotating) refresh token twice. Off by
    /// default; turn it on whenever several replicas share a Redis and the provider
    /// rotates refresh tokens.
    pub fn refresh_lock(mut self, options: RefreshLockOptions) -> Self {
        self.refresh_lock = Some(options);
        self
    }

    /// Refreshes in the background a cached token whose `refresh_on` has passed, while
    /// serving it. Default on.
    pub fn proactive_refresh(mut self, on: bool) -> Self {
        self.proactive = on;
        self
    }

    /// Checks the configuration and builds the acquirer. Discovery happens on first use
    /// (and is tried again on the next call when it failed).
    pub fn build(self) -> Result<Acquirer, AcquireError> {
        if self.client_id.trim().is_empty() {
            return Err(AcquireError::Config("the client id is empty".into()));
        }
        crate::partition::check_key(&self.client_id)
            .map_err(|e| AcquireError::Config(format!("client id: {e}")))?;
        let authority = Authority::parse(&self.authority)?;
        let provider = tokio::sync::OnceCell::new();
        if let Some(p) = self.provider {
            let _ = provider.set(Arc::new(p));
        }
        Ok(Acquirer {
            inner: Arc::new(Inner {
                cache: self.cache,
                client_id: self.client_id,
                credential: Some(self.credential),
                managed: None,
                authority,
                http: Http::new(self.http)?,
                provider,
                flights: SingleFlight::new(|| Err(AcquireError::Interrupted)),
                refresh_lock: self.refresh_lock,
                proactive: self.proactive,
                backoff: ProactiveBackoff::default(),
                remembered: Default::default(),
                requests: AtomicU64::new(0),
            }),
        })
    }
}

impl Acquirer {
    /// A builder for `client_id` at `authority` (an issuer URL, e.g.
    /// `https://login.microsoftonline.com/{tenant}/v2.0`), saving into `cache`.
    pub fn builder(
        cache: TokenCache,
        authority: &str,
        client_id: &str,
        credential: ClientCredential,
    ) -> AcquirerBuilder {
        AcquirerBuilder {
            cache,
            authority: authority.to_string(),
            client_id: client_id.to_string(),
            credential,
            http: HttpOptions::default(),
            provider: None,
            refresh_lock: None,
            proactive: true,
        }
    }

    /// An acquirer whose app tokens come from a managed identity: its
    /// [`client_credentials`](Self::client_credentials) asks the managed identity for the
    /// resource of the one scope (`https://vault.azure.net/.default`), through the same
    /// cache (its client id is the identity's cache client id, its authority
    /// `https://login.microsoftonline.com/managed_identity`, as MSAL keys them). Other
    /// grants are a [`AcquireError::Config`] error. For services that treat every API
    /// alike (`tokencache serve` with `credential = "managed_identity"`).
    pub fn managed_identity(
        mi: super::managed_identity::ManagedIdentity,
    ) -> Result<Acquirer, AcquireError> {
        use super::managed_identity::{MANAGED_IDENTITY_ENVIRONMENT, MANAGED_IDENTITY_TENANT};
        let authority = Authority::parse(&format!(
            "https://{MANAGED_IDENTITY_ENVIRONMENT}/{MANAGED_IDENTITY_TENANT}"
        ))?;
        Ok(Acquirer {
            inner: Arc::new(Inner {
                cache: mi.cache().clone(),
                client_id: mi.identity().cache_client_id().to_string(),
                credential: None,
                managed: Some(mi),
                authority,
                http: Http::new(HttpOptions::default())?,
                provider: tokio::sync::OnceCell::new(),
                flights: SingleFlight::new(|| Err(AcquireError::Interrupted)),
                refresh_lock: None,
                proactive: true,
                backoff: ProactiveBackoff::default(),
                remembered: Default::default(),
                requests: AtomicU64::new(0),
            }),
        })
    }

    /// The managed identity its app tokens come from, for an acquirer made by
    /// [`managed_identity`](Self::managed_identity).
    pub fn managed(&self) -> Option<&super::managed_identity::ManagedIdentity> {
        self.inner.managed.as_ref()
    }

    /// The cache it reads and saves through.
    pub fn cache(&self) -> &TokenCache {
        &self.inner.cache
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The authority: its cache environment and tenant.
    pub fn authority(&self) -> &Authority {
        &self.inner.authority
    }

    /// The provider configuration (discovered on first use).
    pub async fn provider(&self) -> Result<Arc<Provider>, AcquireError> {
        self.inner.provider().await
    }

    /// How many token requests this acquirer (and its clones) sent to the provider
    /// (every attempt, retries included; a managed identity's requests for one over it).
    pub fn token_requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
            + self.inner.managed.as_ref().map_or(0, |m| m.requests())
    }

    /// How many single flights were started (callers that joined one are not counted).
    pub fn flights_started(&self) -> u64 {
        self.inner.flights.started()
    }

    /// How many single flights are running now (each a task of its own: it runs to its
    /// end, saves and leaves this count even when every caller gave up).
    pub fn flights_running(&self) -> usize {
        self.inner.flights.in_flight()
    }

    /// Serves `lookup` from the cache, else runs `job` in its single flight.
    pub(crate) async fn serve(
        &self,
        lookup: &Lookup<'_>,
        job: impl FnOnce() -> Result<Job, AcquireError>,
        options: &AcquireOptions,
    ) -> Result<AcquiredToken, AcquireError> {
        if !options.bypasses_cache() {
            if let Some(t) = self.inner.cache.find_access_token(lookup).await? {
                if t.needs_refresh && self.inner.proactive {
                    let mut job = job()?;
                    job.force = true;
                    let key = job.flight_key();
                    if self.inner.backoff.may_try(&key) {
                        let this = self.clone();
                        tokio::spawn(async move {
                            match this.run(job).await {
                                Ok(_) => this.inner.backoff.succeeded(&key),
                                Err(e) => {
                                    this.inner.backoff.failed(&key);
                                    tracing::warn!(error = %e, "proactive refresh failed; the current token is still served");
                                }
                            }
                        });
                    }
                }
                return Ok(AcquiredToken::from_cache(t));
            }
        }
        let mut job = job()?;
        job.force = options.bypasses_cache();
        job.claims = options.claims.clone();
        self.run(job).await
    }

    async fn run(&self, job: Job) -> Result<AcquiredToken, AcquireError> {
        let key = job.flight_key();
        // the provider asked for quiet on this key: its answer again, no request
        if let Some(e) = self.inner.remembered.get(&key) {
            return Err(e);
        }
        let this = self.clone();
        let flight_key = key.clone();
        self.inner
            .flights
            .run(&key, move || async move {
                let out = this.execute(job).await;
                match &out {
                    Ok(_) => this.inner.remembered.forget(&flight_key),
                    Err(e) => this.inner.remembered.remember(&flight_key, e),
                }
                out
            })
            .await
    }

    /// The flight's work: cache again, request, save.
    async fn execute(&self, job: Job) -> Result<AcquiredToken, AcquireError> {
        let inner = &self.inner;
        let provider = inner.provider().await?;
        let started = inner.cache.two_level().clock().now_secs();
        if !job.force {
            let scopes: Vec<&str> = job.scopes.iter().map(String::as_str).collect();
            if let Some(t) = inner
                .cache
                .find_access_token(&job.lookup(inner, &scopes))
                .await?
            {
                return Ok(AcquiredToken::from_cache(t));
            }
        }
        if let Grant::Refresh { .. } | Grant::Session { .. } = &job.grant {
            return super::refresh::redeem(self, &provider, job).await;
        }
        // A long-running session asks for a refresh token of its own, to go on after the
        // incoming token expired.
        let mut scopes = job.scopes.clone();
        if matches!(
            job.grant,
            Grant::Obo {
                session_key: Some(_),
                ..
            }
        ) && !scopes
            .iter()
            .any(|s| s.eq_ignore_ascii_case("offline_access"))
        {
            scopes.push("offline_access".into());
        }
        let response = self
            .token_request(
                &provider,
                job.grant_form(),
                &scopes,
                job.claims.as_deref(),
                Replay::Safe,
            )
            .await?;
        self.save(&job, &response, started).await
    }

    /// Saves a response to `job`'s request sent at `started`, unless its user signed
    /// out meanwhile; returns the token.
    pub(crate) async fn save(
        &self,
        job: &Job,
        response: &TokenResponse,
        started: i64,
    ) -> Result<AcquiredToken, AcquireError> {
        let token = AcquiredToken::from_response(response, started)?;
        self.save_records(job, response, started).await?;
        Ok(token)
    }

    /// Saves what `response` holds (it may hold no access token: a refresh redemption
    /// keeps a rotated refresh token alone), unless its user signed out meanwhile.
    pub(crate) async fn save_records(
        &self,
        job: &Job,
        response: &TokenResponse,
        started: i64,
    ) -> Result<(), AcquireError> {
        let inner = &self.inner;
        if let Some(owner) = job.owner(response, inner.authority.issuer_key())? {
            // Compared to the millisecond on the store's clock, as the sign-out was
            // stamped (docs/design.md §7.1); `started` is whole seconds, so a sign-out in
            // the request's own second refuses it (the safe side).
            let two = inner.cache.two_level();
            if let Some(stamp_ms) = two.revocation_ms_of(&owner) {
                if stamp_ms >= two.to_store_ms(started.saturating_mul(1000)) {
                    return Err(AcquireError::SignedOut);
                }
            }
        }
        let scopes: Vec<&str> = job.scopes.iter().map(String::as_str).collect();
        let realm = self.realm_of(response).await;
        let mut request = SaveRequest::new(
            &inner.client_id,
            job.save_for(),
            &inner.authority.environment,
            &inner.authority.tenant,
            &scopes,
        )
        .realm(&realm);
        if let Some(alias) = inner.realm_alias() {
            request = request.realm_alias(alias);
        }
        if let Some(k) = inner.authority.issuer_key() {
            request = request.of_issuer(k);
        }
        inner
            .cache
            .save_token_response_at(&request, response, started)
            .await?;
        Ok(())
    }

    /// Sends one token request: the grant's fields, the scopes, the claims, the client
    /// authentication (made anew for every attempt); the response must be usable (an
    /// access token of type Bearer).
    pub(crate) async fn token_request(
        &self,
        provider: &Provider,
        form: Vec<(&'static str, FormValue)>,
        scopes: &[String],
        claims: Option<&str>,
        replay: Replay,
    ) -> Result<TokenResponse, AcquireError> {
        let response = self
            .token_request_unchecked(provider, form, scopes, claims, replay)
            .await?;
        super::http::check_usable(
            &super::http::shown(&provider.metadata.token_endpoint),
            &response,
        )?;
        Ok(response)
    }

    /// [`token_request`](Self::token_request) without the check that the response is
    /// usable: a refresh redemption keeps the rotated refresh token of any response.
    pub(crate) async fn token_request_unchecked(
        &self,
        provider: &Provider,
        mut form: Vec<(&'static str, FormValue)>,
        scopes: &[String],
        claims: Option<&str>,
        replay: Replay,
    ) -> Result<TokenResponse, AcquireError> {
        let inner = &self.inner;
        if !scopes.is_empty() {
            form.push(("scope", FormValue::Plain(scopes.join(" "))));
        }
        if let Some(c) = claims {
            form.push(("claims", FormValue::Plain(c.to_string())));
        }
        let endpoint = &provider.metadata.token_endpoint;
        let Some(credential) = &inner.credential else {
            return Err(no_provider());
        };
        // The assertion of the previous attempt (its hash): a provider that is not Entra
        // refuses a replayed `jti` (Okta, Keycloak, oidc-provider), so an assertion file that
        // still holds the one just sent is not sent again.
        let previous: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let previous = &previous;
        let authenticate = || -> futures::future::BoxFuture<'_, _> {
            Box::pin(async move {
                let now = inner.cache.two_level().clock().now_secs();
                let auth = credential
                    .authenticate(&inner.client_id, endpoint.as_str(), now)
                    .await?;
                if let Some(hash) = auth.assertion_hash() {
                    let mut last = previous.lock().unwrap_or_else(|p| p.into_inner());
                    if !inner.authority.is_entra && last.as_deref() == Some(hash.as_str()) {
                        return Err(AcquireError::Credential {
                            credential: "client assertion".into(),
                            reason: "the retry would send the assertion the previous attempt sent, which this provider refuses as a replay (a new one is needed: the assertion file was not renewed)".into(),
                        });
                    }
                    *last = Some(hash);
                }
                // counted per attempt sent: every one reaches (or may reach) the provider
                inner.requests.fetch_add(1, Ordering::Relaxed);
                Ok(auth)
            })
        };
        inner
            .http
            .post_token(endpoint, &form, &authenticate, replay)
            .await
    }
}

impl Inner {
    pub(crate) async fn provider(&self) -> Result<Arc<Provider>, AcquireError> {
        if self.managed.is_some() {
            return Err(no_provider());
        }
        self.provider
            .get_or_try_init(|| async {
                let url = self.authority.url.as_str();
                Provider::discover(&self.http, url).await.map(Arc::new)
            })
            .await
            .cloned()
    }
}

/// What an acquirer over a managed identity answers for anything but app tokens.
fn no_provider() -> AcquireError {
    AcquireError::Config(
        "this acquirer's tokens come from a managed identity: it acquires app tokens (client credentials) only".into(),
    )
}

/// How long a failed background refresh keeps the next one from starting: while the
/// provider fails, a busy token must not turn every cache hit into a token request.
const PROACTIVE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(30);
/// Keys remembered at most (then the oldest failures are forgotten).
const PROACTIVE_BACKOFF_KEYS: usize = 10_000;

/// The flight keys whose background refresh failed recently.
#[derive(Default)]
struct ProactiveBackoff {
    failed: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl ProactiveBackoff {
    fn may_try(&self, key: &str) -> bool {
        let map = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .is_none_or(|at| at.elapsed() >= PROACTIVE_BACKOFF)
    }

    fn failed(&self, key: &str) {
        let mut map = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PROACTIVE_BACKOFF_KEYS {
            map.retain(|_, at| at.elapsed() < PROACTIVE_BACKOFF);
            if map.len() >= PROACTIVE_BACKOFF_KEYS {
                map.clear();
            }
        }
        map.insert(key.to_string(), std::time::Instant::now());
    }

    fn succeeded(&self, key: &str) {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// What a single flight acquires: the grant and its inputs, owned (the flight outlives
/// the caller that started it).
#[derive(Clone)]
pub(crate) struct Job {
    pub(crate) grant: Grant,
    /// Scopes as asked.
    pub(crate) scopes: Vec<String>,
    pub(crate) force: bool,
    pub(crate) claims: Option<String>,
}

/// The grant of a [`Job`].
#[derive(Clone)]
pub(crate) enum Grant {
    /// client_credentials → the app partition.
    ClientCredentials,
    /// On behalf of the sender of `assertion`: Entra's jwt-bearer form or RFC 8693.
    Obo {
        assertion: Secret,
        exchange: Option<String>,
        /// The user the web app knows (links the partition to its sign-out).
        user: Option<String>,
        /// Long-running OBO: the session key.
        session_key: Option<String>,
    },
    /// refresh_token for a signed-in user.
    Refresh { home_account_id: String },
    /// refresh_token of a long-running OBO session.
    Session { session_key: String, user: String },
}

impl Job {
    pub(crate) fn new(grant: Grant, scopes: &[&str]) -> Self {
        Self {
            grant,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            force: false,
            claims: None,
        }
    }

    /// One flight per (partition, scopes, claims).
    pub(crate) fn flight_key(&self) -> String {
        let mut scopes: Vec<String> = self.scopes.iter().map(|s| s.to_lowercase()).collect();
        scopes.sort();
        scopes.dedup();
        let partition = match &self.grant {
            Grant::ClientCredentials => "app".to_string(),
            Grant::Obo {
                session_key: Some(k),
                ..
            }
            | Grant::Session { session_key: k, .. } => {
                format!("session:{}", crate::partition::session_partition_key(k))
            }
            Grant::Obo { assertion, .. } => {
                format!(
                    "obo:{}",
                    crate::partition::assertion_hash(assertion.expose())
                )
            }
            Grant::Refresh { home_account_id } => format!("user:{home_account_id}"),
        };
        let claims = self
            .claims
            .as_deref()
            .map(crate::partition::assertion_hash)
            .unwrap_or_default();
        format!("{partition}|{}|{claims}", scopes.join(" "))
    }

    /// The cache lookup this job answers.
    pub(crate) fn lookup<'a>(&'a self, inner: &'a Inner, scopes: &'a [&'a str]) -> Lookup<'a> {
        let l = match &self.grant {
            Grant::ClientCredentials => return inner.app_lookup(scopes),
            Grant::Obo {
                session_key: Some(k),
                ..
            }
            | Grant::Session { session_key: k, .. } => Lookup::new(
                &inner.client_id,
                crate::cache::Subject::OboSession { session_key: k },
                scopes,
            ),
            Grant::Obo { assertion, .. } => {
                Lookup::obo(&inner.client_id, assertion.expose(), scopes)
            }
            Grant::Refresh { home_account_id } => {
                Lookup::user(&inner.client_id, home_account_id, scopes)
            }
        };
        let home = match &self.grant {
            Grant::Refresh { home_account_id } => Some(home_account_id.as_str()),
            _ => None,
        };
        let l = l.environment(&inner.authority.environment);
        match inner.realm_filter(home) {
            Some(r) => l.tenant(r).tenant_alias(inner.realm_alias()),
            None => l,
        }
    }

    fn save_for(&self) -> crate::cache::SaveFor<'_> {
        use crate::cache::SaveFor;
        match &self.grant {
            Grant::ClientCredentials => SaveFor::App,
            Grant::Obo {
                session_key: Some(k),
                user: Some(u),
                ..
            } => SaveFor::OboSession {
                session_key: k,
                user: u,
            },
            Grant::Obo {
                assertion,
                user: Some(u),
                ..
            } => SaveFor::OboFor {
                assertion: assertion.expose(),
                user: u,
            },
            Grant::Obo { assertion, .. } => SaveFor::Obo {
                assertion: assertion.expose(),
            },
            Grant::Refresh { home_account_id } => SaveFor::KnownUser { home_account_id },
            Grant::Session { session_key, user } => SaveFor::OboSession { session_key, user },
        }
    }

    /// The user whose sign-out must refuse what this job brings (`issuer_key`: the
    /// provider's, when it is not Microsoft Entra).
    fn owner(
        &self,
        response: &TokenResponse,
        issuer_key: Option<&str>,
    ) -> Result<Option<String>, AcquireError> {
        Ok(match &self.grant {
            Grant::ClientCredentials => None,
            Grant::Obo { user: Some(u), .. } | Grant::Session { user: u, .. } => Some(u.clone()),
            Grant::Obo { assertion, .. } => crate::schema::decode_jwt_claims(assertion.expose())
                .ok()
                .and_then(|c| crate::issuer::account_of(&c)),
            Grant::Refresh { home_account_id } => {
                let named = response.home_account_id_at(issuer_key).map_err(|e| {
                    AcquireError::Malformed {
                        endpoint: "token endpoint".into(),
                        reason: e.to_string(),
                    }
                })?;
                Some(named.unwrap_or_else(|| home_account_id.clone()))
            }
        })
    }

    /// The grant's own form fields.
    pub(crate) fn grant_form(&self) -> Vec<(&'static str, FormValue)> {
        super::grants::form(&self.grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_background_refresh_holds_back_its_key_only_until_it_succeeds() {
        let b = ProactiveBackoff::default();
        assert!(b.may_try("k"));
        b.failed("k");
        assert!(!b.may_try("k"));
        assert!(b.may_try("other"));
        b.succeeded("k");
        assert!(b.may_try("k"));
        for i in 0..PROACTIVE_BACKOFF_KEYS + 5 {
            b.failed(&i.to_string());
        }
        let len = b.failed.lock().unwrap().len();
        assert!(len <= PROACTIVE_BACKOFF_KEYS, "{len}");
    }

    #[tokio::test]
    async fn entra_user_requests_ask_for_client_info() {
        let cache = TokenCache::builder()
            .store_url("memory://")
            .build()
            .await
            .unwrap();
        let make = |authority: &str| {
            Acquirer::builder(
                cache.clone(),
                authority,
                "c",
                ClientCredential::SecretPost(Secret::new("s")),
            )
            .build()
            .unwrap()
        };
        let entra = make("https://login.microsoftonline.com/t/v2.0");
        let fields: Vec<&str> = entra.inner.user_form().iter().map(|(k, _)| *k).collect();
        assert_eq!(fields, ["client_info"]);
        assert!(make("https://op.example/t").inner.user_form().is_empty());
    }

    #[test]
    fn flight_keys_separate_partitions_scopes_and_claims_but_not_scope_order() {
        let app = |scopes: &[&str]| Job::new(Grant::ClientCredentials, scopes).flight_key();
        assert_eq!(app(&["a", "B"]), app(&["b", "a"]));
        assert_ne!(app(&["a"]), app(&["a", "b"]));
        let mut claims = Job::new(Grant::ClientCredentials, &["a"]);
        claims.claims = Some("{}".into());
        assert_ne!(claims.flight_key(), app(&["a"]));
        let user = |h: &str| {
            Job::new(
                Grant::Refresh {
                    home_account_id: h.into(),
                },
                &["a"],
            )
            .flight_key()
        };
        assert_ne!(user("u1"), user("u2"));
        let obo = |a: &str| {
            Job::new(
                Grant::Obo {
                    assertion: Secret::new(a),
                    exchange: None,
                    user: None,
                    session_key: None,
                },
                &["a"],
            )
            .flight_key()
        };
        assert_ne!(obo("x.y.z"), obo("x.y.w"));
        assert!(!obo("secret.assertion.value").contains("secret.assertion"));
    }
}
