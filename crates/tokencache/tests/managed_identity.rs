//! Managed identity as a token source, against a loopback server that follows Microsoft's
//! documents of the App Service (2019-08-01) and IMDS (2018-02-01) protocols
//! (`testkit::ManagedIdentityEndpoint`: header checks, api-version, `expires_on` as a
//! string, one system- and one user-assigned identity). The real endpoints only exist
//! inside Azure (docs/design.md §15).

use std::sync::Arc;
use std::time::Duration;

use testkit::{
    ManagedIdentityEndpoint, MiProtocol, USER_ASSIGNED_CLIENT_ID, USER_ASSIGNED_OBJECT_ID,
    USER_ASSIGNED_RESOURCE_ID,
};
use tokencache::acquire::{
    AcquireError, AcquireOptions, HttpOptions, ManagedIdentity, ManagedIdentityId,
    ManagedIdentitySource, TokenSource,
};
use tokencache::store::chaos::ChaosStore;
use tokencache::store::{MemoryStore, SharedStore};
use tokencache::{Lookup, TokenCache};

const VAULT: &str = "https://vault.azure.net";
const STORAGE: &str = "https://storage.azure.com/.default";

async fn cache() -> TokenCache {
    TokenCache::builder()
        .store_url("memory://")
        .build()
        .await
        .unwrap()
}

fn quick() -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_secs(5),
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_retries: 3,
        ..HttpOptions::default()
    }
}

fn app_service(ep: &ManagedIdentityEndpoint) -> ManagedIdentitySource {
    let (endpoint, header) = (ep.identity_endpoint(), ep.identity_header());
    ManagedIdentitySource::from_lookup(&move |k| match k {
        "IDENTITY_ENDPOINT" => Some(endpoint.clone()),
        "IDENTITY_HEADER" => Some(header.clone()),
        _ => None,
    })
    .unwrap()
}

fn imds(ep: &ManagedIdentityEndpoint) -> ManagedIdentitySource {
    let base = ep.imds_endpoint();
    ManagedIdentitySource::from_lookup(&move |k| (k == "IMDS_ENDPOINT").then(|| base.clone()))
        .unwrap()
}

fn mi(cache: &TokenCache, source: ManagedIdentitySource, id: ManagedIdentityId) -> ManagedIdentity {
    ManagedIdentity::builder(cache.clone())
        .source(source)
        .identity(id)
        .http(quick())
        .build()
        .unwrap()
}

/// Both protocols: the documented request, the token cached per identity and resource
/// (user-assigned identities apart from the system-assigned one), a second call served
/// from the cache, identity selection by client id, object id and resource id.
async fn caches_per_identity_and_resource(protocol: MiProtocol) {
    let ep = ManagedIdentityEndpoint::start();
    let source = |ep: &ManagedIdentityEndpoint| match protocol {
        MiProtocol::AppService => app_service(ep),
        MiProtocol::Imds => imds(ep),
    };
    let c = cache().await;
    let system = mi(&c, source(&ep), ManagedIdentityId::SystemAssigned);
    let t = system.acquire(VAULT).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    assert!(t.expires_on > 0);
    let r = &ep.requests()[0];
    assert_eq!((r.protocol, r.status), (protocol, 200));
    assert_eq!(r.param("resource"), Some(VAULT));
    match protocol {
        MiProtocol::AppService => {
            assert_eq!(r.param("api-version"), Some("2019-08-01"));
            let h = r.headers.iter().find(|(k, _)| k == "x-identity-header");
            assert_eq!(h.map(|(_, v)| v.clone()), Some(ep.identity_header()));
        }
        MiProtocol::Imds => {
            assert_eq!(r.param("api-version"), Some("2018-02-01"));
            assert!(r
                .headers
                .iter()
                .any(|(k, v)| k == "metadata" && v == "true"));
        }
    }
    // from the cache, in MSAL's partition of the system-assigned identity
    let again = system.acquire(VAULT).await.unwrap();
    assert_eq!(
        (again.source, &again.secret),
        (TokenSource::Cache, &t.secret)
    );
    assert_eq!(ep.issued(), 1);
    assert_eq!(
        system.partition_key(),
        "system_assigned_managed_identity_managed_identity_AppTokenCache"
    );
    let found = c
        .find_access_token(
            &Lookup::app(
                "system_assigned_managed_identity",
                "managed_identity",
                &["https://vault.azure.net/.default"],
            )
            .environment("login.microsoftonline.com"),
        )
        .await
        .unwrap()
        .expect("in the app partition");
    assert_eq!(found.secret, t.secret);
    // another resource: its own token, in the same partition
    let s = system.acquire(STORAGE).await.unwrap();
    assert_eq!(s.source, TokenSource::Provider);
    assert_ne!(s.secret, t.secret);
    assert_eq!(
        ep.requests().last().unwrap().param("resource"),
        Some("https://storage.azure.com")
    );
    assert_eq!(
        system.acquire(STORAGE).await.unwrap().source,
        TokenSource::Cache
    );
    // a user-assigned identity, named three ways: never the system-assigned token
    let (object_param, resource_param) = match protocol {
        MiProtocol::AppService => ("principal_id", "mi_res_id"),
        MiProtocol::Imds => ("object_id", "msi_res_id"),
    };
    for (id, param, value) in [
        (
            ManagedIdentityId::ClientId(USER_ASSIGNED_CLIENT_ID.into()),
            "client_id",
            USER_ASSIGNED_CLIENT_ID,
        ),
        (
            ManagedIdentityId::ObjectId(USER_ASSIGNED_OBJECT_ID.into()),
            object_param,
            USER_ASSIGNED_OBJECT_ID,
        ),
        (
            ManagedIdentityId::ResourceId(USER_ASSIGNED_RESOURCE_ID.into()),
            resource_param,
            USER_ASSIGNED_RESOURCE_ID,
        ),
    ] {
        let user = mi(&c, source(&ep), id);
        assert_ne!(user.partition_key(), system.partition_key());
        let u = user.acquire(VAULT).await.unwrap();
        assert_eq!(u.source, TokenSource::Provider, "{param}");
        assert!(u.secret.expose().starts_with("mi-token-user-"), "{param}");
        assert_eq!(ep.requests().last().unwrap().param(param), Some(value));
        assert_eq!(user.acquire(VAULT).await.unwrap().secret, u.secret);
    }
    // an identity the resource does not have: the endpoint's error, typed, not retried
    let before = ep.requests().len();
    let nobody = mi(
        &c,
        source(&ep),
        ManagedIdentityId::ClientId("no-such-identity".into()),
    );
    let e = nobody.acquire(VAULT).await.unwrap_err();
    assert!(
        matches!(e, AcquireError::Status { status: 400, .. })
            || e.oauth_code().map(|c| c.as_str()) == Some("invalid_request"),
        "{e:?}"
    );
    assert_eq!(ep.requests().len(), before + 1, "a 400 is not retried");
    assert!(nobody.acquire(VAULT).await.is_err(), "and not cached");
}

#[tokio::test]
async fn app_service_protocol_caches_per_identity_and_resource() {
    caches_per_identity_and_resource(MiProtocol::AppService).await;
}

#[tokio::test]
async fn imds_protocol_caches_per_identity_and_resource() {
    caches_per_identity_and_resource(MiProtocol::Imds).await;
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_with_retry_after() {
    let ep = ManagedIdentityEndpoint::start();
    let c = cache().await;
    let m = mi(&c, imds(&ep), ManagedIdentityId::SystemAssigned);
    ep.fail_next(429, Some(0));
    ep.fail_next(500, None);
    ep.fail_next(410, None);
    let t = m.acquire(VAULT).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    let statuses: Vec<u16> = ep.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 500, 410, 200]);
    // every attempt failing: the last error, typed and temporary; nothing cached
    let ep2 = ManagedIdentityEndpoint::start();
    let m2 = mi(
        &cache().await,
        app_service(&ep2),
        ManagedIdentityId::SystemAssigned,
    );
    for _ in 0..4 {
        ep2.fail_next(503, None);
    }
    let e = m2.acquire(VAULT).await.unwrap_err();
    assert!(e.is_temporary(), "{e:?}");
    assert_eq!(ep2.requests().len(), 4, "one try and three retries");
    assert_eq!(
        m2.acquire(VAULT).await.unwrap().source,
        TokenSource::Provider
    );
    // a Retry-After longer than the backoff bound ends the retries at once
    ep2.fail_next(429, Some(120));
    let e = m2
        .acquire_with(VAULT, &AcquireOptions::force_refresh())
        .await
        .unwrap_err();
    assert!(e.is_temporary(), "{e:?}");
}

#[tokio::test]
async fn a_wrong_header_is_refused_and_concurrent_callers_share_one_request() {
    let ep = ManagedIdentityEndpoint::start();
    let c = cache().await;
    let bad = ManagedIdentitySource::AppService {
        endpoint: url::Url::parse(&ep.identity_endpoint()).unwrap(),
        header: tokencache::Secret::new("not-the-header"),
    };
    let e = mi(&c, bad, ManagedIdentityId::SystemAssigned)
        .acquire(VAULT)
        .await
        .unwrap_err();
    assert!(
        matches!(e, AcquireError::Status { status: 401, .. }),
        "{e:?}"
    );
    assert!(!format!("{e:?} {e}").contains("not-the-header"));

    let m = mi(&c, app_service(&ep), ManagedIdentityId::SystemAssigned);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move { m.acquire(VAULT).await }));
    }
    let mut secrets = std::collections::HashSet::new();
    for t in tasks {
        secrets.insert(t.await.unwrap().unwrap().secret.expose().to_string());
    }
    assert_eq!(secrets.len(), 1);
    assert_eq!(ep.issued(), 1, "one request for 100 callers");
    assert_eq!(m.flights_running(), 0);
}

#[tokio::test]
async fn a_token_past_half_its_life_is_served_while_a_new_one_is_fetched() {
    let ep = ManagedIdentityEndpoint::start();
    // (the endpoint's expires_on is real time; this cache's clock is set to it below)
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let manual = tokencache::clock::ManualClock::new(now);
    let shared: tokencache::clock::SharedClock = Arc::new(manual.clone());
    let store: SharedStore = Arc::new(MemoryStore::with_clock(shared.clone()));
    let c = TokenCache::builder()
        .store(store)
        .clock(shared)
        .build()
        .await
        .unwrap();
    let m = mi(&c, imds(&ep), ManagedIdentityId::SystemAssigned);
    let first = m.acquire(VAULT).await.unwrap();
    let refresh_on = first
        .refresh_on
        .expect("24 h tokens are refreshed at half their life");
    assert!(refresh_on < first.expires_on);
    manual.advance_secs(13 * 3600);
    let served = m.acquire(VAULT).await.unwrap();
    assert_eq!(
        (served.source, &served.secret),
        (TokenSource::Cache, &first.secret)
    );
    let mut waited = 0;
    while ep.issued() < 2 {
        assert!(waited < 500, "no background refresh");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    while m.flights_running() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let next = m.acquire(VAULT).await.unwrap();
    assert_ne!(next.secret, first.secret);
}

#[tokio::test]
async fn a_caller_dropped_during_the_save_strands_nothing() {
    let ep = ManagedIdentityEndpoint::start();
    let chaos = Arc::new(ChaosStore::passthrough(Arc::new(MemoryStore::new())));
    let store: SharedStore = chaos.clone();
    let c = TokenCache::builder()
        .store(store)
        .l2_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let m = mi(&c, app_service(&ep), ManagedIdentityId::SystemAssigned);
    chaos.set_delay_of("compare_and_swap", Duration::from_millis(500));
    let m2 = m.clone();
    let caller = tokio::spawn(async move { m2.acquire(VAULT).await });
    while chaos.calls_of("compare_and_swap") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    caller.abort();
    while m.flights_running() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = c.two_level().in_flight();
    assert_eq!((held.locks, held.loads), (0, 0));
    let t = m.acquire(VAULT).await.unwrap();
    assert_eq!(
        t.source,
        TokenSource::Cache,
        "the abandoned request was saved"
    );
    assert_eq!(ep.issued(), 1);
}

#[tokio::test]
async fn hostile_input_is_a_typed_error() {
    let ep = ManagedIdentityEndpoint::start();
    let c = cache().await;
    let m = mi(&c, imds(&ep), ManagedIdentityId::SystemAssigned);
    for bad in ["", "   ", "a b"] {
        let e = m.acquire(bad).await.unwrap_err();
        assert!(matches!(e, AcquireError::Config(_)), "{bad:?}: {e:?}");
    }
    assert!(ep.requests().is_empty());
    // a resource with query characters is sent encoded, as one parameter
    let t = m
        .acquire("https://x.example/?a=b&resource=evil")
        .await
        .unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    let r = ep.requests().pop().unwrap();
    assert_eq!(
        r.param("resource"),
        Some("https://x.example/?a=b&resource=evil")
    );
    assert_eq!(r.query.iter().filter(|(k, _)| k == "resource").count(), 1);
    assert!(ManagedIdentity::builder(c.clone())
        .source(imds(&ep))
        .identity(ManagedIdentityId::ClientId(" ".into()))
        .build()
        .is_err());
}

#[tokio::test]
async fn an_acquirer_over_a_managed_identity_serves_app_tokens_only() {
    let ep = ManagedIdentityEndpoint::start();
    let c = cache().await;
    let user = mi(
        &c,
        app_service(&ep),
        ManagedIdentityId::ClientId(USER_ASSIGNED_CLIENT_ID.into()),
    );
    let a = tokencache::acquire::Acquirer::managed_identity(user).unwrap();
    let scopes = ["https://vault.azure.net/.default"];
    let t = a.client_credentials(&scopes).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    assert_eq!(
        a.client_credentials(&scopes).await.unwrap().source,
        TokenSource::Cache
    );
    assert_eq!(a.token_requests(), 1);
    // where a service that treats every API alike looks first: the acquirer's own lookup
    let found = c
        .find_access_token(
            &Lookup::app(a.client_id(), &a.authority().tenant, &scopes)
                .environment(&a.authority().environment),
        )
        .await
        .unwrap()
        .expect("found by the acquirer's app lookup");
    assert_eq!(found.secret, t.secret);
    // one resource per token; no other grant
    let e = a
        .client_credentials(&["https://vault.azure.net/.default", "x"])
        .await
        .unwrap_err();
    assert!(matches!(e, AcquireError::Config(_)), "{e:?}");
    let e = a.on_behalf_of("a.b.c", &scopes).await.unwrap_err();
    assert!(matches!(e, AcquireError::Config(_)), "{e:?}");
    let e = a.acquire_silent("u.t", &scopes).await.unwrap_err();
    assert!(
        matches!(
            e,
            AcquireError::Config(_) | AcquireError::InteractionRequired(_)
        ),
        "{e:?}"
    );
    assert_eq!(ep.issued(), 1);
    assert!(!format!("{a:?}").contains(&ep.identity_header()));
}

#[tokio::test]
async fn a_failing_background_refresh_is_not_tried_again_on_every_hit() {
    let ep = ManagedIdentityEndpoint::start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let manual = tokencache::clock::ManualClock::new(now);
    let shared: tokencache::clock::SharedClock = Arc::new(manual.clone());
    let store: SharedStore = Arc::new(MemoryStore::with_clock(shared.clone()));
    let c = TokenCache::builder()
        .store(store)
        .clock(shared)
        .build()
        .await
        .unwrap();
    let m = mi(&c, imds(&ep), ManagedIdentityId::SystemAssigned);
    let first = m.acquire(VAULT).await.unwrap();
    manual.advance_secs(13 * 3600);
    for _ in 0..4 {
        ep.fail_next(500, None);
    }
    // past refresh_on: served, and one background refresh fails (one try, three retries)
    assert_eq!(m.acquire(VAULT).await.unwrap().secret, first.secret);
    let mut waited = 0;
    while ep.requests().len() < 5 || m.flights_running() > 0 {
        assert!(waited < 500, "no background refresh");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    // further hits are served without asking again for a while
    for _ in 0..20 {
        assert_eq!(m.acquire(VAULT).await.unwrap().secret, first.secret);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        ep.requests().len(),
        5,
        "no request per hit while refreshes fail"
    );
}
