//! Revocation stamps as stored: the moment of a user's last sign-out, in ms since the
//! epoch, written as decimal Unix seconds with milliseconds (`1800000000.123`); plain
//! seconds (stamps written before) read as the end of that second. A stamp only moves
//! forward: a write keeps the later of it and the stamp the key holds.

use std::time::Duration;

/// A revocation stamp's value, in ms since the epoch (see the module docs); `None` for
/// anything else.
pub fn parse_stamp(bytes: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(bytes).ok()?.trim();
    match s.split_once('.') {
        Some((secs, frac)) if frac.len() == 3 && frac.bytes().all(|b| b.is_ascii_digit()) => {
            let secs: i64 = secs.parse().ok()?;
            let ms: i64 = frac.parse().ok()?;
            secs.checked_mul(1000)?.checked_add(ms)
        }
        Some(_) => None,
        None => s.parse::<i64>().ok()?.checked_mul(1000)?.checked_add(999),
    }
}

/// The stored form of a stamp (see [`parse_stamp`]).
pub fn format_stamp(at_ms: i64) -> String {
    format!("{}.{:03}", at_ms.div_euclid(1000), at_ms.rem_euclid(1000))
}

/// When a stamp written "now" is: by the store's own clock, or at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampAt {
    /// The store's clock (Redis `TIME`, read inside the script that writes the stamp), so
    /// that every replica's sign-outs are stamped by one clock; a store without a clock
    /// of its own uses the given instant.
    StoreClock {
        /// The caller's "now" (ms since the epoch), for a store without a clock.
        fallback_ms: i64,
    },
    /// This instant (ms since the epoch): a sign-out queued during an outage, or a
    /// caller whose clock is deliberately its own (a simulation).
    Instant(i64),
}

impl StampAt {
    /// The instant to use where the store has no clock of its own.
    pub fn fallback(self) -> i64 {
        match self {
            StampAt::StoreClock { fallback_ms } | StampAt::Instant(fallback_ms) => fallback_ms,
        }
    }
}

/// The Lua script that writes a stamp on Redis: `ARGV[1]` the instant in ms, or empty for
/// the server's `TIME`; `ARGV[2]` the TTL in ms, or empty. Keeps the later of it and the
/// stamp the key holds (a value that is not a stamp is replaced); returns the stamp
/// written, in ms. One key, so Cluster-safe.
pub(crate) const WRITE_STAMP_LUA: &str = r#"
local ms
if ARGV[1] == '' then
  local t = redis.call('TIME')
  ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  ms = tonumber(ARGV[1])
end
if redis.call('TYPE', KEYS[1]).ok == 'string' then
  local cur = redis.call('GET', KEYS[1])
  local s, f = string.match(cur, '^%s*(%d+)%.(%d%d%d)%s*$')
  local c
  if s then
    c = tonumber(s) * 1000 + tonumber(f)
  else
    local p = string.match(cur, '^%s*(%d+)%s*$')
    if p then c = tonumber(p) * 1000 + 999 end
  end
  if c and c > ms then ms = c end
end
local v = string.format('%d.%03d', math.floor(ms / 1000), ms % 1000)
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
else
  redis.call('SET', KEYS[1], v)
end
return ms
"#;

/// The TTL argument of [`WRITE_STAMP_LUA`].
pub(crate) fn ttl_arg(ttl: Option<Duration>) -> String {
    ttl.map(|t| super::util::ttl_millis(t).to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_both_forms_and_refuse_garbage() {
        assert_eq!(parse_stamp(b"1800000000.123"), Some(1_800_000_000_123));
        assert_eq!(
            parse_stamp(format_stamp(1_800_000_000_007).as_bytes()),
            Some(1_800_000_000_007)
        );
        // written before stamps had milliseconds: the end of that second
        assert_eq!(parse_stamp(b"1800000000"), Some(1_800_000_000_999));
        for bad in [
            &b""[..],
            b"x",
            b"1.2",
            b"1.2345",
            b"1.-12",
            b"99999999999999999999",
            b"\xff",
        ] {
            assert_eq!(parse_stamp(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_stamp(format!("{}", i64::MAX).as_bytes()),
            None,
            "overflow"
        );
    }
}
