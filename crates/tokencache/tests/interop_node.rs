//! Cross-client interop with the real msal-node (`@azure/msal-node` 7.2.1), both directions:
//! blobs it wrote (user, app, OBO) read by tokencache, blobs tokencache wrote read by its
//! public API, and updates each way.
//!
//! The tests drive it through `interop/msal_node.mjs` (fake in-process HTTP, fixed clock,
//! fake tokens). They install the peers with `interop/setup.sh` into
//! `$TOKENCACHE_PEERS_DIR` (default `<repo>/.peers`) on first use, and FAIL (never skip)
//! when node or npm is missing.
//!
//! Run: `cargo test -p tokencache --test interop_node`.
//!
//! Secrets are compared by fingerprint (first 16 hex digits of SHA-256); no token value is printed.

#[path = "common/msal.rs"]
mod msal;

use msal::*;

// ---------------------------------------------------------------------------------------------
// live: msal-node

#[test]
fn live_node_user_cache_read_by_tokencache() {
    let blob = peer_write(Peer::Node, Kind::User);
    let env = environment();
    let cid = client_id();
    let probes: &[&[&str]] = &[
        &["User.Read"],
        &["Mail.Read", "User.Read"],
        &["Files.Read"],
        &["User.Read", "Files.Read"],
    ];
    for scopes in probes {
        let scopes = v(scopes);
        let (node, _) = peer_find(Peer::Node, &blob, cid, &scopes, Some(home()), None);
        let ours = tc_find(&blob, cid, &scopes, Some(home()), None, None);
        assert_eq!(
            ours, node,
            "tokencache and msal-node disagree for scopes {scopes:?}"
        );
        let ours = tc_find(&blob, cid, &scopes, Some(home()), None, Some(&env));
        assert_eq!(ours, node, "scopes {scopes:?}: {}", env_alias_msg(&blob));
    }
    assert_eq!(
        tc_find(&blob, cid, &v(&["User.Read"]), Some(home()), None, None),
        Some(Kind::User.access_token_fp())
    );
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
            Peer::Node,
            &blob,
            OTHER_CLIENT,
            &v(&["User.Read"]),
            Some(home()),
            None
        )
        .0,
        None
    );
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
    assert!(
        rt.is_some(),
        "tokencache finds no refresh token in msal-node's blob: {}",
        env_alias_msg(&blob)
    );
    assert_eq!(rt, peer_find_rt(Peer::Node, &blob, home()));
}

#[test]
fn live_node_app_cache_read_by_tokencache() {
    let blob = peer_write(Peer::Node, Kind::App);
    let env = environment();
    let scopes = Kind::App.scopes();
    assert_eq!(
        peer_find(Peer::Node, &blob, client_id(), &scopes, None, None).0,
        Some(Kind::App.access_token_fp())
    );
    assert_eq!(
        tc_find(&blob, client_id(), &scopes, None, None, None),
        Some(Kind::App.access_token_fp())
    );
    assert_eq!(
        tc_find(&blob, client_id(), &scopes, None, None, Some(&env)),
        Some(Kind::App.access_token_fp()),
        "{}",
        env_alias_msg(&blob)
    );
    assert_eq!(
        tc_find(&blob, OTHER_CLIENT, &scopes, None, None, Some(&env)),
        None
    );
    assert_eq!(
        tc_find(&blob, client_id(), &scopes, Some(home()), None, Some(&env)),
        None
    );
}

#[test]
fn live_node_obo_cache_read_by_tokencache() {
    let blob = peer_write(Peer::Node, Kind::Obo);
    let env = environment();
    let scopes = Kind::Obo.scopes();
    let a = Kind::Obo.assertion();
    assert_eq!(
        peer_find(Peer::Node, &blob, client_id(), &scopes, None, a).0,
        Some(Kind::Obo.access_token_fp())
    );
    assert_eq!(
        tc_find(&blob, client_id(), &scopes, None, a, None),
        Some(Kind::Obo.access_token_fp())
    );
    assert_eq!(
        tc_find(&blob, client_id(), &scopes, None, a, Some(&env)),
        Some(Kind::Obo.access_token_fp()),
        "{}",
        env_alias_msg(&blob)
    );
    assert_eq!(
        tc_find(
            &blob,
            client_id(),
            &scopes,
            None,
            Some("other.assertion.x"),
            Some(&env)
        ),
        None
    );
    assert_eq!(
        peer_find(
            Peer::Node,
            &blob,
            client_id(),
            &scopes,
            None,
            Some("other.assertion.x")
        )
        .0,
        None
    );
    assert_eq!(
        tc_find(&blob, OTHER_CLIENT, &scopes, None, a, Some(&env)),
        None
    );
}

#[test]
fn live_tokencache_user_blob_read_by_node() {
    let blob = tc_write(Kind::User);
    assert_eq!(
        peer_find(
            Peer::Node,
            &blob,
            client_id(),
            &v(&["User.Read"]),
            Some(home()),
            None
        )
        .0,
        Some(Kind::User.access_token_fp()),
        "msal-node's acquireTokenSilent misses tokencache's user AT"
    );
    assert_eq!(
        peer_find(
            Peer::Node,
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
        peer_find_rt(Peer::Node, &blob, home()),
        Some(fp(s(&Kind::User.case()["response"], "refresh_token"))),
        "msal-node finds no refresh token in tokencache's blob"
    );
}

#[test]
fn live_tokencache_app_blob_read_by_node() {
    let blob = tc_write(Kind::App);
    assert_eq!(
        peer_find(
            Peer::Node,
            &blob,
            client_id(),
            &Kind::App.scopes(),
            None,
            None
        )
        .0,
        Some(Kind::App.access_token_fp()),
        "msal-node's acquireTokenByClientCredential misses tokencache's app AT"
    );
}

/// msal-node writes an app partition (`home_account_id: ""`); tokencache saves a second app token
/// into it; msal-node's `acquireTokenByClientCredential` still serves its own token and ours from
/// the cache (both `""`), and every field msal-node wrote survives.
#[test]
fn live_node_app_cache_updated_by_tokencache_still_read_by_node() {
    let blob = peer_write(Peer::Node, Kind::App);
    let (scopes2, resp2) = second_token(Kind::App);
    let updated = tc_update(&blob, Kind::App, &scopes2, &resp2);
    let forms = at_home_account_ids(&updated);
    assert_eq!(forms.len(), 2, "both app tokens are in the blob");
    assert!(
        forms.values().all(|f| *f == Some(json!(""))),
        "the blob's \"\" home_account_id is kept and taken by the new token: {forms:?}"
    );
    assert_preserved(
        "msal-node app blob updated by tokencache",
        &serde_json::from_str(&blob).unwrap(),
        &serde_json::from_str(&updated).unwrap(),
    );
    for (scopes, want) in [
        (Kind::App.scopes(), Kind::App.access_token_fp()),
        (scopes2.clone(), fp(s(&resp2, "access_token"))),
    ] {
        assert_eq!(
            peer_find(Peer::Node, &updated, client_id(), &scopes, None, None).0,
            Some(want.clone()),
            "msal-node misses an app token for {scopes:?} after tokencache's update"
        );
        assert_eq!(
            tc_find(&updated, client_id(), &scopes, None, None, None),
            Some(want)
        );
    }
}

/// msal-node writes a user partition; tokencache saves a second user token into it; msal-node's
/// `acquireTokenSilent` serves both access tokens from the cache and finds the new refresh token.
#[test]
fn live_node_user_cache_updated_by_tokencache_still_read_by_node() {
    let blob = peer_write(Peer::Node, Kind::User);
    let (scopes2, resp2) = second_token(Kind::User);
    let updated = tc_update(&blob, Kind::User, &scopes2, &resp2);
    for (scopes, want) in [
        (v(&["User.Read"]), Kind::User.access_token_fp()),
        (scopes2.clone(), fp(s(&resp2, "access_token"))),
    ] {
        assert_eq!(
            peer_find(Peer::Node, &updated, client_id(), &scopes, Some(home()), None).0,
            Some(want.clone()),
            "msal-node's acquireTokenSilent misses the token for {scopes:?} after tokencache's update"
        );
        assert_eq!(
            tc_find(&updated, client_id(), &scopes, Some(home()), None, None),
            Some(want)
        );
    }
    assert_eq!(
        peer_find_rt(Peer::Node, &updated, home()),
        Some(fp(s(&resp2, "refresh_token")))
    );
}

/// msal-node writes an OBO partition; tokencache saves a second OBO token for the same incoming
/// assertion into it; msal-node's `acquireTokenOnBehalfOf` serves both from the cache (its
/// `userAssertionHash` survives, ours is written in both spellings), another assertion neither.
#[test]
fn live_node_obo_cache_updated_by_tokencache_still_read_by_node() {
    let blob = peer_write(Peer::Node, Kind::Obo);
    let a = Kind::Obo.assertion();
    let (scopes2, resp2) = second_token(Kind::Obo);
    let updated = tc_update(&blob, Kind::Obo, &scopes2, &resp2);
    let forms = at_home_account_ids(&updated);
    assert_eq!(forms.len(), 2, "both OBO tokens are in the blob");
    assert!(
        forms.values().all(|f| *f == Some(json!(""))),
        "the blob's form is kept and taken by the new token: {forms:?}"
    );
    for (scopes, want) in [
        (Kind::Obo.scopes(), Kind::Obo.access_token_fp()),
        (scopes2.clone(), fp(s(&resp2, "access_token"))),
    ] {
        assert_eq!(
            peer_find(Peer::Node, &updated, client_id(), &scopes, None, a).0,
            Some(want.clone()),
            "msal-node misses the OBO token for {scopes:?} after tokencache's update"
        );
        assert_eq!(
            peer_find(
                Peer::Node,
                &updated,
                client_id(),
                &scopes,
                None,
                Some("other.assertion.x")
            )
            .0,
            None
        );
        assert_eq!(
            tc_find(&updated, client_id(), &scopes, None, a, None),
            Some(want)
        );
    }
}

/// msal-node finds the OBO token tokencache wrote (its `acquireTokenOnBehalfOf` with a
/// failing token endpoint), through the `userAssertionHash` spelling tokencache writes
/// beside MSAL.NET's `user_assertion_hash`; the hash is msal-node's own; another
/// assertion finds nothing.
#[test]
fn live_tokencache_obo_blob_read_by_node() {
    let blob = tc_write(Kind::Obo);
    let a = Kind::Obo.assertion();
    let parsed: Value = serde_json::from_str(&blob).unwrap();
    for at in parsed["AccessToken"].as_object().unwrap().values() {
        assert_eq!(
            at["user_assertion_hash"],
            json!(assertion_hash(a.unwrap())),
            "OBO hash differs from msal-node's"
        );
        assert_eq!(at["userAssertionHash"], at["user_assertion_hash"]);
    }
    assert_eq!(
        peer_find(Peer::Node, &blob, client_id(), &Kind::Obo.scopes(), None, a).0,
        Some(Kind::Obo.access_token_fp()),
        "msal-node misses tokencache's OBO AT"
    );
    // msal-node's OBO lookup is by assertion hash only: any form of the empty home_account_id
    for form in [AppAccountForm::Null, AppAccountForm::Omitted] {
        let blob = tc_write_with(Kind::Obo, form);
        assert_eq!(
            peer_find(Peer::Node, &blob, client_id(), &Kind::Obo.scopes(), None, a).0,
            Some(Kind::Obo.access_token_fp()),
            "msal-node misses tokencache's OBO AT written with {form:?}"
        );
    }
    assert_eq!(
        peer_find(
            Peer::Node,
            &blob,
            client_id(),
            &Kind::Obo.scopes(),
            None,
            Some("other.assertion.x")
        )
        .0,
        None
    );
}
