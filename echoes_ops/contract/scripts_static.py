"""Lua scripts of the static caches' stepped writer (``preload --online``), as named
constants; each header says what KEYS and ARGV hold. A sibling of ``scripts.py``."""

from __future__ import annotations

from typing import Final

# Replace whole hashes, one after the other, in one atomic call: each key is deleted and
# rewritten, so a reader sees the old hash or the new one, never a gap and never a field the
# new record dropped. A key with no fields is only deleted (entries gone from gamedata).
# On Redis Cluster every key of one call lies in one slot.
# KEYS[1..n] = the hashes; ARGV[1..n] = how many field/value arguments belong to KEYS[i]
# (0: delete only), then every key's field/value arguments in KEYS order.
# Returns the microseconds the call spent (server clock, TIME), or -1 when TIME is refused:
# the writer sizes its next steps from it.
REPLACE_HASHES: Final = """
local started = redis.pcall('TIME')
local at = #KEYS + 1
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[i])
  redis.call('DEL', key)
  if n > 0 then
    redis.call('HSET', key, unpack(ARGV, at, at + n - 1))
  end
  at = at + n
end
local ended = redis.pcall('TIME')
if started.err or ended.err then
  return -1
end
return (tonumber(ended[1]) - tonumber(started[1])) * 1000000
  + tonumber(ended[2]) - tonumber(started[2])
"""
