//! An access token written under a second name of its tenant
//! ([`Partition::mirror_access_token`]): an Entra tenant named by its domain, which
//! MSAL.NET writes as the realm where MSAL Python writes the tenant id.

use super::*;

const DOMAIN: &str = "contoso.onmicrosoft.com";

fn realm_query<'a>(h: &'a str, scopes: &'a [&'a str], realm: &'a str) -> AccessTokenQuery<'a> {
    AccessTokenQuery {
        realm: Some(realm),
        ..user_query(h, scopes)
    }
}

#[test]
fn a_mirrored_token_is_found_under_either_realm_and_nothing_else_is_copied() {
    let mut p = Partition::new();
    let h = hid();
    let added = p
        .add_token_response(&req(&[]), &user_response("at-1", "User.Read"), NOW)
        .unwrap();
    let key = added.access_token_key.unwrap();
    let copy = p.mirror_access_token(&key, DOMAIN).expect("written");
    assert_ne!(copy, key, "its own key: the realm is part of it");
    assert!(copy.ends_with(&format!("-{DOMAIN}-user.read")), "{copy}");
    for realm in [TID, DOMAIN] {
        let found = p.find_access_token(&realm_query(&h, &["User.Read"], realm), NOW);
        assert_eq!(found.unwrap().secret.expose(), "at-1", "{realm}");
    }
    assert!(p
        .find_access_token(&realm_query(&h, &["User.Read"], "fabrikam.example"), NOW)
        .is_none());
    // the same token, times and all; id token and account stay one record each
    let ats: Vec<&AccessToken> = p.access_tokens().collect();
    assert_eq!(ats.len(), 2);
    assert_eq!(ats[0].expires_on, ats[1].expires_on);
    assert_eq!(ats[0].written_at_ms, ats[1].written_at_ms);
    assert_eq!(p.id_tokens().count(), 1);
    assert_eq!(p.accounts().count(), 1);
    // the blob round-trips with both
    let again = Partition::parse(&p.to_vec()).unwrap();
    assert_eq!(again.access_tokens().count(), 2);
}

#[test]
fn a_mirror_replaces_what_overlaps_in_its_realm_only() {
    let mut p = Partition::new();
    let h = hid();
    // what MSAL.NET wrote: realm = the domain, one token overlapping, one not
    let net = TokenRequest {
        realm: DOMAIN,
        ..req(&[])
    };
    let mut resp = user_response("net-overlapping", "User.Read Mail.Read");
    resp.id_token = None;
    p.add_token_response(&net, &resp, NOW - 10).unwrap();
    let mut resp = user_response("net-other", "Files.Read");
    resp.id_token = None;
    p.add_token_response(&net, &resp, NOW - 10).unwrap();
    let added = p
        .add_token_response(&req(&[]), &user_response("at-new", "User.Read"), NOW)
        .unwrap();
    p.mirror_access_token(&added.access_token_key.unwrap(), DOMAIN)
        .unwrap();
    let mut secrets: Vec<(&str, &str)> = p
        .access_tokens()
        .map(|t| (t.realm.as_str(), t.secret.expose()))
        .collect();
    secrets.sort();
    assert_eq!(
        secrets,
        [(TID, "at-new"), (DOMAIN, "at-new"), (DOMAIN, "net-other")]
    );
    let mail = p.find_access_token(&realm_query(&h, &["Mail.Read"], DOMAIN), NOW);
    assert!(mail.is_none(), "the overlapping token was replaced");
}

#[test]
fn nothing_is_mirrored_into_its_own_realm_or_from_a_missing_key() {
    let mut p = Partition::new();
    let added = p
        .add_token_response(&req(&[]), &user_response("at-1", "User.Read"), NOW)
        .unwrap();
    let key = added.access_token_key.unwrap();
    assert_eq!(p.mirror_access_token(&key, TID), None);
    assert_eq!(p.mirror_access_token(&key, &TID.to_uppercase()), None);
    assert_eq!(p.mirror_access_token("no-such-key", DOMAIN), None);
    assert_eq!(p.access_tokens().count(), 1);
}
