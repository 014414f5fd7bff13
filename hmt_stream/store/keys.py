"""The Redis keys of a shared store, and the scripts that must run atomically there."""

from __future__ import annotations

LEASES = "hmt:leases"  # sorted set: session id -> the lease's deadline (ms, the Redis server's clock)


def meta(session_id: str) -> str:
    """Hash: request (JSON), owner, replica (the one generating), state, cancel, read_at."""
    return f"hmt:s:{session_id}"


def log(session_id: str) -> str:
    """Stream: one entry per event, its id `<seq>-0`, its field `e` the event's JSON."""
    return f"hmt:s:{session_id}:log"


def control(replica: str, connection: int) -> str:
    """Stream a replica's reader connection blocks on besides the logs: cancels for it, and wake-ups."""
    return f"hmt:ctl:{replica}:{connection}"


def marker(replica: str) -> str:
    """A replica's own key: when it vanishes, Redis has lost its data (a restart without persistence)."""
    return f"hmt:replica:{replica}"


_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "

# KEYS: meta, leases. ARGV: session id, lease ms, then the meta hash's field/value pairs.
REGISTER = _NOW + """
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""

# ARGV: replica, lease ms, then session ids. For each: -1 when its meta is gone, -2 when another replica holds it
# now (adopted), else the lease is renewed and the answer is when a reader elsewhere last read it (ms, 0: never).
RENEW = _NOW + """
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local owner = redis.call('HGET', 'hmt:s:' .. id, 'replica')
  if not owner then out[#out + 1] = -1
  elseif owner ~= ARGV[1] then out[#out + 1] = -2
  else
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
    out[#out + 1] = tonumber(redis.call('HGET', 'hmt:s:' .. id, 'read_at') or '0')
  end
end
return out
"""

# ARGV: replica, lease ms, most to take. Takes sessions whose lease has expired: this replica holds them now.
CLAIM = _NOW + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], 0, now, 'LIMIT', 0, tonumber(ARGV[3]))
local taken = {}
for _, id in ipairs(expired) do
  if redis.call('EXISTS', 'hmt:s:' .. id) == 1 then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
    redis.call('HSET', 'hmt:s:' .. id, 'replica', ARGV[1])
    taken[#taken + 1] = id
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return taken
"""

# KEYS: log, meta, leases. ARGV: session id, first seq, ttl ms, state ('' to keep), then each event's JSON in seq
# order. Appends the events the stream lacks; returns -1, writing nothing, when the stream (or the meta) lacks
# events before them (Redis lost its data): the writer then writes the session again from its first event.
APPEND = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last = 0
if #top > 0 then last = tonumber(string.match(top[1][1], '^(%d+)')) end
local first = tonumber(ARGV[2])
if last < first - 1 or redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
for i = 5, #ARGV do
  local seq = first + i - 5
  if seq > last then redis.call('XADD', KEYS[1], seq .. '-0', 'e', ARGV[i]) end
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], 'state', ARGV[4])
  if ARGV[4] ~= 'running' then redis.call('ZREM', KEYS[3], ARGV[1]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return first + #ARGV - 5
"""
