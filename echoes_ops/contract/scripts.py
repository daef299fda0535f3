"""Lua scripts, as named constants. Each header says what KEYS and ARGV hold.

Register each once per client with ``redis.register_script`` (EVALSHA with a fallback to
EVAL); never build Lua text at run time.
"""

from __future__ import annotations

from typing import Final

# re-exported: the prelude and the walk steps live in sibling modules
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

# Warm many players' session and inventory caches from database rows, never overwriting
# fresher data a live worker wrote (echoes-ops warmup; see docs/warmup.md). KEYS are
# per-player pairs, so this is for a single Redis (or Sentinel), not Cluster.
# KEYS[2i-1] = player i's session key, KEYS[2i] = player i's inventory key.
# ARGV[1] = "1" for a dry run (read and judge only), ARGV[2] = smallest plausible epoch,
# ARGV[3] = largest plausible epoch (now + allowed skew), ARGV[4] = session TTL seconds,
# ARGV[5] = inventory TTL seconds, ARGV[6] = "1" to write sessions, ARGV[7] = f, the number
# of session fields the rows carry, ARGV[8 .. 7+f] = their names; then per player:
#   the row's last-active time (epoch seconds text); e, how many of its values are "";
#   2f + 4 items: name, value for each of the f fields in the order above ("" = the row
#   has no value: the field is left out, or removed from an existing session), then
#   last_heartbeat, <row time>, websocket_connected, false;
#   m, then m JSON inventory rows (m = -1: leave the inventory alone).
# The existing session decides: absent -> created with the row's fields,
# websocket_connected=false and last_heartbeat=<row time> ("W"); last_heartbeat newer than
# the row -> fresher, left alone ("F"); last_heartbeat not epoch seconds or missing, or the
# key not a hash -> unknown, left alone ("X"); otherwise the row's fields and
# last_heartbeat=<row time> are merged in ("W") unless all already match and the key has a
# TTL ("U"). Written sessions get the session TTL. The inventory is left alone when the
# session is fresher or unknown ("F"/"X"; also "X" when the key is not a list), else
# replaced by the rows (DEL, RPUSH, EXPIRE: "W"), deleted when there are none ("D"), or
# left as is when equal and with a TTL ("U").
# Returns {session codes, inventory codes}: one character per player ("-" = not asked).
WARMUP_PLAYERS: Final = (
    TYPE_ERRORS_ONLY
    + """local call, rpcall, unpack, tonumber = redis.call, redis.pcall, unpack, tonumber
local dry = ARGV[1] == '1'
local min_epoch = tonumber(ARGV[2])
local max_epoch = tonumber(ARGV[3])
local session_ttl = ARGV[4]
local inventory_ttl = ARGV[5]
local do_sessions = ARGV[6] == '1'
local f = tonumber(ARGV[7])
local names = {}
for i = 1, f do names[i] = ARGV[7 + i] end
names[f + 1] = 'last_heartbeat'
local p = 8 + f
local s_out, i_out = {}, {}
for k = 1, #KEYS, 2 do
  local skey = KEYS[k]
  local stamp = ARGV[p]
  local empties = tonumber(ARGV[p + 1])
  local first = p + 2
  local last = first + 2 * f + 3
  local rows = tonumber(ARGV[last + 1])
  local rows_first = last + 2
  if not rows or not empties or rows_first + rows - 1 > #ARGV then
    return redis.error_reply('ERR warmup: malformed arguments for player ' .. (k + 1) / 2)
  end
  if rows > 0 then p = rows_first + rows else p = rows_first end

  -- the existing session: absent (A), fresher (F), unknown (X), same time (S), older (O)
  local state, current
  local ttl = call('TTL', skey)
  if ttl == -2 then
    state = 'A'
  else
    current = wrongtype_only(rpcall('HMGET', skey, unpack(names)))
    local t = current.err == nil and tonumber(current[f + 1])
    if not t or t ~= t or t < min_epoch or t > max_epoch then
      state = 'X'
    else
      local row_ts = tonumber(stamp)
      if t > row_ts then state = 'F' elseif t == row_ts then state = 'S' else state = 'O' end
    end
  end

  local s = '-'
  if do_sessions then
    if state == 'F' or state == 'X' then
      s = state
    else
      local changed = state ~= 'S' or ttl < 0
      if not changed then
        for i = 1, f do
          local want, have = ARGV[first + 2 * i - 1], current[i]
          if want == '' then
            if have then changed = true break end
          elseif have ~= want then
            changed = true break
          end
        end
      end
      if changed then
        if not dry then
          -- websocket_connected (the last pair) only on a new session
          local stop = state == 'A' and last or last - 2
          if empties == 0 then
            call('HSET', skey, unpack(ARGV, first, stop))
          else
            local set, gone = {}, {}
            for j = first, stop, 2 do
              if ARGV[j + 1] == '' then
                gone[#gone + 1] = ARGV[j]
              else
                set[#set + 1] = ARGV[j]
                set[#set + 1] = ARGV[j + 1]
              end
            end
            if state ~= 'A' and #gone > 0 then call('HDEL', skey, unpack(gone)) end
            call('HSET', skey, unpack(set))
          end
          call('EXPIRE', skey, session_ttl)
        end
        s = 'W'
      else
        s = 'U'
      end
    end
  end

  local inv = '-'
  if rows >= 0 then
    if state == 'F' or state == 'X' then
      inv = state
    else
      local ikey = KEYS[k + 1]
      local items = wrongtype_only(rpcall('LRANGE', ikey, 0, -1))
      if items.err then
        inv = 'X'
      else
        local len = #items
        local same = len == rows
        if same and rows > 0 then
          for j = 1, rows do
            if items[j] ~= ARGV[rows_first + j - 1] then same = false break end
          end
          same = same and call('TTL', ikey) >= 0
        end
        if same then
          inv = 'U'
        elseif rows == 0 then
          if not dry then call('DEL', ikey) end
          inv = 'D'
        else
          if not dry then
            if len > 0 then call('DEL', ikey) end
            local stop = rows_first + rows - 1
            for j = rows_first, stop, 1000 do
              call('RPUSH', ikey, unpack(ARGV, j, math.min(j + 999, stop)))
            end
            call('EXPIRE', ikey, inventory_ttl)
          end
          inv = 'W'
        end
      end
    end
  end
  s_out[#s_out + 1] = s
  i_out[#i_out + 1] = inv
end
return {table.concat(s_out), table.concat(i_out)}
"""
)

# Reconcile's confirmation: re-read, at one instant, the presence state of players the
# keyspace walk found inconsistent (a player who moved while the walk ran is seen in the old
# set and under the new location: not drift).
# KEYS: per player, its session key, then the presence sets of the locations it was seen in.
# ARGV[1], ARGV[2] = presence key prefix and suffix (for the session's own location); then per
# player: character id, n (how many presence sets follow in KEYS), the n location ids.
# Returns per player {state, location_id, worker_id, member locations joined by "\n"}; state
# is 0 (no session), 1 (a session hash) or 2 (not readable: keep what the walk saw).
PRESENCE_RECHECK: Final = (
    TYPE_ERRORS_ONLY
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
return out
"""
)
