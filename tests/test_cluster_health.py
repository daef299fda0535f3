"""Cluster health in status, stats and doctor: every node with its role, slots, memory and
replication; a node that goes down shows at the next reading."""

from __future__ import annotations

import asyncio
import json

from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.operations.cluster_health import cluster_health
from tests.cli_helpers import cli


def test_status_stats_and_doctor_show_every_node(cluster_url) -> None:
    env = {"REDIS_URL": cluster_url}
    status = json.loads(cli("status", "--json", env=env).stdout)
    health = status["cluster"]
    assert health["ok"] is True
    assert health["state"] == "ok"
    assert health["slots_ok"] == 16384
    roles = sorted(n["role"] for n in health["nodes"])
    assert roles == ["primary"] * 3 + ["replica"] * 3
    primaries = {n["address"] for n in health["nodes"] if n["role"] == "primary"}
    for node in health["nodes"]:
        assert node["up"] is True
        assert node["used_memory"] > 0
        if node["role"] == "replica":
            assert node["primary"] in primaries
            assert node["link"] == "up"
            assert node["lag_bytes"] is not None
        else:
            assert node["slots"] > 5000
    assert health["node_timeout_ms"] == 2000
    assert health["require_full_coverage"] == "yes"

    human = cli("status", env=env).stdout
    assert "ok, 16,384/16,384 slots served" in human
    assert human.count(" primary ") == 3
    assert human.count(" replica of ") == 3

    stats = json.loads(cli("stats", "--json", env=env).stdout)
    assert len(stats["cluster"]["nodes"]) == 6
    doctor = json.loads(cli("doctor", "--json", env=env).stdout)
    (check,) = [c for c in doctor["checks"] if c["id"] == "cluster"]
    assert check["verdict"] == "ok"


def test_one_server_has_no_cluster_section(redis_url) -> None:
    status = json.loads(cli("status", "--json", env={"REDIS_URL": redis_url}).stdout)
    assert status["cluster"] is None
    doctor = json.loads(cli("doctor", "--json", env={"REDIS_URL": redis_url}).stdout)
    (check,) = [c for c in doctor["checks"] if c["id"] == "cluster"]
    assert check["verdict"] == "ok"


async def test_a_node_going_down_shows_at_the_next_reading(private_cluster) -> None:
    private_cluster.start()
    settings = Settings.load(env={"REDIS_URL": private_cluster.url})
    async with open_redis(settings.redis_target()) as r:
        before = await cluster_health(r)
        assert before is not None
        assert before.ok
        replica = next(n for n in before.nodes if n.role == "replica")
        private_cluster.node(int(replica.address.rsplit(":", 1)[1])).kill()
        after = await cluster_health(r)  # the very next reading
    assert after is not None
    assert replica.address in after.nodes_down
    assert replica.primary in after.primaries_without_replica
    assert any(f"node {replica.address} (replica) is down" in p for p in after.problems)
    out = await asyncio.to_thread(cli, "doctor", "--json", env={"REDIS_URL": private_cluster.url})
    assert out.stdout, out.stderr
    (check,) = [c for c in json.loads(out.stdout)["checks"] if c["id"] == "cluster"]
    assert check["verdict"] == "fail"
    assert replica.address in check["summary"]
