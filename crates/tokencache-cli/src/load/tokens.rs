//! The run's own fake tokens: each save carries a unique, increasing id inside its
//! access token's secret, so the checker can tell which save a read returned and
//! whether it is older than another (`cached_at` has one-second granularity; ids do
//! not). The secrets are the tool's own fakes and are still never printed.

use serde_json::json;
use tokencache::sample;
use tokencache::schema::SchemaError;
use tokencache::TokenResponse;

/// What every fake access token of the run starts with.
const TAG: &str = "tcload.";

/// Scopes per user: saves and reads spread over them (one access token each).
pub(super) const SCOPES: usize = 3;

/// The scope of index `k` (`k < SCOPES`).
pub(super) fn scope(k: usize) -> String {
    format!("api://load/scope{k}")
}

/// A user token response for `oid` in `tid` and the one scope `scope`, valid an hour,
/// whose access token names save `id`.
pub(super) fn response(
    oid: &str,
    tid: &str,
    scope: &str,
    id: u64,
) -> Result<TokenResponse, SchemaError> {
    let body = json!({
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": 3600,
        "ext_expires_in": 3600,
        // Padded to the size of a real access token (~1 kB).
        "access_token": format!("{TAG}{id}.{}", "a".repeat(1000)),
        "refresh_token": format!("0.AR{id}.{}", "r".repeat(700)),
        "client_info": sample::client_info(oid, tid),
    });
    TokenResponse::from_json(body.to_string().as_bytes())
}

/// The save id inside a fake access token's secret, or `None` for a token that is
/// not one of the run's.
pub(super) fn id_of(secret: &str) -> Option<u64> {
    let rest = secret.strip_prefix(TAG)?;
    rest.split_once('.')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_comes_back_out_of_the_token() {
        let r = response("oid", "tid", &scope(1), 42).unwrap();
        let secret = r.access_token.as_ref().unwrap();
        assert_eq!(id_of(secret.expose()), Some(42));
        assert_eq!(r.scope.as_deref(), Some("api://load/scope1"));
        assert_eq!(id_of("eyJhbGciOi.x.y"), None);
        assert_eq!(id_of("tcload.x.y"), None);
        assert_eq!(id_of("tcload.7"), None);
    }
}
