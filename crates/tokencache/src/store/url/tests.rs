//! Tests of store URL parsing, redaction and opening.
use super::*;

#[test]
fn parses_every_form() {
    assert_eq!(StoreUrl::parse("memory://").unwrap(), StoreUrl::Memory);
    assert_eq!(
        StoreUrl::parse("redb:///var/x/t.redb").unwrap(),
        StoreUrl::Embedded {
            path: PathBuf::from("/var/x/t.redb")
        }
    );
    assert!(StoreUrl::parse("redb://rel/t.redb").is_err());
    let u = StoreUrl::parse("redis://127.0.0.1:7000/2?connect_timeout_ms=150").unwrap();
    let StoreUrl::Redis {
        hosts,
        cluster,
        tls,
        rest,
        connect_timeout,
        ..
    } = &u
    else {
        panic!("{u}")
    };
    assert_eq!(hosts, &["127.0.0.1:7000"]);
    assert!(!cluster && !tls);
    assert_eq!(rest, "/2");
    assert_eq!(*connect_timeout, Some(Duration::from_millis(150)));
    assert_eq!(u.to_string(), "redis://127.0.0.1:7000/2");
    let c = StoreUrl::parse("rediss+cluster://a:1,b,c:3").unwrap();
    let StoreUrl::Redis {
        hosts,
        cluster,
        tls,
        ..
    } = &c
    else {
        panic!()
    };
    assert_eq!(hosts, &["a:1", "b:6379", "c:3"]);
    assert!(*cluster && *tls);
    assert!(StoreUrl::parse("redis://a:1,b:2").is_err());
    assert!(StoreUrl::parse("redis://").is_err());
    assert!(StoreUrl::parse("redis://h?connect_timeout_ms=x").is_err());
}

#[test]
fn unknown_scheme_names_the_accepted_ones() {
    let e = StoreUrl::parse("postgres://x").unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Config);
    assert!(e.message.contains("redis+cluster://"), "{e}");
    assert!(StoreUrl::parse("just-a-path").is_err());
}

#[test]
fn passwords_are_hidden_and_round_trip() {
    let u = StoreUrl::parse("redis://alice:p%40ss+w0rd%20x@h:1/0").unwrap();
    let shown = format!("{u} {u:?}");
    assert!(
        !shown.contains("p%40ss") && !shown.contains("p@ss"),
        "{shown}"
    );
    assert!(shown.contains("redis://alice:***@h:1/0"), "{shown}");
    let StoreUrl::Redis { password, .. } = &u else {
        panic!()
    };
    assert_eq!(password.as_deref(), Some("p@ss+w0rd x"));
    let node = u.node_url("h:1", Some("p@ss+w0rd x")).unwrap();
    let info = redis::IntoConnectionInfo::into_connection_info(node.as_str()).unwrap();
    assert_eq!(info.redis_settings().password(), Some("p@ss+w0rd x"));
    assert_eq!(info.redis_settings().username(), Some("alice"));
    let only_pass = StoreUrl::parse("redis://:secret@h").unwrap();
    assert_eq!(only_pass.to_string(), "redis://:***@h:6379");
}

#[test]
fn redacted_urls_hide_passwords_and_secret_parameters() {
    let cases = [
        (
            "redis://alice:hunter2secret@h:1/0",
            "redis://alice:***@h:1/0",
        ),
        ("redis://:hunter2secret@h", "redis://:***@h:6379"),
        (
            "rediss+cluster://u:hunter2secret@a:1,b:2/?protocol=resp3&password=hunter2secret",
            "rediss+cluster://u:***@a:1,b:2/?protocol=resp3&password=***",
        ),
        ("redb:///var/t.redb", "redb:///var/t.redb"),
        ("memory://", "memory://"),
        // not store URLs: the whole user info goes
        (
            "postgres://alice:hunter2secret@db:5432/x",
            "postgres://***@db:5432/x",
        ),
        (
            "https://u:hunter2secret@idp.example/keys?api_key=hunter2secret&v=2#hunter2secret",
            "https://***@idp.example/keys?api_key=***&v=2",
        ),
        // a redis URL that does not parse (two hosts without +cluster)
        ("redis://u:hunter2secret@a:1,b:2/", "redis://***@a:1,b:2/"),
        ("user:hunter2secret@host", "<not a URL; not shown>"),
        ("just-a-path", "just-a-path"),
    ];
    for (url, shown) in cases {
        assert_eq!(redact_url(url), shown, "{url}");
        let kept = ConfiguredUrl::new(url);
        assert_eq!(kept.expose(), url);
        let printed = format!("{kept} {kept:?}");
        assert!(!printed.contains("hunter2secret"), "{printed}");
    }
}

/// URLs with a password that is not valid in a URL: refused, never shown.
const BAD_PASSWORDS: &[&str] = &[
    "redis://:hunter2/secret@h:6379/0",
    "redis://app:hunter2@secret@h:6379",
    "redis://:hunter2#secret@h",
    "redis://:hunter2?secret@h:1",
    "rediss://:hunter2 secret@h",
    "redis://:hunter2%zzsecret@h",
    "redis+cluster://:hunter2/secret@a:1,b:2",
    "redis+sentinel://:hunter2/secret@a:26379/mymaster",
];

#[test]
fn passwords_that_need_encoding_are_refused_without_being_shown() {
    for url in BAD_PASSWORDS {
        let e = StoreUrl::parse(url).unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Config, "{url}");
        assert!(e.message.contains("percent-encoded"), "{url}: {e}");
        assert!(
            e.message.contains("TOKENCACHE_REDIS_PASSWORD"),
            "{url}: {e}"
        );
        let shown = format!("{e} {e:?} {}", redact_url(url));
        assert!(
            !shown.contains("hunter2") && !shown.contains("secret"),
            "{url}: {shown}"
        );
    }
    // Encoded, the same passwords are fine.
    let u = StoreUrl::parse("redis://:hunter2%2Fsecret@h:6379/0").unwrap();
    let StoreUrl::Redis { password, .. } = &u else {
        panic!()
    };
    assert_eq!(password.as_deref(), Some("hunter2/secret"));
    // ':' in a password needs no encoding (the first ':' ends the user name).
    let u = StoreUrl::parse("redis://app:a:b!$&'()*+,;=~@h").unwrap();
    let StoreUrl::Redis { password, .. } = &u else {
        panic!()
    };
    assert_eq!(password.as_deref(), Some("a:b!$&'()*+,;=~"));
}

#[test]
fn bad_hosts_and_ports_are_named() {
    let e = StoreUrl::parse("redis://h:abc").unwrap_err();
    assert!(e.message.contains("port \"abc\" of host h"), "{e}");
    let e = StoreUrl::parse("redis://:pw@h:70000/0").unwrap_err();
    assert!(
        e.message.contains("port \"70000\"") && e.message.contains("1 to 65535"),
        "{e}"
    );
    assert!(!e.to_string().contains("pw"));
    let e = StoreUrl::parse("redis://h:0").unwrap_err();
    assert!(e.message.contains("port \"0\""), "{e}");
    let e = StoreUrl::parse("redis+cluster://a:1,b c:2").unwrap_err();
    assert!(e.message.contains("host \"b c\""), "{e}");
    let e = StoreUrl::parse("redis://[zz]:1").unwrap_err();
    assert!(e.message.contains("host"), "{e}");
    let e = StoreUrl::parse("redis://h:1/db").unwrap_err();
    assert!(e.message.contains("database \"db\""), "{e}");
    let ok = StoreUrl::parse("redis://[::1]:7000/3").unwrap();
    assert_eq!(ok.to_string(), "redis://[::1]:7000/3");
    let StoreUrl::Redis { hosts, .. } = StoreUrl::parse("redis://[::1]").unwrap() else {
        panic!()
    };
    assert_eq!(hosts, ["[::1]:6379"]);
}

#[test]
fn sentinel_urls_name_the_sentinels_and_the_master() {
    let u =
        StoreUrl::parse("redis+sentinel://app:pw@s1,s2:26380/mymaster/2?connect_timeout_ms=300")
            .unwrap();
    let StoreUrl::Redis {
        sentinel,
        hosts,
        cluster,
        tls,
        rest,
        connect_timeout,
        ..
    } = &u
    else {
        panic!()
    };
    assert_eq!(sentinel.as_deref(), Some("mymaster"));
    assert_eq!(hosts, &["s1:26379", "s2:26380"]);
    assert!(!cluster && !tls);
    assert_eq!(rest, "/2");
    assert_eq!(*connect_timeout, Some(Duration::from_millis(300)));
    assert_eq!(
        u.to_string(),
        "redis+sentinel://app:***@s1:26379,s2:26380/mymaster/2"
    );
    let t = StoreUrl::parse("rediss+sentinel://s1:5000/m").unwrap();
    assert_eq!(t.to_string(), "rediss+sentinel://s1:5000/m");
    let e = StoreUrl::parse("redis+sentinel://s1:26379").unwrap_err();
    assert!(e.message.contains("MASTER_NAME"), "{e}");
    let e = StoreUrl::parse("redis://a:1,b:2").unwrap_err();
    assert!(e.message.contains("+sentinel://"), "{e}");
}

#[test]
fn tls_options_are_taken_from_the_query() {
    let u = StoreUrl::parse(
        "rediss://h:6380/0?tls_ca_file=/etc/ca%20dir/ca.pem&tls_cert_file=/c.pem&tls_key_file=/k.pem&tls_server_name=redis.internal&node_timeout_ms=150&protocol=resp3",
    )
    .unwrap();
    let StoreUrl::Redis {
        tls_ca_file,
        tls_cert_file,
        tls_key_file,
        tls_server_name,
        node_timeout,
        rest,
        ..
    } = &u
    else {
        panic!()
    };
    assert_eq!(
        tls_ca_file.as_deref(),
        Some(std::path::Path::new("/etc/ca dir/ca.pem"))
    );
    assert_eq!(
        tls_cert_file.as_deref(),
        Some(std::path::Path::new("/c.pem"))
    );
    assert_eq!(
        tls_key_file.as_deref(),
        Some(std::path::Path::new("/k.pem"))
    );
    assert_eq!(tls_server_name.as_deref(), Some("redis.internal"));
    assert_eq!(*node_timeout, Some(Duration::from_millis(150)));
    assert_eq!(rest, "/0?protocol=resp3");
    let e = StoreUrl::parse("rediss://h?tls_cert_file=/c.pem").unwrap_err();
    assert!(e.message.contains("tls_key_file"), "{e}");
    let e = StoreUrl::parse("rediss://h?tls_server_name=").unwrap_err();
    assert!(e.message.contains("tls_server_name"), "{e}");
    // a file that is not there is named when the store is opened
    let e = StoreUrl::parse("rediss://h?tls_ca_file=/nonexistent/ca.pem")
        .unwrap()
        .open_redis()
        .unwrap_err();
    assert!(
        e.to_string().contains("/nonexistent/ca.pem") && e.message.contains("tls_ca_file"),
        "{e}"
    );
}

#[test]
fn passwords_come_from_the_environment_when_the_url_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-file-pw\n").unwrap();
    let file = file.display().to_string();
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let url = StoreUrl::parse("redis://app@h:1").unwrap();
    let (_, p) = url
        .redis_options_with(env(&[(PASSWORD_ENV, "from-env-pw")]))
        .unwrap();
    assert_eq!(p.as_deref(), Some("from-env-pw"));
    let f = file.clone();
    let (_, p) = url
        .redis_options_with(move |k| (k == PASSWORD_FILE_ENV).then(|| f.clone()))
        .unwrap();
    assert_eq!(p.as_deref(), Some("from-file-pw"));
    let f = file.clone();
    let e = url
        .redis_options_with(move |k| match k {
            PASSWORD_ENV => Some("from-env-pw".into()),
            PASSWORD_FILE_ENV => Some(f.clone()),
            _ => None,
        })
        .unwrap_err();
    assert!(e.message.contains("set one"), "{e}");
    assert!(!e.to_string().contains("from-env-pw"));
    let e = url
        .redis_options_with(|k| (k == PASSWORD_FILE_ENV).then(|| "/nonexistent/pw".into()))
        .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/pw"), "{e}");
    // The URL's own password wins.
    let with = StoreUrl::parse("redis://:in-url@h:1").unwrap();
    let (_, p) = with
        .redis_options_with(env(&[(PASSWORD_ENV, "from-env-pw")]))
        .unwrap();
    assert_eq!(p.as_deref(), Some("in-url"));
    let (_, none) = url.redis_options_with(|_| None).unwrap();
    assert_eq!(none, None);
}

#[test]
fn layout_is_taken_from_the_query() {
    let u = StoreUrl::parse("redis://:pw@h:1/0?layout=dotnet&protocol=resp3").unwrap();
    let StoreUrl::Redis { layout, rest, .. } = &u else {
        panic!("{u}");
    };
    assert_eq!(*layout, StoreLayout::DotNet);
    assert_eq!(rest, "/0?protocol=resp3", "not passed on to redis-rs");
    assert_eq!(
        u.to_string(),
        "redis://:***@h:1/0?protocol=resp3&layout=dotnet"
    );
    let c = StoreUrl::parse("redis+cluster://a:1,b:2?layout=string").unwrap();
    assert!(matches!(
        c,
        StoreUrl::Redis {
            layout: StoreLayout::String,
            ..
        }
    ));
    assert_eq!(c.to_string(), "redis+cluster://a:1,b:2");
    let d = StoreUrl::parse("redis://h").unwrap();
    assert!(matches!(
        d,
        StoreUrl::Redis {
            layout: StoreLayout::String,
            ..
        }
    ));
    let e = StoreUrl::parse("redis://h?layout=json").unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Config);
    assert!(e.message.contains("string or dotnet"), "{e}");
}

#[test]
fn default_path_is_per_application() {
    let p = default_embedded_path();
    let exe = std::env::current_exe().unwrap();
    let stem = exe.file_stem().unwrap().to_string_lossy();
    assert!(p.starts_with(default_embedded_dir()), "{}", p.display());
    assert_eq!(
        p.file_name().unwrap().to_string_lossy(),
        format!("{stem}.redb")
    );
    let named = default_embedded_path_for("orders-api");
    assert!(
        named.ends_with("tokencache/orders-api.redb"),
        "{}",
        named.display()
    );
    let odd = default_embedded_path_for("../a b/c");
    assert!(
        odd.ends_with("tokencache/.._a_b_c.redb"),
        "{}",
        odd.display()
    );
    assert!(default_embedded_path_for("").ends_with("tokencache/tokencache.redb"));
    assert!(default_embedded_path_for("..").ends_with("tokencache/tokencache.redb"));
}

#[tokio::test]
async fn open_existing_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo").join("cache.redb");
    let url = format!("redb://{}", path.display());
    let e = open_existing(&url).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Config);
    assert!(e.message.contains("no store exists"), "{e}");
    assert!(!path.parent().unwrap().exists(), "no folder was created");
    assert!(open_existing("memory://").await.is_err());
    drop(open(&url).await.unwrap());
    assert!(open_existing(&url).await.is_ok());
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_store_file_is_private_in_a_private_folder() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("new").join("tokencache");
    let file = folder.join("app.redb");
    let store = open(&format!("redb://{}", file.display())).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600, "{:o}", mode(&file));
    assert_eq!(mode(&folder), 0o700, "{:o}", mode(&folder));
    assert_eq!(mode(folder.parent().unwrap()), 0o700);
    drop(store);
    // an existing file keeps the permissions its operator gave it
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    drop(open(&format!("redb://{}", file.display())).await.unwrap());
    assert_eq!(mode(&file), 0o640);
}
