//! The caller's incoming token on the routes of issue 23 (Microsoft's compatible routes,
//! `/v1/downstream`): the one seam through which they read it.
//!
//! The token is checked for shape here (`Authorization: Bearer <token>`, one header, an
//! RFC 6750 `b64token`; a JWT for Entra's OBO form), then by `[inbound]`'s validator
//! ([`validate`]: signature, issuer, audience, lifetime, algorithms; src/inbound.rs)
//! before any cache lookup or token request. Without a validator (`[inbound] validate =
//! false`, or none configured for an app-only server) [`validated`] (`GET /Validate`,
//! which tells the caller the token is good) refuses: a token is never reported valid
//! on its shape alone.

use axum::http::{HeaderMap, StatusCode};
use tokencache::acquire::OboForm;

use crate::account::{bearer_of, NoBearer};
use crate::downstream::Failure;
use crate::inbound::{self, Refused};
use crate::routes::AppState;

/// An incoming token whose signature, issuer, audience and lifetime were checked.
#[derive(Debug)]
pub(crate) struct Validated {
    /// The token as sent.
    pub(crate) token: String,
    /// Its payload.
    pub(crate) claims: serde_json::Value,
}

/// The caller's bearer token (checked for shape: [`bearer_of`]), or a 401 failure with
/// a challenge.
pub(crate) fn caller_token(headers: &HeaderMap, form: OboForm) -> Result<String, Failure> {
    bearer_of(headers, Some(form)).map(str::to_string).map_err(|e| {
        let detail = match e {
            NoBearer::Missing => "this route acts for the caller's user: send the incoming token as Authorization: Bearer <token>",
            NoBearer::Several => "more than one Authorization header",
            NoBearer::Malformed => "the Authorization header is not `Bearer <token>`",
            NoBearer::NotJwt => "the incoming token is not a JWT (Entra's on-behalf-of takes a JWT access token)",
        };
        Failure {
            challenge: Some(if e == NoBearer::Missing {
                "Bearer"
            } else {
                "Bearer error=\"invalid_token\""
            }),
            ..Failure::new(StatusCode::UNAUTHORIZED, e.code(), detail)
        }
    })
}

/// Validates `token` with `[inbound]` when configured (else nothing: the operator
/// wrote `validate = false`, which serve warns about at every start). A refusal is a
/// 401 with the reason, or a 503 when the issuer's keys cannot be had.
pub(crate) async fn validate(
    st: &AppState,
    token: &str,
) -> Result<Option<std::sync::Arc<inbound::Validated>>, Failure> {
    let Some(inbound) = &st.inbound else {
        return Ok(None);
    };
    inbound.validate(token).await.map(Some).map_err(refused)
}

/// A refusal of `[inbound]` as a failure of these routes.
fn refused(r: Refused) -> Failure {
    match r {
        Refused::Invalid(reason) => Failure {
            challenge: Some("Bearer error=\"invalid_token\""),
            ..Failure::new(StatusCode::UNAUTHORIZED, "invalid_token", reason)
        },
        Refused::Unavailable(e) => {
            tracing::warn!(error = %e, "[inbound]: the issuer's keys are not available");
            Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the issuer's signing keys cannot be fetched now; try again",
            )
        }
    }
}

/// `GET /Validate`: the caller's token, validated by `[inbound]`, with its claims.
/// Without a validator, a 401 that says so: a token is never reported valid on its
/// shape alone.
pub(crate) async fn validated(st: &AppState, headers: &HeaderMap) -> Result<Validated, Failure> {
    let token = caller_token(headers, OboForm::TokenExchange)?;
    match validate(st, &token).await? {
        Some(v) => Ok(Validated {
            claims: serde_json::Value::Object(v.claims.clone()),
            token,
        }),
        None => Err(Failure {
            challenge: Some("Bearer error=\"invalid_token\""),
            ..Failure::new(
                StatusCode::UNAUTHORIZED,
                "validation_not_configured",
                "this server does not validate incoming tokens ([inbound] is not configured, or validate = false), so it cannot vouch for this one",
            )
        }),
    }
}
