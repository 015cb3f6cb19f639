//! How `tokencache serve` answers what the provider says against the real
//! oidc-provider: a provider whose discovery document names another issuer is a
//! permanent misconfiguration — 502 `provider_misconfigured`, no `Retry-After`, logged
//! once however many requests hit it; a provider that asks for quiet (429 with
//! `Retry-After`) has its delay passed on, and is left alone for that long: callers
//! retrying meanwhile get the same answer without a request reaching it.

mod common;

use common::{assert_error, config, fault, openapi, provider_stats, request, Serve, HEADER_ROUTE};
use testkit::{OidcOptions, OidcProvider};

fn arrived_token_requests(op: &OidcProvider) -> u64 {
    provider_stats(op)["arrived"]["token"].as_u64().unwrap_or(0)
}

#[test]
fn an_issuer_that_is_not_the_authority_is_502_provider_misconfigured_logged_once() {
    let spec = openapi();
    // discovery at 127.0.0.1 (the configured authority), the document's issuer localhost
    let op = OidcProvider::start_with(&OidcOptions {
        issuer_host: Some("localhost".into()),
        ..OidcOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &op, "memory://", "");
    let s = Serve::start(&cfg, &[]);
    for _ in 0..3 {
        let a = request(&s.addr, "GET", "/v1/authorization-header/orders", &[], None);
        assert_error(
            &spec,
            HEADER_ROUTE,
            "get",
            &a,
            502,
            "provider_misconfigured",
        );
        assert_eq!(a.header("retry-after"), None, "permanent: no Retry-After");
        let d = a.json()["error_description"].as_str().unwrap().to_string();
        assert!(d.contains("localhost"), "the issuer is named: {d}");
    }
    assert_eq!(arrived_token_requests(&op), 0);
    let logs = s.logs();
    let said = logs
        .lines()
        .filter(|l| l.contains("the provider is misconfigured"))
        .count();
    assert_eq!(said, 1, "logged once: {logs}");
}

#[test]
fn a_providers_retry_after_is_passed_on_and_no_request_is_sent_until_it_passed() {
    let spec = openapi();
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &op, "memory://", "");
    let s = Serve::start(&cfg, &[]);
    // longer than the retries wait for (5 s): answered at once, with the provider's delay
    fault(&op, "kind=429&retry_after=30");
    let a = request(&s.addr, "GET", "/v1/authorization-header/orders", &[], None);
    assert_error(
        &spec,
        HEADER_ROUTE,
        "get",
        &a,
        503,
        "temporarily_unavailable",
    );
    let first: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((29..=30).contains(&first), "{first}");
    let sent = arrived_token_requests(&op);
    assert_eq!(sent, 1);
    // callers retrying at once: the same answer, the time left, no request
    for _ in 0..5 {
        let a = request(&s.addr, "GET", "/v1/authorization-header/orders", &[], None);
        assert_error(
            &spec,
            HEADER_ROUTE,
            "get",
            &a,
            503,
            "temporarily_unavailable",
        );
        let left: u64 = a.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=first).contains(&left), "{left}");
    }
    assert_eq!(
        arrived_token_requests(&op),
        sent,
        "the provider was left alone"
    );
}
