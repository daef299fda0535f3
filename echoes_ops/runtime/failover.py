"""What ``simulate`` measures about the nodes: publishes per node, and a killed primary.

Per-node publish counts are the server's own: ``INFO commandstats`` (``cmdstat_publish``,
``cmdstat_spublish``) on every primary before and after the run. On a cluster a classic
PUBLISH is counted once, on the node that received it, and then forwarded to every node over
the cluster bus; an SPUBLISH is counted on the node owning its channel's slot and stays in
that shard.

``--kill-primary AFTER`` SIGKILLs one primary of a local cluster ``AFTER`` seconds into the
play (its process id from ``INFO server``; only on loopback addresses). The victim is the
primary that owns the most subscribed channels: in sharded mode the most location channels,
in classic mode the node owning ``game:broadcast``'s slot. The report states the failover
window (from the kill to the last worker back on its subscriptions, plus
:data:`MARGIN` either side for messages in flight) and splits the loss into inside and
outside it: a correct failover loses nothing outside.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from redis import exceptions as rx
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from echoes_ops.client.connect import open_redis
from echoes_ops.client.nodes import primary_nodes
from echoes_ops.config import RedisTarget
from echoes_ops.contract import keys
from echoes_ops.errors import ConfigError

MARGIN = 0.5  # seconds either side of the failover window, for messages in flight
LOOPBACK = ("127.", "localhost", "::1")
COMMANDS = {"cmdstat_publish": "publish", "cmdstat_spublish": "spublish"}


# -- publishes per node ---------------------------------------------------------------------


async def publish_counts(target: RedisTarget) -> dict[str, dict[str, int]]:
    """``{node: {"publish": calls, "spublish": calls}}`` for every primary now."""
    counts: dict[str, dict[str, int]] = {}
    async with open_redis(target) as r:
        for node in await primary_nodes(r):
            try:
                info = await node.client.info("commandstats")
            except (rx.RedisError, OSError):
                continue
            counts[node.name] = {
                short: int(_calls(info.get(name))) for name, short in COMMANDS.items()
            }
    return counts


def _calls(entry: Any) -> int:
    if isinstance(entry, Mapping):
        return int(entry.get("calls", 0))
    return 0


def publish_deltas(
    before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int | None]]:
    """Calls made during the run, per node; a node gone by the end (killed) shows None."""
    out: dict[str, dict[str, int | None]] = {}
    for name in sorted(set(before) | set(after)):
        if name not in after:
            out[name] = dict.fromkeys(COMMANDS.values())
            continue
        base = before.get(name, {})
        out[name] = {k: max(0, after[name].get(k, 0) - base.get(k, 0)) for k in COMMANDS.values()}
    return out


# -- killing a primary ----------------------------------------------------------------------


@dataclass(frozen=True)
class Victim:
    node: str  # host:port
    pid: int
    channels: int  # subscribed channels whose slot it owns
    slot: int  # one slot it owns (who serves it after the failover is its replica)


async def choose_victim(target: RedisTarget, mode: str, location_ids: Sequence[str]) -> Victim:
    """The local cluster primary to kill (see the module docstring); ConfigError when the
    target is not a cluster or not on this machine."""
    async with open_redis(target) as r:
        if not isinstance(r, RedisCluster):
            raise ConfigError("--kill-primary needs a Redis Cluster (REDIS_CLUSTER=true)")
        if mode == "sharded":
            channels = [keys.location_channel(loc) for loc in location_ids]
        else:
            channels = [keys.BROADCAST_CHANNEL]
        owners: Counter[str] = Counter()
        slots: dict[str, int] = {}
        for channel in channels:
            slot = int(key_slot(channel.encode("utf-8")))
            node = r.nodes_manager.get_node_from_slot(slot)
            owners[str(node.name)] += 1
            slots.setdefault(str(node.name), slot)
        by_name = {node.name: node for node in await primary_nodes(r)}
        name, count = max(sorted(owners.items()), key=lambda item: item[1])
        chosen = by_name.get(name)
        if chosen is None:
            raise ConfigError(f"cluster node {name} owns the channels but is not a primary")
        host = name.rsplit(":", 1)[0]
        if not host.startswith(LOOPBACK):
            raise ConfigError(
                f"--kill-primary kills a local process; {name} is not on this machine"
            )
        info = await chosen.client.info("server")
        return Victim(name, int(info["process_id"]), count, slots[name])


def kill(victim: Victim) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(victim.pid, signal.SIGKILL)


# -- the report -----------------------------------------------------------------------------


@dataclass
class FailoverReport:
    node: str
    pid: int
    channels_owned: int
    slot: int  # one slot it owned
    killed_at_s: float  # seconds after play started
    window_s: tuple[float, float]  # the failover window, seconds after play started
    subscriber_gap_s: float | None  # longest time a worker was off its subscriptions
    workers_resubscribed: int  # surviving workers that lost and regained a subscription
    publish_errors: int  # player steps that failed while Redis was away
    lost_in_window: int
    lost_outside_window: int
    lost_span_s: tuple[float, float] | None  # first and last lost message's send time
    new_primary: str | None = None  # who serves its slots after the run
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def failover_report(
    victim: Victim,
    *,
    play_started: float,
    killed_at: float,
    gaps: Sequence[tuple[float, float]],
    error_times: Sequence[float],
    lost_sent_at: Sequence[float],
    workers_resubscribed: int,
) -> FailoverReport:
    """Everything in epoch seconds but the report, which counts from ``play_started``.
    ``gaps``: every surviving worker's (lost, back) pub/sub outages; ``error_times``: when
    player steps failed; ``lost_sent_at``: the send time of every lost (message, worker)."""
    relevant = [(lost, back) for lost, back in gaps if back >= killed_at - MARGIN]
    ends = [back for _, back in relevant] + [t for t in error_times if t >= killed_at - MARGIN]
    end = max(ends, default=killed_at)
    start = killed_at - MARGIN
    stop = end + MARGIN
    inside = sum(1 for t in lost_sent_at if start <= t <= stop)
    span = (min(lost_sent_at), max(lost_sent_at)) if lost_sent_at else None
    longest = max((back - max(lost, killed_at) for lost, back in relevant), default=None)
    return FailoverReport(
        node=victim.node,
        pid=victim.pid,
        channels_owned=victim.channels,
        slot=victim.slot,
        killed_at_s=round(killed_at - play_started, 3),
        window_s=(round(start - play_started, 3), round(stop - play_started, 3)),
        subscriber_gap_s=None if longest is None else round(max(0.0, longest), 3),
        workers_resubscribed=workers_resubscribed,
        publish_errors=sum(1 for t in error_times if t >= start),
        lost_in_window=inside,
        lost_outside_window=len(lost_sent_at) - inside,
        lost_span_s=None
        if span is None
        else (round(span[0] - play_started, 3), round(span[1] - play_started, 3)),
    )


async def slot_owner(target: RedisTarget, slot: int) -> str | None:
    """After the run: the primary serving ``slot`` now (the victim's promoted replica)."""
    async with open_redis(target) as r:
        if not isinstance(r, RedisCluster):
            return None
        await r.nodes_manager.initialize()
        return str(r.nodes_manager.get_node_from_slot(slot).name)
