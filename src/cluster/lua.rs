//! The Lua scripts the Redis store runs. Each is one atomic step on the Redis server (a script
//! runs alone: no other command interleaves), and each reads the clock with `TIME` on the
//! server, so expiry never depends on one node's clock.
//!
//! Keys (under the store's prefix `P`):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `P aor:<aor>` | hash | binding id → binding value (see [`super::codec`]) |
//! | `P exp` | sorted set | `<aor>\n<binding id>` scored by expiry (ms, server time) |
//! | `P owned:<node>` | sorted set (lexical) | `<flow>\n<aor>\n<binding id>` of the flow-bound bindings a node holds |
//! | `P node:<node>` | string with TTL | the node's heartbeat: its SIP URI, for forwarding to it |
//! | `P nodes` | set | node names seen (to notice a heartbeat that lapsed) |
//! | `P stats` | hash | `aors`, `bindings`, `bytes` |
//!
//! `bytes` is what the bindings take in Redis, by the measure [`StoreLimits::max_bytes`]
//! budgets (see [`BYTES`]): per binding its hash field and value, its expiry entry and a fixed
//! overhead; per AOR its key and a fixed overhead. Every script that adds or removes a binding
//! keeps it, so that the REGISTER script can refuse growth past the cap atomically.
//!
//! [`StoreLimits::max_bytes`]: crate::registrar::StoreLimits::max_bytes
//!
//! Events are published as `<kind>\n<aor>\n<binding value>`: on `P events` with kind `A`
//! (added), `F` (refreshed), `R` (removed by its owner); on `P offline` with `E` (expired) and
//! `L` (lost: flow closed or owning node dead), so that a node can hear only the latter.
//!
//! The keys are built inside the scripts: the store needs one Redis server (or a primary with
//! replicas), not Redis Cluster.

/// Helpers every script starts with. `now()` is the server's time in milliseconds plus the
/// store's test skew (`ARGV[2]`, 0 in production).
const PRELUDE: &str = r#"
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
end
local function head(v)
  local exp, cseq, cid, off, node, flow, bound =
    string.match(v, '^(%d+)\n(%d+)\n([^\n]*)\n([01])\n([^\n]*)\n([^\n]*)\n([01])')
  return tonumber(exp), tonumber(cseq), cid, off, node, flow, bound
end
local function own(aor, bid, v)
  local _, _, _, _, node, flow, bound = head(v)
  if bound == '1' then
    redis.call('ZADD', P .. 'owned:' .. node, 0, flow .. '\n' .. aor .. '\n' .. bid)
  end
end
local function unown(aor, bid, v)
  local _, _, _, _, node, flow, bound = head(v)
  if bound == '1' then
    redis.call('ZREM', P .. 'owned:' .. node, flow .. '\n' .. aor .. '\n' .. bid)
  end
end
-- Bytes one binding takes (see the module doc): field, value, expiry member, overhead.
local function cost(aor, bid, v)
  return #bid * 2 + #v + #aor + 1 + BINDING_OVERHEAD
end
-- Bytes an AOR takes on top of its bindings (0 when it has none: its key is gone).
local function aor_cost(aor, n)
  if n == 0 then return 0 end
  return #P + 4 + #aor + AOR_OVERHEAD
end
local function publish(kind, aor, v)
  local channel = P .. 'events'
  if kind == 'E' or kind == 'L' then channel = P .. 'offline' end
  redis.call('PUBLISH', channel, kind .. '\n' .. aor .. '\n' .. v)
end
-- Removes one binding that is known to be in the hash, with its indexes and counters.
local function remove(aor, bid, v, kind)
  local hkey = P .. 'aor:' .. aor
  redis.call('HDEL', hkey, bid)
  redis.call('ZREM', P .. 'exp', aor .. '\n' .. bid)
  unown(aor, bid, v)
  redis.call('HINCRBY', P .. 'stats', 'bindings', -1)
  local freed = cost(aor, bid, v)
  if redis.call('HLEN', hkey) == 0 then
    redis.call('HINCRBY', P .. 'stats', 'aors', -1)
    freed = freed + aor_cost(aor, 1)
  end
  redis.call('HINCRBY', P .. 'stats', 'bytes', -freed)
  publish(kind, aor, v)
end
"#;

/// One REGISTER, RFC 3261 §10.3 steps 6–7 (the same rules as
/// [`apply_register`](crate::registrar::apply_register)): ordering checked for every binding
/// touched before anything changes (same Call-ID: a repeated CSeq changes nothing, a lower
/// one fails); `*` removes all; expires 0 removes; another binding is added within the caps:
/// bindings per AOR, bindings in all, and bytes in all (a REGISTER that grows the AOR's bytes
/// past `max_bytes` is refused as `full`, one that shrinks or keeps them is applied, as in
/// [`MemoryLocationStore`](crate::registrar::MemoryLocationStore)).
///
/// ARGV: prefix, skew, aor, call_id, cseq, remove_all, max_per_aor, max_total, n, then n
/// triples (binding id, expires seconds, value without its expiry), then max_bytes.
/// Answers with one string, its parts joined by U+001E (which no stored field holds):
/// `ok, now, nchanges, kind, value, …, value of every binding after`, `dup, now, value…`,
/// `ooo, now, have`, `aor_full, now` or `full, now`.
const REGISTER: &str = r#"
local aor, cid, cseq = ARGV[3], ARGV[4], tonumber(ARGV[5])
local rmall = ARGV[6] == '1'
local maxper, maxtotal, n = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local maxbytes = tonumber(ARGV[10 + 3 * n])
local now = now_ms()
local hkey = P .. 'aor:' .. aor
local cur = redis.call('HGETALL', hkey)
local live, order, expired = {}, {}, {}
for i = 1, #cur, 2 do
  local exp = head(cur[i + 1])
  if exp and exp > now then
    live[cur[i]] = cur[i + 1]
    order[#order + 1] = cur[i]
  else
    expired[#expired + 1] = cur[i]
  end
end
local want = {}
for k = 0, n - 1 do want[ARGV[10 + 3 * k]] = true end
for _, bid in ipairs(order) do
  if rmall or want[bid] then
    local _, c, id = head(live[bid])
    if id == cid then
      if c == cseq then
        local out = {'dup', tostring(now)}
        for _, b in ipairs(order) do out[#out + 1] = live[b] end
        return table.concat(out, '\30')
      end
      if cseq < c then return table.concat({'ooo', tostring(now), tostring(c)}, '\30') end
    end
  end
end
local nxt, count, changes, removed = {}, #order, {}, {}
for _, bid in ipairs(order) do nxt[bid] = live[bid] end
if rmall then
  for _, bid in ipairs(order) do
    changes[#changes + 1] = 'R'
    changes[#changes + 1] = live[bid]
    removed[bid] = live[bid]
    nxt[bid] = nil
  end
  count = 0
end
local written = {}
for k = 0, n - 1 do
  local bid, secs, tail = ARGV[10 + 3 * k], tonumber(ARGV[11 + 3 * k]), ARGV[12 + 3 * k]
  local old = nxt[bid]
  if secs == 0 then
    if old then
      changes[#changes + 1] = 'R'
      changes[#changes + 1] = old
      if live[bid] then removed[bid] = live[bid] end
      nxt[bid] = nil
      written[bid] = nil
      count = count - 1
    end
  else
    local v = tostring(now + secs * 1000) .. '\n' .. tail
    if old then
      changes[#changes + 1] = 'F'
    else
      if count >= maxper then return table.concat({'aor_full', tostring(now)}, '\30') end
      count = count + 1
      changes[#changes + 1] = 'A'
    end
    changes[#changes + 1] = v
    nxt[bid] = v
    written[bid] = true
    removed[bid] = nil
  end
end
local before = #order + #expired
local delta = count - before
if count > #order then
  local total = tonumber(redis.call('HGET', P .. 'stats', 'bindings') or '0')
  if total + count - #order - #expired > maxtotal then return table.concat({'full', tostring(now)}, '\30') end
end
local bytes_before, bytes_after = aor_cost(aor, #cur / 2), aor_cost(aor, count)
for i = 1, #cur, 2 do bytes_before = bytes_before + cost(aor, cur[i], cur[i + 1]) end
for bid, v in pairs(nxt) do bytes_after = bytes_after + cost(aor, bid, v) end
if bytes_after > bytes_before then
  local all = tonumber(redis.call('HGET', P .. 'stats', 'bytes') or '0')
  if all - bytes_before + bytes_after > maxbytes then return table.concat({'full', tostring(now)}, '\30') end
end
local expkey = P .. 'exp'
for _, bid in ipairs(expired) do
  local v = redis.call('HGET', hkey, bid)
  redis.call('HDEL', hkey, bid)
  redis.call('ZREM', expkey, aor .. '\n' .. bid)
  if v then unown(aor, bid, v) end
end
for bid, v in pairs(removed) do
  redis.call('HDEL', hkey, bid)
  redis.call('ZREM', expkey, aor .. '\n' .. bid)
  unown(aor, bid, v)
end
for bid, _ in pairs(written) do
  local v = nxt[bid]
  if live[bid] then unown(aor, bid, live[bid]) end
  redis.call('HSET', hkey, bid, v)
  redis.call('ZADD', expkey, head(v), aor .. '\n' .. bid)
  own(aor, bid, v)
end
if delta ~= 0 then redis.call('HINCRBY', P .. 'stats', 'bindings', delta) end
if bytes_after ~= bytes_before then
  redis.call('HINCRBY', P .. 'stats', 'bytes', bytes_after - bytes_before)
end
if before == 0 and count > 0 then redis.call('HINCRBY', P .. 'stats', 'aors', 1) end
if before > 0 and count == 0 then redis.call('HINCRBY', P .. 'stats', 'aors', -1) end
local out = {'ok', tostring(now), tostring(#changes / 2)}
for i = 1, #changes, 2 do
  publish(changes[i], aor, changes[i + 1])
  out[#out + 1] = changes[i]
  out[#out + 1] = changes[i + 1]
end
for _, v in pairs(nxt) do out[#out + 1] = v end
return table.concat(out, '\30')
"#;

/// The live bindings of an AOR, each with where its owner is: `''` (not flow-bound), `'+'`
/// (bound to a flow of this node), the owner's URI from its heartbeat, or `'-'` (the owner's heartbeat lapsed).
///
/// ARGV: prefix, skew, aor, this node. Returns `{now, value, route, …}`.
const LOOKUP: &str = r#"
local aor, me = ARGV[3], ARGV[4]
local now = now_ms()
local cur = redis.call('HGETALL', P .. 'aor:' .. aor)
local out = {tostring(now)}
local routes = {}
for i = 1, #cur, 2 do
  local v = cur[i + 1]
  local exp, _, _, _, node, _, bound = head(v)
  if exp and exp > now then
    local r = ''
    if bound == '1' and node == me then
      r = '+'
    elseif bound == '1' then
      r = routes[node]
      if r == nil then
        r = redis.call('GET', P .. 'node:' .. node) or '-'
        routes[node] = r
      end
    end
    out[#out + 1] = v
    out[#out + 1] = r
  end
end
return out
"#;

/// Removes up to `limit` expired bindings (kind `E`), then the flow-bound bindings of every
/// node whose heartbeat lapsed (kind `L`). Run by every node: each binding is removed, and
/// reported, by exactly one of them.
///
/// ARGV: prefix, skew, limit, this node. Returns `{now, kind, aor, value, …}`.
const SWEEP: &str = r#"
local limit, me = tonumber(ARGV[3]), ARGV[4]
local now = now_ms()
local out = {tostring(now)}
local expkey = P .. 'exp'
local due = redis.call('ZRANGEBYSCORE', expkey, '-inf', now, 'LIMIT', 0, limit)
for _, m in ipairs(due) do
  local aor, bid = string.match(m, '^([^\n]*)\n(.*)$')
  redis.call('ZREM', expkey, m)
  if aor then
    local v = redis.call('HGET', P .. 'aor:' .. aor, bid)
    if v and head(v) <= now then
      remove(aor, bid, v, 'E')
      out[#out + 1] = 'E'
      out[#out + 1] = aor
      out[#out + 1] = v
    end
  end
end
for _, nd in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
  if nd ~= me and redis.call('EXISTS', P .. 'node:' .. nd) == 0 then
    local okey = P .. 'owned:' .. nd
    local members = redis.call('ZRANGE', okey, 0, limit - 1)
    for _, m in ipairs(members) do
      local _, aor, bid = string.match(m, '^([^\n]*)\n([^\n]*)\n(.*)$')
      redis.call('ZREM', okey, m)
      if aor then
        local v = redis.call('HGET', P .. 'aor:' .. aor, bid)
        if v then
          local _, _, _, _, node = head(v)
          if node == nd then
            remove(aor, bid, v, 'L')
            out[#out + 1] = 'L'
            out[#out + 1] = aor
            out[#out + 1] = v
          end
        end
      end
    end
    if #members < limit then redis.call('SREM', P .. 'nodes', nd) end
  end
end
return out
"#;

/// A flow of this node closed: its bindings are removed (kind `L`).
///
/// ARGV: prefix, skew, this node, flow. Returns `{now, aor, value, …}`.
const FLOW_CLOSED: &str = r#"
local me, flow = ARGV[3], ARGV[4]
local now = now_ms()
local okey = P .. 'owned:' .. me
local members = redis.call('ZRANGEBYLEX', okey, '[' .. flow .. '\n', '[' .. flow .. '\n\255')
local out = {tostring(now)}
for _, m in ipairs(members) do
  local _, aor, bid = string.match(m, '^([^\n]*)\n([^\n]*)\n(.*)$')
  redis.call('ZREM', okey, m)
  if aor then
    local v = redis.call('HGET', P .. 'aor:' .. aor, bid)
    if v then
      local _, _, _, _, node, f = head(v)
      if node == me and f == flow then
        remove(aor, bid, v, 'L')
        out[#out + 1] = aor
        out[#out + 1] = v
      end
    end
  end
end
return out
"#;

/// Marks the bindings of an AOR that this node holds on a flow online (`0`) or offline (`1`).
///
/// ARGV: prefix, skew, aor, this node, flow, offline. Returns the number marked.
const SET_OFFLINE: &str = r#"
local aor, me, flow, off = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local hkey = P .. 'aor:' .. aor
local cur = redis.call('HGETALL', hkey)
local n = 0
for i = 1, #cur, 2 do
  local v = cur[i + 1]
  local _, _, _, _, node, f = head(v)
  if node == me and f == flow then
    local a, b = string.match(v, '^(%d+\n%d+\n[^\n]*\n)[01](.*)$')
    redis.call('HSET', hkey, cur[i], a .. off .. b)
    n = n + 1
  end
end
return n
"#;

/// The fixed parts of [`StoreLimits::max_bytes`](crate::registrar::StoreLimits::max_bytes)'s
/// measure in Redis: per binding (its hash entry and its expiry entry) and per AOR (its key),
/// about what Redis spends on each beyond the strings.
pub(crate) const BYTES: (usize, usize) = (96, 64);

/// The scripts, compiled once per store (redis-rs sends EVALSHA and loads a script the
/// server does not know, after a restart for instance).
pub(crate) struct Scripts {
    pub register: redis::Script,
    pub lookup: redis::Script,
    pub sweep: redis::Script,
    pub flow_closed: redis::Script,
    pub set_offline: redis::Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        let (binding, aor) = BYTES;
        let s = |body: &str| {
            redis::Script::new(&format!(
                "local BINDING_OVERHEAD, AOR_OVERHEAD = {binding}, {aor}\n{PRELUDE}{body}"
            ))
        };
        Scripts {
            register: s(REGISTER),
            lookup: s(LOOKUP),
            sweep: s(SWEEP),
            flow_closed: s(FLOW_CLOSED),
            set_offline: s(SET_OFFLINE),
        }
    }
}
