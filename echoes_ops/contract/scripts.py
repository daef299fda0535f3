"""Lua scripts, as named constants. Each header says what KEYS and ARGV hold.

Register each once per client with ``redis.register_script`` (EVALSHA with a fallback to
EVAL); never build Lua text at run time.
"""

from __future__ import annotations

from typing import Final

# re-exported: the prelude and the walk steps live in sibling modules
from echoes_ops.contract.lua_prelude import STEP_CLOCK
from echoes_ops.contract.lua_prelude import TYPE_ERRORS_ONLY as TYPE_ERRORS_ONLY
from echoes_ops.contract.walk_scripts import CENSUS_STEP as CENSUS_STEP
from echoes_ops.contract.walk_scripts import SCAN_HASH_FIELDS as SCAN_HASH_FIELDS
from echoes_ops.contract.walk_scripts import TIER_COUNT_STEP as TIER_COUNT_STEP

# Release a lock only if it still holds the caller's token.
# KEYS[1] = lock key; ARGV[1] = token. Returns 1 if released, 0 if not ours (or gone).
RELEASE_LOCK: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Extend a lock's TTL only if it still holds the caller's token.
# KEYS[1] = lock key; ARGV[1] = token, ARGV[2] = new TTL in milliseconds.
# Returns 1 if extended, 0 if not ours (or gone).
EXTEND_LOCK: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Delete a hash only while one of its fields holds the expected value (the lock-info hash of
# a hold, removed with the lock it describes, never a newer hold's). HMGET, not HGET: the
# warmup role (which releases preload's lock) reads hashes with HMGET only.
# KEYS[1] = hash; ARGV[1] = field, ARGV[2] = expected value. Returns 1 if deleted.
DELETE_HASH_IF_FIELD: Final = """
if redis.call('HMGET', KEYS[1], ARGV[1])[1] == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Set a hash's TTL only while one of its fields holds the expected value.
# KEYS[1] = hash; ARGV[1] = field, ARGV[2] = expected value, ARGV[3] = TTL in milliseconds.
# Returns 1 if the TTL was set.
EXPIRE_HASH_IF_FIELD: Final = """
if redis.call('HMGET', KEYS[1], ARGV[1])[1] == ARGV[2] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 0
"""

# Refresh a session only if it still exists (a kicked or expired session is not recreated
# as a partial hash by a late heartbeat).
# KEYS[1] = session key; ARGV[1] = TTL seconds, ARGV[2..] = field, value, field, value, ...
# Returns 1 if refreshed, 0 if the session does not exist.
TOUCH_SESSION: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if #ARGV > 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# Kick a player: session, presence entries and the worker's connection entry, atomically.
# KEYS[1] = session key, KEYS[2..n+1] = presence sets, KEYS[n+2] = worker connections hash
# (only when ARGV[3] == "1"). ARGV[1] = character id, ARGV[2] = n.
# Returns the number of keys/entries removed.
KICK_PLAYER: Final = """
local removed = redis.call('DEL', KEYS[1])
local n = tonumber(ARGV[2])
for i = 2, n + 1 do
  removed = removed + redis.call('SREM', KEYS[i], ARGV[1])
end
if ARGV[3] == '1' then
  removed = removed + redis.call('HDEL', KEYS[n + 2], ARGV[1])
end
return removed
"""

# Release one player of a dead worker, only while the session still names that worker
# (a player who reconnected to another worker is left alone).
# KEYS[1] = session key, KEYS[2] = the worker's connections hash.
# ARGV[1] = character id, ARGV[2] = worker id, ARGV[3]/ARGV[4] = presence key prefix/suffix.
# The presence key is derived from the session's own location_id, read inside the script;
# this touches a key not declared in KEYS, so it is for a single Redis, not Cluster.
# Returns {session removed (0/1), presence entries removed (0/1)}.
RELEASE_PLAYER_OF_WORKER: Final = """
local owner = redis.call('HGET', KEYS[1], 'worker_id')
if owner ~= ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return {0, 0}
end
local location = redis.call('HGET', KEYS[1], 'location_id')
local removed = 0
if location then
  removed = redis.call('SREM', ARGV[3] .. location .. ARGV[4], ARGV[1])
end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return {1, removed}
"""

# Reconcile repairs: each re-checks, inside Redis, the condition that made it a finding, so
# a game write that lands between detection and repair is never undone.

# Remove a presence member whose session does not exist.
# KEYS[1] = presence set, KEYS[2] = session key; ARGV[1] = character id. Returns 1 if removed.
REMOVE_ORPHAN_MEMBER: Final = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
return redis.call('SREM', KEYS[1], ARGV[1])
"""

# Remove a presence member from a set that is not the session's location.
# KEYS[1] = presence set, KEYS[2] = session key; ARGV[1] = character id, ARGV[2] = the set's
# location id. Returns 1 if removed.
REMOVE_MISPLACED_MEMBER: Final = """
local location = redis.call('HGET', KEYS[2], 'location_id')
if not location or location == ARGV[2] then
  return 0
end
return redis.call('SREM', KEYS[1], ARGV[1])
"""

# Add a player to the set of the location its session names, if it still names it.
# KEYS[1] = presence set, KEYS[2] = session key; ARGV[1] = character id, ARGV[2] = location.
# Returns 1 if added.
ADD_MISSING_MEMBER: Final = """
if redis.call('HGET', KEYS[2], 'location_id') ~= ARGV[2] then
  return 0
end
return redis.call('SADD', KEYS[1], ARGV[1])
"""

# Give a key with no TTL one. KEYS[1] = key; ARGV[1] = TTL seconds. Returns 1 if set.
EXPIRE_IF_PERSISTENT: Final = """
if redis.call('TTL', KEYS[1]) ~= -1 then
  return 0
end
return redis.call('EXPIRE', KEYS[1], ARGV[1])
"""

# Remove a dead worker's connection entry unless the session names that worker.
# KEYS[1] = the worker's connections hash, KEYS[2] = the session key; ARGV[1] = field
# (character id), ARGV[2] = worker id. Returns 1 if removed.
REMOVE_STALE_CONNECTION: Final = """
if redis.call('HGET', KEYS[2], 'worker_id') == ARGV[2] then
  return 0
end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

# The warmup's script (WARMUP_PLAYERS) is in scripts_warmup.py.

# Reconcile's confirmation: re-read, at one instant, the presence state of players the
# keyspace walk found inconsistent (a player who moved while the walk ran is seen in the old
# set and under the new location: not drift).
# KEYS: per player, its session key, then the presence sets of the locations it was seen in.
# ARGV[1], ARGV[2] = presence key prefix and suffix (for the session's own location); then per
# player: character id, n (how many presence sets follow in KEYS), the n location ids.
# Returns per player {state, location_id, worker_id, member locations joined by "\n"}; state
# is 0 (no session), 1 (a session hash) or 2 (not readable: keep what the walk saw); then, as
# the last element, the call's server time in microseconds (STEP_CLOCK; -1: TIME unreadable),
# by which the caller sizes its next call (client/budget.StepBudget).
PRESENCE_RECHECK: Final = (
    TYPE_ERRORS_ONLY
    + STEP_CLOCK
    + """local call, pcall = redis.call, redis.pcall
local out, k, a = {}, 1, 3
while a <= #ARGV do
  local cid, n = ARGV[a], tonumber(ARGV[a + 1])
  local skey = KEYS[k]
  local state, loc, wid = 0, '', ''
  if call('EXISTS', skey) == 1 then
    local v = wrongtype_only(pcall('HMGET', skey, 'location_id', 'worker_id'))
    if v.err then
      state = 2
    else
      state, loc, wid = 1, v[1] or '', v[2] or ''
    end
  end
  local members, checked = {}, {}
  for i = 1, n do
    local l = ARGV[a + 1 + i]
    checked[l] = true
    local m = wrongtype_only(pcall('SISMEMBER', KEYS[k + i], cid))
    if type(m) == 'table' then state = 2 elseif m == 1 then members[#members + 1] = l end
  end
  if loc ~= '' and not checked[loc] then
    local m = wrongtype_only(pcall('SISMEMBER', ARGV[1] .. loc .. ARGV[2], cid))
    if type(m) == 'number' and m == 1 then members[#members + 1] = loc end
  end
  out[#out + 1] = {state, loc, wid, table.concat(members, '\\n')}
  k = k + 1 + n
  a = a + 2 + n
end
out[#out + 1] = elapsed_us()
return out
"""
)
