//! The caller's user: the bearer token it forwards (`Authorization: Bearer`), validated
//! by `[inbound]`; `GET /v1/validate` and `POST /v1/sign-out`.
//!
//! * `POST /v1/sign-out` with `{}` and the user's own valid bearer signs that user out
//!   (the user partition and every OBO partition derived from the user's tokens);
//! * with `{"home_account_id": ID}` it signs out ID: allowed with the admin key
//!   (`X-Tokencache-Admin-Key`), or when ID is the bearer's own user. Nothing is written
//!   for an ID the cache does not know (no stamp, no heap entry).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokencache::acquire::OboForm;
use tokencache::partition::PartitionKey;

use super::guard::key_ok;
use super::inbound::{user_of, Refused};
use super::routes::{error, json, Shared, MAX_BODY_BYTES};

/// The header of the admin key (signs out any user), when one is configured.
pub(crate) const ADMIN_KEY_HEADER: &str = "x-tokencache-admin-key";

/// A 401 answer with its `WWW-Authenticate` challenge (RFC 6750).
pub(crate) fn unauthorized(code: &str, description: &str) -> Box<Response> {
    let mut r = error(StatusCode::UNAUTHORIZED, code, description);
    let challenge = if code == "missing_token" {
        "Bearer".to_string()
    } else {
        // the description is ours and fixed: no quote, no backslash
        format!("Bearer error=\"invalid_token\", error_description=\"{description}\"")
    };
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    Box::new(r)
}

/// The answer to a token `[inbound]` refused: 401 `invalid_token` with the reason, or
/// 503 when the issuer's keys could not be had.
pub(crate) fn refused(r: Refused) -> Response {
    match r {
        Refused::Invalid(reason) => *unauthorized("invalid_token", reason),
        Refused::Unavailable(e) => {
            tracing::warn!(error = %e, "[inbound]: the issuer's keys are not available");
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the issuer's signing keys cannot be fetched now; try again",
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}

/// Why the `Authorization` header holds no usable bearer token ([`bearer_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoBearer {
    /// No `Authorization` header.
    Missing,
    /// More than one.
    Several,
    /// Not `Bearer <b64token>`.
    Malformed,
    /// Not a JWT, where Entra's on-behalf-of needs one.
    NotJwt,
}

impl NoBearer {
    /// The OAuth error code (RFC 6750): `missing_token` when none was sent, else
    /// `invalid_token`.
    pub(crate) fn code(self) -> &'static str {
        match self {
            NoBearer::Missing => "missing_token",
            _ => "invalid_token",
        }
    }
}

/// The caller's token from `Authorization: Bearer …`, checked for shape (one header,
/// RFC 6750 `b64token`; a JWT when `form` is Entra's on-behalf-of form). Every route
/// that reads the caller's token reads it here; each says why in its own answer format.
pub(crate) fn bearer_of(headers: &HeaderMap, form: Option<OboForm>) -> Result<&str, NoBearer> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let value = match (all.next(), all.next()) {
        (None, _) => return Err(NoBearer::Missing),
        (Some(v), None) => v,
        (Some(_), Some(_)) => return Err(NoBearer::Several),
    };
    let text = value.to_str().map_err(|_| NoBearer::Malformed)?;
    let (scheme, token) = text.split_once(' ').ok_or(NoBearer::Malformed)?;
    let token = token.trim_start_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || !is_b64token(token) {
        return Err(NoBearer::Malformed);
    }
    if form == Some(OboForm::Entra) && !looks_like_jwt(token) {
        return Err(NoBearer::NotJwt);
    }
    Ok(token)
}

/// [`bearer_of`] for tokencache's own routes: errors are 401 answers.
fn bearer_answer(headers: &HeaderMap, form: Option<OboForm>) -> Result<&str, Box<Response>> {
    bearer_of(headers, form).map_err(|e| {
        unauthorized(
            e.code(),
            match e {
                NoBearer::Missing => "forward the caller's token as Authorization: Bearer <token>",
                NoBearer::Several => "more than one Authorization header",
                NoBearer::Malformed => "the Authorization header is not Bearer <token>",
                NoBearer::NotJwt => {
                    "the incoming token is not a JWT (Entra on-behalf-of takes a JWT access token)"
                }
            },
        )
    })
}

/// The caller's token from `Authorization: Bearer …`, checked for shape (RFC 6750
/// `b64token`). Errors are 401 answers.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, Box<Response>> {
    bearer_answer(headers, None)
}

/// The incoming token of an on-behalf-of API: [`bearer`], a JWT for Entra's OBO form.
pub(crate) fn incoming_token(headers: &HeaderMap, form: OboForm) -> Result<&str, Box<Response>> {
    bearer_answer(headers, Some(form))
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub(crate) fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Three base64url segments whose payload is a JSON object.
pub(crate) fn looks_like_jwt(t: &str) -> bool {
    t.split('.').count() == 3
        && t.split('.').all(|s| !s.is_empty())
        && tokencache::schema::decode_jwt_claims(t).is_ok()
}

#[derive(Serialize)]
struct ValidateAnswer<'a> {
    protocol: &'static str,
    token: &'a str,
    claims: &'a serde_json::Map<String, serde_json::Value>,
}

/// `GET /v1/validate`: the caller's bearer, validated, and its claims.
pub(crate) async fn validate(State(st): State<Shared>, headers: HeaderMap) -> Response {
    let Some(inbound) = &st.inbound else {
        return error(
            StatusCode::NOT_FOUND,
            "not_configured",
            "no [inbound] is configured: this service does not validate tokens",
        );
    };
    let token = match bearer(&headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match inbound.validate(token).await {
        Ok(v) => json(
            StatusCode::OK,
            &ValidateAnswer {
                protocol: "Bearer",
                token,
                claims: &v.claims,
            },
        ),
        Err(r) => refused(r),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignOutBody {
    home_account_id: Option<String>,
}

/// `POST /v1/sign-out`.
pub(crate) async fn sign_out(
    State(st): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let bytes = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!("the body is over {MAX_BODY_BYTES} bytes"),
            )
        }
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body could not be read",
            )
        }
    };
    let Ok(parsed) = serde_json::from_slice::<SignOutBody>(&bytes) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is {} (with the user's own bearer token) or {\"home_account_id\": \"...\"}",
        );
    };
    // The bearer's user, when a bearer is sent (validated: a forged token names no one).
    let own =
        if headers.contains_key(AUTHORIZATION) {
            let Some(inbound) = &st.inbound else {
                return error(
                    StatusCode::FORBIDDEN,
                    "not_configured",
                    "signing a user out by their token needs [inbound] (validated tokens)",
                );
            };
            let token = match bearer(&headers) {
                Ok(t) => t,
                Err(r) => return *r,
            };
            if let Err(r) = inbound.validate(token).await {
                return refused(r);
            }
            match user_of(token) {
                Some(u) => Some(u),
                None => return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the token names no user the cache knows (no home account id in its claims)",
                ),
            }
        } else {
            None
        };
    let id = match (parsed.home_account_id, own) {
        (None, Some(own)) => own,
        (None, None) => {
            return *unauthorized(
                "missing_token",
                "send the user's own token as Authorization: Bearer <token> (body {}), or an admin key with home_account_id",
            )
        }
        (Some(id), own) => {
            if id.is_empty() || tokencache::partition::check_key(&id).is_err() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "home_account_id is not a valid account id",
                );
            }
            if own.as_deref() != Some(id.as_str()) {
                if let Some(r) = admin_refusal(&st, &headers) {
                    return r;
                }
                match is_known(&st, &id).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // Nothing to remove, and nothing written: a made-up id costs
                        // no stamp in the store and no entry in any replica's heap.
                        return json(
                            StatusCode::OK,
                            &serde_json::json!({"signed_out": false, "obo_partitions": 0, "complete": true}),
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "sign-out: the store could not be read");
                        let mut r = error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "temporarily_unavailable",
                            "the store cannot be read now; send the sign-out again",
                        );
                        r.headers_mut()
                            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                        return r;
                    }
                }
            }
            id
        }
    };
    tokencache::signout::axum::sign_out_route(&st.cache, &id).await
}

/// Why another user's sign-out is refused: no admin key configured (403), or not sent
/// or wrong (401). `None`: the admin key is right.
fn admin_refusal(st: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(want) = &st.access.admin_key else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "signing out another user needs the admin key (admin_key_env); a user signs out with their own token",
        ));
    };
    if key_ok(headers, ADMIN_KEY_HEADER, want) {
        None
    } else {
        Some(error(
            StatusCode::UNAUTHORIZED,
            "invalid_admin_key",
            "send the admin key in X-Tokencache-Admin-Key",
        ))
    }
}

/// Whether the cache holds anything of user `id` in L2: a user partition or OBO
/// partitions linked to the user.
async fn is_known(st: &Shared, id: &str) -> Result<bool, tokencache::store::StoreError> {
    let two = st.cache.two_level();
    let store = two.store();
    let keys = two.keys();
    if !store.link_members(&keys.link_set(id)).await?.is_empty() {
        return Ok(true);
    }
    let partition = keys.partition(&PartitionKey::user(id));
    Ok(store.get(&partition).await?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_tokens_are_checked_for_shape() {
        let jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.c2ln";
        let mut h = HeaderMap::new();
        assert_eq!(
            incoming_token(&h, OboForm::Entra).unwrap_err().status(),
            StatusCode::UNAUTHORIZED
        );
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {jwt}")).unwrap(),
        );
        assert_eq!(incoming_token(&h, OboForm::Entra).unwrap(), jwt);
        for bad in [
            "Basic abc",
            "Bearer",
            "Bearer a b",
            "Bearer !!",
            "Bearer =",
            "Bearer not-a-jwt",
            "Bearer a.b.c",
        ] {
            h.insert(AUTHORIZATION, HeaderValue::from_static(bad));
            assert!(incoming_token(&h, OboForm::Entra).is_err(), "{bad}");
        }
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("bearer opaque-token_1~+/=="),
        );
        assert_eq!(
            incoming_token(&h, OboForm::TokenExchange).unwrap(),
            "opaque-token_1~+/=="
        );
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
        assert!(incoming_token(&h, OboForm::TokenExchange).is_err());
    }

    #[test]
    fn refusals_carry_the_bearer_challenge() {
        let r = refused(Refused::Invalid("the token has expired"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let c = r.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(c.starts_with("Bearer error=\"invalid_token\""), "{c}");
        assert!(c.contains("expired"), "{c}");
        let r = refused(Refused::Unavailable("down".into()));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
