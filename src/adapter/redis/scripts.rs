//! The Lua scripts that make cluster-wide transitions atomic: joins and leaves (occupancy and
//! presence membership), sign-ins, reaping a dead node's share, and channel listings.
//! The scripts that publish (JOIN, LEAVE, REAP, GONE) take the channel-log window in ms
//! (`replay_ms`) as their last ARGV and publish through the log (see `replay`).

use std::sync::LazyLock;

use redis::Script;

/// KEYS: this node's `seen` marker, subs, node subs, [presence, presence info, node presence].
/// ARGV: channel, node subs field, [user, info json, max members, node presence field,
/// pub/sub channel, member_added message]: the message is published with the decision (an
/// empty pub/sub channel name leaves that to the caller).
/// Returns `{-1}` when the presence channel is full, else `{subscription_count, member_added,
/// members (flat user, info pairs), known}`; `known` is 0 when Redis no longer knows this node
/// (its data was lost, or the node was reaped): the node must resync.
pub static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        super::replay::PUBLISH_LUA,
        r#"
local added = 0
local presence = #KEYS == 6
if presence then
  if redis.call('HEXISTS', KEYS[4], ARGV[3]) == 0 and redis.call('HLEN', KEYS[4]) >= tonumber(ARGV[5]) then
    return {-1}
  end
  if redis.call('HINCRBY', KEYS[4], ARGV[3], 1) == 1 then
    redis.call('HSET', KEYS[5], ARGV[3], ARGV[4])
    added = 1
    if ARGV[7] ~= '' then herald_publish('PUBLISH', ARGV[7], ARGV[8], tonumber(ARGV[#ARGV])) end
  end
  redis.call('HINCRBY', KEYS[6], ARGV[6], 1)
end
local subs = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
local members = {}
if presence then members = redis.call('HGETALL', KEYS[5]) end
return {subs, added, members, redis.call('EXISTS', KEYS[1])}
"#
    ))
});

/// KEYS and ARGV like [`JOIN`] without info and max (ARGV: channel, node subs field, [user,
/// node presence field, pub/sub channel, member_removed message]). Returns
/// `{subscription_count, member_removed, known}`. The message is published only if Redis knows
/// this node (a departure after lost data is checked again later instead).
/// `member_removed` is 1 only when this leave took the user's count from 1 to 0; a count that
/// was already gone (lost data) is cleaned up without announcing anything.
pub static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        super::replay::PUBLISH_LUA,
        r#"
-- Takes one from this node's share first; only if the share held it is the cluster-wide count
-- lowered too (after lost data, or after this node was reaped, it holds nothing: a leave must
-- not take another node's socket off the counts).
local function take(share, sfield, key, field)
  local mine = redis.call('HINCRBY', share, sfield, -1)
  if mine <= 0 then redis.call('HDEL', share, sfield) end
  if mine < 0 then return nil end
  local n = redis.call('HINCRBY', key, field, -1)
  if n <= 0 then redis.call('HDEL', key, field) end
  return n
end
local removed = 0
local subs = take(KEYS[3], ARGV[2], KEYS[2], ARGV[1])
if not subs then subs = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') end
if #KEYS == 6 then
  local n = take(KEYS[6], ARGV[4], KEYS[4], ARGV[3])
  if n and n <= 0 then redis.call('HDEL', KEYS[5], ARGV[3]) end
  if n == 0 then
    removed = 1
    if ARGV[5] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then
      herald_publish('PUBLISH', ARGV[5], ARGV[6], tonumber(ARGV[#ARGV]))
    end
  end
end
if subs < 0 then subs = 0 end
return {subs, removed, redis.call('EXISTS', KEYS[1])}
"#
    ))
});

/// KEYS: this node's `seen` marker, users, node users. ARGV: user, node field, delta (1 or -1).
/// Returns `{n, known}`: the user's cluster-wide signed-in socket count after the change (-1
/// when a sign-out found nothing to take: this node's share did not hold it after lost data or
/// a reap, or the count was gone) and whether Redis knows this node.
pub static USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local delta = tonumber(ARGV[3])
local m = redis.call('HINCRBY', KEYS[3], ARGV[2], delta)
if m <= 0 then redis.call('HDEL', KEYS[3], ARGV[2]) end
-- A sign-out this node's share does not hold (lost data, reaped) leaves the counts alone.
if m < 0 then return {-1, redis.call('EXISTS', KEYS[1])} end
local n = redis.call('HINCRBY', KEYS[2], ARGV[1], delta)
if n <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
if n < 0 then n = -1 end
return {n, redis.call('EXISTS', KEYS[1])}
"#,
    )
});

/// Removes a dead node's share from the cluster-wide counts (and its dashboard view, stale now).
/// KEYS: nodes, node subs, node presence, node users, node connections. ARGV: node, now ms,
/// timeout ms, key tag, pub/sub channel base (`{prefix}:c:`, or empty on a Redis Cluster): with
/// it, each member_removed is published by the script itself, in the order Redis decided it.
/// Returns `false` when the node is alive (or another survivor reaped it first), else
/// `{vacated [[app, channel]...], removed [[app, channel, user]...], offline [[app, user]...]}`
/// as JSON strings. The ZREM decides which survivor reaps, so each transition is reported once.
/// A node never reaps itself: it moves its own share with [`SYNC`].
pub static REAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        super::replay::PUBLISH_LUA,
        r#"
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not seen or tonumber(ARGV[2]) - tonumber(seen) < tonumber(ARGV[3]) then return false end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
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
  function(f)
    redis.call('HDEL', T .. ':presinfo:' .. f[1] .. ':' .. f[2], f[3])
    if ARGV[5] ~= '' then
      local data = cjson.encode({user_id = f[3]})
      local b = {app = f[1], channel = f[2], event = 'pusher_internal:member_removed', data = data}
      herald_publish('PUBLISH', ARGV[5] .. f[1] .. ':' .. f[2], cjson.encode({t = 'm', b = b}), tonumber(ARGV[#ARGV]))
    end
  end)
local offline = subtract(KEYS[4], function(f) return T .. ':users:' .. f[1] end, function(f) return f[2] end)
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], T .. ':node:' .. ARGV[1] .. ':seen',
  T .. ':node:' .. ARGV[1] .. ':view')
-- If the node was alive after all, its resync must know that its members were announced gone.
redis.call('SET', T .. ':node:' .. ARGV[1] .. ':reaped', 1, 'EX', 3600)
return {cjson.encode(vacated), cjson.encode(removed), cjson.encode(offline)}
"#
    ))
});

/// A held member departure, decided and (on standalone Redis) published in one step: KEYS:
/// presence hash. ARGV: user, pub/sub channel (or empty), member_removed message. Returns 1 if
/// the user is gone.
pub static GONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        super::replay::PUBLISH_LUA,
        r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if ARGV[2] ~= '' then herald_publish('PUBLISH', ARGV[2], ARGV[3], tonumber(ARGV[#ARGV])) end
return 1
"#
    ))
});

/// Moves this node's share to what its sockets say now, in one atomic step, and reports only
/// the cluster-wide transitions that result (after a Redis outage, restart or failover, or after
/// this node was reaped while alive). KEYS: node subs, node presence, node users, node `reaped`
/// mark (left by [`REAP`]).
/// ARGV: key tag, JSON `{"subs":{field:n},"pres":{field:[n,info]},"users":{field:n}}` with the
/// same fields joins write (JSON arrays `[app,channel]`, `[app,channel,user]`, `[app,user]`).
/// Returns JSON `{occupied, vacated, added, removed, online, offline}`, each a list of field
/// arrays, and `reaped`: whether this node had been reaped (its members announced gone).
pub static SYNC: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local T = ARGV[1]
local want = cjson.decode(ARGV[2])
local out = {occupied = {}, vacated = {}, added = {}, removed = {}, online = {}, offline = {}}
-- One family of counts: `share` is this node's hash, `desired` field -> n (or {n, info}),
-- `key(f)`/`field(f)` name the cluster-wide count, `up`/`down` name the transitions.
local function sync(share, desired, key, field, up, down, on_up, on_down)
  local cur = {}
  local all = redis.call('HGETALL', share)
  for i = 1, #all, 2 do cur[all[i]] = tonumber(all[i + 1]) end
  local fields = {}
  for f in pairs(cur) do fields[f] = true end
  for f in pairs(desired) do fields[f] = true end
  for f in pairs(fields) do
    local old = cur[f] or 0
    local e = desired[f]
    local new = 0
    if type(e) == 'table' then new = e[1] elseif e then new = e end
    if new ~= old then
      local d = cjson.decode(f)
      local k, fl = key(d), field(d)
      local after = redis.call('HINCRBY', k, fl, new - old)
      local before = after - (new - old)
      if after <= 0 then redis.call('HDEL', k, fl) end
      if before <= 0 and after > 0 then
        if on_up then on_up(d, e) end
        table.insert(out[up], d)
      elseif before > 0 and after <= 0 then
        if on_down then on_down(d) end
        table.insert(out[down], d)
      end
      if new > 0 then redis.call('HSET', share, f, new) else redis.call('HDEL', share, f) end
    end
  end
end
sync(KEYS[1], want.subs, function(d) return T .. ':subs:' .. d[1] end, function(d) return d[2] end,
  'occupied', 'vacated')
sync(KEYS[2], want.pres, function(d) return T .. ':pres:' .. d[1] .. ':' .. d[2] end,
  function(d) return d[3] end, 'added', 'removed',
  function(d, e) redis.call('HSET', T .. ':presinfo:' .. d[1] .. ':' .. d[2], d[3], e[2]) end,
  function(d) redis.call('HDEL', T .. ':presinfo:' .. d[1] .. ':' .. d[2], d[3]) end)
sync(KEYS[3], want.users, function(d) return T .. ':users:' .. d[1] end, function(d) return d[2] end,
  'online', 'offline')
out.reaped = redis.call('DEL', KEYS[4]) == 1
return cjson.encode(out)
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
/// Returns 1 when this node should send the webhook. With ARGV[3..] (durable webhooks), the
/// last KEY is the webhook stream and each of those entries is added to it when the claim
/// succeeds, in the same step.
pub static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local kind, item = ARGV[1], ARGV[2]
local won
if kind == 'vacated' then
  if tonumber(redis.call('HGET', KEYS[2], item) or '0') > 0 then return 0 end
  won = redis.call('SREM', KEYS[1], item)
elseif kind == 'removed' then
  if redis.call('HEXISTS', KEYS[2], item) == 1 then return 0 end
  won = redis.call('SREM', KEYS[1], item)
else
  won = redis.call('SADD', KEYS[1], item)
end
if won == 1 then
  for i = 3, #ARGV do redis.call('XADD', KEYS[#KEYS], '*', 'e', ARGV[i]) end
end
return won
"#,
    )
});

/// KEYS: nodes. ARGV: node timeout ms, key tag, app id.
/// Returns the app's connections summed over nodes that heartbeated within the timeout (each
/// node writes its counts to `{tag}:node:{id}:conns`, removed when the node is reaped).
pub static CONNECTIONS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
local sum = 0
for _, node in ipairs(live) do
  sum = sum + tonumber(redis.call('HGET', ARGV[2] .. ':node:' .. node .. ':conns', ARGV[3]) or '0')
end
return sum
"#,
    )
});
