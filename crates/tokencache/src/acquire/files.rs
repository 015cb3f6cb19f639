//! Credentials read from files: a secret or a certificate re-read when its file changes
//! (`Watched`, [`SecretFile`]), and a client assertion read for every request
//! (`read_assertion_file`).
//!
//! Rotation without restart: a mounted Kubernetes secret is replaced by the kubelet
//! (a symbolic link swapped to a new folder), a certificate file by the operator. A
//! watched credential looks at its files' metadata (modification time, size, inode) at
//! most every [`DEFAULT_CHECK_EVERY`] and reads them again when it changed; a new content
//! that does not load (a half-written file, an expired certificate) is logged and the
//! one in use is kept. Nothing read from a file is ever logged: only its path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::error::AcquireError;
use crate::schema::Secret;

/// How often a watched credential file is checked for a change, at most.
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(5);

/// What a file looked like when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    // follows symbolic links: a swapped link shows as the new target's metadata
    let m = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode,
    })
}

/// Turns the files' contents into the credential.
type Load<T> = dyn Fn(&[Vec<u8>]) -> Result<T, AcquireError> + Send + Sync;

struct State<T> {
    value: Arc<T>,
    stamps: Vec<Stamp>,
    checked: Instant,
    /// The stamps of a change that did not load (logged once, tried again when the files
    /// change again).
    refused: Option<Vec<Stamp>>,
}

/// A credential made from files, made again when one of them changes.
pub(crate) struct Watched<T> {
    paths: Vec<PathBuf>,
    every: Duration,
    load: Box<Load<T>>,
    state: Mutex<State<T>>,
}

impl<T> std::fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("paths", &self.paths)
            .field("check_every", &self.every)
            .finish_non_exhaustive()
    }
}

/// Reads every file, naming the one that failed.
fn read_all(what: &str, paths: &[PathBuf]) -> Result<(Vec<Vec<u8>>, Vec<Stamp>), AcquireError> {
    let mut contents = Vec::with_capacity(paths.len());
    let mut stamps = Vec::with_capacity(paths.len());
    for p in paths {
        let unreadable = |e: std::io::Error| AcquireError::Credential {
            credential: format!("{what} {}", p.display()),
            reason: format!("cannot be read: {e}"),
        };
        // the stamp first: a change during the read is seen at the next check
        stamps.push(stamp(p).map_err(unreadable)?);
        contents.push(std::fs::read(p).map_err(unreadable)?);
    }
    Ok((contents, stamps))
}

impl<T> Watched<T> {
    /// Reads `paths` and loads the credential (an error is a start-up error), to be
    /// re-read when a file changes, checked at most every `every`.
    pub(crate) fn open(
        what: &'static str,
        paths: Vec<PathBuf>,
        every: Duration,
        load: Box<Load<T>>,
    ) -> Result<Self, AcquireError> {
        let (contents, stamps) = read_all(what, &paths)?;
        let value = Arc::new(load(&contents)?);
        Ok(Self {
            paths,
            every,
            load,
            state: Mutex::new(State {
                value,
                stamps,
                checked: Instant::now(),
                refused: None,
            }),
        })
    }

    /// The credential loaded last, without looking at the files (for `Debug`).
    pub(crate) fn loaded(&self) -> Arc<T> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .value
            .clone()
    }

    /// The credential now: the one loaded, or a new one when a file changed since.
    pub(crate) fn current(&self, what: &str) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() < self.every {
            return state.value.clone();
        }
        state.checked = Instant::now();
        let now: Result<Vec<Stamp>, _> = self.paths.iter().map(|p| stamp(p)).collect();
        let Ok(now) = now else {
            // gone for a moment (a rotation in progress): keep what works
            return state.value.clone();
        };
        if now == state.stamps || state.refused.as_ref() == Some(&now) {
            return state.value.clone();
        }
        let loaded = read_all(what, &self.paths)
            .and_then(|(contents, stamps)| (self.load)(&contents).map(|v| (v, stamps)));
        match loaded {
            Ok((value, stamps)) => {
                tracing::info!(files = ?self.paths, "{what}: changed on disk, read again");
                state.value = Arc::new(value);
                state.stamps = stamps;
                state.refused = None;
            }
            Err(e) => {
                tracing::warn!(files = ?self.paths, error = %e, "{what}: changed on disk but cannot be used; the previous one is kept");
                state.refused = Some(now);
            }
        }
        state.value.clone()
    }
}

/// A client secret read from a file (a mounted Kubernetes secret), re-read when the
/// file changes. Surrounding whitespace is trimmed; an empty file is an error.
pub struct SecretFile {
    watched: Watched<Secret>,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("path", &self.watched.paths[0])
            .finish_non_exhaustive()
    }
}

const SECRET_FILE: &str = "client secret file";

impl SecretFile {
    /// Reads the secret in `path` (an error names the file), to be re-read when the file
    /// changes ([`DEFAULT_CHECK_EVERY`]).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, AcquireError> {
        Self::open_checking_every(path, DEFAULT_CHECK_EVERY)
    }

    /// [`open`](Self::open), looking for a change at most every `every`.
    pub fn open_checking_every(
        path: impl Into<PathBuf>,
        every: Duration,
    ) -> Result<Self, AcquireError> {
        let path = path.into();
        let shown = path.display().to_string();
        let load = move |contents: &[Vec<u8>]| {
            let bad = |reason: &str| AcquireError::Credential {
                credential: format!("{SECRET_FILE} {shown}"),
                reason: reason.to_string(),
            };
            let text = std::str::from_utf8(&contents[0]).map_err(|_| bad("is not UTF-8"))?;
            let secret = text.trim();
            if secret.is_empty() {
                return Err(bad("is empty"));
            }
            Ok(Secret::new(secret))
        };
        Ok(Self {
            watched: Watched::open(SECRET_FILE, vec![path], every, Box::new(load))?,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.watched.paths[0]
    }

    /// The secret now (read again if the file changed).
    pub(crate) fn secret(&self) -> Secret {
        Secret::clone(&self.watched.current(SECRET_FILE))
    }
}

/// How close to its `exp` an assertion from a file is still sent: a request takes a
/// moment to reach the provider.
const ASSERTION_MARGIN_SECS: i64 = 5;

/// Reads the signed client assertion in `path` for one token request (the platform
/// rewrites the file; its content is never kept past the request). A missing, empty or
/// unreadable file, a content that is not a JWT, and a JWT whose `exp` (read without
/// verifying: the provider verifies) is past `now` are errors that name the file.
pub(crate) fn read_assertion_file(path: &Path, now: i64) -> Result<Secret, AcquireError> {
    let bad = |reason: String| AcquireError::Credential {
        credential: format!("client assertion file {}", path.display()),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("is not UTF-8".into()))?;
    let assertion = text.trim();
    if assertion.is_empty() {
        return Err(bad("is empty".into()));
    }
    let claims = crate::schema::decode_jwt_claims(assertion)
        .map_err(|_| bad("does not hold a JWT (header.payload.signature)".into()))?;
    match claims.exp {
        Some(exp) if exp <= now + ASSERTION_MARGIN_SECS => Err(bad(format!(
            "the assertion expired (exp {exp}, now {now}): the platform did not renew the file"
        ))),
        Some(_) => Ok(Secret::new(assertion)),
        None => Err(bad("the assertion has no exp claim".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn jwt(exp: i64) -> String {
        let claims = serde_json::json!({"iss": "x", "sub": "c", "aud": "a", "exp": exp});
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn an_assertion_file_is_read_each_time_and_checked_before_use() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        let err = |now| {
            let e = read_assertion_file(&f, now).unwrap_err();
            assert!(matches!(e, AcquireError::Credential { .. }), "{e:?}");
            assert!(e.to_string().contains(&f.display().to_string()), "{e}");
            e.to_string()
        };
        assert!(err(0).contains("cannot be read"));
        std::fs::write(&f, "  \n").unwrap();
        assert!(err(0).contains("is empty"));
        std::fs::write(&f, "not-a-jwt-secret-value").unwrap();
        let e = err(0);
        assert!(e.contains("JWT") && !e.contains("secret-value"), "{e}");
        std::fs::write(&f, jwt(1_000)).unwrap();
        assert!(err(2_000).contains("expired"));
        assert!(err(996).contains("expired"), "within the margin");
        assert_eq!(read_assertion_file(&f, 900).unwrap().expose(), jwt(1_000));
        // rewritten: the next read sees the new one
        std::fs::write(&f, format!("{}\n", jwt(5_000))).unwrap();
        assert_eq!(read_assertion_file(&f, 2_000).unwrap().expose(), jwt(5_000));
    }

    #[test]
    fn a_secret_file_is_read_again_when_it_changes_and_a_bad_change_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "first\n").unwrap();
        let s = SecretFile::open_checking_every(&f, Duration::ZERO).unwrap();
        assert_eq!(s.secret().expose(), "first");
        assert!(!format!("{s:?}").contains("first"));
        std::fs::write(&f, "second-and-longer").unwrap();
        assert_eq!(s.secret().expose(), "second-and-longer");
        // emptied mid-rotation: the previous secret stays in use
        std::fs::write(&f, "").unwrap();
        assert_eq!(s.secret().expose(), "second-and-longer");
        std::fs::remove_file(&f).unwrap();
        assert_eq!(s.secret().expose(), "second-and-longer");
        std::fs::write(&f, "third").unwrap();
        assert_eq!(s.secret().expose(), "third");
        // a file replaced by a renamed one (as an atomic writer or the kubelet does)
        let tmp = dir.path().join("secret.tmp");
        std::fs::write(&tmp, "fourth").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        assert_eq!(s.secret().expose(), "fourth");
        // at start, an empty or missing file is an error naming it
        std::fs::write(&f, " ").unwrap();
        let e = SecretFile::open(&f).unwrap_err().to_string();
        assert!(e.contains("is empty") && e.contains("secret"), "{e}");
        let e = SecretFile::open(dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be read"), "{e}");
    }

    #[test]
    fn changes_are_looked_for_at_most_every_interval() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "first").unwrap();
        let s = SecretFile::open_checking_every(&f, Duration::from_secs(3600)).unwrap();
        std::fs::write(&f, "second").unwrap();
        assert_eq!(s.secret().expose(), "first", "not looked at again yet");
    }
}
