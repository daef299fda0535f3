"""`echoes-ops stats`: metrics on a populated real redis-server, the Prometheus exposition
(checked with prometheus-client's own parser), --watch, and own reads kept out of rates."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.gamedata import load_gamedata
from echoes_ops.local.redis_server import RedisServer, free_port
from echoes_ops.operations import stats as ops
from echoes_ops.operations.stats import prometheus
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA, REPO

WORKER = "w-stats"


@pytest.fixture
def populated(private_redis: RedisServer) -> Iterator[dict[str, Any]]:
    """A server of its own (no other test's clients) with the bundled gamedata preloaded,
    sessions/inventories with known TTLs, locks, a live worker (a client named after it)
    subscribed to a location channel and a pattern."""
    private_redis.start()
    redis_url = private_redis.url
    sync_r = redis.Redis.from_url(redis_url, decode_responses=True)
    loaded = cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env={"REDIS_URL": redis_url})
    assert loaded.code == 0, loaded.stderr
    pipe = sync_r.pipeline()
    for cid in range(1, 21):  # 20 sessions with ~1000 s left
        pipe.hset(keys.session_key(cid), mapping={"worker_id": WORKER, "location_id": "overpass"})
        pipe.expire(keys.session_key(cid), 1000)
    for cid in range(21, 31):  # 10 with ~100 s left
        pipe.hset(keys.session_key(cid), mapping={"worker_id": WORKER})
        pipe.expire(keys.session_key(cid), 100)
    for cid in range(31, 34):  # 3 without a TTL
        pipe.hset(keys.session_key(cid), mapping={"worker_id": WORKER})
    for cid in range(1, 6):  # 5 inventories with ~400 s left
        pipe.rpush(keys.inventory_key(cid), '{"item_id":"rusty_pipe","quantity":1}')
        pipe.expire(keys.inventory_key(cid), 400)
    pipe.set(keys.lock_key("spawn_manager"), "w-stats#1", ex=30)
    pipe.set(keys.lock_key("night_cycle"), "w-stats#2", ex=30)
    pipe.sadd(keys.presence_key("overpass"), *range(1, 21))
    pipe.hset(keys.worker_meta_key(WORKER), mapping={"heartbeat": f"{time.time():.3f}"})
    pipe.expire(keys.worker_meta_key(WORKER), 15)
    pipe.hset(keys.worker_connections_key(WORKER), "1", "connected")
    pipe.set("someone:else", "x")
    pipe.set(b"binary\xff\xfekey", b"x")  # not UTF-8: must land in "other", not crash
    pipe.execute()

    worker = redis.Redis.from_url(redis_url, client_name=WORKER)
    listener = worker.pubsub()
    listener.subscribe(keys.location_channel("overpass"))
    listener.psubscribe(keys.PLAYER_CHANNEL_PATTERN)
    confirmed = [listener.get_message(timeout=5)["type"] for _ in range(2)]
    assert sorted(confirmed) == ["psubscribe", "subscribe"]
    worker.ping()
    data = load_gamedata(BUNDLED_GAMEDATA)
    yield {
        "url": redis_url,
        "locations": len(data.locations),
        "items": len(data.items),
        "npcs": len(data.npcs),
    }
    listener.close()
    worker.close()
    sync_r.close()


def test_stats_json_counts_a_populated_server(populated):
    redis_url = populated["url"]
    out = cli("stats", "--json", env={"REDIS_URL": redis_url})
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)

    families = data["families"]
    assert families["sessions"]["keys"] == 33
    assert families["inventories"]["keys"] == 5
    assert families["presence"]["keys"] == 1
    assert families["location_cache"]["keys"] == populated["locations"]
    assert families["item_defs"]["keys"] == populated["items"]
    assert families["npc_defs"]["keys"] == populated["npcs"]
    assert families["worker_keys"]["keys"] == 2
    assert families["locks"]["keys"] == 2
    assert families["echoes"]["keys"] >= 1  # the gamedata version record, the audit stream
    assert families["other"]["keys"] == 2
    assert sum(f["keys"] for f in families.values()) == data["server"]["db_keys"]
    # memory: measured exactly for small families, estimated (and marked) for big ones
    assert families["sessions"]["estimate"] is False
    assert families["sessions"]["estimated_bytes"] == families["sessions"]["sampled_bytes"] > 0
    assert populated["items"] > ops.MEMORY_SAMPLE
    assert families["item_defs"]["estimate"] is True
    assert families["item_defs"]["sampled_keys"] == ops.MEMORY_SAMPLE
    per_key = families["item_defs"]["sampled_bytes"] / ops.MEMORY_SAMPLE
    assert families["item_defs"]["estimated_bytes"] == round(per_key * populated["items"])

    ttl = data["ttl"]
    assert ttl["sessions"]["estimate"] is False
    assert ttl["sessions"]["buckets"] == {
        "0-60s": 0,
        "60-300s": 10,
        "300-600s": 0,
        "600-1800s": 20,
        "1800s+": 0,
        "none": 3,
    }
    assert ttl["inventories"]["buckets"]["300-600s"] == 5

    assert data["clients"]["workers_connected"] == [WORKER]
    assert data["clients"]["worker_connections"] == 2  # its pub/sub and command connections
    assert data["clients"]["pubsub_clients"] == 1
    assert data["clients"]["pattern_subscribers"] == 1
    pubsub = data["pubsub"]
    assert pubsub["listed"] is True
    assert pubsub["patterns_total"] == 1
    assert pubsub["families"]["location"] == {"channels": 1, "subscriptions": 1}
    assert pubsub["top_channels"] == [{"channel": "location:overpass", "subscribers": 1}]

    version = cli("cache", "status", "--json", env={"REDIS_URL": redis_url})
    assert data["gamedata"]["content_hash"] == json.loads(version.stdout)["loaded_version"]
    assert 0.0 <= data["cache"]["hit_rate"] <= 1.0
    assert data["memory"]["used_bytes"] > 0
    assert data["interval"] is None


def test_stats_human_output_names_the_sections(populated):
    redis_url = populated["url"]
    out = cli("stats", env={"REDIS_URL": redis_url, "COLUMNS": "160"})
    assert out.code == 0, out.stderr
    for text in ("hit rate", "memory", "pub/sub", "keys by family", "remaining TTL", "~"):
        assert text in out.stdout


def _families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(metric, **labels: str) -> float:
    matches = [s.value for s in metric.samples if s.labels == labels]
    assert len(matches) == 1, (metric.name, labels, metric.samples)
    return matches[0]


def test_prometheus_output_parses_with_the_official_parser(populated):
    redis_url = populated["url"]
    out = cli("stats", "--prometheus", env={"REDIS_URL": redis_url})
    assert out.code == 0, out.stderr
    families = _families(out.stdout)

    for name, family in families.items():
        assert name.startswith("echoes_redis_"), name
        assert family.documentation, f"{name} has no HELP"
        assert family.type in {"gauge", "counter"}, (name, family.type)
        if family.type == "counter":
            assert all(s.name == name + "_total" for s in family.samples), name
        if name.startswith("echoes_redis_memory_") and not name.endswith(("_ratio", "_keys")):
            assert name.endswith("_bytes"), name
    for line in out.stdout.splitlines():
        if line.startswith("# TYPE "):
            assert not line.split()[2].endswith("_total") or line.split()[3] == "counter"

    # counters are exposed as <name>_total and parsed back into the family without it
    assert families["echoes_redis_keyspace_hits"].type == "counter"
    assert families["echoes_redis_evicted_keys"].type == "counter"
    assert _value(families["echoes_redis_keys"], family="sessions") == 33
    assert _value(families["echoes_redis_keys"], family="other") == 2
    assert _value(families["echoes_redis_keys"], family="item_defs") == populated["items"]
    by_ttl = families["echoes_redis_keys_by_ttl"]
    assert _value(by_ttl, family="sessions", bucket="none") == 3
    assert _value(by_ttl, family="sessions", bucket="60-300s") == 10
    assert _value(by_ttl, family="inventories", bucket="300-600s") == 5
    assert _value(families["echoes_redis_memory_estimated_bytes"], family="sessions") > 0
    assert _value(families["echoes_redis_memory_used_bytes"]) > 0
    assert _value(families["echoes_redis_workers_connected"]) == 1
    assert _value(families["echoes_redis_pubsub_channels"], family="location") == 1
    assert _value(families["echoes_redis_pubsub_patterns"]) == 1
    version = families["echoes_redis_gamedata_info"].samples[0].labels["version"]
    assert len(version) == 64  # the content hash
    (server,) = families["echoes_redis_server_info"].samples
    assert server.labels["role"] == "master"
    assert re.fullmatch(r"\d+\.\d+\.\d+", server.labels["version"])
    assert abs(_value(families["echoes_redis_stats_timestamp_seconds"]) - time.time()) < 60


def test_prometheus_escapes_label_values():
    text = prometheus.Exposition()
    text.metric("x_info", "gauge", "help with \\ and\nnewline", [({"v": 'a"b\\c\nd'}, 1)])
    parsed = _families(text.text())["echoes_redis_x_info"]
    assert parsed.samples[0].labels == {"v": 'a"b\\c\nd'}
    assert parsed.documentation == "help with \\ and\nnewline"


def test_watch_prints_bounded_json_lines(private_redis):
    """On a server of its own (no other client's traffic), the intervals are exactly empty:
    stats' own commands and lookups are left out."""
    private_redis.start()
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    for cid in range(1, 11):
        client.hset(keys.session_key(cid), mapping={"worker_id": WORKER})
        client.expire(keys.session_key(cid), 500)
    client.close()
    started = time.monotonic()
    out = cli(
        "stats", "--watch", "0.2", "--count", "3", "--json",
        env={"REDIS_URL": private_redis.url},
    )  # fmt: skip
    assert out.code == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3
    snaps = [json.loads(line) for line in lines]
    assert snaps[0]["interval"] is None
    assert [s["ttl"]["sessions"]["buckets"]["300-600s"] for s in snaps] == [10, 10, 10]
    for snap in snaps[1:]:
        assert snap["interval"]["seconds"] >= 0.2
        assert snap["interval"]["ops_per_sec"] == 0
        assert snap["interval"]["keyspace_hits"] == 0
        assert snap["interval"]["keyspace_misses"] == 0
    # the since-start counters did move: the TTL reads of each poll are lookups
    assert snaps[2]["cache"]["keyspace_hits"] - snaps[0]["cache"]["keyspace_hits"] == 20
    assert time.monotonic() - started >= 0.4  # two waits of 0.2 s between three polls


def test_watch_no_keys_skips_the_walk(populated):
    redis_url = populated["url"]
    out = cli(
        "stats", "--watch", "0.1", "--count", "2", "--json", "--no-keys",
        env={"REDIS_URL": redis_url},
    )  # fmt: skip
    assert out.code == 0, out.stderr
    snaps = [json.loads(line) for line in out.stdout.strip().splitlines()]
    assert [s["families"] for s in snaps] == [None, None]
    assert [s["ttl"] for s in snaps] == [None, None]
    assert snaps[1]["clients"]["workers_connected"] == [WORKER]
    assert snaps[1]["interval"] is not None


def test_watch_human_output_repeats(populated):
    redis_url = populated["url"]
    out = cli("stats", "--watch", "0.1", "--count", "2", env={"REDIS_URL": redis_url})
    assert out.code == 0, out.stderr
    assert out.stdout.count("keys by family") == 2
    assert "last interval" in out.stdout


async def test_interval_counts_only_other_clients_traffic(private_redis):
    private_redis.start()
    other = redis.Redis.from_url(private_redis.url, decode_responses=True)
    other.set("a", "1")
    other.set(keys.session_key(1), "not a hash")  # TTL-read by the snapshot: a hit
    async with open_redis(Settings.from_dsn(private_redis.url).redis_target()) as r:
        first = await ops.snapshot(r)
        for _ in range(7):
            other.get("a")  # hits
        for _ in range(4):
            other.get("missing")  # misses
        other.set("c", "3")
        second = await ops.snapshot(r, previous=first)
    other.close()
    assert first.own.keyspace_hits == 1  # its TTL read of the session, plus no version
    interval = second.interval
    assert interval is not None
    assert (interval.keyspace_hits, interval.keyspace_misses) == (7, 4)
    assert interval.commands == 12  # 11 GETs + 1 SET; none of the snapshot's own
    assert interval.hit_rate == pytest.approx(7 / 11)
    assert interval.seconds > 0


def test_interval_is_none_across_a_restart():
    def snap(run_id: str, uptime: int) -> ops.StatsSnapshot:
        zero = ops.Counters(0, 0, 0, 0, 0)
        memory = ops.MemoryStats(0, 0, 0, 0, 0, None, "noeviction")
        clients = ops.ClientStats(0, True, 0, [], 0, 0, 0)
        pubsub = ops.PubSubStats(0, 0, True, None, {}, [])
        return ops.StatsSnapshot(
            0.0, run_id, "7", "master", uptime, 0, zero, 0, memory, clients, pubsub,
            None, None, {}, 0.0,
        )  # fmt: skip

    assert ops.interval_between(snap("a", 10), snap("b", 20)) is None
    assert ops.interval_between(snap("a", 10), snap("a", 5)) is None
    assert ops.interval_between(snap("a", 10), snap("a", 20)) is not None


def test_ttl_buckets_and_channel_families():
    assert ops.ttl_bucket(-1) == "none"
    assert ops.ttl_bucket(0) == "0-60s"
    assert ops.ttl_bucket(59) == "0-60s"
    assert ops.ttl_bucket(60) == "60-300s"
    assert ops.ttl_bucket(1799) == "600-1800s"
    assert ops.ttl_bucket(1800) == "1800s+"
    assert ops.ttl_bucket_labels() == [
        "0-60s", "60-300s", "300-600s", "600-1800s", "1800s+", "none",
    ]  # fmt: skip
    assert ops.channel_family("game:broadcast") == "broadcast"
    assert ops.channel_family("game:workers") == "workers"
    assert ops.channel_family("location:overpass") == "location"
    assert ops.channel_family("player:42") == "player"
    assert ops.channel_family("player:abc") == "other"
    assert ops.channel_family("location:a:b:c*") == "other"
    assert ops.channel_family("news") == "other"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--prometheus", "--json"), "pick one"),
        (("--prometheus", "--watch", "5"), "--prometheus prints one snapshot"),
        (("--count", "3"), "--count needs --watch"),
    ],
)
def test_conflicting_options_are_usage_errors(redis_url, args, fragment):
    out = cli("stats", *args, env={"REDIS_URL": redis_url})
    assert out.code == ExitCode.USAGE
    assert fragment in out.one_error_line()


def test_unreachable_server_is_one_line_exit_4():
    out = cli("stats", "--json", env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert out.code == ExitCode.UNREACHABLE
    assert "connection refused" in out.one_error_line()
    assert out.stdout == ""


def test_ctrl_c_during_watch_exits_130_with_one_line(populated):
    redis_url = populated["url"]
    env = {**os.environ, "REDIS_URL": redis_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "echoes_ops", "stats", "--watch", "0.2", "--json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell may start background jobs with SIGINT ignored; the child must see it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first poll is done
        assert json.loads(first)["families"]["sessions"]["keys"] == 33
        proc.send_signal(signal.SIGINT)  # between polls (or in one): either way, exit 130
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == ExitCode.INTERRUPTED
    assert err.strip() == "echoes-ops: interrupted"


def test_denied_commands_degrade_instead_of_failing(populated):
    admin = redis.Redis.from_url(populated["url"], decode_responses=True)
    admin.acl_setuser(
        "viewer",
        enabled=True,
        passwords=["+viewer-pw"],
        keys=["~*"],
        channels=["&*"],
        commands=["+@all", "-memory", "-client", "-pubsub"],
    )
    admin.close()
    url = populated["url"].replace("redis://", "redis://viewer:viewer-pw@")
    out = cli("stats", "--json", env={"REDIS_URL": url})
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["families"]["sessions"]["keys"] == 33  # counts still exact
    assert data["families"]["sessions"]["estimated_bytes"] is None  # MEMORY USAGE denied
    assert data["clients"]["visible"] is False
    assert data["pubsub"]["listed"] is False
    assert "not allowed" in data["pubsub"]["why_not_listed"]
    prom = cli("stats", "--prometheus", env={"REDIS_URL": url})
    families = _families(prom.stdout)
    assert "echoes_redis_workers_connected" not in families  # unknown, not a false 0
    assert _value(families["echoes_redis_keys"], family="sessions") == 33


def _family_by_every_parser(key: bytes | str) -> str:
    """The rule family_of keeps: every parser in turn (the first that accepts the key)."""
    from echoes_ops.contract import keys as k

    try:
        text = key.decode("utf-8") if isinstance(key, bytes) else key
    except UnicodeDecodeError:
        return "other"
    for parse, family in [
        (k.parse_session_key, "sessions"),
        (k.parse_inventory_key, "inventories"),
        (k.parse_presence_key, "presence"),
        (k.parse_location_cache_key, "location_cache"),
        (k.parse_item_def_key, "item_defs"),
        (k.parse_npc_def_key, "npc_defs"),
        (k.parse_worker_meta_key, "worker_keys"),
        (k.parse_worker_connections_key, "worker_keys"),
        (k.parse_lock_key, "locks"),
    ]:
        if parse(text) is not None:
            return family
    return "echoes" if text.startswith(k.NAMESPACE_PREFIX) else "other"


def test_family_of_tries_only_the_parsers_of_the_keys_first_segment() -> None:
    """family_of looks up a key's first segment before parsing (a walk classifies every key
    of the keyspace): every key still lands in the family that trying every parser gives."""
    import itertools

    from echoes_ops.operations.keyspace import family_of

    heads = ["player", "location", "item", "npc", "worker", "lock", "echoes", "filler", "", "p"]
    middles = ["5", "05", "0", "-1", "a", "a:b", "loc_1", "w1", "x y", "*", ""]
    tails = [":session", ":inventory", ":players", ":cache", ":def", ":meta", ":connections", ""]
    corpus: list[str | bytes] = [
        f"{h}:{m}{t}" for h, m, t in itertools.product(heads, middles, tails)
    ]
    corpus += ["player", "lock", "lock:", "echoes:x", "player:5:session:x", b"\xff:1", b"lock:z"]
    seen = set()
    for key in corpus:
        assert family_of(key) == _family_by_every_parser(key), key
        seen.add(family_of(key))
    assert seen >= {"sessions", "inventories", "presence", "location_cache", "item_defs"}
    assert seen >= {"npc_defs", "worker_keys", "locks", "echoes", "other"}
