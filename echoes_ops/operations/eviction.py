"""What a ``maxmemory-policy`` means for keys without a TTL (docs/design.md, decision 6).

Static caches, presence sets, locks and worker connection hashes carry no TTL; only an
``allkeys-*`` policy evicts such keys. doctor's eviction check and preload's warning and
post-write verification read the policy through here.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import ResponseError

from echoes_ops.client.connect import AnyRedis


def evicts_keys_without_ttl(policy: str) -> bool:
    """Whether ``policy`` may evict keys that carry no TTL."""
    return policy.startswith("allkeys-")


@dataclass(frozen=True)
class MemoryState:
    used: int
    maxmemory: int  # 0: no limit
    policy: str  # "" when INFO does not say
    evicted_keys: int


async def memory_state(r: AnyRedis) -> MemoryState:
    """used_memory, maxmemory, the policy and the evicted_keys counter (one INFO call on
    Redis 7, two before it)."""
    try:
        info = await r.info("memory", "stats")
    except ResponseError:  # Redis < 7 takes one section per INFO
        info = {**await r.info("memory"), **await r.info("stats")}
    return MemoryState(
        used=int(info.get("used_memory", 0) or 0),
        maxmemory=int(info.get("maxmemory", 0) or 0),
        policy=str(info.get("maxmemory_policy", "") or ""),
        evicted_keys=int(info.get("evicted_keys", 0) or 0),
    )


def eviction_warning(state: MemoryState) -> str | None:
    """The warning to give before writing keys without a TTL, or ``None``."""
    if not evicts_keys_without_ttl(state.policy):
        return None
    return (
        f"maxmemory-policy is {state.policy}: static keys carry no TTL and can be evicted "
        "when memory runs short (preload verifies what it wrote; doctor explains the fix)"
    )
