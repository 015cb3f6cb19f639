//! The .NET `IDistributedCache` layout of a Redis entry, read and written
//! (docs/design.md §4).
//!
//! Microsoft.Identity.Web keeps its partitions through `IDistributedCache`; the Redis
//! implementation of that interface (`RedisCache` in
//! Microsoft.Extensions.Caching.StackExchangeRedis, dotnet/aspnetcore
//! `src/Caching/StackExchangeRedis/src/RedisCache.cs`) stores each entry as a Redis
//! **hash** under `InstanceName + key`:
//!
//! | field | value |
//! |---|---|
//! | `absexp` | absolute expiration, `DateTimeOffset.Ticks` (100 ns since 0001-01-01 UTC), decimal; `-1`: none |
//! | `sldexp` | sliding window, `TimeSpan.Ticks`, decimal; `-1`: none |
//! | `data` | the value bytes (the MSAL blob) |
//!
//! with a key TTL (`EXPIRE`, whole seconds, truncated) of `min(absexp − now, sldexp)`,
//! none when neither is set. Current versions write `HSET` + `EXPIRE` in one batch,
//! older ones a Lua script with `HMSET` + `EXPIRE`; the fields are the same. A read
//! of an entry with a sliding window re-arms the key's TTL to `min(absexp − now,
//! sldexp)` (its `Refresh`).
//!
//! The [`RedisStore`](super::RedisStore) reads both layouts in one round trip (one Lua
//! script that looks at the key's `TYPE`), writes an existing key in the layout it
//! already has, and a new key in its configured [`StoreLayout`]. It remembers nothing
//! between calls.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{StoreError, StoreErrorKind, StoreResult};

/// The layout a Redis store writes new keys in (`?layout=` on the store URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreLayout {
    /// A Redis string holding the blob (`?layout=string`, the default): what msal-node's
    /// `DistributedCachePlugin`, the usual MSAL Python set-up and tokencache write.
    #[default]
    String,
    /// A hash with `absexp`, `sldexp` and `data`, as .NET's `RedisCache` writes it
    /// (`?layout=dotnet`): what Microsoft.Identity.Web's distributed token cache reads.
    DotNet,
}

impl StoreLayout {
    /// Parses the value of `?layout=`: `string` or `dotnet`.
    ///
    /// # Errors
    /// `Config` for any other value, naming the accepted ones.
    pub fn parse(s: &str) -> StoreResult<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "string" => Ok(StoreLayout::String),
            "dotnet" => Ok(StoreLayout::DotNet),
            other => Err(StoreError::new(
                StoreErrorKind::Config,
                "store url",
                format!("layout must be string or dotnet, got {other:?}"),
            )),
        }
    }

    /// The name used in URLs and scripts: `string` or `dotnet`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreLayout::String => "string",
            StoreLayout::DotNet => "dotnet",
        }
    }
}

impl fmt::Display for StoreLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one entry was found stored (see [`Store::get_with_layout`](super::Store::get_with_layout)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueLayout {
    /// A plain value (every store; a Redis string).
    String,
    /// A .NET `RedisCache` hash, with its expiration fields.
    DotNet {
        /// `absexp`: the absolute expiration, in .NET ticks (`None`: `-1` or absent).
        absolute_ticks: Option<i64>,
        /// `sldexp`: the sliding window (`None`: `-1` or absent).
        sliding: Option<Duration>,
    },
}

impl ValueLayout {
    /// `string` or `dotnet`, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            ValueLayout::String => "string",
            ValueLayout::DotNet { .. } => "dotnet",
        }
    }
}

/// .NET ticks (100 ns) between 0001-01-01 and the Unix epoch.
pub const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;

/// A point in time as `DateTimeOffset.UtcTicks`.
pub fn ticks_of(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH_TICKS.saturating_add(duration_ticks(d)),
        Err(e) => UNIX_EPOCH_TICKS.saturating_sub(duration_ticks(e.duration())),
    }
}

/// A length of time as `TimeSpan.Ticks`.
pub fn duration_ticks(d: Duration) -> i64 {
    i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX)
}

/// A `TimeSpan.Ticks` value as a duration (negative: zero).
pub fn ticks_duration(ticks: i64) -> Duration {
    let t = ticks.max(0) as u64;
    Duration::new(t / 10_000_000, ((t % 10_000_000) * 100) as u32)
}

/// The first four bytes of an ASP.NET Core Data Protection payload (its magic header,
/// `0x09F0C9F0`, big-endian; a 16-byte key id and the ciphertext follow).
pub const DATA_PROTECTION_MAGIC: [u8; 4] = [0x09, 0xF0, 0xC9, 0xF0];

/// Whether `bytes` are a value protected by ASP.NET Core Data Protection (what
/// Microsoft.Identity.Web stores when its `Encrypt` option is on). tokencache cannot
/// read such values: it reports them as encrypted, never as corrupt, and never writes
/// over them.
pub fn is_data_protected(bytes: &[u8]) -> bool {
    // magic + key id + at least one block of ciphertext
    bytes.len() > DATA_PROTECTION_MAGIC.len() + 16 && bytes.starts_with(&DATA_PROTECTION_MAGIC)
}

/// The `EXPIRE` seconds `RedisCache` gives a key: `min(absolute, sliding)` in whole
/// seconds, truncated (`None`: neither is set). tokencache never writes 0 (which
/// would delete the key it just wrote): a remaining life under a second gets 1.
pub(crate) fn expire_seconds(absolute: Option<Duration>, sliding: Option<Duration>) -> Option<u64> {
    let ttl = match (absolute, sliding) {
        (Some(a), Some(s)) => a.min(s),
        (Some(a), None) => a,
        (None, Some(s)) => s,
        (None, None) => return None,
    };
    Some(ttl.as_secs().max(1))
}

/// The error message (class `BadData`) of a read of a hash that is not a .NET cache
/// entry (it has no `data` field): another application's key, not a miss.
pub const NOT_A_DOTNET_ENTRY: &str =
    "the key holds a Redis hash that is not a .NET cache entry (it has no data field)";

/// Lua: reads `KEYS[1]` whatever it holds, in one round trip.
///
/// ARGV[1]: milliseconds to give a *string* entry (`GETEX PX`), `-1` for none.
/// ARGV[2]: how far (a fraction of the window) a sliding *hash* must have run down
/// before this read re-arms it (`0`: always, as `Refresh` does).
///
/// Replies `{'string', value, pttl}`, `{'hash', data, pttl, absexp, sldexp}` (missing
/// fields as nil), `{'none'}`, `{'hash'}` (a hash without `data`: not a cache entry),
/// `{'expired'}` (a hash past its `absexp`, removed as `Refresh` would), or `{type}` for
/// any other Redis type. A hash's `Refresh` TTL is `min(absexp − now, sldexp)` with the
/// server's clock.
pub(crate) const READ_ANY_LUA: &str = r#"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'string' then
  local v = redis.call('GET', KEYS[1])
  local want = tonumber(ARGV[1])
  if want >= 0 then
    -- the TTL just set, as GETEX reports it (a PTTL now may have ticked down a ms)
    redis.call('PEXPIRE', KEYS[1], want)
    return {'string', v, want}
  end
  return {'string', v, redis.call('PTTL', KEYS[1])}
end
if kind ~= 'hash' then return {kind} end
local f = redis.call('HMGET', KEYS[1], 'absexp', 'sldexp', 'data')
if not f[3] then return {'hash'} end
local pttl = redis.call('PTTL', KEYS[1])
local sld = tonumber(f[2] or '-1') or -1
local abs = tonumber(f[1] or '-1') or -1
if sld > 0 then
  local target = sld / 10000
  if abs >= 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 10000000 + tonumber(t[2]) * 10 + 621355968000000000
    local rel = (abs - now) / 10000
    if rel < target then target = rel end
  end
  target = math.floor(target)
  if target <= 0 then
    redis.call('DEL', KEYS[1])
    return {'expired'}
  end
  if pttl < 0 or target - pttl >= target * tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[1], target)
    pttl = target
  end
end
return {'hash', f[3], pttl, f[1] or false, f[2] or false}
"#;

/// Lua: writes `KEYS[1]` in the layout it has, or in the configured one when it is new.
///
/// ARGV[1] `string`|`dotnet` (the configured layout), ARGV[2] the value, ARGV[3] the
/// string TTL in ms (`-1`: none), ARGV[4] `absexp` ticks, ARGV[5] `sldexp` ticks (each
/// `-1`: none), ARGV[6] `EXPIRE` seconds (`-1`: none, the key is made persistent).
/// A hash gets the three fields (`HSET`) and `EXPIRE`, as `RedisCache` writes them; a
/// key of another type (not a string, not a hash) is replaced by a string, as `SET`
/// always did. Replies the layout written.
pub(crate) const WRITE_ANY_LUA: &str = r#"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'hash' or (kind == 'none' and ARGV[1] == 'dotnet') then
  redis.call('HSET', KEYS[1], 'absexp', ARGV[4], 'sldexp', ARGV[5], 'data', ARGV[2])
  if ARGV[6] ~= '-1' then
    redis.call('EXPIRE', KEYS[1], ARGV[6])
  else
    redis.call('PERSIST', KEYS[1])
  end
  return 'dotnet'
end
if ARGV[3] ~= '-1' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 'string'
"#;

/// Lua: [`READ_ANY_LUA`] of `KEYS[1]` (with `ARGV[1]`, `ARGV[2]` as there) and of
/// `KEYS[2]` (no TTL change), in one call: `{reply1, reply2}`. A partition and its
/// owner's revocation stamp in one round trip (standalone Redis; in a Cluster the two
/// keys live in different slots).
pub(crate) fn read_along_lua() -> String {
    let body = READ_ANY_LUA
        .replace("KEYS[1]", "key")
        .replace("ARGV[1]", "want")
        .replace("ARGV[2]", "fraction");
    format!(
        "local function read(key, want, fraction)\n{body}\nend\n\
         return {{read(KEYS[1], ARGV[1], ARGV[2]), read(KEYS[2], '-1', ARGV[2])}}\n"
    )
}

/// Lua: the SHA-1 (hex) of the value `KEYS[1]` holds in either layout (a string's
/// bytes, a .NET hash's `data`), or nil; no side effect (no sliding refresh). The
/// strict read's version check: 40 bytes on the wire instead of the value.
pub(crate) const DIGEST_ANY_LUA: &str = r#"
local kind = redis.call('TYPE', KEYS[1]).ok
local v
if kind == 'string' then
  v = redis.call('GET', KEYS[1])
elseif kind == 'hash' then
  v = redis.call('HGET', KEYS[1], 'data')
end
if not v then return false end
return redis.sha1hex(v)
"#;

/// Lua: sets the TTL of `KEYS[1]` (ARGV[1] ms). A string gets it as asked; a .NET
/// hash follows its own fields (`Refresh`: `min(absexp − now, sldexp)`, nothing when
/// it has no sliding window, so a .NET reader never sees it outlive its `absexp`).
/// Replies 1 when the key exists.
pub(crate) const TOUCH_ANY_LUA: &str = r#"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return 0 end
if kind ~= 'hash' then
  return redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local f = redis.call('HMGET', KEYS[1], 'absexp', 'sldexp')
local sld = tonumber(f[2] or '-1') or -1
if sld <= 0 then return 1 end
local target = sld / 10000
local abs = tonumber(f[1] or '-1') or -1
if abs >= 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 10000000 + tonumber(t[2]) * 10 + 621355968000000000
  local rel = (abs - now) / 10000
  if rel < target then target = rel end
end
target = math.floor(target)
if target <= 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('PEXPIRE', KEYS[1], target)
return 1
"#;

/// How far a sliding .NET entry must have run down (a fraction of its window) before a
/// plain read re-arms it: the default of tokencache's own touch rule
/// ([`ExpiryOptions::touch_fraction`](crate::twolevel::ExpiryOptions::touch_fraction)),
/// so reads of a hot key do not each write its TTL.
pub(crate) const READ_REFRESH_FRACTION: &str = "0.1";

/// Parses a decimal ticks field (`-1`, empty or absent: none).
pub(crate) fn parse_ticks(field: Option<&[u8]>) -> StoreResult<Option<i64>> {
    let Some(raw) = field else { return Ok(None) };
    let text = std::str::from_utf8(raw).ok().map(str::trim);
    match text.map(str::parse::<i64>) {
        Some(Ok(-1)) => Ok(None),
        Some(Ok(v)) if v >= 0 => Ok(Some(v)),
        _ if raw.is_empty() => Ok(None),
        _ => Err(StoreError::new(
            StoreErrorKind::BadData,
            "",
            "a .NET cache entry has an expiration field that is not a tick count",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_match_dotnet() {
        // DateTimeOffset(1970-01-01, +0).UtcTicks and (2024-01-01).UtcTicks
        assert_eq!(ticks_of(UNIX_EPOCH), 621_355_968_000_000_000);
        let y2024 = UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        assert_eq!(ticks_of(y2024), 638_396_640_000_000_000);
        // TimeSpan.FromHours(1).Ticks
        assert_eq!(duration_ticks(Duration::from_secs(3600)), 36_000_000_000);
        assert_eq!(ticks_duration(36_000_000_000), Duration::from_secs(3600));
        assert_eq!(ticks_duration(-5), Duration::ZERO);
    }

    #[test]
    fn expire_is_redis_cache_s() {
        let s = Duration::from_secs;
        assert_eq!(expire_seconds(None, None), None);
        assert_eq!(expire_seconds(Some(s(100)), None), Some(100));
        assert_eq!(expire_seconds(None, Some(s(60))), Some(60));
        assert_eq!(expire_seconds(Some(s(100)), Some(s(60))), Some(60));
        assert_eq!(expire_seconds(Some(s(30)), Some(s(60))), Some(30));
        assert_eq!(
            expire_seconds(Some(Duration::from_millis(2_999)), None),
            Some(2)
        );
        assert_eq!(
            expire_seconds(Some(Duration::from_millis(10)), None),
            Some(1)
        );
    }

    #[test]
    fn layouts_parse() {
        assert_eq!(StoreLayout::parse("dotnet").unwrap(), StoreLayout::DotNet);
        assert_eq!(StoreLayout::parse("String").unwrap(), StoreLayout::String);
        let e = StoreLayout::parse("hash").unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Config);
        assert!(e.message.contains("string or dotnet"));
    }

    #[test]
    fn data_protection_is_recognised() {
        let mut protected = DATA_PROTECTION_MAGIC.to_vec();
        protected.extend_from_slice(&[7u8; 64]);
        assert!(is_data_protected(&protected));
        assert!(!is_data_protected(b"{\"AccessToken\":{}}"));
        assert!(!is_data_protected(&DATA_PROTECTION_MAGIC));
    }

    #[test]
    fn tick_fields_parse() {
        assert_eq!(parse_ticks(None).unwrap(), None);
        assert_eq!(parse_ticks(Some(b"-1")).unwrap(), None);
        assert_eq!(parse_ticks(Some(b"")).unwrap(), None);
        assert_eq!(
            parse_ticks(Some(b"638396640000000000")).unwrap(),
            Some(638_396_640_000_000_000)
        );
        assert!(parse_ticks(Some(b"soon")).is_err());
    }
}
