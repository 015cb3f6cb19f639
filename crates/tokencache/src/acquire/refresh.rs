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
//!
//! The redemption is sent once (a 5xx may come after the provider used the token up),
//! and the rotated refresh token of every successful response is kept: a response
//! without `id_token` is the holder's; one that cannot be used otherwise still has its
//! refresh token saved; only one naming another account is dropped.

use std::time::Instant;

use super::acquirer::{AcquireOptions, AcquiredToken, Acquirer, Grant, Job};
use super::discovery::Provider;
use super::error::AcquireError;
use super::http::{FormValue, Replay};
use super::lock::{self, Taken};
use crate::cache::{Lookup, Subject};
use crate::schema::{RefreshTokenQuery, Secret, TokenResponse};

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
        // another provider's user: its refresh token is never sent here
        inner.check_account_issuer(home_account_id)?;
        if inner.realm_needs_discovery() {
            // the realm of an Entra tenant named by domain is its id, which discovery
            // names; a provider that cannot be reached leaves the lookup to the records'
            // one tenant (a token and its copy under the domain are one)
            let _ = inner.provider().await;
        }
        let mut lookup = Lookup::user(&inner.client_id, home_account_id, scopes)
            .environment(&inner.authority.environment);
        lookup.tenant = inner.realm_filter(Some(home_account_id));
        lookup.tenant_alias = inner.realm_alias();
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

/// Where the refresh token of a job lives: a user partition, or a long-running OBO
/// session's partition.
enum Holder<'a> {
    User(&'a str),
    Session { key: &'a str, partition: String },
}

impl Holder<'_> {
    /// The bare partition key (for L1 and the lock).
    fn partition(&self) -> &str {
        match self {
            Holder::User(home) => home,
            Holder::Session { partition, .. } => partition,
        }
    }

    /// The refresh token as the cache has it (L1, else L2).
    async fn read(&self, acq: &Acquirer) -> Result<Option<Secret>, AcquireError> {
        let inner = &acq.inner;
        match self {
            Holder::User(home) => Ok(inner
                .cache
                .find_refresh_token(&inner.client_id, home, None)
                .await?),
            Holder::Session { key, .. } => {
                let subject = Subject::OboSession { session_key: key };
                let Some(p) = inner.cache.partition(&subject, &inner.client_id).await else {
                    return Ok(None);
                };
                // OBO responses name no account: the session's refresh token has none
                Ok(
                    p.find_refresh_token(&RefreshTokenQuery::new(&inner.client_id, ""))
                        .map(|rt| rt.secret.clone()),
                )
            }
        }
    }

    /// This replica's L1 copy may predate another replica's rotation: read L2.
    async fn read_fresh(&self, acq: &Acquirer) -> Result<Option<Secret>, AcquireError> {
        acq.inner.cache.two_level().forget_local(self.partition());
        self.read(acq).await
    }

    fn missing(&self) -> AcquireError {
        AcquireError::InteractionRequired(match self {
            Holder::User(_) => "no refresh token is cached for this user: sign in again".into(),
            Holder::Session { .. } => {
                "no refresh token in this OBO session: start it again with the incoming token"
                    .into()
            }
        })
    }

    /// Scopes the request carries besides the asked ones.
    fn extra_scopes(&self) -> &'static [&'static str] {
        match self {
            Holder::User(_) => &USER_SCOPES,
            Holder::Session { .. } => &["offline_access"],
        }
    }
}

impl Acquirer {
    /// A token of a long-running OBO session started by
    /// [`on_behalf_of_with`](Self::on_behalf_of_with) with a `session_key` (MSAL's
    /// `AcquireTokenInLongRunningProcess`): the session's cached access token, else one
    /// from the session's refresh token (the provider returns one for OBO with
    /// `offline_access`, which the session start asks for), else
    /// [`AcquireError::InteractionRequired`]. No incoming token is needed: the process
    /// goes on after it expired. `user` is the account the session was started for (its
    /// sign-out removes the session).
    pub async fn acquire_in_session(
        &self,
        session_key: &str,
        user: &str,
        scopes: &[&str],
    ) -> Result<AcquiredToken, AcquireError> {
        self.acquire_in_session_with(session_key, user, scopes, &AcquireOptions::default())
            .await
    }

    /// [`acquire_in_session`](Self::acquire_in_session) with options (a forced refresh
    /// redeems the session's refresh token even when an access token is cached).
    pub async fn acquire_in_session_with(
        &self,
        session_key: &str,
        user: &str,
        scopes: &[&str],
        options: &AcquireOptions,
    ) -> Result<AcquiredToken, AcquireError> {
        if scopes.is_empty() || session_key.is_empty() {
            return Err(AcquireError::Config(
                "a session key and at least one scope are needed".into(),
            ));
        }
        crate::partition::check_key(user)
            .map_err(|e| AcquireError::Config(format!("user: {e}")))?;
        let inner = &self.inner;
        let session_key = &*inner.session_key(session_key);
        if inner.realm_needs_discovery() {
            // the realm of an Entra tenant named by domain is its id, which discovery
            // names; a provider that cannot be reached leaves the lookup to the records'
            // one tenant (a token and its copy under the domain are one)
            let _ = inner.provider().await;
        }
        let lookup = Lookup::new(
            &inner.client_id,
            Subject::OboSession { session_key },
            scopes,
        )
        .environment(&inner.authority.environment)
        .tenant_opt(inner.realm_filter(None))
        .tenant_alias(inner.realm_alias());
        let job = || {
            Ok(Job::new(
                Grant::Session {
                    session_key: session_key.to_string(),
                    user: user.to_string(),
                },
                scopes,
            ))
        };
        self.serve(&lookup, job, options).await
    }
}

/// Redeems the refresh token of a user or an OBO session (under the lock when
/// configured) and saves.
pub(crate) async fn redeem(
    acq: &Acquirer,
    provider: &Provider,
    job: Job,
) -> Result<AcquiredToken, AcquireError> {
    let inner = &acq.inner;
    let holder = match &job.grant {
        Grant::Refresh { home_account_id } => Holder::User(home_account_id),
        Grant::Session { session_key, .. } => Holder::Session {
            key: session_key,
            partition: crate::partition::session_partition_key(session_key),
        },
        _ => return Err(AcquireError::Config("not a refresh job".into())),
    };
    let cache = &inner.cache;
    let two = cache.two_level().clone();
    let scopes: Vec<&str> = job.scopes.iter().map(String::as_str).collect();
    let lookup = job.lookup(inner, &scopes);

    let (refresh_token, guard) = match &inner.refresh_lock {
        None => {
            // Refreshes are rare; one L2 read each is cheap, and redeeming an old
            // (rotated) token would make the provider revoke the grant.
            let rt = holder
                .read_fresh(acq)
                .await?
                .ok_or_else(|| holder.missing())?;
            (rt, None)
        }
        Some(options) => {
            let key = lock::lock_key(&two, &inner.client_id, holder.partition());
            // the longest a waiter waits: one lock lifetime, plus one redemption
            let deadline = Instant::now() + options.ttl + inner.http.options().timeout;
            loop {
                let seen = holder.read(acq).await?.ok_or_else(|| holder.missing())?;
                match lock::try_take(&two, &key, options).await {
                    Taken::Held(guard) => {
                        // What is in L2 now is what counts: another replica may have
                        // rotated the token between our read and our lock.
                        let fresh = holder.read_fresh(acq).await;
                        if !job.force {
                            match cache.find_access_token(&lookup).await {
                                Ok(Some(t)) => {
                                    guard.release().await;
                                    return Ok(AcquiredToken::from_cache(t));
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    guard.release().await;
                                    return Err(e.into());
                                }
                            }
                        }
                        match fresh {
                            Ok(Some(rt)) => break (rt, Some(guard)),
                            Ok(None) => {
                                guard.release().await;
                                return Err(holder.missing());
                            }
                            Err(e) => {
                                guard.release().await;
                                return Err(e);
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
                            let now = holder.read_fresh(acq).await?;
                            if !job.force {
                                if let Some(t) = cache.find_access_token(&lookup).await? {
                                    return Ok(AcquiredToken::from_cache(t));
                                }
                            }
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
    for s in holder.extra_scopes() {
        if !scopes_sent.iter().any(|x| x.eq_ignore_ascii_case(s)) {
            scopes_sent.push(s.to_string());
        }
    }
    let mut form = vec![
        ("grant_type", FormValue::Plain("refresh_token".into())),
        ("refresh_token", FormValue::Secret(refresh_token)),
    ];
    if let Holder::User(_) = holder {
        form.extend(inner.user_form());
    }
    // Once: a retry after a lost answer or a 5xx could redeem a token the provider
    // already rotated (it would revoke the grant).
    let result = acq
        .token_request_unchecked(
            provider,
            form,
            &scopes_sent,
            job.claims.as_deref(),
            Replay::Once,
        )
        .await;
    let saved = match result {
        Ok(response) => keep(acq, provider, &holder, &job, &response, started).await,
        Err(e) => Err(e),
    };
    if let Some(g) = guard {
        if g.lost() {
            tracing::warn!("refresh lock: it expired while the refresh token was redeemed");
        }
        g.release().await;
    }
    saved
}

/// Saves a redemption's response. A response that cannot be used (no access token, an
/// id token that does not validate) still carries the provider's rotated refresh token,
/// and the old one may be dead now: that refresh token alone is saved into the holder's
/// partition, and the error returned. Only a response that names another account is
/// dropped whole.
async fn keep(
    acq: &Acquirer,
    provider: &Provider,
    holder: &Holder<'_>,
    job: &Job,
    response: &TokenResponse,
    started: i64,
) -> Result<AcquiredToken, AcquireError> {
    let endpoint = super::http::shown(&provider.metadata.token_endpoint);
    let problem =
        match check_account(holder, provider, &acq.inner.client_id, response, started).await {
            Account::Other(e) => return Err(e),
            Account::Invalid(e) => Some(e),
            Account::Holder => super::http::check_usable(&endpoint, response).err(),
        };
    let Some(problem) = problem else {
        return acq.save(job, response, started).await;
    };
    if let Some(rt) = &response.refresh_token {
        let rotated = TokenResponse {
            refresh_token: Some(rt.clone()),
            scope: response.scope.clone(),
            foci: response.foci.clone(),
            ..TokenResponse::default()
        };
        match acq.save_records(job, &rotated, started).await {
            Ok(()) => tracing::warn!(
                error = %problem,
                "refresh response not usable; its rotated refresh token was kept"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "refresh response not usable, and its rotated refresh token could not be kept"
            ),
        }
    }
    Err(problem)
}

/// Whose a refresh response is.
enum Account {
    /// The holder's (or it names nobody, which OIDC allows: it is the holder's, whose
    /// refresh token was redeemed).
    Holder,
    /// Another account's: dropped whole.
    Other(AcquireError),
    /// It cannot be told (a malformed id token or client_info), or its id token does
    /// not validate.
    Invalid(AcquireError),
}

/// A user's refresh response must not name another user, and its id token, when there
/// is one, must validate; a session's names nobody.
async fn check_account(
    holder: &Holder<'_>,
    provider: &Provider,
    client_id: &str,
    response: &TokenResponse,
    started: i64,
) -> Account {
    let Holder::User(home) = holder else {
        return Account::Holder;
    };
    let malformed = |reason: String| AcquireError::Malformed {
        endpoint: super::http::shown(&provider.metadata.token_endpoint),
        reason,
    };
    match response.home_account_id_at(provider.authority.issuer_key()) {
        Ok(Some(named)) if named != *home => Account::Other(malformed(
            "the refresh response names another account".into(),
        )),
        Err(e) => Account::Invalid(malformed(e.to_string())),
        Ok(_) => match &response.id_token {
            Some(idt) => {
                match super::id_token::validate(provider, client_id, idt.expose(), None, started)
                    .await
                {
                    Ok(_) => Account::Holder,
                    Err(e) => Account::Invalid(e),
                }
            }
            None => Account::Holder,
        },
    }
}
