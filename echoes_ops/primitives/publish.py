"""Publishing on the contract's channels in the configured pub/sub mode (contract/pubsub.py):
SPUBLISH for a location or player channel in ``sharded`` mode, PUBLISH otherwise. Every
publisher of game messages (the reference worker, broadcasts, a kick's notice) goes through
:func:`publish`, so a mode is followed everywhere or nowhere."""

from __future__ import annotations

from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract.pubsub import PubSubMode, is_sharded


async def publish(r: AnyRedis, channel: str, text: str, mode: PubSubMode) -> int:
    """Publish ``text``; returns Redis's receiver count (SPUBLISH counts the shard's
    subscribers on the owning node, PUBLISH those of the node it reached)."""
    if is_sharded(channel, mode):
        return int(await r.spublish(channel, text))
    return int(await r.publish(channel, text))
