//! Cross-client interop with the real MSAL Python (`msal` 1.39.0), both directions: blobs it
//! wrote read by tokencache, blobs tokencache wrote read by its public API and its cache
//! search, updates each way, and partitions shared through a real redis-server.
//!
//! The tests drive it through `interop/msal_py.py` (fake in-process HTTP, fixed clock, fake
//! tokens). They install the peers with `interop/setup.sh` into `$TOKENCACHE_PEERS_DIR`
//! (default `<repo>/.peers`) on first use, and FAIL (never skip) when python3 is missing.
//!
//! Run: `cargo test -p tokencache --test interop_python`.
//!
//! Secrets are compared by fingerprint (first 16 hex digits of SHA-256); no token value is printed.

#[path = "common/msal.rs"]
mod msal;

use msal::*;

// ---------------------------------------------------------------------------------------------
// live: MSAL Python

#[test]
fn live_python_user_cache_read_by_tokencache() {
    let blob = peer_write(Peer::Python, Kind::User);
    let env = environment();
    let cid = client_id();
    // (scopes asked, whether MSAL Python finds it) — tokencache must agree with MSAL on each.
    let probes: &[&[&str]] = &[
        &["User.Read"],
        &["Mail.Read", "User.Read"],
        &["User.Read", "Mail.Read"],
        &["Files.Read"],
        &["User.Read", "Files.Read"],
    ];
    for scopes in probes {
        let scopes = v(scopes);
        let (app, search) = peer_find(Peer::Python, &blob, cid, &scopes, Some(home()), None);
        assert_eq!(
            app, search,
            "MSAL Python's app API and search disagree for {scopes:?}"
        );
        let ours = tc_find(&blob, cid, &scopes, Some(home()), None, Some(&env));
        assert_eq!(
            ours, app,
            "tokencache and MSAL Python disagree for scopes {scopes:?}"
        );
    }
    assert_eq!(
        peer_find(
            Peer::Python,
            &blob,
            cid,
            &v(&["User.Read"]),
            Some(home()),
            None
        )
        .0,
        Some(Kind::User.access_token_fp())
    );
    // another client id: neither finds it
    assert_eq!(
        tc_find(
            &blob,
            OTHER_CLIENT,
            &v(&["User.Read"]),
            Some(home()),
            None,
            Some(&env)
        ),
        None
    );
    assert_eq!(
        peer_find(
            Peer::Python,
            &blob,
            OTHER_CLIENT,
            &v(&["User.Read"]),
            Some(home()),
            None
        )
        .0,
        None
    );
    // another user: no token
    assert_eq!(
        tc_find(
            &blob,
            cid,
            &v(&["User.Read"]),
            Some("someone.else"),
            None,
            Some(&env)
        ),
        None
    );
    // refresh token: the one MSAL's silent flow would redeem
    let p = Partition::parse(blob.as_bytes()).unwrap();
    let rt = p
        .find_refresh_token(&RefreshTokenQuery {
            client_id: cid,
            home_account_id: home(),
            environment: Some(&env),
            family_id: None,
            user_assertion_hash: None,
        })
        .map(|rt| fp(rt.secret.expose()));
    assert!(rt.is_some());
    assert_eq!(rt, peer_find_rt(Peer::Python, &blob, home()));
}

#[test]
fn live_python_app_cache_read_by_tokencache() {
    let blob = peer_write(Peer::Python, Kind::App);
    let env = environment();
    let scopes = Kind::App.scopes();
    let (app, _) = peer_find(Peer::Python, &blob, client_id(), &scopes, None, None);
    assert_eq!(app, Some(Kind::App.access_token_fp()));
    assert_eq!(
        tc_find(&blob, client_id(), &scopes, None, None, Some(&env)),
        app
    );
    assert_eq!(
        tc_find(&blob, OTHER_CLIENT, &scopes, None, None, Some(&env)),
        None
    );
    // an app token is never a user's token
    assert_eq!(
        tc_find(&blob, client_id(), &scopes, Some(home()), None, Some(&env)),
        None
    );
}

#[test]
fn live_tokencache_user_blob_read_by_python() {
    let blob = tc_write(Kind::User);
    let (app, search) = peer_find(
        Peer::Python,
        &blob,
        client_id(),
        &v(&["User.Read"]),
        Some(home()),
        None,
    );
    assert_eq!(
        search,
        Some(Kind::User.access_token_fp()),
        "MSAL Python's cache search misses tokencache's user AT"
    );
    assert_eq!(
        app,
        Some(Kind::User.access_token_fp()),
        "MSAL Python's acquire_token_silent misses tokencache's user AT"
    );
    assert_eq!(
        peer_find(
            Peer::Python,
            &blob,
            client_id(),
            &v(&["Files.Read"]),
            Some(home()),
            None
        )
        .0,
        None
    );
    assert_eq!(
        peer_find_rt(Peer::Python, &blob, home()),
        Some(fp(s(&Kind::User.case()["response"], "refresh_token"))),
        "MSAL Python finds no refresh token in tokencache's blob"
    );
}

/// What each real client's app-token lookup accepts as the `home_account_id` of an app token
/// tokencache wrote (`acquire_token_for_client` / `acquireTokenByClientCredential` with a failing
/// token endpoint): MSAL Python only `null`, msal-node only `""`, neither a missing field
/// (MSAL.NET's form). This is why the form is kept per record and chosen for new partitions
/// (schema/mod.rs "Known cross-SDK gaps"); if a pin bump changes a row, revisit the default.
#[test]
fn live_app_account_forms_each_client_accepts() {
    let scopes = Kind::App.scopes();
    let want = Some(Kind::App.access_token_fp());
    for (form, json_form, python, node) in [
        (AppAccountForm::Null, Some(Value::Null), true, false),
        (AppAccountForm::Empty, Some(json!("")), false, true),
        (AppAccountForm::Omitted, None, false, false),
    ] {
        let blob = tc_write_with(Kind::App, form);
        assert_eq!(
            at_home_account_ids(&blob).into_values().collect::<Vec<_>>(),
            vec![json_form],
            "{form:?}"
        );
        let (py_app, py_search) = peer_find(Peer::Python, &blob, client_id(), &scopes, None, None);
        assert_eq!(
            py_app, py_search,
            "{form:?}: MSAL Python's app API and search disagree"
        );
        assert_eq!(
            py_app.is_some(),
            python,
            "{form:?}: MSAL Python finds the app token: {python} expected"
        );
        let (node_app, _) = peer_find(Peer::Node, &blob, client_id(), &scopes, None, None);
        assert_eq!(
            node_app.is_some(),
            node,
            "{form:?}: msal-node finds the app token: {node} expected"
        );
        for hit in [py_app, node_app].into_iter().flatten() {
            assert_eq!(Some(hit), want, "{form:?}: another token found");
        }
        // tokencache itself finds its app token in every form
        let env = environment();
        assert_eq!(
            tc_find(&blob, client_id(), &scopes, None, None, Some(&env)),
            want
        );
    }
}

/// tokencache writes a new app partition with `AppAccountForm::Null`: MSAL Python's
/// `acquire_token_for_client` serves it from the cache, and its cache search finds it.
#[test]
fn live_tokencache_app_blob_read_by_python() {
    let blob = tc_write_with(Kind::App, AppAccountForm::Null);
    let (app, search) = peer_find(
        Peer::Python,
        &blob,
        client_id(),
        &Kind::App.scopes(),
        None,
        None,
    );
    assert_eq!(
        app,
        Some(Kind::App.access_token_fp()),
        "MSAL Python's acquire_token_for_client misses tokencache's app AT"
    );
    assert_eq!(search, app);
    // never for another client, nor as a user's token
    assert_eq!(
        peer_find(
            Peer::Python,
            &blob,
            OTHER_CLIENT,
            &Kind::App.scopes(),
            None,
            None
        )
        .0,
        None
    );
    assert_eq!(
        peer_find(
            Peer::Python,
            &blob,
            client_id(),
            &Kind::App.scopes(),
            Some(home()),
            None
        )
        .0,
        None
    );
}

/// MSAL Python writes an app partition (`home_account_id: null`); tokencache reads it, saves a
/// second app token into it (as `TokenCache` does: default form for new partitions), and MSAL
/// Python still finds its own token and now ours: the blob's `null` is kept, and the new token
/// takes it. Every field MSAL Python wrote survives.
#[test]
fn live_python_app_cache_updated_by_tokencache_still_read_by_python() {
    let blob = peer_write(Peer::Python, Kind::App);
    let env = environment();
    let (scopes2, resp2) = second_token(Kind::App);
    let fp2 = fp(s(&resp2, "access_token"));
    assert_eq!(
        tc_find(
            &blob,
            client_id(),
            &Kind::App.scopes(),
            None,
            None,
            Some(&env)
        ),
        Some(Kind::App.access_token_fp())
    );
    let updated = tc_update(&blob, Kind::App, &scopes2, &resp2);
    let forms = at_home_account_ids(&updated);
    assert_eq!(forms.len(), 2, "both app tokens are in the blob");
    assert!(
        forms.values().all(|f| *f == Some(Value::Null)),
        "the blob's null home_account_id is kept and taken by the new token: {forms:?}"
    );
    assert_preserved(
        "MSAL Python app blob updated by tokencache",
        &serde_json::from_str(&blob).unwrap(),
        &serde_json::from_str(&updated).unwrap(),
    );
    for (scopes, want) in [
        (Kind::App.scopes(), Kind::App.access_token_fp()),
        (scopes2.clone(), fp2.clone()),
    ] {
        let (app, search) = peer_find(Peer::Python, &updated, client_id(), &scopes, None, None);
        assert_eq!(
            app,
            Some(want.clone()),
            "MSAL Python misses an app token for {scopes:?} after tokencache's update"
        );
        assert_eq!(search, app);
        assert_eq!(
            tc_find(&updated, client_id(), &scopes, None, None, Some(&env)),
            Some(want)
        );
    }
}

/// MSAL Python writes a user partition; tokencache saves a second user token (other scopes, a
/// new refresh token) into it; MSAL Python's `acquire_token_silent` serves both access tokens
/// from the cache, and its silent flow would redeem the newest refresh token.
#[test]
fn live_python_user_cache_updated_by_tokencache_still_read_by_python() {
    let blob = peer_write(Peer::Python, Kind::User);
    let (scopes2, resp2) = second_token(Kind::User);
    let updated = tc_update(&blob, Kind::User, &scopes2, &resp2);
    for (scopes, want) in [
        (v(&["User.Read"]), Kind::User.access_token_fp()),
        (scopes2.clone(), fp(s(&resp2, "access_token"))),
    ] {
        let (app, search) = peer_find(
            Peer::Python,
            &updated,
            client_id(),
            &scopes,
            Some(home()),
            None,
        );
        assert_eq!(
            app,
            Some(want.clone()),
            "MSAL Python's acquire_token_silent misses the token for {scopes:?} after tokencache's update"
        );
        assert_eq!(search, app);
        assert_eq!(
            tc_find(&updated, client_id(), &scopes, Some(home()), None, None),
            Some(want)
        );
    }
    assert_eq!(
        peer_find_rt(Peer::Python, &updated, home()),
        Some(fp(s(&resp2, "refresh_token")))
    );
}

/// OBO with MSAL Python: its `acquire_token_on_behalf_of` never reads the cache (it always asks
/// the token endpoint; MSAL Python leaves OBO caching to the app), so no OBO token is ever
/// served to it from a blob — neither its own nor tokencache's; and the access token it caches
/// records no assertion hash (`home_account_id: null` when the response names no user), so
/// tokencache does not serve it for an assertion either. What does hold: tokencache updates such
/// a blob keeping MSAL Python's `null`, and finds its own OBO token in it.
#[test]
fn live_python_obo_cache_is_write_only_for_python() {
    let a = Kind::Obo.assertion();
    let scopes = Kind::Obo.scopes();
    let blob = peer_write(Peer::Python, Kind::Obo);
    let parsed: Value = serde_json::from_str(&blob).unwrap();
    let ats: Vec<&Value> = parsed["AccessToken"]
        .as_object()
        .unwrap()
        .values()
        .collect();
    assert_eq!(ats.len(), 1);
    assert_eq!(ats[0]["home_account_id"], Value::Null);
    assert!(
        ats[0].get("user_assertion_hash").is_none() && ats[0].get("userAssertionHash").is_none()
    );
    // MSAL Python's OBO API: no cache hit in its own blob, nor in tokencache's (any form)
    assert_eq!(
        peer_find(Peer::Python, &blob, client_id(), &scopes, None, a).0,
        None
    );
    for form in [AppAccountForm::Null, AppAccountForm::Empty] {
        let ours = tc_write_with(Kind::Obo, form);
        assert_eq!(
            peer_find(Peer::Python, &ours, client_id(), &scopes, None, a).0,
            None,
            "MSAL Python now serves OBO tokens from the cache ({form:?}): extend the interop tests"
        );
    }
    // tokencache: a token cached without the assertion's hash is not served for the assertion
    assert_eq!(tc_find(&blob, client_id(), &scopes, None, a, None), None);
    // tokencache updates the blob: its form is kept, our OBO token is found by its assertion
    let (scopes2, resp2) = second_token(Kind::Obo);
    let updated = tc_update(&blob, Kind::Obo, &scopes2, &resp2);
    let forms = at_home_account_ids(&updated);
    assert_eq!(forms.len(), 2);
    assert!(
        forms.values().all(|f| *f == Some(Value::Null)),
        "MSAL Python's null is kept and taken by the new token: {forms:?}"
    );
    assert_eq!(
        tc_find(&updated, client_id(), &scopes2, None, a, None),
        Some(fp(s(&resp2, "access_token")))
    );
    assert_preserved(
        "MSAL Python OBO blob updated by tokencache",
        &parsed,
        &serde_json::from_str(&updated).unwrap(),
    );
}

/// The Microsoft.Identity.Web-shaped layout: a `TokenCache` over a real redis-server with no
/// key prefix saves a user token response; `GET oid.tid` (read with redis-cli, as another
/// service would) is MSAL V3 JSON in which MSAL Python's own lookup finds the token.
#[test]
fn live_redis_user_partition_read_by_python() {
    ensure_peers();
    let server = testkit::RedisServer::start();
    let c = cases();
    let scopes = Kind::User.scopes();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let env = environment();
    let body = serde_json::to_vec(&Kind::User.case()["response"]).unwrap();
    let resp = TokenResponse::from_json(&body).expect("TokenResponse::from_json");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let saved = rt.block_on(async {
        let cache = tokencache::TokenCache::builder()
            .store_url(&server.url())
            .clock(std::sync::Arc::new(
                tokencache::clock::ManualClock::at_secs(now()),
            ))
            .build()
            .await
            .unwrap();
        let req = tokencache::SaveRequest::new(
            s(c, "client_id"),
            tokencache::SaveFor::User,
            &env,
            s(c, "tenant"),
            &scopes,
        );
        cache.save_token_response(&req, &resp).await.unwrap()
    });
    assert_eq!(
        saved.partition,
        home(),
        "the partition key is the home account id"
    );
    let blob = server.cli(&["GET", home()]);
    let blob = blob.trim_end();
    assert!(blob.starts_with('{'), "GET {} returned no JSON", home());
    let (app, search) = peer_find(
        Peer::Python,
        blob,
        client_id(),
        &v(&["User.Read"]),
        Some(home()),
        None,
    );
    assert_eq!(
        search,
        Some(Kind::User.access_token_fp()),
        "MSAL Python's search misses the token in Redis"
    );
    assert_eq!(
        app,
        Some(Kind::User.access_token_fp()),
        "MSAL Python's acquire_token_silent misses it"
    );
}

/// End to end through `TokenCache` on a real redis-server: MSAL Python's app cache sits under
/// Microsoft.Identity.Web's app key (`{client}_{tenant}_AppTokenCache`); a Rust service saves a
/// second app token into that partition; `GET` of the key is still a blob in which MSAL Python's
/// `acquire_token_for_client` serves both its token and ours (its `null` kept and taken).
#[test]
fn live_redis_app_partition_shared_with_python() {
    ensure_peers();
    let server = testkit::RedisServer::start();
    let c = cases();
    let key = format!("{}_{}_AppTokenCache", s(c, "client_id"), s(c, "tenant"));
    let python_blob = peer_write(Peer::Python, Kind::App);
    assert_eq!(server.cli(&["SET", &key, &python_blob]).trim(), "OK");
    let (scopes2, resp2) = second_token(Kind::App);
    let scopes: Vec<&str> = scopes2.iter().map(String::as_str).collect();
    let env = environment();
    let body = serde_json::to_vec(&resp2).unwrap();
    let resp = TokenResponse::from_json(&body).expect("TokenResponse::from_json");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let saved = rt.block_on(async {
        let cache = tokencache::TokenCache::builder()
            .store_url(&server.url())
            .clock(std::sync::Arc::new(
                tokencache::clock::ManualClock::at_secs(now()),
            ))
            .build()
            .await
            .unwrap();
        let req = tokencache::SaveRequest::new(
            s(c, "client_id"),
            tokencache::SaveFor::App,
            &env,
            s(c, "tenant"),
            &scopes,
        );
        cache.save_token_response(&req, &resp).await.unwrap()
    });
    assert_eq!(
        saved.partition, key,
        "the app partition key is Microsoft.Identity.Web's"
    );
    let blob = server.cli(&["GET", &key]);
    let blob = blob.trim_end();
    assert!(blob.starts_with('{'), "GET {key} returned no JSON");
    let forms = at_home_account_ids(blob);
    assert_eq!(
        forms.len(),
        2,
        "MSAL Python's app token and ours: {forms:?}"
    );
    assert!(forms.values().all(|f| *f == Some(Value::Null)), "{forms:?}");
    for (scopes, want) in [
        (Kind::App.scopes(), Kind::App.access_token_fp()),
        (scopes2.clone(), fp(s(&resp2, "access_token"))),
    ] {
        let (app, search) = peer_find(Peer::Python, blob, client_id(), &scopes, None, None);
        assert_eq!(
            app,
            Some(want),
            "MSAL Python misses the app token for {scopes:?} in Redis after TokenCache's save"
        );
        assert_eq!(search, app);
    }
}

/// A `TokenCache` built with `app_account_form(AppAccountForm::Null)` creates app partitions
/// in Redis that MSAL Python's `acquire_token_for_client` serves from cache (the default,
/// `""`, is msal-node's form, which MSAL Python does not find).
#[test]
fn live_redis_new_app_partition_for_python() {
    ensure_peers();
    let server = testkit::RedisServer::start();
    let c = cases();
    let key = format!("{}_{}_AppTokenCache", s(c, "client_id"), s(c, "tenant"));
    let scopes = Kind::App.scopes();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let env = environment();
    let body = serde_json::to_vec(&Kind::App.case()["response"]).unwrap();
    let resp = TokenResponse::from_json(&body).expect("TokenResponse::from_json");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (form, python_finds) in [(AppAccountForm::Null, true), (AppAccountForm::Empty, false)] {
        server.cli(&["DEL", &key]);
        rt.block_on(async {
            let cache = tokencache::TokenCache::builder()
                .store_url(&server.url())
                .app_account_form(form)
                .clock(std::sync::Arc::new(
                    tokencache::clock::ManualClock::at_secs(now()),
                ))
                .build()
                .await
                .unwrap();
            let req = tokencache::SaveRequest::new(
                s(c, "client_id"),
                tokencache::SaveFor::App,
                &env,
                s(c, "tenant"),
                &scopes,
            );
            cache.save_token_response(&req, &resp).await.unwrap()
        });
        let blob = server.cli(&["GET", &key]);
        let (app, _) = peer_find(
            Peer::Python,
            blob.trim_end(),
            client_id(),
            &Kind::App.scopes(),
            None,
            None,
        );
        assert_eq!(
            app.is_some(),
            python_finds,
            "{form:?}: MSAL Python's acquire_token_for_client"
        );
    }
}
