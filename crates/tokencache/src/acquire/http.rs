//! The HTTP side: one `reqwest` client (rustls) with timeouts, and retries with backoff
//! on 5xx and 429 that honour `Retry-After`.
//!
//! A request is sent again only when the provider surely did not act on it, or when
//! acting twice is harmless. A connection that was never made is always tried again.
//! Grants that may be repeated (`Replay::Safe`: client credentials, OBO, discovery) are
//! also tried again after a 5xx, a 429, a timeout or a connection that broke after the
//! request was sent. A single-use grant (`Replay::Once`: a rotating refresh token, an
//! authorization code) is never sent twice once it may have reached the provider: a 5xx
//! can come after the provider used the grant up (it rotated the refresh token and then
//! failed to answer), and replaying it would make the provider revoke the whole grant.
//! Its error is returned; the next call redeems the rotated token if one was saved.
//!
//! The client authentication is made anew for every attempt (a `private_key_jwt`
//! assertion gets a new `jti` and `iat`; an assertion file is read again): a retry never
//! replays an assertion.
//!
//! Nothing here logs a body, a header value or a form field: only endpoints, statuses,
//! attempt counts and delays.

use std::time::Duration;

use futures::future::BoxFuture;

use super::client_auth::Authentication;
use super::error::{AcquireError, OAuthError, OAuthErrorCode};
use crate::schema::{Secret, TokenResponse};

/// Makes the client authentication of one attempt of a token request.
pub(crate) type Authenticate<'a> =
    dyn Fn() -> BoxFuture<'a, Result<Authentication, AcquireError>> + Send + Sync + 'a;

/// Timeouts and retries of provider calls.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    /// Bound of one request, connection included. Default 10 s.
    pub timeout: Duration,
    /// Bound of connecting. Default 3 s.
    pub connect_timeout: Duration,
    /// Retries after the first attempt. Default 2.
    pub max_retries: u32,
    /// The first backoff; doubles per retry. Default 200 ms.
    pub backoff: Duration,
    /// The longest backoff, and the longest `Retry-After` waited for (a longer one ends
    /// the retries with [`AcquireError::Status`] carrying it). Default 5 s.
    pub max_backoff: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_retries: 2,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Whether a request may be sent again after the provider may have acted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Repeating it is harmless (client credentials, OBO, discovery).
    Safe,
    /// It must reach the provider at most once (a rotating refresh token, a code).
    Once,
}

/// Largest response body read (a token response or a discovery document).
const MAX_BODY: usize = 1 << 20;

/// A form field value: plain, or a secret (kept redacted until it is encoded).
pub(crate) enum FormValue {
    Plain(String),
    Secret(Secret),
}

/// The client, shared by every call of an acquirer.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    options: HttpOptions,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("options", &self.options)
            .finish()
    }
}

/// One answer: status, `Retry-After`, body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Vec<u8>,
}

/// The answers a token endpoint is asked again after (when the request may be repeated).
fn token_retry_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// The outcome of one attempt.
enum Attempt {
    Answer(Answer),
    /// Not sent at all (connection refused, DNS): always safe to retry.
    NotSent(String),
    /// Sent, but no answer (timeout, reset): maybe acted on.
    Lost(AcquireError),
}

impl Http {
    pub(crate) fn new(options: HttpOptions) -> Result<Self, AcquireError> {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tokencache/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AcquireError::Config(format!("HTTP client: {}", e.without_url())))?;
        Ok(Self { client, options })
    }

    pub(crate) fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// GETs a JSON document (discovery), with retries.
    pub(crate) async fn get(&self, url: &url::Url) -> Result<Vec<u8>, AcquireError> {
        let shown = shown(url);
        let answer = self
            .get_with(url, &[], token_retry_status, Replay::Safe)
            .await?;
        if !(200..300).contains(&answer.status) {
            return Err(AcquireError::Status {
                endpoint: shown,
                status: answer.status,
                retry_after: answer.retry_after,
                excerpt: excerpt(&answer.body),
            });
        }
        Ok(answer.body)
    }

    /// GETs `url` with `headers` (values kept secret), asking again after an answer whose
    /// status `retry_status` accepts; any answer is returned as it is.
    pub(crate) async fn get_with(
        &self,
        url: &url::Url,
        headers: &[(&'static str, &Secret)],
        retry_status: fn(u16) -> bool,
        replay: Replay,
    ) -> Result<Answer, AcquireError> {
        let shown = shown(url);
        self.with_retries(&shown, replay, retry_status, || async {
            let mut req = self
                .client
                .get(url.clone())
                .header(reqwest::header::ACCEPT, "application/json");
            for (name, value) in headers {
                let mut v =
                    reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| {
                        AcquireError::Config(format!("the {name} header value is not valid"))
                    })?;
                v.set_sensitive(true);
                req = req.header(*name, v);
            }
            Ok(req)
        })
        .await
    }

    /// POSTs a form to a token endpoint, with retries, and the client authentication
    /// `authenticate` makes for each attempt; parses the token response or the OAuth
    /// error. The response is not checked for an access token (see
    /// [`check_usable`]): a refresh redemption keeps a rotated refresh token even from
    /// an answer it cannot use otherwise.
    pub(crate) async fn post_token(
        &self,
        endpoint: &url::Url,
        form: &[(&'static str, FormValue)],
        authenticate: &Authenticate<'_>,
        replay: Replay,
    ) -> Result<TokenResponse, AcquireError> {
        let shown = shown(endpoint);
        let answer = self
            .with_retries(&shown, replay, token_retry_status, || async {
                let auth = authenticate().await?;
                let body = encode_form(form.iter().chain(auth.form.iter()));
                let mut req = self
                    .client
                    .post(endpoint.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .header(reqwest::header::ACCEPT, "application/json")
                    .body(body.expose().to_string());
                if let Some(secret) = &auth.basic {
                    // RFC 6749 §2.3.1: both form-urlencoded before base64.
                    req = req.basic_auth(
                        form_encode(&auth.client_id),
                        Some(form_encode(secret.expose())),
                    );
                }
                Ok(req)
            })
            .await?;
        parse_token_answer(&shown, answer)
    }

    async fn with_retries<F, Fut>(
        &self,
        shown: &str,
        replay: Replay,
        retry_status: fn(u16) -> bool,
        make: F,
    ) -> Result<Answer, AcquireError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<reqwest::RequestBuilder, AcquireError>>,
    {
        let mut attempt = 0u32;
        loop {
            let outcome = self.once(shown, make().await?).await;
            let retries_left = attempt < self.options.max_retries;
            let delay = match &outcome {
                // The provider may have used a single-use grant before it failed.
                Attempt::Answer(_) if replay == Replay::Once => None,
                Attempt::Answer(a) if retry_status(a.status) => match a.retry_after {
                    Some(d) if d > self.options.max_backoff => {
                        // Not worth waiting for: report it, with the provider's delay.
                        return finish(shown, outcome);
                    }
                    Some(d) => Some(d),
                    None => Some(self.backoff(attempt)),
                },
                Attempt::Answer(_) => None,
                Attempt::NotSent(_) => Some(self.backoff(attempt)),
                Attempt::Lost(_) if replay == Replay::Safe => Some(self.backoff(attempt)),
                Attempt::Lost(_) => None,
            };
            match delay {
                Some(d) if retries_left => {
                    tracing::debug!(endpoint = shown, attempt, delay = ?d, "retrying");
                    tokio::time::sleep(d).await;
                    attempt += 1;
                }
                _ => return finish(shown, outcome),
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.options
            .backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.options.max_backoff)
    }

    async fn once(&self, shown: &str, req: reqwest::RequestBuilder) -> Attempt {
        let mut response = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Attempt::NotSent(describe(e)),
            Err(e) if e.is_timeout() => {
                return Attempt::Lost(AcquireError::Timeout {
                    endpoint: shown.to_string(),
                    after: self.options.timeout,
                })
            }
            Err(e) => {
                return Attempt::Lost(AcquireError::Transport {
                    endpoint: shown.to_string(),
                    message: describe(e),
                })
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len().saturating_add(chunk.len()) > MAX_BODY {
                        return Attempt::Lost(AcquireError::Malformed {
                            endpoint: shown.to_string(),
                            reason: format!("larger than {MAX_BODY} bytes"),
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Attempt::Lost(AcquireError::Timeout {
                        endpoint: shown.to_string(),
                        after: self.options.timeout,
                    })
                }
                Err(e) => {
                    return Attempt::Lost(AcquireError::Transport {
                        endpoint: shown.to_string(),
                        message: describe(e),
                    })
                }
            }
        }
        Attempt::Answer(Answer {
            status,
            retry_after,
            body,
        })
    }
}

fn finish(shown: &str, outcome: Attempt) -> Result<Answer, AcquireError> {
    match outcome {
        Attempt::Answer(a) => Ok(a),
        Attempt::NotSent(message) => Err(AcquireError::Transport {
            endpoint: shown.to_string(),
            message,
        }),
        Attempt::Lost(e) => Err(e),
    }
}

/// Characters of a body [`excerpt`] keeps at most.
pub const EXCERPT_CHARS: usize = 200;

/// A bounded, secret-free excerpt of an error body that is not an OAuth error (a
/// proxy's or gateway's page, a provider's plain-text complaint), for the error message:
/// HTML tags and control characters dropped, whitespace collapsed, at most
/// [`EXCERPT_CHARS`] characters; every run of 16 or more token characters (a JWT, a
/// secret, a code: letters, digits and `-._~+/=`) and every value that follows a word
/// naming a secret (`secret`, `password`, `assertion`, `token`, `code`, `key`, `Basic`,
/// `Bearer`, `Authorization`) is replaced by `[redacted]`. `None` when nothing is left.
pub fn excerpt(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    // no tags, no control characters, one space between words
    let mut plain = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                plain.push(' ');
            }
            _ if in_tag => {}
            c if c.is_control() || c.is_whitespace() => plain.push(' '),
            c => plain.push(c),
        }
    }
    let token_char = |c: char| c.is_ascii_alphanumeric() || "-._~+/=%".contains(c);
    let secret_word = |w: &str| {
        let w = w.to_ascii_lowercase();
        [
            "secret",
            "password",
            "assertion",
            "token",
            "code",
            "key",
            "basic",
            "bearer",
            "authorization",
        ]
        .iter()
        .any(|k| w.contains(k))
    };
    let mut out = String::new();
    let mut redact_next = false;
    let mut rest = plain.as_str();
    while let Some(c) = rest.chars().next() {
        if token_char(c) {
            let end = rest.find(|c: char| !token_char(c)).unwrap_or(rest.len());
            let word = &rest[..end];
            // `name=value`: judge the name and the value apart
            let (name, value) = match word.split_once('=') {
                Some((n, v)) if !n.is_empty() => (n, Some(v)),
                _ => (word, None),
            };
            if redact_next || name.len() >= 16 || word.len() >= 16 && value.is_none() {
                out.push_str("[redacted]");
                // `Authorization: Basic xyz`: the scheme, then its value
                redact_next = secret_word(word) && value.is_none();
            } else if let Some(v) = value {
                out.push_str(name);
                out.push('=');
                if secret_word(name) || v.len() >= 16 {
                    out.push_str("[redacted]");
                } else {
                    out.push_str(v);
                }
            } else {
                out.push_str(word);
                redact_next = secret_word(word);
            }
            rest = &rest[end..];
        } else {
            // a separator: `"`, `:`, spaces keep the pending redaction for the value
            if !matches!(c, '"' | ':' | ' ' | '\'' | '=') {
                redact_next = false;
            }
            if !(c == ' ' && out.ends_with(' ')) {
                out.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    let out = out.trim();
    if out.is_empty() {
        return None;
    }
    let mut cut: String = out.chars().take(EXCERPT_CHARS).collect();
    if cut.len() < out.len() {
        cut.push('…');
    }
    Some(cut)
}

/// A token endpoint answer: a token response (2xx), an OAuth error (a JSON body with
/// `error`), or a bare HTTP status. A 2xx body that is a JSON object is returned
/// whatever it holds: [`check_usable`] says whether it can be used.
fn parse_token_answer(shown: &str, answer: Answer) -> Result<TokenResponse, AcquireError> {
    if let Some(e) = oauth_error(&answer) {
        return Err(AcquireError::OAuth(Box::new(e)));
    }
    if !(200..300).contains(&answer.status) {
        return Err(AcquireError::Status {
            endpoint: shown.to_string(),
            status: answer.status,
            retry_after: answer.retry_after,
            excerpt: excerpt(&answer.body),
        });
    }
    // The schema error names the field, never its value.
    TokenResponse::from_json(&answer.body).map_err(|e| AcquireError::Malformed {
        endpoint: shown.to_string(),
        reason: e.to_string(),
    })
}

/// Whether a token response can be used: it has an access token, of type Bearer.
pub(crate) fn check_usable(shown: &str, response: &TokenResponse) -> Result<(), AcquireError> {
    let malformed = |reason: String| AcquireError::Malformed {
        endpoint: shown.to_string(),
        reason,
    };
    if response.access_token.is_none() {
        return Err(malformed("no access_token".into()));
    }
    if let Some(t) = &response.token_type {
        if !t.eq_ignore_ascii_case("bearer") {
            return Err(malformed(format!(
                "token_type {t:?} (only Bearer is supported)"
            )));
        }
    }
    Ok(())
}

/// The OAuth error in a body (RFC 6749 §5.2), whatever the status (some providers send
/// 200 with an error; Entra sends 400/401).
fn oauth_error(answer: &Answer) -> Option<OAuthError> {
    let v: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    let code = v.get("error")?.as_str()?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    Some(OAuthError {
        code: OAuthErrorCode::parse(code),
        description: s("error_description"),
        uri: s("error_uri"),
        status: answer.status,
        retry_after: answer.retry_after,
        suberror: s("suberror"),
        claims: s("claims"),
    })
}

/// `Retry-After`: delta seconds, or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate(v)?;
    let now = std::time::SystemTime::now();
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 requires senders to use.
fn httpdate(v: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u64
        + 1;
    let year: u64 = year.parse().ok()?;
    let hms: Vec<u64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
    let [h, mi, s] = hms.as_slice() else {
        return None;
    };
    if year < 1970 || !(1..=31).contains(&day) || *h > 23 || *mi > 59 || *s > 60 {
        return None;
    }
    // days from civil (Howard Hinnant's algorithm)
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

/// The form body, kept as a secret: it holds the client secret, assertions, codes.
fn encode_form<'a>(form: impl IntoIterator<Item = &'a (&'static str, FormValue)>) -> Secret {
    let mut out = String::new();
    for (k, v) in form {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&form_encode(k));
        out.push('=');
        out.push_str(&form_encode(match v {
            FormValue::Plain(s) => s,
            FormValue::Secret(s) => s.expose(),
        }));
    }
    Secret::new(out)
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An endpoint for logs and errors: scheme, host, port, path (no query, no userinfo).
pub(crate) fn shown(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// A reqwest error and its causes, without its URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
        // a date in the past: no wait
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            httpdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(httpdate("Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(httpdate("Sun, 06 Nov 1994 25:49:37 GMT"), None);
    }

    #[test]
    fn token_answers_are_typed() {
        let answer = |status: u16, body: &str| Answer {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        };
        let e = parse_token_answer(
            "e",
            answer(
                400,
                r#"{"error":"invalid_grant","error_description":"refresh token is expired"}"#,
            ),
        )
        .unwrap_err();
        match e {
            AcquireError::OAuth(o) => {
                assert_eq!(o.code, OAuthErrorCode::InvalidGrant);
                assert_eq!(o.description.as_deref(), Some("refresh token is expired"));
                assert_eq!(o.status, 400);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_token_answer("e", answer(502, "<html>bad gateway</html>")),
            Err(AcquireError::Status { status: 502, .. })
        ));
        let m = parse_token_answer(
            "e",
            answer(200, r#"{"access_token": "abc", "expires_in": "#),
        )
        .unwrap_err();
        assert!(matches!(m, AcquireError::Malformed { .. }), "{m:?}");
        assert!(!m.to_string().contains("abc"), "{m}");
        // parsed (a refresh token in it can be kept), but not usable
        let no_at = parse_token_answer(
            "e",
            answer(200, r#"{"token_type":"Bearer","refresh_token":"rt2"}"#),
        )
        .unwrap();
        assert_eq!(no_at.refresh_token.as_ref().unwrap().expose(), "rt2");
        assert!(matches!(
            check_usable("e", &no_at),
            Err(AcquireError::Malformed { .. })
        ));
        let pop = parse_token_answer(
            "e",
            answer(200, r#"{"access_token":"x","token_type":"pop"}"#),
        )
        .unwrap();
        assert!(matches!(
            check_usable("e", &pop),
            Err(AcquireError::Malformed { .. })
        ));
        let ok = parse_token_answer("e", answer(200, r#"{"access_token":"x","expires_in":60}"#))
            .unwrap();
        assert_eq!(ok.expires_in, Some(60));
    }

    #[test]
    fn forms_are_encoded_and_endpoints_shown_without_secrets() {
        let body = encode_form(&[
            ("grant_type", FormValue::Plain("client_credentials".into())),
            ("scope", FormValue::Plain("a b/c".into())),
            ("client_secret", FormValue::Secret(Secret::new("s&=+"))),
        ]);
        assert_eq!(
            body.expose(),
            "grant_type=client_credentials&scope=a+b%2Fc&client_secret=s%26%3D%2B"
        );
        assert!(!format!("{body:?}").contains("s&=+"));
        let u = url::Url::parse("https://user:pw@h.example/t/token?code=abc#x").unwrap();
        assert_eq!(shown(&u), "https://h.example/t/token");
    }

    #[test]
    fn error_bodies_are_excerpted_bounded_and_without_secrets() {
        let page = b"<html><head><title>502 Bad Gateway</title></head>\n<body>Realm does not exist</body></html>";
        let e = excerpt(page).unwrap();
        assert_eq!(e, "502 Bad Gateway Realm does not exist");
        // an echoed form, a JWT, a long secret, a JSON secret field: never kept
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlLXZhbHVl";
        let hostile = format!(
            "bad request: client_secret=app-secret&grant_type=client_credentials {jwt} \"password\": \"hunter2\" code abc12 key: xyz opaque 0123456789abcdefXYZ Authorization: Basic dTpw YXBwOmFwcC1zZWNyZXQ="
        );
        let e = excerpt(hostile.as_bytes()).unwrap();
        for secret in [
            "app-secret",
            "eyJhbGci",
            "hunter2",
            "abc12",
            "xyz",
            "0123456789abcdef",
            "dTpw",
            "YXBwOmFwcC1zZWNyZXQ",
        ] {
            assert!(!e.contains(secret), "{secret} in {e}");
        }
        assert!(e.contains("bad request"), "{e}");
        assert!(e.contains("grant_type="), "{e}");
        // bounded, whatever comes
        let huge = "word ".repeat(100_000);
        let e = excerpt(huge.as_bytes()).unwrap();
        assert!(e.chars().count() <= EXCERPT_CHARS + 1, "{}", e.len());
        assert_eq!(excerpt(b"   \n\t "), None);
        assert_eq!(excerpt(b""), None);
        assert!(excerpt(&[0xff, 0xfe, b'o', b'k']).unwrap().ends_with("ok"));
    }
}
