"""A private Redis Cluster on loopback: 3 primaries and 3 replicas of Debian's
``redis-server``, joined by ``redis-cli --cluster create``. Used by ``echoes-ops local up
--cluster`` and by the test fixtures (the same code)."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from echoes_ops.errors import ConfigError, UnreachableError
from echoes_ops.local.binaries import find_redis_cli
from echoes_ops.local.ports import free_port, port_in_use
from echoes_ops.local.redis_server import RedisServer

PRIMARIES = 3
REPLICAS_PER_PRIMARY = 1
NODE_TIMEOUT_MS = 2000  # cluster-node-timeout: how long before a silent primary fails over
BUS_OFFSET = 10_000  # Redis Cluster's bus port is the client port + 10000
PORT_ATTEMPTS = 3  # start on freshly picked ports at most this often


def send_command(host: str, port: int, password: str | None, *args: str) -> str | None:
    """One command to one node, its reply as text; None when the node does not answer."""
    client = redis.Redis(
        host=host, port=port, password=password, socket_timeout=2, decode_responses=True
    )
    try:
        return str(client.execute_command(*args))  # type: ignore[no-untyped-call]
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _slot_replicas(host: str, port: int, password: str | None) -> int:
    """How many replicas CLUSTER SLOTS lists (over every slot range)."""
    client = redis.Redis(host=host, port=port, password=password, socket_timeout=2)
    try:
        ranges = client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
    except (redis.RedisError, OSError):
        return -1
    finally:
        client.close()
    if isinstance(ranges, dict):
        return sum(len(v.get("replicas", [])) for v in ranges.values())
    return sum(max(0, len(r) - 3) for r in ranges)


def cluster_ports(count: int, *, first: int | None = None, host: str = "127.0.0.1") -> list[int]:
    """``count`` ports whose cluster bus ports (+10000) are free too: ``first``,
    ``first+1``... when all are free, else ports the kernel picks."""
    if first is not None:
        wanted = list(range(first, first + count))
        if all(not port_in_use(p, host) and not port_in_use(p + BUS_OFFSET, host) for p in wanted):
            return wanted
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(host)
        if port + BUS_OFFSET < 65536 and port not in ports and not port_in_use(port + BUS_OFFSET):
            ports.append(port)
    return ports


@dataclass
class RedisCluster:
    """Six redis-servers in ``data_dir/node-<n>`` forming one cluster (cluster-enabled, each
    with its own nodes.conf, so a restart on the same ports rejoins the same cluster)."""

    data_dir: Path
    ports: list[int] = field(default_factory=list)
    host: str = "127.0.0.1"
    password: str | None = None
    primaries: int = PRIMARIES
    replicas_per_primary: int = REPLICAS_PER_PRIMARY
    node_timeout_ms: int = NODE_TIMEOUT_MS
    extra_args: list[str] = field(default_factory=list)
    # ports picked here (not given): another set may be picked if one is taken meanwhile
    _chosen_ports: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        size = self.primaries * (1 + self.replicas_per_primary)
        if not self.ports:
            self.ports = cluster_ports(size, host=self.host)
            self._chosen_ports = True
        if len(self.ports) != size:
            raise ConfigError(f"a cluster of {size} nodes needs {size} ports, got {self.ports}")

    @property
    def nodes(self) -> list[RedisServer]:
        args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            # a replica is listed by CLUSTER SLOTS (and so known to clients) once its
            # replication offset moved: an idle primary's pings move it, every second here
            "--repl-ping-replica-period",
            "1",
            *(["--masterauth", self.password] if self.password else []),
            *self.extra_args,
        ]
        return [
            RedisServer(
                self.data_dir / f"node-{i + 1}",
                port=port,
                host=self.host,
                password=self.password,
                extra_args=list(args),
            )
            for i, port in enumerate(self.ports)
        ]

    @property
    def seeds(self) -> list[str]:
        return [f"{self.host}:{port}" for port in self.ports]

    @property
    def url(self) -> str:
        """The URL to give echoes-ops: the first node as seed, ``?cluster=true``."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.ports[0]}/0?cluster=true"

    def start(self, timeout: float = 30.0) -> None:
        """Start every node not running; create the cluster if its nodes have never met;
        return once every node says ``cluster_state:ok`` and knows every other node."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._forget_other_ports()
            try:
                for node in self.nodes:
                    node.start()
                break
            except ConfigError as exc:
                # a port (or its bus port) free when picked was taken since, e.g. as the
                # local end of some connection: ports we picked can be picked again
                if not self._chosen_ports or "Failed listening" not in str(exc):
                    raise
                if attempt == PORT_ATTEMPTS:
                    raise
                self.stop()
                self.ports = cluster_ports(len(self.ports), host=self.host)
        if not self._created():
            self._create()
        self.wait_ok(timeout)

    def _forget_other_ports(self) -> None:
        """A cluster met on other ports is gone: its nodes.conf files would make these nodes
        look for peers that are not there. Start afresh then (the data is not kept anyway)."""
        record = self.data_dir / "ports"
        wanted = ",".join(str(p) for p in self.ports)
        try:
            previous = record.read_text(encoding="utf-8").strip()
        except OSError:
            previous = None
        if previous != wanted:
            for conf in self.data_dir.glob("node-*/nodes.conf"):
                conf.unlink()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            record.write_text(wanted, encoding="utf-8")

    def _created(self) -> bool:
        """Slots are assigned (the cluster exists: a restart rejoins it)."""
        info = self.cluster_info(self.nodes[0])
        return int(info.get("cluster_slots_assigned", "0")) > 0

    def _create(self) -> None:
        args = [
            find_redis_cli(),
            *(["-a", self.password, "--no-auth-warning"] if self.password else []),
            "--cluster",
            "create",
            *self.seeds,
            "--cluster-replicas",
            str(self.replicas_per_primary),
            "--cluster-yes",
        ]
        proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
        if proc.returncode != 0:
            text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            errors = [line for line in lines if "ERR" in line] or lines
            raise ConfigError(
                f"redis-cli --cluster create failed: {errors[-1] if errors else 'no output'}"
            )

    def cluster_info(self, node: RedisServer) -> dict[str, str]:
        reply = send_command(self.host, node.port, self.password, "CLUSTER", "INFO")
        info: dict[str, str] = {}
        for line in (reply or "").splitlines():
            name, sep, value = line.partition(":")
            if sep:
                info[name.strip()] = value.strip()
        return info

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Every node: cluster_state ok, every node known, every replica's link up."""
        size = len(self.ports)
        deadline = time.monotonic() + timeout
        while True:
            pending = self._not_ready(size)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise UnreachableError(
                    f"the local cluster did not settle within {timeout:.0f}s: {pending}",
                    hint=f"see the redis.log files under {self.data_dir}",
                )
            time.sleep(0.05)

    def _not_ready(self, size: int) -> str | None:
        for node in self.nodes:
            info = self.cluster_info(node)
            if info.get("cluster_state") != "ok":
                return f"node {node.port}: cluster_state {info.get('cluster_state', 'unknown')}"
            if int(info.get("cluster_known_nodes", "0")) != size:
                return f"node {node.port}: knows {info.get('cluster_known_nodes', '?')} nodes"
            seen = send_command(self.host, node.port, self.password, "CLUSTER", "NODES") or ""
            replicas = sum(1 for line in seen.splitlines() if "slave" in line.split(" ")[2])
            if replicas != size - self.primaries:
                return f"node {node.port}: sees {replicas} replicas"
            slots = _slot_replicas(self.host, node.port, self.password)
            if slots != self.replicas_per_primary * self.primaries:
                return f"node {node.port}: CLUSTER SLOTS lists {slots} replicas"
            replication = send_command(self.host, node.port, self.password, "INFO", "replication")
            if "role:slave" in (replication or "") and "master_link_status:up" not in (
                replication or ""
            ):
                return f"node {node.port}: replica link not up"
        return None

    def running(self) -> list[bool]:
        return [node.running() for node in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def node(self, port: int) -> RedisServer:
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(port)
