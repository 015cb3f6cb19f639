//! axum handlers for the sign-out entry points (feature `axum`).
//!
//! [`router`] mounts:
//!
//! | route | what |
//! |---|---|
//! | `POST /signout` | the app's own sign-out (only with an [account resolver](SignOutState::account_resolver)) |
//! | `GET /logout/frontchannel?iss=…&sid=…` | OpenID Connect Front-Channel Logout |
//! | `POST /logout/backchannel` (form field `logout_token`) | OpenID Connect Back-Channel Logout |
//!
//! Nest it where the app wants (`Router::new().nest("/auth", router(state))`), or use
//! the handlers on routes of the app's choosing. Every answer carries
//! `Cache-Control: no-store`; refusals are `400` with
//! `{"error": …, "error_description": …}` as the Back-Channel Logout specification asks.
//!
//! **L2 outages.** A logout succeeds (`200`) only when the sign-out is durable in L2
//! ([`SignOut::l2_complete`](crate::SignOut)). Otherwise — the store could not be read
//! or written, or the keys could not be had ([`LogoutError::is_temporary`]) — the
//! front- and back-channel routes answer `503 Service Unavailable` with
//! `Retry-After` ([`RETRY_AFTER`]) and the same JSON body (`temporarily_unavailable`),
//! and a back-channel token's `jti` is released, so the provider's retry of the same
//! token completes the sign-out. The app's own sign-out answers `202 Accepted` with
//! `"complete": false` then (see [`sign_out_route`]).
//!
//! ```no_run
//! # async fn demo(cache: tokencache::TokenCache) -> Result<(), Box<dyn std::error::Error>> {
//! use tokencache::signout::{axum::{router, SignOutState}, Jwks, LogoutTokenValidator};
//!
//! let issuer = "https://login.microsoftonline.com/my-tenant/v2.0";
//! let jwks = Jwks::remote("https://login.microsoftonline.com/my-tenant/discovery/v2.0/keys")?;
//! let validator = LogoutTokenValidator::builder(issuer, "my-client-id", jwks).replay_cache(&cache).build();
//! let state = SignOutState::new(&cache, validator)
//!     // the account of the *authenticated* session (the app's session cookie)
//!     .account_resolver(|parts| parts.extensions.get::<String>().cloned());
//! let app: axum::Router = axum::Router::new().nest("/auth", router(state));
//! # let _ = app; Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use ::axum::extract::rejection::{FormRejection, QueryRejection};
use ::axum::extract::{Form, Query, Request, State};
use ::axum::http::header::{CACHE_CONTROL, LOCATION, PRAGMA, RETRY_AFTER as RETRY_AFTER_HEADER};
use ::axum::http::request::Parts;
use ::axum::http::{HeaderValue, StatusCode};
use ::axum::response::{IntoResponse, Response};
use ::axum::routing::{get, post};
use ::axum::{Json, Router};
use serde::Deserialize;

use super::{
    back_channel_logout, front_channel_logout, sign_out, LogoutError, LogoutTokenValidator,
    SessionIndex,
};
use crate::TokenCache;

/// Finds the home account id of the request's authenticated session (`None`: not
/// signed in). It must come from the app's own authentication (session cookie,
/// validated token), never from a value the client chooses.
pub type AccountResolver = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// What the handlers share: the cache, the session index, the logout token validator.
#[derive(Clone)]
pub struct SignOutState {
    cache: TokenCache,
    sessions: SessionIndex,
    validator: LogoutTokenValidator,
    account_of: Option<AccountResolver>,
    redirect_after: Option<String>,
}

impl std::fmt::Debug for SignOutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignOutState")
            .field("issuer", &self.validator.issuer())
            .field("client_id", &self.validator.client_id())
            .field("account_resolver", &self.account_of.is_some())
            .field(
                "redirect_after",
                &self.redirect_after.as_deref().map(crate::store::redact_url),
            )
            .finish()
    }
}

impl SignOutState {
    /// The state for one provider (the validator's issuer) and client.
    pub fn new(cache: &TokenCache, validator: LogoutTokenValidator) -> Self {
        Self {
            cache: cache.clone(),
            sessions: SessionIndex::new(cache),
            validator,
            account_of: None,
            redirect_after: None,
        }
    }

    /// How `POST /signout` finds the signed-in account; without one, [`router`] does not
    /// mount `/signout`.
    pub fn account_resolver(
        mut self,
        resolve: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.account_of = Some(Arc::new(resolve));
        self
    }

    /// After the app's own sign-out, answer `303 See Other` to this URL (typically the
    /// provider's `end_session_endpoint`) instead of `200` with a JSON summary.
    pub fn redirect_after_sign_out(mut self, url: &str) -> Self {
        self.redirect_after = Some(url.to_string());
        self
    }

    /// The session index (record sessions at sign-in with it).
    pub fn sessions(&self) -> &SessionIndex {
        &self.sessions
    }

    /// The cache.
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }
}

/// The sign-out routes (see the module documentation), with their state.
pub fn router<S: Clone + Send + Sync + 'static>(state: SignOutState) -> Router<S> {
    let mut router = Router::new()
        .route("/logout/frontchannel", get(front_channel))
        .route("/logout/backchannel", post(back_channel));
    if state.account_of.is_some() {
        router = router.route("/signout", post(app_sign_out));
    }
    router.with_state(state)
}

fn no_store(mut response: Response, value: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(value));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The `Retry-After` of `503` answers: long enough for the L2 circuit breaker's first
/// probes and the JWKS failure backoff, short enough for a sign-out to complete soon.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// `{"error", "error_description"}` with `Cache-Control: no-store`: `400` when the
/// request or token is at fault, `503` with `Retry-After` ([`RETRY_AFTER`]) when the
/// failure is temporary ([`LogoutError::is_temporary`]: keys or store unavailable,
/// sign-out not durable), so that the provider sends the logout again.
pub fn logout_error_response(error: &LogoutError) -> Response {
    let body = serde_json::json!({
        "error": error.error_code(),
        "error_description": error.to_string(),
    });
    if error.is_temporary() {
        let mut response = no_store(
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response(),
            "no-store",
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER_HEADER, HeaderValue::from(RETRY_AFTER.as_secs()));
        return response;
    }
    no_store(
        (StatusCode::BAD_REQUEST, Json(body)).into_response(),
        "no-store",
    )
}

/// The app's own sign-out, framework-neutral enough to call from any handler:
/// [`sign_out`] of `account`, answered with
/// `{"signed_out": true, "obo_partitions": n, "complete": bool}`:
///
/// * `200` with `complete: true`: the sign-out is durable in L2;
/// * `202 Accepted` with `complete: false`: L2 was not fully reached. The user *is*
///   signed out as far as this request goes — this replica refuses the user's tokens
///   and the app should clear its session as usual — but other replicas may still serve
///   cached tokens until L2 takes the removals (the cache queues them) or they expire;
///   logged as a warning;
/// * `503` with `Retry-After` ([`RETRY_AFTER`]) when L2 is unreachable and the recovery
///   queue holds as many sign-outs as it may ([`Error::SignOutRefused`](crate::Error::SignOutRefused)): send it again;
/// * `500` when the sign-out could not be attempted (an empty account id).
pub async fn sign_out_route(cache: &TokenCache, account: &str) -> Response {
    match sign_out(cache, account).await {
        Ok(out) => {
            let body = serde_json::json!({
                "signed_out": true,
                "obo_partitions": out.obo_partitions,
                "complete": out.l2_complete,
            });
            let status = if out.l2_complete {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            no_store((status, Json(body)).into_response(), "no-store")
        }
        Err(e @ crate::Error::SignOutRefused { .. }) => {
            // Not recorded anywhere durable: the caller must send it again.
            tracing::warn!(error = %e, "sign-out refused");
            let body = serde_json::json!({"error": "temporarily_unavailable", "error_description": e.to_string()});
            let mut response = no_store(
                (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response(),
                "no-store",
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER_HEADER, HeaderValue::from(RETRY_AFTER.as_secs()));
            response
        }
        Err(e) => {
            tracing::warn!(error = %e, "sign-out failed");
            let body =
                serde_json::json!({"error": "server_error", "error_description": e.to_string()});
            no_store(
                (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response(),
                "no-store",
            )
        }
    }
}

/// `POST /signout`: signs out the account the [resolver](SignOutState::account_resolver)
/// names (`401` when none), then answers as [`sign_out_route`] or, with
/// [`redirect_after_sign_out`](SignOutState::redirect_after_sign_out), redirects on `200`
/// and on `202` alike (an incomplete L2 sign-out must not keep the user from signing
/// out at the provider; it is logged, and the redirect carries
/// `X-Sign-Out-Complete: false`).
pub async fn app_sign_out(State(state): State<SignOutState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let account = state
        .account_of
        .as_ref()
        .and_then(|resolve| resolve(&parts));
    let Some(account) = account.filter(|a| !a.is_empty()) else {
        let body = serde_json::json!({"error": "not_signed_in", "error_description": "no signed-in account"});
        return no_store(
            (StatusCode::UNAUTHORIZED, Json(body)).into_response(),
            "no-store",
        );
    };
    let response = sign_out_route(&state.cache, &account).await;
    let complete = response.status() == StatusCode::OK;
    match &state.redirect_after {
        Some(url) if response.status().is_success() => match HeaderValue::from_str(url) {
            Ok(location) => {
                let mut redirect = no_store(
                    (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response(),
                    "no-store",
                );
                if !complete {
                    redirect
                        .headers_mut()
                        .insert(SIGN_OUT_COMPLETE_HEADER, HeaderValue::from_static("false"));
                }
                redirect
            }
            Err(_) => response,
        },
        _ => response,
    }
}

/// The header a sign-out redirect carries when the sign-out is not complete in L2.
const SIGN_OUT_COMPLETE_HEADER: &str = "x-sign-out-complete";

/// Query parameters of a front-channel logout request.
#[derive(Debug, Deserialize)]
pub struct FrontChannelParams {
    /// The provider's issuer.
    pub iss: Option<String>,
    /// The provider's session id.
    pub sid: Option<String>,
}

/// `GET /logout/frontchannel?iss=…&sid=…`: signs out the account of the session;
/// `200` with `Cache-Control: no-cache, no-store` (also when the session is not known
/// here), `400` when `iss`/`sid` are missing or `iss` is not the provider's, `503`
/// with `Retry-After` when the sign-out is not durable in L2 (or L2 could not be read).
pub async fn front_channel(
    State(state): State<SignOutState>,
    params: Result<Query<FrontChannelParams>, QueryRejection>,
) -> Response {
    let result = match params {
        Ok(Query(p)) => {
            front_channel_logout(
                &state.cache,
                &state.sessions,
                state.validator.issuer(),
                p.iss.as_deref(),
                p.sid.as_deref(),
            )
            .await
        }
        Err(_) => Err(LogoutError::Malformed(
            "the query string could not be read".into(),
        )),
    };
    match result {
        Ok(_) => no_store(StatusCode::OK.into_response(), "no-cache, no-store"),
        Err(e) => {
            tracing::info!(error = %e, "front-channel logout refused");
            logout_error_response(&e)
        }
    }
}

/// The form of a back-channel logout request. Its `Debug` shows the token's length only.
#[derive(Deserialize)]
pub struct BackChannelForm {
    /// The logout token (a signed JWT).
    pub logout_token: Option<String>,
}

impl std::fmt::Debug for BackChannelForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackChannelForm")
            .field(
                "logout_token",
                &self
                    .logout_token
                    .as_ref()
                    .map(|t| format!("<{} bytes>", t.len())),
            )
            .finish()
    }
}

/// `POST /logout/backchannel` (`application/x-www-form-urlencoded`, field
/// `logout_token`): validates the token and signs out the account of its `sid`/`sub`;
/// `200` once the sign-out is durable in L2, `400` with `{"error",
/// "error_description"}` for a refused token, `503` with `Retry-After` and the same body
/// when the keys or L2 are unavailable or the sign-out is not durable (the token's `jti`
/// is then not spent: the provider's retry is accepted).
pub async fn back_channel(
    State(state): State<SignOutState>,
    form: Result<Form<BackChannelForm>, FormRejection>,
) -> Response {
    let token = match form {
        Ok(Form(f)) => f.logout_token.filter(|t| !t.is_empty()),
        Err(_) => {
            let e = LogoutError::Malformed(
                "the request is not a form with a `logout_token` field".into(),
            );
            return logout_error_response(&e);
        }
    };
    let Some(token) = token else {
        return logout_error_response(&LogoutError::MissingParameter("logout_token"));
    };
    match back_channel_logout(&state.cache, &state.sessions, &state.validator, &token).await {
        Ok(_) => no_store(StatusCode::OK.into_response(), "no-store"),
        Err(e) => logout_error_response(&e),
    }
}
