//! Token requests and responses: what [`Partition::add_token_response`](super::Partition::add_token_response)
//! stores, and the decoding of `client_info` and id token claims (no signature check).

use super::de::{reject_scalars_and_seq, AnyValue, Ctx, Key, Scalar, Slot};
use super::error::{SchemaError, MAX_BLOB_BYTES};
use super::records::Extra;
use super::secret::Secret;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::cell::RefCell;
use std::fmt;

/// What was asked of the token endpoint; the context a response is stored under.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    /// The client (application) id.
    pub client_id: &'a str,
    /// Authority host, e.g. `login.microsoftonline.com` (stored lower-cased).
    pub environment: &'a str,
    /// Tenant of the authority.
    pub realm: &'a str,
    /// Requested scopes; the access token's target when the response has no `scope`.
    pub scopes: &'a [&'a str],
    /// OBO: the raw incoming assertion. Its hash (base64url SHA-256, see
    /// [`crate::partition::assertion_hash`]) is stored as `user_assertion_hash`.
    pub user_assertion: Option<&'a str>,
}

/// A successful token endpoint response body.
///
/// `Debug` redacts the tokens. Numbers (`expires_in`, ...) may be JSON numbers or numeric
/// strings (AAD v1-like endpoints send strings); other fields are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: Option<Secret>,
    /// Token type (`Bearer` when absent).
    pub token_type: Option<String>,
    /// Lifetime of the access token in seconds.
    pub expires_in: Option<i64>,
    /// Extended lifetime in seconds (Entra ID).
    pub ext_expires_in: Option<i64>,
    /// Suggested proactive refresh, seconds from now (Entra ID).
    pub refresh_in: Option<i64>,
    /// The refresh token.
    pub refresh_token: Option<Secret>,
    /// The id token (a JWT).
    pub id_token: Option<Secret>,
    /// base64url JSON `{"uid": ..., "utid": ...}` (Entra ID, when `client_info=1` was sent).
    pub client_info: Option<String>,
    /// Granted scopes, space-separated.
    pub scope: Option<String>,
    /// FOCI family id (`"1"`) when the client is in a family.
    pub foci: Option<String>,
    /// Other fields of the body.
    pub extra: Extra,
}

impl TokenResponse {
    /// The home account id the response names, as MSAL derives it: `uid.utid` from
    /// `client_info`, else the id token's `sub`; `None` for app tokens.
    pub fn home_account_id(&self) -> Result<Option<String>, SchemaError> {
        if let Some(raw) = self
            .client_info
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            if let Some(home) = ClientInfo::decode(raw)?.home_account_id() {
                return Ok(Some(home));
            }
        }
        match &self.id_token {
            Some(t) => Ok(decode_jwt_claims(t.expose())?.sub),
            None => Ok(None),
        }
    }

    /// The home account id the response names for a provider of issuer key
    /// `issuer_key` ([`crate::issuer::issuer_key`]): `None` (Microsoft Entra) as
    /// [`home_account_id`](Self::home_account_id); `Some(k)` (any other provider) the id
    /// token's `sub` qualified by the issuer, `{sub}.{k}` — `client_info`, which only
    /// Entra sends, is not read. `None` when the response has no id token.
    pub fn home_account_id_at(
        &self,
        issuer_key: Option<&str>,
    ) -> Result<Option<String>, SchemaError> {
        let Some(k) = issuer_key else {
            return self.home_account_id();
        };
        match &self.id_token {
            Some(t) => Ok(decode_jwt_claims(t.expose())?
                .sub
                .filter(|s| !s.is_empty())
                .map(|s| format!("{s}.{k}"))),
            None => Ok(None),
        }
    }

    /// Parses a token endpoint JSON body. Input over 16 MiB is rejected before parsing.
    pub fn from_json(bytes: &[u8]) -> Result<TokenResponse, SchemaError> {
        if bytes.len() > MAX_BLOB_BYTES {
            return Err(SchemaError::TooLarge {
                size: bytes.len(),
                limit: MAX_BLOB_BYTES,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| SchemaError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        let slot = RefCell::new(None);
        let mut d = serde_json::Deserializer::from_str(text);
        let r = ResponseSeed { slot: &slot }
            .deserialize(&mut d)
            .and_then(|v| d.end().map(|()| v));
        r.map_err(|e| match slot.borrow_mut().take() {
            Some(err) => err.at(&e),
            None => SchemaError::from_json(&e),
        })
    }
}

impl<'de> Deserialize<'de> for TokenResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let slot = RefCell::new(None);
        ResponseSeed { slot: &slot }.deserialize(d)
    }
}

struct ResponseSeed<'a> {
    slot: &'a Slot,
}

impl<'de> DeserializeSeed<'de> for ResponseSeed<'_> {
    type Value = TokenResponse;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TokenResponse, D::Error> {
        d.deserialize_any(self)
    }
}

impl ResponseSeed<'_> {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            section: "token_response",
            key: "",
            slot: self.slot,
        }
    }
    fn reject<E: de::Error>(&self) -> E {
        self.ctx().wrong("", "object")
    }
}

/// A duration in seconds: a JSON integer or a string of an integer.
fn opt_duration<E: de::Error>(ctx: Ctx<'_>, f: &str, v: Scalar) -> Result<Option<i64>, E> {
    ctx.opt_secs(f, v)
        .map_err(|_: E| ctx.wrong(f, "integer seconds (number or numeric string)"))
}

impl<'de> Visitor<'de> for ResponseSeed<'_> {
    type Value = TokenResponse;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a token response object")
    }
    fn visit_unit<E: de::Error>(self) -> Result<TokenResponse, E> {
        Err(self.reject())
    }
    reject_scalars_and_seq!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TokenResponse, A::Error> {
        let ctx = self.ctx();
        let mut r = TokenResponse::default();
        while let Some(k) = map.next_key::<Key<'de>>()? {
            let f = k.as_str();
            match f {
                "access_token" => {
                    r.access_token = ctx.opt_string(f, map.next_value()?)?.map(Secret::new)
                }
                "refresh_token" => {
                    r.refresh_token = ctx.opt_string(f, map.next_value()?)?.map(Secret::new)
                }
                "id_token" => r.id_token = ctx.opt_string(f, map.next_value()?)?.map(Secret::new),
                "token_type" => r.token_type = ctx.opt_string(f, map.next_value()?)?,
                "client_info" => r.client_info = ctx.opt_string(f, map.next_value()?)?,
                "scope" => r.scope = ctx.opt_string(f, map.next_value()?)?,
                "foci" => {
                    // Some servers send the family id as a number.
                    r.foci = match map.next_value()? {
                        Scalar::Int(n) => Some(n.to_string()),
                        Scalar::UInt(n) => Some(n.to_string()),
                        v => ctx.opt_string(f, v)?,
                    }
                }
                "expires_in" => r.expires_in = opt_duration(ctx, f, map.next_value()?)?,
                "ext_expires_in" => r.ext_expires_in = opt_duration(ctx, f, map.next_value()?)?,
                "refresh_in" => r.refresh_in = opt_duration(ctx, f, map.next_value()?)?,
                _ => {
                    let v = map.next_value_seed(AnyValue)?;
                    r.extra.insert(k.into_owned(), v);
                }
            }
        }
        Ok(r)
    }
}

/// base64url, with or without padding.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Claims of a JWT that the cache uses (decoded without any signature check).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JwtClaims {
    /// `oid`: object id of the user (Entra ID).
    pub oid: Option<String>,
    /// `tid`: tenant id (Entra ID).
    pub tid: Option<String>,
    /// `sub`: subject.
    pub sub: Option<String>,
    /// `preferred_username`.
    pub preferred_username: Option<String>,
    /// `upn` (ADFS).
    pub upn: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `name`: display name.
    pub name: Option<String>,
    /// `exp`: expiry (Unix seconds).
    pub exp: Option<i64>,
    /// `home_oid` (Entra optional claim): a guest's object id in their home tenant.
    pub home_oid: Option<String>,
    /// `idp`: who authenticated the user; for Entra guests the home tenant's issuer
    /// (`https://sts.windows.net/{home tenant id}/`).
    pub idp: Option<String>,
    /// `iss`: the issuer (decides how the user is named: [`crate::issuer::account_of`]).
    pub iss: Option<String>,
}

impl JwtClaims {
    /// The MSAL home account id of the user these claims describe, as far as they tell:
    /// for an Entra B2B guest whose token carries `home_oid` and an `idp` of the form
    /// `https://sts.windows.net/{tenant}/` (or `https://login.microsoftonline.com/{tenant}/…`),
    /// `{home_oid}.{that tenant}`; otherwise `{oid}.{tid}`, which for a guest names the
    /// user in the *resource* tenant (the web app then knows the user by another id: pass
    /// it explicitly when saving). `None` when the claims carry neither.
    pub fn home_account_id(&self) -> Option<String> {
        let idp_tenant = self.idp.as_deref().and_then(|idp| {
            let rest = idp
                .strip_prefix("https://sts.windows.net/")
                .or_else(|| idp.strip_prefix("https://login.microsoftonline.com/"))?;
            let t = rest.split('/').next()?;
            (!t.is_empty()).then_some(t)
        });
        if let (Some(home_oid), Some(tenant)) = (self.home_oid.as_deref(), idp_tenant) {
            return Some(format!("{home_oid}.{tenant}"));
        }
        Some(format!("{}.{}", self.oid.as_deref()?, self.tid.as_deref()?))
    }

    /// The username MSAL stores: `preferred_username`, else `upn`, else `email`.
    pub fn username(&self) -> Option<&str> {
        self.preferred_username
            .as_deref()
            .or(self.upn.as_deref())
            .or(self.email.as_deref())
    }
}

/// Decodes the payload claims of a JWT (`header.payload[.signature]`) without verifying
/// it, as MSAL does for id tokens. Errors never include the token.
pub fn decode_jwt_claims(jwt: &str) -> Result<JwtClaims, SchemaError> {
    if jwt.len() > MAX_BLOB_BYTES {
        return Err(SchemaError::BadIdToken {
            reason: "too large",
        });
    }
    let mut parts = jwt.split('.');
    let (_header, payload) = match (parts.next(), parts.next()) {
        (Some(h), Some(p)) if !p.is_empty() => (h, p),
        _ => {
            return Err(SchemaError::BadIdToken {
                reason: "not a JWT (expected header.payload.signature)",
            })
        }
    };
    let bytes =
        B64URL
            .decode(payload.trim_end_matches('='))
            .map_err(|_| SchemaError::BadIdToken {
                reason: "payload is not base64url",
            })?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| SchemaError::BadIdToken {
            reason: "payload is not a JSON object",
        })?;
    let s = |k: &str| map.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(JwtClaims {
        oid: s("oid"),
        tid: s("tid"),
        sub: s("sub"),
        preferred_username: s("preferred_username"),
        upn: s("upn"),
        email: s("email"),
        name: s("name"),
        home_oid: s("home_oid"),
        idp: s("idp"),
        iss: s("iss"),
        exp: map.get("exp").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        }),
    })
}

/// `client_info` decoded: `uid` and `utid` (user and home tenant ids).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientInfo {
    /// User object id in the home tenant.
    pub uid: Option<String>,
    /// Home tenant id.
    pub utid: Option<String>,
}

impl ClientInfo {
    /// Decodes base64url JSON `client_info`.
    pub fn decode(raw: &str) -> Result<ClientInfo, SchemaError> {
        let bytes = B64URL
            .decode(raw.trim().trim_end_matches('='))
            .map_err(|_| SchemaError::BadClientInfo {
                reason: "not base64url",
            })?;
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes)
            .map_err(|_| SchemaError::BadClientInfo {
                reason: "not a JSON object",
            })?;
        let s = |k: &str| map.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        Ok(ClientInfo {
            uid: s("uid"),
            utid: s("utid"),
        })
    }

    /// `uid.utid` when both are present, the MSAL home account id.
    pub fn home_account_id(&self) -> Option<String> {
        match (&self.uid, &self.utid) {
            (Some(u), Some(t)) => Some(format!("{u}.{t}")),
            _ => None,
        }
    }
}
