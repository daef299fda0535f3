"""Lua scripts, as named constants. Each header says what KEYS and ARGV hold.

Register each once per client with ``redis.register_script`` (EVALSHA with a fallback to
EVAL); never build Lua text at run time.
"""

from __future__ import annotations

from typing import Final

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
