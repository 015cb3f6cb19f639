//! Unit tests of the schema module. All tokens here are fake.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

mod forms;
mod mirror;
mod reading;

const CID: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const CID2: &str = "22222222-aaaa-4bbb-8ccc-000000000002";
const TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";
const ENV: &str = "login.microsoftonline.com";
const NOW: i64 = 1_700_000_000;

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s.as_bytes())
}

fn fake_jwt(claims: &Value) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&claims.to_string())
    )
}

fn client_info(uid: &str, utid: &str) -> String {
    b64(&format!(r#"{{"uid":"{uid}","utid":"{utid}"}}"#))
}

fn hid() -> String {
    format!("{OID}.{TID}")
}

fn user_response(at: &str, scope: &str) -> TokenResponse {
    TokenResponse {
        access_token: Some(Secret::new(at)),
        token_type: Some("Bearer".into()),
        expires_in: Some(3600),
        ext_expires_in: Some(7200),
        refresh_token: Some(Secret::new("fake-rt-1")),
        id_token: Some(Secret::new(fake_jwt(&json!({
            "oid": OID, "tid": TID, "sub": "subject-1",
            "preferred_username": "ada@contoso.example", "name": "Ada"
        })))),
        client_info: Some(client_info(OID, TID)),
        scope: Some(scope.into()),
        ..TokenResponse::default()
    }
}

fn req<'a>(scopes: &'a [&'a str]) -> TokenRequest<'a> {
    TokenRequest {
        client_id: CID,
        environment: ENV,
        realm: TID,
        scopes,
        user_assertion: None,
    }
}

fn user_query<'a>(h: &'a str, scopes: &'a [&'a str]) -> AccessTokenQuery<'a> {
    AccessTokenQuery {
        home_account_id: Some(h),
        ..AccessTokenQuery::new(CID, scopes)
    }
}

#[test]
fn secret_is_redacted_everywhere() {
    let s = Secret::new("abc");
    assert_eq!(s.fingerprint(), "sha256:ba7816bf");
    assert_eq!(format!("{s:?}"), "Secret(<redacted sha256:ba7816bf>)");
    assert_eq!(format!("{s}"), "<redacted sha256:ba7816bf>");
    assert_eq!(s.expose(), "abc");
    assert_eq!(serde_json::to_string(&s).unwrap(), "\"abc\"");
    let back: Secret = serde_json::from_str("\"abc\"").unwrap();
    assert_eq!(back, s);

    let mut p = Partition::new();
    p.add_token_response(
        &req(&["User.Read"]),
        &user_response("AT-SECRET-VALUE", "User.Read"),
        NOW,
    )
    .unwrap();
    let dbg = format!("{p:?}");
    assert!(!dbg.contains("AT-SECRET-VALUE"));
    assert!(!dbg.contains("fake-rt-1"));
    let summary = p.summary().to_string();
    assert!(!summary.contains("AT-SECRET-VALUE"));
    assert!(!summary.contains("fake-rt-1"));
    assert!(summary.contains(&Secret::new("AT-SECRET-VALUE").fingerprint()));
    let resp_dbg = format!("{:?}", user_response("AT-SECRET-VALUE", "x"));
    assert!(!resp_dbg.contains("AT-SECRET-VALUE"));
}

#[test]
fn credential_keys_match_msal_net() {
    let at = AccessToken {
        home_account_id: "UID.UTID".into(),
        home_account_id_form: AppAccountForm::Empty,
        environment: "Login.Windows.Net".into(),
        client_id: "CID".into(),
        credential_type: CREDENTIAL_ACCESS_TOKEN.into(),
        realm: "TID".into(),
        target: "a B".into(),
        secret: Secret::new("s"),
        cached_at: 1,
        expires_on: 2,
        extended_expires_on: None,
        refresh_on: None,
        token_type: None,
        key_id: None,
        user_assertion_hash: None,
        written_at_ms: None,
        written_seq: None,
        extra: Extra::default(),
    };
    assert_eq!(
        at.key(),
        "uid.utid-login.windows.net-accesstoken-cid-tid-a b"
    );
    let pop = AccessToken {
        token_type: Some("pop".into()),
        ..at.clone()
    };
    assert_eq!(
        pop.key(),
        "uid.utid-login.windows.net-accesstoken_with_authscheme-cid-tid-a b-pop"
    );
    let app = AccessToken {
        home_account_id: String::new(),
        ..at
    };
    assert_eq!(app.key(), "-login.windows.net-accesstoken-cid-tid-a b");

    let mut rt = RefreshToken {
        home_account_id: "u.t".into(),
        home_account_id_form: AppAccountForm::Empty,
        environment: "env".into(),
        client_id: "CID".into(),
        secret: Secret::new("s"),
        family_id: None,
        target: Some("x".into()),
        user_assertion_hash: None,
        last_modification_time: None,
        written_at_ms: None,
        written_seq: None,
        extra: Extra::default(),
    };
    assert_eq!(rt.key(), "u.t-env-refreshtoken-cid--");
    rt.family_id = Some("1".into());
    assert_eq!(rt.key(), "u.t-env-refreshtoken-1--");

    let idt = IdToken {
        home_account_id: "u.t".into(),
        home_account_id_form: AppAccountForm::Empty,
        environment: "env".into(),
        client_id: "CID".into(),
        realm: "TID".into(),
        secret: Secret::new("s"),
        extra: Extra::default(),
    };
    assert_eq!(idt.key(), "u.t-env-idtoken-cid-tid-");
    let acc = Account {
        home_account_id: "u.t".into(),
        home_account_id_form: AppAccountForm::Empty,
        environment: "env".into(),
        realm: "TID".into(),
        local_account_id: "u".into(),
        username: String::new(),
        authority_type: AUTHORITY_TYPE_MSSTS.into(),
        name: None,
        client_info: None,
        extra: Extra::default(),
    };
    assert_eq!(acc.key(), "u.t-env-tid");
    let meta = AppMetadata {
        client_id: "CID".into(),
        environment: "ENV".into(),
        family_id: None,
        extra: Extra::default(),
    };
    assert_eq!(meta.key(), "appmetadata-env-cid");
}

#[test]
fn user_response_round_trips_through_find() {
    let mut p = Partition::new();
    let added = p
        .add_token_response(
            &req(&["User.Read", "openid"]),
            &user_response("at-1", "User.Read Mail.Read openid profile"),
            NOW,
        )
        .unwrap();
    let h = hid();
    assert_eq!(added.home_account_id.as_deref(), Some(h.as_str()));
    assert_eq!(added.expires_on, Some(NOW + 3600));
    let key = added.access_token_key.unwrap();
    assert_eq!(
        key,
        format!("{h}-{ENV}-accesstoken-{CID}-{TID}-mail.read user.read openid profile")
    );

    let at = p
        .find_access_token(&user_query(&h, &["user.read"]), NOW)
        .unwrap();
    assert_eq!(at.secret.expose(), "at-1");
    assert_eq!(at.target, "Mail.Read User.Read openid profile");
    assert_eq!(at.cached_at, NOW);
    assert_eq!(at.extended_expires_on, Some(NOW + 7200));
    assert_eq!(at.refresh_on, None);
    assert_eq!(at.realm, TID);

    let rt = p
        .find_refresh_token(&RefreshTokenQuery::new(CID, &h))
        .unwrap();
    assert_eq!(rt.secret.expose(), "fake-rt-1");
    assert_eq!(rt.last_modification_time, Some(NOW));
    assert!(p
        .find_refresh_token(&RefreshTokenQuery::new(CID2, &h))
        .is_none());

    let idt = p.find_id_token(CID, &h, Some(TID)).unwrap();
    assert_eq!(idt.realm, TID);
    assert!(p.find_id_token(CID, &h, Some("other")).is_none());

    let acc = p.find_account(&h).unwrap();
    assert_eq!(acc.local_account_id, OID);
    assert_eq!(acc.username, "ada@contoso.example");
    assert_eq!(acc.name.as_deref(), Some("Ada"));
    assert_eq!(acc.realm, TID);
    assert_eq!(acc.authority_type, "MSSTS");
    assert_eq!(p.app_metadata().count(), 1);
    assert!(p.has_credentials());
    assert_eq!(p.latest_access_token_expiry(), Some(NOW + 3600));
    assert_eq!(p.last_cached_at(), Some(NOW));

    // The blob survives a round trip, and is written MSAL.NET style.
    let blob = p.to_vec();
    let text = std::str::from_utf8(&blob).unwrap();
    assert!(text.contains(&format!("\"cached_at\":\"{NOW}\"")));
    assert!(text.contains(&format!("\"expires_on\":\"{}\"", NOW + 3600)));
    assert!(
        text.contains(r#""token_type":"Bearer""#),
        "token_type is written, as MSAL.NET and MSAL Python do"
    );
    assert!(!text.contains('\n'));
    assert_eq!(Partition::parse(&blob).unwrap(), p);
}

#[test]
fn requested_scopes_are_the_target_without_scope_echo() {
    let mut p = Partition::new();
    let mut resp = user_response("at", "");
    resp.scope = None;
    p.add_token_response(&req(&["b", "A", "b"]), &resp, NOW)
        .unwrap();
    let at = p.access_tokens().next().unwrap();
    assert_eq!(at.target, "A b");
}

#[test]
fn app_token_round_trip_and_isolation() {
    let mut p = Partition::new();
    let resp = TokenResponse::from_json(
        br#"{"token_type":"Bearer","expires_in":"3599","ext_expires_in":3599,"access_token":"app-at"}"#,
    )
    .unwrap();
    assert_eq!(resp.expires_in, Some(3599));
    let scopes = ["https://graph.microsoft.com/.default"];
    let added = p.add_token_response(&req(&scopes), &resp, NOW).unwrap();
    assert_eq!(added.home_account_id, None);
    assert_eq!(
        added.access_token_key.as_deref(),
        Some(
            format!("-{ENV}-accesstoken-{CID}-{TID}-https://graph.microsoft.com/.default").as_str()
        )
    );
    let q = AccessTokenQuery {
        realm: Some(TID),
        environment: Some("Login.MicrosoftOnline.com"),
        ..AccessTokenQuery::new(CID, &scopes)
    };
    assert_eq!(
        p.find_access_token(&q, NOW).unwrap().secret.expose(),
        "app-at"
    );
    assert!(p
        .find_access_token(&user_query("someone", &scopes), NOW)
        .is_none());
    assert!(p
        .find_access_token(&AccessTokenQuery::new(CID2, &scopes), NOW)
        .is_none());
    assert!(p
        .find_access_token(
            &AccessTokenQuery {
                realm: Some("other-tenant"),
                ..q
            },
            NOW
        )
        .is_none());
    // No account, no refresh token, no app metadata for app tokens.
    assert_eq!(p.accounts().count(), 0);
    assert_eq!(p.app_metadata().count(), 0);
    let text = String::from_utf8(p.to_vec()).unwrap();
    assert!(text.contains(r#""home_account_id":"""#));
}

#[test]
fn obo_tokens_carry_the_assertion_hash() {
    let mut p = Partition::new();
    let assertion = "incoming.jwt.assertion";
    let request = TokenRequest {
        user_assertion: Some(assertion),
        ..req(&["api://downstream/.default"])
    };
    let mut resp = user_response("obo-at", "api://downstream/.default");
    resp.id_token = None;
    resp.refresh_token = None;
    p.add_token_response(&request, &resp, NOW).unwrap();
    let hash = crate::partition::assertion_hash(assertion);
    let at = p.access_tokens().next().unwrap();
    assert_eq!(at.user_assertion_hash.as_deref(), Some(hash.as_str()));

    let h = hid();
    let scopes = ["api://downstream/.default"];
    let plain = user_query(&h, &scopes);
    assert!(
        p.find_access_token(&plain, NOW).is_none(),
        "OBO token is not a user token"
    );
    let obo = AccessTokenQuery {
        user_assertion_hash: Some(&hash),
        ..plain
    };
    assert_eq!(
        p.find_access_token(&obo, NOW).unwrap().secret.expose(),
        "obo-at"
    );
    let wrong = AccessTokenQuery {
        user_assertion_hash: Some("other"),
        ..plain
    };
    assert!(p.find_access_token(&wrong, NOW).is_none());
    let text = String::from_utf8(p.to_vec()).unwrap();
    assert!(text.contains(&format!(r#""user_assertion_hash":"{hash}""#)));
}

#[test]
fn scopes_are_a_case_insensitive_subset() {
    let mut p = Partition::new();
    p.add_token_response(
        &req(&[]),
        &user_response("at", "api://x/Read api://x/Write"),
        NOW,
    )
    .unwrap();
    let h = hid();
    assert!(p
        .find_access_token(&user_query(&h, &["API://X/read"]), NOW)
        .is_some());
    assert!(p
        .find_access_token(&user_query(&h, &["api://x/write", "api://x/read"]), NOW)
        .is_some());
    assert!(p
        .find_access_token(&user_query(&h, &["api://x/Read api://x/Write"]), NOW)
        .is_some());
    assert!(p
        .find_access_token(&user_query(&h, &["api://x/Read", "api://x/Delete"]), NOW)
        .is_none());
    assert!(p
        .find_access_token(&user_query(&h, &["api://x/Rea"]), NOW)
        .is_none());
}

#[test]
fn tokens_within_skew_are_not_served() {
    let mut p = Partition::new();
    let mut resp = user_response("at", "s");
    resp.expires_in = Some(600);
    p.add_token_response(&req(&["s"]), &resp, NOW).unwrap();
    let h = hid();
    let q = user_query(&h, &["s"]);
    assert_eq!(q.skew_secs, 300);
    assert!(p.find_access_token(&q, NOW + 299).is_some());
    assert!(p.find_access_token(&q, NOW + 300).is_none());
    let no_skew = AccessTokenQuery { skew_secs: 0, ..q };
    assert!(p.find_access_token(&no_skew, NOW + 599).is_some());
    assert!(p.find_access_token(&no_skew, NOW + 600).is_none());
    assert_eq!(p.remove_expired_access_tokens(NOW + 600), 1);
    assert_eq!(p.access_tokens().count(), 0);
}

#[test]
fn refresh_on_is_reported_but_token_still_served() {
    let mut p = Partition::new();
    let mut resp = user_response("at", "s");
    resp.refresh_in = Some(1800);
    p.add_token_response(&req(&["s"]), &resp, NOW).unwrap();
    let h = hid();
    let q = user_query(&h, &["s"]);
    let at = p.find_access_token(&q, NOW + 100).unwrap();
    assert_eq!(at.refresh_on, Some(NOW + 1800));
    assert!(!at.needs_refresh(NOW + 1799));
    let at = p.find_access_token(&q, NOW + 1800).unwrap();
    assert!(at.needs_refresh(NOW + 1800));
    // No refresh_in: no refresh_on (MSAL Python behaviour), even for long lifetimes.
    let mut resp = user_response("at2", "t");
    resp.expires_in = Some(86_400);
    p.add_token_response(&req(&["t"]), &resp, NOW).unwrap();
    let at = p.find_access_token(&user_query(&h, &["t"]), NOW).unwrap();
    assert_eq!(at.refresh_on, None);
    assert!(!at.needs_refresh(NOW + 80_000));
}

#[test]
fn overlapping_access_tokens_are_replaced() {
    let mut p = Partition::new();
    let h = hid();
    p.add_token_response(&req(&[]), &user_response("ab", "a b"), NOW)
        .unwrap();
    p.add_token_response(&req(&[]), &user_response("bc", "B c"), NOW + 1)
        .unwrap();
    assert_eq!(p.access_tokens().count(), 1);
    assert!(p.find_access_token(&user_query(&h, &["a"]), NOW).is_none());
    assert_eq!(
        p.find_access_token(&user_query(&h, &["b"]), NOW)
            .unwrap()
            .secret
            .expose(),
        "bc"
    );
    p.add_token_response(&req(&[]), &user_response("d", "d"), NOW)
        .unwrap();
    assert_eq!(p.access_tokens().count(), 2);
    // The OIDC scopes every user response echoes do not make targets overlap.
    p.add_token_response(
        &req(&[]),
        &user_response("e", "e openid profile offline_access"),
        NOW,
    )
    .unwrap();
    p.add_token_response(&req(&[]), &user_response("f", "f openid profile"), NOW)
        .unwrap();
    assert_eq!(p.access_tokens().count(), 4);
    assert!(p.find_access_token(&user_query(&h, &["e"]), NOW).is_some());
    assert!(p
        .find_access_token(&user_query(&h, &["openid", "f"]), NOW)
        .is_some());
    p.remove_account(CID, &h);
    p.add_token_response(&req(&[]), &user_response("d", "d"), NOW)
        .unwrap();
    // Another tenant is another slot.
    let mut resp = user_response("other-tenant", "d");
    resp.id_token = None;
    let other = TokenRequest {
        realm: "other-tid",
        ..req(&[])
    };
    p.add_token_response(&other, &resp, NOW).unwrap();
    assert_eq!(p.access_tokens().count(), 2);
    // Another client is another slot.
    let c2 = TokenRequest {
        client_id: CID2,
        ..req(&[])
    };
    p.add_token_response(&c2, &user_response("c2", "d"), NOW)
        .unwrap();
    assert_eq!(p.access_tokens().count(), 3);
}

#[test]
fn accounts_and_refresh_tokens_are_never_duplicated() {
    let mut p = Partition::new();
    let h = hid();
    p.add_token_response(&req(&[]), &user_response("1", "a"), NOW)
        .unwrap();
    // Unknown fields of an existing account survive an update.
    let key = p.accounts().next().unwrap().key();
    p.accounts
        .get_mut(&key)
        .unwrap()
        .extra
        .insert("given_name".into(), json!("Ada"));
    let mut second = user_response("2", "b");
    second.refresh_token = Some(Secret::new("fake-rt-2"));
    second.id_token = None; // a refresh-grant response without id token
    p.add_token_response(&req(&[]), &second, NOW + 10).unwrap();
    assert_eq!(p.accounts().count(), 1);
    let acc = p.find_account(&h).unwrap();
    assert_eq!(
        acc.username, "ada@contoso.example",
        "kept from the first response"
    );
    assert_eq!(acc.extra.get("given_name"), Some(&json!("Ada")));
    assert_eq!(p.refresh_tokens().count(), 1);
    assert_eq!(
        p.find_refresh_token(&RefreshTokenQuery::new(CID, &h))
            .unwrap()
            .secret
            .expose(),
        "fake-rt-2"
    );
    assert_eq!(p.id_tokens().count(), 1);
    assert_eq!(p.app_metadata().count(), 1);
    assert_eq!(p.last_cached_at(), Some(NOW + 10));
}

#[test]
fn family_refresh_tokens_serve_other_clients() {
    let mut p = Partition::new();
    let h = hid();
    let mut resp = user_response("a", "s");
    resp.foci = Some("1".into());
    p.add_token_response(&req(&["s"]), &resp, NOW).unwrap();
    let rt = p.refresh_tokens().next().unwrap();
    assert_eq!(rt.family_id.as_deref(), Some("1"));
    assert_eq!(rt.key(), format!("{h}-{ENV}-refreshtoken-1--"));
    assert_eq!(
        p.app_metadata().next().unwrap().family_id.as_deref(),
        Some("1")
    );
    let q = RefreshTokenQuery::new(CID2, &h);
    assert!(p.find_refresh_token(&q).is_none());
    let fq = RefreshTokenQuery {
        family_id: Some("1"),
        ..q
    };
    assert_eq!(p.find_refresh_token(&fq).unwrap().client_id, CID);
}

#[test]
fn remove_account_counts_and_keeps_shared_account() {
    let mut p = Partition::new();
    let h = hid();
    p.add_token_response(&req(&[]), &user_response("1", "a"), NOW)
        .unwrap();
    let c2 = TokenRequest {
        client_id: CID2,
        ..req(&[])
    };
    p.add_token_response(&c2, &user_response("2", "a"), NOW)
        .unwrap();
    assert_eq!(p.accounts().count(), 1);
    // AT + RT + IdT of client 1; the account stays (client 2 still refers to the user).
    assert_eq!(p.remove_account(CID, &h), 3);
    assert!(p.find_account(&h).is_some());
    assert!(p.find_access_token(&user_query(&h, &["a"]), NOW).is_none());
    // Client 2's credentials and the account go.
    assert_eq!(p.remove_account(CID2, &h), 4);
    assert!(p.find_account(&h).is_none());
    assert!(!p.has_credentials());
    assert_eq!(p.remove_account(CID2, &h), 0);
    // App metadata is never removed (MSAL rule).
    assert_eq!(p.app_metadata().count(), 2);
}

#[test]
fn home_account_id_falls_back_to_sub() {
    let mut p = Partition::new();
    let resp = TokenResponse {
        access_token: Some(Secret::new("at")),
        id_token: Some(Secret::new(fake_jwt(
            &json!({"sub": "user-42", "email": "u@example.org"}),
        ))),
        expires_in: Some(100),
        ..TokenResponse::default()
    };
    let added = p.add_token_response(&req(&["openid"]), &resp, NOW).unwrap();
    assert_eq!(added.home_account_id.as_deref(), Some("user-42"));
    let acc = p.find_account("user-42").unwrap();
    assert_eq!(acc.local_account_id, "user-42");
    assert_eq!(acc.username, "u@example.org");
    assert_eq!(acc.realm, TID, "request realm when there is no tid claim");
}

#[test]
fn bad_id_token_client_info_and_empty_response_are_typed_errors() {
    let mut p = Partition::new();
    let mut resp = user_response("at", "s");
    resp.id_token = Some(Secret::new("not-a-jwt"));
    assert!(matches!(
        p.add_token_response(&req(&[]), &resp, NOW),
        Err(SchemaError::BadIdToken { .. })
    ));
    resp.id_token = Some(Secret::new("aaa.!!!.ccc"));
    assert!(matches!(
        p.add_token_response(&req(&[]), &resp, NOW),
        Err(SchemaError::BadIdToken { .. })
    ));
    resp.id_token = Some(Secret::new(format!("x.{}.y", b64("[1,2]"))));
    assert!(matches!(
        p.add_token_response(&req(&[]), &resp, NOW),
        Err(SchemaError::BadIdToken { .. })
    ));
    let mut resp = user_response("at", "s");
    resp.client_info = Some("%%%".into());
    assert!(matches!(
        p.add_token_response(&req(&[]), &resp, NOW),
        Err(SchemaError::BadClientInfo { .. })
    ));
    resp.client_info = Some(b64("not json"));
    let err = p.add_token_response(&req(&[]), &resp, NOW).unwrap_err();
    assert!(matches!(err, SchemaError::BadClientInfo { .. }));
    assert_eq!(err.to_string(), "bad client_info: not a JSON object");
    assert!(p.is_empty(), "nothing stored on error");
    let err = p
        .add_token_response(&req(&[]), &TokenResponse::default(), NOW)
        .unwrap_err();
    assert!(matches!(
        err,
        SchemaError::MissingField {
            field: "access_token",
            ..
        }
    ));
}
