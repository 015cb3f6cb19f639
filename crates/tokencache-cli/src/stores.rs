//! Opening the store a command names, with errors that point at the cause and never
//! show a password.
//!
//! * The URL is checked first: a port outside 1–65535 is named as such (redis-rs
//!   would only say its URL "did not parse").
//! * Commands that only read or remove (`inspect`, `purge`, `rekey`, `partition …
//!   --key`) never create a store: a path with no store file is an error, and when the
//!   tool's own default file is missing, the error names the store files that do
//!   exist in the default folder (each application has its own, named after it).
//! * The store must answer before the command starts. When a `rediss://` URL gets no
//!   TLS answer, the port is asked in plain Redis: if it answers, the error says to
//!   use `redis://` (a TLS client waiting for a TLS answer from a plain port times out).
//!
//! Every message shows the URL through [`redact_url`] only (or the store's endpoint,
//! which never holds credentials).

use tokencache::store::{self, SharedStore, StoreError, StoreErrorKind, StoreUrl};

/// Whether a missing store may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Read or remove only: never create a store.
    Never,
    /// The command writes: an embedded store is created if missing.
    IfMissing,
}

/// Checks a store URL before it is opened: it parses, and its ports are in range.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    if url.trim().is_empty() {
        return Ok(());
    }
    // The library names a bad host or port (and never shows the password).
    StoreUrl::parse(url).map_err(|e| e.to_string())?;
    Ok(())
}

/// Opens the store `url` names (`None` or empty: this tool's default embedded file)
/// and checks that it answers.
pub(crate) async fn open(url: Option<&str>, create: Create) -> Result<SharedStore, String> {
    let url = url.unwrap_or_default();
    check_url(url)?;
    let store = match create {
        Create::IfMissing => store::open(url).await.map_err(|e| e.to_string())?,
        Create::Never => match store::open_existing(url).await {
            Ok(s) => s,
            Err(e) if url.trim().is_empty() => return Err(format!("{e}; {}", others())),
            Err(e) => return Err(e.to_string()),
        },
    };
    // The store's error names the cause where it can tell (a `rediss://` URL aimed at a
    // plain port, an untrusted certificate, a refused password).
    if let Err(e) = store.health().await {
        return Err(format!("the store does not answer: {e}"));
    }
    Ok(store)
}

/// Whether a store error says the key holds another type (Redis `WRONGTYPE`, or a hash
/// that is not a .NET cache entry): another application's key, not a failure.
pub(crate) fn is_wrong_type(e: &StoreError) -> bool {
    (e.kind == StoreErrorKind::Server && e.message.contains("WRONGTYPE"))
        || (e.kind == StoreErrorKind::BadData
            && e.message
                .contains(tokencache::store::dotnet::NOT_A_DOTNET_ENTRY))
}

/// What the default folder holds, as a hint.
fn others() -> String {
    let dir = store::default_embedded_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".redb"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        format!(
            "no application has a store file in {} either; name the store with --store or TOKENCACHE_STORE",
            dir.display()
        )
    } else {
        format!(
            "the store files in {} are: {} (one per application; name one with --store redb://{}/NAME.redb or TOKENCACHE_STORE)",
            dir.display(),
            files.join(", "),
            dir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_out_of_range_are_named() {
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_url("redis://host").is_ok(), "the default port");
        let e = check_url("redis://:pw@127.0.0.1:99999").unwrap_err();
        assert!(
            e.contains("port \"99999\"") && e.contains("1 to 65535"),
            "{e}"
        );
        assert!(!e.contains("pw"), "{e}");
        let e = check_url("redis+cluster://a:1,b:0").unwrap_err();
        assert!(e.contains("port \"0\""), "{e}");
        let e = check_url("redis://h:x").unwrap_err();
        assert!(
            e.contains("port \"x\"") && e.contains("not a number"),
            "{e}"
        );
        assert!(check_url("").is_ok());
        assert!(check_url("memory://").is_ok());
    }
}
