//! The Lua scripts of the Redis store that are about tokencache's own semantics (the
//! layout scripts are in `dotnet.rs`): link sets as sorted sets scored by each member's
//! deadline, and the optimistic write's compare-and-swap. Each touches one key, so
//! each runs in Redis Cluster.

/// The clock of the scripts below: the server's own time in ms, so that member
/// deadlines agree across replicas whatever their clocks say.
pub(super) const NOW_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"#;

/// Link sets are sorted sets: member → the member's own deadline (ms, server time;
/// `+inf` for none). A set written before members had deadlines (a plain set) is
/// converted, its members keeping the set's TTL. Members past their deadline are
/// dropped, and the set's TTL is its longest-lived member's.
pub(super) const LINK_PRUNE_LUA: &str = r#"
local function convert(now)
  if redis.call('TYPE', KEYS[1]).ok ~= 'set' then return end
  local members = redis.call('SMEMBERS', KEYS[1])
  local pttl = redis.call('PTTL', KEYS[1])
  local score = '+inf'
  if pttl >= 0 then score = now + pttl end
  redis.call('DEL', KEYS[1])
  for _, m in ipairs(members) do redis.call('ZADD', KEYS[1], score, m) end
end
local function prune(now)
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if #last == 0 then return end
  if last[2] == 'inf' then
    redis.call('PERSIST', KEYS[1])
  else
    redis.call('PEXPIREAT', KEYS[1], math.ceil(tonumber(last[2])))
  end
end
"#;

/// `link_add`: ARGV[1] member, ARGV[2] its TTL in ms (< 0: none). A member's deadline
/// is never shortened (`ZADD GT`).
pub(super) const LINK_ADD_BODY: &str = r#"
convert(now)
local want = tonumber(ARGV[2])
local score = '+inf'
if want >= 0 then score = now + want end
redis.call('ZADD', KEYS[1], 'GT', score, ARGV[1])
prune(now)
return 1
"#;

/// `link_members`: the live members (pruning the others). A plain set (written before
/// members had deadlines) is read as it is; it converts on its next add or removal.
pub(super) const LINK_MEMBERS_BODY: &str = r#"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return {} end
if kind == 'set' then return redis.call('SMEMBERS', KEYS[1]) end
prune(now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"#;

/// `link_remove`: ARGV = members.
pub(super) const LINK_REMOVE_BODY: &str = r#"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return 0 end
convert(now)
for _, m in ipairs(ARGV) do redis.call('ZREM', KEYS[1], m) end
prune(now)
return 1
"#;

/// `compare_and_swap`, in either layout: ARGV[1] `1` when a value is expected (ARGV[2])
/// else `0`; ARGV[3] `1` to write ARGV[4] else `0` to remove; ARGV[5] the layout of new
/// keys; ARGV[6] the string TTL in ms, ARGV[7] `absexp` ticks, ARGV[8] `sldexp` ticks,
/// ARGV[9] `EXPIRE` seconds (each `-1`: none). A .NET hash is compared by its `data`
/// field and written as `RedisCache` writes it (see `dotnet::WRITE_ANY_LUA`).
pub(super) const CAS_LUA: &str = r#"
local kind = redis.call('TYPE', KEYS[1]).ok
local cur = false
if kind == 'string' then
  cur = redis.call('GET', KEYS[1])
elseif kind == 'hash' then
  cur = redis.call('HGET', KEYS[1], 'data')
elseif kind ~= 'none' then
  return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
end
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
if ARGV[3] ~= '1' then
  redis.call('DEL', KEYS[1])
  return 1
end
if kind == 'hash' or (kind == 'none' and ARGV[5] == 'dotnet') then
  redis.call('HSET', KEYS[1], 'absexp', ARGV[7], 'sldexp', ARGV[8], 'data', ARGV[4])
  if ARGV[9] ~= '-1' then
    redis.call('EXPIRE', KEYS[1], ARGV[9])
  else
    redis.call('PERSIST', KEYS[1])
  end
  return 1
end
if ARGV[6] ~= '-1' then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[6])
else
  redis.call('SET', KEYS[1], ARGV[4])
end
return 1
"#;

pub(super) fn link_script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{NOW_LUA}{LINK_PRUNE_LUA}{body}"))
}
