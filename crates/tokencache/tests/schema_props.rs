//! Property tests of the MSAL V3 blob parser: no input panics it, and every partition
//! survives a serialize → parse round trip unchanged.

use proptest::prelude::*;
use serde_json::{Map, Value};
use tokencache::schema::{
    AccessToken, Account, AppAccountForm, AppMetadata, Extra, IdToken, Partition, RefreshToken,
    Secret,
};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 ._:/-]{0,24}",
        1 => any::<String>(),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

/// JSON values without floats (serde_json's default float parsing is best-effort).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-z]{1,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Unknown fields: names that no record type knows (all start with `x_`).
fn extra() -> impl Strategy<Value = Extra> {
    proptest::collection::vec(("x_[a-zA-Z_]{0,8}", json_value()), 0..3)
        .prop_map(|kv| Extra(kv.into_iter().collect()))
}

fn form() -> impl Strategy<Value = AppAccountForm> {
    prop_oneof![
        Just(AppAccountForm::Null),
        Just(AppAccountForm::Empty),
        Just(AppAccountForm::Omitted),
    ]
}

/// The form of a generated `home_account_id`: any while it is empty; the default (which
/// is what a non-empty id reads back as) otherwise.
fn form_of(home_account_id: &str, form: AppAccountForm) -> AppAccountForm {
    if home_account_id.is_empty() {
        form
    } else {
        AppAccountForm::default()
    }
}

fn token_type() -> impl Strategy<Value = Option<String>> {
    // `None` is Bearer; a literal "Bearer" would (by design) read back as `None`.
    proptest::option::of(prop_oneof![
        Just("pop".to_owned()),
        Just("ssh-cert".to_owned()),
        "[a-z]{1,8}".prop_filter("not bearer", |s| !s.eq_ignore_ascii_case("bearer")),
    ])
}

prop_compose! {
    fn access_token()(
        hid_form in form(),
        ids in (text(), text(), text(), text(), text(), text()),
        secret in any::<String>(),
        times in (any::<i64>(), any::<i64>(), any::<Option<i64>>(), any::<Option<i64>>()),
        token_type in token_type(),
        key_id in opt_text(),
        uah in opt_text(),
        written in any::<Option<(i64, Option<u64>)>>(),
        extra in extra(),
    ) -> AccessToken {
        AccessToken {
            home_account_id_form: form_of(&ids.0, hid_form),
            home_account_id: ids.0,
            environment: ids.1,
            client_id: ids.2,
            credential_type: ids.3,
            realm: ids.4,
            target: ids.5,
            secret: Secret::new(secret),
            cached_at: times.0,
            expires_on: times.1,
            extended_expires_on: times.2,
            refresh_on: times.3,
            token_type,
            key_id,
            user_assertion_hash: uah,
            written_at_ms: written.map(|w| w.0),
            written_seq: written.and_then(|w| w.1),
            extra,
        }
    }
}

prop_compose! {
    fn refresh_token()(
        hid_form in form(),
        ids in (text(), text(), text()),
        secret in any::<String>(),
        family_id in opt_text(),
        target in opt_text(),
        uah in opt_text(),
        lmt in any::<Option<i64>>(),
        written in any::<Option<(i64, Option<u64>)>>(),
        extra in extra(),
    ) -> RefreshToken {
        RefreshToken {
            home_account_id_form: form_of(&ids.0, hid_form),
            home_account_id: ids.0,
            environment: ids.1,
            client_id: ids.2,
            secret: Secret::new(secret),
            family_id,
            target,
            user_assertion_hash: uah,
            last_modification_time: lmt,
            written_at_ms: written.map(|w| w.0),
            written_seq: written.and_then(|w| w.1),
            extra,
        }
    }
}

prop_compose! {
    fn id_token()(
        hid_form in form(),
        ids in (text(), text(), text(), text()),
        secret in any::<String>(),
        extra in extra(),
    ) -> IdToken {
        IdToken {
            home_account_id_form: form_of(&ids.0, hid_form),
            home_account_id: ids.0,
            environment: ids.1,
            client_id: ids.2,
            realm: ids.3,
            secret: Secret::new(secret),
            extra,
        }
    }
}

prop_compose! {
    fn account()(
        hid_form in form(),
        ids in (text(), text(), text(), text(), text(), text()),
        name in opt_text(),
        client_info in opt_text(),
        extra in extra(),
    ) -> Account {
        Account {
            home_account_id_form: form_of(&ids.0, hid_form),
            home_account_id: ids.0,
            environment: ids.1,
            realm: ids.2,
            local_account_id: ids.3,
            username: ids.4,
            authority_type: ids.5,
            name,
            client_info,
            extra,
        }
    }
}

prop_compose! {
    fn app_metadata()(ids in (text(), text()), family_id in opt_text(), extra in extra()) -> AppMetadata {
        AppMetadata { client_id: ids.0, environment: ids.1, family_id, extra }
    }
}

prop_compose! {
    fn partition()(
        ats in proptest::collection::vec(access_token(), 0..5),
        rts in proptest::collection::vec(refresh_token(), 0..3),
        idts in proptest::collection::vec(id_token(), 0..3),
        accs in proptest::collection::vec(account(), 0..3),
        metas in proptest::collection::vec(app_metadata(), 0..3),
    ) -> Partition {
        let mut p = Partition::new();
        for r in ats { p.insert_access_token(r); }
        for r in rts { p.insert_refresh_token(r); }
        for r in idts { p.insert_id_token(r); }
        for r in accs { p.insert_account(r); }
        for r in metas { p.insert_app_metadata(r); }
        p
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    Splice(usize, &'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "null", "{", "}", "[", "]", "\"", ",", ":", "1e999", "-", "\\u0000", "\\ud800",
                "true", "{}", "[]", "\"\"", "0", "\"x\":", "\u{7f}",
            ])
        )
            .prop_map(|(i, s)| Mutation::Splice(i, s)),
    ]
}

fn apply(blob: &mut Vec<u8>, m: &Mutation) {
    let n = blob.len().max(1);
    match *m {
        Mutation::Flip(i, b) => {
            if !blob.is_empty() {
                blob[i % n] ^= b | 1;
            }
        }
        Mutation::Insert(i, b) => blob.insert(i % (blob.len() + 1), b),
        Mutation::Delete(i) => {
            if !blob.is_empty() {
                blob.remove(i % n);
            }
        }
        Mutation::Truncate(i) => blob.truncate(i % n),
        Mutation::Splice(i, s) => {
            let at = i % (blob.len() + 1);
            blob.splice(at..at, s.bytes());
        }
    }
}

const NODE_STYLE: &str = r#"{"Account":{"u.t-login.microsoftonline.com-t":{"home_account_id":"u.t","environment":"login.microsoftonline.com","realm":"t","local_account_id":"u","username":"a@b.c","authority_type":"MSSTS","tenantProfiles":["{}"]}},"AccessToken":{"u.t-login.microsoftonline.com-accesstoken-c-t-user.read-":{"home_account_id":"u.t","environment":"login.microsoftonline.com","credential_type":"AccessToken","client_id":"c","secret":"fake","realm":"t","target":"user.read","cached_at":"1","expires_on":"2","extended_expires_on":"3","token_type":"Bearer","userAssertionHash":"h"}},"RefreshToken":{"k":{"home_account_id":"u.t","environment":"e","credential_type":"RefreshToken","client_id":"c","secret":"fake-rt","family_id":"1"}},"IdToken":{},"AppMetadata":{"appmetadata-e-c":{"client_id":"c","environment":"e"}},"Other":{"x":[1,2]}}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Partition::parse(&bytes);
    }

    #[test]
    fn arbitrary_json_text_never_panics(v in json_value()) {
        let text = serde_json::to_vec(&v).unwrap();
        let _ = Partition::parse(&text);
        let wrapped = serde_json::to_vec(&serde_json::json!({"AccessToken": {"k": v}})).unwrap();
        let _ = Partition::parse(&wrapped);
    }

    #[test]
    fn generated_partitions_round_trip(p in partition(), unknown in proptest::collection::vec(("[A-Z][a-z]{0,6}", json_value()), 0..3)) {
        let blob = p.to_vec();
        let back = Partition::parse(&blob).unwrap();
        prop_assert_eq!(&back, &p);
        prop_assert_eq!(back.to_vec(), blob.clone());

        // Unknown top-level sections survive too.
        let mut v: Value = serde_json::from_slice(&blob).unwrap();
        let obj = v.as_object_mut().unwrap();
        for (k, val) in unknown {
            if !["AccessToken", "RefreshToken", "IdToken", "Account", "AppMetadata"].contains(&k.as_str()) {
                obj.insert(k, val);
            }
        }
        let with_unknown = Partition::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
        let again = Partition::parse(&with_unknown.to_vec()).unwrap();
        prop_assert_eq!(&again, &with_unknown);
        let v2: Value = serde_json::from_slice(&with_unknown.to_vec()).unwrap();
        prop_assert_eq!(v2, v);
    }

    #[test]
    fn mutated_blobs_never_panic(p in partition(), muts in proptest::collection::vec(mutation(), 1..6), use_fixture in any::<bool>()) {
        let mut blob = if use_fixture { NODE_STYLE.as_bytes().to_vec() } else { p.to_vec() };
        for m in &muts {
            apply(&mut blob, m);
        }
        if let Ok(q) = Partition::parse(&blob) {
            // Whatever parses re-serializes to a blob that parses to the same records.
            let out = q.to_vec();
            let q2 = Partition::parse(&out).expect("re-serialized blob parses");
            prop_assert_eq!(q2.len(), q.len());
            prop_assert_eq!(q2.to_vec(), out);
        }
    }

    /// A deferred parse is the eager one, decoded later: the same records and the same
    /// bytes out whenever the eager parse succeeds; when it fails, the deferred one
    /// fails too, or succeeds only with a section it could not decode (reported, and
    /// written back verbatim).
    #[test]
    fn deferred_parse_is_the_eager_parse_later(p in partition(), muts in proptest::collection::vec(mutation(), 0..4)) {
        let mut blob = p.to_vec();
        for m in &muts {
            apply(&mut blob, m);
        }
        match (Partition::parse(&blob), Partition::parse_deferred(&blob)) {
            (Ok(eager), Ok(deferred)) => {
                prop_assert!(deferred.deferred_error().is_none());
                prop_assert_eq!(deferred.to_vec(), eager.to_vec());
                prop_assert_eq!(&deferred, &eager);
            }
            (Ok(_), Err(e)) => prop_assert!(false, "only the deferred parse failed: {e}"),
            (Err(_), Ok(deferred)) => prop_assert!(deferred.deferred_error().is_some()),
            (Err(_), Err(_)) => {}
        }
    }
}

#[test]
fn fixture_parses_and_round_trips() {
    let p = Partition::parse(NODE_STYLE.as_bytes()).unwrap();
    assert_eq!(p.len(), 4);
    assert_eq!(Partition::parse(&p.to_vec()).unwrap(), p);
}
