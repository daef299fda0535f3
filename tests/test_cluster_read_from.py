"""--read-from replicas: keyspace walks read one replica of each primary (READONLY,
EVALSHA_RO), the primaries are spared, the answers are the same, and the lag is printed."""

from __future__ import annotations

import json

import redis

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from tests.cli_helpers import cli


def _stat(port: int, command: str) -> int:
    client = redis.Redis(port=port, decode_responses=True)
    try:
        entry = client.info("commandstats").get(f"cmdstat_{command}")
        return int(entry["calls"]) if entry else 0
    finally:
        client.close()


def _roles(cluster) -> dict[int, str]:
    out = {}
    for node in cluster.nodes:
        client = redis.Redis(port=node.port, decode_responses=True)
        try:
            out[node.port] = client.execute_command("ROLE")[0]
        finally:
            client.close()
    return out


def test_walks_read_replicas_and_say_how_far_behind(cluster_url, redis_cluster) -> None:
    writer = redis.RedisCluster.from_url(cluster_url.replace("?cluster=true", ""))
    try:
        for cid in range(1, 301):
            writer.hset(keys.session_key(cid), mapping={"username": f"p{cid}", "hp": "9"})
    finally:
        writer.close()
    roles = _roles(redis_cluster)
    for port, role in roles.items():
        if role == "master":
            client = redis.Redis(port=port)
            client.execute_command("WAIT", 1, 2000)  # the replicas have every session
            client.close()
    env = {"REDIS_URL": cluster_url}
    plain = json.loads(cli("sessions", "list", "--json", env=env).stdout)

    before = {port: (_stat(port, "scan"), _stat(port, "evalsha_ro")) for port in roles}
    out = cli("--read-from", "replicas", "sessions", "list", "--json", env=env)
    assert out.code == 0, out.stderr
    after = {port: (_stat(port, "scan"), _stat(port, "evalsha_ro")) for port in roles}
    assert json.loads(out.stdout)["sessions"] == plain["sessions"]
    assert len(plain["sessions"]) == 300
    for port, role in roles.items():
        ran_ro = after[port][1] - before[port][1]
        if role == "slave":
            assert ran_ro > 0, f"replica {port} did not walk"
        else:
            assert ran_ro == 0, f"primary {port} ran the walk"
    assert "echoes-ops: note: walks read replicas: " in out.stderr
    assert out.stderr.count(" behind, last I/O ") == 3

    stats = cli("--read-from", "replicas", "stats", "--json", env=env)
    assert stats.code == 0, stats.stderr
    assert json.loads(stats.stdout)["families"]["sessions"]["keys"] == 300


def test_read_from_is_checked_and_ignored_on_one_server(redis_url) -> None:
    bad = cli("--read-from", "nowhere", "status", env={"REDIS_URL": redis_url})
    assert bad.code == int(ExitCode.CONFIG)
    assert "ECHOES_OPS_READ_FROM must be one of primaries, replicas" in bad.one_error_line()
    one = cli("--read-from", "replicas", "status", "--json", env={"REDIS_URL": redis_url})
    assert one.code == 0, one.stderr
    assert one.stderr == ""
