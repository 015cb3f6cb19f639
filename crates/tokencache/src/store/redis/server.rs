//! What the server is, asked once per connection (`HELLO`, else `INFO server`), and
//! whether it meets tokencache's requirements (docs/design.md §16): Redis or Valkey 6.2
//! or later (`GETEX`, `ZADD … GT`), in the mode the URL names (a `redis://` URL at a
//! Cluster node or a Sentinel is refused with the URL to use instead).

use std::fmt;

use redis::Value;

use crate::store::{StoreError, StoreErrorKind};

/// A server version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// Parses `7.0.15` (also `7.2`, `8.0.1-rc1`); `None` if it does not start with digits.
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.trim().split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let patch = parts.next().flatten().unwrap_or(0);
        Some(Version(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The oldest server tokencache works with: `GETEX` and `ZADD … GT` came in Redis 6.2.
pub const MIN_VERSION: Version = Version(6, 2, 0);

/// How a server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMode {
    /// A single server (or a master/replica set).
    Standalone,
    /// A node of a Redis Cluster.
    Cluster,
    /// A Sentinel.
    Sentinel,
    /// Something else, as the server named it.
    Other(String),
}

impl ServerMode {
    fn parse(s: &str) -> ServerMode {
        match s.trim().to_ascii_lowercase().as_str() {
            "standalone" => ServerMode::Standalone,
            "cluster" => ServerMode::Cluster,
            "sentinel" => ServerMode::Sentinel,
            other => ServerMode::Other(other.to_string()),
        }
    }
}

/// What a server says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `redis`, `valkey`, or what else the server calls itself.
    pub server: String,
    /// Its version.
    pub version: Version,
    /// Standalone, Cluster or Sentinel.
    pub mode: ServerMode,
    /// `master` or `replica` (`slave` in older servers), when it says.
    pub role: Option<String>,
}

impl ServerInfo {
    /// The product's name as people write it (`Redis 7.0.15`, `Valkey 8.0.1`).
    pub fn product(&self) -> String {
        let name = match self.server.as_str() {
            "redis" => "Redis".to_string(),
            "valkey" => "Valkey".to_string(),
            other => other.to_string(),
        };
        format!("{name} {}", self.version)
    }

    /// Whether it is a master (or does not say).
    pub fn is_master(&self) -> bool {
        !matches!(self.role.as_deref(), Some("replica" | "slave"))
    }

    /// Reads the reply to `HELLO` (a map in RESP3, a flat key/value array in RESP2).
    pub(crate) fn from_hello(v: &Value) -> Option<ServerInfo> {
        let pairs: Vec<(String, String)> = match v {
            Value::Map(m) => m
                .iter()
                .filter_map(|(k, v)| Some((text(k)?, text(v).unwrap_or_default())))
                .collect(),
            Value::Array(items) => items
                .chunks_exact(2)
                .filter_map(|kv| Some((text(&kv[0])?, text(&kv[1]).unwrap_or_default())))
                .collect(),
            _ => return None,
        };
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        Some(ServerInfo {
            server: get("server").unwrap_or_else(|| "redis".into()),
            version: Version::parse(&get("version")?)?,
            mode: ServerMode::parse(&get("mode").unwrap_or_else(|| "standalone".into())),
            role: get("role"),
        })
    }

    /// Reads the text of `INFO server` (and `INFO replication`'s `role:` when present).
    pub(crate) fn from_info(text: &str) -> Option<ServerInfo> {
        let get = |k: &str| {
            text.lines().find_map(|l| {
                let (key, v) = l.trim().split_once(':')?;
                (key == k).then(|| v.trim().to_string())
            })
        };
        let (server, version) = match get("valkey_version") {
            Some(v) => ("valkey".to_string(), v),
            None => (
                get("server_name").unwrap_or_else(|| "redis".into()),
                get("redis_version")?,
            ),
        };
        Some(ServerInfo {
            server,
            version: Version::parse(&version)?,
            mode: ServerMode::parse(&get("redis_mode").unwrap_or_else(|| "standalone".into())),
            role: get("role"),
        })
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The mode a URL expects of the server it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// `redis://` / `rediss://`.
    Standalone,
    /// The master a Sentinel named.
    SentinelMaster,
    /// `redis+cluster://`.
    Cluster,
}

/// Checks what the server at `endpoint` says it is against tokencache's requirements
/// and the URL's mode; the error is one line that says what to do.
pub(crate) fn require(info: &ServerInfo, expect: Expect, endpoint: &str) -> Result<(), StoreError> {
    let config = |m: String| Err(StoreError::new(StoreErrorKind::Config, endpoint, m));
    if info.version < MIN_VERSION {
        return config(format!(
            "{} at {endpoint} is too old: tokencache needs Redis or Valkey {MIN_VERSION} or later (GETEX, ZADD GT); upgrade the server",
            info.product()
        ));
    }
    match (&info.mode, expect) {
        (ServerMode::Cluster, Expect::Standalone | Expect::SentinelMaster) => config(format!(
            "{endpoint} is a Redis Cluster node: use redis+cluster://{endpoint} (rediss+cluster:// with TLS)"
        )),
        (ServerMode::Sentinel, Expect::Standalone | Expect::SentinelMaster) => config(format!(
            "{endpoint} is a Sentinel: use redis+sentinel://{endpoint}/MASTER_NAME (rediss+sentinel:// with TLS)"
        )),
        (ServerMode::Standalone, Expect::Cluster) => config(format!(
            "{endpoint} is not a Cluster node (cluster mode is off): use redis://{endpoint} (rediss:// with TLS)"
        )),
        (_, Expect::SentinelMaster) if !info.is_master() => Err(StoreError::new(
            StoreErrorKind::Connection,
            endpoint,
            format!("{endpoint} is a replica, not the master (a failover is under way); the Sentinels are asked again"),
        )),
        _ => Ok(()),
    }
}

/// Asks the server what it is: `HELLO` (Redis 6+, allowed to every ACL user), else
/// `INFO server` (older servers, or a proxy that refuses `HELLO`). `Ok(None)`: it would
/// not say (neither command allowed); the check is then left to `tokencache check`.
pub(crate) async fn ask<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
) -> redis::RedisResult<Option<ServerInfo>> {
    match redis::cmd("HELLO").query_async::<Value>(conn).await {
        Ok(v) => {
            if let Some(info) = ServerInfo::from_hello(&v) {
                return Ok(Some(info));
            }
        }
        Err(e) if e.kind() == redis::ErrorKind::Io || e.is_timeout() => return Err(e),
        // no password given to a server that wants one: say that at connect
        Err(e) if e.code() == Some("NOAUTH") => return Err(e),
        Err(_) => {}
    }
    match redis::cmd("INFO")
        .arg("server")
        .query_async::<String>(conn)
        .await
    {
        Ok(text) => Ok(ServerInfo::from_info(&text)),
        Err(e) if e.kind() == redis::ErrorKind::Io || e.is_timeout() => Err(e),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(Version::parse("7.0.15"), Some(Version(7, 0, 15)));
        assert_eq!(Version::parse("6.2"), Some(Version(6, 2, 0)));
        assert_eq!(Version::parse("8.0.1-rc1"), Some(Version(8, 0, 1)));
        assert_eq!(Version::parse("255.255.255"), Some(Version(255, 255, 255)));
        assert_eq!(Version::parse("x"), None);
        assert_eq!(Version::parse(""), None);
        assert!(Version(6, 0, 16) < MIN_VERSION);
        assert!(Version(6, 2, 0) >= MIN_VERSION);
        assert!(Version(7, 0, 0) > MIN_VERSION);
    }

    #[test]
    fn hello_is_read_in_both_protocols() {
        let resp2 = Value::Array(vec![
            bulk("server"),
            bulk("valkey"),
            bulk("version"),
            bulk("8.0.1"),
            bulk("proto"),
            Value::Int(2),
            bulk("mode"),
            bulk("cluster"),
            bulk("role"),
            bulk("master"),
        ]);
        let i = ServerInfo::from_hello(&resp2).unwrap();
        assert_eq!(i.product(), "Valkey 8.0.1");
        assert_eq!(i.mode, ServerMode::Cluster);
        assert!(i.is_master());
        let resp3 = Value::Map(vec![
            (bulk("server"), bulk("redis")),
            (bulk("version"), bulk("7.0.15")),
            (bulk("mode"), bulk("standalone")),
            (bulk("role"), bulk("replica")),
        ]);
        let i = ServerInfo::from_hello(&resp3).unwrap();
        assert_eq!(i.product(), "Redis 7.0.15");
        assert!(!i.is_master());
        assert_eq!(ServerInfo::from_hello(&Value::Nil), None);
    }

    #[test]
    fn info_server_is_read() {
        let text = "# Server\r\nredis_version:6.0.16\r\nredis_mode:standalone\r\nos:Linux\r\n";
        let i = ServerInfo::from_info(text).unwrap();
        assert_eq!(i.version, Version(6, 0, 16));
        assert_eq!(i.mode, ServerMode::Standalone);
        let v = ServerInfo::from_info(
            "redis_version:7.2.4\nserver_name:valkey\nvalkey_version:8.1.0\nredis_mode:cluster\n",
        )
        .unwrap();
        assert_eq!(v.product(), "Valkey 8.1.0");
        assert_eq!(v.mode, ServerMode::Cluster);
        assert_eq!(ServerInfo::from_info("nothing here"), None);
    }

    #[test]
    fn requirements_say_what_to_do() {
        let info = |v: Version, mode: ServerMode, role: &str| ServerInfo {
            server: "redis".into(),
            version: v,
            mode,
            role: Some(role.into()),
        };
        let old = require(
            &info(Version(6, 0, 16), ServerMode::Standalone, "master"),
            Expect::Standalone,
            "h:1",
        )
        .unwrap_err();
        assert_eq!(old.kind, StoreErrorKind::Config);
        assert!(
            old.message.contains("Redis 6.0.16") && old.message.contains("6.2.0"),
            "{old}"
        );
        assert!(require(
            &info(Version(6, 2, 0), ServerMode::Standalone, "master"),
            Expect::Standalone,
            "h:1"
        )
        .is_ok());
        let cluster = require(
            &info(Version(7, 0, 0), ServerMode::Cluster, "master"),
            Expect::Standalone,
            "h:1",
        )
        .unwrap_err();
        assert!(cluster.message.contains("redis+cluster://h:1"), "{cluster}");
        let sentinel = require(
            &info(Version(7, 0, 0), ServerMode::Sentinel, "master"),
            Expect::Standalone,
            "h:1",
        )
        .unwrap_err();
        assert!(
            sentinel
                .message
                .contains("redis+sentinel://h:1/MASTER_NAME"),
            "{sentinel}"
        );
        let plain = require(
            &info(Version(7, 0, 0), ServerMode::Standalone, "master"),
            Expect::Cluster,
            "h:1",
        )
        .unwrap_err();
        assert!(plain.message.contains("not a Cluster node"), "{plain}");
        let replica = require(
            &info(Version(7, 0, 0), ServerMode::Standalone, "slave"),
            Expect::SentinelMaster,
            "h:1",
        )
        .unwrap_err();
        assert_eq!(replica.kind, StoreErrorKind::Connection);
        for e in [old, cluster, sentinel, plain, replica] {
            assert!(!e.to_string().contains('\n'));
        }
    }
}
