//! [`TokenCacheBuilder`]: the store, L1, expiry, the L2 failure policy, the backplane,
//! encryption keys.

use std::sync::Arc;
use std::time::Duration;

use super::TokenCache;
use crate::clock::SharedClock;
use crate::error::Error;
use crate::memory::L1Options;
use crate::schema::AppAccountForm;
use crate::store::{self, SharedStore};
use crate::twolevel::{ExpiryOptions, TwoLevel, TwoLevelOptions};

/// Builds a [`TokenCache`].
#[derive(Debug)]
pub struct TokenCacheBuilder {
    store: Option<SharedStore>,
    /// Shown redacted by the derived `Debug` (never the password).
    url: Option<store::ConfiguredUrl>,
    layout: Option<store::StoreLayout>,
    clock: SharedClock,
    options: TwoLevelOptions,
    skew: Duration,
    app_account_form: AppAccountForm,
    keys: Keys,
    accept_plaintext: Option<bool>,
}

/// Where the builder takes the key ring from.
enum Keys {
    /// `TOKENCACHE_KEYS` / `TOKENCACHE_KEYS_FILE`; none set: no encryption.
    Env,
    /// Given to the builder.
    Ring(crate::protect::KeyRing),
    /// Asked of a provider at build time.
    Provider(Arc<dyn crate::protect::KeyProvider>),
    /// Plaintext, whatever the environment says.
    Off,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keys::Env => f.write_str("Env"),
            Keys::Ring(r) => f.debug_tuple("Ring").field(r).finish(),
            Keys::Provider(_) => f.write_str("Provider(..)"),
            Keys::Off => f.write_str("Off"),
        }
    }
}

impl TokenCacheBuilder {
    /// The defaults (see [`TokenCache::builder`]).
    pub(super) fn new() -> Self {
        Self {
            store: None,
            url: None,
            layout: None,
            clock: Arc::new(crate::clock::SystemClock),
            options: TwoLevelOptions::default(),
            skew: Duration::from_secs(300),
            app_account_form: AppAccountForm::default(),
            keys: Keys::Env,
            accept_plaintext: None,
        }
    }

    // ---- Encryption at rest (docs/design.md §9; see `crate::protect`) ----

    /// Encrypts every partition in L2 with this ring's primary key (and opens those
    /// sealed with any of its keys). Default: the ring in `TOKENCACHE_KEYS` or the file
    /// named by `TOKENCACHE_KEYS_FILE`; neither set, no encryption.
    pub fn keys(mut self, ring: crate::protect::KeyRing) -> Self {
        self.keys = Keys::Ring(ring);
        self
    }

    /// Takes the key ring from `provider` (a KMS, a vault) when the cache is built.
    pub fn key_provider(mut self, provider: Arc<dyn crate::protect::KeyProvider>) -> Self {
        self.keys = Keys::Provider(provider);
        self
    }

    /// Stores plaintext MSAL JSON (readable by MSAL Python, msal-node and .NET) even
    /// when the environment configures keys.
    pub fn no_encryption(mut self) -> Self {
        self.keys = Keys::Off;
        self
    }

    /// The migration setting: with keys configured, plaintext partitions found in L2
    /// are read (and encrypted on their next write) instead of being refused. Default:
    /// `TOKENCACHE_ACCEPT_PLAINTEXT=1` in the environment, else false.
    pub fn accept_plaintext(mut self, accept: bool) -> Self {
        self.accept_plaintext = Some(accept);
        self
    }

    /// Uses this store for L2.
    pub fn store(mut self, store: SharedStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Opens L2 from a URL (`redb:///path`, `redis://…`, `rediss://…`,
    /// `redis+cluster://h:p,h:p`, `memory://`). Default: the embedded store in the
    /// platform cache folder.
    pub fn store_url(mut self, url: &str) -> Self {
        self.url = Some(store::ConfiguredUrl::new(url));
        self
    }

    /// The layout a Redis store opened from [`store_url`](Self::store_url) writes new
    /// keys in: [`StoreLayout::String`](store::StoreLayout::String) (msal-node, MSAL
    /// Python, tokencache) or [`StoreLayout::DotNet`](store::StoreLayout::DotNet) (the
    /// hash of .NET's `RedisCache`, for Microsoft.Identity.Web). Overrides the URL's
    /// `?layout=`; existing keys keep their layout either way. A store given with
    /// [`store`](Self::store) keeps its own (`RedisOptions::layout`).
    pub fn redis_layout(mut self, layout: store::StoreLayout) -> Self {
        self.layout = Some(layout);
        self
    }

    /// Puts `prefix` in front of every L2 key (Redis "instance name").
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.options.key_prefix = prefix.to_string();
        self
    }

    /// Caps L1 at `bytes` (summed serialized partition sizes). Default 256 MiB.
    pub fn l1_max_bytes(mut self, bytes: u64) -> Self {
        self.options.l1 = Some(L1Options { max_bytes: bytes });
        self
    }

    /// Turns L1 off: every read goes to L2 (for measurements; tokencache keeps replicas
    /// coherent without this).
    pub fn disable_l1(mut self) -> Self {
        self.options.l1 = None;
        self
    }

    /// Sets the expiry rules.
    pub fn expiry(mut self, expiry: ExpiryOptions) -> Self {
        self.options.expiry = expiry;
        self
    }

    /// Cross-replica L1 invalidation (on by default when the store has a backplane:
    /// Redis pub/sub, or in process for the memory and embedded stores).
    pub fn backplane(mut self, backplane: crate::twolevel::BackplaneOptions) -> Self {
        self.options.backplane = backplane;
        self
    }

    /// Strict reads: every L1 hit first checks, with one small L2 round trip (the
    /// value's digest), that L2 still holds what L1 mirrors, so a replica reads another
    /// replica's write at once, without waiting for the backplane's message (and sees
    /// writers that publish none, such as .NET or MSAL apps). Default off: an L1 hit
    /// then makes no L2 call. When L2 fails, L1 serves as usual.
    pub fn strict_reads(mut self, on: bool) -> Self {
        self.options.strict_reads = on;
        self
    }

    /// Bounds every L2 call. Default 250 ms (see [`crate::twolevel::DEFAULT_L2_TIMEOUT`]).
    pub fn l2_timeout(mut self, timeout: Duration) -> Self {
        self.options.l2_timeout = timeout;
        self
    }

    /// A token expiring within `skew` is not returned. Default 5 minutes.
    pub fn skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// The form of an empty `home_account_id` in partitions this cache creates (app
    /// tokens, OBO without a user): [`AppAccountForm::Empty`] (`""`, what msal-node and
    /// MSAL.NET read; the default) or [`AppAccountForm::Null`] (what MSAL Python reads).
    /// A partition that already exists keeps the form it has.
    pub fn app_account_form(mut self, form: AppAccountForm) -> Self {
        self.app_account_form = form;
        self
    }

    /// Uses this clock (tests, simulation).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Loads the key ring (if any), opens the store and builds the cache.
    pub async fn build(mut self) -> Result<TokenCache, Error> {
        let ring = match std::mem::replace(&mut self.keys, Keys::Off) {
            Keys::Env => crate::protect::KeyRing::from_env()?,
            Keys::Ring(r) => Some(r),
            Keys::Provider(p) => Some(p.key_ring().await?),
            Keys::Off => None,
        };
        let accept = self
            .accept_plaintext
            .unwrap_or_else(crate::protect::accept_plaintext_from_env);
        self.options.protection =
            ring.map(|r| crate::protect::Protection::new(r).accept_plaintext(accept));
        let store = match (self.store, self.url) {
            (Some(s), _) => s,
            (None, Some(url)) => store::open_with_layout(url.expose(), self.layout).await?,
            (None, None) => store::open("").await?,
        };
        let check = self.options.probe_at_start;
        let two = Arc::new(TwoLevel::new(store, self.clock, self.options));
        // Sign-outs and record times on the store's clock, from the first write on.
        two.sync_store_clock().await;
        if check {
            // What the server and its user allow (TLS, ACL, version, scripts, pub/sub,
            // slots), checked as `tokencache check` does; what fails is logged once.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let store = two.store().clone();
                let prefix = two.keys().prefix().to_string();
                handle.spawn(async move {
                    if let Some(report) = store.requirements(&prefix).await {
                        report.log_missing();
                    }
                });
            }
        }
        Ok(TokenCache {
            two,
            skew_secs: self.skew.as_secs() as i64,
            app_account_form: self.app_account_form,
            obo_keys: Default::default(),
        })
    }

    // ---- L2 failure policy (docs/design.md §6; see `crate::twolevel`) ----

    /// Decides, per failed L2 call, whether to retry it (after a bounded backoff, see
    /// [`l2_retry`](Self::l2_retry)) or give up (a read is a miss, a write is queued).
    /// Default: give up at once.
    pub fn on_l2_failure(
        mut self,
        callback: impl Fn(&crate::twolevel::L2Failure<'_>) -> crate::twolevel::L2Decision
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.options.policy.on_l2_failure = Some(Arc::new(callback));
        self
    }

    /// Bounds the retries `on_l2_failure` may ask for. Default 2 retries, 20 ms doubling
    /// to at most 200 ms.
    pub fn l2_retry(mut self, retry: crate::twolevel::RetryOptions) -> Self {
        self.options.policy.retry = retry;
        self
    }

    /// Sets the circuit breaker in front of L2. Default: opens after 5 failures in a
    /// row, probes after 1 s, doubling up to 10 s while probes fail.
    pub fn l2_breaker(mut self, breaker: crate::twolevel::BreakerOptions) -> Self {
        self.options.breaker = breaker;
        self
    }

    /// Caps the recovery queue's writes (those L2 did not take, latest per key) at
    /// `keys`; when full the oldest write is dropped and counted. Default 10,000.
    pub fn recovery_queue_capacity(mut self, keys: usize) -> Self {
        self.options.queue_capacity = keys;
        self
    }

    /// Caps the recovery queue's sign-outs (revocation stamps and removals L2 did not
    /// take) at `keys`. They are never dropped: a sign-out beyond the cap is refused
    /// with [`Error::SignOutRefused`]. Default 10,000.
    pub fn signout_queue_capacity(mut self, keys: usize) -> Self {
        self.options.signout_queue_capacity = keys;
        self
    }

    /// Whether to probe L2 when the cache is built (reports a wrong host, password or
    /// TLS setting at once, in the log; the cache works from L1 either way), and, on
    /// Redis, check in the background what the server and its user allow, as
    /// `tokencache check` does (it writes and removes a few keys of its own under the
    /// prefix, `tc:check:…`, each with a 60 s TTL). Default true; off for short-lived
    /// processes that should write nothing of their own.
    pub fn probe_l2_at_start(mut self, probe: bool) -> Self {
        self.options.probe_at_start = probe;
        self
    }
}
