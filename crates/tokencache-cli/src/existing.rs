//! Opening the store of a command that only reads or removes (`inspect`, `purge`):
//! never creates one, and when the default file is missing, names the store files that
//! do exist in the default folder (each application has its own, named after it).

use tokencache::store::{self, SharedStore};

/// Opens `url` (`None`: this tool's default embedded file) only if it exists.
pub(crate) async fn open(url: Option<&str>) -> Result<SharedStore, String> {
    match store::open_existing(url.unwrap_or_default()).await {
        Ok(s) => Ok(s),
        Err(e) if url.is_none() => Err(format!("{e}; {}", others())),
        Err(e) => Err(e.to_string()),
    }
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
