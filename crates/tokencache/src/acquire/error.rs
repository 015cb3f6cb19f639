//! What acquiring a token can fail with: one variant per kind of failure, and the
//! provider's OAuth error (RFC 6749 §5.2) typed by its `error` code.
//!
//! Errors never hold a token, a secret or an assertion: only codes, descriptions the
//! provider wrote, endpoints and statuses. They are `Clone` so that every caller waiting
//! on one token request (single flight) gets the same error.

use std::sync::Arc;
use std::time::Duration;

/// The `error` code of an OAuth error response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OAuthErrorCode {
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_client`: the client authentication failed (wrong secret, key, client id).
    InvalidClient,
    /// `invalid_grant`: the code, refresh token or assertion is invalid, expired,
    /// revoked or was issued to another client.
    InvalidGrant,
    /// `unauthorized_client`.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `invalid_scope`.
    InvalidScope,
    /// `invalid_target` (RFC 8707: an unknown resource).
    InvalidTarget,
    /// `interaction_required` (the user must sign in again, MFA, conditional access).
    InteractionRequired,
    /// `login_required`.
    LoginRequired,
    /// `consent_required`.
    ConsentRequired,
    /// `access_denied`.
    AccessDenied,
    /// `temporarily_unavailable`.
    TemporarilyUnavailable,
    /// `server_error`.
    ServerError,
    /// Any other code, as sent.
    Other(String),
}

impl OAuthErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            OAuthErrorCode::Other(s) => s,
            known => known.known_str().unwrap_or_default(),
        }
    }

    /// A standard code's wire form (`None` for [`Other`](Self::Other)): a bounded set,
    /// for labels such as metrics.
    pub fn known_str(&self) -> Option<&'static str> {
        Some(match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::InvalidTarget => "invalid_target",
            OAuthErrorCode::InteractionRequired => "interaction_required",
            OAuthErrorCode::LoginRequired => "login_required",
            OAuthErrorCode::ConsentRequired => "consent_required",
            OAuthErrorCode::AccessDenied => "access_denied",
            OAuthErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthErrorCode::ServerError => "server_error",
            OAuthErrorCode::Other(_) => return None,
        })
    }

    /// Parses a wire code.
    pub fn parse(code: &str) -> Self {
        match code {
            "invalid_request" => OAuthErrorCode::InvalidRequest,
            "invalid_client" => OAuthErrorCode::InvalidClient,
            "invalid_grant" => OAuthErrorCode::InvalidGrant,
            "unauthorized_client" => OAuthErrorCode::UnauthorizedClient,
            "unsupported_grant_type" => OAuthErrorCode::UnsupportedGrantType,
            "invalid_scope" => OAuthErrorCode::InvalidScope,
            "invalid_target" => OAuthErrorCode::InvalidTarget,
            "interaction_required" => OAuthErrorCode::InteractionRequired,
            "login_required" => OAuthErrorCode::LoginRequired,
            "consent_required" => OAuthErrorCode::ConsentRequired,
            "access_denied" => OAuthErrorCode::AccessDenied,
            "temporarily_unavailable" => OAuthErrorCode::TemporarilyUnavailable,
            "server_error" => OAuthErrorCode::ServerError,
            other => OAuthErrorCode::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error response from the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// The `error` code.
    pub code: OAuthErrorCode,
    /// `error_description`, as the provider wrote it.
    pub description: Option<String>,
    /// `error_uri`.
    pub uri: Option<String>,
    /// The HTTP status it came with.
    pub status: u16,
    /// The `Retry-After` it came with (a 429 or 503 whose delay was longer than the
    /// retries wait for).
    pub retry_after: Option<Duration>,
    /// `suberror` (Entra: `consent_required`, `basic_action`, ...), when sent.
    pub suberror: Option<String>,
    /// `claims` (Entra's conditional-access challenge), to pass back on a forced refresh.
    pub claims: Option<String>,
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {})", self.code, self.status)?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// Why a token could not be acquired.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AcquireError {
    /// The provider answered with an OAuth error.
    #[error("the provider refused the token request: {0}")]
    OAuth(Box<OAuthError>),
    /// No token can be had without the user: no refresh token is cached (or the user
    /// signed out). Send the user to sign in.
    #[error("interaction required: {0}")]
    InteractionRequired(String),
    /// The user signed out while the token request was in flight: the token it got is
    /// not cached and not returned.
    #[error("the user signed out while the token was being acquired")]
    SignedOut,
    /// The provider could not be reached, or the connection broke.
    #[error("the request to {endpoint} failed: {message}")]
    Transport {
        /// The endpoint (no query, no credentials).
        endpoint: String,
        /// What happened.
        message: String,
    },
    /// The provider did not answer in time (after the retries, if any).
    #[error("the request to {endpoint} timed out after {after:?}")]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// The per-request timeout.
        after: Duration,
    },
    /// The provider answered with an HTTP error that is not an OAuth error response.
    #[error("{endpoint} answered HTTP {status}{}{}", retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default(), excerpt.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    Status {
        /// The endpoint.
        endpoint: String,
        /// The status code.
        status: u16,
        /// The `Retry-After` the provider sent.
        retry_after: Option<Duration>,
        /// The start of the body, bounded and with anything that may be a secret
        /// replaced ([`crate::acquire::http::excerpt`]); `None` when it was empty.
        excerpt: Option<String>,
    },
    /// The provider's answer could not be understood (not JSON, no access token...).
    #[error("the answer of {endpoint} is malformed: {reason}")]
    Malformed {
        /// The endpoint.
        endpoint: String,
        /// What is wrong (never the body itself: it may hold tokens).
        reason: String,
    },
    /// Discovery failed, or the discovery document is not usable.
    #[error("discovery of {authority} failed: {reason}")]
    Discovery {
        /// The authority.
        authority: String,
        /// Why.
        reason: String,
    },
    /// The provider is configured so that no token can be had from it, and trying again
    /// will not change that: its discovery document names another issuer than the
    /// authority, has no `token_endpoint` or `jwks_uri` (or a non-HTTPS one), or the
    /// authority itself is not HTTPS (and not on a loopback host). An operator must fix
    /// the configuration (`tokencache` exits 2; `serve` answers 502
    /// `provider_misconfigured`, without `Retry-After`).
    #[error("the provider of {authority} is misconfigured: {reason}")]
    ProviderMisconfigured {
        /// The authority (no query, no credentials).
        authority: String,
        /// What is wrong.
        reason: String,
    },
    /// The id token did not validate (signature, issuer, audience, expiry, nonce).
    #[error("the id token is not valid: {0}")]
    IdToken(String),
    /// The authorization response does not belong to the request (state mismatch, error
    /// from the authorization endpoint, missing code).
    #[error("the authorization response is not valid: {0}")]
    AuthorizationResponse(String),
    /// The acquirer's configuration or the call's input is not usable.
    #[error("invalid configuration or input: {0}")]
    Config(String),
    /// The cache failed (reading or saving).
    #[error("the token cache failed: {0}")]
    Cache(Arc<crate::Error>),
    /// A client credential cannot be used: a client assertion file that is missing,
    /// empty, not a JWT or expired; a secret or certificate file that cannot be read; a
    /// certificate that expired or does not match its key; a managed identity that
    /// could not give its assertion. Names the credential (a file, a variable), never
    /// its content. Checked before any request is sent.
    #[error("{credential}: {reason}")]
    Credential {
        /// Which credential: its kind and file (`client assertion file /var/run/...`).
        credential: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token request's task ended without an answer (it panicked, or the runtime
    /// shut down under it). Trying again may succeed.
    #[error("the token request ended without an answer (its task stopped)")]
    Interrupted,
}

impl AcquireError {
    /// The OAuth error code, when the provider sent one.
    pub fn oauth_code(&self) -> Option<&OAuthErrorCode> {
        match self {
            AcquireError::OAuth(e) => Some(&e.code),
            _ => None,
        }
    }

    /// Whether only the user can fix this (sign in again, consent, MFA): an
    /// `interaction_required`-like code, an `invalid_grant` (the refresh token or code is
    /// dead), or no refresh token at all. MSAL raises its "UI required" error for these.
    pub fn requires_interaction(&self) -> bool {
        match self {
            AcquireError::InteractionRequired(_) | AcquireError::SignedOut => true,
            AcquireError::OAuth(e) => matches!(
                e.code,
                OAuthErrorCode::InteractionRequired
                    | OAuthErrorCode::LoginRequired
                    | OAuthErrorCode::ConsentRequired
                    | OAuthErrorCode::InvalidGrant
            ),
            _ => false,
        }
    }

    /// Whether trying again later may succeed (the provider was down, slow or busy).
    pub fn is_temporary(&self) -> bool {
        match self {
            AcquireError::Transport { .. }
            | AcquireError::Timeout { .. }
            | AcquireError::Interrupted => true,
            AcquireError::Status { status, .. } => *status >= 500 || *status == 429,
            AcquireError::OAuth(e) => matches!(
                e.code,
                OAuthErrorCode::TemporarilyUnavailable | OAuthErrorCode::ServerError
            ),
            _ => false,
        }
    }

    /// The `Retry-After` the provider sent with this error (a 429 or 503), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AcquireError::OAuth(e) => e.retry_after,
            AcquireError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short machine-readable name: the OAuth code, or the kind of failure.
    pub fn code(&self) -> &str {
        match self {
            AcquireError::OAuth(e) => e.code.as_str(),
            AcquireError::InteractionRequired(_) => "interaction_required",
            AcquireError::SignedOut => "signed_out",
            AcquireError::Transport { .. } => "transport",
            AcquireError::Timeout { .. } => "timeout",
            AcquireError::Status { .. } => "http_status",
            AcquireError::Malformed { .. } => "malformed_response",
            AcquireError::Discovery { .. } => "discovery",
            AcquireError::ProviderMisconfigured { .. } => "provider_misconfigured",
            AcquireError::IdToken(_) => "invalid_id_token",
            AcquireError::AuthorizationResponse(_) => "invalid_authorization_response",
            AcquireError::Config(_) => "config",
            AcquireError::Cache(_) => "cache",
            AcquireError::Interrupted => "interrupted",
            AcquireError::Credential { .. } => "credential",
        }
    }
}

impl From<crate::Error> for AcquireError {
    fn from(e: crate::Error) -> Self {
        AcquireError::Cache(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_kept() {
        for c in [
            "invalid_request",
            "invalid_client",
            "invalid_grant",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_scope",
            "invalid_target",
            "interaction_required",
            "login_required",
            "consent_required",
            "access_denied",
            "temporarily_unavailable",
            "server_error",
            "authorization_pending",
        ] {
            assert_eq!(OAuthErrorCode::parse(c).as_str(), c);
        }
        assert_eq!(
            OAuthErrorCode::parse("authorization_pending"),
            OAuthErrorCode::Other("authorization_pending".into())
        );
    }

    #[test]
    fn interaction_and_temporary_are_told_apart() {
        let oauth = |code: &str| {
            AcquireError::OAuth(Box::new(OAuthError {
                code: OAuthErrorCode::parse(code),
                description: Some("d".into()),
                uri: None,
                status: 400,
                retry_after: None,
                suberror: None,
                claims: None,
            }))
        };
        assert!(oauth("invalid_grant").requires_interaction());
        assert!(oauth("interaction_required").requires_interaction());
        assert!(!oauth("invalid_client").requires_interaction());
        assert!(!oauth("invalid_client").is_temporary());
        assert!(oauth("temporarily_unavailable").is_temporary());
        let status = AcquireError::Status {
            endpoint: "e".into(),
            status: 503,
            retry_after: None,
            excerpt: None,
        };
        assert!(status.is_temporary());
        assert_eq!(oauth("invalid_scope").code(), "invalid_scope");
        assert_eq!(
            oauth("invalid_scope").to_string(),
            "the provider refused the token request: invalid_scope (HTTP 400): d"
        );
    }
}
