//! Sharing one Redis with Microsoft.Identity.Web (issue 11): .NET's `IDistributedCache`
//! layout, read and written, on a real redis-server (and a real Cluster for the read
//! path).
//!
//! [`DotNetCache`] below reproduces what .NET's `RedisCache` sends to Redis, written
//! from its source: dotnet/aspnetcore
//! `src/Caching/StackExchangeRedis/src/RedisCache.cs` (`SetImpl`/`SetImplAsync`:
//! `HSET key absexp <DateTimeOffset.Ticks|-1> sldexp <TimeSpan.Ticks|-1> data <bytes>`
//! and, when there is a TTL, `EXPIRE key <(long)min(abs − now, sliding).TotalSeconds>`
//! in one batch; older versions ran the Lua script `HMSET` + `EXPIRE` with the same
//! fields; `GetAndRefresh`: `HMGET absexp sldexp data`, then, when `sldexp` is set,
//! `KeyExpire(min(absexp − now, sldexp))`).

mod common;

use common::capture;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use testkit::{RedisCluster, RedisServer};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::store::dotnet::{duration_ticks, ticks_of, DATA_PROTECTION_MAGIC};
use tokencache::store::{
    open, EntryExpiry, RedisOptions, RedisStore, Store, StoreErrorKind, StoreLayout, ValueDigest,
    ValueLayout,
};
use tokencache::twolevel::ExpiryOptions;
use tokencache::{Error, Lookup, SaveFor, SaveRequest, TokenCache};

const GRAPH: &[&str] = &["https://graph.microsoft.com/User.Read"];
const MAIL: &[&str] = &["https://graph.microsoft.com/Mail.Read"];
/// Microsoft.Identity.Web's usual `InstanceName`.
const INSTANCE: &str = "MsalTokens_";
const OID: &str = "d0e1f2a3-0000-4000-8000-00000000d07e";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `DistributedCacheEntryOptions`.
#[derive(Debug, Clone, Copy, Default)]
struct EntryOptions {
    absolute: Option<SystemTime>,
    relative: Option<Duration>,
    sliding: Option<Duration>,
}

/// .NET's `RedisCache`, as it talks to Redis (see the module docs).
struct DotNetCache {
    conn: redis::Connection,
    instance: String,
}

impl DotNetCache {
    fn new(url: &str, instance: &str) -> Self {
        let conn = redis::Client::open(url).unwrap().get_connection().unwrap();
        Self {
            conn,
            instance: instance.to_string(),
        }
    }

    /// `GetAbsoluteExpiration` and `GetExpirationInSeconds` at `now`.
    fn fields(now: SystemTime, o: &EntryOptions) -> (i64, i64, Option<i64>) {
        let abs = match o.relative {
            Some(r) => Some(now + r),
            None => o.absolute,
        };
        let secs = |d: Duration| d.as_secs_f64();
        let ttl = match (abs, o.sliding) {
            (Some(a), Some(s)) => Some(secs(a.duration_since(now).unwrap()).min(secs(s)) as i64),
            (Some(a), None) => Some(secs(a.duration_since(now).unwrap()) as i64),
            (None, Some(s)) => Some(secs(s) as i64),
            (None, None) => None,
        };
        (
            abs.map_or(-1, ticks_of),
            o.sliding.map_or(-1, duration_ticks),
            ttl,
        )
    }

    /// `Set`: `HSET` of the three fields, and `EXPIRE` in the same batch.
    fn set(&mut self, key: &str, value: &[u8], o: &EntryOptions) {
        let (abs, sld, ttl) = Self::fields(SystemTime::now(), o);
        let full = format!("{}{key}", self.instance);
        let mut p = redis::pipe();
        p.cmd("HSET")
            .arg(&full)
            .arg("absexp")
            .arg(abs)
            .arg("sldexp")
            .arg(sld)
            .arg("data")
            .arg(value);
        if let Some(t) = ttl {
            p.cmd("EXPIRE").arg(&full).arg(t);
        }
        let _: () = p.query(&mut self.conn).unwrap();
    }

    /// `Set` of the versions that used a Lua script (`HMSET` + `EXPIRE`).
    fn set_legacy(&mut self, key: &str, value: &[u8], o: &EntryOptions) {
        let (abs, sld, ttl) = Self::fields(SystemTime::now(), o);
        let script =
            "redis.call('HMSET', KEYS[1], 'absexp', ARGV[1], 'sldexp', ARGV[2], 'data', ARGV[4])
            if ARGV[3] ~= '-1' then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
            return 1";
        let _: i64 = redis::cmd("EVAL")
            .arg(script)
            .arg(1)
            .arg(format!("{}{key}", self.instance))
            .arg(abs)
            .arg(sld)
            .arg(ttl.unwrap_or(-1))
            .arg(value)
            .query(&mut self.conn)
            .unwrap();
    }

    /// `Get`: the three fields, then `Refresh` when the entry slides.
    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        let full = format!("{}{key}", self.instance);
        let (abs, sld, data): (Option<i64>, Option<i64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(&full)
            .arg("absexp")
            .arg("sldexp")
            .arg("data")
            .query(&mut self.conn)
            .unwrap();
        if let Some(sld) = sld.filter(|s| *s != -1) {
            let sliding_ms = sld / 10_000;
            let expr_ms = match abs.filter(|a| *a != -1) {
                Some(a) => ((a - ticks_of(SystemTime::now())) / 10_000).min(sliding_ms),
                None => sliding_ms,
            };
            let _: i64 = redis::cmd("PEXPIRE")
                .arg(&full)
                .arg(expr_ms)
                .query(&mut self.conn)
                .unwrap();
        }
        data
    }

    fn hash(&mut self, key: &str) -> (i64, i64, Vec<u8>, i64) {
        let full = format!("{}{key}", self.instance);
        let (abs, sld, data): (i64, i64, Vec<u8>) = redis::cmd("HMGET")
            .arg(&full)
            .arg("absexp")
            .arg("sldexp")
            .arg("data")
            .query(&mut self.conn)
            .unwrap();
        let ttl: i64 = redis::cmd("TTL").arg(&full).query(&mut self.conn).unwrap();
        (abs, sld, data, ttl)
    }

    fn kind(&mut self, full: &str) -> String {
        redis::cmd("TYPE").arg(full).query(&mut self.conn).unwrap()
    }

    fn pexpire(&mut self, key: &str, ms: i64) {
        let _: i64 = redis::cmd("PEXPIRE")
            .arg(format!("{}{key}", self.instance))
            .arg(ms)
            .query(&mut self.conn)
            .unwrap();
    }
}

/// A user partition the way MSAL.NET serializes it: every section, numbers as strings,
/// `extended_expires_on` and the legacy `ext_expires_on`, `client_info` on the access
/// token, `null` for `user_assertion_hash`, `family_id` and the account's names, and
/// an `AppMetadata` section (shaped after MSAL.NET's test resource
/// tests/Microsoft.Identity.Test.Unit/Resources/SingleCloudTokenCache.json).
fn msal_net_blob(oid: &str, now: i64) -> Vec<u8> {
    let home = format!("{oid}.{TENANT}");
    let info = sample::client_info(oid, TENANT);
    let (exp, target) = (now + 3600, GRAPH[0]);
    format!(
        r#"{{
  "AccessToken": {{
    "{home}-{ENVIRONMENT}-accesstoken-{CLIENT_ID}-{TENANT}-{tl}": {{
      "home_account_id": "{home}", "environment": "{ENVIRONMENT}", "client_info": "{info}",
      "client_id": "{CLIENT_ID}", "secret": "dotnet-at-not-a-real-token", "credential_type": "AccessToken",
      "realm": "{TENANT}", "target": "{target}", "user_assertion_hash": null,
      "cached_at": "{now}", "expires_on": "{exp}", "extended_expires_on": "{exp}", "ext_expires_on": "{exp}"
    }}
  }},
  "RefreshToken": {{
    "{home}-{ENVIRONMENT}-refreshtoken-{CLIENT_ID}--": {{
      "home_account_id": "{home}", "environment": "{ENVIRONMENT}", "client_info": "{info}",
      "client_id": "{CLIENT_ID}", "secret": "dotnet-rt-not-a-real-token", "credential_type": "RefreshToken",
      "family_id": null
    }}
  }},
  "IdToken": {{}},
  "Account": {{
    "{home}-{ENVIRONMENT}-{TENANT}": {{
      "home_account_id": "{home}", "environment": "{ENVIRONMENT}", "client_info": "{info}",
      "username": "dotnet.user@contoso.example", "name": "Dot Net", "given_name": null, "family_name": null,
      "local_account_id": "{oid}", "authority_type": "MSSTS", "realm": "{TENANT}"
    }}
  }},
  "AppMetadata": {{
    "appmetadata-{ENVIRONMENT}-{CLIENT_ID}": {{ "environment": "{ENVIRONMENT}", "client_id": "{CLIENT_ID}", "family_id": null }}
  }}
}}"#,
        tl = target.to_lowercase(),
    )
    .into_bytes()
}

async fn cache(url: &str, expiry: ExpiryOptions) -> TokenCache {
    TokenCache::builder()
        .store_url(url)
        .key_prefix(INSTANCE)
        .expiry(expiry)
        .disable_l1()
        .build()
        .await
        .unwrap()
}

fn sliding(window: Duration) -> ExpiryOptions {
    ExpiryOptions {
        sliding_expiration: Some(window),
        ..ExpiryOptions::default()
    }
}

async fn add_mail_token(cache: &TokenCache, oid: &str) {
    let resp = sample::user_response(oid, TENANT, MAIL, unix_now(), 3600).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, MAIL);
    cache.save_token_response(&req, &resp).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_updates_what_redis_cache_wrote_for_every_option() {
    let server = RedisServer::start();
    let mut dotnet = DotNetCache::new(&server.url(), INSTANCE);
    let hour = Duration::from_secs(3600);
    let cases = [
        (
            "absolute",
            EntryOptions {
                absolute: Some(SystemTime::now() + 2 * hour),
                ..Default::default()
            },
            false,
        ),
        (
            "relative",
            EntryOptions {
                relative: Some(hour),
                ..Default::default()
            },
            false,
        ),
        (
            "sliding",
            EntryOptions {
                sliding: Some(Duration::from_secs(1200)),
                ..Default::default()
            },
            false,
        ),
        (
            "sliding within absolute (legacy Lua writer)",
            EntryOptions {
                relative: Some(hour),
                sliding: Some(Duration::from_secs(1200)),
                ..Default::default()
            },
            true,
        ),
    ];
    let window = Duration::from_secs(1800);
    let tc = cache(&server.url(), sliding(window)).await;
    for (i, (name, options, legacy)) in cases.iter().enumerate() {
        let oid = format!("d0e1f2a3-0000-4000-8000-00000000000{i}");
        let home = format!("{oid}.{TENANT}");
        let blob = msal_net_blob(&oid, unix_now());
        if *legacy {
            dotnet.set_legacy(&home, &blob, options);
        } else {
            dotnet.set(&home, &blob, options);
        }
        let full = format!("{INSTANCE}{home}");
        assert_eq!(dotnet.kind(&full), "hash", "{name}");

        let found = tc
            .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
            .await
            .unwrap();
        assert!(found.is_some(), "{name}: the .NET access token is found");
        assert_eq!(tc.stats().l2_errors, 0, "{name}: no WRONGTYPE, no error");

        // An update keeps the hash and writes tokencache's own expiry the .NET way.
        add_mail_token(&tc, &oid).await;
        assert_eq!(dotnet.kind(&full), "hash", "{name}: still a hash");
        let (abs, sld, data, ttl) = dotnet.hash(&home);
        assert_eq!(sld, duration_ticks(window), "{name}: sldexp = the window");
        // user partitions end a refresh-token lifetime (90 days) after their last write
        let hard = ticks_of(SystemTime::now() + Duration::from_secs(90 * 86_400));
        assert!(
            (abs - hard).abs() < 5 * 10_000_000,
            "{name}: absexp is the hard deadline"
        );
        assert!(
            (1795..=1800).contains(&ttl),
            "{name}: EXPIRE = window: {ttl}"
        );
        let text = String::from_utf8(data.clone()).unwrap();
        assert!(text.contains("dotnet-at-not-a-real-token"), "{name}: kept");
        assert!(text.contains("Mail.Read"), "{name}: the new token is in");
        // ... and .NET reads it back, and slides it.
        dotnet.pexpire(&home, 60_000);
        // (values are compared, never printed: they hold tokens)
        assert!(
            dotnet.get(&home).as_deref() == Some(data.as_slice()),
            "{name}"
        );
        let (_, _, _, ttl) = dotnet.hash(&home);
        assert!((1795..=1800).contains(&ttl), "{name}: .NET re-armed: {ttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_refreshes_a_sliding_entry_as_refresh_does_but_not_on_every_read() {
    let server = RedisServer::start();
    let mut dotnet = DotNetCache::new(&server.url(), INSTANCE);
    let home = format!("{OID}.{TENANT}");
    let store = open(&server.url()).await.unwrap();
    let full = format!("{INSTANCE}{home}");
    // Sliding 20 min inside an absolute hour.
    let options = EntryOptions {
        relative: Some(Duration::from_secs(3600)),
        sliding: Some(Duration::from_secs(1200)),
        ..Default::default()
    };
    dotnet.set(&home, &msal_net_blob(OID, unix_now()), &options);
    // Barely run down: a read leaves the TTL alone (tokencache's touch rule).
    dotnet.pexpire(&home, 1_150_000);
    let (v, layout) = store.get_with_layout(&full).await.unwrap().unwrap();
    assert!(v.ttl.unwrap() <= Duration::from_millis(1_150_000));
    let ValueLayout::DotNet {
        absolute_ticks,
        sliding,
    } = layout
    else {
        panic!("read as {layout:?}");
    };
    assert_eq!(sliding, Some(Duration::from_secs(1200)));
    assert!(absolute_ticks.is_some());
    // Run down by half: the read re-arms it to the window.
    dotnet.pexpire(&home, 600_000);
    let v = store.get(&full).await.unwrap().unwrap();
    assert!(v.ttl.unwrap() > Duration::from_secs(1190), "{:?}", v.ttl);
    assert!((1190..=1200).contains(&dotnet.hash(&home).3));
    // Near its absolute end, the window is cut to what is left (as Refresh does).
    let soon = EntryOptions {
        relative: Some(Duration::from_secs(300)),
        sliding: Some(Duration::from_secs(1200)),
        ..Default::default()
    };
    dotnet.set(&home, &msal_net_blob(OID, unix_now()), &soon);
    dotnet.pexpire(&home, 10_000);
    let v = store.get(&full).await.unwrap().unwrap();
    let ttl = v.ttl.unwrap();
    assert!(
        ttl > Duration::from_secs(290) && ttl <= Duration::from_secs(300),
        "{ttl:?}"
    );
    // A touch (tokencache's sliding read) follows the hash, never beyond its absexp.
    assert!(store.touch(&full, Duration::from_secs(7200)).await.unwrap());
    assert!(dotnet.hash(&home).3 <= 300);
    // An entry with only an absolute end is never extended by a touch.
    let fixed = EntryOptions {
        relative: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    dotnet.set(&home, &msal_net_blob(OID, unix_now()), &fixed);
    assert!(store.touch(&full, Duration::from_secs(7200)).await.unwrap());
    assert!(store
        .get_and_touch(&full, Duration::from_secs(7200))
        .await
        .unwrap()
        .is_some());
    assert!(dotnet.hash(&home).3 <= 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_tokencache_writes_as_dotnet_redis_cache_reads() {
    let server = RedisServer::start();
    let url = format!("{}?layout=dotnet", server.url());
    let window = Duration::from_secs(900);
    let tc = cache(&url, sliding(window)).await;
    add_mail_token(&tc, OID).await;
    let home = format!("{OID}.{TENANT}");
    let mut dotnet = DotNetCache::new(&server.url(), INSTANCE);
    assert_eq!(dotnet.kind(&format!("{INSTANCE}{home}")), "hash");
    let (abs, sld, _, ttl) = dotnet.hash(&home);
    assert_eq!(sld, 9_000_000_000, "TimeSpan.FromMinutes(15).Ticks");
    assert!(abs > ticks_of(SystemTime::now() + window));
    assert!((895..=900).contains(&ttl), "{ttl}");
    let data = dotnet.get(&home).expect(".NET finds the entry");
    let p = tokencache::schema::Partition::parse(&data).unwrap();
    assert!(p.has_credentials());
    // .NET's Refresh after the TTL ran down gives the window again.
    dotnet.pexpire(&home, 5_000);
    dotnet.get(&home).unwrap();
    assert!((895..=900).contains(&dotnet.hash(&home).3));

    // Without sliding: absexp only, EXPIRE = the hard deadline; .NET does not refresh.
    let oid = "d0e1f2a3-0000-4000-8000-0000000000ab";
    let fixed = cache(&url, ExpiryOptions::default()).await;
    add_mail_token(&fixed, oid).await;
    let home = format!("{oid}.{TENANT}");
    let (abs, sld, _, ttl) = dotnet.hash(&home);
    assert_eq!(sld, -1);
    let expect = (abs - ticks_of(SystemTime::now())) / 10_000_000;
    assert!(
        (ttl - expect).abs() <= 2,
        "EXPIRE {ttl} vs absexp in {expect} s"
    );
    dotnet.get(&home).unwrap();
    assert!(dotnet.hash(&home).3 <= ttl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_each_keys_layout_and_gives_new_keys_the_configured_one() {
    let server = RedisServer::start();
    let mut dotnet = DotNetCache::new(&server.url(), "");
    let string_store = RedisStore::standalone(&server.url(), RedisOptions::default()).unwrap();
    let dotnet_store = RedisStore::standalone(
        &server.url(),
        RedisOptions {
            layout: StoreLayout::DotNet,
            ..RedisOptions::default()
        },
    )
    .unwrap();
    let sixty = Some(Duration::from_secs(60));
    // New keys: the configured layout.
    string_store.set("s", b"one", sixty).await.unwrap();
    dotnet_store.set("h", b"two", sixty).await.unwrap();
    assert_eq!(dotnet.kind("s"), "string");
    assert_eq!(dotnet.kind("h"), "hash");
    // Existing keys keep theirs, whichever store writes them.
    dotnet_store.set("s", b"three", sixty).await.unwrap();
    string_store
        .set_with_expiry(
            "h",
            b"four",
            EntryExpiry {
                absolute: Some(Duration::from_secs(100)),
                sliding: Some(Duration::from_secs(30)),
            },
        )
        .await
        .unwrap();
    assert_eq!(dotnet.kind("s"), "string");
    assert_eq!(dotnet.kind("h"), "hash");
    let (abs, sld, data, ttl) = dotnet.hash("h");
    assert_eq!((sld, data.as_slice(), ttl), (300_000_000, &b"four"[..], 30));
    assert!(abs > ticks_of(SystemTime::now() + Duration::from_secs(95)));
    for store in [&string_store, &dotnet_store] {
        assert_eq!(store.get("s").await.unwrap().unwrap().bytes, b"three");
        assert_eq!(store.get("h").await.unwrap().unwrap().bytes, b"four");
        let (_, l) = store.get_with_layout("s").await.unwrap().unwrap();
        assert_eq!(l, ValueLayout::String);
        // digest and get_along read either layout, as get does
        assert_eq!(
            store.digest("h").await.unwrap(),
            Some(ValueDigest::of(b"four"))
        );
        assert_eq!(
            store.digest("s").await.unwrap(),
            Some(ValueDigest::of(b"three"))
        );
        let (v, other) = store.get_along("h", None, "s").await.unwrap();
        assert_eq!(v.unwrap().bytes, b"four");
        assert_eq!(other.as_deref(), Some(&b"three"[..]));
        let (v, other) = store.get_along("s", None, "h").await.unwrap();
        assert_eq!(v.unwrap().bytes, b"three");
        assert_eq!(other.as_deref(), Some(&b"four"[..]));
    }
    // No expiry: the hash is persistent, with -1 in both fields.
    dotnet_store.set("p", b"five", None).await.unwrap();
    let (abs, sld, _, ttl) = dotnet.hash("p");
    assert_eq!((abs, sld, ttl), (-1, -1, -1));
    assert_eq!(dotnet_store.get("p").await.unwrap().unwrap().ttl, None);
    // A hash without data is no cache entry: bad data (which does not count toward the
    // breaker); another type is what GET says of it (WRONGTYPE), and a write replaces
    // it, as SET did.
    server.cli(&["HSET", "nodata", "absexp", "-1"]);
    let e = string_store.get("nodata").await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::BadData, "{e}");
    assert!(e.message.contains("not a .NET cache entry"), "{e}");
    server.cli(&["RPUSH", "list", "x"]);
    let e = string_store.get("list").await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Server, "{e}");
    assert!(
        e.message.contains("WRONGTYPE") && e.message.contains("list"),
        "{e}"
    );
    dotnet_store.set("list", b"six", sixty).await.unwrap();
    assert_eq!(dotnet.kind("list"), "string");
    // A corrupt expiration field is bad data, not a server failure.
    server.cli(&[
        "HSET", "badexp", "absexp", "soon", "sldexp", "-1", "data", "x",
    ]);
    let e = string_store.get("badexp").await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::BadData, "{e}");
    // Removal, of either layout.
    assert!(string_store.remove("h").await.unwrap());
    assert_eq!(
        dotnet_store
            .remove_many(&["s".to_string(), "p".to_string()])
            .await
            .unwrap(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_reads_and_writes_both_layouts() {
    let cluster = RedisCluster::start();
    let url = format!("{}?layout=dotnet", cluster.url());
    let store = open(&url).await.unwrap();
    let blob = msal_net_blob(OID, unix_now());
    let blob_text = String::from_utf8(blob.clone()).unwrap();
    let (abs, sld, _) = DotNetCache::fields(
        SystemTime::now(),
        &EntryOptions {
            relative: Some(Duration::from_secs(3600)),
            sliding: Some(Duration::from_secs(1200)),
            ..Default::default()
        },
    );
    let mut keys = Vec::new();
    for i in 0..12 {
        // keys spread over the three masters
        let key = format!("{INSTANCE}{i:02}-{OID}.{TENANT}");
        if i % 2 == 0 {
            cluster.cli(&[
                "HSET",
                &key,
                "absexp",
                &abs.to_string(),
                "sldexp",
                &sld.to_string(),
                "data",
                &blob_text,
            ]);
            cluster.cli(&["EXPIRE", &key, "1200"]);
        } else {
            cluster.cli(&["SET", &key, &blob_text, "EX", "1200"]);
        }
        keys.push(key);
    }
    for (i, key) in keys.iter().enumerate() {
        let (v, layout) = store.get_with_layout(key).await.unwrap().unwrap();
        assert!(v.bytes == blob, "{key}: the blob read back (not printed)");
        assert_eq!(layout.name(), if i % 2 == 0 { "dotnet" } else { "string" });
        store
            .set(key, b"{}", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        let kind = cluster.cli(&["TYPE", key]);
        assert_eq!(kind, if i % 2 == 0 { "hash" } else { "string" }, "{key}");
    }
    // A partition and another key (another slot) in one call, either layout; digests.
    for pair in keys.windows(2) {
        let (v, other) = store.get_along(&pair[0], None, &pair[1]).await.unwrap();
        assert_eq!(v.unwrap().bytes, b"{}");
        assert_eq!(other.as_deref(), Some(&b"{}"[..]));
        assert_eq!(
            store.digest(&pair[0]).await.unwrap(),
            Some(ValueDigest::of(b"{}"))
        );
    }
    let fresh = format!("{INSTANCE}fresh");
    store.set(&fresh, b"{}", None).await.unwrap();
    assert_eq!(cluster.cli(&["TYPE", &fresh]), "hash");
    assert_eq!(cluster.cli(&["HGET", &fresh, "data"]), "{}");
}

// One thread: the log capture is the thread's.
#[tokio::test]
async fn data_protection_values_are_reported_and_never_overwritten() {
    let server = RedisServer::start();
    let mut dotnet = DotNetCache::new(&server.url(), INSTANCE);
    let home = format!("{OID}.{TENANT}");
    let mut protected = DATA_PROTECTION_MAGIC.to_vec();
    protected.extend((0u8..=255).cycle().take(600));
    let options = EntryOptions {
        sliding: Some(Duration::from_secs(1200)),
        ..Default::default()
    };
    dotnet.set(&home, &protected, &options);
    let (logs, _guard) = capture();
    let tc = cache(&server.url(), ExpiryOptions::default()).await;
    let found = tc
        .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
        .await
        .unwrap();
    assert!(found.is_none());
    let resp = sample::user_response(OID, TENANT, MAIL, unix_now(), 3600).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, MAIL);
    let e = tc.save_token_response(&req, &resp).await.unwrap_err();
    assert!(
        matches!(&e, Error::DataProtected { key } if *key == format!("{INSTANCE}{home}")),
        "{e}"
    );
    assert!(e.to_string().contains("encrypted by .NET Data Protection"));
    let (_, _, data, _) = dotnet.hash(&home);
    assert!(data == protected, "the .NET value is untouched");
    let text = logs.lines().join("\n");
    assert!(text.contains("encrypted by .NET Data Protection"), "{text}");
    assert!(!text.to_lowercase().contains("corrupt"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_removes_a_dotnet_user_partition_and_its_obo_partitions() {
    let server = RedisServer::start();
    let url = format!("{}?layout=dotnet", server.url());
    let home = format!("{OID}.{TENANT}");
    let mut dotnet = DotNetCache::new(&server.url(), INSTANCE);
    // The web app's user partition, written by .NET.
    dotnet.set(
        &home,
        &msal_net_blob(OID, unix_now()),
        &EntryOptions {
            sliding: Some(Duration::from_secs(3600)),
            ..Default::default()
        },
    );
    // A web API (tokencache, .NET layout) gets OBO tokens for the user.
    let api = cache(&url, ExpiryOptions::default()).await;
    let t = unix_now();
    let mut obo_keys = Vec::new();
    for i in 0..2 {
        let assertion = sample::incoming_assertion(OID, TENANT, t + i, t + 3600 + i);
        let resp = sample::obo_response(OID, TENANT, MAIL, t, 3600).unwrap();
        let req = SaveRequest::new(
            "0b7e1f4e-5a43-4d1c-9d3b-api000000001",
            SaveFor::Obo {
                assertion: &assertion,
            },
            ENVIRONMENT,
            TENANT,
            MAIL,
        );
        api.save_token_response(&req, &resp).await.unwrap();
        let key = format!(
            "{INSTANCE}{}",
            tokencache::partition::assertion_hash(&assertion)
        );
        assert_eq!(
            dotnet.kind(&key),
            "hash",
            "OBO partitions in the .NET layout"
        );
        obo_keys.push(key);
    }
    let out = api.remove_account(&home).await.unwrap();
    assert_eq!(out.obo_partitions, 2);
    assert!(out.l2_complete);
    assert_eq!(dotnet.kind(&format!("{INSTANCE}{home}")), "none");
    for k in &obo_keys {
        assert_eq!(dotnet.kind(k), "none", "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_store_under_load_never_meets_wrongtype_nor_converts() {
    let server = RedisServer::start();
    let mut dotnet = DotNetCache::new(&server.url(), INSTANCE);
    let url = format!("{}?layout=dotnet", server.url());
    let oids: Vec<String> = (0..40)
        .map(|i| format!("d0e1f2a3-0000-4000-8000-{i:012}"))
        .collect();
    for (i, oid) in oids.iter().enumerate() {
        let home = format!("{oid}.{TENANT}");
        let blob = msal_net_blob(oid, unix_now());
        if i % 2 == 0 {
            dotnet.set(
                &home,
                &blob,
                &EntryOptions {
                    sliding: Some(Duration::from_secs(1200)),
                    ..Default::default()
                },
            );
        } else {
            let _: () = redis::cmd("SET")
                .arg(format!("{INSTANCE}{home}"))
                .arg(&blob)
                .arg("EX")
                .arg(1200)
                .query(&mut dotnet.conn)
                .unwrap();
        }
    }
    let tc = TokenCache::builder()
        .store_url(&url)
        .key_prefix(INSTANCE)
        .build()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for round in 0..3 {
        for oid in &oids {
            let (tc, oid) = (tc.clone(), oid.clone());
            tasks.push(tokio::spawn(async move {
                let home = format!("{oid}.{TENANT}");
                let found = tc
                    .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
                    .await
                    .unwrap();
                assert!(found.is_some());
                if round == 1 {
                    add_mail_token(&tc, &oid).await;
                }
                tc.two_level().forget_local(&home);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = tc.stats();
    assert_eq!(stats.l2_errors, 0, "{stats:?}");
    assert_eq!(stats.breaker_opened, 0);
    for (i, oid) in oids.iter().enumerate() {
        let full = format!("{INSTANCE}{oid}.{TENANT}");
        let want = if i % 2 == 0 { "hash" } else { "string" };
        assert_eq!(dotnet.kind(&full), want, "{full}");
    }
}

/// A change queued while L2 was down is dropped, not written, when the partition it
/// would replace turns out to be encrypted by .NET Data Protection.
#[tokio::test]
async fn a_queued_change_never_replaces_a_data_protected_partition() {
    let memory: tokencache::store::SharedStore =
        std::sync::Arc::new(tokencache::store::MemoryStore::new());
    let counting = common::Counting::new(memory.clone(), Duration::ZERO);
    let home = format!("{OID}.{TENANT}");
    let full = format!("{INSTANCE}{home}");
    let mut protected = DATA_PROTECTION_MAGIC.to_vec();
    protected.extend((0u8..=255).cycle().take(300));
    let tc = TokenCache::builder()
        .store(counting.clone())
        .key_prefix(INSTANCE)
        .probe_l2_at_start(false)
        .build()
        .await
        .unwrap();
    // L2 down: the save is queued as a change to merge into L2's copy later.
    counting.fail(true);
    add_mail_token(&tc, OID).await;
    assert_eq!(tc.two_level().queue_depth(), 1);
    // Meanwhile a .NET replica with Encrypt on wrote the partition.
    memory
        .set(&full, &protected, Some(Duration::from_secs(600)))
        .await
        .unwrap();
    counting.fail(false);
    assert!(tc.two_level().recover_now().await);
    assert_eq!(tc.two_level().queue_depth(), 0, "the change is dropped");
    let kept = memory.get(&full).await.unwrap().unwrap();
    assert!(kept.bytes == protected, "the .NET value is untouched");
    // A sign-out still removes it.
    tc.remove_account(&home).await.unwrap();
    assert!(memory.get(&full).await.unwrap().is_none());
}
