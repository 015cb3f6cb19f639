//! Web sign-out when things fail, over real HTTP on loopback (the provider and app of
//! `common/signout_web.rs`): a rotated key fetched again for an unknown `kid`, an
//! unreachable JWKS as a clear temporary failure, a flood of forged logouts that costs a
//! failing provider one fetch per backoff, a back-channel logout across two replicas on a
//! real redis-server, and a logout during an L2 outage (503, then the retry completes it).
#![cfg(all(feature = "axum", feature = "jwks-fetch"))]

#[path = "common/signout_web.rs"]
mod web;

use web::*;

#[tokio::test]
async fn an_unknown_kid_fetches_the_jwks_again_for_a_rotated_key() {
    let provider = Provider::start().await;
    let cache = TokenCache::builder()
        .store(store::open("memory://").await.unwrap())
        .build()
        .await
        .unwrap();
    let options = RemoteOptions {
        min_refetch_interval: std::time::Duration::ZERO,
        ..RemoteOptions::default()
    };
    let validator = LogoutTokenValidator::builder(
        &provider.issuer,
        CLIENT_ID,
        Jwks::remote_with(&provider.jwks_uri, options).unwrap(),
    )
    .replay_cache(&cache)
    .build();
    validator
        .validate(&provider.rsa.sign(&provider.claims(Some("s"), None)))
        .await
        .unwrap();
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 1);

    // the provider rotates in a new key
    let rotated = ec_signer("ec-2027");
    provider.keys.write().unwrap().push(rotated.jwk.clone());
    validator
        .validate(&rotated.sign(&provider.claims(Some("s"), None)))
        .await
        .unwrap();
    assert_eq!(
        provider.fetches.load(Ordering::SeqCst),
        2,
        "fetched again for the unknown kid"
    );

    // a kid the provider does not publish: one more fetch, then refused
    let stranger = ec_signer("nobody");
    let err = validator
        .validate(&stranger.sign(&provider.claims(Some("s"), None)))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        LogoutError::UnknownKey {
            kid: Some("nobody".into())
        }
    );

    // with the default interval, made-up kids do not make it fetch again
    let default_validator = provider.validator(&cache);
    default_validator
        .validate(&provider.rsa.sign(&provider.claims(Some("s"), None)))
        .await
        .unwrap();
    let before = provider.fetches.load(Ordering::SeqCst);
    for _ in 0..3 {
        let err = default_validator
            .validate(&stranger.sign(&provider.claims(Some("s"), None)))
            .await
            .unwrap_err();
        assert!(matches!(err, LogoutError::UnknownKey { .. }));
    }
    assert_eq!(provider.fetches.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn an_unreachable_jwks_is_a_clear_temporary_failure() {
    let provider = Provider::start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }; // dropped: nothing listens there now
    let jwks = Jwks::remote(&format!("http://{closed}/keys")).unwrap();
    let validator = LogoutTokenValidator::builder(&provider.issuer, CLIENT_ID, jwks).build();
    let err = validator
        .validate(&provider.rsa.sign(&provider.claims(Some("s"), None)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LogoutError::Jwks(tokencache::signout::JwksError::Fetch { .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.error_code(), "temporarily_unavailable");
    assert!(err.to_string().contains("fetching the JWKS"), "{err}");
}

#[tokio::test]
async fn back_channel_logout_in_redis_across_two_replicas() {
    let server = RedisServer::start();
    let provider = Provider::start().await;
    let replica_a = App::start(store::open(&server.url()).await.unwrap(), &provider).await;
    let replica_b = App::start(store::open(&server.url()).await.unwrap(), &provider).await;
    let alice = sign_in(&replica_a.cache, &provider, ALICE).await;
    let bob = sign_in(&replica_a.cache, &provider, BOB).await;

    // replica B never saw alice sign in: the session index in Redis finds her
    let token = provider.rsa.sign(&provider.claims(Some(&alice.sid), None));
    assert_eq!(replica_b.back_channel(&token).await.0, 200);
    assert_eq!(present(&replica_a.cache, &alice).await, 0);
    assert_eq!(present(&replica_a.cache, &bob).await, 5);
    // the same token sent to replica A: the jti marker in Redis refuses it
    expect_refused(
        replica_a.back_channel(&token).await,
        &LogoutError::Replayed {
            jti: token_jti(&token),
        },
    );

    // what Redis holds of alice: her revocation stamp only (the jti marker names no user)
    let keys = server.cli(&["--scan"]);
    let alice_keys: Vec<&str> = keys
        .lines()
        .filter(|k| k.contains(&alice.home) || k.contains(&alice.sid))
        .collect();
    assert_eq!(
        alice_keys,
        vec![format!("tc:revoked:{{{}}}", alice.home)],
        "{keys}"
    );
    assert!(keys.lines().any(|k| k.starts_with("tc:jti:")), "{keys}");
    assert!(
        keys.lines()
            .any(|k| k.starts_with("tc:sid:") && k.ends_with(&bob.sid)),
        "{keys}"
    );
}

/// Expects a `503` with `Retry-After`, `Cache-Control: no-store` and a
/// `temporarily_unavailable` body.
fn expect_unavailable(got: (u16, Option<String>, Value)) {
    let (status, cc, body) = got;
    assert_eq!(status, 503, "{body}");
    assert_eq!(cc.as_deref(), Some("no-store"));
    assert_eq!(body["error"], json!("temporarily_unavailable"), "{body}");
    assert!(body["error_description"].is_string(), "{body}");
}

#[tokio::test]
async fn a_flood_of_forged_logouts_costs_a_failing_provider_one_fetch_per_backoff() {
    let provider = Provider::start().await;
    provider.failing.store(true, Ordering::SeqCst);
    let backoff = std::time::Duration::from_millis(2000);
    let refetch = std::time::Duration::from_millis(3000);
    let cache = TokenCache::builder()
        .store(store::open("memory://").await.unwrap())
        .build()
        .await
        .unwrap();
    let options = RemoteOptions {
        failure_backoff: backoff,
        max_failure_backoff: backoff,
        min_refetch_interval: refetch,
        ..RemoteOptions::default()
    };
    let validator = LogoutTokenValidator::builder(
        &provider.issuer,
        CLIENT_ID,
        Jwks::remote_with(&provider.jwks_uri, options).unwrap(),
    )
    .replay_cache(&cache)
    .build();
    let app = App::with(cache, validator).await;
    let alice = sign_in(&app.cache, &provider, ALICE).await;
    let fetches = || provider.fetches.load(Ordering::SeqCst);

    // a forger's token under the provider's kid, before any fetch has succeeded
    let mut forger = rsa_signer("signout-forger-rsa.pem", "rsa-2026");
    let forged = forger.sign(&provider.claims(Some(&alice.sid), None));
    let statuses = app.flood(&forged, 100).await;
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    let after_first = fetches();
    assert!(
        (1..=2).contains(&after_first),
        "100 POSTs: {after_first} fetches"
    );
    // within the backoff, one after the other (no fetch to share): answered from the
    // remembered failure
    for _ in 0..10 {
        expect_unavailable(app.back_channel(&forged).await);
    }
    assert_eq!(fetches(), after_first, "no fetch within the backoff");

    // after the backoff the provider is asked again, once for a whole flood
    tokio::time::sleep(backoff + std::time::Duration::from_millis(100)).await;
    let before = fetches();
    let statuses = app.flood(&forged, 100).await;
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    let asked = fetches() - before;
    assert!((1..=2).contains(&asked), "{asked} fetches");
    assert_eq!(present(&app.cache, &alice).await, 5, "nothing removed");

    // the provider heals: after the backoff one fetch, then forgeries are refused as such
    provider.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(backoff + std::time::Duration::from_millis(100)).await;
    let before = fetches();
    expect_refused(
        app.back_channel(&forged).await,
        &LogoutError::BadSignature {
            kid: Some("rsa-2026".into()),
        },
    );
    assert_eq!(fetches(), before + 1);
    let token = provider.rsa.sign(&provider.claims(Some(&alice.sid), None));
    assert_eq!(app.back_channel(&token).await.0, 200);
    assert_eq!(present(&app.cache, &alice).await, 0);
    assert_eq!(fetches(), before + 1, "the fetched set is used");

    // unknown kids: no refetch within min_refetch_interval, then one per flood
    forger.kid = "made-up".into();
    let unknown = forger.sign(&provider.claims(Some(&alice.sid), None));
    let before = fetches();
    for _ in 0..10 {
        expect_refused(
            app.back_channel(&unknown).await,
            &LogoutError::UnknownKey {
                kid: Some("made-up".into()),
            },
        );
    }
    assert_eq!(fetches(), before, "no refetch within min_refetch_interval");
    // ... and the provider fails again meanwhile: the refetch an unknown kid asks for
    // fails, which is a temporary failure (the sender may retry), not "unknown key";
    // the keys fetched before keep verifying real tokens
    provider.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(refetch + std::time::Duration::from_millis(100)).await;
    let before = fetches();
    let statuses = app.flood(&unknown, 100).await;
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    let asked = fetches() - before;
    assert!(
        (1..=2).contains(&asked),
        "{asked} fetches for 100 unknown kids"
    );
    let bob = sign_in(&app.cache, &provider, BOB).await;
    let token = provider.rsa.sign(&provider.claims(Some(&bob.sid), None));
    assert_eq!(app.back_channel(&token).await.0, 200);
    assert_eq!(present(&app.cache, &bob).await, 0);
    assert_eq!(fetches() - before, asked, "no fetch for a known kid");
}

#[tokio::test]
async fn a_back_channel_logout_during_an_l2_outage_is_503_and_the_retry_completes_it() {
    let server = RedisServer::start();
    let provider = Provider::start().await;
    let chaos = Arc::new(store::chaos::ChaosStore::passthrough(
        store::open(&server.url()).await.unwrap(),
    ));
    let cache = TokenCache::builder()
        .store(chaos.clone())
        // no breaker: the call after the outage goes straight to Redis
        .l2_breaker(tokencache::twolevel::BreakerOptions {
            failure_threshold: 0,
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    let validator = provider.validator(&cache);
    let app = App::with(cache, validator).await;
    let alice = sign_in(&app.cache, &provider, ALICE).await;
    let bob = sign_in(&app.cache, &provider, BOB).await;
    let token = provider.rsa.sign(&provider.claims(Some(&alice.sid), None));
    let jti_keys = || {
        server
            .cli(&["--scan", "--pattern", "tc:jti:*"])
            .lines()
            .count()
    };

    chaos.fail_always(store::StoreErrorKind::Connection);
    for _ in 0..2 {
        // the provider retries: each answer is a 503, never a replay refusal
        let r = app.post_back_channel(&token).await;
        assert_eq!(
            r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
            Some("10")
        );
        expect_unavailable(read(r).await);
    }
    // front channel, same outage
    let r = app
        .http
        .get(format!("{}/auth/logout/frontchannel", app.base))
        .query(&[
            ("iss", provider.issuer.as_str()),
            ("sid", alice.sid.as_str()),
        ])
        .send()
        .await
        .unwrap();
    expect_unavailable(read(r).await);
    // the app's own sign-out (bob): the session ends here, but not durably
    let r = app
        .http
        .post(format!("{}/auth/signout", app.base))
        .header("x-test-account", &bob.home)
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(r).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["complete"], json!(false), "{body}");
    chaos.fail_never();
    assert_eq!(jti_keys(), 0, "the jti is not spent");

    // the failed attempts left alice in Redis: the logout below is what removes her
    let alice_partition = app.cache.two_level().keys().partition_str(&alice.home);
    let still_there = server.cli(&["EXISTS", &alice_partition]);
    assert_eq!(still_there, "1", "L2 still holds alice's partition");

    let (status, _, body) = app.back_channel(&token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.cli(&["EXISTS", &alice_partition]), "0");
    assert_eq!(present(&app.cache, &alice).await, 0);
    assert_eq!(jti_keys(), 1, "spent now");
    expect_refused(
        app.back_channel(&token).await,
        &LogoutError::Replayed {
            jti: token_jti(&token),
        },
    );
}
