//! The caller's incoming token on the routes of issue 23 (Microsoft's compatible routes,
//! `/v1/downstream`): the one seam through which they read it.
//!
//! Today this is the `/v1` on-behalf-of path's own handling: `Authorization: Bearer
//! <token>`, one header, an RFC 6750 `b64token` (a JWT for Entra's OBO form); the
//! provider checks the token itself when it is exchanged on behalf of the user. It does
//! not verify signatures, issuer or audience, so [`validated`] (`GET /Validate`, which
//! tells the caller the token is good) refuses until a validator is configured.
//!
//! LEAD (after merging wt-serve, issue 22): make [`caller_token`] and [`validated`] call
//! wt-serve's inbound validator (`[inbound]`, JWKS) — [`validated`] then answers with the
//! validated claims instead of refusing.

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use tokencache::acquire::OboForm;

use crate::downstream::Failure;
use crate::routes::{is_b64token, looks_like_jwt};

/// An incoming token whose signature, issuer, audience and lifetime were checked.
#[derive(Debug)]
pub(crate) struct Validated {
    /// The token as sent.
    pub(crate) token: String,
    /// Its payload.
    pub(crate) claims: serde_json::Value,
}

/// The caller's bearer token (checked for shape), or a 401 failure with a challenge.
pub(crate) fn caller_token(headers: &HeaderMap, form: OboForm) -> Result<String, Failure> {
    let unauthorized = |code: &str, detail: &str| Failure {
        challenge: Some(if code == "missing_token" {
            "Bearer"
        } else {
            "Bearer error=\"invalid_token\""
        }),
        ..Failure::new(StatusCode::UNAUTHORIZED, code, detail)
    };
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let value = match (all.next(), all.next()) {
        (None, _) => {
            return Err(unauthorized(
                "missing_token",
                "this route acts for the caller's user: send the incoming token as Authorization: Bearer <token>",
            ))
        }
        (Some(v), None) => v,
        (Some(_), Some(_)) => {
            return Err(unauthorized("invalid_token", "more than one Authorization header"))
        }
    };
    let malformed = || {
        unauthorized(
            "invalid_token",
            "the Authorization header is not `Bearer <token>`",
        )
    };
    let text = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = text.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim_start_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || !is_b64token(token) {
        return Err(malformed());
    }
    if form == OboForm::Entra && !looks_like_jwt(token) {
        return Err(unauthorized(
            "invalid_token",
            "the incoming token is not a JWT (Entra's on-behalf-of takes a JWT access token)",
        ));
    }
    Ok(token.to_string())
}

/// `GET /Validate`: the caller's token, validated, with its claims. Without an inbound
/// validator (none is configured in this build: see the module notes) a 401 that says so:
/// a token is never reported valid on its shape alone.
pub(crate) fn validated(headers: &HeaderMap) -> Result<Validated, Failure> {
    caller_token(headers, OboForm::Entra)?;
    Err(Failure {
        challenge: Some("Bearer error=\"invalid_token\""),
        ..Failure::new(
            StatusCode::UNAUTHORIZED,
            "validation_not_configured",
            "this server does not validate incoming tokens (no inbound validator is configured), so it cannot vouch for this one",
        )
    })
}
