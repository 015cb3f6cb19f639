//! Writing into a partition as MSAL does: a token endpoint response becomes access,
//! refresh and id token, account and app metadata records (replacing the ones it
//! supersedes), and a user's records of one client are removed.

use super::*;

impl Partition {
    /// Stores a token response as MSAL does; like
    /// [`add_token_response_with_form`](Self::add_token_response_with_form) with the default
    /// [`AppAccountForm::Empty`] for partitions that have no account-less record yet.
    pub fn add_token_response(
        &mut self,
        req: &TokenRequest<'_>,
        resp: &TokenResponse,
        now: i64,
    ) -> Result<Added, SchemaError> {
        self.add_token_response_with_form(req, resp, now, AppAccountForm::default())
    }

    /// The form of `home_account_id` the partition's account-less records have (see
    /// [`AppAccountForm`]): that of the most recently cached access token with an empty
    /// `home_account_id`, else of the first such refresh token, id token or account (key
    /// order); `None` when every record names an account (or there is none).
    pub fn app_account_form(&self) -> Option<AppAccountForm> {
        let at = self
            .access_tokens
            .values()
            .filter(|t| t.home_account_id.is_empty())
            .max_by_key(|t| t.cached_at)
            .map(|t| t.home_account_id_form);
        at.or_else(|| {
            let rt = self.refresh_tokens.values();
            let rt = rt.filter(|t| t.home_account_id.is_empty());
            rt.map(|t| t.home_account_id_form).next()
        })
        .or_else(|| {
            let idt = self.id_tokens.values();
            let idt = idt.filter(|t| t.home_account_id.is_empty());
            idt.map(|t| t.home_account_id_form).next()
        })
        .or_else(|| {
            let acc = self.accounts.values();
            let acc = acc.filter(|a| a.home_account_id.is_empty());
            acc.map(|a| a.home_account_id_form).next()
        })
    }

    /// Stores a token response as MSAL does:
    ///
    /// * home account id: `uid.utid` from `client_info`, else the id token's `sub`
    ///   (MSAL Python), else none (app token, or OBO without user identity: stored empty, in
    ///   the partition's own [`AppAccountForm`] — [`app_account_form`](Self::app_account_form),
    ///   so that an update keeps the form of the SDK that wrote the blob — or, when the
    ///   partition has none yet, in `new_form`);
    /// * realm: the id token's `tid`, else the request's realm (MSAL.NET);
    /// * access token: target = the response's `scope` echo, else the requested scopes
    ///   (sorted); `expires_on = now + expires_in` (default [`DEFAULT_EXPIRES_IN`]),
    ///   `extended_expires_on = now + ext_expires_in` (else `expires_on`),
    ///   `refresh_on = now + refresh_in` only when the response has `refresh_in`; existing
    ///   tokens of the same user, environment, client, realm, token type, key id and
    ///   assertion hash whose target intersects the new one are removed first;
    /// * refresh token: replaces the previous one of the user for this client (or of the
    ///   same family); `family_id` from `foci`; `last_modification_time = now`;
    /// * id token, account, app metadata (user responses only): upserted, never
    ///   duplicated; unknown fields of a replaced account or app metadata are kept.
    ///
    /// Errors: a bad id token or `client_info`, or a response with no token at all.
    pub fn add_token_response_with_form(
        &mut self,
        req: &TokenRequest<'_>,
        resp: &TokenResponse,
        now: i64,
        new_form: AppAccountForm,
    ) -> Result<Added, SchemaError> {
        self.add_token_response_inner(req, resp, now, new_form, None, Naming::Msal(None))
    }

    /// [`add_token_response_with_form`](Self::add_token_response_with_form) at `now_ms`
    /// (milliseconds since the epoch): the records' times are its second, and the access
    /// and refresh tokens also carry the millisecond ([`WRITTEN_AT_MS`]), so that a
    /// replay orders two writes of the same second.
    pub fn add_token_response_written_at(
        &mut self,
        req: &TokenRequest<'_>,
        resp: &TokenResponse,
        now_ms: i64,
        new_form: AppAccountForm,
    ) -> Result<Added, SchemaError> {
        let now = now_ms.div_euclid(1000);
        let written = Some((now_ms, None));
        self.add_token_response_inner(req, resp, now, new_form, written, Naming::Msal(None))
    }

    /// [`add_token_response_written_at`](Self::add_token_response_written_at) with the
    /// write's place in its process's order of writes
    /// ([`AccessToken::written_seq`]): two writes of one record in one millisecond are
    /// then ordered too.
    pub fn add_token_response_written(
        &mut self,
        req: &TokenRequest<'_>,
        resp: &TokenResponse,
        now_ms: i64,
        seq: u64,
        new_form: AppAccountForm,
    ) -> Result<Added, SchemaError> {
        let now = now_ms.div_euclid(1000);
        let written = Some((now_ms, Some(seq)));
        self.add_token_response_inner(req, resp, now, new_form, written, Naming::Msal(None))
    }

    /// [`add_token_response_written`](Self::add_token_response_written) for a response to
    /// a request made for the user `account` (a home account id): a response that names
    /// no account — a refresh response without `id_token` or `client_info`, which OIDC
    /// allows — is stored under `account`, so that its rotated refresh token stays the
    /// user's. A response that names an account is stored under the account it names (the
    /// caller checks that it is `account`).
    pub fn add_token_response_for_account(
        &mut self,
        req: &TokenRequest<'_>,
        resp: &TokenResponse,
        now_ms: i64,
        seq: u64,
        new_form: AppAccountForm,
        account: &str,
    ) -> Result<Added, SchemaError> {
        let now = now_ms.div_euclid(1000);
        let written = Some((now_ms, Some(seq)));
        let naming = Naming::Msal(Some(account));
        self.add_token_response_inner(req, resp, now, new_form, written, naming)
    }

    /// [`add_token_response_written`](Self::add_token_response_written) for a response of
    /// a provider that is not Microsoft Entra (docs/design.md §4): the records' home
    /// account id is `account` exactly (the issuer-qualified `{sub}.{issuer key}` the
    /// caller derived, or `None` for app and OBO tokens), their realm `req.realm` (the
    /// issuer key). `client_info` and `tid`, which such a provider may send with any value,
    /// name nothing.
    pub fn add_token_response_of_issuer(
        &mut self,
        req: &TokenRequest<'_>,
        resp: &TokenResponse,
        now_ms: i64,
        seq: u64,
        new_form: AppAccountForm,
        account: Option<&str>,
    ) -> Result<Added, SchemaError> {
        let now = now_ms.div_euclid(1000);
        let written = Some((now_ms, Some(seq)));
        self.add_token_response_inner(req, resp, now, new_form, written, Naming::Issuer(account))
    }

    fn add_token_response_inner(
        &mut self,
        req: &TokenRequest<'_>,
        resp: &TokenResponse,
        now: i64,
        new_form: AppAccountForm,
        written: Option<(i64, Option<u64>)>,
        naming: Naming<'_>,
    ) -> Result<Added, SchemaError> {
        let (account, of_issuer) = match naming {
            Naming::Msal(a) => (a, false),
            Naming::Issuer(a) => (a, true),
        };
        if resp.access_token.is_none() && resp.refresh_token.is_none() && resp.id_token.is_none() {
            return Err(SchemaError::MissingField {
                path: "token_response".to_owned(),
                field: "access_token",
            });
        }
        let claims = match &resp.id_token {
            Some(t) => Some(decode_jwt_claims(t.expose())?),
            None => None,
        };
        let client_info = match resp.client_info.as_deref().map(str::trim) {
            Some(raw) if !raw.is_empty() && !of_issuer => Some(ClientInfo::decode(raw)?),
            _ => None,
        };
        let hid: Option<String> = if of_issuer {
            account.map(str::to_owned)
        } else {
            client_info
                .as_ref()
                .and_then(ClientInfo::home_account_id)
                .or_else(|| claims.as_ref().and_then(|c| c.sub.clone()))
                .or_else(|| account.map(str::to_owned))
        };
        let hid_str = hid.clone().unwrap_or_default();
        let env = req.environment.to_lowercase();
        let realm = match claims.as_ref().and_then(|c| c.tid.clone()) {
            Some(tid) if !of_issuer => tid,
            _ => req.realm.to_owned(),
        };
        let uah = req.user_assertion.map(assertion_hash);
        let target = normalize_target(resp.scope.as_deref(), req.scopes);
        // Only an empty id has a form; a non-empty one has the default, as when parsed.
        let form = if hid_str.is_empty() {
            self.app_account_form().unwrap_or(new_form)
        } else {
            AppAccountForm::default()
        };

        let mut added = Added {
            home_account_id: hid.clone(),
            access_token_key: None,
            expires_on: None,
        };

        if let Some(secret) = &resp.access_token {
            let expires_in = resp
                .expires_in
                .or_else(|| absolute_expiry(resp).map(|e| e.saturating_sub(now)))
                .unwrap_or(DEFAULT_EXPIRES_IN)
                .max(0);
            let expires_on = now.saturating_add(expires_in);
            let ext = resp
                .ext_expires_in
                .map_or(expires_on, |e| now.saturating_add(e.max(0)));
            let at = AccessToken {
                home_account_id: hid_str.clone(),
                home_account_id_form: form,
                environment: env.clone(),
                client_id: req.client_id.to_owned(),
                credential_type: CREDENTIAL_ACCESS_TOKEN.to_owned(),
                realm: realm.clone(),
                target: target.clone(),
                secret: secret.clone(),
                cached_at: now,
                expires_on,
                extended_expires_on: Some(ext),
                refresh_on: resp.refresh_in.map(|r| now.saturating_add(r.max(0))),
                token_type: resp.token_type.clone().filter(|t| !is_bearer(Some(t))),
                key_id: None,
                user_assertion_hash: uah.clone(),
                written_at_ms: written.map(|w| w.0),
                written_seq: written.and_then(|w| w.1),
                extra: Extra::default(),
            };
            self.access_tokens.retain(|_, old| {
                !(same_at_slot(old, &at) && targets_intersect(&old.target, &at.target))
            });
            added.access_token_key = Some(self.insert_access_token(at));
            added.expires_on = Some(expires_on);
        }

        if let Some(secret) = &resp.refresh_token {
            let family_id = resp.foci.clone().filter(|f| !f.trim().is_empty());
            self.refresh_tokens.retain(|_, old| {
                let same_user = eq_ci(&old.home_account_id, &hid_str)
                    && same_cloud(&old.environment, &env)
                    && opt_eq(old.user_assertion_hash.as_deref(), uah.as_deref());
                let same_slot = eq_ci(&old.client_id, req.client_id)
                    || (family_id.is_some() && old.family_id == family_id);
                !(same_user && same_slot)
            });
            self.insert_refresh_token(RefreshToken {
                home_account_id: hid_str.clone(),
                home_account_id_form: form,
                environment: env.clone(),
                client_id: req.client_id.to_owned(),
                secret: secret.clone(),
                family_id,
                target: Some(target.clone()),
                user_assertion_hash: uah.clone(),
                last_modification_time: Some(now),
                written_at_ms: written.map(|w| w.0),
                written_seq: written.and_then(|w| w.1),
                extra: Extra::default(),
            });
        }

        if let Some(secret) = &resp.id_token {
            self.id_tokens.retain(|_, old| {
                !(eq_ci(&old.home_account_id, &hid_str)
                    && same_cloud(&old.environment, &env)
                    && eq_ci(&old.client_id, req.client_id)
                    && eq_ci(&old.realm, &realm))
            });
            self.insert_id_token(IdToken {
                home_account_id: hid_str.clone(),
                home_account_id_form: form,
                environment: env.clone(),
                client_id: req.client_id.to_owned(),
                realm: realm.clone(),
                secret: secret.clone(),
                extra: Extra::default(),
            });
        }

        if hid.is_some() {
            self.upsert_account(
                &hid_str,
                &env,
                &realm,
                claims.as_ref(),
                client_info.as_ref(),
                resp,
            );
            let mut meta = AppMetadata {
                client_id: req.client_id.to_owned(),
                environment: env.clone(),
                family_id: resp.foci.clone(),
                extra: Extra::default(),
            };
            let old: Vec<String> = self
                .app_metadata
                .iter()
                .filter(|(_, m)| {
                    eq_ci(&m.client_id, req.client_id) && same_cloud(&m.environment, &env)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in old {
                if let Some(m) = self.app_metadata.remove(&k) {
                    meta.extra = m.extra;
                }
            }
            self.insert_app_metadata(meta);
        }
        Ok(added)
    }

    fn upsert_account(
        &mut self,
        hid: &str,
        env: &str,
        realm: &str,
        claims: Option<&JwtClaims>,
        client_info: Option<&ClientInfo>,
        resp: &TokenResponse,
    ) {
        let local = claims
            .and_then(|c| c.oid.clone().or_else(|| c.sub.clone()))
            .or_else(|| client_info.and_then(|c| c.uid.clone()));
        let mut acc = Account {
            home_account_id: hid.to_owned(),
            home_account_id_form: AppAccountForm::default(),
            environment: env.to_owned(),
            realm: realm.to_owned(),
            local_account_id: local.unwrap_or_default(),
            username: claims
                .and_then(JwtClaims::username)
                .unwrap_or_default()
                .to_owned(),
            authority_type: if eq_ci(realm, "adfs") {
                AUTHORITY_TYPE_ADFS
            } else {
                AUTHORITY_TYPE_MSSTS
            }
            .to_owned(),
            name: claims.and_then(|c| c.name.clone()),
            client_info: resp.client_info.clone(),
            extra: Extra::default(),
        };
        let old: Vec<String> = self
            .accounts
            .iter()
            .filter(|(_, a)| {
                eq_ci(&a.home_account_id, hid)
                    && same_cloud(&a.environment, env)
                    && eq_ci(&a.realm, realm)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            if let Some(prev) = self.accounts.remove(&k) {
                // A response without an id token must not blank what we knew.
                if acc.local_account_id.is_empty() {
                    acc.local_account_id = prev.local_account_id;
                }
                if acc.username.is_empty() {
                    acc.username = prev.username;
                }
                if acc.name.is_none() {
                    acc.name = prev.name;
                }
                if acc.client_info.is_none() {
                    acc.client_info = prev.client_info;
                }
                acc.extra = prev.extra;
            }
        }
        self.insert_account(acc);
    }

    /// Writes the access token stored under `key` (an [`Added::access_token_key`]) a
    /// second time, under realm `alias` — another name of the same tenant — replacing the
    /// tokens of that realm whose target intersects it, as a new token replaces them in
    /// its own realm. Returns the copy's key; `None` (nothing written) when `key` names no
    /// access token or its realm is `alias` already.
    ///
    /// For a Microsoft Entra tenant named by its domain (docs/design.md §4.7): MSAL.NET
    /// writes and looks every token up under the tenant as the authority writes it (the
    /// domain), and msal-node its app tokens; MSAL Python, and msal-node's user lookups,
    /// use the tenant id. A token under both realms is found by each of them.
    pub fn mirror_access_token(&mut self, key: &str, alias: &str) -> Option<String> {
        let at = self.access_tokens.get(key)?;
        if eq_ci(&at.realm, alias) {
            return None;
        }
        let mut copy = at.clone();
        copy.realm = alias.to_owned();
        self.access_tokens.retain(|_, old| {
            !(same_at_slot(old, &copy) && targets_intersect(&old.target, &copy.target))
        });
        Some(self.insert_access_token(copy))
    }

    /// Signs a user out of one client: removes the user's access, refresh and id tokens
    /// of `client_id`, and the user's account records when no credential of any client
    /// refers to the user anymore. Returns the number of records removed.
    pub fn remove_account(&mut self, client_id: &str, home_account_id: &str) -> usize {
        let before = self.len();
        let hit = |cid: &str, hid: &str| eq_ci(cid, client_id) && eq_ci(hid, home_account_id);
        self.access_tokens
            .retain(|_, t| !hit(&t.client_id, &t.home_account_id));
        self.refresh_tokens
            .retain(|_, t| !hit(&t.client_id, &t.home_account_id));
        self.id_tokens
            .retain(|_, t| !hit(&t.client_id, &t.home_account_id));
        let still_used = self
            .access_tokens
            .values()
            .any(|t| eq_ci(&t.home_account_id, home_account_id))
            || self
                .refresh_tokens
                .values()
                .any(|t| eq_ci(&t.home_account_id, home_account_id))
            || self
                .id_tokens
                .values()
                .any(|t| eq_ci(&t.home_account_id, home_account_id));
        if !still_used {
            self.accounts
                .retain(|_, a| !eq_ci(&a.home_account_id, home_account_id));
        }
        before - self.len()
    }
}

/// How a response's records name their account and realm.
#[derive(Clone, Copy)]
enum Naming<'a> {
    /// MSAL's rules (`client_info`, else the id token's `sub`; realm the id token's `tid`),
    /// with this account when the response names none.
    Msal(Option<&'a str>),
    /// A provider that is not Entra: exactly this account (or none), realm the request's.
    Issuer(Option<&'a str>),
}

/// The target written for a new access token: the response's scope echo if present,
/// else the requested scopes; sorted by bytes, de-duplicated case-insensitively.
pub(super) fn normalize_target(scope_echo: Option<&str>, requested: &[&str]) -> String {
    let mut scopes: Vec<&str> = match scope_echo.filter(|s| !s.trim().is_empty()) {
        Some(s) => s.split_ascii_whitespace().collect(),
        None => split_scopes(requested).collect(),
    };
    scopes.sort_unstable();
    let mut out: Vec<&str> = Vec::with_capacity(scopes.len());
    for s in scopes {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(s)) {
            out.push(s);
        }
    }
    out.join(" ")
}

/// An absolute `expires_on` some endpoints (managed identity) send instead of
/// `expires_in`.
pub(super) fn absolute_expiry(resp: &TokenResponse) -> Option<i64> {
    match resp.extra.get("expires_on")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => de::parse_secs(s.trim()).ok(),
        _ => None,
    }
}
