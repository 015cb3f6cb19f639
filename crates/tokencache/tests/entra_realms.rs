//! Microsoft Entra realms (docs/design.md §4): an authority that names its tenant by
//! domain (`https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0`) keeps
//! Microsoft.Identity.Web's partition keys, but its records' `realm` is the tenant id
//! (`tid`), as MSAL writes it — and the real MSAL Python and msal-node, configured with
//! that domain authority (their discovery answering with the tenant id, as Entra's
//! does), find tokencache's records. Each access token of such an authority is also
//! written under the domain — the realm MSAL.NET uses for every record and msal-node for
//! app tokens — and what msal-node and MSAL.NET wrote under the domain is served. A user
//! partition holding two tenants' tokens serves the authority's own, not an "ambiguous
//! tenants" error.
//!
//! The token endpoint is a fake on loopback (an Entra host cannot be served here); the
//! discovery document is Entra's shape with the tenant id in its issuer. The MSAL peers
//! are driven through `common/msal.rs`, as the interop tests drive them
//! (`interop/msal_py.py`, `interop/msal_node.mjs`, installed by `interop/setup.sh`; they
//! fail, never skip, when python3 or node is missing).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[path = "common/msal.rs"]
mod msal;

use base64::Engine as _;
use msal::{drive, Peer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokencache::acquire::{
    AcquireOptions, Acquirer, Authority, ClientCredential, HttpOptions, OboRequest, Provider,
    TokenSource,
};
use tokencache::partition::PartitionKey;
use tokencache::schema::AppAccountForm;
use tokencache::{SaveFor, SaveRequest, Secret, Subject, TokenCache, TokenResponse};

const TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const GUEST_TID: &str = "11111111-2222-3333-4444-555555555555";
const DOMAIN: &str = "contoso.onmicrosoft.com";
const CLIENT: &str = "3b8f2c1d-4e5a-4b6c-9d7e-8f9a0b1c2d3e";
const OID: &str = "6f0c3d2a-9b1e-4c5d-8e7f-0a1b2c3d4e5f";

/// Now, Unix seconds (the peers' frozen clock is set to it).
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// An unsigned JWT with these claims (tokens are read, not verified, by the cache).
fn jwt(claims: &Value) -> String {
    format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&claims.to_string())
    )
}

fn fp(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A token endpoint on loopback that answers every POST with `body`; counts them.
struct FakeTokenEndpoint {
    port: u16,
    requests: Arc<AtomicUsize>,
}

impl FakeTokenEndpoint {
    fn start(body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut form = vec![0; len];
                let _ = r.read_exact(&mut form);
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { port, requests }
    }
}

/// Entra's discovery document for the tenant `TID`, its token endpoint at `port`.
fn entra_provider(authority: &str, port: u16) -> Provider {
    let doc = json!({
        "issuer": format!("https://login.microsoftonline.com/{TID}/v2.0"),
        "token_endpoint": format!("http://127.0.0.1:{port}/{TID}/oauth2/v2.0/token"),
        "jwks_uri": format!("https://login.microsoftonline.com/{TID}/discovery/v2.0/keys"),
        "authorization_endpoint": format!("https://login.microsoftonline.com/{TID}/oauth2/v2.0/authorize"),
    });
    Provider::from_document(
        Authority::parse(authority).unwrap(),
        doc.to_string().as_bytes(),
    )
    .unwrap()
}

async fn memory_cache() -> TokenCache {
    TokenCache::builder()
        .store_url("memory://")
        .build()
        .await
        .unwrap()
}

/// The acquirer of the authority that names the tenant by its domain, over `cache`: its
/// discovery names `TID`, its token endpoint is the fake on `port`.
fn domain_acquirer(cache: TokenCache, port: u16) -> Acquirer {
    let authority = format!("https://login.microsoftonline.com/{DOMAIN}/v2.0");
    Acquirer::builder(
        cache,
        &authority,
        CLIENT,
        ClientCredential::SecretPost(Secret::new("s")),
    )
    .provider(entra_provider(&authority, port))
    .build()
    .unwrap()
}

/// The acquirer of the authority that names tenant `tid` by its id (it reads the cache
/// only: no provider is reached here).
fn tenant_acquirer(cache: TokenCache, tid: &str) -> Acquirer {
    let authority = format!("https://login.microsoftonline.com/{tid}/v2.0");
    Acquirer::builder(
        cache,
        &authority,
        CLIENT,
        ClientCredential::SecretPost(Secret::new("s")),
    )
    .build()
    .unwrap()
}

// ---- the MSAL peers (driven as interop_python.rs and interop_node.rs drive them) -------------

fn peer(python: bool) -> Peer {
    if python {
        Peer::Python
    } else {
        Peer::Node
    }
}

/// `find` of a peer driver: the token its public API serves from `blob` (its token
/// endpoint fails, so a token is a cache hit), by fingerprint.
fn peer_find(python: bool, blob: &str, scopes: &[&str], home: Option<&str>) -> Value {
    let req = json!({
        "blob": blob, "client_id": CLIENT,
        "authority": format!("https://login.microsoftonline.com/{DOMAIN}"),
        "tenant_id": TID, "scope": scopes, "home_account_id": home, "now": now() + 60,
    });
    let v = drive(peer(python), "find", &req);
    assert_eq!(v["token_requests"], json!(0), "a hit is a cache read: {v}");
    v
}

// ---- tests ------------------------------------------------------------------------------------

#[tokio::test]
async fn an_app_token_of_a_tenant_named_by_domain_is_saved_under_its_tenant_id() {
    let at = jwt(
        &json!({"aud": "https://graph.microsoft.com", "tid": TID, "oid": "sp", "exp": 4_000_000_000_i64}),
    );
    let body = json!({"access_token": at, "token_type": "Bearer", "expires_in": 3600}).to_string();
    let fake = FakeTokenEndpoint::start(body);
    // app tokens with `home_account_id: null`, the form MSAL Python reads
    // (interop_python.rs live_app_account_forms_each_client_accepts)
    let c = TokenCache::builder()
        .store_url("memory://")
        .app_account_form(AppAccountForm::Null)
        .build()
        .await
        .unwrap();
    let a = domain_acquirer(c.clone(), fake.port);
    let scopes = ["https://graph.microsoft.com/.default"];
    let t = a.client_credentials(&scopes).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    assert_eq!(
        a.client_credentials(&scopes).await.unwrap().source,
        TokenSource::Cache
    );
    assert_eq!(fake.requests.load(Ordering::SeqCst), 1);
    // Microsoft.Identity.Web's key (the authority's tenant as written), MSAL's realm
    assert_eq!(a.authority().tenant, DOMAIN);
    assert_eq!(
        PartitionKey::app(CLIENT, DOMAIN).as_str(),
        format!("{CLIENT}_{DOMAIN}_AppTokenCache")
    );
    let p = c
        .partition(&Subject::App { tenant: DOMAIN }, CLIENT)
        .await
        .expect("the app partition of the domain");
    // under the tenant id (MSAL Python's realm) and the domain (MSAL.NET's and
    // msal-node's for app tokens of this authority): one token, two records
    let mut realms: Vec<&str> = p.access_tokens().map(|t| t.realm.as_str()).collect();
    realms.sort();
    assert_eq!(realms, [TID, DOMAIN]);
    assert!(p.access_tokens().all(|t| t.secret.expose() == at));
    let envs: Vec<&str> = p.access_tokens().map(|t| t.environment.as_str()).collect();
    assert_eq!(envs, ["login.microsoftonline.com"; 2]);
    // MSAL Python, configured with the domain authority, serves it from the cache
    let blob = String::from_utf8(p.to_vec()).unwrap();
    let py = peer_find(true, &blob, &scopes, None);
    assert_eq!(py["app"].as_str(), Some(fp(&at).as_str()), "{py}");
    assert_eq!(py["search"].as_str(), Some(fp(&at).as_str()), "{py}");
    // and msal-node, from a partition in the form it reads (`""`, the default), finds
    // exactly one (it refuses several matches)
    let c2 = memory_cache().await;
    let a2 = domain_acquirer(c2.clone(), fake.port);
    a2.client_credentials(&scopes).await.unwrap();
    let p2 = c2
        .partition(&Subject::App { tenant: DOMAIN }, CLIENT)
        .await
        .unwrap();
    let blob2 = String::from_utf8(p2.to_vec()).unwrap();
    let node = peer_find(false, &blob2, &scopes, None);
    assert_eq!(node["app"].as_str(), Some(fp(&at).as_str()), "{node}");

    // a new token replaces both records, never adds to them
    let at2 = jwt(
        &json!({"aud": "https://graph.microsoft.com", "tid": TID, "oid": "sp", "n": 2, "exp": 4_000_000_000_i64}),
    );
    let body2 = json!({"access_token": at2, "token_type": "Bearer", "expires_in": 3600});
    let fake2 = FakeTokenEndpoint::start(body2.to_string());
    let forced = forced();
    let a3 = domain_acquirer(c.clone(), fake2.port);
    let t2 = a3.client_credentials_with(&scopes, &forced).await.unwrap();
    assert_eq!(t2.source, TokenSource::Provider);
    let p = c
        .partition(&Subject::App { tenant: DOMAIN }, CLIENT)
        .await
        .unwrap();
    let mut ats: Vec<(&str, String)> = p
        .access_tokens()
        .map(|t| (t.realm.as_str(), fp(t.secret.expose())))
        .collect();
    ats.sort();
    assert_eq!(ats, [(TID, fp(&at2)), (DOMAIN, fp(&at2))]);
}

/// What MSAL.NET (and Microsoft.Identity.Web) and msal-node write for an authority that
/// names its tenant by domain is served too: MSAL.NET writes every record under the
/// tenant as the authority names it (`TokenResponseHelper.GetTenantId`: a tenanted
/// authority's tenant wins over the id token's), msal-node its app tokens.
#[tokio::test]
async fn tokens_msal_dotnet_and_msal_node_wrote_under_the_domain_are_served() {
    let scopes = ["https://graph.microsoft.com/.default"];
    // msal-node's own client-credentials write, discovery naming the tenant id
    let node_at =
        jwt(&json!({"aud": "https://graph.microsoft.com", "tid": TID, "exp": 4_000_000_000_i64}));
    let written = drive(
        Peer::Node,
        "write",
        &json!({
            "client_id": CLIENT, "authority": format!("https://login.microsoftonline.com/{DOMAIN}"),
            "tenant_id": TID, "scope": scopes, "now": now(), "grant": "client_credentials",
            "response": {"access_token": node_at, "token_type": "Bearer", "expires_in": 3600},
        }),
    );
    let blob = written["blob"].as_str().expect("blob");
    let parsed = tokencache::Partition::parse(blob.as_bytes()).unwrap();
    let realms: Vec<&str> = parsed.access_tokens().map(|t| t.realm.as_str()).collect();
    assert_eq!(realms, [DOMAIN], "msal-node's realm for this authority");

    let c = memory_cache().await;
    let two = c.two_level();
    let app_key = two
        .keys()
        .partition_str(PartitionKey::app(CLIENT, DOMAIN).as_str());
    two.store()
        .set(&app_key, blob.as_bytes(), None)
        .await
        .unwrap();

    // MSAL.NET's user records: realm = the domain for the access token, id token and
    // account (written by hand in its format; .NET does not run on these machines)
    let home = format!("{OID}.{TID}");
    let net_at = "at-msal-dotnet-wrote";
    let (now, exp) = (now(), now() + 3600);
    let at_key =
        format!("{home}-login.microsoftonline.com-accesstoken-{CLIENT}-{DOMAIN}-user.read");
    // beside an older token of the tenant id (what tokencache wrote before MSAL.NET
    // refreshed): the one expiring last is served
    let older_key =
        format!("{home}-login.microsoftonline.com-accesstoken-{CLIENT}-{TID}-user.read");
    let net_blob = json!({
        "AccessToken": {at_key: {
            "home_account_id": home, "environment": "login.microsoftonline.com",
            "client_id": CLIENT, "credential_type": "AccessToken", "realm": DOMAIN,
            "target": "User.Read", "secret": net_at, "cached_at": now.to_string(),
            "expires_on": exp.to_string(), "extended_expires_on": exp.to_string(),
        }, older_key: {
            "home_account_id": home, "environment": "login.microsoftonline.com",
            "client_id": CLIENT, "credential_type": "AccessToken", "realm": TID,
            "target": "User.Read", "secret": "at-older-of-the-tenant-id",
            "cached_at": (now - 1800).to_string(), "expires_on": (exp - 1800).to_string(),
        }},
        "RefreshToken": {}, "IdToken": {}, "Account": {}, "AppMetadata": {},
    });
    let user_key = two.keys().partition_str(&home);
    two.store()
        .set(&user_key, net_blob.to_string().as_bytes(), None)
        .await
        .unwrap();

    let fake = FakeTokenEndpoint::start("{}".into());
    let a = domain_acquirer(c.clone(), fake.port);
    let t = a.client_credentials(&scopes).await.unwrap();
    assert_eq!(t.source, TokenSource::Cache);
    assert_eq!(fp(t.secret.expose()), fp(&node_at), "msal-node's app token");
    let u = a.acquire_silent(&home, &["User.Read"]).await.unwrap();
    assert_eq!(u.source, TokenSource::Cache);
    assert_eq!(u.secret.expose(), net_at, "MSAL.NET's user token");
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        0,
        "both served from the cache"
    );

    // another tenant's authority (by id) is not served the domain's records
    let g = tenant_acquirer(c.clone(), GUEST_TID);
    let miss = c.find_access_token(&g.app_lookup(&scopes)).await.unwrap();
    assert!(miss.is_none(), "another tenant's app partition");
    // nor is another domain's authority (another tenant id, another domain)
    let l = tokencache::Lookup::user(CLIENT, &home, &["User.Read"])
        .environment("login.microsoftonline.com")
        .tenant(GUEST_TID)
        .tenant_alias(Some("fabrikam.onmicrosoft.com"));
    assert!(c.find_access_token(&l).await.unwrap().is_none());
    let l = l.tenant_alias(None).tenant(TID);
    let tid_only = c.find_access_token(&l).await.unwrap().unwrap();
    assert_eq!(tid_only.secret.expose(), "at-older-of-the-tenant-id");
}

/// Before discovery, and when it cannot run, the domain authority's acquirer still serves
/// what the cache holds — a token and its copy under the domain are one tenant's token,
/// not an "ambiguous tenants" error — while a service's OBO lookup reads nothing until
/// the assertion's tenant can be checked against the tenant id.
#[tokio::test]
async fn before_discovery_a_token_and_its_copy_are_served_and_obo_lookups_wait() {
    let c = memory_cache().await;
    let home = format!("{OID}.{TID}");
    let scopes = ["User.Read"];
    let fresh_at = "at-written-twice";
    let fake = FakeTokenEndpoint::start(refresh_body(fresh_at, "rt-1"));
    let discovered = domain_acquirer(c.clone(), fake.port);
    // a user token and a long-running OBO session, each written twice
    seed_user(&c, TID, "at-seed", "rt-seed").await;
    let forced = forced();
    discovered
        .acquire_silent_with(&home, &scopes, &forced)
        .await
        .unwrap();
    let assertion = jwt(&json!({
        "iss": format!("https://login.microsoftonline.com/{TID}/v2.0"), "tid": TID,
        "oid": OID, "sub": "s", "aud": CLIENT, "exp": 4_000_000_000_i64,
    }));
    let mut session = OboRequest::new(&assertion, &scopes);
    session.session_key = Some("session-1");
    session.user = Some(&home);
    discovered
        .on_behalf_of_with(&session, &forced)
        .await
        .unwrap();
    let requests = fake.requests.load(Ordering::SeqCst);

    // a replica that has not discovered (here: cannot: its provider is unreachable)
    let fresh = Acquirer::builder(
        c.clone(),
        &format!("https://login.microsoftonline.com/{DOMAIN}/v2.0"),
        CLIENT,
        ClientCredential::SecretPost(Secret::new("s")),
    )
    .http(HttpOptions {
        max_retries: 0,
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        ..HttpOptions::default()
    })
    .build()
    .unwrap();
    assert!(
        fresh.obo_lookup(&assertion, &scopes).unwrap().is_none(),
        "the assertion's tenant cannot be checked yet: nothing is read"
    );
    let t = fresh.acquire_silent(&home, &scopes).await.unwrap();
    assert_eq!(t.source, TokenSource::Cache);
    assert_eq!(t.secret.expose(), fresh_at);
    let s = fresh
        .acquire_in_session("session-1", &home, &scopes)
        .await
        .unwrap();
    assert_eq!(s.source, TokenSource::Cache);
    assert_eq!(s.secret.expose(), fresh_at);
    assert_eq!(fake.requests.load(Ordering::SeqCst), requests);
}

/// Saves `user_response(tid, at, rt)` for `OID` as the acquirer saves it (realm = the id
/// token's tid), without a copy under a domain.
async fn seed_user(c: &TokenCache, tid: &str, at: &str, rt: &str) {
    let scopes = ["User.Read"];
    let req = SaveRequest::new(
        CLIENT,
        SaveFor::User,
        "login.microsoftonline.com",
        tid,
        &scopes,
    );
    c.save_token_response(&req, &user_response(tid, at, rt))
        .await
        .unwrap();
}

/// A refresh response for `OID` (no id token, as OIDC allows): access token `at`,
/// refresh token `rt`, `User.Read`.
fn refresh_body(at: &str, rt: &str) -> String {
    json!({
        "access_token": at, "refresh_token": rt, "token_type": "Bearer",
        "expires_in": 3600, "scope": "User.Read",
        "client_info": b64(&json!({"uid": OID, "utid": TID}).to_string()),
    })
    .to_string()
}

/// Options that skip the cache.
fn forced() -> AcquireOptions {
    AcquireOptions {
        force_refresh: true,
        ..AcquireOptions::default()
    }
}

/// A user response of tenant `tid` for `OID` (home tenant `TID`).
fn user_response(tid: &str, at: &str, rt: &str) -> TokenResponse {
    let client_info = b64(&json!({"uid": OID, "utid": TID}).to_string());
    TokenResponse {
        access_token: Some(Secret::new(at)),
        refresh_token: Some(Secret::new(rt)),
        id_token: Some(Secret::new(jwt(&json!({
            "iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
            "aud": CLIENT, "sub": "pairwise", "oid": OID, "tid": tid,
            "preferred_username": "ada@contoso.example", "exp": 4_000_000_000_i64,
        })))),
        client_info: Some(client_info),
        scope: Some("User.Read".into()),
        expires_in: Some(3600),
        ..TokenResponse::default()
    }
}

#[tokio::test]
async fn a_user_partition_of_two_tenants_serves_the_domain_authoritys_own_and_msal_finds_it() {
    let c = memory_cache().await;
    let home = format!("{OID}.{TID}");
    let scopes = ["User.Read"];
    let at_home = "at-of-the-home-tenant";
    let at_guest = "at-of-the-guest-tenant";
    // saved as the acquirer saves them: realm = the id token's tid
    for (tid, at, rt) in [(TID, at_home, "rt-1"), (GUEST_TID, at_guest, "rt-2")] {
        seed_user(&c, tid, at, rt).await;
    }
    let p = c.partition(&Subject::User(&home), CLIENT).await.unwrap();
    let mut realms: Vec<&str> = p.access_tokens().map(|t| t.realm.as_str()).collect();
    realms.sort();
    assert_eq!(realms, [GUEST_TID, TID]);

    // the domain authority's acquirer: its realm is the tenant id discovery named
    let fake = FakeTokenEndpoint::start("{}".into());
    let a = domain_acquirer(c.clone(), fake.port);
    let t = a.acquire_silent(&home, &scopes).await.unwrap();
    assert_eq!(t.source, TokenSource::Cache);
    assert_eq!(t.secret.expose(), at_home, "the authority's tenant's token");
    // the guest tenant's authority gets the guest tenant's
    let g = tenant_acquirer(c.clone(), GUEST_TID);
    assert_eq!(
        g.acquire_silent(&home, &scopes)
            .await
            .unwrap()
            .secret
            .expose(),
        at_guest
    );
    assert_eq!(fake.requests.load(Ordering::SeqCst), 0);

    // MSAL Python and msal-node, configured with the domain authority, find the home
    // tenant's token in tokencache's blob
    let blob = String::from_utf8(p.to_vec()).unwrap();
    let py = peer_find(true, &blob, &scopes, Some(&home));
    assert_eq!(py["app"].as_str(), Some(fp(at_home).as_str()), "{py}");
    assert_eq!(py["search"].as_str(), Some(fp(at_home).as_str()), "{py}");
    let node = peer_find(false, &blob, &scopes, Some(&home));
    assert_eq!(node["app"].as_str(), Some(fp(at_home).as_str()), "{node}");
}

/// A user token the acquirer saves for the domain authority is written under the tenant
/// id and the domain; MSAL Python and msal-node (their user lookups name the tenant id)
/// each find exactly one, and tokencache serves it.
#[tokio::test]
async fn a_user_token_of_the_domain_authority_is_found_by_every_msal() {
    let c = memory_cache().await;
    let home = format!("{OID}.{TID}");
    let scopes = ["User.Read"];
    seed_user(&c, TID, "at-old", "rt-old").await;
    let fresh = "at-refreshed-by-the-acquirer";
    let fake = FakeTokenEndpoint::start(refresh_body(fresh, "rt-new"));
    let a = domain_acquirer(c.clone(), fake.port);
    let forced = forced();
    let t = a
        .acquire_silent_with(&home, &scopes, &forced)
        .await
        .unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    let p = c.partition(&Subject::User(&home), CLIENT).await.unwrap();
    let mut ats: Vec<(&str, &str)> = p
        .access_tokens()
        .map(|t| (t.realm.as_str(), t.secret.expose()))
        .collect();
    ats.sort();
    assert_eq!(
        ats,
        [(TID, fresh), (DOMAIN, fresh)],
        "the old token replaced"
    );
    // the id token and account stay one record each, of the tenant id
    let id_realms: Vec<&str> = p.id_tokens().map(|t| t.realm.as_str()).collect();
    assert_eq!(id_realms, [TID]);
    assert_eq!(p.accounts().count(), 1);
    let again = a.acquire_silent(&home, &scopes).await.unwrap();
    assert_eq!(again.source, TokenSource::Cache);
    assert_eq!(again.secret.expose(), fresh);

    let blob = String::from_utf8(p.to_vec()).unwrap();
    let py = peer_find(true, &blob, &scopes, Some(&home));
    assert_eq!(py["app"].as_str(), Some(fp(fresh).as_str()), "{py}");
    let node = peer_find(false, &blob, &scopes, Some(&home));
    assert_eq!(node["app"].as_str(), Some(fp(fresh).as_str()), "{node}");
    assert_eq!(node["accounts"], json!([home]), "{node}");
}

/// An authority that names its tenant by id has one realm: each token is written once.
#[tokio::test]
async fn an_authority_named_by_tenant_id_writes_each_token_once() {
    let at =
        jwt(&json!({"aud": "https://graph.microsoft.com", "tid": TID, "exp": 4_000_000_000_i64}));
    let body = json!({"access_token": at, "token_type": "Bearer", "expires_in": 3600});
    let fake = FakeTokenEndpoint::start(body.to_string());
    let authority = format!("https://login.microsoftonline.com/{TID}/v2.0");
    let c = memory_cache().await;
    let a = Acquirer::builder(
        c.clone(),
        &authority,
        CLIENT,
        ClientCredential::SecretPost(Secret::new("s")),
    )
    .provider(entra_provider(&authority, fake.port))
    .build()
    .unwrap();
    let scopes = ["https://graph.microsoft.com/.default"];
    a.client_credentials(&scopes).await.unwrap();
    let p = c
        .partition(&Subject::App { tenant: TID }, CLIENT)
        .await
        .unwrap();
    let realms: Vec<&str> = p.access_tokens().map(|t| t.realm.as_str()).collect();
    assert_eq!(realms, [TID]);
}

#[tokio::test]
async fn an_entra_api_refuses_assertions_of_another_tenant_or_issuer_family() {
    let fake = FakeTokenEndpoint::start("{}".into());
    let a = domain_acquirer(memory_cache().await, fake.port);
    let scopes = ["User.Read"];
    let assertion = |iss: &str, tid: &str| {
        jwt(&json!({"iss": iss, "tid": tid, "oid": OID, "sub": "s", "aud": CLIENT}))
    };
    let ok = assertion(
        &format!("https://login.microsoftonline.com/{TID}/v2.0"),
        TID,
    );
    assert!(a.obo_lookup(&ok, &scopes).unwrap().is_some(), "discovered");
    let iss_ok = format!("https://login.microsoftonline.com/{TID}/v2.0");
    a.obo_lookup_with_claims(&ok, Some(&iss_ok), Some(TID), &scopes)
        .unwrap();
    let v1 = assertion(&format!("https://sts.windows.net/{TID}/"), TID);
    assert!(a.obo_lookup(&v1, &scopes).unwrap().is_some());
    for bad in [
        // another tenant
        assertion(
            &format!("https://login.microsoftonline.com/{GUEST_TID}/v2.0"),
            GUEST_TID,
        ),
        // not Entra, whatever its oid/tid claims say
        assertion("https://kc.example/realms/a", TID),
        assertion(&format!("http://login.microsoftonline.com/{TID}/v2.0"), TID),
        // no issuer
        jwt(&json!({"tid": TID, "oid": OID, "sub": "s"})),
    ] {
        let e = a.obo_lookup(&bad, &scopes).unwrap_err();
        // the same answer from the claims a caller decoded
        let c = tokencache::schema::decode_jwt_claims(&bad).unwrap();
        assert!(a
            .obo_lookup_with_claims(&bad, c.iss.as_deref(), c.tid.as_deref(), &scopes)
            .is_err());
        assert!(
            matches!(e, tokencache::acquire::AcquireError::Config(_)),
            "{e:?}"
        );
        assert!(a.on_behalf_of(&bad, &scopes).await.is_err());
    }
    assert_eq!(fake.requests.load(Ordering::SeqCst), 0, "nothing was sent");
}
