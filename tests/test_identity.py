"""Who did it, for real: every audit record carries the authenticated identities beside the
declared operator (OS user, sudo user, host, Redis ACL user, PostgreSQL session user), and
``audit`` shows both and filters on either. Real redis-server and PostgreSQL."""

from __future__ import annotations

import json
import socket

import pytest
import redis

from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.operations import identity, writes
from echoes_ops.operations.audit import AuditLog
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA
from tests.warmup_helpers import sql

ME = identity.os_user()
LOCATION = "bunker_entrance"


@pytest.fixture
def alice_url(redis_url: str, sync_r: redis.Redis) -> str:
    """An ACL user of its own on the test server (removed afterwards)."""
    sync_r.execute_command("ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "&*", "+@all")
    yield redis_url.replace("redis://", "redis://alice:alice-pw@")
    sync_r.acl_deluser("alice")


def preload(url: str) -> None:
    out = cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env={"REDIS_URL": url})
    assert out.code == 0, out.stderr


def last_stream_record(sync_r: redis.Redis) -> dict[str, str]:
    return sync_r.xrevrange(keys.AUDIT_STREAM_KEY, count=1)[0][1]


def spoof(url: str, **env: str) -> None:
    """The issue's reproduction: claim to be mallory."""
    out = cli(
        "--operator", "mallory", "broadcast", "location", LOCATION, "spoof test",
        env={"REDIS_URL": url, **env},
    )  # fmt: skip
    assert out.code == 0, out.stderr


def test_a_claimed_name_records_the_real_os_and_redis_identities(alice_url, sync_r):
    preload(alice_url)
    spoof(alice_url)
    record = last_stream_record(sync_r)
    assert record["action"] == "broadcast.location"
    assert record["operator"] == "mallory"  # declared: a label
    assert record["os_user"] == ME  # from the kernel, not $USER
    assert record["redis_user"] == "alice"  # authenticated by the server
    assert record["host"] == socket.gethostname()
    assert record["sudo_user"] == ""


def test_user_env_vars_do_not_change_the_os_user(alice_url, sync_r):
    preload(alice_url)
    spoof(alice_url, USER="alice", LOGNAME="alice", SUDO_USER="bob")
    record = last_stream_record(sync_r)
    assert record["os_user"] == ME
    assert record["sudo_user"] == "bob"  # shown as what sudo (or the environment) says


def test_audit_shows_declared_and_authenticated_and_filters_on_either(alice_url, redis_url):
    preload(alice_url)
    spoof(alice_url)
    env = {"REDIS_URL": redis_url}
    human = cli("audit", "--action", "broadcast", env=env)
    assert human.code == 0, human.stderr
    text = " ".join(human.stdout.split())  # however the terminal width wrapped it
    assert "declared mallory" in text
    assert f"os {ME}@" in text
    assert "redis alice" in text

    def records(*args: str) -> list[dict]:
        out = cli("audit", "--json", "--action", "broadcast", *args, env=env)
        assert out.code == 0, out.stderr
        return json.loads(out.stdout)["records"]

    assert [r["operator"] for r in records("--operator", "mallory")] == ["mallory"]
    assert [r["redis_user"] for r in records("--user", "alice")] == ["alice"]
    assert records("--user", "mallory") == []  # a claimed name is not an identity
    assert len(records("--user", ME)) == 1


@pytest.mark.postgres
def test_postgresql_records_identities_and_stamps_its_own_session_user(
    alice_url, database_url, sync_r
):
    assert cli("db", "migrate", env={"DATABASE_URL": database_url}).code == 0
    preload(alice_url)
    spoof(alice_url, DATABASE_URL=database_url)
    (row,) = sql(
        database_url,
        "SELECT operator, os_user, sudo_user, redis_user, pg_user, host FROM echoes_ops.audit "
        "WHERE action = 'broadcast.location'",
    )
    session_user = sql(database_url, "SELECT session_user AS u")[0]["u"]
    assert dict(row) == {
        "operator": "mallory",
        "os_user": ME,
        "sudo_user": None,
        "redis_user": "alice",
        "pg_user": session_user,
        "host": socket.gethostname(),
    }
    # the session user is the server's word: a client cannot write another
    sql(
        database_url,
        "INSERT INTO echoes_ops.audit (at, operator, action, result, pg_user) "
        "VALUES (now(), 'mallory', 'forged', 'ok', 'somebody_else')",
    )
    forged = sql(database_url, "SELECT pg_user FROM echoes_ops.audit WHERE action = 'forged'")
    assert forged[0]["pg_user"] == session_user
    out = cli(
        "audit", "--json", "--user", session_user, "--action", "broadcast",
        env={"DATABASE_URL": database_url, "REDIS_URL": alice_url},
    )  # fmt: skip
    assert [r["pg_user"] for r in json.loads(out.stdout)["records"]] == [session_user]


def players(sync_r: redis.Redis, *cids: int) -> None:
    for cid in cids:
        sync_r.hset(keys.session_key(cid), mapping={"location_id": LOCATION, "worker_id": "w1"})
        sync_r.sadd(keys.presence_key(LOCATION), cid)


async def test_the_dashboards_writes_record_the_same_identities(alice_url, sync_r):
    """The dashboard writes through operations.writes with an AuditLog of its own."""
    players(sync_r, 42)
    async with open_redis(Settings.from_dsn(alice_url).redis_target()) as r:
        log = AuditLog(operator="mallory", redis=r)
        await writes.kick_audited(log, 42, reason="test", via=writes.DASHBOARD)
    record = last_stream_record(sync_r)
    assert record["action"] == "sessions.kick"
    assert json.loads(record["args"])["via"] == "dashboard"
    assert (record["operator"], record["os_user"], record["redis_user"]) == (
        "mallory",
        ME,
        "alice",
    )


async def test_acl_whoami_is_read_once_per_command(alice_url, sync_r):
    async with open_redis(Settings.from_dsn(alice_url).redis_target()) as r:
        log = AuditLog(operator="x", redis=r)
        players(sync_r, 42, 43, 44)
        before = _whoami_calls(sync_r)
        for cid in (42, 43, 44):
            await writes.kick_audited(log, cid, reason="test", via=writes.CLI)
        assert _whoami_calls(sync_r) - before == 1


def _whoami_calls(sync_r: redis.Redis) -> int:
    stats = sync_r.info("commandstats")
    return int(stats.get("cmdstat_acl|whoami", {}).get("calls", 0))
