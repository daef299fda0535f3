"""Failover, for real (issue #14 item 6), for ``reconcile --fix``: kill -9 the primary that
holds some of the drift while the run is in its passes. The run finishes (after the replica
is promoted) or fails with one clear line and a documented exit code; what it changed is
only whole single-key steps, and the next run converges to a clean tier."""

from __future__ import annotations

import json
import time

import pytest
from redis.cluster import RedisCluster as SyncCluster

from echoes_ops.contract import keys
from echoes_ops.local.redis_cluster import RedisCluster
from tests.faults.helpers import CliProcess
from tests.faults.test_cluster_failover import (
    FAILOVER_EXITS,
    env_of,
    kill_owner,
    live_port,
    promoted,
    replicate,
)

DEAD = "w-crashed"
PLAYERS = range(1, 201)


@pytest.fixture
def started(private_cluster: RedisCluster) -> RedisCluster:
    private_cluster.start()
    return private_cluster


def seed_drift(cluster: RedisCluster) -> None:
    client = SyncCluster(host=cluster.host, port=live_port(cluster), decode_responses=True)
    try:
        old = f"{time.time() - 600:.3f}"
        for cid in PLAYERS:
            location = f"loc{cid % 7}"
            client.hset(
                keys.session_key(cid),
                mapping={"worker_id": DEAD, "location_id": location, "last_heartbeat": old},
            )
            client.expire(keys.session_key(cid), 900)
            client.sadd(keys.presence_key(location), cid)
            client.hset(keys.worker_connections_key(DEAD), str(cid), "connected")
        for n in range(20):
            client.sadd(keys.presence_key("orphans"), 10_000 + n)  # no sessions
    finally:
        client.close()


def left_over(cluster: RedisCluster) -> dict[str, int]:
    client = SyncCluster(host=cluster.host, port=live_port(cluster), decode_responses=True)
    try:
        return {
            "sessions": sum(client.exists(keys.session_key(cid)) for cid in PLAYERS),
            "members": sum(client.scard(keys.presence_key(f"loc{n}")) for n in range(7))
            + client.scard(keys.presence_key("orphans")),
            "connections": client.hlen(keys.worker_connections_key(DEAD)),
        }
    finally:
        client.close()


def test_reconcile_fix_while_a_primary_is_killed(started: RedisCluster) -> None:
    cluster = started
    seed_drift(cluster)
    replicate(cluster)  # the kill loses no drift the run is about to judge
    env = env_of(cluster)
    victim = keys.session_key(PLAYERS[-1])
    run = CliProcess("reconcile", "--fix", "--yes", "--grace", "2", "--json", env=env)
    time.sleep(0.5)  # inside the run: its first pass or the wait for the second
    killed = kill_owner(cluster, victim)
    done = run.finish(timeout=120)
    assert done.code in FAILOVER_EXITS, done.stderr
    if done.code == 0:
        report = json.loads(done.stdout)
        assert report["note"]
        assert "two passes" in report["note"]
    else:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("echoes-ops: error:"), done.stderr
        assert "Traceback" not in done.stderr
    promoted(cluster, killed, victim)
    # the next run converges: every dead worker's player released, no orphan left
    again = CliProcess("reconcile", "--fix", "--yes", "--grace", "1", env=env).finish(timeout=120)
    assert again.code == 0, again.stderr
    assert left_over(cluster) == {"sessions": 0, "members": 0, "connections": 0}
    clean = CliProcess("reconcile", env=env).finish(timeout=60)
    assert clean.code == 0, clean.stdout + clean.stderr
