//! [`SchemaError`]: why a blob or a token response could not be used.

use thiserror::Error;

/// The largest blob (or token response) accepted; larger input is rejected before parsing.
pub const MAX_BLOB_BYTES: usize = 16 * 1024 * 1024;

/// Why a partition blob, a token response, an id token or `client_info` could not be read.
///
/// `Display` is one line and never contains a secret: paths name the section, the
/// credential key (truncated, control characters replaced) and the field, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The input is not UTF-8.
    #[error("blob is not UTF-8 (invalid byte at offset {valid_up_to})")]
    NotUtf8 {
        /// Length of the longest valid UTF-8 prefix.
        valid_up_to: usize,
    },
    /// The input is not JSON (a syntax error).
    #[error("blob is not JSON: {reason} at line {line} column {column}")]
    NotJson {
        /// What the JSON parser expected (never contains input text).
        reason: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The input ends in the middle of a JSON value.
    #[error("blob is truncated: JSON ends early at line {line} column {column}")]
    Truncated {
        /// 1-based line of the end.
        line: usize,
        /// 1-based column of the end.
        column: usize,
    },
    /// A value has the wrong JSON type.
    #[error("{path}: expected {expected} (line {line} column {column})")]
    WrongType {
        /// Where, e.g. `AccessToken.<key>.expires_on`.
        path: String,
        /// What was expected, e.g. `string of seconds`.
        expected: &'static str,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
    },
    /// A required field is absent.
    #[error("{path}: missing field `{field}`")]
    MissingField {
        /// The record, e.g. `AccessToken.<key>`.
        path: String,
        /// The absent field.
        field: &'static str,
    },
    /// The input is larger than [`MAX_BLOB_BYTES`].
    #[error("blob is too large: {size} bytes (limit {limit})")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The id token (or another JWT) could not be decoded.
    #[error("bad id token: {reason}")]
    BadIdToken {
        /// Why (never contains the token).
        reason: &'static str,
    },
    /// The `client_info` of a token response could not be decoded.
    #[error("bad client_info: {reason}")]
    BadClientInfo {
        /// Why (never contains the value).
        reason: &'static str,
    },
}

impl SchemaError {
    pub(crate) fn wrong_type(path: String, expected: &'static str) -> Self {
        SchemaError::WrongType {
            path,
            expected,
            line: 0,
            column: 0,
        }
    }

    /// Maps a serde_json error that did not come from our own checks.
    pub(crate) fn from_json(e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Eof => SchemaError::Truncated {
                line: e.line(),
                column: e.column(),
            },
            _ => {
                // serde_json appends " at line L column C"; keep only the reason.
                // Syntax messages never quote input text.
                let full = e.to_string();
                let reason = match full.rfind(" at line ") {
                    Some(i) => full[..i].to_owned(),
                    None => full,
                };
                SchemaError::NotJson {
                    reason,
                    line: e.line(),
                    column: e.column(),
                }
            }
        }
    }

    /// Fills in the position of a [`SchemaError::WrongType`] raised during parsing.
    pub(crate) fn at(mut self, e: &serde_json::Error) -> Self {
        if let SchemaError::WrongType { line, column, .. } = &mut self {
            *line = e.line();
            *column = e.column();
        }
        self
    }
}

/// A credential key or field name made safe for a one-line message: control characters
/// replaced, at most 80 characters.
pub(crate) fn sanitize(s: &str) -> String {
    const MAX: usize = 80;
    let mut out = String::with_capacity(s.len().min(MAX + 3));
    for (n, c) in s.chars().enumerate() {
        if n == MAX {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { '?' } else { c });
    }
    out
}
