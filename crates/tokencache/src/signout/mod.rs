//! Sign-out entry points for web apps (docs/design.md §7): the app's own sign-out
//! route, OpenID Connect Front-Channel Logout (`iss` + `sid`) and Back-Channel Logout
//! (a signed logout token), each ending in [`TokenCache::remove_account`] — the user
//! partition, every linked OBO partition and the link set go, and a revocation stamp
//! is written.
//!
//! * [`sign_out`]: framework-neutral, by home account id.
//! * [`SessionIndex`]: at sign-in the app records which account a provider session
//!   (`iss`, `sid`) and subject (`iss`, `sub`) belong to, in L2, so that a logout that
//!   names only `sid` or `sub` finds the account on any replica.
//! * [`LogoutTokenValidator`]: checks a back-channel logout token against the
//!   provider's [`Jwks`] and refuses replays.
//! * [`front_channel_logout`], [`back_channel_logout`]: the whole request, without a
//!   web framework.
//! * [`axum`](mod@self::axum) (feature `axum`): handlers and a router.
//!
//! A provider session is mapped to the *account*: logging one session out removes the
//! user's cached tokens for every session of this app (the cache is per user).
//!
//! ```no_run
//! # async fn demo(cache: tokencache::TokenCache) -> Result<(), Box<dyn std::error::Error>> {
//! use tokencache::signout::{back_channel_logout, Jwks, LogoutTokenValidator, SessionIndex};
//!
//! let issuer = "https://login.microsoftonline.com/my-tenant/v2.0";
//! let sessions = SessionIndex::new(&cache);
//! // at sign-in, with the claims of the validated ID token:
//! sessions.record(issuer, Some("session-id"), Some("subject"), "oid.tid").await?;
//!
//! // the provider's back-channel logout request:
//! let jwks = Jwks::remote("https://login.microsoftonline.com/my-tenant/discovery/v2.0/keys")?;
//! let validator = LogoutTokenValidator::builder(issuer, "my-client-id", jwks).replay_cache(&cache).build();
//! # let logout_token = "";
//! let outcome = back_channel_logout(&cache, &sessions, &validator, logout_token).await?;
//! assert_eq!(outcome.account.as_deref(), Some("oid.tid"));
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::error::Error;
use crate::{SignOut, TokenCache};

#[cfg(feature = "axum")]
pub mod axum;
pub mod jwks;
pub mod logout_token;

#[cfg(feature = "jwks-fetch")]
pub use self::jwks::RemoteOptions;
pub use self::jwks::{Jwks, JwksError, KeySet, SignatureCheck, SUPPORTED_ALGORITHMS};
pub use self::logout_token::{
    LogoutClaims, LogoutError, LogoutTokenValidator, LogoutTokenValidatorBuilder,
    BACKCHANNEL_LOGOUT_EVENT, MAX_NUMERIC_DATE,
};

/// Signs a user out: [`TokenCache::remove_account`] (user partition, linked OBO
/// partitions, link set; revocation stamp). Framework-neutral; call it from the app's
/// sign-out route with the account of the authenticated session. When
/// [`SignOut::l2_complete`] is false the sign-out is not durable in L2 (logged as a
/// warning): this replica refuses the user's tokens, other replicas may not yet; end
/// the app's session anyway and report it (the axum route answers `202`).
pub async fn sign_out(cache: &TokenCache, home_account_id: &str) -> Result<SignOut, Error> {
    let out = cache.remove_account(home_account_id).await?;
    if !out.l2_complete {
        tracing::warn!(
            account = %home_account_id,
            "sign-out did not reach L2 completely: this replica refuses the user's tokens, others may still hold some"
        );
    }
    Ok(out)
}

/// Which account a provider session or subject belongs to, kept in L2 beside the
/// partitions (`tc:sid:…`, `tc:sub:…`), for as long as a refresh token lives
/// ([`ExpiryOptions::refresh_token_lifetime`](crate::twolevel::ExpiryOptions)).
/// Every store call goes through the cache's failure policy.
#[derive(Debug, Clone)]
pub struct SessionIndex {
    cache: TokenCache,
}

impl SessionIndex {
    /// The session index in `cache`'s L2 (same prefix).
    pub fn new(cache: &TokenCache) -> Self {
        Self {
            cache: cache.clone(),
        }
    }

    fn ttl(&self) -> Duration {
        self.cache.two_level().expiry().refresh_token_lifetime
    }

    /// Records, at sign-in, that the provider session `sid` and/or subject `sub` of
    /// `issuer` (from the validated ID token) belong to `home_account_id`.
    pub async fn record(
        &self,
        issuer: &str,
        sid: Option<&str>,
        sub: Option<&str>,
        home_account_id: &str,
    ) -> Result<(), Error> {
        if issuer.is_empty() || home_account_id.is_empty() {
            return Err(Error::InvalidRequest(
                "a session record needs an issuer and a home account id".into(),
            ));
        }
        let two = self.cache.two_level();
        let keys = two.keys();
        let store = two.store();
        let ttl = Some(self.ttl());
        for key in [
            sid.filter(|s| !s.is_empty())
                .map(|s| keys.session_by_sid(issuer, s)),
            sub.filter(|s| !s.is_empty())
                .map(|s| keys.session_by_sub(issuer, s)),
        ]
        .into_iter()
        .flatten()
        {
            two.call("set", store.set(&key, home_account_id.as_bytes(), ttl))
                .await?;
        }
        Ok(())
    }

    /// The account of provider session `sid` of `issuer`.
    pub async fn find_by_sid(&self, issuer: &str, sid: &str) -> Result<Option<String>, Error> {
        self.read(self.cache.two_level().keys().session_by_sid(issuer, sid))
            .await
    }

    /// The account of subject `sub` of `issuer`.
    pub async fn find_by_sub(&self, issuer: &str, sub: &str) -> Result<Option<String>, Error> {
        self.read(self.cache.two_level().keys().session_by_sub(issuer, sub))
            .await
    }

    /// Forgets provider session `sid` and/or subject `sub` of `issuer` (after logout).
    pub async fn forget(
        &self,
        issuer: &str,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<(), Error> {
        let two = self.cache.two_level();
        let keys = two.keys();
        let doomed: Vec<String> = [
            sid.map(|s| keys.session_by_sid(issuer, s)),
            sub.map(|s| keys.session_by_sub(issuer, s)),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !doomed.is_empty() {
            two.call("remove_many", two.store().remove_many(&doomed))
                .await?;
        }
        Ok(())
    }

    async fn read(&self, key: String) -> Result<Option<String>, Error> {
        let two = self.cache.two_level();
        let value = two.call("get", two.store().get(&key)).await?;
        Ok(value
            .and_then(|v| String::from_utf8(v.bytes).ok())
            .filter(|s| !s.is_empty()))
    }

    /// The account named by `sid` (first) or `sub` of `issuer`.
    async fn resolve(
        &self,
        issuer: &str,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<Option<String>, Error> {
        if let Some(sid) = sid {
            if let Some(found) = self.find_by_sid(issuer, sid).await? {
                return Ok(Some(found));
            }
        }
        match sub {
            Some(sub) => self.find_by_sub(issuer, sub).await,
            None => Ok(None),
        }
    }
}

/// What a front- or back-channel logout did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutOutcome {
    /// The account signed out; `None` when the session is not known here (nothing to
    /// remove; not an error, the provider logs sessions out everywhere).
    pub account: Option<String>,
    /// What the sign-out removed, when there was an account.
    pub sign_out: Option<SignOut>,
    /// The logout token's id (back-channel only).
    pub jti: Option<String>,
}

/// Signs out the account of `issuer`'s `sid` or `sub`, and forgets those index entries.
async fn logout_session(
    cache: &TokenCache,
    sessions: &SessionIndex,
    issuer: &str,
    sid: Option<&str>,
    sub: Option<&str>,
) -> Result<(Option<String>, Option<SignOut>), LogoutError> {
    let failed = |e: Error| LogoutError::SignOut(e.to_string());
    let Some(account) = sessions.resolve(issuer, sid, sub).await.map_err(failed)? else {
        tracing::info!(
            has_sid = sid.is_some(),
            has_sub = sub.is_some(),
            "logout for a session not known here"
        );
        return Ok((None, None));
    };
    let out = sign_out(cache, &account).await.map_err(failed)?;
    if !out.l2_complete {
        // Not durable: say so, so that the logout is sent again. The session index
        // entries stay, for that retry to find the account.
        return Err(LogoutError::NotDurable { account });
    }
    if let Err(e) = sessions.forget(issuer, sid, sub).await {
        // they end with their TTL; a later logout of them is a no-op sign-out
        tracing::warn!(error = %e, "could not remove the session index entries");
    }
    tracing::info!(account = %account, obo_partitions = out.obo_partitions, "signed out by the provider");
    Ok((Some(account), Some(out)))
}

/// OpenID Connect Front-Channel Logout: the provider's `iss` and `sid` (query
/// parameters of the app's `frontchannel_logout_uri`). `iss` must be the provider's
/// issuer (`expected_issuer`). The request is not authenticated (the specification's
/// design): the session id is what protects it.
///
/// When the sign-out is not durable in L2 ([`SignOut::l2_complete`] false) this is
/// [`LogoutError::NotDurable`]: this replica refuses the user's tokens already, the
/// session index entry is kept, and the same request later completes the sign-out.
pub async fn front_channel_logout(
    cache: &TokenCache,
    sessions: &SessionIndex,
    expected_issuer: &str,
    iss: Option<&str>,
    sid: Option<&str>,
) -> Result<LogoutOutcome, LogoutError> {
    let iss = iss
        .filter(|s| !s.is_empty())
        .ok_or(LogoutError::MissingParameter("iss"))?;
    let sid = sid
        .filter(|s| !s.is_empty())
        .ok_or(LogoutError::MissingParameter("sid"))?;
    if iss != expected_issuer {
        return Err(LogoutError::WrongIssuer {
            expected: expected_issuer.to_string(),
            found: iss.to_string(),
        });
    }
    let (account, sign_out) = logout_session(cache, sessions, iss, Some(sid), None).await?;
    Ok(LogoutOutcome {
        account,
        sign_out,
        jti: None,
    })
}

/// OpenID Connect Back-Channel Logout: validates `logout_token` (see
/// [`LogoutTokenValidator::validate`]) and signs out the account its `sid` (or `sub`)
/// names. A valid token for a session not known here succeeds with no account.
///
/// Success means the sign-out is durable in L2 (stamp and removals,
/// [`SignOut::l2_complete`]). When it is not, or the store could not be read, the error
/// is temporary ([`LogoutError::is_temporary`]: [`NotDurable`](LogoutError::NotDurable),
/// [`SignOut`](LogoutError::SignOut)) and the token's `jti` is released, so the
/// provider's retry of the same token is accepted rather than refused as a replay.
pub async fn back_channel_logout(
    cache: &TokenCache,
    sessions: &SessionIndex,
    validator: &LogoutTokenValidator,
    logout_token: &str,
) -> Result<LogoutOutcome, LogoutError> {
    let claims = match validator.validate(logout_token).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(error = %e, "back-channel logout refused");
            return Err(e);
        }
    };
    let done = logout_session(
        cache,
        sessions,
        &claims.iss,
        claims.sid.as_deref(),
        claims.sub.as_deref(),
    )
    .await;
    let (account, sign_out) = match done {
        Ok(done) => done,
        Err(e) => {
            // the provider may send the token again: do not refuse it as a replay then
            validator.release(&claims).await;
            return Err(e);
        }
    };
    Ok(LogoutOutcome {
        account,
        sign_out,
        jti: Some(claims.jti),
    })
}

#[cfg(test)]
mod tests;
