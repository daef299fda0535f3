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
