"""Opening Redis connections from settings, with operator-facing errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, cast
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from echoes_ops.client.errors import translate
from echoes_ops.client.packing import (
    HiredisPackingConnection,
    HiredisPackingSSLConnection,
    HiredisPackingUnixConnection,
)
from echoes_ops.config import RedisTarget
from echoes_ops.config.walk import DEFAULT_WALK_DUTY
from echoes_ops.errors import ConfigError

Redis = aioredis.Redis
# what make_client / open_redis return: a Redis Cluster client on a cluster (REDIS_CLUSTER),
# a plain client otherwise (one server, or the Sentinel-discovered primary)
AnyRedis = aioredis.Redis | RedisCluster
# Sentinel(), typed: redis-py 8.1 leaves its constructor unannotated, 8.2 annotates it, so
# neither a plain call nor a ``type: ignore`` type-checks on both
_sentinel = cast(Callable[..., Sentinel], Sentinel)


def _driver_info() -> dict[str, Any]:
    """CLIENT SETINFO's name and version, given rather than looked up in the installed
    packages' metadata (what redis-py 8.2 does on the first connection, ~20 ms)."""
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # an older redis-py: it knows its version without the lookup
        return {}
    return {"driver_info": DriverInfo(name="redis-py", lib_version=redis.__version__)}


def _connection_class(url: str) -> type[Any]:
    scheme = urlsplit(url).scheme
    if scheme == "rediss":
        return HiredisPackingSSLConnection
    if scheme == "unix":
        return HiredisPackingUnixConnection
    return HiredisPackingConnection


def _check_ca_file(path: str) -> None:
    """A missing CA file is a settings problem, not a server one (redis-py reports it as a
    connection failure, "Error 2 connecting to host:port")."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot read REDIS_CA_FILE {path}: {exc.strerror or exc}",
            hint="point REDIS_CA_FILE at the PEM file of the CA that signed the server certificate",
        ) from None


class TierRedis(aioredis.Redis):
    """A plain client made from settings (:func:`make_plain_client`): it carries the
    walks' duty cycle of its target (``Settings.walk_duty``, ``ECHOES_OPS_WALK_DUTY``), which
    the stepped walks on it keep to (client/budget.node_walk)."""

    walk_duty: float = DEFAULT_WALK_DUTY


def walk_duty_of(r: AnyRedis) -> float:
    """The duty cycle a stepped walk on ``r`` keeps to: its settings' (the default for a
    client not made from settings)."""
    return r.walk_duty if isinstance(r, (TierRedis, TierCluster)) else DEFAULT_WALK_DUTY


class NodeRedis(TierRedis):
    """A plain client on one node of a cluster (made by :meth:`TierCluster.node_client`):
    per-node Lua steps send ASKING first on it (client/budget.node_walk), so a
    node importing a slot lets them read the keys it already holds. ``step_gate``: for a
    node on this machine, the gate its steps share with the cluster's other nodes here."""

    step_gate: asyncio.Semaphore | None = None


class ReplicaRedis(NodeRedis):
    """A plain client on a replica of a cluster (``--read-from replicas``): per-node Lua
    steps send READONLY first and run with EVALSHA_RO on it (client/budget.node_walk)."""


class TierCluster(RedisCluster):
    """redis-py's cluster client (MOVED/ASK, failover and resharding are its business), which
    also opens a plain :class:`Redis` on any one of its nodes, with the same credentials and
    TLS, for work that runs per node (SCAN walks, per-node Lua steps, bulk streaming; see
    :mod:`echoes_ops.client.nodes`). Those clients are closed with it."""

    def __init__(
        self, *args: Any, node_target: RedisTarget, node_extra: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.node_target = node_target
        self.walk_duty = node_target.walk_duty
        self._node_extra = node_extra
        self._node_clients: dict[str, aioredis.Redis] = {}
        self._step_gate: asyncio.Semaphore | None = None

    def node_client(self, node: ClusterNode, *, replica: bool = False) -> aioredis.Redis:
        """A plain client on ``node`` (one per node and kind, reused)."""
        name = f"{node.name}/replica" if replica else node.name
        client = self._node_clients.get(name)
        if client is None:
            client = make_plain_client(
                node_target(self.node_target, node.host, int(node.port)),
                redis_class=ReplicaRedis if replica else NodeRedis,
                **self._node_extra,
            )
            if isinstance(client, NodeRedis) and on_this_machine(node.host):
                client.step_gate = self.local_step_gate()  # None: ECHOES_OPS_STEP_GATE=off
            self._node_clients[name] = client
        return client

    def local_step_gate(self) -> asyncio.Semaphore | None:
        """The gate that the per-node steps of this cluster's nodes on this machine share,
        when ``ECHOES_OPS_STEP_GATE`` asks for one (``auto``: as many places as the machine
        has CPUs; the default is no gate, see :func:`step_gate_size`). Three primaries on two CPUs each given a step at once take turns on
        the CPUs mid-step, and a step of 0.5 ms then holds its node for a scheduler slice of
        several ms (docs/design.md). Nodes elsewhere are not gated: their CPUs are not ours
        to count."""
        if self._step_gate is None:
            size = step_gate_size(self.node_target.step_gate)
            if size is None:
                return None
            self._step_gate = asyncio.Semaphore(size)
        return self._step_gate

    async def aclose(self) -> None:
        clients = list(self._node_clients.values())
        self._node_clients.clear()
        for client in clients:
            with contextlib.suppress(rx.RedisError, OSError):
                await client.aclose()
        await super().aclose()


def step_gate_size(setting: str) -> int | None:
    """How many per-node steps of a cluster on this machine may run at once, from
    ``Settings.step_gate`` (``ECHOES_OPS_STEP_GATE``, checked by config/walk.py): ``off``
    (the default: no limit), ``auto`` (this process's CPUs) or a number from 1. Off by
    default: in the quiet run of record the gate of two made the cluster walk slower (1.24x
    one server against 1.41x ungated) without shortening its longest command (4.80 against
    3.31 ms); it stays for operators who find otherwise."""
    if setting == "auto":
        return local_cpus()
    return int(setting) if setting.isdigit() else None


def local_cpus() -> int:
    """The CPUs this process may run on (what the nodes on this machine share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def on_this_machine(host: str) -> bool:
    """A loopback address: a node that shares this machine's CPUs with us."""
    return host in ("localhost", "::1") or host.startswith("127.")


def node_target(target: RedisTarget, host: str, port: int) -> RedisTarget:
    """``target`` pointed at one node of its cluster (plain, not clustered)."""
    scheme = urlsplit(target.url).scheme or "redis"
    shown = f"[{host}]" if ":" in host else host
    return replace(target, url=f"{scheme}://{shown}:{port}/0", cluster=False, cluster_nodes=())


def _cluster_client(
    target: RedisTarget, options: dict[str, Any], extra: dict[str, Any]
) -> TierCluster:
    parts = urlsplit(target.url)
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    seeds = [ClusterNode(h, p) for h, p in target.cluster_nodes if (h, p) != (host, port)]
    cluster_options = dict(options)
    if parts.scheme == "rediss":
        cluster_options["ssl"] = True
    return TierCluster(
        host=host,
        port=port,
        startup_nodes=seeds or None,
        # one slot without its node fails the command that needs it, not every command
        require_full_coverage=False,
        node_target=target,
        node_extra=extra,
        **cluster_options,
    )


def _options(target: RedisTarget, client_name: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    """redis-py client options for ``target`` (``extra`` overrides; TLS as the URL says)."""
    extra = dict(extra)
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": target.timeout,
        "socket_timeout": extra.pop("socket_timeout", target.timeout),
        "health_check_interval": extra.pop("health_check_interval", 30),
        "client_name": client_name,
        "username": target.username,
        "password": target.password.reveal() if target.password else None,
    }
    if urlsplit(target.url).scheme != "unix":
        # TCP keepalive finds a vanished peer; a Unix socket has no such option (redis-py's
        # Unix connection refuses the argument)
        options["socket_keepalive"] = True
    options.update(_driver_info())
    options.update(extra)
    if urlsplit(target.url).scheme == "rediss":
        # --insecure: the operator accepted an unverified server (the CLI warns each run)
        options["ssl_cert_reqs"] = "none" if target.tls_insecure else "required"
        options["ssl_check_hostname"] = not target.tls_insecure
        if target.ca_file:
            _check_ca_file(target.ca_file)
            options["ssl_ca_certs"] = target.ca_file
    return options


def make_client(target: RedisTarget, *, client_name: str | None = None, **extra: Any) -> AnyRedis:
    """Build (but do not connect) an asyncio client for ``target``: a :class:`TierCluster`
    when ``target.cluster``, a plain :class:`Redis` otherwise."""
    if target.cluster:
        options = _options(target, client_name, extra)
        return _cluster_client(target, options, {"client_name": client_name, **extra})
    return make_plain_client(target, client_name=client_name, **extra)


def make_plain_client(
    target: RedisTarget,
    *,
    client_name: str | None = None,
    redis_class: type[aioredis.Redis] = TierRedis,
    **extra: Any,
) -> aioredis.Redis:
    """A plain client for ``target``: one server, a Sentinel-discovered primary, or (for a
    cluster target) the seed node itself, as a node of its own (classic pub/sub reaches every
    node's subscribers from any node)."""
    options = _options(target, client_name, extra)
    tls = urlsplit(target.url).scheme == "rediss"
    if target.cluster:
        # the seed node as a server of its own
        parts = urlsplit(target.url)
        target = node_target(target, parts.hostname or "localhost", parts.port or 6379)
    if target.sentinels:
        if tls:
            # the primary is reached over TLS (REDIS_TLS=true); the Sentinels in plain text
            options["ssl"] = True
        sentinel = _sentinel(
            list(target.sentinels),
            socket_timeout=target.timeout,
            # fail fast like the direct clients (from_url): redis-py's Redis() default retries
            # a refused Sentinel ten times with backoff, ~4 s per dead Sentinel in the list
            sentinel_kwargs={"socket_timeout": target.timeout, "retry": Retry(NoBackoff(), 0)},
            **{k: v for k, v in options.items() if k != "socket_timeout"},
        )
        assert target.sentinel_master is not None  # checked by Settings
        client: Redis = sentinel.master_for(target.sentinel_master, redis_class=TierRedis)
    else:
        options["connection_class"] = _connection_class(target.url)
        client = redis_class.from_url(target.url, **options)
    if isinstance(client, TierRedis):
        client.walk_duty = target.walk_duty
    return client


@asynccontextmanager
async def open_redis(
    target: RedisTarget, *, ping: bool = True, client_name: str | None = None, **extra: Any
) -> AsyncIterator[AnyRedis]:
    """Connect (and ping) Redis; inside the block, Redis failures become :class:`OpsError`.

    Every redis-py exception raised inside the ``async with`` body is translated to a
    one-line error naming the server (never its password).
    """
    client = make_client(target, client_name=client_name, **extra)
    try:
        if ping:
            await client.ping()
        yield client
    except (TimeoutError, rx.RedisError, rx.RedisClusterException, OSError) as exc:
        raise translate(exc, target.display) from exc
    finally:
        # the connection may already be gone; there is nothing left to release then
        with contextlib.suppress(rx.RedisError, OSError):
            await client.aclose()
