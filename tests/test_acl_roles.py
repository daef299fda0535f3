"""``acl roles``: each role's ACL rules loaded into a real redis-server, and the tool's whole
command set run as that user. What the role allows works (the exit code the unrestricted
default user gets); what it does not is refused with the clean permission line (exit 6) and
the keyspace is left exactly as it was (the audit stream aside: a refused attempt is
recorded where the role may record it). No role may run FLUSHALL, KEYS, CONFIG, DEBUG."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from echoes_ops.client.connect import open_redis
from echoes_ops.client.errors import translate
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.operations.roles import FORBIDDEN, ROLES
from echoes_ops.runtime.tier import Tier
from tests.acl_tier import AclTier, Admin, cluster_tier, standalone_tier
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA, TOPOLOGIES
from tests.runtime_helpers import session

pytestmark = pytest.mark.timeout(600)

ROLE_NAMES = list(ROLES)
COLUMNS = ["default", *ROLE_NAMES]  # default: the unrestricted user, the baseline
LOCATION = "bunker_entrance"
HELD_TOKEN = "operator.carol#0123456789abcdef01234567"
FOREIGN_KEY = "otherapp:config"  # a key of another application on the same server
DROPPED_ITEM = "canned_beans"


BOTH = pytest.mark.parametrize("acl_tier", TOPOLOGIES, indirect=True)


@pytest.fixture(scope="module")
def acl_tier(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AclTier]:
    """A tier with one ACL user per role (ACL SETUSER lines exactly as ``acl roles`` prints
    them, then a password): a redis-server of this module's own, or (tests marked BOTH,
    parametrized ``cluster``) every node of the session's cluster."""
    if getattr(request, "param", "standalone") == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        if not all(cluster.running()):
            cluster.start()
        cluster.wait_ok()
        tier = cluster_tier(cluster)
        tier.add_role_users()
        yield tier
        tier.drop_role_users()
        return
    # DEBUG enabled, so that only the ACL stands between a role and it
    server = RedisServer(
        tmp_path_factory.mktemp("acl-redis"), extra_args=["--enable-debug-command", "yes"]
    )
    server.start()
    tier = standalone_tier(server)
    tier.add_role_users()
    yield tier
    server.stop()


def _seed(url: str) -> None:
    """The tier as a test world: static data, live and dead workers' players, drift, an
    operator hold, a worker's lock, and another application's key."""
    assert cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env={"REDIS_URL": url}).code == 0

    async def players() -> None:
        async with open_redis(Settings.from_dsn(url).redis_target()) as r:
            for worker, cids in (("sim-1", (1, 2, 3)), ("sim-2", (4, 5))):
                tier = Tier(r, worker)
                for cid in cids:
                    await tier.connect_player(session(cid, LOCATION))
            await r.hset(keys.worker_meta_key("sim-1"), mapping={"heartbeat": f"{time.time()}"})
            await r.expire(keys.worker_meta_key("sim-1"), 3600)
            await r.rpush(keys.inventory_key(1), '{"item_id": "bandage", "quantity": 1}')
            await r.expire(keys.inventory_key(1), 600)
            await r.sadd(keys.presence_key(LOCATION), 99)  # an orphan member: drift
            await r.set(keys.lock_key("spawn_manager"), "sim-1#00ff", px=3_600_000)
            await r.set(keys.lock_key("maint"), HELD_TOKEN, px=3_600_000)
            await r.hset(
                keys.lock_info_key("maint"),
                mapping={"reason": "test", "operator": "carol", "value": HELD_TOKEN},
            )
            await r.set(FOREIGN_KEY, "not the tier's")
            await r.delete(keys.item_def_key(DROPPED_ITEM))  # static drift: preload has work

    asyncio.run(players())


def _dump(client: Admin) -> dict[bytes, object]:
    """Every key's type, contents and whether it has a TTL, the audit stream aside (DUMP
    bytes would differ after a mere read: a hash's order changes when Redis rehashes)."""
    names = [k for k in client.scan_iter(count=1000) if k != keys.AUDIT_STREAM_KEY.encode()]
    kinds = client.pipeline(transaction=False)
    for name in names:
        kinds.type(name)
    pipe = client.pipeline(transaction=False)
    read = {
        b"hash": lambda n: pipe.hgetall(n),
        b"set": lambda n: pipe.smembers(n),
        b"list": lambda n: pipe.lrange(n, 0, -1),
        b"string": lambda n: pipe.get(n),
        b"stream": lambda n: pipe.xrange(n),
        b"zset": lambda n: pipe.zrange(n, 0, -1, withscores=True),
    }
    types = kinds.execute()
    for name, kind in zip(names, types, strict=True):
        read[kind](name)
        pipe.ttl(name)
    replies = pipe.execute()
    return {
        name: (kind, replies[2 * i], replies[2 * i + 1] > 0)
        for i, (name, kind) in enumerate(zip(names, types, strict=True))
    }


@pytest.fixture(scope="module")
def snapshot(acl_tier: AclTier) -> dict[bytes, tuple[bytes, int]]:
    admin = acl_tier.client()
    admin.flushall()
    _seed(acl_tier.url_for("default"))
    names = list(admin.scan_iter(count=1000))
    pipe = admin.pipeline(transaction=False)
    for name in names:
        pipe.dump(name)
        pipe.pttl(name)
    replies = pipe.execute()
    admin.close()
    return {name: (replies[2 * i], replies[2 * i + 1]) for i, name in enumerate(names)}


@pytest.fixture
def world(acl_tier: AclTier, snapshot) -> Iterator[Admin]:
    """The seeded keyspace, restored for each test (RESTORE of the snapshot)."""
    admin = acl_tier.client()
    admin.flushall()
    pipe = admin.pipeline(transaction=False)
    for name, (value, pttl) in snapshot.items():
        pipe.restore(name, max(pttl, 0), value)
    pipe.execute()
    yield admin
    admin.close()


@dataclass(frozen=True)
class Cell:
    """One command of the tool and which roles may run it."""

    label: str
    args: tuple[str, ...]
    allowed: frozenset[str]
    ok: tuple[int, ...] = (0,)  # exit codes of an allowed run
    writes: bool = False
    # refusals an allowed run meets by design and reports as such (ACL LOG objects):
    # doctor's CONFIG GET / ACL GETUSER checks are "unknown", stats cannot measure another
    # application's keys
    tolerated: frozenset[str] = frozenset()
    # on a cluster too: the cluster health's CONFIG GET of cluster-require-full-coverage
    # and cluster-node-timeout (shown as not readable)
    cluster_tolerated: frozenset[str] = frozenset()
    # a refused run on a cluster may leave this much changed, as docs/design.md's
    # guarantees per topology allow (cache invalidate clears the content hash first)
    cluster_cut_off: bool = False

    def tolerates(self, topology: str) -> frozenset[str]:
        return self.tolerated | (self.cluster_tolerated if topology == "cluster" else frozenset())


def cell(
    label: str,
    *args: str,
    allow: str,
    ok: tuple[int, ...] = (0,),
    writes: bool = False,
    tolerated: tuple[str, ...] = (),
    cluster_tolerated: tuple[str, ...] = (),
    cluster_cut_off: bool = False,
) -> Cell:
    roles = frozenset(allow.split()) | {"default"}
    assert roles <= set(COLUMNS), roles
    return Cell(
        label,
        args,
        roles,
        ok,
        writes,
        frozenset(tolerated),
        frozenset(cluster_tolerated),
        cluster_cut_off,
    )


INSPECT = "reader operator"
CONFIG_GET = "config|get"
OPERATE = "operator"
# The matrix as the tests verify it (docs/team.md shows the same table).
MATRIX: tuple[Cell, ...] = (
    cell("status", "status", allow=INSPECT, cluster_tolerated=(CONFIG_GET,)),
    cell(
        "cache status",
        *("cache", "status", "--gamedata", str(BUNDLED_GAMEDATA)),
        allow=f"{INSPECT} warmup worker",
        ok=(1,),  # the dropped item
    ),
    cell("sessions list", "sessions", "list", allow=f"{INSPECT} worker"),
    cell("sessions show", "sessions", "show", "1", allow=INSPECT),
    cell("locations list", "locations", "list", allow=INSPECT),
    cell("locations show", "locations", "show", LOCATION, allow=INSPECT),
    cell("workers list", "workers", "list", allow=INSPECT),
    cell("locks list", "locks", "list", allow=INSPECT),
    cell("locks show", "locks", "show", "maint", allow=INSPECT),
    cell("reconcile (dry run)", "reconcile", allow=INSPECT, ok=(1,)),
    cell("audit", "audit", allow=INSPECT),
    cell(
        "stats", "stats", allow=INSPECT, tolerated=(FOREIGN_KEY,), cluster_tolerated=(CONFIG_GET,)
    ),
    cell(
        "doctor",
        *("doctor", "--gamedata", str(BUNDLED_GAMEDATA)),
        allow=INSPECT,
        ok=(0, 1),
        tolerated=("config|get", "acl|getuser"),
    ),
    cell(
        "dashboard --read-only --json",
        *("dashboard", "--json", "--read-only"),
        allow=INSPECT,
        cluster_tolerated=(CONFIG_GET,),
    ),
    cell("tail", "tail", "--timeout", "0.3", allow=f"{INSPECT} worker"),
    cell(
        "tail otherapp:events (not a tier channel)",
        "tail",
        "otherapp:events",
        "--timeout",
        "0.3",
        allow="",
    ),
    cell("broadcast global", "broadcast", "global", "hello", "--yes", allow=OPERATE, writes=True),
    cell("broadcast location", "broadcast", "location", LOCATION, "hi", allow=OPERATE, writes=True),
    cell("broadcast player", "broadcast", "player", "1", "hi", allow=OPERATE, writes=True),
    cell(
        "locks hold",
        *("locks", "hold", "event", "--ttl", "60", "--reason", "test"),
        allow=OPERATE,
        writes=True,
    ),
    cell(
        "locks extend --token",
        *("locks", "extend", "maint", "--ttl", "120", "--token", HELD_TOKEN),
        allow=OPERATE,
        writes=True,
    ),
    cell(
        "locks release --token",
        *("locks", "release", "maint", "--token", HELD_TOKEN),
        allow=OPERATE,
        writes=True,
    ),
    cell(
        "locks release --force",
        *("locks", "release", "spawn_manager", "--force", "--yes"),
        allow=OPERATE,
        writes=True,
    ),
    cell("sessions kick", "sessions", "kick", "1", "--yes", allow=OPERATE, writes=True),
    cell("reconcile --fix", "reconcile", "--fix", "--yes", allow=OPERATE, writes=True),
    cell("workers cleanup", "workers", "cleanup", "sim-2", "--yes", allow=OPERATE, writes=True),
    cell(
        "cache invalidate",
        *("cache", "invalidate", "location", LOCATION, "--yes"),
        allow=OPERATE,
        writes=True,
        cluster_cut_off=True,
    ),
    cell(
        "preload --force",
        *("preload", "--force", "--gamedata", str(BUNDLED_GAMEDATA)),
        allow=f"{OPERATE} warmup",
        writes=True,
        cluster_tolerated=("time",),  # warmup has no TIME: the online steps do without
    ),
    cell(
        "warmup --what static",
        *("warmup", "--what", "static", "--gamedata", str(BUNDLED_GAMEDATA)),
        allow=f"{OPERATE} warmup",
        writes=True,
        cluster_tolerated=("time",),  # warmup has no TIME: the online steps do without
    ),
)
CASES = [(c, role) for c in MATRIX for role in COLUMNS]


@BOTH
@pytest.mark.parametrize(("entry", "role"), CASES, ids=[f"{c.label}-{r}" for c, r in CASES])
def test_role_matrix(acl_tier: AclTier, world, entry: Cell, role: str):
    before = _dump(world)
    stream_before = world.xlen(keys.AUDIT_STREAM_KEY)
    acl_tier.reset_log()
    out = cli(*entry.args, env={"REDIS_URL": acl_tier.url_for(role)})
    after = _dump(world)
    refused = acl_tier.refusals(role)
    if role in entry.allowed:
        assert out.code in entry.ok, (out.code, out.stderr)
        assert "permission" not in out.stderr.lower()
        assert "may not" not in out.stderr
        # nothing the run needed was refused: its output is whole, not silently partial
        assert refused <= entry.tolerates(acl_tier.topology), refused
        if entry.writes:
            assert after != before or world.xlen(keys.AUDIT_STREAM_KEY) > stream_before
        return
    assert out.code == ExitCode.PERMISSION, (out.code, out.stdout, out.stderr)
    line = out.one_error_line()
    assert "this ACL user may not " in line, line
    assert refused, "refused, but the server logged no ACL denial"
    if acl_tier.cluster and entry.cluster_cut_off:
        before, after = _without_content_hash(before), _without_content_hash(after)
    assert after == before, "a refused command changed the keyspace"


def _without_content_hash(dump: dict[bytes, object]) -> dict[bytes, object]:
    """``dump`` with the version record's content hash left out (cleared first on a cluster
    by a run that may be cut off: the next preload then checks every key)."""
    version = keys.GAMEDATA_VERSION_KEY.encode()
    kind, fields, has_ttl = dump[version]  # type: ignore[misc]
    return {
        **dump,
        version: (kind, {k: v for k, v in fields.items() if k != b"content_hash"}, has_ttl),
    }


FORBIDDEN_CALLS = (
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("KEYS", "*"),
    ("CONFIG", "SET", "maxmemory-policy", "noeviction"),
    ("CONFIG", "GET", "requirepass"),
    ("DEBUG", "SLEEP", "0"),
    ("SHUTDOWN", "NOSAVE"),
    ("ACL", "SETUSER", "mallory", "on", "nopass", "+@all", "~*"),
    ("ACL", "GETUSER", "default"),
    ("SCRIPT", "FLUSH"),
    ("CLIENT", "KILL", "ID", "1"),
)


@pytest.mark.parametrize("role", ROLE_NAMES)
@pytest.mark.parametrize("call", FORBIDDEN_CALLS, ids=[" ".join(c[:2]) for c in FORBIDDEN_CALLS])
def test_no_role_may_run_admin_commands(acl_tier: AclTier, world, role, call):
    before = _dump(world)
    client = acl_tier.client(role, decode=True)
    with pytest.raises(redis.exceptions.NoPermissionError) as caught:
        client.execute_command(*call)
    client.close()
    error = translate(caught.value, "test")
    assert error.exit_code == ExitCode.PERMISSION
    assert str(error).startswith("Redis at test: this ACL user may not ")
    assert _dump(world) == before


def test_forbidden_commands_are_granted_to_no_role():
    for role in ROLES.values():
        assert not set(FORBIDDEN) & set(role.commands), role.name
        for rule in role.rules():
            assert rule not in ("allcommands", "+@all", "allkeys", "~*", "allchannels", "&*")


@BOTH
@pytest.mark.parametrize("role", ROLE_NAMES)
def test_no_role_reaches_another_applications_keys(acl_tier: AclTier, world, role):
    client = acl_tier.client(role, decode=True)
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.get(FOREIGN_KEY)
    client.close()


def test_key_patterns_come_from_the_contract():
    """Every pattern a role names is one of the contract's patterns or keys."""
    contract = {
        value for name, value in vars(keys).items() if name.isupper() and isinstance(value, str)
    } | {
        keys.lock_key("echoes-ops.warmup"),
        keys.lock_key("echoes-ops.preload"),
        keys.lock_info_key("echoes-ops.preload"),  # who holds preload's lock (host, pid)
    }
    contract.add(f"{keys.NAMESPACE_PREFIX}*")
    for role in ROLES.values():
        assert set(role.keys) | set(role.read_keys) <= contract, role.name


@BOTH
def test_worker_runs_the_reference_runtime(acl_tier: AclTier, world):
    """simulate (the reference workers: sessions, presence, moves, leases, pub/sub) as the
    worker user, and nothing left behind."""
    acl_tier.reset_log()
    out = cli(
        *("simulate", "--workers", "1", "--players", "10", "--duration", "1"),
        *("--gamedata", str(BUNDLED_GAMEDATA), "--yes", "--json"),
        env={"REDIS_URL": acl_tier.url_for("worker")},
    )
    assert (out.code, acl_tier.refusals("worker")) == (0, set()), out.stderr
    assert '"received"' in out.stdout


@BOTH
def test_worker_may_not_write_static_data_or_the_flags_mirror(acl_tier: AclTier, world):
    client = acl_tier.client("worker", decode=True)
    for call in (
        ("HSET", keys.location_cache_key(LOCATION), "name", "x"),
        ("HSET", keys.FLAGS_KEY, "REDIS_ENABLED", "false"),
        ("XADD", keys.AUDIT_STREAM_KEY, "*", "operator", "mallory"),
        ("DEL", keys.lock_info_key("maint")),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*call)
    assert client.hgetall(keys.location_cache_key(LOCATION))  # but it reads the cache
    client.close()


def test_aclfile_lines_load_into_a_server(tmp_path: Path):
    """The ACL file snippet, as printed, is a valid ACL file (the server starts with it)
    and gives the same rules as ACL SETUSER."""
    out = cli("acl", "roles", "--format", "aclfile")
    assert out.code == 0
    acl = tmp_path / "users.acl"
    acl.write_text(out.stdout)
    server = RedisServer(tmp_path / "srv", extra_args=["--aclfile", str(acl)])
    server.start()
    try:
        admin = redis.Redis.from_url(server.url, decode_responses=True)
        users = admin.execute_command("ACL", "LIST")
        for role in ROLES.values():
            line = next(u for u in users if u.startswith(f"user {role.default_user()} "))
            assert " on " in f" {line} "
            assert "nopass" not in line
            # no password in the file: nobody can log in as it until one is added
            with pytest.raises(redis.exceptions.AuthenticationError):
                redis.Redis(port=server.port, username=role.default_user(), password="").ping()
        admin.close()
    finally:
        server.stop()


def warmup_tolerated(tier: AclTier) -> set[str]:
    """The refusal the warmup role meets by design on a cluster: its preload runs online
    (per slot) and the step script's TIME is refused (the steps are then sized by their
    round trips; docs/team.md)."""
    return {"time"} if tier.cluster else set()


@BOTH
@pytest.mark.postgres
def test_warmup_role_warms_sessions_and_inventories(acl_tier: AclTier, world, database_url):
    """The cron account's whole job (sessions, inventories, static) with nothing refused."""
    from tests.test_warmup import WINDOW, seed

    seed(database_url, 50)
    assert cli("db", "migrate", env={"DATABASE_URL": database_url}).code == 0
    acl_tier.reset_log()
    out = cli(
        *("warmup", "--active-within", WINDOW, "--gamedata", str(BUNDLED_GAMEDATA), "--json"),
        env={"REDIS_URL": acl_tier.url_for("warmup"), "DATABASE_URL": database_url},
    )
    assert (out.code, acl_tier.refusals("warmup")) == (0, warmup_tolerated(acl_tier)), out.stderr
    assert world.exists(keys.item_def_key(DROPPED_ITEM))  # static re-preloaded
    assert len(list(world.scan_iter(keys.SESSION_PATTERN))) > 5
    assert len(list(world.scan_iter(keys.INVENTORY_PATTERN))) > 1


def test_operator_may_do_everything_warmup_may():
    operator, warmup = ROLES["operator"], ROLES["warmup"]
    assert set(warmup.commands) <= set(operator.commands)
    assert all(any(_covers(o, k) for o in operator.keys) for k in warmup.keys)


def _covers(pattern: str, key: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(key, pattern)


def matrix_rows() -> list[str]:
    """The allow/deny table of docs/team.md, one row per cell of MATRIX."""
    rows = []
    for entry in MATRIX:
        marks = ["yes" if role in entry.allowed else "no" for role in ROLE_NAMES]
        rows.append(f"| `{entry.label}` | " + " | ".join(marks) + " |")
    return rows


def test_docs_show_the_matrix_the_tests_verify():
    text = (Path(__file__).resolve().parent.parent / "docs" / "team.md").read_text()
    for row in matrix_rows():
        assert row in text, f"docs/team.md lacks or contradicts: {row}"


@BOTH
@pytest.mark.postgres
@pytest.mark.parametrize("role", ["operator", "warmup"])
def test_audit_writers_keep_and_copy_back_what_postgresql_missed(
    acl_tier: AclTier, world, database_url, role
):
    """A record PostgreSQL did not take is kept for it (echoes:audit:unsynced) and copied in
    by the next write that reaches both, with nothing refused to either writing role."""
    assert cli("db", "migrate", env={"DATABASE_URL": database_url}).code == 0
    acl_tier.reset_log()
    env = {"REDIS_URL": acl_tier.url_for(role)}
    down = "postgresql://nobody@127.0.0.1:1/none"
    out = cli(
        "preload", "--force", "--gamedata", str(BUNDLED_GAMEDATA), env={**env, "DATABASE_URL": down}
    )
    assert out.code == 0, out.stderr
    assert world.scard(keys.AUDIT_UNSYNCED_KEY) == 1
    out = cli(
        "preload",
        "--force",
        "--gamedata",
        str(BUNDLED_GAMEDATA),
        env={**env, "DATABASE_URL": database_url},
    )
    assert out.code == 0, out.stderr
    assert world.scard(keys.AUDIT_UNSYNCED_KEY) == 0
    assert acl_tier.refusals(role) == (warmup_tolerated(acl_tier) if role == "warmup" else set())


def test_a_cluster_user_without_the_slot_map_gets_the_permission_line(redis_cluster, cluster_url):
    """A user that may not run CLUSTER SLOTS (as every role was before the cluster
    commands were added) gets the permission line and exit 6: redis-py keeps the refusal
    only in its exception chain, and it used to read 'cannot reach any seed node' (exit 4)."""
    tier = cluster_tier(redis_cluster)
    user = "echoes-noslots"
    with tier.each_node() as nodes:
        for node in nodes:
            node.execute_command(
                "ACL", "SETUSER", user, "on", ">pw", "-@all", "+hello", "+ping", "+command", "~*"
            )
    try:
        host, port = tier.nodes[0]
        out = cli("status", env={"REDIS_URL": f"redis://{user}:pw@{host}:{port}/0?cluster=true"})
        assert out.code == ExitCode.PERMISSION, (out.code, out.stderr)
        assert "this ACL user may not run the 'cluster|slots' command" in out.one_error_line()
    finally:
        with tier.each_node() as nodes:
            for node in nodes:
                node.execute_command("ACL", "DELUSER", user)
