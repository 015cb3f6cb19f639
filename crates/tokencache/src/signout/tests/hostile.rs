//! Hostile logout tokens: dates JSON can barely carry, expiries and settings far past
//! any real one. Typed errors, never a panic, and bounded memory and time.

use super::*;

/// Signs `claims_json` as written (numbers JSON cannot carry in a `Value`, like `1e400`).
fn sign_raw(s: &Signer, claims_json: &str) -> String {
    let header = URL_SAFE_NO_PAD
        .encode(json!({"alg": "ES256", "typ": "logout+jwt", "kid": s.kid}).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims_json);
    let message = format!("{header}.{body}");
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &s.key, s.alg).unwrap();
    format!("{message}.{sig}")
}

#[tokio::test]
async fn hostile_dates_are_typed_errors_not_panics() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    let out_of_range = |claim| LogoutError::DateOutOfRange { claim };
    let cases: Vec<(&str, Value, LogoutError)> = vec![
        ("iat", json!(i64::MAX), out_of_range("iat")),
        ("iat", json!(i64::MIN), out_of_range("iat")),
        ("iat", json!(u64::MAX), out_of_range("iat")),
        ("iat", json!(1e300), out_of_range("iat")),
        ("iat", json!(-1e300), out_of_range("iat")),
        ("iat", json!(MAX_NUMERIC_DATE + 1), out_of_range("iat")),
        ("iat", json!("1800000000"), LogoutError::MissingClaim("iat")),
        ("iat", json!(null), LogoutError::MissingClaim("iat")),
        ("exp", json!(i64::MAX), out_of_range("exp")),
        ("exp", json!(i64::MIN), out_of_range("exp")),
        ("exp", json!(1e300), out_of_range("exp")),
        ("exp", json!([1]), LogoutError::MissingClaim("exp")),
    ];
    for (claim, value, want) in cases {
        let c = with(claims(), |m| {
            m.insert(claim.into(), value.clone());
        });
        let got = v.validate(&s.sign(&c)).await.unwrap_err();
        assert_eq!(got, want, "{claim} = {value}");
        assert_eq!(got.error_code(), "invalid_request");
    }
    // in range but absurd: ordinary refusals, computed without overflow
    let c = with(claims(), |m| {
        m.insert("iat".into(), json!(-MAX_NUMERIC_DATE));
    });
    assert!(matches!(
        v.validate(&s.sign(&c)).await.unwrap_err(),
        LogoutError::TooOld { iat, .. } if iat == -MAX_NUMERIC_DATE
    ));
    let c = with(claims(), |m| {
        m.insert("iat".into(), json!(MAX_NUMERIC_DATE));
    });
    assert!(matches!(
        v.validate(&s.sign(&c)).await.unwrap_err(),
        LogoutError::IssuedInFuture { .. }
    ));
    let c = with(claims(), |m| {
        m.insert("exp".into(), json!(-MAX_NUMERIC_DATE));
    });
    assert!(matches!(
        v.validate(&s.sign(&c)).await.unwrap_err(),
        LogoutError::Expired { .. }
    ));
    // a number JSON parsers cannot hold at all
    let raw = claims()
        .to_string()
        .replace(&format!("\"iat\":{}", NOW - 10), "\"iat\":1e400");
    assert!(raw.contains("1e400"), "{raw}");
    assert!(matches!(
        v.validate(&sign_raw(&s, &raw)).await.unwrap_err(),
        LogoutError::Malformed(_)
    ));
    // fractions are rounded down
    let c = with(claims(), |m| {
        m.insert("iat".into(), json!((NOW - 10) as f64 + 0.75));
    });
    assert_eq!(v.validate(&s.sign(&c)).await.unwrap().iat, NOW - 10);
}

#[tokio::test]
async fn far_future_expiry_and_huge_settings_stay_bounded() {
    let cache = TokenCache::builder()
        .store(crate::store::open("memory://").await.unwrap())
        .build()
        .await
        .unwrap();
    let s = ec_signer("k1");
    let keys = KeySet::from_json(json!({"keys": [s.jwk.clone()]}).to_string().as_bytes()).unwrap();
    let v = LogoutTokenValidator::builder(ISS, CLIENT, Jwks::fixed(keys.clone()))
        .clock(Arc::new(ManualClock::at_secs(NOW)))
        .replay_cache(&cache)
        .build();
    // exp at the end of the range: the replay marker lasts by iat, not by exp
    let c = with(claims(), |m| {
        m.insert("exp".into(), json!(MAX_NUMERIC_DATE));
    });
    v.validate(&s.sign(&c)).await.unwrap();
    let kept = cache
        .two_level()
        .store()
        .get(&cache.two_level().keys().logout_jti(ISS, "jti-1"))
        .await
        .unwrap()
        .expect("jti remembered");
    // iat + max age + leeway = NOW - 10 + 300 + 60
    assert!(
        kept.ttl.is_some_and(|t| t <= Duration::from_secs(350)),
        "{kept:?}"
    );

    // leeway and max age of Duration::MAX: "forever", not a wrapped negative number
    let lax = LogoutTokenValidator::builder(ISS, CLIENT, Jwks::fixed(keys))
        .clock(Arc::new(ManualClock::at_secs(NOW)))
        .leeway(Duration::MAX)
        .max_age(Duration::MAX)
        .replay_cache(&cache)
        .build();
    let c = with(claims(), |m| {
        m.insert("iat".into(), json!(-MAX_NUMERIC_DATE));
        m.insert("exp".into(), json!(-MAX_NUMERIC_DATE));
        m.insert("jti".into(), json!("ancient"));
    });
    assert_eq!(lax.validate(&s.sign(&c)).await.unwrap().jti, "ancient");
    assert!(matches!(
        lax.validate(&s.sign(&c)).await.unwrap_err(),
        LogoutError::Replayed { .. }
    ));
}
