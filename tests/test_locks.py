"""``locks``: list/show on our values and the plan's, operator holds pausing the reference
worker's spawn task, release only of what you hold, force-release that never deletes a
newer owner's lock, extend only with the token, and an audit record for each (real
redis-server)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.errors import BusyError, ExitCode
from echoes_ops.operations.locks import force_release, list_locks, show_lock
from echoes_ops.primitives.lease import Lease
from echoes_ops.runtime.worker import SPAWN_LOCK, Worker
from tests.cli_helpers import cli
from tests.runtime_helpers import make_worker
from tests.waiting import eventually, wait_until

pytestmark = pytest.mark.timeout(60)
SPAWN = keys.lock_key(SPAWN_LOCK)


def as_(redis_url: str, operator: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "ECHOES_OPS_OPERATOR": operator}


@pytest.fixture
def env(redis_url):
    return as_(redis_url, "alice")


@pytest.fixture
def connected(redis_url):
    """Clients named like workers, with a fresh heartbeat in their meta (what makes a
    worker alive: connected and beating)."""
    clients: list[redis.Redis] = []

    def connect(name: str) -> redis.Redis:
        client = redis.Redis.from_url(redis_url, decode_responses=True, client_name=name)
        client.hset(
            keys.worker_meta_key(name), mapping={"worker_id": name, "heartbeat": str(time.time())}
        )
        client.expire(keys.worker_meta_key(name), 60)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def audit(sync_r) -> list[tuple[str, str, str]]:
    """(action, result, operator) of every locks.* record, oldest first."""
    return [
        (f["action"], f["result"], f["operator"])
        for _, f in sync_r.xrange(keys.AUDIT_STREAM_KEY)
        if f["action"].startswith("locks.")
    ]


def last_audit(sync_r) -> dict:
    _, fields = sync_r.xrevrange(keys.AUDIT_STREAM_KEY, count=1)[0]
    return {**fields, "detail": json.loads(fields["detail"] or "null")}


# -- list and show --------------------------------------------------------------------------


def test_list_shows_ours_and_the_plans_values(env, sync_r, connected):
    connected("worker-1")
    sync_r.set(keys.lock_key("ours"), "worker-1#640f879b61410c5002f6515a", px=30_000)
    sync_r.set(keys.lock_key("plans"), "worker-4711", ex=60)  # the plan's own code
    sync_r.set(keys.lock_key("stuck"), "worker-2#aa")  # no TTL
    sync_r.hset(keys.worker_meta_key("worker-2"), "worker_id", "worker-2")  # registered, gone
    assert cli("locks", "hold", "maint", "--ttl", "60", "--reason", "db work", env=env).code == 0

    out = cli("locks", "list", "--json", env=env)
    assert out.code == 0, out.stderr
    found = {lock["name"]: lock for lock in json.loads(out.stdout)["locks"]}
    assert sorted(found) == ["maint", "ours", "plans", "stuck"]
    ours, plans, stuck, maint = found["ours"], found["plans"], found["stuck"], found["maint"]
    assert (ours["owner"], ours["owner_kind"], ours["has_token"], ours["alive"]) == (
        "worker-1", "worker", True, True,
    )  # fmt: skip
    assert 0 < ours["ttl_ms"] <= 30_000
    assert (plans["owner"], plans["has_token"], plans["alive"]) == ("worker-4711", False, False)
    assert "no worker:meta key" in plans["liveness"]
    assert stuck["no_ttl"] is True and stuck["ttl_ms"] == -1  # noqa: PT018
    assert stuck["alive"] is False
    assert "no client named worker-2" in stuck["liveness"]
    assert (maint["owner"], maint["owner_kind"], maint["operator"]) == (
        "operator.alice", "operator", "alice",
    )  # fmt: skip
    assert maint["hold"]["reason"] == "db work"
    assert maint["hold"]["operator"] == "alice"

    human = cli("locks", "list", env=env)
    assert "no TTL" in human.stdout
    assert "warning: lock:stuck has no TTL" in human.stdout

    show = cli("locks", "show", "plans", env=env)
    assert show.code == 0
    assert "worker-4711 (worker) (bare value: the plan's code, no token)" in show.stdout
    assert cli("locks", "show", "nope", env=env).code == ExitCode.REFUSED


def test_liveness_falls_back_to_meta_without_client_list(redis_url, sync_r, connected):
    sync_r.execute_command(
        "ACL", "SETUSER", "ops", "on", ">pw", "~*", "&*", "+@all", "-client", "+client|setname"
    )
    try:
        connected("worker-1")  # connected, but ops cannot see it ...
        sync_r.delete(keys.worker_meta_key("worker-1"))  # ... and it has no meta key
        sync_r.hset(keys.worker_meta_key("worker-2"), "worker_id", "worker-2")
        sync_r.set(keys.lock_key("a"), "worker-1#aa", ex=60)
        sync_r.set(keys.lock_key("b"), "worker-2#bb", ex=60)
        url = redis_url.replace("redis://", "redis://ops:pw@")
        out = cli("locks", "list", "--json", env={"REDIS_URL": url})
        assert out.code == 0, out.stderr
        found = {lock["name"]: lock for lock in json.loads(out.stdout)["locks"]}
        assert found["a"]["alive"] is False  # no meta key: the fallback says dead
        assert found["b"]["alive"] is True
        assert "CLIENT LIST not permitted" in found["b"]["liveness"]
    finally:
        sync_r.execute_command("ACL", "DELUSER", "ops")


# -- hold pauses the spawn task ------------------------------------------------------------


async def test_hold_pauses_the_workers_spawn_task_and_release_resumes_it(redis_url, sync_r):
    runs: list[float] = []

    async def spawn(worker: Worker, lease: Lease) -> None:
        runs.append(asyncio.get_running_loop().time())

    worker = make_worker(redis_url, "w1", run_spawn_task=True, spawn_interval=0.05)
    worker.spawn_task = spawn
    await worker.start()
    try:
        await eventually(lambda: len(runs) >= 3)
        env = as_(redis_url, "alice")
        for _ in range(50):  # the worker holds the lock for an instant each period
            held = await asyncio.to_thread(
                cli, "locks", "hold", SPAWN_LOCK, "--ttl", "30", "--reason", "event", "--json",
                env=env,
            )  # fmt: skip
            if held.code != ExitCode.BUSY:
                break
        assert held.code == 0, held.stderr
        token = json.loads(held.stdout)["token"]
        assert token.startswith("operator.alice#")
        assert sync_r.get(SPAWN) == token

        paused_at, skipped = len(runs), worker.stats.spawn_skipped
        # five spawn periods came and went (each skipped: the lock is held), not a guessed time
        await eventually(lambda: worker.stats.spawn_skipped >= skipped + 5)
        assert len(runs) == paused_at, "the spawn task ran while an operator held the lock"

        released = await asyncio.to_thread(
            cli, "locks", "release", SPAWN_LOCK, "--token", token, env=env
        )
        assert released.code == 0, released.stderr
        await eventually(lambda: len(runs) > paused_at)
    finally:
        await worker.stop()
        await worker.r.aclose()
    assert [(a, r) for a, r, _ in audit(sync_r)][-2:] == [
        ("locks.hold", "ok"),
        ("locks.release", "ok"),
    ]


def test_hold_refuses_a_held_lock_and_records_why(env, sync_r):
    sync_r.set(SPAWN, "worker-7#abc", ex=60)
    out = cli("locks", "hold", SPAWN_LOCK, "--ttl", "60", "--reason", "x", env=env)
    assert out.code == ExitCode.BUSY
    assert "held by worker-7" in out.one_error_line()
    assert sync_r.get(SPAWN) == "worker-7#abc"

    dry = cli("locks", "hold", "free", "--ttl", "60", "--reason", "x", "--dry-run", env=env)
    assert dry.code == 0
    assert sync_r.exists(keys.lock_key("free")) == 0

    ok = cli("locks", "hold", "free", "--ttl", "2m", "--reason", "migration", "--json", env=env)
    token = json.loads(ok.stdout)["token"]
    assert 110_000 < sync_r.pttl(keys.lock_key("free")) <= 120_000  # 2m, not 60 s or 120 ms
    info = sync_r.hgetall(keys.lock_info_key("free"))
    assert info["reason"] == "migration"
    assert info["operator"] == "alice"
    assert info["value"] == token
    assert 110_000 < sync_r.pttl(keys.lock_info_key("free")) <= 120_000  # same TTL

    again = cli("locks", "hold", "free", "--ttl", "60", "--reason", "x", env=env)
    assert again.code == ExitCode.BUSY
    assert "you already hold it" in again.one_error_line()

    for bad in (("--ttl", "0"), ("--ttl", "2d"), ("--ttl", "soon")):
        out = cli("locks", "hold", "other", *bad, "--reason", "x", env=env)
        assert out.code == ExitCode.USAGE, bad
    assert cli("locks", "hold", "other", "--ttl", "9", "--reason", "a\nb", env=env).code == 2

    assert audit(sync_r) == [
        ("locks.hold", "failed", "alice"),
        ("locks.hold", "ok", "alice"),
        ("locks.hold", "ok", "alice"),
        ("locks.hold", "failed", "alice"),
        ("locks.hold", "failed", "alice"),
        ("locks.hold", "failed", "alice"),
        ("locks.hold", "failed", "alice"),
        ("locks.hold", "failed", "alice"),
    ]


# -- release --------------------------------------------------------------------------------


def test_release_only_what_you_hold(redis_url, sync_r):
    alice, bob = as_(redis_url, "alice"), as_(redis_url, "bob")
    sync_r.set(SPAWN, "worker-1", ex=60)  # the plan's bare value
    out = cli("locks", "release", SPAWN_LOCK, env=alice)
    assert out.code == ExitCode.REFUSED
    line = out.one_error_line()
    assert "held by worker-1" in line and "not by you (operator.alice)" in line  # noqa: PT018
    assert sync_r.get(SPAWN) == "worker-1"
    wrong = cli("locks", "release", SPAWN_LOCK, "--token", "worker-1#guess", env=alice)
    assert wrong.code == ExitCode.REFUSED
    assert sync_r.get(SPAWN) == "worker-1"
    sync_r.delete(SPAWN)

    held = json.loads(
        cli("locks", "hold", SPAWN_LOCK, "--ttl", "60", "--reason", "r", "--json", env=alice).stdout
    )
    assert cli("locks", "release", SPAWN_LOCK, env=bob).code == ExitCode.REFUSED
    dry = cli("locks", "release", SPAWN_LOCK, "--dry-run", env=alice)
    assert dry.code == 0 and "would release" in dry.stdout  # noqa: PT018
    assert sync_r.get(SPAWN) == held["token"]

    out = cli("locks", "release", SPAWN_LOCK, "--json", env=alice)  # owner is alice: ok
    assert out.code == 0, out.stderr
    done = json.loads(out.stdout)
    assert done["released"] is True
    assert held["token"] in done["compared"] and "read just now" in done["compared"]  # noqa: PT018
    assert sync_r.exists(SPAWN, keys.lock_info_key(SPAWN_LOCK)) == 0

    gone = cli("locks", "release", SPAWN_LOCK, env=alice)
    assert gone.code == ExitCode.REFUSED
    assert "no lock" in gone.one_error_line()

    # a token works for anyone who has it (bob releases alice's hold with its token)
    held = json.loads(
        cli("locks", "hold", SPAWN_LOCK, "--ttl", "60", "--reason", "r", "--json", env=alice).stdout
    )
    assert cli("locks", "release", SPAWN_LOCK, "--token", held["token"], env=bob).code == 0
    assert sync_r.exists(SPAWN) == 0
    results = [(a, r) for a, r, _ in audit(sync_r)]
    assert results == [
        ("locks.release", "failed"),
        ("locks.release", "failed"),
        ("locks.hold", "ok"),
        ("locks.release", "failed"),
        ("locks.release", "ok"),  # the dry run
        ("locks.release", "ok"),
        ("locks.release", "failed"),
        ("locks.hold", "ok"),
        ("locks.release", "ok"),
    ]


def test_force_release_of_a_dead_owner(env, sync_r):
    sync_r.set(SPAWN, "worker-9", ex=60)  # the plan's worker, not connected
    out = cli("locks", "release", SPAWN_LOCK, "--force", env=env)  # no terminal, no --yes
    assert out.code == ExitCode.USAGE
    assert sync_r.get(SPAWN) == "worker-9"
    dry = cli("locks", "release", SPAWN_LOCK, "--force", "--dry-run", env=env)
    assert dry.code == 0 and "would delete" in dry.stdout  # noqa: PT018
    assert sync_r.get(SPAWN) == "worker-9"

    out = cli("locks", "release", SPAWN_LOCK, "--force", "--yes", "--json", env=env)
    assert out.code == 0, out.stderr
    done = json.loads(out.stdout)
    assert (done["released"], done["forced"], done["value"]) == (True, True, "worker-9")
    assert sync_r.exists(SPAWN) == 0
    record = last_audit(sync_r)
    assert (record["action"], record["result"]) == ("locks.release.force", "ok")
    assert record["detail"]["value"] == "worker-9"


def test_force_release_refuses_a_live_owner_unless_told_twice(env, sync_r, connected):
    connected("worker-1")
    sync_r.set(SPAWN, "worker-1#abc", ex=60)
    out = cli("locks", "release", SPAWN_LOCK, "--force", "--yes", env=env)
    assert out.code == ExitCode.REFUSED
    assert "worker-1 is alive" in out.stderr
    assert "--even-if-alive" in out.stderr
    assert sync_r.get(SPAWN) == "worker-1#abc"
    assert last_audit(sync_r)["result"] == "failed"

    # an operator's hold counts as live too
    sync_r.delete(SPAWN)
    cli("locks", "hold", SPAWN_LOCK, "--ttl", "60", "--reason", "event", env=env)
    bob = {**env, "ECHOES_OPS_OPERATOR": "bob"}
    out = cli("locks", "release", SPAWN_LOCK, "--force", "--yes", env=bob)
    assert out.code == ExitCode.REFUSED
    assert "operator alice holds it (event)" in out.stderr

    out = cli("locks", "release", SPAWN_LOCK, "--force", "--even-if-alive", "--yes", env=bob)
    assert out.code == 0, out.stderr
    assert sync_r.exists(SPAWN, keys.lock_info_key(SPAWN_LOCK)) == 0
    assert cli("locks", "release", SPAWN_LOCK, "--even-if-alive", env=env).code == 2
    assert cli("locks", "release", "x", "--force", "--token", "t", env=env).code == 2


def test_force_release_racing_a_new_owner_never_deletes_its_lock(env, sync_r, monkeypatch):
    """The operator reads the value, the old lock expires and a new owner takes it while
    the operator confirms: nothing is deleted, and the message says why."""
    import echoes_ops.cli.locks as cli_locks

    # dead owner; its TTL runs out while the operator confirms (made to run out then, not
    # after a fixed time the CLI may need to start on a loaded machine)
    sync_r.set(SPAWN, "worker-1", px=60_000)
    asked: list[str] = []

    def confirm_slowly(ctx: object, message: str, *, yes: bool) -> None:
        asked.append(message)
        sync_r.pexpire(SPAWN, 1)
        wait_until(lambda: not sync_r.exists(SPAWN), 5, "the old lock to run out")  # ...
        assert sync_r.set(SPAWN, "worker-2#fresh", nx=True, ex=60)  # ... and a new owner

    monkeypatch.setattr(cli_locks, "confirm", confirm_slowly)
    out = cli("locks", "release", SPAWN_LOCK, "--force", env=env)
    assert asked and "worker-1" in asked[0]  # noqa: PT018
    assert out.code == ExitCode.BUSY
    line = out.stderr.strip().splitlines()[-1]
    assert "now holds 'worker-2#fresh'" in line
    assert "not the value you confirmed ('worker-1')" in line
    assert "nothing deleted" in line
    assert sync_r.get(SPAWN) == "worker-2#fresh"
    record = last_audit(sync_r)
    assert (record["action"], record["result"]) == ("locks.release.force", "failed")
    assert "new owner" in record["detail"]["error"]

    # gone and not retaken: nothing to delete, said so, exit 0
    sync_r.set(SPAWN, "worker-3", px=60_000)

    def confirm_after_expiry(ctx: object, message: str, *, yes: bool) -> None:
        sync_r.pexpire(SPAWN, 1)
        wait_until(lambda: not sync_r.exists(SPAWN), 5, "the lock to run out")

    monkeypatch.setattr(cli_locks, "confirm", confirm_after_expiry)
    out = cli("locks", "release", SPAWN_LOCK, "--force", env=env)
    assert out.code == 0, out.stderr
    assert "already gone" in out.stdout


async def test_force_release_compares_the_seen_value(r, sync_r):
    sync_r.set(SPAWN, "worker-1#old", ex=60)
    seen = await show_lock(r, SPAWN_LOCK)
    sync_r.delete(SPAWN)
    sync_r.set(SPAWN, "worker-2#new", ex=60)
    with pytest.raises(BusyError, match="a new owner took it; nothing deleted"):
        await force_release(r, SPAWN_LOCK, seen_value=seen.value)
    assert sync_r.get(SPAWN) == "worker-2#new"
    assert [info.value for info in await list_locks(r)] == ["worker-2#new"]


# -- extend ---------------------------------------------------------------------------------


def test_extend_only_with_the_token(redis_url, sync_r):
    alice, bob = as_(redis_url, "alice"), as_(redis_url, "bob")
    held = json.loads(
        cli("locks", "hold", SPAWN_LOCK, "--ttl", "10", "--reason", "r", "--json", env=alice).stdout
    )
    token = held["token"]
    assert cli("locks", "extend", SPAWN_LOCK, "--ttl", "600", env=bob).code == ExitCode.REFUSED
    out = cli("locks", "extend", SPAWN_LOCK, "--ttl", "600", "--token", token + "x", env=bob)
    assert out.code == ExitCode.REFUSED
    assert sync_r.pttl(SPAWN) <= 10_000

    out = cli("locks", "extend", SPAWN_LOCK, "--ttl", "600", "--token", token, env=bob)
    assert out.code == 0, out.stderr
    assert 590_000 < sync_r.pttl(SPAWN) <= 600_000
    assert 590_000 < sync_r.pttl(keys.lock_info_key(SPAWN_LOCK)) <= 600_000

    out = cli("locks", "extend", SPAWN_LOCK, "--ttl", "20m", "--json", env=alice)  # owner: ok
    assert out.code == 0, out.stderr
    assert 1_190_000 < sync_r.pttl(SPAWN) <= 1_200_000
    assert cli("locks", "extend", "gone", "--ttl", "60", env=alice).code == ExitCode.REFUSED

    sync_r.set(keys.lock_key("plans"), "worker-4711", ex=30)  # a bare value extends by token
    out = cli("locks", "extend", "plans", "--ttl", "90", "--token", "worker-4711", env=bob)
    assert out.code == 0
    assert sync_r.ttl(keys.lock_key("plans")) > 30
    assert [(a, r) for a, r, _ in audit(sync_r)] == [
        ("locks.hold", "ok"),
        ("locks.extend", "failed"),
        ("locks.extend", "failed"),
        ("locks.extend", "ok"),
        ("locks.extend", "ok"),
        ("locks.extend", "failed"),
        ("locks.extend", "ok"),
    ]
