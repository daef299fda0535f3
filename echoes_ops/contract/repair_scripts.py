"""Lua scripts of reconcile's repairs on Redis Cluster, as named constants (a sibling of
``scripts.py``). On a cluster a player's session, its presence set and its worker's
connection hash lie in different slots, so no one call can re-check a condition on one and
change another; each script here touches one key and re-checks that key in the call that
changes it (docs/design.md, guarantees per topology)."""

from __future__ import annotations

from typing import Final

# Delete a session only while it still names the dead worker, and say where the player was.
# KEYS[1] = session key; ARGV[1] = worker id.
# Returns the session's location_id ("" when it had none) if deleted, false if not (gone, or
# a session of another worker: the player reconnected elsewhere).
RELEASE_SESSION_OF_WORKER: Final = """
if redis.call('HGET', KEYS[1], 'worker_id') ~= ARGV[1] then
  return false
end
local location = redis.call('HGET', KEYS[1], 'location_id') or ''
redis.call('DEL', KEYS[1])
return location
"""
