"""Redis Cluster health: every node's role, slots, memory, ops/s, clients and replication,
and what is wrong with the cluster as a whole. ``status``, ``stats``, ``doctor`` and the
dashboard's Overview read it through :func:`cluster_health`.

The membership comes from ``CLUSTER NODES`` as one answering node sees it (a node that is
down is still listed, with its flags); then every node is asked for ``INFO`` and
``CLUSTER INFO`` in parallel. A node that does not answer is shown as down with the reason,
never left out, so a node going down shows at the next reading.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

from redis import exceptions as rx
from redis.asyncio.cluster import ClusterNode, RedisCluster

from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.errors import translate
from echoes_ops.client.nodes import node_client, primary_clients
from echoes_ops.client.slotmap import SLOTS, NodeLine, node_view
from echoes_ops.client.topology import cluster_label


@dataclass
class NodeHealth:
    address: str  # host:port
    node_id: str
    role: str  # primary or replica (as the cluster's membership says)
    primary: str | None  # a replica's primary (address)
    slots: int  # slots owned (primaries)
    slot_ranges: str  # "0-5460" (primaries)
    flags: list[str]  # CLUSTER NODES flags other than myself/master/slave (fail, fail?, ...)
    config_epoch: int
    up: bool  # answered INFO just now
    error: str | None = None  # why not, when it did not
    used_memory: int | None = None
    used_memory_human: str | None = None
    maxmemory: int | None = None
    ops_per_sec: int | None = None
    connected_clients: int | None = None
    repl_offset: int | None = None  # primary: master_repl_offset; replica: slave_repl_offset
    lag_bytes: int | None = None  # replica: its primary's offset minus its own
    lag_s: int | None = None  # replica: master_last_io_seconds_ago
    link: str | None = None  # replica: master_link_status (up/down)
    current_epoch: int | None = None  # cluster_current_epoch as this node sees it
    state: str | None = None  # cluster_state as this node sees it


@dataclass
class ClusterHealth:
    label: str  # "cluster 3 primaries / 3 replicas"
    state: str  # cluster_state (ok/fail) as the first answering node says
    slots_assigned: int
    slots_ok: int
    slots_pfail: int
    slots_fail: int
    slot_coverage: float  # share of the 16384 slots assigned to an answering primary
    nodes: list[NodeHealth]
    primaries_without_replica: list[str]
    nodes_down: list[str]
    epoch_disagreement: list[str]  # "127.0.0.1:7000 says 6" when nodes' current epochs differ
    config_epoch_conflicts: list[str]  # primaries sharing one config epoch
    require_full_coverage: str | None  # cluster-require-full-coverage (None: not readable)
    node_timeout_ms: int | None  # cluster-node-timeout (None: not readable)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


async def cluster_health(r: AnyRedis) -> ClusterHealth | None:
    """The cluster's health, or None on one server (nothing to tell beyond INFO)."""
    if not isinstance(r, RedisCluster):
        return None
    lines = await _membership(r)
    by_id = {line.node_id: line for line in lines}
    readings = await asyncio.gather(*(_read_node(r, line) for line in lines))
    nodes = [
        _node(line, by_id, info, cinfo, error)
        for line, (info, cinfo, error) in zip(lines, readings, strict=True)
    ]
    _fill_lag(nodes)
    config = await _config(r)
    return _assess(nodes, lines, config)


async def _membership(r: RedisCluster) -> list[NodeLine]:
    """CLUSTER NODES from the first primary that answers."""
    last: BaseException | None = None
    for client in await primary_clients(r):
        try:
            return await node_view(client)
        except (rx.RedisError, OSError) as exc:
            last = exc
    raise last if last is not None else rx.ConnectionError("no primary answered")


async def _read_node(
    r: RedisCluster, line: NodeLine
) -> tuple[dict[str, Any] | None, dict[str, str] | None, str | None]:
    host, _, port = line.address.rpartition(":")
    client = node_client(r, ClusterNode(host, int(port)))
    try:
        info = dict(await client.info())
        cinfo = _cluster_info(await client.execute_command("CLUSTER", "INFO"))  # type: ignore[no-untyped-call]
    except (rx.RedisError, OSError, TimeoutError) as exc:
        return None, None, translate(exc, line.address).message
    return info, cinfo, None


def _cluster_info(reply: object) -> dict[str, str]:
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    out: dict[str, str] = {}
    for raw in str(reply).splitlines():
        name, sep, value = raw.partition(":")
        if sep:
            out[name.strip()] = value.strip()
    return out


def _node(
    line: NodeLine,
    by_id: dict[str, NodeLine],
    info: dict[str, Any] | None,
    cinfo: dict[str, str] | None,
    error: str | None,
) -> NodeHealth:
    primary = by_id.get(line.primary_id or "")
    node = NodeHealth(
        address=line.address,
        node_id=line.node_id,
        role="primary" if line.is_primary else "replica",
        primary=primary.address if primary is not None else None,
        slots=line.slot_count,
        slot_ranges=",".join(f"{a}-{b}" if a != b else str(a) for a, b in line.slots),
        flags=sorted(line.flags - {"myself", "master", "slave"}),
        config_epoch=line.config_epoch,
        up=info is not None,
        error=error,
    )
    if info is not None:
        node.used_memory = int(info.get("used_memory", 0))
        node.used_memory_human = str(info.get("used_memory_human", "?"))
        node.maxmemory = int(info.get("maxmemory", 0))
        node.ops_per_sec = int(info.get("instantaneous_ops_per_sec", 0))
        node.connected_clients = int(info.get("connected_clients", 0))
        if line.is_primary:
            node.repl_offset = int(info.get("master_repl_offset", 0))
        else:
            node.repl_offset = int(info.get("slave_repl_offset", 0))
            node.lag_s = int(info.get("master_last_io_seconds_ago", -1))
            node.link = str(info.get("master_link_status", "?"))
    if cinfo is not None:
        node.current_epoch = int(cinfo.get("cluster_current_epoch", "0"))
        node.state = cinfo.get("cluster_state")
    return node


def _fill_lag(nodes: list[NodeHealth]) -> None:
    offsets = {n.address: n.repl_offset for n in nodes if n.role == "primary"}
    for node in nodes:
        if node.role == "replica" and node.repl_offset is not None and node.primary:
            primary = offsets.get(node.primary)
            if primary is not None:
                node.lag_bytes = max(0, primary - node.repl_offset)


async def _config(r: RedisCluster) -> dict[str, str]:
    """cluster-require-full-coverage and cluster-node-timeout (CONFIG GET may be refused)."""
    client = (await primary_clients(r))[0]
    found: dict[str, str] = {}
    for name in ("cluster-require-full-coverage", "cluster-node-timeout"):
        try:
            reply = await client.config_get(name)
        except (rx.RedisError, OSError):
            continue
        found.update({str(k): str(v) for k, v in reply.items()})
    return found


def _assess(
    nodes: list[NodeHealth], lines: list[NodeLine], config: dict[str, str]
) -> ClusterHealth:
    answering = [n for n in nodes if n.up and n.state is not None]
    first = answering[0] if answering else None
    primaries = [n for n in nodes if n.role == "primary" and n.slots > 0]
    replicas = [n for n in nodes if n.role == "replica"]
    serving = {n.address for n in primaries if n.up}
    covered = sum(n.slots for n in primaries if n.address in serving)
    with_replica = {n.primary for n in replicas if n.up}
    lonely = sorted(n.address for n in primaries if n.address not in with_replica)
    down = sorted(n.address for n in nodes if not n.up or {"fail", "fail?"} & set(n.flags))
    epochs = {n.current_epoch for n in answering}
    disagreement = (
        sorted(f"{n.address} says {n.current_epoch}" for n in answering) if len(epochs) > 1 else []
    )
    seen: dict[int, str] = {}
    conflicts: list[str] = []
    for n in primaries:
        if n.config_epoch in seen:
            conflicts.append(
                f"{seen[n.config_epoch]} and {n.address} share config epoch {n.config_epoch}"
            )
        seen[n.config_epoch] = n.address
    timeout = config.get("cluster-node-timeout")
    health = ClusterHealth(
        label=cluster_label(len(primaries), len(replicas)),
        state=(first.state or "unknown") if first is not None else "unknown",
        slots_assigned=sum(line.slot_count for line in lines if line.is_primary),
        slots_ok=covered,
        slots_pfail=sum(n.slots for n in primaries if "fail?" in n.flags),
        slots_fail=sum(n.slots for n in primaries if "fail" in n.flags),
        slot_coverage=covered / SLOTS,
        nodes=nodes,
        primaries_without_replica=lonely,
        nodes_down=down,
        epoch_disagreement=disagreement,
        config_epoch_conflicts=conflicts,
        require_full_coverage=config.get("cluster-require-full-coverage"),
        node_timeout_ms=int(timeout) if timeout and timeout.isdigit() else None,
    )
    health.problems = _problems(health)
    return health


def _problems(h: ClusterHealth) -> list[str]:
    problems: list[str] = []
    if h.state != "ok":
        problems.append(f"cluster_state is {h.state}")
    if h.slots_ok < SLOTS:
        problems.append(f"{SLOTS - h.slots_ok} of {SLOTS} slots have no answering primary")
    for address in h.nodes_down:
        node = next(n for n in h.nodes if n.address == address)
        why = node.error or ",".join(node.flags)
        problems.append(f"node {address} ({node.role}) is down: {why}")
    for address in h.primaries_without_replica:
        problems.append(f"primary {address} has no replica: losing it loses its slots")
    if h.epoch_disagreement:
        problems.append(
            "nodes disagree on the cluster's current epoch: " + "; ".join(h.epoch_disagreement)
        )
    problems.extend(h.config_epoch_conflicts)
    for n in h.nodes:
        if n.role == "replica" and n.up and n.link not in (None, "up"):
            problems.append(f"replica {n.address} has its link to {n.primary} {n.link}")
    return problems


async def replica_lag(r: AnyRedis) -> str | None:
    """One line on the replicas walks read with ``--read-from replicas``: each one's lag
    behind its primary (bytes of replication stream, seconds since its last I/O); None on
    one server or when walks read the primaries."""
    target = getattr(r, "node_target", None)
    if not isinstance(r, RedisCluster) or target is None or target.read_from != "replicas":
        return None
    health = await cluster_health(r)
    if health is None:
        return None
    parts = []
    for n in health.nodes:
        if n.role != "replica":
            continue
        if not n.up:
            parts.append(f"{n.address} down")
            continue
        behind = f"{n.lag_bytes:,} B" if n.lag_bytes is not None else "? B"
        parts.append(f"{n.address} (of {n.primary}) {behind} behind, last I/O {n.lag_s} s ago")
    return "walks read replicas: " + ("; ".join(parts) if parts else "none (primaries read)")
