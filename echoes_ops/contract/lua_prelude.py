"""Lua preludes: snippets prepended to scripts (not scripts themselves).

Kept apart from :mod:`echoes_ops.contract.scripts` so that the script modules can share
them without importing each other.
"""

from __future__ import annotations

from typing import Final

# The reads that tolerate a key of the wrong type under a pattern (redis.pcall) pass the reply
# through wrongtype_only(), which raises every other error, so an ACL refusal inside a script
# fails the command instead of reading as "no such data".
TYPE_ERRORS_ONLY: Final = """
local function wrongtype_only(reply)
  if type(reply) == 'table' and reply.err and not string.find(reply.err, '^WRONGTYPE') then
    error(reply)
  end
  return reply
end
"""

# The step's own clock (issue #16's budget): the server's TIME when the script starts, and
# elapsed_us() for the microseconds since, which the step returns so that the caller sizes
# the next step by what this one cost on the server (client/budget.py). -1 when TIME cannot
# be read (the caller then times the round trip): a user without TIME (the worker and
# warmup roles) is never refused, the permission is checked first (nothing in the ACL LOG).
STEP_CLOCK: Final = """
local may_time = redis.acl_check_cmd('time')
local function clock_us()
  if not may_time then return nil end
  local t = redis.pcall('TIME')
  if type(t) ~= 'table' or t.err then return nil end
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local started_us = clock_us()
local function elapsed_us()
  local now_us = clock_us()
  if not (started_us and now_us) then return -1 end
  return now_us - started_us
end
"""
