//! Id token validation (OpenID Connect Core §3.1.3.7): the signature with a key of the
//! provider's JWKS (the fetcher of [`crate::signout::jwks`], cached, refetched on an
//! unknown `kid`, with negative caching), then `iss`, `aud` (and `azp`), `exp`, `iat`
//! and, for a sign-in, `nonce`.

use serde_json::{Map, Value};

use super::discovery::Provider;
use super::error::AcquireError;
use crate::signout::SUPPORTED_ALGORITHMS;

/// Clock skew allowed on `exp` and `iat`.
const LEEWAY_SECS: i64 = 120;
/// Longest id token accepted.
const MAX_BYTES: usize = 64 * 1024;

/// The claims of a validated id token.
pub(crate) type Claims = Map<String, Value>;

fn part(b64: &str, what: &str) -> Result<Claims, AcquireError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| AcquireError::IdToken(format!("the {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(AcquireError::IdToken(format!(
            "the {what} is not a JSON object"
        ))),
    }
}

/// Validates `token` as an id token of `provider` for `client_id` at `now`; `nonce`, when
/// given, must be the token's.
pub(crate) async fn validate(
    provider: &Provider,
    client_id: &str,
    token: &str,
    nonce: Option<&str>,
    now: i64,
) -> Result<Claims, AcquireError> {
    let bad = |m: &str| AcquireError::IdToken(m.to_string());
    if token.len() > MAX_BYTES {
        return Err(bad("too large"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, sig] = parts[..] else {
        return Err(bad("not a signed JWT (three dot-separated parts)"));
    };
    let header = part(h, "header")?;
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let alg = alg_name
        .parse::<jsonwebtoken::Algorithm>()
        .ok()
        .filter(|a| SUPPORTED_ALGORITHMS.contains(a))
        .ok_or_else(|| AcquireError::IdToken(format!("algorithm {alg_name:?} is not accepted")))?;
    if header.contains_key("crit") {
        return Err(bad("critical header extensions are not supported"));
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let jwks = provider.jwks.as_ref().ok_or_else(|| {
        bad("the provider publishes no jwks_uri: the signature cannot be checked")
    })?;
    let keys = jwks
        .lookup(kid, alg)
        .await
        .map_err(|e| AcquireError::IdToken(format!("the provider's keys: {e}")))?;
    if keys.is_empty() {
        return Err(bad("signed with a key the provider does not publish"));
    }
    let message = &token[..h.len() + 1 + c.len()];
    let verified = keys.iter().any(|k| {
        jsonwebtoken::crypto::verify(sig, message.as_bytes(), &k.key, alg).unwrap_or(false)
    });
    if !verified {
        return Err(bad("bad signature"));
    }
    let claims = part(c, "payload")?;
    check_claims(&claims, &provider.metadata.issuer, client_id, nonce, now)?;
    Ok(claims)
}

/// The claim checks, after the signature.
fn check_claims(
    claims: &Claims,
    issuer: &str,
    client_id: &str,
    nonce: Option<&str>,
    now: i64,
) -> Result<(), AcquireError> {
    let bad = |m: String| AcquireError::IdToken(m);
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    // Entra's multi-tenant document publishes an issuer template: the token's own
    // tenant then fills it.
    let iss_ok = iss == issuer
        || (issuer.contains("{tenantid}")
            && claims
                .get("tid")
                .and_then(Value::as_str)
                .is_some_and(|tid| issuer.replace("{tenantid}", tid) == iss));
    if !iss_ok {
        return Err(bad(format!("issuer {iss:?} is not {issuer:?}")));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&client_id) {
        return Err(bad(format!(
            "audience {audiences:?} does not include this client"
        )));
    }
    if audiences.len() > 1 {
        let azp = claims.get("azp").and_then(Value::as_str);
        if azp != Some(client_id) {
            return Err(bad("several audiences and azp is not this client".into()));
        }
    }
    let date = |k: &str| {
        claims
            .get(k)
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
    };
    let exp = date("exp").ok_or_else(|| bad("no exp".into()))?;
    if exp.saturating_add(LEEWAY_SECS) < now {
        return Err(bad(format!("expired at {exp} (now {now})")));
    }
    let iat = date("iat").ok_or_else(|| bad("no iat".into()))?;
    if iat > now.saturating_add(LEEWAY_SECS) {
        return Err(bad(format!("issued in the future ({iat}, now {now})")));
    }
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(bad("no sub".into()));
    }
    if let Some(want) = nonce {
        let got = claims.get("nonce").and_then(Value::as_str);
        if got != Some(want) {
            return Err(bad("the nonce is not the one this sign-in sent".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acquire::discovery::Authority;

    fn provider() -> Provider {
        let a = Authority::parse("https://op.example/t").unwrap();
        Provider::from_document(
            a,
            br#"{"issuer":"https://op.example/t","token_endpoint":"https://op.example/t/token","jwks_uri":"https://op.example/t/keys"}"#,
        )
        .unwrap()
    }

    fn claims(json: &str) -> Claims {
        match serde_json::from_str(json).unwrap() {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn claims_are_checked_one_by_one() {
        let iss = "https://op.example/t";
        let ok = r#"{"iss":"https://op.example/t","aud":"c","exp":2000,"iat":1000,"sub":"u","nonce":"n"}"#;
        check_claims(&claims(ok), iss, "c", Some("n"), 1500).unwrap();
        let cases = [
            (
                r#"{"iss":"https://evil/t","aud":"c","exp":2000,"iat":1000,"sub":"u","nonce":"n"}"#,
                "issuer",
            ),
            (
                r#"{"iss":"https://op.example/t","aud":"d","exp":2000,"iat":1000,"sub":"u","nonce":"n"}"#,
                "audience",
            ),
            (
                r#"{"iss":"https://op.example/t","aud":["c","d"],"exp":2000,"iat":1000,"sub":"u","nonce":"n"}"#,
                "azp",
            ),
            (
                r#"{"iss":"https://op.example/t","aud":"c","exp":1000,"iat":900,"sub":"u","nonce":"n"}"#,
                "expired",
            ),
            (
                r#"{"iss":"https://op.example/t","aud":"c","exp":9000,"iat":8000,"sub":"u","nonce":"n"}"#,
                "future",
            ),
            (
                r#"{"iss":"https://op.example/t","aud":"c","exp":2000,"iat":1000,"sub":"u","nonce":"x"}"#,
                "nonce",
            ),
            (
                r#"{"iss":"https://op.example/t","aud":"c","exp":2000,"iat":1000,"nonce":"n"}"#,
                "sub",
            ),
        ];
        for (json, what) in cases {
            let e = check_claims(&claims(json), iss, "c", Some("n"), 1500).unwrap_err();
            assert!(e.to_string().contains(what), "{what}: {e}");
        }
        // no nonce asked (refresh): none checked
        let no_nonce =
            r#"{"iss":"https://op.example/t","aud":"c","exp":2000,"iat":1000,"sub":"u"}"#;
        check_claims(&claims(no_nonce), iss, "c", None, 1500).unwrap();
        // Entra's template
        let t = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let entra = r#"{"iss":"https://login.microsoftonline.com/abc/v2.0","tid":"abc","aud":"c","exp":2000,"iat":1000,"sub":"u"}"#;
        check_claims(&claims(entra), t, "c", None, 1500).unwrap();
    }

    #[tokio::test]
    async fn unsigned_or_garbage_tokens_are_refused_before_any_fetch() {
        let p = provider();
        for t in ["", "a.b", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.", "x.y.z"] {
            assert!(matches!(
                validate(&p, "c", t, None, 0).await,
                Err(AcquireError::IdToken(_))
            ));
        }
    }
}
