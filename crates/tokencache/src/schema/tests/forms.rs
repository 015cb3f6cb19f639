//! The form of account-less records' `home_account_id` (empty, null or omitted) a
//! partition keeps, and the scope masks its lookups use.

use super::*;

/// The JSON value of `home_account_id` of every record of `section` (`None`: no field).
fn hid_values(blob: &[u8], section: &str) -> Vec<Option<Value>> {
    let v: Value = serde_json::from_slice(blob).unwrap();
    v[section]
        .as_object()
        .unwrap()
        .values()
        .map(|r| r.get("home_account_id").cloned())
        .collect()
}

/// An app access token and an OBO refresh token (no user), `home_account_id` as `form`
/// (`None`: no field).
fn account_less_blob(form: Option<Value>) -> String {
    let mut at = json!({
        "credential_type": "AccessToken", "secret": "fake-app-at", "environment": ENV,
        "client_id": CID, "realm": TID, "target": "api://a/.default",
        "cached_at": "1700000000", "expires_on": "1700003599", "x_unknown": [1, null]
    });
    let mut rt = json!({
        "credential_type": "RefreshToken", "secret": "fake-obo-rt", "environment": ENV,
        "client_id": CID, "user_assertion_hash": "h"
    });
    if let Some(f) = form {
        at["home_account_id"] = f.clone();
        rt["home_account_id"] = f;
    }
    json!({
        "AccessToken": {format!("-{ENV}-accesstoken-{CID}-{TID}-api://a/.default"): at},
        "RefreshToken": {format!("-{ENV}-refreshtoken-{CID}--"): rt},
    })
    .to_string()
}

#[test]
fn empty_home_account_id_keeps_the_form_it_was_read_with() {
    for (form, want) in [
        (Some(Value::Null), AppAccountForm::Null),
        (Some(json!("")), AppAccountForm::Empty),
        (None, AppAccountForm::Omitted),
    ] {
        let blob = account_less_blob(form.clone());
        let p = Partition::parse(blob.as_bytes()).unwrap();
        let at = p.access_tokens().next().unwrap();
        assert_eq!(at.home_account_id, "");
        assert_eq!(at.home_account_id_form, want);
        assert_eq!(
            p.refresh_tokens().next().unwrap().home_account_id_form,
            want
        );
        assert_eq!(p.app_account_form(), Some(want));
        let out = p.to_vec();
        assert_eq!(
            hid_values(&out, "AccessToken"),
            vec![form.clone()],
            "{want:?}"
        );
        assert_eq!(
            hid_values(&out, "RefreshToken"),
            vec![form.clone()],
            "{want:?}"
        );
        // the written field is byte-for-byte what was read
        let field = match &form {
            Some(v) => format!(r#""home_account_id":{v}"#),
            None => "home_account_id".to_owned(),
        };
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text.matches(&field).count(),
            if form.is_some() { 2 } else { 0 }
        );
        // and it is still an app token for tokencache's own lookup
        let scopes = ["api://a/.default"];
        let q = AccessTokenQuery::new(CID, &scopes);
        assert_eq!(
            p.find_access_token(&q, NOW).map(|t| t.secret.expose()),
            Some("fake-app-at")
        );
        assert_eq!(Partition::parse(&out).unwrap(), p, "{want:?}: round trip");
    }
    // a non-empty id is a string whatever the form, and reads back as the default form
    let mut p = Partition::new();
    p.add_token_response_with_form(
        &req(&["User.Read"]),
        &user_response("fake-user-at", "User.Read"),
        NOW,
        AppAccountForm::Omitted,
    )
    .unwrap();
    let out = p.to_vec();
    for section in ["AccessToken", "RefreshToken", "IdToken", "Account"] {
        assert_eq!(
            hid_values(&out, section),
            vec![Some(json!(hid()))],
            "{section}"
        );
    }
    assert_eq!(p.app_account_form(), None);
    assert_eq!(Partition::parse(&out).unwrap(), p);
    // a home_account_id of another type is still a typed error
    let bad = account_less_blob(Some(json!(42)));
    assert!(matches!(
        Partition::parse(bad.as_bytes()),
        Err(SchemaError::WrongType { .. })
    ));
}

fn app_response(at: &str) -> TokenResponse {
    TokenResponse {
        access_token: Some(Secret::new(at)),
        token_type: Some("Bearer".into()),
        expires_in: Some(3599),
        ..TokenResponse::default()
    }
}

#[test]
fn an_update_keeps_the_blobs_form_whatever_form_is_asked_for_new_partitions() {
    for (form, want) in [
        (Some(Value::Null), AppAccountForm::Null),
        (Some(json!("")), AppAccountForm::Empty),
        (None, AppAccountForm::Omitted),
    ] {
        for asked in [
            AppAccountForm::Null,
            AppAccountForm::Empty,
            AppAccountForm::Omitted,
        ] {
            let mut p = Partition::parse(account_less_blob(form.clone()).as_bytes()).unwrap();
            let scopes = ["api://b/.default"];
            p.add_token_response_with_form(&req(&scopes), &app_response("fake-at-b"), NOW, asked)
                .unwrap();
            let out = p.to_vec();
            assert_eq!(
                hid_values(&out, "AccessToken"),
                vec![form.clone(), form.clone()],
                "blob {want:?}, asked {asked:?}: the new token takes the blob's form"
            );
            // the token the blob had is untouched, unknown field included
            let back = Partition::parse(&out).unwrap();
            let old = back
                .find_access_token(&AccessTokenQuery::new(CID, &["api://a/.default"]), NOW)
                .unwrap();
            assert_eq!(old.secret.expose(), "fake-app-at");
            assert_eq!(old.extra.get("x_unknown"), Some(&json!([1, null])));
            assert_eq!(old.home_account_id_form, want);
        }
    }
}

#[test]
fn new_partitions_get_the_asked_form_and_the_default_is_empty() {
    let scopes = ["api://a/.default"];
    let mut p = Partition::new();
    p.add_token_response(&req(&scopes), &app_response("fake-at"), NOW)
        .unwrap();
    assert_eq!(
        hid_values(&p.to_vec(), "AccessToken"),
        vec![Some(json!(""))]
    );
    assert_eq!(AppAccountForm::default(), AppAccountForm::Empty);
    for (asked, want) in [
        (AppAccountForm::Null, Some(Value::Null)),
        (AppAccountForm::Empty, Some(json!(""))),
        (AppAccountForm::Omitted, None),
    ] {
        let mut p = Partition::new();
        p.add_token_response_with_form(&req(&scopes), &app_response("fake-at"), NOW, asked)
            .unwrap();
        assert_eq!(
            hid_values(&p.to_vec(), "AccessToken"),
            vec![want],
            "{asked:?}"
        );
        assert_eq!(p.app_account_form(), Some(asked));
        // OBO without user identity: access and refresh token both account-less
        let mut p = Partition::new();
        let obo = TokenRequest {
            user_assertion: Some("incoming.jwt.assertion"),
            ..req(&scopes)
        };
        let resp = TokenResponse {
            refresh_token: Some(Secret::new("fake-obo-rt")),
            ..app_response("fake-obo-at")
        };
        p.add_token_response_with_form(&obo, &resp, NOW, asked)
            .unwrap();
        let out = p.to_vec();
        let want = hid_values(&out, "AccessToken");
        assert_eq!(hid_values(&out, "RefreshToken"), want, "{asked:?}");
        assert_eq!(Partition::parse(&out).unwrap(), p);
    }
    // a user partition has no account-less record: a later app token gets the asked form
    let mut p = Partition::new();
    p.add_token_response(
        &req(&["User.Read"]),
        &user_response("fake-u", "User.Read"),
        NOW,
    )
    .unwrap();
    p.add_token_response_with_form(
        &req(&scopes),
        &app_response("fake-at"),
        NOW,
        AppAccountForm::Null,
    )
    .unwrap();
    assert_eq!(p.app_account_form(), Some(AppAccountForm::Null));
}

#[test]
fn the_partitions_form_is_that_of_its_newest_app_token() {
    let blob = json!({"AccessToken": {
        "a": {"home_account_id": null, "secret": "s1", "client_id": CID, "target": "x",
              "cached_at": "10", "expires_on": "100"},
        "b": {"home_account_id": "", "secret": "s2", "client_id": CID, "target": "y",
              "cached_at": "20", "expires_on": "100"},
        "c": {"home_account_id": "u.t", "secret": "s3", "client_id": CID, "target": "z",
              "cached_at": "30", "expires_on": "100"}
    }});
    let p = Partition::parse(blob.to_string().as_bytes()).unwrap();
    assert_eq!(p.app_account_form(), Some(AppAccountForm::Empty));
    let mut blob = blob;
    blob["AccessToken"]["a"]["cached_at"] = json!("25");
    let p = Partition::parse(blob.to_string().as_bytes()).unwrap();
    assert_eq!(p.app_account_form(), Some(AppAccountForm::Null));
    // no access token: the refresh token's
    let p = Partition::parse(account_less_blob(None).as_bytes()).unwrap();
    let mut p2 = p.clone();
    p2.remove_expired_access_tokens(i64::MAX);
    assert_eq!(p2.access_tokens().count(), 0);
    assert_eq!(p2.app_account_form(), Some(AppAccountForm::Omitted));
}

/// The scope masks that let lookups pass over tokens are computed once and dropped by
/// every change: a token added or changed after a lookup is found by the next one, and
/// scopes still compare case-insensitively.
#[test]
fn scope_masks_follow_changes_of_the_section() {
    let token = |target: &str| AccessToken {
        home_account_id: String::new(),
        home_account_id_form: AppAccountForm::Empty,
        environment: ENV.into(),
        client_id: CID.into(),
        credential_type: CREDENTIAL_ACCESS_TOKEN.into(),
        realm: TID.into(),
        target: target.into(),
        secret: Secret::new(format!("secret for {target}")),
        cached_at: NOW,
        expires_on: NOW + 3600,
        extended_expires_on: None,
        refresh_on: None,
        token_type: None,
        key_id: None,
        user_assertion_hash: None,
        written_at_ms: None,
        written_seq: None,
        extra: Extra::default(),
    };
    let mut p = Partition::new();
    p.insert_access_token(token("api://a/Read"));
    let find = |p: &Partition, scope: &str| {
        let scopes = [scope];
        p.find_access_token(&AccessTokenQuery::new(CID, &scopes), NOW)
            .map(|at| at.target.clone())
    };
    assert_eq!(find(&p, "API://A/read").as_deref(), Some("api://a/Read"));
    assert_eq!(find(&p, "api://b/Read"), None);
    p.insert_access_token(token("openid api://b/Read"));
    assert_eq!(
        find(&p, "api://B/READ").as_deref(),
        Some("openid api://b/Read")
    );
    assert_eq!(p.remove_expired_access_tokens(NOW + 7200), 2);
    assert_eq!(find(&p, "api://a/Read"), None);
    let copy = p.clone();
    assert_eq!(copy, p, "equal whether or not masks were computed");
}
