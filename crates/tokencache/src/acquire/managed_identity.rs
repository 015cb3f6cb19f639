//! Azure managed identity as a token source ([`ManagedIdentity`]), through the cache.
//!
//! Two protocols, as Microsoft documents them (the endpoints only exist inside Azure; the
//! tests run a loopback server that follows these documents):
//!
//! * **App Service / Functions** (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`):
//!   `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=R` with the header
//!   `X-IDENTITY-HEADER: {IDENTITY_HEADER}`; a user-assigned identity by `client_id`,
//!   `principal_id` (its object id) or `mi_res_id` (its Azure resource id).
//! * **IMDS** (VMs, scale sets, AKS pod identity): `GET
//!   http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=R`
//!   with `Metadata: true`; a user-assigned identity by `client_id`, `object_id` or
//!   `msi_res_id`. The host is overridden by `AZURE_POD_IDENTITY_AUTHORITY_HOST`, else
//!   `IMDS_ENDPOINT`.
//!
//! Both answer `{"access_token", "expires_on", "resource", "token_type", ...}` with
//! `expires_on` in Unix seconds as a string (a number is accepted too). A 404, 408, 410
//! (IMDS while it starts), 429 or 5xx is asked again with backoff, honouring
//! `Retry-After`. Azure Arc and Cloud Shell (and App Service's 2017-09-01 protocol,
//! `MSI_ENDPOINT`) are not supported: a typed error says so.
//!
//! Tokens are cached as MSAL caches them: in the app partition of the identity —
//! client id `system_assigned_managed_identity` for the system-assigned identity, the
//! given id for a user-assigned one (so they never share a partition), tenant
//! `managed_identity` — one access token per resource (target `{resource}/.default`).
//! Requests for one (identity, resource) share one single flight; a token past its
//! `refresh_on` (half its lifetime when that is two hours or more, as MSAL sets it) is
//! served while a new one is fetched in the background.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::acquirer::{AcquireOptions, AcquiredToken, TokenSource};
use super::error::{AcquireError, OAuthError, OAuthErrorCode};
use super::http::{shown, Answer, Http, HttpOptions, Replay};
use super::single_flight::SingleFlight;
use crate::cache::{Lookup, SaveFor, SaveRequest, TokenCache};
use crate::schema::{Secret, TokenResponse};

/// The audience of a managed identity's token used as an app registration's client
/// assertion (Entra's federated identity credential).
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The App Service protocol version spoken.
pub const APP_SERVICE_API_VERSION: &str = "2019-08-01";
/// The IMDS protocol version spoken.
pub const IMDS_API_VERSION: &str = "2018-02-01";
/// IMDS's address.
pub const IMDS_DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
/// The cache realm (tenant) of managed identity tokens, as MSAL writes it.
pub const MANAGED_IDENTITY_TENANT: &str = "managed_identity";
/// The cache environment of managed identity tokens, as MSAL writes it.
pub const MANAGED_IDENTITY_ENVIRONMENT: &str = "login.microsoftonline.com";
/// The cache client id of the system-assigned identity, as MSAL writes it.
pub const SYSTEM_ASSIGNED_CLIENT_ID: &str = "system_assigned_managed_identity";

/// Which managed identity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ManagedIdentityId {
    /// The resource's own (system-assigned) identity.
    #[default]
    SystemAssigned,
    /// A user-assigned identity by its client id.
    ClientId(String),
    /// A user-assigned identity by its object (principal) id.
    ObjectId(String),
    /// A user-assigned identity by its Azure resource id.
    ResourceId(String),
}

impl ManagedIdentityId {
    /// The client id its tokens are cached under (the partition's).
    pub fn cache_client_id(&self) -> &str {
        match self {
            ManagedIdentityId::SystemAssigned => SYSTEM_ASSIGNED_CLIENT_ID,
            ManagedIdentityId::ClientId(v)
            | ManagedIdentityId::ObjectId(v)
            | ManagedIdentityId::ResourceId(v) => v,
        }
    }

    /// The query parameter naming it at `source`, if any.
    fn parameter(&self, source: &ManagedIdentitySource) -> Option<(&'static str, &str)> {
        let app_service = matches!(source, ManagedIdentitySource::AppService { .. });
        match self {
            ManagedIdentityId::SystemAssigned => None,
            ManagedIdentityId::ClientId(v) => Some(("client_id", v)),
            ManagedIdentityId::ObjectId(v) if app_service => Some(("principal_id", v)),
            ManagedIdentityId::ObjectId(v) => Some(("object_id", v)),
            ManagedIdentityId::ResourceId(v) if app_service => Some(("mi_res_id", v)),
            ManagedIdentityId::ResourceId(v) => Some(("msi_res_id", v)),
        }
    }
}

/// Where the managed identity endpoint is.
#[derive(Clone)]
pub enum ManagedIdentitySource {
    /// App Service / Functions (api-version 2019-08-01).
    AppService {
        /// `IDENTITY_ENDPOINT`.
        endpoint: url::Url,
        /// `IDENTITY_HEADER` (sent as `X-IDENTITY-HEADER`; redacted in `Debug`).
        header: Secret,
    },
    /// The Instance Metadata Service (api-version 2018-02-01).
    Imds {
        /// The service's base URL (default `http://169.254.169.254`).
        endpoint: url::Url,
    },
}

impl std::fmt::Debug for ManagedIdentitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManagedIdentitySource::AppService { endpoint, .. } => f
                .debug_struct("AppService")
                .field("endpoint", &shown(endpoint))
                .field("header", &"<redacted>")
                .finish(),
            ManagedIdentitySource::Imds { endpoint } => f
                .debug_struct("Imds")
                .field("endpoint", &shown(endpoint))
                .finish(),
        }
    }
}

impl ManagedIdentitySource {
    /// The source the process environment names (see [`from_lookup`](Self::from_lookup)).
    pub fn from_env() -> Result<Self, AcquireError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// The source `env` names, as the Azure SDKs read it: `IDENTITY_ENDPOINT` with
    /// `IDENTITY_HEADER` is App Service; otherwise IMDS, at
    /// `AZURE_POD_IDENTITY_AUTHORITY_HOST`, else `IMDS_ENDPOINT`, else
    /// `http://169.254.169.254`. Azure Arc (`IDENTITY_ENDPOINT` with `IMDS_ENDPOINT`) and
    /// Cloud Shell / App Service 2017-09-01 (`MSI_ENDPOINT`) are refused.
    pub fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, AcquireError> {
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let url = |var: &str, v: &str| {
            url::Url::parse(v).map_err(|e| AcquireError::Config(format!("{var} is not a URL: {e}")))
        };
        match (get("IDENTITY_ENDPOINT"), get("IDENTITY_HEADER")) {
            (Some(endpoint), Some(header)) => {
                return Ok(ManagedIdentitySource::AppService {
                    endpoint: url("IDENTITY_ENDPOINT", &endpoint)?,
                    header: Secret::new(header),
                })
            }
            (Some(_), None) if get("IMDS_ENDPOINT").is_some() => {
                return Err(AcquireError::Config(
                    "IDENTITY_ENDPOINT with IMDS_ENDPOINT is Azure Arc's managed identity, which is not supported".into(),
                ))
            }
            (Some(_), None) => {
                return Err(AcquireError::Config(
                    "IDENTITY_ENDPOINT is set without IDENTITY_HEADER".into(),
                ))
            }
            (None, _) => {}
        }
        if get("MSI_ENDPOINT").is_some() {
            return Err(AcquireError::Config(
                "MSI_ENDPOINT (Cloud Shell, or App Service's 2017-09-01 protocol) is not supported: App Service sets IDENTITY_ENDPOINT and IDENTITY_HEADER".into(),
            ));
        }
        let (var, base) = match (
            get("AZURE_POD_IDENTITY_AUTHORITY_HOST"),
            get("IMDS_ENDPOINT"),
        ) {
            (Some(h), _) => ("AZURE_POD_IDENTITY_AUTHORITY_HOST", h),
            (None, Some(e)) => ("IMDS_ENDPOINT", e),
            (None, None) => ("IMDS", IMDS_DEFAULT_ENDPOINT.to_string()),
        };
        Ok(ManagedIdentitySource::Imds {
            endpoint: url(var, &base)?,
        })
    }

    /// The token request's URL for `resource` and `id`.
    fn token_url(&self, resource: &str, id: &ManagedIdentityId) -> url::Url {
        let (mut url, version) = match self {
            ManagedIdentitySource::AppService { endpoint, .. } => {
                (endpoint.clone(), APP_SERVICE_API_VERSION)
            }
            ManagedIdentitySource::Imds { endpoint } => {
                let mut u = endpoint.clone();
                let path = format!("{}{IMDS_PATH}", u.path().trim_end_matches('/'));
                u.set_path(&path);
                (u, IMDS_API_VERSION)
            }
        };
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", version);
            q.append_pair("resource", resource);
            if let Some((name, value)) = id.parameter(self) {
                q.append_pair(name, value);
            }
        }
        url
    }

    /// The header that authenticates the request (and, for App Service, mitigates
    /// server-side request forgery).
    fn header(&self) -> (&'static str, Secret) {
        match self {
            ManagedIdentitySource::AppService { header, .. } => {
                ("X-IDENTITY-HEADER", header.clone())
            }
            ManagedIdentitySource::Imds { .. } => ("Metadata", Secret::new("true")),
        }
    }
}

/// Builds a [`ManagedIdentity`].
#[derive(Debug)]
pub struct ManagedIdentityBuilder {
    cache: TokenCache,
    id: ManagedIdentityId,
    source: Option<ManagedIdentitySource>,
    http: HttpOptions,
}

impl ManagedIdentityBuilder {
    /// Which identity (default: the system-assigned one).
    pub fn identity(mut self, id: ManagedIdentityId) -> Self {
        self.id = id;
        self
    }

    /// Where the endpoint is (default: [`ManagedIdentitySource::from_env`]).
    pub fn source(mut self, source: ManagedIdentitySource) -> Self {
        self.source = Some(source);
        self
    }

    /// Timeouts and retries of the endpoint's calls.
    pub fn http(mut self, options: HttpOptions) -> Self {
        self.http = options;
        self
    }

    /// Checks the configuration and builds it.
    pub fn build(self) -> Result<ManagedIdentity, AcquireError> {
        let source = match self.source {
            Some(s) => s,
            None => ManagedIdentitySource::from_env()?,
        };
        if let ManagedIdentityId::ClientId(v)
        | ManagedIdentityId::ObjectId(v)
        | ManagedIdentityId::ResourceId(v) = &self.id
        {
            if v.trim().is_empty() {
                return Err(AcquireError::Config(
                    "a user-assigned managed identity's id is empty".into(),
                ));
            }
        }
        let key =
            crate::partition::PartitionKey::app(self.id.cache_client_id(), MANAGED_IDENTITY_TENANT);
        crate::partition::check_key(key.as_str())
            .map_err(|e| AcquireError::Config(format!("managed identity id: {e}")))?;
        Ok(ManagedIdentity {
            inner: Arc::new(Inner {
                cache: self.cache,
                id: self.id,
                source,
                http: Http::new(self.http)?,
                flights: SingleFlight::new(|| Err(AcquireError::Interrupted)),
                requests: AtomicU64::new(0),
                failed: std::sync::Mutex::new(std::collections::HashMap::new()),
            }),
        })
    }
}

/// Tokens of an Azure managed identity, through the cache. Cheap to clone.
#[derive(Clone)]
pub struct ManagedIdentity {
    inner: Arc<Inner>,
}

struct Inner {
    cache: TokenCache,
    id: ManagedIdentityId,
    source: ManagedIdentitySource,
    http: Http,
    flights: SingleFlight<Result<AcquiredToken, AcquireError>>,
    requests: AtomicU64,
    /// When a background refresh of a scope last failed: while the endpoint fails, a
    /// busy token must not turn every cache hit into a request.
    failed: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How long a failed background refresh keeps the next one from starting.
const BACKGROUND_BACKOFF: std::time::Duration = std::time::Duration::from_secs(30);

impl std::fmt::Debug for ManagedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedIdentity")
            .field("identity", &self.inner.id)
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

/// The resource of a resource or a scope (`https://vault.azure.net/.default` asks for
/// `https://vault.azure.net`), and the scope its token is cached under.
pub fn resource_and_scope(resource: &str) -> (String, String) {
    let r = resource.trim();
    let r = r.strip_suffix("/.default").unwrap_or(r);
    (r.to_string(), format!("{r}/.default"))
}

impl ManagedIdentity {
    /// A builder saving into `cache`.
    pub fn builder(cache: TokenCache) -> ManagedIdentityBuilder {
        ManagedIdentityBuilder {
            cache,
            id: ManagedIdentityId::SystemAssigned,
            source: None,
            http: HttpOptions::default(),
        }
    }

    /// Which identity.
    pub fn identity(&self) -> &ManagedIdentityId {
        &self.inner.id
    }

    /// Where its endpoint is.
    pub fn source(&self) -> &ManagedIdentitySource {
        &self.inner.source
    }

    /// The cache it reads and saves through.
    pub fn cache(&self) -> &TokenCache {
        &self.inner.cache
    }

    /// The app partition its tokens are cached in (no prefix).
    pub fn partition_key(&self) -> String {
        crate::partition::PartitionKey::app(
            self.inner.id.cache_client_id(),
            MANAGED_IDENTITY_TENANT,
        )
        .as_str()
        .to_string()
    }

    /// Requests sent to the endpoint (every attempt).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Single flights running now.
    pub fn flights_running(&self) -> usize {
        self.inner.flights.in_flight()
    }

    /// A token for `resource` (`https://vault.azure.net`; a scope ending in `/.default`
    /// names its resource): the cached one, else one from the endpoint.
    pub async fn acquire(&self, resource: &str) -> Result<AcquiredToken, AcquireError> {
        self.acquire_with(resource, &AcquireOptions::default())
            .await
    }

    /// [`acquire`](Self::acquire) with options: a forced refresh (or claims, which the
    /// endpoints do not take: they only force the refresh) asks the endpoint.
    pub async fn acquire_with(
        &self,
        resource: &str,
        options: &AcquireOptions,
    ) -> Result<AcquiredToken, AcquireError> {
        let (resource, scope) = resource_and_scope(resource);
        if resource.is_empty() || resource.chars().any(char::is_whitespace) {
            return Err(AcquireError::Config(
                "a managed identity token needs one resource, without spaces".into(),
            ));
        }
        let force = options.force_refresh || options.claims.is_some();
        if !force {
            if let Some(t) = self.cached(&scope).await? {
                if t.needs_refresh && self.may_refresh(&scope) {
                    let this = self.clone();
                    let (r, s) = (resource.clone(), scope.clone());
                    tokio::spawn(async move {
                        let failed = this.run(r, s.clone(), true).await.err();
                        let mut map = this.inner.failed.lock().unwrap_or_else(|p| p.into_inner());
                        match failed {
                            Some(e) => {
                                // one entry per scope the identity asked for: bounded by use
                                map.insert(s, std::time::Instant::now());
                                tracing::warn!(error = %e, "managed identity: background refresh failed; the current token is still served");
                            }
                            None => {
                                map.remove(&s);
                            }
                        }
                    });
                }
                return Ok(AcquiredToken::from_cache(t));
            }
        }
        self.run(resource, scope, force).await
    }

    /// Whether a background refresh of `scope` may start (none failed lately).
    fn may_refresh(&self, scope: &str) -> bool {
        let map = self.inner.failed.lock().unwrap_or_else(|p| p.into_inner());
        map.get(scope)
            .is_none_or(|at| at.elapsed() >= BACKGROUND_BACKOFF)
    }

    async fn cached(&self, scope: &str) -> Result<Option<crate::CachedToken>, AcquireError> {
        let scopes = [scope];
        let lookup = Lookup::app(
            self.inner.id.cache_client_id(),
            MANAGED_IDENTITY_TENANT,
            &scopes,
        )
        .environment(MANAGED_IDENTITY_ENVIRONMENT);
        Ok(self.inner.cache.find_access_token(&lookup).await?)
    }

    async fn run(
        &self,
        resource: String,
        scope: String,
        force: bool,
    ) -> Result<AcquiredToken, AcquireError> {
        let key = scope.to_lowercase();
        let this = self.clone();
        self.inner
            .flights
            .run(&key, move || async move {
                if !force {
                    if let Some(t) = this.cached(&scope).await? {
                        return Ok(AcquiredToken::from_cache(t));
                    }
                }
                this.fetch(&resource, &scope).await
            })
            .await
    }

    /// Asks the endpoint, saves, returns the token.
    async fn fetch(&self, resource: &str, scope: &str) -> Result<AcquiredToken, AcquireError> {
        let inner = &self.inner;
        let started = inner.cache.two_level().clock().now_secs();
        let url = inner.source.token_url(resource, &inner.id);
        let (name, value) = inner.source.header();
        inner.requests.fetch_add(1, Ordering::Relaxed);
        let answer = inner
            .http
            .get_with(&url, &[(name, &value)], retry_status, Replay::Safe)
            .await?;
        let response = parse_answer(&shown(&url), answer, started)?;
        let scopes = [scope];
        let request = SaveRequest::new(
            inner.id.cache_client_id(),
            SaveFor::App,
            MANAGED_IDENTITY_ENVIRONMENT,
            MANAGED_IDENTITY_TENANT,
            &scopes,
        );
        inner
            .cache
            .save_token_response_at(&request, &response, started)
            .await?;
        let mut token = AcquiredToken::from_response(&response, started)?;
        token.source = TokenSource::Provider;
        token.token_type = Cow::Borrowed("Bearer");
        Ok(token)
    }
}

/// The answers asked again: not found (IMDS before an identity is assigned, App Service
/// while it starts), timeout, gone (IMDS updating), throttled, server errors.
fn retry_status(status: u16) -> bool {
    matches!(status, 404 | 408 | 410 | 429) || status >= 500
}

/// A number of seconds as a JSON number or a string of one.
fn seconds(v: Option<&serde_json::Value>) -> Option<i64> {
    match v? {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// A managed identity endpoint's answer as a token response to save (a request sent at
/// `started`), or its error typed.
fn parse_answer(
    endpoint: &str,
    answer: Answer,
    started: i64,
) -> Result<TokenResponse, AcquireError> {
    let malformed = |reason: &str| AcquireError::Malformed {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let body: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
    if !(200..300).contains(&answer.status) {
        // IMDS: {"error": "invalid_request", "error_description": "Identity not found"};
        // App Service: {"error": {"code": ..., "message": ...}} or {"statusCode", "message"}
        let s =
            |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        let oauth = body.as_ref().and_then(|b| match b.get("error") {
            Some(serde_json::Value::String(code)) => {
                Some((code.clone(), s(b, "error_description")))
            }
            Some(e @ serde_json::Value::Object(_)) => s(e, "code").map(|c| (c, s(e, "message"))),
            _ => None,
        });
        return Err(match oauth {
            Some((code, description)) => AcquireError::OAuth(Box::new(OAuthError {
                code: OAuthErrorCode::parse(&code),
                description: description.or_else(|| body.as_ref().and_then(|b| s(b, "message"))),
                uri: None,
                status: answer.status,
                retry_after: answer.retry_after,
                suberror: None,
                claims: None,
            })),
            None => AcquireError::Status {
                endpoint: endpoint.to_string(),
                status: answer.status,
                retry_after: answer.retry_after,
                excerpt: super::http::excerpt(&answer.body),
            },
        });
    }
    let body = body.ok_or_else(|| malformed("not JSON"))?;
    let token = body
        .get("access_token")
        .and_then(|v| v.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| malformed("no access_token"))?;
    if let Some(t) = body.get("token_type").and_then(|v| v.as_str()) {
        if !t.eq_ignore_ascii_case("bearer") {
            return Err(malformed("token_type is not Bearer"));
        }
    }
    let expires_on = match seconds(body.get("expires_on")) {
        Some(on) => on,
        None => match seconds(body.get("expires_in")) {
            Some(i) => started.saturating_add(i),
            None => {
                return Err(malformed(
                    "no expires_on (Unix seconds, a string or a number)",
                ))
            }
        },
    };
    let expires_in = expires_on.saturating_sub(started);
    if expires_in <= 0 {
        return Err(malformed(
            "the token has already expired (expires_on is past)",
        ));
    }
    Ok(TokenResponse {
        access_token: Some(Secret::new(token)),
        token_type: Some("Bearer".into()),
        expires_in: Some(expires_in),
        // MSAL's rule for managed identity: refresh at half the lifetime when it is two
        // hours or more
        refresh_in: (expires_in >= 7200).then_some(expires_in / 2),
        ..TokenResponse::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_source_is_read_from_the_environment_as_the_azure_sdks_do() {
        let s = ManagedIdentitySource::from_lookup(&env(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/msi/token"),
            ("IDENTITY_HEADER", "hdr-secret-value"),
        ]))
        .unwrap();
        let url = s.token_url(
            "https://vault.azure.net",
            &ManagedIdentityId::ObjectId("o1".into()),
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:41741/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net&principal_id=o1"
        );
        assert_eq!(s.header().0, "X-IDENTITY-HEADER");
        assert!(!format!("{s:?}").contains("hdr-secret-value"));

        let imds = ManagedIdentitySource::from_lookup(&env(&[])).unwrap();
        let url = imds.token_url("r", &ManagedIdentityId::ResourceId("/sub/x".into()));
        assert_eq!(
            url.as_str(),
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=r&msi_res_id=%2Fsub%2Fx"
        );
        assert_eq!(imds.header().0, "Metadata");
        assert_eq!(imds.header().1.expose(), "true");
        let pod = ManagedIdentitySource::from_lookup(&env(&[
            (
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                "http://127.0.0.1:2000/",
            ),
            ("IMDS_ENDPOINT", "http://127.0.0.1:3000"),
        ]))
        .unwrap();
        let url = pod.token_url("r", &ManagedIdentityId::ClientId("c1".into()));
        assert!(
            url.as_str()
                .starts_with("http://127.0.0.1:2000/metadata/identity/oauth2/token?"),
            "{url}"
        );
        assert!(url.as_str().ends_with("&client_id=c1"));
        let over =
            ManagedIdentitySource::from_lookup(&env(&[("IMDS_ENDPOINT", "http://127.0.0.1:3000")]))
                .unwrap();
        let url = over.token_url("r", &ManagedIdentityId::ObjectId("o".into()));
        assert!(
            url.as_str().starts_with("http://127.0.0.1:3000/metadata/"),
            "{url}"
        );
        assert!(url.as_str().ends_with("&object_id=o"));

        for (pairs, want) in [
            (
                &[
                    ("IDENTITY_ENDPOINT", "http://a"),
                    ("IMDS_ENDPOINT", "http://b"),
                ][..],
                "Azure Arc",
            ),
            (
                &[("IDENTITY_ENDPOINT", "http://a")][..],
                "without IDENTITY_HEADER",
            ),
            (&[("MSI_ENDPOINT", "http://a")][..], "MSI_ENDPOINT"),
            (
                &[("IDENTITY_ENDPOINT", "not a url"), ("IDENTITY_HEADER", "h")][..],
                "not a URL",
            ),
        ] {
            let pairs: &'static [(&'static str, &'static str)] =
                Box::leak(pairs.to_vec().into_boxed_slice());
            let e = ManagedIdentitySource::from_lookup(&env(pairs)).unwrap_err();
            assert!(matches!(e, AcquireError::Config(_)), "{e:?}");
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    #[test]
    fn answers_are_parsed_with_expires_on_as_a_string_or_a_number() {
        let answer = |status: u16, body: &str| Answer {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        };
        let r = parse_answer(
            "e",
            answer(200, r#"{"access_token":"at","expires_on":"1003600","resource":"r","token_type":"Bearer"}"#),
            1_000_000,
        )
        .unwrap();
        assert_eq!(r.expires_in, Some(3600));
        assert_eq!(r.refresh_in, None);
        let r = parse_answer(
            "e",
            answer(200, r#"{"access_token":"at","expires_on":1086400,"expires_in":"86400","refresh_token":""}"#),
            1_000_000,
        )
        .unwrap();
        assert_eq!((r.expires_in, r.refresh_in), (Some(86_400), Some(43_200)));
        assert!(
            r.refresh_token.is_none(),
            "an empty refresh_token is not kept"
        );
        for bad in [
            r#"{"expires_on":"1003600"}"#,
            r#"{"access_token":"at"}"#,
            r#"{"access_token":"at","expires_on":"999"}"#,
            r#"{"access_token":"at","expires_on":"x"}"#,
            r#"{"access_token":"at","expires_on":"1003600","token_type":"pop"}"#,
            "<html>",
        ] {
            let e = parse_answer("e", answer(200, bad), 1_000_000).unwrap_err();
            assert!(matches!(e, AcquireError::Malformed { .. }), "{bad}: {e:?}");
            assert!(!e.to_string().contains("\"at\""));
        }
        let e = parse_answer(
            "e",
            answer(
                400,
                r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            ),
            0,
        )
        .unwrap_err();
        assert_eq!(e.oauth_code(), Some(&OAuthErrorCode::InvalidRequest));
        let e =
            parse_answer("e", answer(400, r#"{"statusCode":400,"message":"bad"}"#), 0).unwrap_err();
        assert!(
            matches!(e, AcquireError::Status { status: 400, .. }),
            "{e:?}"
        );
        let e = parse_answer(
            "e",
            answer(500, r#"{"error":{"code":"Busy","message":"m"}}"#),
            0,
        )
        .unwrap_err();
        assert_eq!(e.oauth_code().map(|c| c.as_str()), Some("Busy"));
        assert!([404, 408, 410, 429, 500, 503].into_iter().all(retry_status));
        assert!(![400, 401, 403].into_iter().any(retry_status));
    }

    #[test]
    fn identities_get_partitions_of_their_own() {
        let key = |id: ManagedIdentityId| {
            crate::partition::PartitionKey::app(id.cache_client_id(), MANAGED_IDENTITY_TENANT)
                .as_str()
                .to_string()
        };
        assert_eq!(
            key(ManagedIdentityId::SystemAssigned),
            "system_assigned_managed_identity_managed_identity_AppTokenCache"
        );
        assert_ne!(
            key(ManagedIdentityId::ClientId("c".into())),
            key(ManagedIdentityId::SystemAssigned)
        );
        assert_eq!(
            resource_and_scope("https://vault.azure.net/.default").0,
            "https://vault.azure.net"
        );
        assert_eq!(
            resource_and_scope("https://vault.azure.net").1,
            "https://vault.azure.net/.default"
        );
    }
}
