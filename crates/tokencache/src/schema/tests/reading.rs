//! Reading what others wrote: token responses and MSAL Python's and msal-node's blobs,
//! leniently where MSAL is lenient, with typed errors where a blob is broken.

use super::*;

#[test]
fn token_response_parsing_is_lenient_and_typed() {
    let r = TokenResponse::from_json(
        br#"{"access_token":"x","expires_in":"3600","refresh_in":1800.0,"foci":1,"scope":"a b","correlation_id":"c"}"#,
    )
    .unwrap();
    assert_eq!(r.expires_in, Some(3600));
    assert_eq!(r.refresh_in, Some(1800));
    assert_eq!(r.foci.as_deref(), Some("1"));
    assert_eq!(r.extra.get("correlation_id"), Some(&json!("c")));
    let serde_way: TokenResponse = serde_json::from_str(r#"{"access_token":"x"}"#).unwrap();
    assert_eq!(serde_way.access_token, Some(Secret::new("x")));

    let err = TokenResponse::from_json(br#"{"access_token":"x","expires_in":"soon"}"#).unwrap_err();
    match &err {
        SchemaError::WrongType { path, line, .. } => {
            assert_eq!(path, "token_response.expires_in");
            assert_eq!(*line, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = TokenResponse::from_json(br#"{"access_token":12345678}"#).unwrap_err();
    assert!(!err.to_string().contains("12345678"));
    assert!(matches!(
        TokenResponse::from_json(b"[1]"),
        Err(SchemaError::WrongType { .. })
    ));
    assert!(matches!(
        TokenResponse::from_json(b"{\"a\":"),
        Err(SchemaError::Truncated { .. })
    ));
}

/// A cache written by msal-node 7 (its `Serializer` output, abbreviated): trailing `-`
/// in keys, `userAssertionHash`, `key_id`, `tenantProfiles`.
const MSAL_NODE_BLOB: &str = r#"{
  "Account": {
    "uid.utid-login.microsoftonline.com-utid": {
      "home_account_id": "uid.utid", "environment": "login.microsoftonline.com",
      "realm": "utid", "local_account_id": "oid-1", "username": "ada@contoso.example",
      "authority_type": "MSSTS", "name": "Ada", "client_info": "eyJ1aWQiOiJ1aWQiLCJ1dGlkIjoidXRpZCJ9",
      "tenantProfiles": ["{\"tenantId\":\"utid\",\"localAccountId\":\"oid-1\",\"isHomeTenant\":true}"]
    }
  },
  "IdToken": {
    "uid.utid-login.microsoftonline.com-idtoken-cid-utid---": {
      "home_account_id": "uid.utid", "environment": "login.microsoftonline.com",
      "credential_type": "IdToken", "client_id": "cid", "secret": "fake.id.token", "realm": "utid"
    }
  },
  "AccessToken": {
    "uid.utid-login.microsoftonline.com-accesstoken-cid-utid-user.read mail.read-": {
      "home_account_id": "uid.utid", "environment": "login.microsoftonline.com",
      "credential_type": "AccessToken", "client_id": "cid", "secret": "fake-node-at",
      "realm": "utid", "target": "user.read mail.read", "cached_at": "1700000000",
      "expires_on": "1700003600", "extended_expires_on": "1700007200",
      "token_type": "Bearer"
    },
    "-login.microsoftonline.com-accesstoken-cid-utid-api://x/.default-": {
      "home_account_id": "", "environment": "login.microsoftonline.com",
      "credential_type": "AccessToken", "client_id": "cid", "secret": "fake-node-obo",
      "realm": "utid", "target": "api://x/.default", "cached_at": "1700000000",
      "expires_on": "1700003600", "extended_expires_on": "1700003600",
      "token_type": "Bearer", "userAssertionHash": "hash-1"
    },
    "uid.utid-login.microsoftonline.com-accesstoken_with_authscheme-cid-utid-user.read-ssh-cert": {
      "home_account_id": "uid.utid", "environment": "login.microsoftonline.com",
      "credential_type": "AccessToken_With_AuthScheme", "client_id": "cid", "secret": "fake-ssh",
      "realm": "utid", "target": "user.read", "cached_at": "1700000000",
      "expires_on": "1700003600", "token_type": "ssh-cert", "key_id": "kid-1"
    }
  },
  "RefreshToken": {
    "uid.utid-login.microsoftonline.com-refreshtoken-cid----": {
      "home_account_id": "uid.utid", "environment": "login.microsoftonline.com",
      "credential_type": "RefreshToken", "client_id": "cid", "secret": "fake-node-rt"
    }
  },
  "AppMetadata": {
    "appmetadata-login.microsoftonline.com-cid": {
      "client_id": "cid", "environment": "login.microsoftonline.com"
    }
  }
}"#;

#[test]
fn reads_msal_node_blobs() {
    let p = Partition::parse(MSAL_NODE_BLOB.as_bytes()).unwrap();
    assert_eq!(p.access_tokens().count(), 3);
    let at = p
        .find_access_token(
            &AccessTokenQuery {
                home_account_id: Some("UID.UTID"),
                realm: Some("utid"),
                ..AccessTokenQuery::new("cid", &["Mail.Read"])
            },
            NOW,
        )
        .unwrap();
    assert_eq!(at.secret.expose(), "fake-node-at");
    assert_eq!(at.token_type, None, "Bearer normalizes to None");
    assert_eq!(at.extended_expires_on, Some(1_700_007_200));

    let obo = p
        .find_access_token(
            &AccessTokenQuery {
                user_assertion_hash: Some("hash-1"),
                ..AccessTokenQuery::new("cid", &["api://x/.default"])
            },
            NOW,
        )
        .unwrap();
    assert_eq!(obo.secret.expose(), "fake-node-obo");

    let ssh = p
        .access_tokens()
        .find(|t| t.token_type.as_deref() == Some("ssh-cert"))
        .unwrap();
    assert_eq!(ssh.key_id.as_deref(), Some("kid-1"));
    let ssh_q = AccessTokenQuery {
        home_account_id: Some("uid.utid"),
        token_type: Some("SSH-CERT"),
        key_id: Some("kid-1"),
        ..AccessTokenQuery::new("cid", &["user.read"])
    };
    assert_eq!(
        p.find_access_token(&ssh_q, NOW).unwrap().secret.expose(),
        "fake-ssh"
    );

    assert!(p
        .find_refresh_token(&RefreshTokenQuery::new("cid", "uid.utid"))
        .is_some());
    let acc = p.find_account("uid.utid").unwrap();
    assert!(acc.extra.contains_key("tenantProfiles"));
    assert!(p.find_id_token("cid", "uid.utid", Some("utid")).is_some());

    // Re-written the MSAL.NET way, keys as read, aliases normalized, extras kept.
    let text = String::from_utf8(p.to_vec()).unwrap();
    assert!(text.contains(r#""user_assertion_hash":"hash-1""#));
    assert!(
        text.contains(r#""userAssertionHash":"hash-1""#),
        "msal-node's spelling is written too"
    );
    assert_eq!(text.matches("hash-1").count(), 2, "each spelling once");
    assert!(text.contains(r#""kid":"kid-1""#));
    assert!(text.contains("tenantProfiles"));
    assert!(
        text.contains("-utid-user.read mail.read-\""),
        "keys kept as read"
    );
    assert_eq!(Partition::parse(text.as_bytes()).unwrap(), p);
}

/// A cache written by MSAL Python 1.x (`json.dumps(indent=4)`): `home_account_id: null`
/// for app tokens, `token_type: "Bearer"`, Python's RT key with a target.
const MSAL_PYTHON_BLOB: &str = r#"{
    "AccessToken": {
        "-login.microsoftonline.com-accesstoken-cid-tid-https://graph.microsoft.com/.default": {
            "credential_type": "AccessToken",
            "secret": "fake-py-app-at",
            "home_account_id": null,
            "environment": "login.microsoftonline.com",
            "client_id": "cid",
            "target": "https://graph.microsoft.com/.default",
            "realm": "tid",
            "token_type": "Bearer",
            "cached_at": "1700000000",
            "expires_on": "1700003599",
            "extended_expires_on": "1700003599"
        }
    },
    "RefreshToken": {
        "uid.utid-login.microsoftonline.com-refreshtoken-cid--openid profile user.read": {
            "credential_type": "RefreshToken",
            "secret": "fake-py-rt",
            "home_account_id": "uid.utid",
            "environment": "login.microsoftonline.com",
            "client_id": "cid",
            "target": "openid profile User.Read",
            "last_modification_time": "1700000100",
            "family_id": "1"
        }
    },
    "AppMetadata": {
        "appmetadata-login.microsoftonline.com-cid": {
            "client_id": "cid",
            "environment": "login.microsoftonline.com",
            "family_id": "1"
        }
    }
}"#;

#[test]
fn reads_msal_python_blobs() {
    let p = Partition::parse(MSAL_PYTHON_BLOB.as_bytes()).unwrap();
    let at = p
        .find_access_token(
            &AccessTokenQuery {
                realm: Some("tid"),
                ..AccessTokenQuery::new("cid", &["https://graph.microsoft.com/.default"])
            },
            NOW,
        )
        .unwrap();
    assert_eq!(at.secret.expose(), "fake-py-app-at");
    assert_eq!(at.home_account_id, "");
    let rt = p
        .find_refresh_token(&RefreshTokenQuery {
            family_id: Some("1"),
            ..RefreshTokenQuery::new("other-client", "uid.utid")
        })
        .unwrap();
    assert_eq!(rt.secret.expose(), "fake-py-rt");
    assert_eq!(p.last_cached_at(), Some(1_700_000_100));
    assert_eq!(p.latest_access_token_expiry(), Some(1_700_003_599));
}

#[test]
fn unknown_fields_and_sections_survive() {
    let blob = br#"{"AccessToken":{"k":{"secret":"s","expires_on":5,"cached_at":"1","ext_cache_key":"abc","nested":{"a":[1,2,{"b":null}]},"persisted_cache_parameters":{"x":"y"}}},"Telemetry":{"anything":[true,1.5]},"AppMetadata":null}"#;
    let p = Partition::parse(blob).unwrap();
    let at = p.access_tokens().next().unwrap();
    assert_eq!(at.expires_on, 5);
    assert_eq!(at.extra.get("nested"), Some(&json!({"a":[1,2,{"b":null}]})));
    assert_eq!(
        p.unknown_sections().get("Telemetry"),
        Some(&json!({"anything":[true,1.5]}))
    );
    let out = p.to_vec();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["Telemetry"], json!({"anything":[true,1.5]}));
    assert_eq!(v["AccessToken"]["k"]["ext_cache_key"], json!("abc"));
    assert_eq!(v["AccessToken"]["k"]["expires_on"], json!("5"));
    assert_eq!(Partition::parse(&out).unwrap(), p);
    // Extended-key tokens are not served to plain queries.
    let q = AccessTokenQuery {
        skew_secs: 0,
        ..AccessTokenQuery::new("", &[])
    };
    assert!(p.find_access_token(&q, 0).is_none());
}

#[test]
fn empty_inputs_are_empty_partitions() {
    for input in [&b""[..], b"{}", b"  \n", b"\xef\xbb\xbf{}"] {
        let p = Partition::parse(input).unwrap();
        assert!(p.is_empty());
        assert!(!p.has_credentials());
    }
    assert_eq!(
        Partition::new().to_vec(),
        br#"{"AccessToken":{},"RefreshToken":{},"IdToken":{},"Account":{},"AppMetadata":{}}"#
    );
}

#[test]
fn bad_blobs_are_typed_errors() {
    match Partition::parse(b"{\"AccessToken\": x}") {
        Err(SchemaError::NotJson {
            line: 1, column, ..
        }) => assert!(column > 0),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        Partition::parse(br#"{"AccessToken":{"k":{"secret":"#),
        Err(SchemaError::Truncated { .. })
    ));
    assert!(matches!(
        Partition::parse(b"{\"a\":\"\xff\"}"),
        Err(SchemaError::NotUtf8 { valid_up_to: 6 })
    ));
    assert!(matches!(
        Partition::parse(b"{} {}"),
        Err(SchemaError::NotJson { .. })
    ));
    let huge = vec![b' '; MAX_BLOB_BYTES + 1];
    assert!(matches!(
        Partition::parse(&huge),
        Err(SchemaError::TooLarge { .. })
    ));

    let err =
        Partition::parse(br#"{"AccessToken":{"my-key":{"secret":"TOPSECRET","expires_on":true}}}"#)
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "AccessToken.my-key.expires_on: expected string of seconds (line 1 column 65)"
    );
    let err = Partition::parse(br#"{"AccessToken":{"k":{"secret":"s","expires_on":"TOPSECRET"}}}"#)
        .unwrap_err();
    assert!(matches!(err, SchemaError::WrongType { .. }));
    assert!(!err.to_string().contains("TOPSECRET"));
    let err = Partition::parse(br#"{"RefreshToken":{"k":{"secret":12345}}}"#).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("RefreshToken.k.secret: expected string"));
    let err = Partition::parse(br#"{"IdToken":{"k":"TOPSECRET"}}"#).unwrap_err();
    assert!(err.to_string().starts_with("IdToken.k: expected object"));
    assert!(!err.to_string().contains("TOPSECRET"));
    let err = Partition::parse(br#"{"Account":["TOPSECRET"]}"#).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("Account: expected object of records"));
    let err = Partition::parse(br#""TOPSECRET""#).unwrap_err();
    assert!(!err.to_string().contains("TOPSECRET"));
    assert!(matches!(err, SchemaError::WrongType { .. }));
    let err = Partition::parse(br#"{"AccessToken":{"k":{"expires_on":"1"}}}"#).unwrap_err();
    assert_eq!(err.to_string(), "AccessToken.k: missing field `secret`");
    let err = Partition::parse(br#"{"AccessToken":{"k":{"secret":"s"}}}"#).unwrap_err();
    assert!(matches!(
        err,
        SchemaError::MissingField {
            field: "expires_on",
            ..
        }
    ));
    // Control characters in keys cannot break the one-line message.
    let err = Partition::parse(br#"{"IdToken":{"a\nb":1}}"#).unwrap_err();
    assert!(!err.to_string().contains('\n'));
    // Deep nesting in unknown fields is an error, not a stack overflow.
    let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        Partition::parse(deep.as_bytes()),
        Err(SchemaError::NotJson { .. })
    ));
}

#[test]
fn timestamps_are_read_leniently() {
    let p = Partition::parse(
        br#"{"AccessToken":{"k":{"secret":"s","cached_at":1700000000,"expires_on":"1700003600.0","extended_expires_on":"","refresh_on":null,"ext_expires_on":"1700007200"}}}"#,
    )
    .unwrap();
    let at = p.access_tokens().next().unwrap();
    assert_eq!(at.cached_at, 1_700_000_000);
    assert_eq!(at.expires_on, 1_700_003_600);
    assert_eq!(
        at.extended_expires_on,
        Some(1_700_007_200),
        "legacy ext_expires_on"
    );
    assert_eq!(at.refresh_on, None);
    assert_eq!(at.credential_type, "AccessToken");
    assert!(
        Partition::parse(br#"{"AccessToken":{"k":{"secret":"s","expires_on":1e300}}}"#).is_err()
    );
}
