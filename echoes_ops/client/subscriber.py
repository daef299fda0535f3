"""Subscribed connections for classic channels, patterns and shard channels, on one server or
on every node of a cluster that owns a subscribed shard channel.

Classic pub/sub (SUBSCRIBE/PSUBSCRIBE) hears a message published anywhere: on a cluster,
every node forwards classic messages to every other node, so one connection to any node
suffices. A shard channel (SSUBSCRIBE, Redis 7.0+) is only heard on the node that owns its
slot. :class:`Subscriber` therefore keeps one subscribed connection per node it needs: on one
server (or the Sentinel primary) that is a single connection carrying all three kinds; on a
cluster, the classic subscriptions go to one "home" node and each shard channel to its owner.

Every connection is read through :class:`~echoes_ops.client.subscribed.SubscribedReader`
(PING after silence, dead after ``dead_after``), each by its own task feeding one queue, so a
message costs one queue hop whichever node it came from. The first connection to fail (an
error, silence, or the server moving a shard channel away: the ``sunsubscribe`` Redis 7
sends when a slot leaves a node) ends the subscriber: :meth:`next` raises it, and the caller
closes it and opens a new one after refreshing the cluster's slot map (a failover or a
resharding changes the owners). Pub/sub is at-most-once: whatever was published in between
is lost, and callers count the gap.

redis-py's own ``ClusterPubSub`` shards too, but reads its nodes by polling them in turn with
a split timeout (a message on one node waits out the other nodes' slices) and PINGs only
one connection, so neither the latency nor the half-open detection this project needs
holds there.

Layering: this module knows connections, not the contract: callers say which channels are
shard channels (:mod:`echoes_ops.contract.pubsub` decides, by mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.subscribed import SubscribedReader, close_pubsub

HOME = ""  # the node name of the one connection on a single server


class ShardMovedError(rx.ConnectionError):
    """The server unsubscribed a shard channel we still want (its slot moved to another
    node, e.g. after a failover or a resharding): resubscribe where it lives now."""


# what a cluster answers while a failover or a resharding is under way: retried like a
# dropped connection (SlotNotCoveredError is not even a RedisError)
_CHANGING = (rx.SlotNotCoveredError, rx.ClusterDownError, rx.TryAgainError, rx.AskError)


@contextlib.contextmanager
def _changing(what: str) -> Iterator[None]:
    """Turn the cluster's "not now" answers into :class:`ShardMovedError`."""
    try:
        yield
    except _CHANGING as exc:
        raise ShardMovedError(f"the cluster is changing ({what}): {exc}") from exc


class _Router(Protocol):
    async def ready(self) -> None: ...
    def owner(self, channel: str) -> str: ...
    def home(self) -> str: ...
    def client(self, node: str) -> Redis: ...
    async def refresh(self) -> None: ...
    def owned(self) -> bool: ...


class _OneServer:
    """Everything on the one client."""

    def __init__(self, r: Redis) -> None:
        self.r = r

    async def ready(self) -> None:
        return None

    def owner(self, channel: str) -> str:
        return HOME

    def home(self) -> str:
        return HOME

    def client(self, node: str) -> Redis:
        return self.r

    async def refresh(self) -> None:
        return None

    def owned(self) -> bool:
        return False  # the caller's client: not ours to close


class _Cluster:
    """Shard channels to the primary owning their slot (redis-py's slot map), classic
    subscriptions to the node owning ``game:broadcast``'s slot (any node would do)."""

    def __init__(self, r: RedisCluster) -> None:
        self.r = r
        self._clients: dict[str, Redis] = {}

    async def ready(self) -> None:
        """The slot map, read once (a fresh client has none until its first command)."""
        try:
            await self.r.initialize()
        except rx.RedisClusterException as exc:  # no seed node answered
            raise ShardMovedError(f"cannot read the cluster's slot map: {exc}") from exc

    def owner(self, channel: str) -> str:
        slot = key_slot(channel.encode("utf-8"))
        with _changing(f"slot {slot} of {channel} has no primary yet"):
            node = self.r.nodes_manager.get_node_from_slot(slot)
        return str(node.name)

    def home(self) -> str:
        return self.owner("game:broadcast")

    def client(self, node: str) -> Redis:
        made = self._clients.get(node)
        if made is None:
            found = self.r.get_node(node_name=node)
            if found is None:
                raise rx.ConnectionError(f"cluster node {node} is no longer in the slot map")
            node_client = getattr(self.r, "node_client", None)
            if node_client is not None:
                made = node_client(found)
            else:  # a bare RedisCluster: a plain client with the node's own options
                made = Redis(connection_pool=_pool(found.connection_class, found.connection_kwargs))
            self._clients[node] = made
        return made

    async def refresh(self) -> None:
        try:
            await self.r.nodes_manager.initialize()
        except rx.RedisClusterException as exc:  # no seed node answered
            raise ShardMovedError(f"cannot read the cluster's slot map: {exc}") from exc

    def owned(self) -> bool:
        return getattr(self.r, "node_client", None) is None


def _pool(connection_class: Any, kwargs: dict[str, Any]) -> Any:
    from redis.asyncio.connection import ConnectionPool

    options = {k: v for k, v in kwargs.items() if k != "event_dispatcher"}
    return ConnectionPool(connection_class=connection_class, **options)


def router_for(r: AnyRedis) -> _Router:
    if isinstance(r, RedisCluster):
        return _Cluster(r)
    return _OneServer(r)


@dataclass
class _Node:
    name: str
    pubsub: PubSub
    reader: SubscribedReader | None = None
    task: asyncio.Task[None] | None = None
    shard: set[str] = field(default_factory=set)


class Subscriber:
    """Classic channels, patterns and shard channels over as many connections as it takes.

    ``start`` subscribes (and, with ``confirm_within``, waits until every subscription is
    confirmed, keeping messages that arrived meanwhile); ``next`` returns the next published
    message (a redis-py message dict, ``type`` ``message``/``pmessage``/``smessage``) or
    raises the error that ended a connection; ``add``/``remove`` change one channel while
    running; ``aclose`` releases everything. One subscriber per connection lifetime: after an
    error, close it and start a new one (:meth:`refresh_topology` first on a cluster).
    """

    def __init__(self, r: AnyRedis, *, dead_after: float, ping_after: float | None = None) -> None:
        self.r = r
        self.dead_after = dead_after
        self.ping_after = ping_after
        self._router = router_for(r)
        self._nodes: dict[str, _Node] = {}
        self._queue: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self._early: list[dict[str, Any]] = []
        self._wanted_shard: set[str] = set()
        self._running = False

    @property
    def nodes(self) -> list[str]:
        """The nodes this subscriber holds a connection to (``[""]`` on one server)."""
        return sorted(self._nodes)

    def shard_nodes(self) -> dict[str, int]:
        """Shard channels subscribed per node."""
        return {name: len(node.shard) for name, node in sorted(self._nodes.items())}

    @property
    def pings(self) -> int:
        return sum(n.reader.pings for n in self._nodes.values() if n.reader is not None)

    async def refresh_topology(self) -> None:
        """Re-read the cluster's slot map (after a failover or resharding); a no-op on one
        server."""
        await self._router.refresh()

    def _node(self, name: str) -> _Node:
        node = self._nodes.get(name)
        if node is None:
            node = _Node(name, self._router.client(name).pubsub())
            self._nodes[name] = node
        return node

    async def start(
        self,
        *,
        channels: Iterable[str] = (),
        patterns: Iterable[str] = (),
        shard: Iterable[str] = (),
        confirm_within: float | None = None,
    ) -> None:
        await self._router.ready()
        with _changing("subscribing"):
            await self._start(channels, patterns, shard, confirm_within)

    async def _start(
        self,
        channels: Iterable[str],
        patterns: Iterable[str],
        shard: Iterable[str],
        confirm_within: float | None,
    ) -> None:
        pending: dict[str, int] = {}
        classic = list(dict.fromkeys(channels))
        globs = list(dict.fromkeys(patterns))
        if classic or globs:
            home = self._node(self._router.home())
            if classic:
                await home.pubsub.subscribe(*classic)
            if globs:
                await home.pubsub.psubscribe(*globs)
            pending[home.name] = len(classic) + len(globs)
        for channel in dict.fromkeys(shard):
            node = self._node(self._router.owner(channel))
            await node.pubsub.ssubscribe(channel)
            node.shard.add(channel)
            self._wanted_shard.add(channel)
            pending[node.name] = pending.get(node.name, 0) + 1
        if confirm_within is not None:
            await self._confirm(pending, confirm_within)
        self._running = True
        for node in self._nodes.values():
            self._start_reader(node)

    async def _confirm(self, pending: dict[str, int], within: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(within, 0.1)
        for name, count in pending.items():
            pubsub = self._nodes[name].pubsub
            while count > 0:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise rx.TimeoutError("Redis did not confirm the subscriptions in time")
                reply = await pubsub.get_message(timeout=remaining)
                if reply is None:
                    continue
                kind = _text(reply.get("type"))
                if kind in ("subscribe", "psubscribe", "ssubscribe"):
                    count -= 1
                elif kind in ("message", "pmessage", "smessage"):
                    self._early.append(reply)

    def _start_reader(self, node: _Node) -> None:
        """Read ``node`` from now on (after its first subscription was sent: redis-py's
        PubSub has no connection before that)."""
        if node.task is not None or not self._running:
            return
        node.reader = SubscribedReader(
            node.pubsub,
            dead_after=self.dead_after,
            ping_after=self.ping_after,
            on_protocol=functools.partial(self._protocol, node.name),
        )
        node.task = asyncio.create_task(self._read(node), name=f"subscriber {node.name or 'one'}")

    def _protocol(self, name: str, reply: dict[str, Any]) -> None:
        if _text(reply.get("type")) != "sunsubscribe":
            return
        channel = _text(reply.get("channel"))
        if channel in self._wanted_shard:
            raise ShardMovedError(
                f"the server at {name or 'the one node'} dropped shard channel {channel} "
                "(its slot moved: failover or resharding)"
            )

    async def _read(self, node: _Node) -> None:
        assert node.reader is not None
        try:
            with _changing(f"reading {node.name}"):
                while True:
                    self._queue.put_nowait(await node.reader.next())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to next(), which raises it
            self._queue.put_nowait(exc)

    async def next(self) -> dict[str, Any]:
        if self._early:
            return self._early.pop(0)
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def add(self, channel: str, *, sharded: bool) -> None:
        """Subscribe one more channel (SSUBSCRIBE on its owner when ``sharded``)."""
        with _changing(f"subscribing {channel}"):
            await self._add(channel, sharded=sharded)

    async def _add(self, channel: str, *, sharded: bool) -> None:
        if sharded:
            self._wanted_shard.add(channel)
            node = self._node(self._router.owner(channel))
            node.shard.add(channel)
            await node.pubsub.ssubscribe(channel)
        else:
            node = self._node(self._router.home())
            await node.pubsub.subscribe(channel)
        self._start_reader(node)

    async def remove(self, channel: str, *, sharded: bool) -> None:
        if sharded:
            self._wanted_shard.discard(channel)
            for node in self._nodes.values():
                if channel in node.shard:
                    node.shard.discard(channel)
                    await node.pubsub.sunsubscribe(channel)
        else:
            home = self._nodes.get(self._router.home())
            if home is not None:
                await home.pubsub.unsubscribe(channel)

    async def aclose(self) -> None:
        self._running = False
        nodes = list(self._nodes.values())
        self._nodes.clear()
        for node in nodes:
            if node.task is not None:
                node.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await node.task
        for node in nodes:
            with contextlib.suppress(rx.RedisError, OSError, RuntimeError, TimeoutError):
                await close_pubsub(node.pubsub)
        if self._router.owned():
            for name in {n.name for n in nodes}:
                with contextlib.suppress(rx.RedisError, OSError, RuntimeError, TimeoutError):
                    await self._router.client(name).aclose()


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return "" if value is None else str(value)
