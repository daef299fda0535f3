"""``acl roles``: each role's ACL rules loaded into a real redis-server, and the tool's whole
command set run as that user. What the role allows works (the exit code the unrestricted
default user gets); what it does not is refused with the clean permission line (exit 6) and
the keyspace is left exactly as it was (the audit stream aside: a refused attempt is
recorded where the role may record it). No role may run FLUSHALL, KEYS, CONFIG, DEBUG."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis

from echoes_ops.client.connect import open_redis
from echoes_ops.client.errors import translate
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.runtime.tier import Tier
from tests.acl_matrix import (
    CASES,
    DROPPED_ITEM,
    FOREIGN_KEY,
    HELD_TOKEN,
    LOCATION,
    ROLE_NAMES,
    Cell,
)
from tests.acl_tier import AclTier, Admin, cluster_tier, standalone_tier
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA, TOPOLOGIES
from tests.runtime_helpers import session

pytestmark = pytest.mark.timeout(600)


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


@BOTH
@pytest.mark.parametrize("role", ROLE_NAMES)
def test_no_role_reaches_another_applications_keys(acl_tier: AclTier, world, role):
    client = acl_tier.client(role, decode=True)
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.get(FOREIGN_KEY)
    client.close()


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


def warmup_tolerated(tier: AclTier) -> set[str]:
    """The refusal the warmup role meets by design on a cluster: its preload runs online
    (per slot) and the step script's TIME is refused (the steps are then sized by their
    round trips; docs/team.md)."""
    return {"time"} if tier.cluster else set()


@BOTH
@pytest.mark.postgres
def test_warmup_role_warms_sessions_and_inventories(acl_tier: AclTier, world, database_url):
    """The cron account's whole job (sessions, inventories, static) with nothing refused."""
    from tests.warmup_helpers import WINDOW, seed

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
