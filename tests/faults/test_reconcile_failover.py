"""Failover, for real (issue #14 item 6), for ``reconcile --fix``: kill -9 the primary that
holds some of the drift once the run has made its first repair there (seen in that node's
command log), with most repairs still ahead. The run finishes (after the replica is
promoted, carrying on there) or fails with one clear line and a documented exit code; what
it changed is only whole single-key steps, and the next run converges to a clean tier."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import pytest
from redis.cluster import RedisCluster as SyncCluster

from echoes_ops.contract import keys
from echoes_ops.contract.repair_scripts import RELEASE_SESSION_OF_WORKER
from echoes_ops.local.redis_cluster import RedisCluster
from tests.faults.helpers import CliProcess
from tests.faults.midcommand import (
    evalsha_of,
    kill_when_logged,
    logged,
    one_error_line,
    replica_of,
    trace_commands,
)
from tests.faults.test_cluster_failover import (
    FAILOVER_EXITS,
    env_of,
    live_port,
    owner_port,
    promoted,
    replicate,
)

DEAD = "w-crashed"
PLAYERS = range(1, 601)  # ~200 repairs per primary: most still ahead at the kill


@pytest.fixture
def started(private_cluster: RedisCluster) -> RedisCluster:
    private_cluster.start()
    return private_cluster


def seed_drift(cluster: RedisCluster) -> None:
    client = SyncCluster(host=cluster.host, port=live_port(cluster), decode_responses=True)
    try:
        old = f"{time.time() - 600:.3f}"
        pipe = client.pipeline()
        for cid in PLAYERS:
            location = f"loc{cid % 7}"
            pipe.hset(
                keys.session_key(cid),
                mapping={"worker_id": DEAD, "location_id": location, "last_heartbeat": old},
            )
            pipe.expire(keys.session_key(cid), 900)
            pipe.sadd(keys.presence_key(location), cid)
            pipe.hset(keys.worker_connections_key(DEAD), str(cid), "connected")
        for n in range(20):
            pipe.sadd(keys.presence_key("orphans"), 10_000 + n)  # no sessions
        pipe.execute()
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
    # a primary other than REDIS_URL's: the error line must name the node that went away
    seed = urlsplit(cluster.url).port
    victim = next(
        key
        for key in (keys.session_key(cid) for cid in reversed(PLAYERS))
        if owner_port(cluster, key) != seed
    )
    killed = owner_port(cluster, victim)
    replica = replica_of(cluster, killed)
    trace_commands(cluster)
    release = evalsha_of(RELEASE_SESSION_OF_WORKER)

    run = CliProcess("reconcile", "--fix", "--yes", "--grace", "1", "--json", env=env)
    # after both passes, during the repairs: the first session released on that node
    kill_when_logged(cluster, run, killed, release, "the first repair on the victim")
    done = run.finish(timeout=120)
    assert done.code in FAILOVER_EXITS, done.stderr
    if done.code == 0:
        report = json.loads(done.stdout)
        assert report["note"]
        assert "two passes" in report["note"]
        # it crossed the failover: more of that node's players were released on the replica
        # (a replica runs only its own slots' keys; it receives a script's writes, never the
        # script call itself, until it is promoted)
        assert logged(cluster, replica, release) > 0, "the repairs ended before the kill"
        # every player released once; one release may have run on the node with its reply
        # lost in the kill (sent again, the replica finds nothing left to release)
        assert len(PLAYERS) - 1 <= report["kinds"]["dead_worker"]["fixed"] <= len(PLAYERS)
    else:
        line = one_error_line(done.stderr)
        if " is down" not in line:  # a lost connection names the node, not the seed
            assert f"{cluster.host}:{killed}" in line, line
    promoted(cluster, killed, victim)
    # the next run converges: every dead worker's player released, no orphan left
    again = CliProcess("reconcile", "--fix", "--yes", "--grace", "1", env=env).finish(timeout=120)
    assert again.code == 0, again.stderr
    assert left_over(cluster) == {"sessions": 0, "members": 0, "connections": 0}
    clean = CliProcess("reconcile", env=env).finish(timeout=60)
    assert clean.code == 0, clean.stdout + clean.stderr
