//! Embedded (redb) store: restarts, the sweeper, many tasks, open errors.

use std::sync::Arc;
use std::time::Duration;
use tokencache::clock::ManualClock;
use tokencache::store::{EmbeddedOptions, EmbeddedStore, Store, StoreErrorKind};

const T0: u64 = 1_700_000_000_000;

#[tokio::test]
async fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let clock = ManualClock::new(T0);
    {
        let s = EmbeddedStore::open_with_clock(&path, Arc::new(clock.clone()))
            .await
            .unwrap();
        s.set("user", b"blob", Some(Duration::from_secs(100)))
            .await
            .unwrap();
        s.set("forever", b"f", None).await.unwrap();
        s.link_add("tc:links:{u}", "obo", Some(Duration::from_secs(50)))
            .await
            .unwrap();
    }
    clock.advance_secs(10);
    let s = EmbeddedStore::open_with_clock(&path, Arc::new(clock.clone()))
        .await
        .unwrap();
    let v = s.get("user").await.unwrap().expect("kept across reopen");
    assert_eq!(v.bytes, b"blob");
    assert_eq!(v.ttl, Some(Duration::from_secs(90)));
    assert_eq!(s.get("forever").await.unwrap().unwrap().ttl, None);
    assert_eq!(s.link_members("tc:links:{u}").await.unwrap(), vec!["obo"]);
    clock.advance_secs(45);
    assert!(s.link_members("tc:links:{u}").await.unwrap().is_empty());
    assert_eq!(s.path(), path.as_path());
}

#[tokio::test]
async fn sweeper_deletes_expired_entries() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let s = EmbeddedStore::open_with(
        dir.path().join("s.redb"),
        EmbeddedOptions {
            clock: Arc::new(clock.clone()),
            sweep_interval: Some(Duration::from_millis(20)),
        },
    )
    .await
    .unwrap();
    s.set("old", b"o", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    s.link_add("tc:links:{x}", "m", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    s.set("young", b"y", Some(Duration::from_secs(100)))
        .await
        .unwrap();
    s.set("forever", b"f", None).await.unwrap();
    clock.advance_secs(2);
    assert_eq!(
        s.get("old").await.unwrap(),
        None,
        "expired is never returned"
    );
    // Give the sweeper a few rounds, then move time back: had the entries merely
    // been hidden, they would be live again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    clock.set_millis(T0);
    assert_eq!(s.get("old").await.unwrap(), None, "swept");
    assert!(s.link_members("tc:links:{x}").await.unwrap().is_empty());
    assert!(s.get("young").await.unwrap().is_some());
    assert!(s.get("forever").await.unwrap().is_some());
    // The explicit sweep counts what it deletes; the index follows rewrites.
    s.set("a", b"1", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    s.set("a", b"2", Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(s.touch("young", Duration::from_secs(1)).await.unwrap());
    clock.advance_secs(5);
    let no_sweeper = EmbeddedStore::open_with(
        dir.path().join("manual.redb"),
        EmbeddedOptions {
            clock: Arc::new(clock.clone()),
            sweep_interval: None,
        },
    )
    .await
    .unwrap();
    no_sweeper
        .set("gone", b"g", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    no_sweeper.set("kept", b"k", None).await.unwrap();
    clock.advance_secs(2);
    assert_eq!(no_sweeper.sweep().await.unwrap(), 1);
    assert_eq!(no_sweeper.sweep().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    clock.set_millis(T0 + 5_000);
    assert_eq!(s.get("a").await.unwrap().unwrap().bytes, b"2");
    assert_eq!(
        s.get("young").await.unwrap(),
        None,
        "touched down to 1 s, swept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(
        EmbeddedStore::open(dir.path().join("m.redb"))
            .await
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for t in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let key = format!("k{t}:{i}");
                let val = format!("v{t}:{i}");
                s.set(&key, val.as_bytes(), Some(Duration::from_secs(60)))
                    .await
                    .unwrap();
                s.link_add("tc:links:{shared}", &key, Some(Duration::from_secs(60)))
                    .await
                    .unwrap();
                assert_eq!(s.get(&key).await.unwrap().unwrap().bytes, val.as_bytes());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        s.link_members("tc:links:{shared}").await.unwrap().len(),
        160
    );
    let mut cursor = 0;
    let mut n = 0;
    loop {
        let (next, keys) = s.scan("k", cursor, 100).await.unwrap();
        n += keys.len();
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(n, 160);
}

#[tokio::test]
async fn open_errors_are_config_errors_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    // Not a redb file.
    let junk = dir.path().join("junk.redb");
    std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
    let e = EmbeddedStore::open(&junk).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Config, "{e}");
    assert!(e.endpoint.contains("junk.redb"), "{e}");
    // Missing folder.
    let e = EmbeddedStore::open(dir.path().join("no/such/dir/x.redb"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Config, "{e}");
    assert!(e.endpoint.contains("x.redb"));
    // Locked: already open (by this process here; another process is refused the same way).
    let path = dir.path().join("locked.redb");
    let _first = EmbeddedStore::open(&path).await.unwrap();
    let e = EmbeddedStore::open(&path).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Config, "{e}");
    assert!(e.to_string().contains("locked.redb"), "{e}");
}

#[tokio::test]
async fn scan_cursor_survives_removal_of_returned_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path().join("c.redb"))
        .await
        .unwrap();
    for i in 0..10 {
        s.set(&format!("p{i}"), b"v", None).await.unwrap();
    }
    let (cursor, first) = s.scan("p", 0, 4).await.unwrap();
    assert_eq!(first.len(), 4);
    s.remove_many(&first).await.unwrap();
    let (next, second) = s.scan("p", cursor, 100).await.unwrap();
    assert_eq!(next, 0);
    assert_eq!(second.len(), 6, "no key skipped");
    let e = s.scan("p", 987_654_321, 10).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::BadData);
}

/// Two opens of one file by URL in one process share the store (redb locks its file):
/// both see each other's writes, and the file reopens once every handle is gone.
#[tokio::test]
async fn opening_one_file_twice_by_url_shares_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}", dir.path().join("shared.redb").display());
    let a = tokencache::store::open(&url).await.unwrap();
    let b = tokencache::store::open(&url).await.unwrap();
    a.set("k", b"v", None).await.unwrap();
    assert_eq!(b.get("k").await.unwrap().unwrap().bytes, b"v".to_vec());
    drop((a, b));
    let c = tokencache::store::open(&url).await.unwrap();
    assert!(
        c.get("k").await.unwrap().is_some(),
        "the data survived the last handle"
    );
}
