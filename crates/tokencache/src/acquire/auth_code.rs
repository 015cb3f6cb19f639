//! The authorization code flow with PKCE (RFC 7636, S256): the library builds the
//! authorization URL with a fresh `state`, `nonce` and code challenge, and redeems the
//! code the redirect brings back; the id token is validated (signature by the JWKS,
//! `iss`, `aud`, `exp`, `nonce`) before anything is saved. The account, id token,
//! refresh token and access token go to the user partition.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::Digest;

use super::acquirer::{AcquiredToken, Acquirer, Grant, Job};
use super::error::AcquireError;
use super::http::{FormValue, Replay};
use super::random;
use super::refresh::USER_SCOPES;
use crate::schema::Secret;

/// What the authorization URL asks.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizationParams<'a> {
    /// Where the provider sends the user back (registered with the provider).
    pub redirect_uri: &'a str,
    /// The API scopes wanted (`openid`, `profile` and `offline_access` are added, as
    /// MSAL does).
    pub scopes: &'a [&'a str],
    /// `login_hint`.
    pub login_hint: Option<&'a str>,
    /// `prompt` (`login`, `consent`, `select_account`, `none`). A provider that follows
    /// OpenID Connect Core §11 to the letter issues a refresh token only with
    /// `consent` (Entra does without).
    pub prompt: Option<&'a str>,
}

/// A sign-in in progress: the URL to send the user to, and what the redemption must
/// check. Keep it server-side (in the user's session) until the redirect comes back;
/// `Debug` hides the verifier and nonce.
#[derive(Clone)]
pub struct AuthorizationRequest {
    /// The authorization URL.
    pub url: url::Url,
    /// The `state` sent; the redirect must bring it back.
    pub state: String,
    nonce: Secret,
    verifier: Secret,
    redirect_uri: String,
    scopes: Vec<String>,
}

impl std::fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("url", &self.url.as_str())
            .field("state", &self.state)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// A completed sign-in.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// The user's home account id: pass it to
    /// [`acquire_silent`](Acquirer::acquire_silent) and
    /// [`TokenCache::remove_account`](crate::TokenCache::remove_account).
    pub home_account_id: String,
    /// The access token for the requested scopes.
    pub token: AcquiredToken,
    /// The id token's `sub`.
    pub subject: String,
    /// `preferred_username`, when the id token has it.
    pub username: Option<String>,
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The S256 code challenge of a verifier.
fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

impl Acquirer {
    /// Starts a sign-in: the authorization URL (with `state`, `nonce` and an S256 code
    /// challenge) and what [`redeem_code`](Self::redeem_code) needs afterwards.
    pub async fn authorization_url(
        &self,
        params: &AuthorizationParams<'_>,
    ) -> Result<AuthorizationRequest, AcquireError> {
        if params.scopes.is_empty() {
            return Err(AcquireError::Config("at least one scope is needed".into()));
        }
        let redirect = url::Url::parse(params.redirect_uri)
            .map_err(|e| AcquireError::Config(format!("redirect_uri: {e}")))?;
        let provider = self.inner.provider().await?;
        let mut url = provider
            .metadata
            .authorization_endpoint
            .clone()
            .ok_or_else(|| {
                AcquireError::Config("the provider has no authorization_endpoint".into())
            })?;
        let state = random::token(16);
        let nonce = random::token(16);
        // 32 random bytes: a 43-character verifier, the minimum RFC 7636 allows
        let verifier = random::token(32);
        let mut scopes: Vec<String> = params.scopes.iter().map(|s| s.to_string()).collect();
        let mut sent = scopes.clone();
        for s in USER_SCOPES {
            if !sent.iter().any(|x| x.eq_ignore_ascii_case(s)) {
                sent.push(s.to_string());
            }
        }
        scopes.retain(|s| !USER_SCOPES.iter().any(|u| u.eq_ignore_ascii_case(s)));
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.inner.client_id)
                .append_pair("redirect_uri", redirect.as_str())
                .append_pair("scope", &sent.join(" "))
                .append_pair("state", &state)
                .append_pair("nonce", &nonce)
                .append_pair("code_challenge", &challenge(&verifier))
                .append_pair("code_challenge_method", "S256")
                .append_pair("response_mode", "query");
            if let Some(h) = params.login_hint {
                q.append_pair("login_hint", h);
            }
            if let Some(p) = params.prompt {
                q.append_pair("prompt", p);
            }
        }
        Ok(AuthorizationRequest {
            url,
            state,
            nonce: Secret::new(nonce),
            verifier: Secret::new(verifier),
            redirect_uri: redirect.to_string(),
            scopes: if scopes.is_empty() {
                params.scopes.iter().map(|s| s.to_string()).collect()
            } else {
                scopes
            },
        })
    }

    /// Redeems the `code` of the redirect that answered `request` (`state` as the
    /// redirect brought it), validates the id token, and saves the account and its
    /// tokens in the user partition.
    pub async fn redeem_code(
        &self,
        request: &AuthorizationRequest,
        code: &str,
        state: &str,
    ) -> Result<SignIn, AcquireError> {
        // constant time: the state is what ties the redirect to this browser
        if !same(state.as_bytes(), request.state.as_bytes()) {
            return Err(AcquireError::AuthorizationResponse(
                "the state is not the one this sign-in sent".into(),
            ));
        }
        if code.is_empty() {
            return Err(AcquireError::AuthorizationResponse("no code".into()));
        }
        let inner = &self.inner;
        let provider = inner.provider().await?;
        let started = inner.cache.two_level().clock().now_secs();
        let mut sent = request.scopes.clone();
        for s in USER_SCOPES {
            if !sent.iter().any(|x| x.eq_ignore_ascii_case(s)) {
                sent.push(s.to_string());
            }
        }
        let mut form = vec![
            ("grant_type", FormValue::Plain("authorization_code".into())),
            ("code", FormValue::Secret(Secret::new(code))),
            (
                "redirect_uri",
                FormValue::Plain(request.redirect_uri.clone()),
            ),
            ("code_verifier", FormValue::Secret(request.verifier.clone())),
        ];
        form.extend(inner.user_form());
        // a code is single-use: never sent twice
        let response = self
            .token_request(&provider, form, &sent, None, Replay::Once)
            .await?;
        let id_token = response.id_token.as_ref().ok_or_else(|| {
            AcquireError::IdToken("the token response has no id_token (was openid granted?)".into())
        })?;
        let claims = super::id_token::validate(
            &provider,
            &inner.client_id,
            id_token.expose(),
            Some(request.nonce.expose()),
            started,
        )
        .await?;
        let home = response
            .home_account_id_at(inner.authority.issuer_key())
            .map_err(|e| AcquireError::IdToken(e.to_string()))?
            .ok_or_else(|| AcquireError::IdToken("no account in the response".into()))?;
        let scopes: Vec<&str> = request.scopes.iter().map(String::as_str).collect();
        let job = Job::new(
            Grant::Refresh {
                home_account_id: home.clone(),
            },
            &scopes,
        );
        let token = self.save(&job, &response, started).await?;
        Ok(SignIn {
            home_account_id: home,
            token,
            subject: claims
                .get("sub")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
            username: claims
                .get("preferred_username")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn states_compare_exactly() {
        assert!(super::same(b"abc", b"abc"));
        assert!(!super::same(b"abc", b"abd"));
        assert!(!super::same(b"abc", b"abcd"));
    }

    #[test]
    fn s256_challenge_matches_rfc7636_appendix_b() {
        assert_eq!(
            super::challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
