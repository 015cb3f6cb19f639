//! The CLI on a Redis shared with Microsoft.Identity.Web (issue 11): `partition
//! show|find --store … --key …` read a partition in either layout with the file forms'
//! output and exit codes, `inspect` counts the layouts, `purge` removes a .NET-layout
//! user partition. The .NET entries are written as .NET's `RedisCache` writes them
//! (dotnet/aspnetcore src/Caching/StackExchangeRedis/src/RedisCache.cs: `HSET absexp
//! sldexp data` + `EXPIRE`).

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};
use testkit::RedisServer;
use tokencache::sample::{CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::store::dotnet::{duration_ticks, ticks_of, DATA_PROTECTION_MAGIC};

const INSTANCE: &str = "MsalTokens_";
const NET_USER: &str = "d0e1f2a3-0000-4000-8000-0000000000a1";
const STR_USER: &str = "d0e1f2a3-0000-4000-8000-0000000000b2";
const ENCRYPTED_USER: &str = "d0e1f2a3-0000-4000-8000-0000000000c3";
const AT_SECRET: &str = "dotnet-access-token-secret-value";
const RT_SECRET: &str = "dotnet-refresh-token-secret-value";
const SCOPE: &str = "https://graph.microsoft.com/User.Read";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn tokencache(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokencache"))
        .args(args)
        .env_remove("TOKENCACHE_STORE")
        .env_remove("TOKENCACHE_PREFIX")
        .output()
        .expect("run tokencache")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_no_secret(o: &Output) {
    for text in [stdout(o), stderr(o)] {
        assert!(!text.contains(AT_SECRET) && !text.contains(RT_SECRET));
    }
}

/// A user partition shaped as MSAL.NET writes it (numbers as strings, `null`s,
/// `ext_expires_on`, `AppMetadata`).
fn blob(oid: &str, at: i64) -> String {
    let home = format!("{oid}.{TENANT}");
    let exp = at + 3600;
    format!(
        r#"{{"AccessToken":{{"{home}-{ENVIRONMENT}-accesstoken-{CLIENT_ID}-{TENANT}-{lower}":{{"home_account_id":"{home}","environment":"{ENVIRONMENT}","client_id":"{CLIENT_ID}","secret":"{AT_SECRET}","credential_type":"AccessToken","realm":"{TENANT}","target":"{SCOPE}","user_assertion_hash":null,"cached_at":"{at}","expires_on":"{exp}","extended_expires_on":"{exp}","ext_expires_on":"{exp}"}}}},"RefreshToken":{{"{home}-{ENVIRONMENT}-refreshtoken-{CLIENT_ID}--":{{"home_account_id":"{home}","environment":"{ENVIRONMENT}","client_id":"{CLIENT_ID}","secret":"{RT_SECRET}","credential_type":"RefreshToken","family_id":null}}}},"IdToken":{{}},"Account":{{}},"AppMetadata":{{"appmetadata-{ENVIRONMENT}-{CLIENT_ID}":{{"environment":"{ENVIRONMENT}","client_id":"{CLIENT_ID}","family_id":null}}}}}}"#,
        lower = SCOPE.to_lowercase()
    )
}

/// `RedisCache.Set` with a 20-minute sliding window inside an absolute hour.
fn dotnet_set(server: &RedisServer, key: &str, value: &[u8]) {
    let mut c = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let now = SystemTime::now();
    let full = format!("{INSTANCE}{key}");
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(&full)
        .arg("absexp")
        .arg(ticks_of(now + Duration::from_secs(3600)))
        .arg("sldexp")
        .arg(duration_ticks(Duration::from_secs(1200)))
        .arg("data")
        .arg(value)
        .cmd("EXPIRE")
        .arg(&full)
        .arg(1200)
        .query(&mut c)
        .unwrap();
}

/// A store with a .NET-layout user partition, a string one and an encrypted one.
fn prepare() -> (RedisServer, i64) {
    let server = RedisServer::start();
    let t = now();
    dotnet_set(
        &server,
        &format!("{NET_USER}.{TENANT}"),
        blob(NET_USER, t).as_bytes(),
    );
    server.cli(&[
        "SET",
        &format!("{INSTANCE}{STR_USER}.{TENANT}"),
        &blob(STR_USER, t),
        "EX",
        "1200",
    ]);
    let mut protected = DATA_PROTECTION_MAGIC.to_vec();
    protected.extend((0u8..=255).cycle().take(300));
    dotnet_set(&server, &format!("{ENCRYPTED_USER}.{TENANT}"), &protected);
    (server, t)
}

#[test]
fn partition_show_and_find_read_either_layout_as_the_file_forms_do() {
    let (server, t) = prepare();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    for oid in [NET_USER, STR_USER] {
        let key = format!("{oid}.{TENANT}");
        let file = dir.path().join(format!("{oid}.json"));
        std::fs::write(&file, blob(oid, t)).unwrap();
        let file = file.to_str().unwrap();
        let by_file = tokencache(&["partition", "show", file]);
        let live = ["--store", url.as_str(), "--prefix", INSTANCE, "--key", &key];
        let by_store = tokencache(&[&["partition", "show"][..], &live].concat());
        assert!(by_store.status.success(), "{}", stderr(&by_store));
        assert_eq!(stdout(&by_store), stdout(&by_file), "same summary");
        assert_no_secret(&by_store);
        let layout = if oid == NET_USER {
            ".NET IDistributedCache layout, sliding 1200 s"
        } else {
            "string layout"
        };
        assert!(stderr(&by_store).contains(layout), "{}", stderr(&by_store));

        let now = t.to_string();
        let query = ["--client-id", CLIENT_ID, "--scopes", SCOPE, "--now", &now];
        let file_find = tokencache(&[&["partition", "find", file][..], &query].concat());
        let store_find = tokencache(&[&["partition", "find"][..], &live, &query].concat());
        assert_eq!(store_find.status.code(), Some(0), "{}", stderr(&store_find));
        assert_eq!(stdout(&store_find), stdout(&file_find));
        assert_no_secret(&store_find);
        let other = [
            "--client-id",
            CLIENT_ID,
            "--scopes",
            "api://other/x",
            "--now",
            &now,
        ];
        let miss = tokencache(&[&["partition", "find"][..], &live, &other].concat());
        assert_eq!(
            miss.status.code(),
            Some(1),
            "no token: exit 1 as for a file"
        );
    }
    // Reading never writes: the .NET entry is still a hash with its TTL.
    let net_key = format!("{INSTANCE}{NET_USER}.{TENANT}");
    assert_eq!(server.cli(&["TYPE", &net_key]), "hash");

    let encrypted = format!("{ENCRYPTED_USER}.{TENANT}");
    let out = tokencache(&[
        "partition",
        "show",
        "--store",
        &url,
        "--prefix",
        INSTANCE,
        "--key",
        &encrypted,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("encrypted by .NET Data Protection"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("corrupt"));
    let out = tokencache(&[
        "partition",
        "show",
        "--store",
        &url,
        "--prefix",
        INSTANCE,
        "--key",
        "nobody.none",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no entry under"), "{}", stderr(&out));
    let out = tokencache(&["partition", "show", "x.json", "--key", "k"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not both"), "{}", stderr(&out));
    let out = tokencache(&["partition", "show"]);
    assert_eq!(out.status.code(), Some(2));
}

fn last_line(out: &Output, word: &str) -> BTreeMap<String, String> {
    assert!(out.status.success(), "{}", stderr(out));
    let text = stdout(out);
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix(&format!("{word}: "))
        .unwrap_or_else(|| panic!("{text}"))
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn inspect_counts_layouts_and_purge_removes_a_dotnet_user() {
    let (server, _) = prepare();
    let url = server.url();
    let out = tokencache(&["inspect", "--store", &url, "--prefix", INSTANCE]);
    let m = last_line(&out, "inspect");
    assert_eq!(m["user"], "3", "{}", stdout(&out));
    assert_eq!(m["string-layout"], "1");
    assert_eq!(m["dotnet-layout"], "2");
    assert_eq!(m["data-protected"], "1");
    assert_eq!(m["plaintext"], "2");
    assert_eq!(m["not-strings"], "0");
    assert_no_secret(&out);

    for oid in [NET_USER, STR_USER] {
        let home = format!("{oid}.{TENANT}");
        let out = tokencache(&[
            "purge", "--store", &url, "--prefix", INSTANCE, "--user", &home,
        ]);
        let m = last_line(&out, "purge");
        assert_eq!(m["complete"], "true");
        assert_eq!(server.cli(&["EXISTS", &format!("{INSTANCE}{home}")]), "0");
    }
    let out = tokencache(&["inspect", "--store", &url, "--prefix", INSTANCE]);
    let m = last_line(&out, "inspect");
    assert_eq!(
        (m["string-layout"].as_str(), m["dotnet-layout"].as_str()),
        ("0", "1")
    );
}

/// `simulate` writing the .NET layout into a Redis that also holds another
/// application's partitions of both layouts: the run meets no WRONGTYPE (nothing on
/// stderr), its new keys are hashes, and the other application's keys keep their layout
/// and value.
#[test]
fn simulate_on_a_mixed_store_converts_nothing() {
    let (server, _) = prepare();
    let url = server.url();
    let before: Vec<(String, String)> = [NET_USER, STR_USER, ENCRYPTED_USER]
        .iter()
        .map(|oid| {
            let key = format!("{INSTANCE}{oid}.{TENANT}");
            let dump = server.cli(&["DUMP", &key]);
            (key, dump)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("c.svg");
    let sim = Command::new(env!("CARGO_BIN_EXE_tokencache"))
        .args(["simulate", "--store", &format!("{url}?layout=dotnet")])
        .args([
            "--users", "40", "--hours", "3", "--pace", "7200", "--keep", "--chart",
        ])
        .arg(&chart)
        .env_remove("TOKENCACHE_STORE")
        .env_remove("TOKENCACHE_LOG")
        .output()
        .unwrap();
    assert!(sim.status.success(), "{}", stderr(&sim));
    assert!(stderr(&sim).trim().is_empty(), "{}", stderr(&sim));
    for (key, dump) in &before {
        // compared, never printed: the dump holds tokens
        assert!(&server.cli(&["DUMP", key]) == dump, "{key} is unchanged");
    }
    let kinds: Vec<String> = server
        .cli(&["--scan", "--pattern", "tcsim:*"])
        .lines()
        .filter(|k| !k.contains("tc:"))
        .map(|k| server.cli(&["TYPE", k]))
        .filter(|t| t != "none")
        .collect();
    assert!(!kinds.is_empty());
    assert!(kinds.iter().all(|t| t == "hash"), "{kinds:?}");
}
