//! Synthetic token responses of realistic size, for benchmarks, the simulation, the
//! CLI's `bench` and documentation. The tokens are fake (unsigned JWT look-alikes);
//! the shapes and sizes follow Entra ID's: access tokens ~0.8 KB, id tokens ~0.9 KB,
//! opaque refresh tokens ~0.7 KB, so a user with three resources is 7–8 KB of MSAL JSON.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::schema::{Partition, SchemaError, TokenRequest, TokenResponse};
use crate::{Error, SaveFor, SaveRequest, TokenCache};

/// The authority host used by the samples.
pub const ENVIRONMENT: &str = "login.microsoftonline.com";
/// The client id used by the samples.
pub const CLIENT_ID: &str = "6e2ab7a5-4c3b-4d0e-9a51-3b0b1c2d9f10";
/// The tenant used by the samples.
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// Three resources' scopes, as a web app typically requests them.
pub const USER_SCOPES: [&[&str]; 3] = [
    &[
        "https://graph.microsoft.com/User.Read",
        "https://graph.microsoft.com/Mail.Read",
    ],
    &["api://orders-api/Orders.ReadWrite"],
    &["https://storage.azure.com/user_impersonation"],
];

/// A JWT-shaped fake token: `header.claims.signature`, with the claims padded by an
/// `xms_pad` claim until the token is about `size` bytes long. Not signed.
pub fn fake_jwt(claims: Value, size: usize) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","kid":"fake-key-1"}"#);
    let signature = URL_SAFE_NO_PAD.encode([0x5au8; 256]);
    let mut claims = claims;
    let base =
        URL_SAFE_NO_PAD.encode(claims.to_string()).len() + header.len() + signature.len() + 2;
    if size > base + 16 {
        let pad = (size - base - 16) * 3 / 4;
        if let Some(obj) = claims.as_object_mut() {
            obj.insert("xms_pad".into(), Value::String("p".repeat(pad)));
        }
    }
    format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// `client_info` as Entra ID sends it: base64url of `{"uid":…,"utid":…}`.
pub fn client_info(oid: &str, tid: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({"uid": oid, "utid": tid}).to_string())
}

/// A user token response (access, refresh and id token, `client_info`) for `oid` in
/// `tid`, for `scopes`, issued at `now` and valid `expires_in` seconds.
pub fn user_response(
    oid: &str,
    tid: &str,
    scopes: &[&str],
    now: i64,
    expires_in: i64,
) -> Result<TokenResponse, SchemaError> {
    let at = fake_jwt(
        json!({"aud": scopes.first().copied().unwrap_or("api"), "iss": format!("https://sts.windows.net/{tid}/"),
               "iat": now, "nbf": now, "exp": now.saturating_add(expires_in), "oid": oid, "tid": tid,
               "scp": scopes.join(" "), "sub": format!("sub-{oid}"), "ver": "1.0"}),
        750,
    );
    let id = fake_jwt(
        json!({"aud": CLIENT_ID, "iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
               "iat": now, "nbf": now, "exp": now + 3600, "oid": oid, "tid": tid, "sub": format!("sub-{oid}"),
               "name": "Ada Lovelace", "preferred_username": format!("user-{oid}@example.com"), "ver": "2.0"}),
        850,
    );
    let body = json!({
        "token_type": "Bearer",
        "scope": scopes.join(" "),
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": at,
        "refresh_token": format!("0.AR{}", "r".repeat(700)),
        "id_token": id,
        "client_info": client_info(oid, tid),
    });
    TokenResponse::from_json(body.to_string().as_bytes())
}

/// An app (client credentials) token response for `scope`, valid `expires_in` seconds.
pub fn app_response(scope: &str, now: i64, expires_in: i64) -> Result<TokenResponse, SchemaError> {
    let at = fake_jwt(
        json!({"aud": scope, "iat": now, "exp": now.saturating_add(expires_in), "appid": CLIENT_ID, "roles": ["Data.Read"]}),
        1200,
    );
    let body = json!({"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": at});
    TokenResponse::from_json(body.to_string().as_bytes())
}

/// An OBO token response (access token only, as Entra ID gives for plain OBO).
pub fn obo_response(
    oid: &str,
    tid: &str,
    scopes: &[&str],
    now: i64,
    expires_in: i64,
) -> Result<TokenResponse, SchemaError> {
    let at = fake_jwt(
        json!({"aud": scopes.first().copied().unwrap_or("api"), "iat": now, "exp": now.saturating_add(expires_in),
               "oid": oid, "tid": tid, "scp": scopes.join(" ")}),
        1500,
    );
    let body = json!({"token_type": "Bearer", "scope": scopes.join(" "), "expires_in": expires_in,
                      "ext_expires_in": expires_in, "access_token": at});
    TokenResponse::from_json(body.to_string().as_bytes())
}

/// An incoming assertion (the bearer token a web API receives) for a user, expiring at `exp`.
pub fn incoming_assertion(oid: &str, tid: &str, iat: i64, exp: i64) -> String {
    fake_jwt(
        json!({"aud": "api://orders-api", "iss": format!("https://sts.windows.net/{tid}/"), "iat": iat, "exp": exp,
               "oid": oid, "tid": tid, "sub": format!("sub-{oid}"), "scp": "Orders.ReadWrite"}),
        1400,
    )
}

/// A user partition of 7–8 KB: the user's tokens for the three [`USER_SCOPES`]
/// resources, saved at `now`. Returns the partition and its home account id.
pub fn user_partition(oid: &str, tid: &str, now: i64) -> Result<(Partition, String), SchemaError> {
    let mut p = Partition::new();
    let mut home = String::new();
    for scopes in USER_SCOPES {
        let resp = user_response(oid, tid, scopes, now, 3600)?;
        let req = TokenRequest {
            client_id: CLIENT_ID,
            environment: ENVIRONMENT,
            realm: tid,
            scopes,
            user_assertion: None,
        };
        let added = p.add_token_response(&req, &resp, now)?;
        if let Some(h) = added.home_account_id {
            home = h;
        }
    }
    Ok((p, home))
}

/// Saves the user partition of [`user_partition`] through `cache`, as an app would: one
/// save per [`USER_SCOPES`] resource, at `now`. Returns the home account id.
pub async fn save_user(
    cache: &TokenCache,
    oid: &str,
    tid: &str,
    now: i64,
) -> Result<String, Error> {
    let mut home = String::new();
    for scopes in USER_SCOPES {
        let resp = user_response(oid, tid, scopes, now, 3600)?;
        let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, tid, scopes);
        home = cache.save_token_response(&req, &resp).await?.partition;
    }
    Ok(home)
}

/// Saves, through `cache`, the token a web API got for `scopes` on behalf of `oid` with
/// the incoming `assertion`, at `now` ([`obo_response`]). Returns the partition key.
pub async fn save_obo(
    cache: &TokenCache,
    oid: &str,
    tid: &str,
    assertion: &str,
    scopes: &[&str],
    now: i64,
) -> Result<String, Error> {
    let resp = obo_response(oid, tid, scopes, now, 3600)?;
    let req = SaveRequest::new(
        CLIENT_ID,
        SaveFor::Obo { assertion },
        ENVIRONMENT,
        tid,
        scopes,
    );
    Ok(cache.save_token_response(&req, &resp).await?.partition)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_jwt_has_the_asked_size() {
        let t = fake_jwt(json!({"a": 1}), 1500);
        assert!((1450..=1550).contains(&t.len()), "{}", t.len());
        assert_eq!(t.split('.').count(), 3);
    }
}
