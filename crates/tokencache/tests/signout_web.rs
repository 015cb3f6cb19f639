//! Web sign-out over real HTTP on loopback: a fake OpenID provider serves its JWKS with
//! axum on 127.0.0.1, signs real logout tokens (RS256 with the test-only key in
//! `tests/fixtures/signout-provider-rsa.pem`, ES256 with a key made here), and the app
//! runs `tokencache::signout::axum::router` on 127.0.0.1 too. A valid back-channel
//! logout removes the user partition, the linked OBO partitions and the link set;
//! forged, unknown-key, expired, too old, wrong-audience, wrong-issuer, non-logout,
//! nonce-carrying and replayed tokens are refused with their own error and remove
//! nothing. Front-channel logout by `iss` + `sid` and the app's own sign-out route are
//! exercised the same way, on the in-process store. Key rotation, an unreachable JWKS,
//! a flood of forged tokens, a real redis-server and an L2 outage are in
//! `signout_web_failures.rs`.
//!
//! The two RSA keys under `tests/fixtures/` (`signout-provider-rsa.pem`,
//! `signout-forger-rsa.pem`) were made once with `openssl genrsa -traditional 2048`
//! for these tests only; they protect nothing.
#![cfg(all(feature = "axum", feature = "jwks-fetch"))]

#[path = "common/signout_web.rs"]
mod web;

use web::*;

// ---------------------------------------------------------------- the tests

#[tokio::test]
async fn back_channel_logout_with_a_signed_token_removes_the_user_and_linked_obo_partitions() {
    let provider = Provider::start().await;
    let app = App::start(store::open("memory://").await.unwrap(), &provider).await;
    let alice = sign_in(&app.cache, &provider, ALICE).await;
    let bob = sign_in(&app.cache, &provider, BOB).await;

    // RS256, by sid
    let token = provider.rsa.sign(&provider.claims(Some(&alice.sid), None));
    let (status, cc, _) = app.back_channel(&token).await;
    assert_eq!((status, cc.as_deref()), (200, Some("no-store")));
    assert_eq!(
        present(&app.cache, &alice).await,
        0,
        "alice's partition, OBO partitions, session and link set are gone"
    );
    assert_eq!(present(&app.cache, &bob).await, 5, "bob is untouched");
    let sessions = SessionIndex::new(&app.cache);
    assert_eq!(
        sessions
            .find_by_sid(&provider.issuer, &alice.sid)
            .await
            .unwrap(),
        None
    );
    let stamp = app.cache.two_level().keys().revocation(&alice.home);
    assert!(
        app.store.get(&stamp).await.unwrap().is_some(),
        "revocation stamp written"
    );

    // the same token again: refused as a replay
    expect_refused(
        app.back_channel(&token).await,
        &LogoutError::Replayed {
            jti: token_jti(&token),
        },
    );

    // ES256, by sub only
    let token = provider.ec.sign(&provider.claims(None, Some(&bob.sub)));
    let (status, _, _) = app.back_channel(&token).await;
    assert_eq!(status, 200);
    assert_eq!(present(&app.cache, &bob).await, 0);
    assert_eq!(
        provider.fetches.load(Ordering::SeqCst),
        1,
        "the JWKS is fetched once and cached"
    );

    // a valid token for a session not known here: 200, nothing to do
    let token = provider
        .rsa
        .sign(&provider.claims(Some("sid-unknown"), None));
    assert_eq!(app.back_channel(&token).await.0, 200);
}

#[tokio::test]
async fn refused_logout_tokens_remove_nothing() {
    let provider = Provider::start().await;
    let app = App::start(store::open("memory://").await.unwrap(), &provider).await;
    let alice = sign_in(&app.cache, &provider, ALICE).await;
    let valid = || provider.claims(Some(&alice.sid), Some(&alice.sub));
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = valid();
        f(c.as_object_mut().unwrap());
        c
    };
    let forger = rsa_signer("signout-forger-rsa.pem", "rsa-2026"); // the provider's kid
    let stranger = ec_signer("ec-unknown");
    let t = now();

    let cases: Vec<(&str, String, LogoutError)> = vec![
        (
            "forged signature",
            forger.sign(&valid()),
            LogoutError::BadSignature {
                kid: Some("rsa-2026".into()),
            },
        ),
        (
            "unknown kid",
            stranger.sign(&valid()),
            LogoutError::UnknownKey {
                kid: Some("ec-unknown".into()),
            },
        ),
        (
            "expired",
            provider.rsa.sign(&edit(&|m| {
                m.insert("iat".into(), json!(t - 200));
                m.insert("exp".into(), json!(t - 100));
            })),
            LogoutError::Expired {
                exp: t - 100,
                now: t,
            },
        ),
        (
            "too old",
            provider.rsa.sign(&edit(&|m| {
                m.insert("iat".into(), json!(t - 3600));
                m.remove("exp");
            })),
            LogoutError::TooOld {
                iat: t - 3600,
                max_age_secs: 300,
                now: t,
            },
        ),
        (
            "issued in the future",
            provider.rsa.sign(&edit(&|m| {
                m.insert("iat".into(), json!(t + 3600));
            })),
            LogoutError::IssuedInFuture {
                iat: t + 3600,
                now: t,
            },
        ),
        (
            "wrong audience",
            provider.rsa.sign(&edit(&|m| {
                m.insert("aud".into(), json!("another-app"));
            })),
            LogoutError::WrongAudience {
                expected: CLIENT_ID.into(),
                found: vec!["another-app".into()],
            },
        ),
        (
            "wrong issuer",
            provider.rsa.sign(&edit(&|m| {
                m.insert("iss".into(), json!("https://evil.example.test/v2.0"));
            })),
            LogoutError::WrongIssuer {
                expected: provider.issuer.clone(),
                found: "https://evil.example.test/v2.0".into(),
            },
        ),
        (
            "no events (an ID token)",
            provider.rsa.sign(&edit(&|m| {
                m.remove("events");
            })),
            LogoutError::NotALogoutToken,
        ),
        (
            "nonce",
            provider.ec.sign(&edit(&|m| {
                m.insert("nonce".into(), json!("n-1"));
            })),
            LogoutError::NonceNotAllowed,
        ),
        (
            "neither sid nor sub",
            provider.ec.sign(&edit(&|m| {
                m.remove("sid");
                m.remove("sub");
            })),
            LogoutError::MissingSidAndSub,
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"logout+jwt"}"#),
                URL_SAFE_NO_PAD.encode(valid().to_string())
            ),
            LogoutError::UnsupportedAlgorithm { alg: "none".into() },
        ),
        (
            "garbage",
            "not-a-jwt".into(),
            LogoutError::Malformed("not a JWT (three dot-separated parts)".into()),
        ),
    ];
    for (what, token, err) in &cases {
        let got = app.back_channel(token).await;
        // times in the expected errors are those of the test; a second may pass
        if let (
            LogoutError::Expired { .. }
            | LogoutError::TooOld { .. }
            | LogoutError::IssuedInFuture { .. },
            Some(desc),
        ) = (err, got.2["error_description"].as_str())
        {
            let kind = err.to_string();
            let head = &kind[..kind.find(|c: char| c.is_ascii_digit()).unwrap()];
            assert!(desc.starts_with(head), "{what}: {desc}");
            assert_eq!(got.0, 400, "{what}");
        } else {
            expect_refused(got, err);
        }
        assert_eq!(
            present(&app.cache, &alice).await,
            5,
            "{what}: nothing removed"
        );
    }

    // no logout_token field
    let r = app
        .http
        .post(format!("{}/auth/logout/backchannel", app.base))
        .form(&[("other", "x")])
        .send()
        .await
        .unwrap();
    expect_refused(
        read(r).await,
        &LogoutError::MissingParameter("logout_token"),
    );

    // not a form at all
    let r = app
        .http
        .post(format!("{}/auth/logout/backchannel", app.base))
        .header("content-type", "application/json")
        .body(r#"{"logout_token":"x"}"#)
        .send()
        .await
        .unwrap();
    expect_refused(
        read(r).await,
        &LogoutError::Malformed("the request is not a form with a `logout_token` field".into()),
    );
    assert_eq!(present(&app.cache, &alice).await, 5);

    // after all that, the valid token still works (refusals use up no jti)
    assert_eq!(app.back_channel(&provider.rsa.sign(&valid())).await.0, 200);
    assert_eq!(present(&app.cache, &alice).await, 0);
}

#[tokio::test]
async fn front_channel_logout_by_iss_and_sid() {
    let provider = Provider::start().await;
    let app = App::start(store::open("memory://").await.unwrap(), &provider).await;
    let alice = sign_in(&app.cache, &provider, ALICE).await;
    let bob = sign_in(&app.cache, &provider, BOB).await;
    let url = format!("{}/auth/logout/frontchannel", app.base);

    // wrong issuer, missing sid: refused, nothing removed
    let r = app
        .http
        .get(&url)
        .query(&[
            ("iss", "https://evil.example.test"),
            ("sid", alice.sid.as_str()),
        ])
        .send()
        .await
        .unwrap();
    expect_refused(
        read(r).await,
        &LogoutError::WrongIssuer {
            expected: provider.issuer.clone(),
            found: "https://evil.example.test".into(),
        },
    );
    let r = app
        .http
        .get(&url)
        .query(&[("iss", provider.issuer.as_str())])
        .send()
        .await
        .unwrap();
    expect_refused(read(r).await, &LogoutError::MissingParameter("sid"));
    assert_eq!(present(&app.cache, &alice).await, 5);

    // an unknown session: 200, nothing removed
    let r = app
        .http
        .get(&url)
        .query(&[("iss", provider.issuer.as_str()), ("sid", "sid-unknown")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(present(&app.cache, &alice).await, 5);

    let r = app
        .http
        .get(&url)
        .query(&[
            ("iss", provider.issuer.as_str()),
            ("sid", alice.sid.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let (status, cc, _) = read(r).await;
    assert_eq!((status, cc.as_deref()), (200, Some("no-cache, no-store")));
    assert_eq!(present(&app.cache, &alice).await, 0);
    assert_eq!(present(&app.cache, &bob).await, 5);
}

#[tokio::test]
async fn the_apps_own_sign_out_route() {
    let provider = Provider::start().await;
    let app = App::start(store::open("memory://").await.unwrap(), &provider).await;
    let alice = sign_in(&app.cache, &provider, ALICE).await;
    let url = format!("{}/auth/signout", app.base);

    let r = app.http.post(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "no signed-in account");
    assert_eq!(present(&app.cache, &alice).await, 5);

    let r = app
        .http
        .post(&url)
        .header("x-test-account", &alice.home)
        .send()
        .await
        .unwrap();
    let (status, cc, body) = read(r).await;
    assert_eq!((status, cc.as_deref()), (200, Some("no-store")));
    assert_eq!(
        body,
        json!({"signed_out": true, "obo_partitions": 3, "complete": true})
    );
    assert_eq!(present(&app.cache, &alice).await, 0);
}
