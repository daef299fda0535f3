"""The local services a newcomer runs on: a private Redis and PostgreSQL with demo data.

State (ports, folders) is kept in ``<root>/state.json`` so ``down``, ``status`` and ``env``
find what ``up`` started without being told again. On a shared machine another checkout may
hold the default ports: ``up`` then takes free ones (unless a port was given explicitly, which
is used or refused, naming the process that holds it) and records what it took.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from echoes_ops.errors import ConfigError
from echoes_ops.local.demo import DemoSummary, seed_demo
from echoes_ops.local.ports import free_port, port_in_use, who_listens
from echoes_ops.local.postgres_server import PostgresServer
from echoes_ops.local.redis_cluster import BUS_OFFSET, RedisCluster, cluster_ports
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.operations.migrations import migrate

DEFAULT_ROOT = ".echoes-local"
DEFAULT_REDIS_PORT = 6390
DEFAULT_PG_PORT = 5490
DEFAULT_CLUSTER_PORT = 7390  # the local cluster's first node (7390-7395, buses 17390-17395)
STATE_FILE = "state.json"
_AUTO_ATTEMPTS = 3  # a free port picked can be taken before our server binds it: pick again

RUNNING = "running"
STOPPED = "stopped"
PORT_TAKEN = "port in use by another process"


@dataclass
class LocalState:
    root: str
    redis_port: int
    redis_running: bool
    redis_url: str
    postgres: bool
    pg_port: int | None = None
    pg_running: bool = False
    database_url: str | None = None
    pg_data_dir: str | None = None
    demo_characters: int | None = None
    demo_inventory_rows: int | None = None
    # running, stopped, or "port in use by another process" (then *_port_user names it when
    # /proc tells: pid, name, cwd)
    redis_status: str = STOPPED
    redis_port_user: dict[str, object] | None = None
    pg_status: str | None = None
    pg_port_user: dict[str, object] | None = None
    notes: list[str] = field(default_factory=list)  # e.g. a configured port that was taken
    # local up --cluster: Redis is a 3-primary / 3-replica cluster; one entry per node
    # (port, status), and redis_url names the first node as seed with ?cluster=true
    cluster: bool = False
    cluster_nodes: list[dict[str, object]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def env(self) -> dict[str, str]:
        values = {"REDIS_URL": self.redis_url}
        if self.cluster:
            # every node as a seed: the client still finds the cluster when the first is down
            values["REDIS_CLUSTER_NODES"] = ",".join(
                f"127.0.0.1:{node['port']}" for node in self.cluster_nodes
            )
        if self.database_url:
            values["DATABASE_URL"] = self.database_url
        return values

    def env_lines(self) -> list[str]:
        return [f"export {name}={value}" for name, value in self.env().items()]


@dataclass(frozen=True)
class _PortOption:
    service: str
    flag: str
    env: str


_REDIS_OPTION = _PortOption("Redis", "--redis-port", "ECHOES_OPS_LOCAL_REDIS_PORT")
_PG_OPTION = _PortOption("PostgreSQL", "--pg-port", "ECHOES_OPS_LOCAL_PG_PORT")


def _service_status(running: bool, port: int) -> tuple[str, dict[str, object] | None]:
    if running:
        return RUNNING, None
    if port_in_use(port):
        user = who_listens(port)
        return PORT_TAKEN, user.as_dict() if user is not None else None
    return STOPPED, None


def _holder(port: int) -> str:
    user = who_listens(port)
    return user.describe() if user is not None else "another process"


@dataclass
class LocalStack:
    """The local services in ``root``. A port given explicitly (flag or environment) is used
    or refused; otherwise the port recorded in the state file (or the default) is taken when
    free, and a free one when not, and the choice is recorded."""

    root: Path
    redis_port: int = DEFAULT_REDIS_PORT
    pg_port: int = DEFAULT_PG_PORT
    postgres: bool = True
    redis_explicit: bool = False
    pg_explicit: bool = False
    cluster: bool = False
    cluster_port_list: list[int] = field(default_factory=list)

    @classmethod
    def load(
        cls,
        root: Path,
        *,
        redis_port: int | None = None,
        pg_port: int | None = None,
        postgres: bool | None = None,
        cluster: bool | None = None,
    ) -> LocalStack:
        """The stack in ``root``: ports from flags, else from its state file, else defaults."""
        saved: dict[str, Any] = {}
        state = root / STATE_FILE
        if state.exists():
            try:
                saved = json.loads(state.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise ConfigError(f"{state} is unreadable; remove it and run 'local up'") from None
        return cls(
            root=root,
            redis_port=redis_port or int(saved.get("redis_port", DEFAULT_REDIS_PORT)),
            pg_port=pg_port or int(saved.get("pg_port") or DEFAULT_PG_PORT),
            postgres=postgres if postgres is not None else bool(saved.get("postgres", True)),
            redis_explicit=redis_port is not None,
            pg_explicit=pg_port is not None,
            cluster=cluster if cluster is not None else bool(saved.get("cluster", False)),
            cluster_port_list=[int(p) for p in saved.get("cluster_ports", [])],
        )

    def redis(self) -> RedisServer:
        return RedisServer(self.root / "redis", port=self.redis_port)

    def redis_cluster(self) -> RedisCluster | None:
        """The local cluster (None until its ports were chosen by ``up --cluster``)."""
        if not self.cluster_port_list:
            return None
        return RedisCluster(self.root / "cluster", ports=list(self.cluster_port_list))

    def pg(self) -> PostgresServer:
        return PostgresServer(self.root / "postgres", port=self.pg_port)

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = {
            "redis_port": self.redis_port,
            "pg_port": self.pg_port,
            "postgres": self.postgres,
            "cluster": self.cluster,
            "cluster_ports": self.cluster_port_list,
        }
        tmp = self.root / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self.root / STATE_FILE)

    def _recorded(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.root / STATE_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return data

    def _taken(self, option: _PortOption, port: int) -> ConfigError:
        return ConfigError(
            f"{option.service} port {port} ({option.flag} / {option.env}) is in use by "
            f"{_holder(port)}",
            hint=f"give another port, or unset {option.env} and leave out {option.flag} "
            "to have a free one picked",
        )

    def _check_move(self, option: _PortOption, running_on: int | None, wanted: int) -> None:
        if running_on is not None and running_on != wanted:
            raise ConfigError(
                f"the local {option.service} already runs on port {running_on}, not {wanted}",
                hint=f"stop it first (echoes-ops local down --dir {self.root}) to move it",
            )

    async def up(
        self, *, location_ids: list[str], item_ids: list[str], characters: int = 300
    ) -> LocalState:
        """Start what is not running, seed the demo characters, and report."""
        notes: list[str] = []
        if self.cluster:
            self._start_cluster(notes)
        else:
            self._start_redis(notes)
        self._save()
        summary: DemoSummary | None = None
        if self.postgres:
            pg = self._start_pg(notes)
            self._save()
            summary = await seed_demo(
                pg.url, location_ids=location_ids, item_ids=item_ids, characters=characters
            )
            await migrate(pg.url)  # our own tables (flags, audit)
        state = self.status()
        state.notes = notes
        if summary is not None:
            state.demo_characters = summary.characters
            state.demo_inventory_rows = summary.inventory_rows
        return state

    def _start_redis(self, notes: list[str]) -> None:
        if self.redis_explicit:
            recorded = self._recorded().get("redis_port")
            if isinstance(recorded, int) and recorded != self.redis_port:
                old = RedisServer(self.root / "redis", port=recorded)
                self._check_move(
                    _REDIS_OPTION, recorded if old.running() else None, self.redis_port
                )
        port = self.redis_port
        attempts = 1 if self.redis_explicit else _AUTO_ATTEMPTS
        for attempt in range(attempts):
            server = RedisServer(self.root / "redis", port=port)
            if server.running():
                break
            if port_in_use(port):
                if self.redis_explicit:
                    raise self._taken(_REDIS_OPTION, port)
                chosen = free_port()
                notes.append(f"Redis port {port} is in use by {_holder(port)}: took {chosen}")
                port = chosen
                server = RedisServer(self.root / "redis", port=port)
            try:
                server.start()
                break
            except ConfigError:
                # another process bound the port between our check and the server's bind
                if self.redis_explicit or attempt + 1 == attempts or not port_in_use(port):
                    raise
                chosen = free_port()
                notes.append(f"Redis port {port} was taken while starting: took {chosen}")
                port = chosen
        self.redis_port = port

    def _start_cluster(self, notes: list[str]) -> None:
        """The six nodes on the ports recorded (or 7390-7395, or free ones), created as one
        cluster the first time, rejoining it after a ``down``."""
        current = self.redis_cluster()
        if current is not None and all(current.running()):
            current.wait_ok()
            return
        if current is not None and any(current.running()) and self._restart_missing(current, notes):
            return
        ports = list(self.cluster_port_list)
        if not ports or any(port_in_use(p) for p in ports):
            ports = cluster_ports(6, first=DEFAULT_CLUSTER_PORT)
            if ports[0] != DEFAULT_CLUSTER_PORT and not self.cluster_port_list:
                notes.append(
                    f"cluster ports {DEFAULT_CLUSTER_PORT}-{DEFAULT_CLUSTER_PORT + 5} "
                    f"(or their bus ports) are in use: took {ports}"
                )
        self.cluster_port_list = ports
        self._save()  # recorded before starting: down finds whatever did start
        cluster = self.redis_cluster()
        assert cluster is not None
        cluster.start()

    def _restart_missing(self, cluster: RedisCluster, notes: list[str]) -> bool:
        """Some nodes of the recorded cluster run, others not (killed, crashed): start the
        missing ones on their recorded ports, where they rejoin it (True). If another
        process holds a missing node's port, the cluster cannot come back whole there: stop
        the nodes still running, say so, and return False (a new cluster is made)."""
        nodes = cluster.nodes
        missing = [node for node, up in zip(nodes, cluster.running(), strict=True) if not up]
        taken = [
            port
            for node in missing
            for port in (node.port, node.port + BUS_OFFSET)
            if port_in_use(port)
        ]
        if taken:
            running = len(nodes) - len(missing)
            cluster.stop()
            notes.append(
                f"cluster node port(s) {', '.join(map(str, taken))} of the recorded cluster "
                f"are in use by {_holder(taken[0])}: stopped its {running} running node(s) "
                "and started a new cluster (the old cluster's data is not kept)"
            )
            return False
        cluster.start()
        notes.append(
            f"{len(missing)} of the cluster's {len(nodes)} nodes were down: restarted them on "
            f"their recorded ports ({', '.join(str(n.port) for n in missing)}), where they "
            "rejoined the running ones"
        )
        return True

    def _start_pg(self, notes: list[str]) -> PostgresServer:
        pg = self.pg()
        running_on = pg.running_port()
        if running_on is not None:  # our postmaster is up: keep it where it is
            if self.pg_explicit:
                self._check_move(_PG_OPTION, running_on, self.pg_port)
            pg.start()
            self.pg_port = pg.port
            return pg
        if port_in_use(self.pg_port):
            if self.pg_explicit:
                raise self._taken(_PG_OPTION, self.pg_port)
            holder = _holder(self.pg_port)
            pg = PostgresServer(self.root / "postgres")  # a free port, picked again if taken
            notes.append(f"PostgreSQL port {self.pg_port} is in use by {holder}: took {pg.port}")
        try:
            pg.start()
        except ConfigError:
            if self.pg_explicit or pg.port != self.pg_port or not port_in_use(pg.port):
                raise
            pg = PostgresServer(self.root / "postgres")
            notes.append(f"PostgreSQL port {self.pg_port} was taken while starting: took {pg.port}")
            pg.start()
        self.pg_port = pg.port
        return pg

    def down(self) -> LocalState:
        self.redis().stop()
        cluster = self.redis_cluster()
        if cluster is not None:
            cluster.stop()
        if self.postgres:
            self.pg().stop()
        return self.status()

    def status(self) -> LocalState:
        if self.cluster:
            state = self._cluster_status()
        else:
            redis = self.redis()
            running = redis.running()
            redis_status, redis_user = _service_status(running, self.redis_port)
            state = LocalState(
                root=str(self.root),
                redis_port=self.redis_port,
                redis_running=running,
                redis_url=redis.url,
                postgres=self.postgres,
                redis_status=redis_status,
                redis_port_user=redis_user,
            )
        if self.postgres:
            pg = self.pg()
            state.pg_port = self.pg_port
            state.pg_running = pg.running_port() == self.pg_port and pg.running()
            state.pg_status, state.pg_port_user = _service_status(state.pg_running, self.pg_port)
            state.database_url = pg.url
            state.pg_data_dir = str(pg.actual_data_dir)
        return state

    def _cluster_status(self) -> LocalState:
        cluster = self.redis_cluster()
        nodes: list[dict[str, object]] = []
        if cluster is not None:
            for node in cluster.nodes:
                status, user = _service_status(node.running(), node.port)
                nodes.append({"port": node.port, "status": status, "port_user": user})
        up = sum(1 for n in nodes if n["status"] == RUNNING)
        if nodes and up == len(nodes):
            summary = RUNNING
        elif up:
            summary = f"{up} of {len(nodes)} nodes running"
        else:
            summary = STOPPED
        return LocalState(
            root=str(self.root),
            redis_port=cluster.ports[0] if cluster is not None else 0,
            redis_running=bool(nodes) and up == len(nodes),
            redis_url=cluster.url if cluster is not None else "",
            postgres=self.postgres,
            redis_status=summary,
            cluster=True,
            cluster_nodes=nodes,
        )
