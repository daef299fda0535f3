"""Lua steps of the keyspace walks: each one SCAN step plus the reads of the keys it found.

They declare no KEYS: a step reads only the keys its own SCAN returned, so it runs on one
server (or per node of a cluster, on a plain client of that node). Each returns the
microseconds it held the server by its own clock (``STEP_CLOCK``; -1 when unknown), which
the caller's :class:`echoes_ops.client.budget.StepBudget` sizes the next step by.
"""

from __future__ import annotations

from typing import Final

from echoes_ops.contract.lua_prelude import STEP_CLOCK, TYPE_ERRORS_ONLY

# One SCAN step over a key family with each matching hash's fields and TTL read in the same
# call, so a walk over a big keyspace costs one round trip per step. Optionally keeps only
# hashes whose first field (a heartbeat) is a plausible epoch older than a cutoff: then that
# field alone is read first (HMGET of one field, a command every reading role may run) and
# the row only for the hashes kept, since most sessions are fresh (a fresh session cost
# about 6 us of server time read whole, 2.5 us so; docs/benchmarks/inspect.md, #14 item 7).
# KEYS: none (reads the keys its SCAN returned: one node).
# ARGV[1] = cursor, ARGV[2] = MATCH pattern, ARGV[3] = COUNT, ARGV[4] = n fields,
# ARGV[5 .. 4+n] = field names, ARGV[5+n] = "all" or "stale",
# ARGV[6+n] = smallest plausible epoch, ARGV[7+n] = cutoff (stale: heartbeat < cutoff).
# Returns {next cursor, keys matched by this step, microseconds spent, key, ttl, value1 ..
# valuen, key, ttl, ...}; a missing field is nil.
SCAN_HASH_FIELDS: Final = (
    STEP_CLOCK
    + TYPE_ERRORS_ONLY
    + """local n = tonumber(ARGV[4])
local fields = {}
for i = 1, n do fields[i] = ARGV[4 + i] end
local mode = ARGV[5 + n]
local min_epoch = tonumber(ARGV[6 + n])
local cutoff = tonumber(ARGV[7 + n])
local stale = mode == 'stale'
local pcall_ = redis.pcall
local step = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local out = {step[1], #step[2], 0}
for _, key in ipairs(step[2]) do
  local keep, values = true, nil
  if stale then
    local first = wrongtype_only(pcall_('HMGET', key, fields[1]))
    local beat = first.err == nil and tonumber(first[1])
    keep = beat and beat >= min_epoch and beat < cutoff
  end
  if keep then
    values = wrongtype_only(pcall_('HMGET', key, unpack(fields)))
    keep = values.err == nil  -- a key of another type under the pattern is skipped
  end
  if keep then
    out[#out + 1] = key
    out[#out + 1] = redis.call('TTL', key)
    for i = 1, n do out[#out + 1] = values[i] end
  end
end
out[3] = elapsed_us()
return out
"""
)

# One SCAN step over the whole keyspace that picks out the tier's keys and reads what the
# views need about each, so a census of a big server is one pass with one round trip per
# step (instead of one SCAN pass per key family). Sessions come back as their id (canonical
# digits) and four values, without the key: reconcile's census is mostly sessions, and this
# is the reply the client decodes most of. The SCAN's MATCH ([lpw]*: the first letters of
# the tier's families) passes over every other key inside the server's C code, before any
# key becomes a Lua string (a quarter of the step's server time on a keyspace that is 80 %
# other keys).
# KEYS: none (reads the keys its SCAN returned: one node).
# ARGV[1] = cursor, ARGV[2] = COUNT.
# Returns {next cursor, keys of the tier's first letters found, microseconds spent,
#   {id, ttl, location_id, worker_id, last_heartbeat, ...}  -- player:<id>:session
#   {code, key, n, ...}: "i" player:<id>:inventory (n = ttl), "p" location:<loc>:players
#   (n = members), "l" lock:<name> (n = ttl), "m"/"c" worker:<id>:meta/connections (n = 0)
# }; a missing session field is nil.
CENSUS_STEP: Final = (
    STEP_CLOCK
    + TYPE_ERRORS_ONLY
    + """local call, pcall_, find, match = redis.call, redis.pcall, string.find, string.match
local step = call('SCAN', ARGV[1], 'MATCH', '[lpw]*', 'COUNT', ARGV[2])
local sessions, rows = {}, {}
local ns, nr = 0, 0
local byte = string.byte
for _, key in ipairs(step[2]) do
  -- the first byte says which family to try: p(layer:), l(ocation:, ock:), w(orker:)
  local first = byte(key, 1)
  local id = first == 112 and match(key, '^player:([1-9]%d*):session$')
  if id then
    local v = wrongtype_only(pcall_('HMGET', key, 'location_id', 'worker_id', 'last_heartbeat'))
    if v.err == nil then
      sessions[ns + 1] = id
      sessions[ns + 2] = call('TTL', key)
      sessions[ns + 3] = v[1]
      sessions[ns + 4] = v[2]
      sessions[ns + 5] = v[3]
      ns = ns + 5
    end
  elseif first == 112 or first == 108 or first == 119 then
    local code, n = nil, 0
    if first == 112 then
      if find(key, '^player:%d+:inventory$') then
        code, n = 'i', call('TTL', key)
      end
    elseif first == 108 then
      if find(key, '^location:[^:]+:players$') then
        n = wrongtype_only(pcall_('SCARD', key))
        if type(n) == 'number' then code = 'p' end
      elseif find(key, '^lock:.') then
        code, n = 'l', call('TTL', key)
      end
    elseif find(key, '^worker:[^:]+:meta$') then
      code = 'm'
    elseif find(key, '^worker:[^:]+:connections$') then
      code = 'c'
    end
    if code then
      rows[nr + 1] = code
      rows[nr + 2] = key
      rows[nr + 3] = n
      nr = nr + 3
    end
  end
end
return {step[1], #step[2], elapsed_us(), sessions, rows}
"""
)

# One SCAN step of the dashboard's tier count: like CENSUS_STEP, but sessions are counted
# on the server instead of shipped, so a count of 100,000 sessions moves a few kilobytes.
# KEYS: none (reads the keys its SCAN returned: one node).
# ARGV[1] = cursor, ARGV[2] = COUNT, ARGV[3] = now (epoch seconds), ARGV[4] = stale after
# (seconds), ARGV[5] = smallest plausible epoch, ARGV[6] = allowed future skew (seconds).
# A session is a hash at player:<id>:session (<id> canonical: no leading zero). Its
# last_heartbeat, when plain decimal digits, is judged here: outside [min epoch, now + skew]
# unknown, older than now - stale after stale, else fresh; any other text is returned as is
# for the caller to judge with the codec.
# Returns {next cursor, keys scanned, fresh ids, stale ids, unknown ids (each a
# comma-separated string of ids), {id, raw heartbeat, ...} for the caller to judge,
# {code, key, n, ...} for the other tier keys: "p" location:<loc>:players (n = SCARD),
# "l" lock:<name>, "m" worker:<id>:meta, "c" worker:<id>:connections (n = 0), microseconds
# spent}.
TIER_COUNT_STEP: Final = (
    STEP_CLOCK
    + TYPE_ERRORS_ONLY
    + """local step = redis.call('SCAN', ARGV[1], 'COUNT', ARGV[2])
local now = tonumber(ARGV[3])
local stale_before = now - tonumber(ARGV[4])
local min_epoch = tonumber(ARGV[5])
local max_epoch = now + tonumber(ARGV[6])
local find, match, pcall_ = string.find, string.match, redis.pcall
local fresh, stale, unknown, odd, rows = {}, {}, {}, {}, {}
local byte = string.byte
for _, key in ipairs(step[2]) do
  local first = byte(key, 1)  -- p(layer:), l(ocation:, ock:), w(orker:); others skipped early
  local id = first == 112 and match(key, '^player:([1-9]%d*):session$')
  if id then
    local beat = wrongtype_only(pcall_('HGET', key, 'last_heartbeat'))
    if type(beat) ~= 'table' then
      if not beat then
        unknown[#unknown + 1] = id
      elseif find(beat, '^%d+%.?%d*$') then
        local value = tonumber(beat)
        if value < min_epoch or value > max_epoch then
          unknown[#unknown + 1] = id
        elseif value < stale_before then
          stale[#stale + 1] = id
        else
          fresh[#fresh + 1] = id
        end
      else
        odd[#odd + 1] = id
        odd[#odd + 1] = beat
      end
    end
  elseif first ~= 108 and first ~= 119 then
    -- nothing of the tier's other families starts otherwise
  elseif find(key, '^location:[^:]+:players$') then
    local n = wrongtype_only(pcall_('SCARD', key))
    if type(n) == 'number' then
      rows[#rows + 1] = 'p'
      rows[#rows + 1] = key
      rows[#rows + 1] = n
    end
  elseif find(key, '^lock:.') then
    rows[#rows + 1] = 'l'
    rows[#rows + 1] = key
    rows[#rows + 1] = 0
  elseif find(key, '^worker:[^:]+:meta$') then
    rows[#rows + 1] = 'm'
    rows[#rows + 1] = key
    rows[#rows + 1] = 0
  elseif find(key, '^worker:[^:]+:connections$') then
    rows[#rows + 1] = 'c'
    rows[#rows + 1] = key
    rows[#rows + 1] = 0
  end
end
return {step[1], #step[2], table.concat(fresh, ','), table.concat(stale, ','),
  table.concat(unknown, ','), odd, rows, elapsed_us()}
"""
)
