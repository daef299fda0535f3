"""Who is connected: clients (and which of them are game workers) and pub/sub channels by
family, for a stats snapshot."""

from __future__ import annotations

from typing import Any, Final

from redis.exceptions import NoPermissionError

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import keys
from echoes_ops.errors import InvalidIdError
from echoes_ops.operations.stats.model import (
    ChannelFamily,
    ClientStats,
    OwnLoad,
    PubSubStats,
    info_int,
)

CHANNEL_LIST_LIMIT: Final = 100_000  # above this many channels only totals are reported
NUMSUB_BATCH: Final = 1000
TOP_CHANNELS: Final = 10
CHANNEL_FAMILIES: Final = ("broadcast", "workers", "location", "player", "other")


async def named_workers(r: AnyRedis, names: set[str], own: OwnLoad) -> set[str]:
    """The client names that are workers: those with a meta or connections key (EXISTS,
    pipelined; no key walk)."""
    candidates = []
    for name in sorted(names):
        try:
            candidates.append((name, keys.worker_meta_key(name), keys.worker_connections_key(name)))
        except InvalidIdError:
            continue  # a name no worker key can have
    replies = await bulk(
        r, [("EXISTS", meta, conns) for _, meta, conns in candidates], raise_on_error=False
    )
    own.commands += len(candidates)
    found = set()
    for (name, _, _), count in zip(candidates, replies, strict=True):
        if isinstance(count, int):
            own.keyspace_hits += count
            own.keyspace_misses += 2 - count
            if count:
                found.add(name)
    return found


async def client_stats(
    r: AnyRedis, info: dict[str, Any], worker_ids: set[str] | None, own: OwnLoad
) -> ClientStats:
    """Connections, and which belong to workers (a client named after a worker with keys;
    ``worker_ids`` None: look the names up)."""
    connected = info_int(info, "connected_clients")
    blocked = info_int(info, "blocked_clients")
    own.commands += 1
    try:
        listed = await r.client_list()
    except NoPermissionError:
        return ClientStats(connected, False, 0, [], 0, 0, blocked)
    names = [str(c.get("name", "")) for c in listed]
    if worker_ids is None:
        worker_ids = await named_workers(r, {n for n in names if n}, own)
    workers = sorted({n for n in names if n and n in worker_ids})
    worker_conns = sum(1 for n in names if n and n in worker_ids)
    pubsub = sum(1 for c in listed if info_int(c, "sub") > 0 or info_int(c, "psub") > 0)
    patterns = sum(1 for c in listed if info_int(c, "psub") > 0)
    return ClientStats(connected, True, worker_conns, workers, pubsub, patterns, blocked)


def channel_family(channel: str) -> str:
    if channel == keys.BROADCAST_CHANNEL:
        return "broadcast"
    if channel == keys.WORKERS_CHANNEL:
        return "workers"
    for family, builder, prefix in (
        ("location", keys.location_channel, keys.LOCATION_CHANNEL_PATTERN[:-1]),
        ("player", keys.player_channel, keys.PLAYER_CHANNEL_PATTERN[:-1]),
    ):
        if channel.startswith(prefix):
            try:
                if builder(channel[len(prefix) :]) == channel:
                    return family
            except ValueError:
                return "other"
    return "other"


async def pubsub_stats(r: AnyRedis, info: dict[str, Any], own: OwnLoad) -> PubSubStats:
    total = info_int(info, "pubsub_channels")
    patterns = info_int(info, "pubsub_patterns")
    families = {name: ChannelFamily() for name in CHANNEL_FAMILIES}
    if total > CHANNEL_LIST_LIMIT:
        return PubSubStats(
            total,
            patterns,
            False,
            f"{total} channels (more than {CHANNEL_LIST_LIMIT}): totals only",
            families,
            [],
        )
    channels: list[str] = [keys.BROADCAST_CHANNEL, keys.WORKERS_CHANNEL]
    try:
        for pattern in (keys.LOCATION_CHANNEL_PATTERN, keys.PLAYER_CHANNEL_PATTERN):
            channels += [str(c) for c in await r.pubsub_channels(pattern)]
            own.commands += 1
        counts: list[tuple[str, int]] = []
        for start in range(0, len(channels), NUMSUB_BATCH):
            part = channels[start : start + NUMSUB_BATCH]
            counts += [(str(c), int(n)) for c, n in await r.pubsub_numsub(*part)]
            own.commands += 1
    except NoPermissionError as exc:
        return PubSubStats(total, patterns, False, f"not allowed: {exc}", families, [])
    listed = 0
    for channel, subscribers in counts:
        family = families[channel_family(channel)]
        if subscribers > 0:
            family.channels += 1
            family.subscriptions += subscribers
            listed += 1
    families["other"].channels = max(0, total - listed)
    top = sorted((c for c in counts if c[1] > 0), key=lambda c: (-c[1], c[0]))[:TOP_CHANNELS]
    return PubSubStats(total, patterns, True, None, families, top)
