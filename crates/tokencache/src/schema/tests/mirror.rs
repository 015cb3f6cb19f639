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

#[test]
fn a_token_and_its_copy_are_one_tenant_to_a_lookup_that_names_none() {
    let mut p = Partition::new();
    let h = hid();
    let added = p
        .add_token_response(&req(&[]), &user_response("at-1", "User.Read"), NOW)
        .unwrap();
    p.mirror_access_token(&added.access_token_key.unwrap(), DOMAIN)
        .unwrap();
    // no realm named (discovery could not run): the two records are one token
    let q = user_query(&h, &["User.Read"]);
    let found = p.find_access_token_in_one_authority(&q, NOW, false, true, true);
    assert_eq!(found.unwrap().unwrap().secret.expose(), "at-1");
    // another tenant's token of the same scopes is still another tenant
    let guest = TokenRequest {
        realm: "11111111-2222-3333-4444-555555555555",
        ..req(&[])
    };
    let mut resp = user_response("at-guest", "User.Read");
    resp.id_token = None;
    p.add_token_response(&guest, &resp, NOW).unwrap();
    let found = p.find_access_token_in_one_authority(&q, NOW, false, true, true);
    assert_eq!(found.unwrap_err(), Ambiguous::Tenant);
}

#[test]
fn a_query_with_an_alias_finds_either_realm_and_the_token_expiring_last() {
    let mut p = Partition::new();
    let h = hid();
    p.add_token_response(&req(&[]), &user_response("at-tid", "User.Read"), NOW)
        .unwrap();
    // MSAL.NET refreshed it later, under the domain only
    let net = TokenRequest {
        realm: DOMAIN,
        ..req(&[])
    };
    let mut resp = user_response("at-net-newer", "User.Read");
    resp.id_token = None;
    p.add_token_response(&net, &resp, NOW + 600).unwrap();
    let q = AccessTokenQuery {
        realm_alias: Some(DOMAIN),
        ..realm_query(&h, &["User.Read"], TID)
    };
    let found = p.find_access_token(&q, NOW + 601).unwrap();
    assert_eq!(found.secret.expose(), "at-net-newer");
    // without the alias, only the tenant id's
    let plain = realm_query(&h, &["User.Read"], TID);
    assert_eq!(
        p.find_access_token(&plain, NOW + 601)
            .unwrap()
            .secret
            .expose(),
        "at-tid"
    );
    // an alias is no wildcard: a third realm is not matched
    let other = AccessTokenQuery {
        realm_alias: Some("fabrikam.onmicrosoft.com"),
        ..realm_query(&h, &["User.Read"], "11111111-2222-3333-4444-555555555555")
    };
    assert!(p.find_access_token(&other, NOW + 601).is_none());
}

#[test]
fn the_copy_replaces_nothing_of_another_user_client_or_extended_key() {
    let mut p = Partition::new();
    let net = |client: &'static str| TokenRequest {
        client_id: client,
        realm: DOMAIN,
        ..req(&[])
    };
    // under the domain: another user's, another client's, and an MSAL.NET token with
    // additional cache key components, all overlapping the new one (OBO tokens live in
    // partitions of their own, keyed by the assertion)
    let mut other_user = user_response("other-user", "User.Read");
    other_user.id_token = None;
    other_user.client_info = Some(client_info("someone-else", TID));
    p.add_token_response(&net(CID), &other_user, NOW).unwrap();
    let mut other_client = user_response("other-client", "User.Read");
    other_client.id_token = None;
    p.add_token_response(&net(CID2), &other_client, NOW)
        .unwrap();
    let mut ext_resp = user_response("extended", "User.Read Mail.Read");
    ext_resp.id_token = None;
    let ext = p.add_token_response(&net(CID), &ext_resp, NOW).unwrap();
    let ext_key = ext.access_token_key.unwrap();
    p.access_tokens
        .get_mut(&ext_key)
        .unwrap()
        .extra
        .0
        .insert("ext_cache_key".into(), json!("abc"));

    let added = p
        .add_token_response(&req(&[]), &user_response("at-new", "User.Read"), NOW + 1)
        .unwrap();
    p.mirror_access_token(&added.access_token_key.unwrap(), DOMAIN)
        .unwrap();
    let mut secrets: Vec<&str> = p.access_tokens().map(|t| t.secret.expose()).collect();
    secrets.sort_unstable();
    assert_eq!(
        secrets,
        ["at-new", "at-new", "extended", "other-client", "other-user"]
    );
}
