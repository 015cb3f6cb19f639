//! Acquisition served from L1, per call (docs/design.md §13), next to the cache lookup
//! it wraps: `acquire/<grant>` (what an application calls: `client_credentials`,
//! `on_behalf_of`, `acquire_silent`) vs `lookup/<grant>` (`TokenCache::find_access_token`
//! of the same token). The difference is the acquirer's own cost (argument checks,
//! building the lookup, the copy of the token it returns).
//!
//! The provider is configured from a discovery document whose endpoints are never
//! reached: every call here is a cache hit (asserted before measuring).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use tokencache::acquire::{Acquirer, Authority, ClientCredential, Provider, TokenSource};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::{Lookup, SaveFor, SaveRequest, Secret, TokenCache};

const OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";
const APP_SCOPES: &[&str] = &["https://graph.microsoft.com/.default"];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn acquire(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let authority = format!("https://{ENVIRONMENT}/{TENANT}/v2.0");
    let doc = format!(
        r#"{{"issuer":"{authority}","token_endpoint":"https://{ENVIRONMENT}/{TENANT}/oauth2/v2.0/token","jwks_uri":"https://{ENVIRONMENT}/{TENANT}/discovery/v2.0/keys"}}"#
    );
    let provider =
        Provider::from_document(Authority::parse(&authority).unwrap(), doc.as_bytes()).unwrap();
    let cache = rt.block_on(async {
        TokenCache::builder()
            .store_url("memory://")
            .build()
            .await
            .unwrap()
    });
    let a = Acquirer::builder(
        cache.clone(),
        &authority,
        CLIENT_ID,
        ClientCredential::SecretPost(Secret::new("unused")),
    )
    .provider(provider)
    .build()
    .unwrap();
    let n = now();
    let assertion = sample::incoming_assertion(OID, TENANT, n, n + 3600);
    let obo_scopes: &[&str] = &["api://downstream/.default"];
    let user_scopes = sample::USER_SCOPES[1];
    let home = rt.block_on(async {
        let app = sample::app_response(APP_SCOPES[0], n, 3600).unwrap();
        let req = SaveRequest::new(CLIENT_ID, SaveFor::App, ENVIRONMENT, TENANT, APP_SCOPES);
        cache.save_token_response(&req, &app).await.unwrap();
        let obo = sample::obo_response(OID, TENANT, obo_scopes, n, 3600).unwrap();
        let req = SaveRequest::new(
            CLIENT_ID,
            SaveFor::Obo {
                assertion: &assertion,
            },
            ENVIRONMENT,
            TENANT,
            obo_scopes,
        );
        cache.save_token_response(&req, &obo).await.unwrap();
        let mut home = String::new();
        for scopes in sample::USER_SCOPES {
            let user = sample::user_response(OID, TENANT, scopes, n, 3600).unwrap();
            let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, scopes);
            home = cache
                .save_token_response(&req, &user)
                .await
                .unwrap()
                .partition;
        }
        // every call below is a hit
        assert_eq!(
            a.client_credentials(APP_SCOPES).await.unwrap().source,
            TokenSource::Cache
        );
        assert_eq!(
            a.on_behalf_of(&assertion, obo_scopes).await.unwrap().source,
            TokenSource::Cache
        );
        assert_eq!(
            a.acquire_silent(&home, user_scopes).await.unwrap().source,
            TokenSource::Cache
        );
        home
    });
    let mut g = c.benchmark_group("l1");
    g.bench_function("acquire/client_credentials", |b| {
        b.iter(|| {
            rt.block_on(a.client_credentials(black_box(APP_SCOPES)))
                .unwrap()
        })
    });
    g.bench_function("lookup/app", |b| {
        let l = Lookup::app(CLIENT_ID, TENANT, APP_SCOPES).environment(ENVIRONMENT);
        b.iter(|| rt.block_on(cache.find_access_token(black_box(&l))).unwrap())
    });
    g.bench_function("acquire/on_behalf_of", |b| {
        b.iter(|| {
            rt.block_on(a.on_behalf_of(black_box(&assertion), obo_scopes))
                .unwrap()
        })
    });
    g.bench_function("lookup/obo", |b| {
        let l = Lookup::obo(CLIENT_ID, &assertion, obo_scopes).environment(ENVIRONMENT);
        b.iter(|| rt.block_on(cache.find_access_token(black_box(&l))).unwrap())
    });
    g.bench_function("acquire/silent", |b| {
        b.iter(|| {
            rt.block_on(a.acquire_silent(black_box(&home), user_scopes))
                .unwrap()
        })
    });
    g.bench_function("lookup/user", |b| {
        let l = Lookup::user(CLIENT_ID, &home, user_scopes).environment(ENVIRONMENT);
        b.iter(|| rt.block_on(cache.find_access_token(black_box(&l))).unwrap())
    });
    g.finish();
}

criterion_group!(benches, acquire);
criterion_main!(benches);
