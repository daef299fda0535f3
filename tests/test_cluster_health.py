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


def _memory_check(cluster_url: str) -> dict:
    out = cli("doctor", "--json", env={"REDIS_URL": cluster_url})
    assert out.code in (0, 1, 2), out.stderr
    return {c["id"]: c for c in json.loads(out.stdout)["checks"]}["memory_headroom"]


def test_doctor_memory_headroom_is_per_primary(cluster_url, redis_cluster) -> None:
    """Each primary fills up with its own slots' keys: the fullest decides, and one without
    maxmemory is named (the tier's sums hid a full node behind two empty ones)."""
    import redis as sync_redis

    nodes = [sync_redis.Redis(host="127.0.0.1", port=p) for p in redis_cluster.ports]
    primaries = [n for n in nodes if n.execute_command("ROLE")[0] in (b"master", "master")]
    assert len(primaries) == 3
    names = [f"127.0.0.1:{p.connection_pool.connection_kwargs['port']}" for p in primaries]
    try:
        check = _memory_check(cluster_url)
        assert check["verdict"] == "warn"
        assert check["summary"].startswith("no maxmemory limit on any of the 3 primaries")
        assert set(check["details"]["primaries"]) == set(names)

        full = primaries[1]
        used = int(full.info("memory")["used_memory"])
        full.config_set("maxmemory", int(used * 1.02))  # about 98% full
        for other in (primaries[0], primaries[2]):
            other.config_set("maxmemory", 1 << 30)  # 1 GiB: nearly empty
        check = _memory_check(cluster_url)
        assert check["verdict"] == "fail"
        assert check["summary"].startswith(f"fullest primary {names[1]}: ")
        assert names[1] in check["fix"]

        full.config_set("maxmemory", 1 << 30)
        primaries[2].config_set("maxmemory", 0)
        check = _memory_check(cluster_url)
        assert check["verdict"] == "warn"
        assert check["summary"].endswith(f"; no maxmemory on {names[2]}")

        primaries[2].config_set("maxmemory", 1 << 30)
        check = _memory_check(cluster_url)
        assert check["verdict"] == "ok"
    finally:
        for node in primaries:
            node.config_set("maxmemory", 0)
        for node in nodes:
            node.close()
