//! The Lua scripts that make cluster-wide transitions atomic: joins and leaves (occupancy and
//! presence membership), sign-ins, reaping a dead node's share, and channel listings.

use std::sync::LazyLock;

use redis::Script;

/// KEYS: subs, node subs, [presence, presence info, node presence].
/// ARGV: channel, node subs field, [user, info json, max members, node presence field].
/// Returns `{-1}` when the presence channel is full, else `{subscription_count, member_added,
/// members (flat user, info pairs)}`.
pub static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local added = 0
if #KEYS == 5 then
  if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 0 and redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[5]) then
    return {-1}
  end
  if redis.call('HINCRBY', KEYS[3], ARGV[3], 1) == 1 then
    redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
    added = 1
  end
  redis.call('HINCRBY', KEYS[5], ARGV[6], 1)
end
local subs = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
local members = {}
if #KEYS == 5 then members = redis.call('HGETALL', KEYS[4]) end
return {subs, added, members}
"#,
    )
});

/// KEYS and ARGV like [`JOIN`] without info and max (ARGV: channel, node subs field, [user,
/// node presence field]). Returns `{subscription_count, member_removed}`.
pub static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local function dec(key, field)
  local n = redis.call('HINCRBY', key, field, -1)
  if n <= 0 then redis.call('HDEL', key, field) end
  return n
end
local removed = 0
local subs = dec(KEYS[1], ARGV[1])
dec(KEYS[2], ARGV[2])
if #KEYS == 5 then
  if dec(KEYS[3], ARGV[3]) <= 0 then
    redis.call('HDEL', KEYS[4], ARGV[3])
    removed = 1
  end
  dec(KEYS[5], ARGV[4])
end
if subs < 0 then subs = 0 end
return {subs, removed}
"#,
    )
});

/// KEYS: users, node users. ARGV: user, node field, delta (1 or -1).
/// Returns the user's cluster-wide signed-in socket count after the change.
pub static USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], tonumber(ARGV[3]))
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
local m = redis.call('HINCRBY', KEYS[2], ARGV[2], tonumber(ARGV[3]))
if m <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
if n < 0 then n = 0 end
return n
"#,
    )
});

/// Removes a node's share from the cluster-wide counts.
/// KEYS: nodes, node subs, node presence, node users. ARGV: node, now ms, timeout ms (or -1 to
/// force, for a node resetting its own share), key tag.
/// Returns `false` when the node is alive (or another survivor reaped it first), else
/// `{vacated [[app, channel]...], removed [[app, channel, user]...], offline [[app, user]...]}`
/// as JSON strings. The ZREM decides which survivor reaps, so each transition is reported once.
pub static REAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if tonumber(ARGV[3]) >= 0 then
  local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not seen or tonumber(ARGV[2]) - tonumber(seen) < tonumber(ARGV[3]) then return false end
  if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
end
local T = ARGV[4]
-- Subtracts a node's share (hash `share`: field JSON -> n) from the cluster-wide hashes named by
-- `key(f)`/`field(f)`; calls `gone(f)` and collects the field when a count reaches 0.
local function subtract(share, key, field, gone)
  local out = {}
  local all = redis.call('HGETALL', share)
  for i = 1, #all, 2 do
    local f = cjson.decode(all[i])
    if redis.call('HINCRBY', key(f), field(f), -tonumber(all[i + 1])) <= 0 then
      redis.call('HDEL', key(f), field(f))
      if gone then gone(f) end
      table.insert(out, all[i])
    end
  end
  return out
end
local vacated = subtract(KEYS[2], function(f) return T .. ':subs:' .. f[1] end, function(f) return f[2] end)
local removed = subtract(KEYS[3],
  function(f) return T .. ':pres:' .. f[1] .. ':' .. f[2] end,
  function(f) return f[3] end,
  function(f) redis.call('HDEL', T .. ':presinfo:' .. f[1] .. ':' .. f[2], f[3]) end)
local offline = subtract(KEYS[4], function(f) return T .. ':users:' .. f[1] end, function(f) return f[2] end)
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], T .. ':node:' .. ARGV[1] .. ':seen')
return {cjson.encode(vacated), cjson.encode(removed), cjson.encode(offline)}
"#,
    )
});

/// Re-adds a node's share after a Redis outage. KEYS: node subs, node presence, node users.
/// ARGV: key tag, JSON `{"subs":[[app,channel,n,field]],"pres":[[app,channel,user,n,info,field]],
/// "users":[[app,user,n,field]]}` (fields precomputed so they match the ones joins write).
/// Returns JSON `{occupied, added, online}` of the transitions from 0.
pub static RESTORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local T = ARGV[1]
local share = cjson.decode(ARGV[2])
local occupied, added, online = {}, {}, {}
for _, e in ipairs(share.subs) do
  if redis.call('HINCRBY', T .. ':subs:' .. e[1], e[2], e[3]) == e[3] then table.insert(occupied, {e[1], e[2]}) end
  redis.call('HINCRBY', KEYS[1], e[4], e[3])
end
for _, e in ipairs(share.pres) do
  if redis.call('HINCRBY', T .. ':pres:' .. e[1] .. ':' .. e[2], e[3], e[4]) == e[4] then
    redis.call('HSET', T .. ':presinfo:' .. e[1] .. ':' .. e[2], e[3], e[5])
    table.insert(added, {e[1], e[2], e[3]})
  end
  redis.call('HINCRBY', KEYS[2], e[6], e[4])
end
for _, e in ipairs(share.users) do
  if redis.call('HINCRBY', T .. ':users:' .. e[1], e[2], e[3]) == e[3] then table.insert(online, {e[1], e[2]}) end
  redis.call('HINCRBY', KEYS[3], e[4], e[3])
end
return cjson.encode({occupied = occupied, added = added, online = online})
"#,
    )
});

/// KEYS: subs. ARGV: name prefix, presence key prefix (`{tag}:pres:{app}:`).
/// Returns flat `{name, subscription_count, user_count, ...}` for occupied channels.
pub static CHANNELS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local name, n = all[i], tonumber(all[i + 1])
  if n > 0 and string.sub(name, 1, #ARGV[1]) == ARGV[1] then
    local users = 0
    if string.sub(name, 1, 9) == 'presence-' then users = redis.call('HLEN', ARGV[2] .. name) end
    table.insert(out, name)
    table.insert(out, n)
    table.insert(out, users)
  end
end
return out
"#,
    )
});

/// Webhook claims. ARGV[1]: kind, ARGV[2]: channel or user.
/// - `occupied` KEYS: announced-occupied set → SADD channel
/// - `vacated` KEYS: announced-occupied set, subs → if empty now, SREM channel
/// - `added` KEYS: announced-members set → SADD user
/// - `removed` KEYS: announced-members set, presence → if gone now, SREM user
/// - `miss` KEYS: announced-misses set → SADD channel
///
/// Returns 1 when this node should send the webhook.
pub static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local kind, item = ARGV[1], ARGV[2]
if kind == 'vacated' then
  if tonumber(redis.call('HGET', KEYS[2], item) or '0') > 0 then return 0 end
  return redis.call('SREM', KEYS[1], item)
elseif kind == 'removed' then
  if redis.call('HEXISTS', KEYS[2], item) == 1 then return 0 end
  return redis.call('SREM', KEYS[1], item)
end
return redis.call('SADD', KEYS[1], item)
"#,
    )
});

/// KEYS: connections hash (node → count), nodes. ARGV: node timeout ms.
/// Returns the sum over nodes that heartbeated within the timeout.
pub static CONNECTIONS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 1, #all, 2 do
  local seen = redis.call('ZSCORE', KEYS[2], all[i])
  if seen and now - tonumber(seen) < tonumber(ARGV[1]) then sum = sum + tonumber(all[i + 1]) end
end
return sum
"#,
    )
});
