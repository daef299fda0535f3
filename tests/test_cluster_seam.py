"""The cluster seam: settings, the client a cluster gets, its topology line, per-node work,
slot grouping, bulk streaming routed per node, and the key walk, on a real 3-primary /
3-replica cluster (the session's ``redis_cluster``), and the same calls on one server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import open_redis
from echoes_ops.client.nodes import each_primary, primary_clients, replica_nodes
from echoes_ops.client.scan import collect_keys
from echoes_ops.client.slots import first_key, group_by_slot, group_commands, slot_of
from echoes_ops.client.topology import describe
from echoes_ops.config import Settings
from echoes_ops.errors import ConfigError, ExitCode
from tests.cli_helpers import cli

# -- settings ----------------------------------------------------------------------------


def test_cluster_option_on_the_url_is_stripped_before_redis_py_sees_it() -> None:
    settings = Settings.load(
        env={"REDIS_URL": "redis://ops:s3cret@10.0.0.5:7000/0?cluster=true&ssl_cert_reqs=required"}
    )
    target = settings.redis_target()
    assert settings.is_cluster
    assert target.cluster
    assert target.url == "redis://10.0.0.5:7000/0?ssl_cert_reqs=required"
    assert target.password is not None
    assert target.password.reveal() == "s3cret"
    assert "s3cret" not in target.display
    assert "cluster" not in target.display


def test_redis_cluster_and_seed_nodes_from_the_environment() -> None:
    target = Settings.load(
        env={
            "REDIS_URL": "redis://a:7000",
            "REDIS_CLUSTER": "1",
            "REDIS_CLUSTER_NODES": "b:7001, [::1]:7002",
        }
    ).redis_target()
    assert target.cluster
    assert target.cluster_nodes == (("b", 7001), ("::1", 7002))
    plain = Settings.load(env={"REDIS_URL": "redis://a:7000?cluster=false"}).redis_target()
    assert not plain.cluster
    assert plain.url == "redis://a:7000"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"REDIS_URL": "redis://a:1?cluster=maybe"}, "cluster must be true or false"),
        ({"REDIS_CLUSTER": "yes", "REDIS_CLUSTER_NODES": "nohost"}, "REDIS_CLUSTER_NODES"),
        ({"REDIS_CLUSTER": "yes", "REDIS_DB": "3"}, "only database 0"),
        (
            {"REDIS_CLUSTER": "yes", "REDIS_SENTINELS": "s:1", "REDIS_SENTINEL_MASTER": "m"},
            "not both",
        ),
    ],
)
def test_bad_cluster_settings_are_one_clear_error(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Settings.load(env=env).redis_target()


def test_bad_cluster_setting_on_the_command_line_is_one_line() -> None:
    out = cli("status", env={"REDIS_URL": "redis://127.0.0.1:1?cluster=maybe"})
    assert out.code == int(ExitCode.CONFIG), out
    assert "cluster must be true or false" in out.one_error_line()


def test_no_reachable_seed_is_one_line_exit_unreachable() -> None:
    out = cli("status", env={"REDIS_URL": "redis://127.0.0.1:1?cluster=true"})
    assert out.code == int(ExitCode.UNREACHABLE), out
    assert "cannot reach any seed node of the Redis Cluster" in out.one_error_line()


# -- slots -------------------------------------------------------------------------------


def test_slots_are_redis_crc16_of_the_whole_key() -> None:
    for key in ("player:5:session", "location:town:players", "lock:spawn", "item:sword:def"):
        assert slot_of(key) == key_slot(key.encode())
    groups = group_by_slot([f"player:{i}:session" for i in range(200)])
    assert sum(len(v) for v in groups.values()) == 200
    assert all(slot_of(k) == slot for slot, ks in groups.items() for k in ks)


def test_commands_are_grouped_by_their_first_key() -> None:
    commands = [
        ("HSET", "player:1:session", "a", "1"),
        ("EVALSHA", "abc", 2, "player:1:session", "x", "arg"),
        ("EXPIRE", "player:2:session", 10),
    ]
    assert first_key(commands[1]) == "player:1:session"
    assert first_key(("EVALSHA", "abc", 0)) is None
    assert first_key(("MULTI",)) is None
    assert first_key(("SLOWLOG", "GET", 10)) is None
    assert first_key(("MEMORY", "USAGE", "player:3:session")) == "player:3:session"
    groups = group_commands(commands)
    assert groups[slot_of("player:1:session")] == commands[:2]
    with pytest.raises(ValueError, match="names no key"):
        group_commands([("TIME",)])


# -- the client and its topology ---------------------------------------------------------


async def test_a_cluster_gets_a_cluster_client_and_says_so(cluster_r, redis_cluster) -> None:
    assert isinstance(cluster_r, RedisCluster)
    topology = await describe(cluster_r)
    assert topology.kind == "cluster"
    assert topology.label == "cluster 3 primaries / 3 replicas"
    assert len(topology.primaries) == 3
    assert len(topology.replicas) == 3
    assert set(topology.primaries) | set(topology.replicas) == set(redis_cluster.seeds)


async def test_one_server_is_standalone(r) -> None:
    assert isinstance(r, Redis)
    topology = await describe(r)
    assert (topology.kind, topology.label) == ("standalone", "standalone")
    assert await primary_clients(r) == [r]
    assert await replica_nodes(r) == []


async def test_each_primary_runs_on_every_primary_in_parallel(cluster_r, redis_cluster) -> None:
    ports = await each_primary(cluster_r, _own_port)
    assert len(ports) == 3
    assert ports == sorted(ports, key=lambda p: ("127.0.0.1", p))
    roles = {p: _role(redis_cluster, p) for p in ports}
    assert set(roles.values()) == {"master"}
    replicas = await replica_nodes(cluster_r)
    assert {_role(redis_cluster, int(n.name.split(":")[1])) for n in replicas} == {"slave"}


async def _own_port(node: Redis) -> int:
    info = await node.info("server")
    return int(info["tcp_port"])


def _role(cluster, port: int) -> str:
    sync = redis.Redis(port=port, decode_responses=True)
    try:
        return str(sync.execute_command("ROLE")[0])
    finally:
        sync.close()


# -- bulk and walks on a cluster ---------------------------------------------------------


async def test_bulk_on_a_cluster_routes_each_command_to_its_node(cluster_r) -> None:
    keys = [f"player:{i}:session" for i in range(3000)]
    replies = await bulk(cluster_r, [("HSET", k, "id", str(i)) for i, k in enumerate(keys)])
    assert replies == [1] * len(keys)
    per_node = await each_primary(cluster_r, lambda n: n.dbsize())
    assert sum(per_node) == 3000
    assert all(count > 800 for count in per_node)
    read = await bulk(cluster_r, [("HGET", k, "id") for k in keys])
    assert read == [str(i) for i in range(len(keys))]  # replies in the order sent


async def test_a_multi_block_goes_whole_to_the_node_of_its_slot(cluster_r) -> None:
    key = "player:7:session"
    replies = await bulk(
        cluster_r,
        [("MULTI",), ("HSET", key, "a", "1"), ("EXPIRE", key, 100), ("EXEC",), ("TTL", key)],
    )
    assert replies[3] == [1, 1]
    assert 0 < replies[4] <= 100


async def test_a_command_without_a_key_is_refused_on_a_cluster(cluster_r) -> None:
    with pytest.raises(ValueError, match="each_primary"):
        await bulk(cluster_r, [("TIME",)])


async def test_the_key_walk_sees_every_primary(tier_r) -> None:
    await bulk(tier_r, [("SET", f"lock:k{i}", "x") for i in range(500)])
    await bulk(tier_r, [("SET", f"other:{i}", "x") for i in range(50)])
    assert await collect_keys(tier_r, "lock:*", count=50) == {f"lock:k{i}" for i in range(500)}


# -- what every command prints -----------------------------------------------------------


def test_status_names_the_cluster_topology(tier_url, topology) -> None:
    out = cli("status", "--json", env={"REDIS_URL": tier_url})
    assert out.code == 0, out.stderr
    shown = json.loads(out.stdout)["target"]["topology"]
    expected = "cluster 3 primaries / 3 replicas" if topology == "cluster" else "standalone"
    assert shown == expected
    assert "cluster=true" not in json.loads(out.stdout)["target"]["url"]


def test_a_cluster_node_reached_as_one_server_is_named(cluster_url) -> None:
    one_node = cluster_url.replace("?cluster=true", "")
    out = cli("status", "--json", env={"REDIS_URL": one_node})
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["target"]["topology"] == (
        "standalone (the server is a cluster node: set REDIS_CLUSTER=true)"
    )


# -- local up --cluster ------------------------------------------------------------------


def test_local_up_cluster_env_status_down(tmp_path: Path) -> None:
    root = str(tmp_path / "local")
    up = cli("local", "up", "--cluster", "--no-postgres", "--dir", root, "--json")
    try:
        assert up.code == 0, up.stderr
        state = json.loads(up.stdout)
        assert state["cluster"]
        assert state["redis_status"] == "running"
        ports = [node["port"] for node in state["cluster_nodes"]]
        assert len(ports) == 6
        assert all(n["status"] == "running" for n in state["cluster_nodes"])

        env = json.loads(cli("local", "env", "--dir", root, "--json").stdout)
        assert env["REDIS_URL"].endswith("?cluster=true")
        assert env["REDIS_CLUSTER_NODES"] == ",".join(f"127.0.0.1:{p}" for p in ports)
        out = cli("status", "--json", env=env)
        assert out.code == 0, out.stderr
        assert json.loads(out.stdout)["target"]["topology"] == "cluster 3 primaries / 3 replicas"

        human = cli("local", "status", "--dir", root)
        assert "redis cluster running" in human.stdout
        assert sum(f"node {p}  running" in human.stdout for p in ports) == 6
    finally:
        down = cli("local", "down", "--dir", root, "--json")
    assert down.code == 0, down.stderr
    stopped = json.loads(down.stdout)
    assert stopped["redis_status"] == "stopped"
    assert all(node["status"] == "stopped" for node in stopped["cluster_nodes"])


async def test_open_redis_on_a_cluster_translates_failures(cluster_settings) -> None:
    from echoes_ops.errors import RedisCommandError

    with pytest.raises(RedisCommandError):
        async with open_redis(cluster_settings.redis_target()) as client:
            await client.execute_command("NOSUCHCOMMAND")


def test_a_cluster_starts_on_other_ports_when_a_picked_bus_port_was_taken(tmp_path) -> None:
    """A port free when picked may be taken before the node binds it (the local end of any
    connection): the cluster picks again instead of failing the run."""
    import socket

    from echoes_ops.local.redis_cluster import BUS_OFFSET
    from echoes_ops.local.redis_cluster import RedisCluster as LocalCluster

    cluster = LocalCluster(tmp_path / "retry-cluster")
    taken = cluster.ports[0] + BUS_OFFSET
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        try:
            cluster.start()
            assert taken - BUS_OFFSET not in cluster.ports
            assert all(cluster.running())
        finally:
            cluster.stop()
