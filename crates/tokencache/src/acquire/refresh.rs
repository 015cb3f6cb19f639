//! Silent acquisition for a signed-in user: a cached access token, else the cached
//! refresh token (the rotated one the provider returns replaces it in the same partition
//! write), else [`AcquireError::InteractionRequired`].
//!
//! With [`AcquirerBuilder::refresh_lock`](super::AcquirerBuilder::refresh_lock), the
//! redemption runs under the cross-replica lock of [`super::lock`]: the replica that
//! takes it reads the partition again from L2 (another replica may have rotated the
//! refresh token just before), redeems, saves, releases; a replica that finds it taken
//! waits, reading L2 until the lock is gone or the refresh token changed, and then uses
//! what was saved (a fresh access token, or the new refresh token).

use std::time::Instant;

use super::acquirer::{AcquireOptions, AcquiredToken, Acquirer, Grant, Job};
use super::discovery::Provider;
use super::error::AcquireError;
use super::http::{FormValue, Replay};
use super::lock::{self, Taken};
use crate::cache::Lookup;
use crate::schema::Secret;

/// Scopes every user request carries, as MSAL adds them: `openid` makes the provider
/// name the account (id token) in every response, `profile` puts the username in it,
/// `offline_access` keeps a refresh token coming.
pub(crate) const USER_SCOPES: [&str; 3] = ["openid", "profile", "offline_access"];

impl Acquirer {
    /// A token for a signed-in user (`home_account_id`, as the sign-in returned it): the
    /// cached access token, else one from the cached refresh token, else
    /// [`AcquireError::InteractionRequired`].
    pub async fn acquire_silent(
        &self,
        home_account_id: &str,
        scopes: &[&str],
    ) -> Result<AcquiredToken, AcquireError> {
        self.acquire_silent_with(home_account_id, scopes, &AcquireOptions::default())
            .await
    }

    /// [`acquire_silent`](Self::acquire_silent) with options: a forced refresh (or a
    /// claims challenge) redeems the refresh token even when an access token is cached,
    /// and the new token replaces it.
    pub async fn acquire_silent_with(
        &self,
        home_account_id: &str,
        scopes: &[&str],
        options: &AcquireOptions,
    ) -> Result<AcquiredToken, AcquireError> {
        if scopes.is_empty() {
            return Err(AcquireError::Config("at least one scope is needed".into()));
        }
        crate::partition::check_key(home_account_id)
            .map_err(|e| AcquireError::Config(format!("home account id: {e}")))?;
        let inner = &self.inner;
        let lookup = Lookup::user(&inner.client_id, home_account_id, scopes)
            .environment(&inner.authority.environment);
        let job = || {
            Ok(Job::new(
                Grant::Refresh {
                    home_account_id: home_account_id.to_string(),
                },
                scopes,
            ))
        };
        self.serve(&lookup, job, options).await
    }
}

/// Redeems the user's refresh token (under the lock when configured) and saves.
pub(crate) async fn redeem(
    acq: &Acquirer,
    provider: &Provider,
    job: Job,
) -> Result<AcquiredToken, AcquireError> {
    let inner = &acq.inner;
    let Grant::Refresh { home_account_id } = &job.grant else {
        return Err(AcquireError::Config("not a refresh job".into()));
    };
    let home = home_account_id.as_str();
    let cache = &inner.cache;
    let two = cache.two_level().clone();
    let scopes: Vec<&str> = job.scopes.iter().map(String::as_str).collect();
    let lookup =
        Lookup::user(&inner.client_id, home, &scopes).environment(&inner.authority.environment);
    let no_rt = || {
        AcquireError::InteractionRequired(
            "no refresh token is cached for this user: sign in again".into(),
        )
    };

    let (refresh_token, guard) = match &inner.refresh_lock {
        None => {
            // The refresh token as L2 has it now: this replica's L1 copy may predate a
            // rotation by another replica (when no backplane told it), and redeeming an
            // old one makes the provider revoke the grant. Refreshes are rare; one L2
            // read each is cheap.
            two.forget_local(home);
            let rt = cache
                .find_refresh_token(&inner.client_id, home, None)
                .await?
                .ok_or_else(no_rt)?;
            (rt, None)
        }
        Some(options) => {
            let key = lock::lock_key(&two, &inner.client_id, home);
            // the longest a waiter waits: one lock lifetime, plus one redemption
            let deadline = Instant::now() + options.ttl + inner.http.options().timeout;
            loop {
                let seen = cache
                    .find_refresh_token(&inner.client_id, home, None)
                    .await?
                    .ok_or_else(no_rt)?;
                match lock::try_take(&two, &key, options).await {
                    Taken::Held(guard) => {
                        // What is in L2 now is what counts: another replica may have
                        // rotated the token between our read and our lock.
                        two.forget_local(home);
                        if !job.force {
                            if let Some(t) = cache.find_access_token(&lookup).await? {
                                guard.release().await;
                                return Ok(AcquiredToken::from_cache(t));
                            }
                        }
                        match cache.find_refresh_token(&inner.client_id, home, None).await {
                            Ok(Some(rt)) => break (rt, Some(guard)),
                            Ok(None) => {
                                guard.release().await;
                                return Err(no_rt());
                            }
                            Err(e) => {
                                guard.release().await;
                                return Err(e.into());
                            }
                        }
                    }
                    Taken::Unavailable => break (seen, None),
                    Taken::Busy => {
                        // Wait for the holder: it saves, then releases.
                        loop {
                            if Instant::now() > deadline {
                                return Err(AcquireError::Timeout {
                                    endpoint: "refresh lock (another replica is redeeming)".into(),
                                    after: options.ttl,
                                });
                            }
                            tokio::time::sleep(options.poll).await;
                            two.forget_local(home);
                            if !job.force {
                                if let Some(t) = cache.find_access_token(&lookup).await? {
                                    return Ok(AcquiredToken::from_cache(t));
                                }
                            }
                            let now = cache
                                .find_refresh_token(&inner.client_id, home, None)
                                .await?;
                            let changed = now.as_ref().map(Secret::expose) != Some(seen.expose());
                            if changed || lock::is_free(&two, &key).await {
                                break;
                            }
                        }
                    }
                }
            }
        }
    };

    let started = two.clock().now_secs();
    let mut scopes_sent: Vec<String> = job.scopes.clone();
    for s in USER_SCOPES {
        if !scopes_sent.iter().any(|x| x.eq_ignore_ascii_case(s)) {
            scopes_sent.push(s.to_string());
        }
    }
    let mut form = vec![
        ("grant_type", FormValue::Plain("refresh_token".into())),
        ("refresh_token", FormValue::Secret(refresh_token)),
    ];
    form.extend(inner.user_form());
    // Once: a retry after a lost answer could redeem a token the provider already rotated.
    let result = acq
        .token_request(
            provider,
            form,
            &scopes_sent,
            job.claims.as_deref(),
            Replay::Once,
        )
        .await;
    let saved = match result {
        Ok(response) => match response.home_account_id() {
            Ok(Some(named)) if named != home => Err(AcquireError::Malformed {
                endpoint: super::http::shown(&provider.metadata.token_endpoint),
                reason: "the refresh response names another account".into(),
            }),
            Ok(None) => Err(AcquireError::Malformed {
                endpoint: super::http::shown(&provider.metadata.token_endpoint),
                reason: "the refresh response names no account (no id_token, no client_info)"
                    .into(),
            }),
            Err(e) => Err(AcquireError::Malformed {
                endpoint: super::http::shown(&provider.metadata.token_endpoint),
                reason: e.to_string(),
            }),
            Ok(Some(_)) => {
                let valid = match &response.id_token {
                    Some(idt) => super::id_token::validate(
                        provider,
                        &inner.client_id,
                        idt.expose(),
                        None,
                        started,
                    )
                    .await
                    .map(|_| ()),
                    None => Ok(()),
                };
                match valid {
                    Ok(()) => acq.save(&job, &response, started).await,
                    Err(e) => Err(e),
                }
            }
        },
        Err(e) => Err(e),
    };
    if let Some(g) = guard {
        g.release().await;
    }
    saved
}
