//! A sign-out whose writes fail (the revocation stamp, the removals, the jti marker) is
//! an error, never a silent success: the same logout token completes it later, and the
//! routes answer 503 with Retry-After, or 202 for a sign-out that is not complete.

use super::*;

/// A store that, while `down`, fails the writes a sign-out needs (the revocation stamp,
/// bulk removals, the jti marker), and nothing else: the session index still answers,
/// so the sign-out runs and is not durable.
#[derive(Debug)]
struct SignOutWritesFail {
    inner: crate::store::SharedStore,
    down: std::sync::atomic::AtomicBool,
}

impl SignOutWritesFail {
    fn check(&self, what: &str) -> crate::store::StoreResult<()> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crate::store::StoreError::new(
                crate::store::StoreErrorKind::Connection,
                "test",
                format!("{what}: injected outage"),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::store::Store for SignOutWritesFail {
    async fn get(&self, key: &str) -> crate::store::StoreResult<Option<crate::store::StoreValue>> {
        self.inner.get(key).await
    }
    async fn get_and_touch(
        &self,
        key: &str,
        ttl: Duration,
    ) -> crate::store::StoreResult<Option<crate::store::StoreValue>> {
        self.inner.get_and_touch(key, ttl).await
    }
    async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> crate::store::StoreResult<()> {
        if key.contains("tc:revoked:") {
            self.check("set")?;
        }
        self.inner.set(key, value, ttl).await
    }
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> crate::store::StoreResult<bool> {
        self.check("set_if_absent")?;
        self.inner.set_if_absent(key, value, ttl).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: crate::store::EntryExpiry,
    ) -> crate::store::StoreResult<bool> {
        self.check("set")?;
        self.inner
            .compare_and_swap(key, expected, new, expiry)
            .await
    }
    async fn touch(&self, key: &str, ttl: Duration) -> crate::store::StoreResult<bool> {
        self.inner.touch(key, ttl).await
    }
    async fn remove(&self, key: &str) -> crate::store::StoreResult<bool> {
        self.check("remove")?;
        self.inner.remove(key).await
    }
    async fn remove_many(&self, keys: &[String]) -> crate::store::StoreResult<u64> {
        self.check("remove_many")?;
        self.inner.remove_many(keys).await
    }
    async fn link_add(
        &self,
        set_key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> crate::store::StoreResult<()> {
        self.inner.link_add(set_key, member, ttl).await
    }
    async fn link_members(&self, set_key: &str) -> crate::store::StoreResult<Vec<String>> {
        self.inner.link_members(set_key).await
    }
    async fn link_remove(
        &self,
        set_key: &str,
        members: &[String],
    ) -> crate::store::StoreResult<()> {
        self.inner.link_remove(set_key, members).await
    }
    async fn health(&self) -> crate::store::StoreResult<()> {
        self.inner.health().await
    }
    async fn scan(
        &self,
        prefix: &str,
        cursor: u64,
        count: usize,
    ) -> crate::store::StoreResult<(u64, Vec<String>)> {
        self.inner.scan(prefix, cursor, count).await
    }
    fn endpoint(&self) -> String {
        "sign-out-writes-fail".into()
    }
}

#[tokio::test]
async fn a_sign_out_that_is_not_durable_is_an_error_and_the_same_token_completes_it() {
    let faulty = Arc::new(SignOutWritesFail {
        inner: crate::store::open("memory://").await.unwrap(),
        down: std::sync::atomic::AtomicBool::new(false),
    });
    let cache = TokenCache::builder()
        .store(faulty.clone())
        .build()
        .await
        .unwrap();
    let store = cache.two_level().store().clone();
    let keys = cache.two_level().keys().clone();
    let account = "oid-1.tid-1";
    let partition = keys.partition_str(account);
    store.set(&partition, b"tokens", None).await.unwrap();
    let sessions = SessionIndex::new(&cache);
    sessions
        .record(ISS, Some("sid-1"), Some("sub-1"), account)
        .await
        .unwrap();
    let s = ec_signer("k1");
    let keyset =
        KeySet::from_json(json!({"keys": [s.jwk.clone()]}).to_string().as_bytes()).unwrap();
    let v = LogoutTokenValidator::builder(ISS, CLIENT, Jwks::fixed(keyset))
        .clock(Arc::new(ManualClock::at_secs(NOW)))
        .replay_cache(&cache)
        .build();
    let token = s.sign(&claims());

    faulty.down.store(true, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..2 {
        // twice: the jti is released each time, never refused as a replay
        let err = back_channel_logout(&cache, &sessions, &v, &token)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            LogoutError::NotDurable {
                account: account.into()
            }
        );
        assert!(err.is_temporary());
        assert_eq!(err.error_code(), "temporarily_unavailable");
    }
    assert!(
        faulty.inner.get(&partition).await.unwrap().is_some(),
        "L2 still holds the partition"
    );
    assert_eq!(
        sessions.find_by_sid(ISS, "sid-1").await.unwrap().as_deref(),
        Some(account),
        "the session index entry is kept for the retry"
    );
    let front = front_channel_logout(&cache, &sessions, ISS, Some(ISS), Some("sid-1"))
        .await
        .unwrap_err();
    assert!(matches!(front, LogoutError::NotDurable { .. }), "{front:?}");

    faulty
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let out = back_channel_logout(&cache, &sessions, &v, &token)
        .await
        .unwrap();
    assert_eq!(out.account.as_deref(), Some(account));
    assert!(out.sign_out.is_some_and(|o| o.l2_complete));
    assert_eq!(faulty.inner.get(&partition).await.unwrap(), None);
    assert_eq!(sessions.find_by_sid(ISS, "sid-1").await.unwrap(), None);
    assert!(matches!(
        back_channel_logout(&cache, &sessions, &v, &token).await,
        Err(LogoutError::Replayed { .. })
    ));
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn temporary_failures_are_503_with_retry_after_and_incomplete_sign_outs_202() {
    use ::axum::http::StatusCode;

    use crate::signout::axum::{logout_error_response, sign_out_route, RETRY_AFTER};

    let not_durable = LogoutError::NotDurable {
        account: "oid.tid".into(),
    };
    for (err, status) in [
        (not_durable.clone(), StatusCode::SERVICE_UNAVAILABLE),
        (
            LogoutError::SignOut("L2 down".into()),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            LogoutError::Jwks(JwksError::NoUsableKeys),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (LogoutError::Malformed("x".into()), StatusCode::BAD_REQUEST),
        (
            LogoutError::Replayed { jti: "j".into() },
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = logout_error_response(&err);
        assert_eq!(r.status(), status, "{err:?}");
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(retry, Some(RETRY_AFTER.as_secs().to_string()), "{err:?}");
        } else {
            assert_eq!(retry, None, "{err:?}");
        }
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
    assert!(!not_durable.to_string().contains("oid.tid"));

    // the app's own sign-out: 202 with complete:false while L2 does not take it, 200 after
    let faulty = Arc::new(SignOutWritesFail {
        inner: crate::store::open("memory://").await.unwrap(),
        down: std::sync::atomic::AtomicBool::new(true),
    });
    let cache = TokenCache::builder()
        .store(faulty.clone())
        .build()
        .await
        .unwrap();
    let body = |r: ::axum::response::Response| async move {
        let bytes = ::axum::body::to_bytes(r.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    let r = sign_out_route(&cache, "oid.tid").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(body(r).await["complete"], json!(false));
    // with a redirect: the user still goes on to the provider, the header says more
    let s = ec_signer("k1");
    let keys = KeySet::from_json(json!({"keys": [s.jwk.clone()]}).to_string().as_bytes()).unwrap();
    let state = super::axum::SignOutState::new(
        &cache,
        LogoutTokenValidator::builder(ISS, CLIENT, Jwks::fixed(keys)).build(),
    )
    .account_resolver(|_| Some("oid.tid".into()))
    .redirect_after_sign_out("https://login.example.test/logout");
    let redirect = || async {
        super::axum::app_sign_out(
            ::axum::extract::State(state.clone()),
            ::axum::extract::Request::new(::axum::body::Body::empty()),
        )
        .await
    };
    let r = redirect().await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "https://login.example.test/logout");
    assert_eq!(r.headers()["x-sign-out-complete"], "false");

    faulty
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let r = sign_out_route(&cache, "oid.tid").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body(r).await["complete"], json!(true));
    let r = redirect().await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers().get("x-sign-out-complete").is_none());
}
