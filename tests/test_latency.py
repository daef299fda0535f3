"""`echoes-ops latency` against real redis-server processes: SLOWLOG decoded, LATENCY events,
the round-trip sample, ACL denials as notes."""

from __future__ import annotations

import json

import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.local.redis_server import free_port
from echoes_ops.operations.latency import RoundTrip, command_family
from tests.cli_helpers import cli

SLOW_SCRIPT = (
    "local x = 0 for i = 1, 2000000 do x = x + 1 end redis.call('HSET', KEYS[1], 'a', 'b') return x"
)


@pytest.mark.parametrize(
    ("args", "family"),
    [
        (["HGETALL", "player:5:session"], "sessions"),
        (["SMEMBERS", "location:overpass:players"], "presence"),
        (["EVALSHA", "abc", "1", "player:5:inventory", "x"], "script:inventories"),
        (["EVAL", "return 1", "0"], "script"),
        (["PUBLISH", "location:overpass", "{}"], "pubsub:location"),
        (["PUBLISH", "game:broadcast", "{}"], "pubsub:broadcast"),
        (["MEMORY", "USAGE", "item:rusty_pipe:def"], "item_defs"),
        (["SCAN", "0", "COUNT", "1000"], "server"),
        (["client", "list"], "server"),
        (["GET", "somebody:else"], "other"),
        ([], "server"),
    ],
)
def test_command_family(args, family):
    assert command_family(args) == family


def test_round_trip_percentiles():
    rt = RoundTrip.of([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert (rt.samples, rt.min_ms, rt.p99_ms, rt.max_ms) == (100, 1.0, 99.0, 100.0)
    assert rt.avg_ms == pytest.approx(50.5)
    assert RoundTrip.of([]).samples == 0


@pytest.fixture
def slow_server(private_redis):
    private_redis.extra_args = [
        "--enable-debug-command", "yes",
        "--latency-monitor-threshold", "1",
        "--slowlog-log-slower-than", "5000",
    ]  # fmt: skip
    private_redis.start()
    return private_redis


def test_latency_shows_slowlog_events_and_round_trip(slow_server):
    worker = redis.Redis.from_url(slow_server.url, decode_responses=True)
    worker.client_setname("w-lat")
    worker.hset(keys.worker_meta_key("w-lat"), mapping={"mode": "redis"})
    worker.eval(SLOW_SCRIPT, 1, keys.session_key(42))
    other = redis.Redis.from_url(slow_server.url)
    other.execute_command("DEBUG", "SLEEP", "0.03")
    other.close()

    out = cli("latency", "--json", "--samples", "50", env={"REDIS_URL": slow_server.url})
    assert out.code == 0, out.stderr
    report = json.loads(out.stdout)
    entries = report["slowlog"]["entries"]
    script = next(e for e in entries if e["command"] == "EVAL")
    assert script["family"] == "script:sessions"
    assert script["key"] == keys.session_key(42)
    assert script["client"] == "w-lat"
    assert script["worker"] is True
    assert script["duration_us"] >= 5000
    assert "for i" not in json.dumps(script)  # argument values are never shown
    debug = next(e for e in entries if e["command"] == "DEBUG")
    assert debug["family"] == "server"
    assert debug["worker"] is False
    assert debug["duration_us"] >= 30_000
    assert report["slowlog"]["slower_than_us"] == 5000
    assert report["slowlog"]["length"] >= 2
    monitor = report["latency_monitor"]
    assert monitor["threshold_ms"] == 1
    (command,) = [e for e in monitor["events"] if e["event"] == "command"]
    assert command["max_ms"] >= 30
    assert command["history"]
    assert command["history"][-1]["ms"] == command["latest_ms"]
    rt = report["round_trip"]
    assert rt["samples"] == 50
    assert 0 < rt["min_ms"] <= rt["avg_ms"] <= rt["max_ms"]
    assert rt["min_ms"] <= rt["p99_ms"] <= rt["max_ms"]
    assert report["notes"] == []

    human = cli("latency", "--samples", "5", env={"REDIS_URL": slow_server.url})
    assert human.code == 0, human.stderr
    assert "round trip over 5 PINGs" in human.stdout
    assert "script:sessions" in human.stdout
    assert "w-lat (worker)" in human.stdout
    assert "command" in human.stdout
    worker.close()


def test_monitor_off_and_acl_denials_are_notes(private_redis):
    private_redis.start()
    admin = redis.Redis.from_url(private_redis.url)
    admin.execute_command(
        "ACL", "SETUSER", "viewer", "on", ">pw", "~*", "&*", "+@all",
        "-slowlog", "-latency", "-config",
    )  # fmt: skip
    admin.close()
    port = private_redis.url.rsplit(":", 1)[1].split("/")[0]
    url = f"redis://viewer:pw@127.0.0.1:{port}/0"
    out = cli("latency", "--json", "--samples", "3", env={"REDIS_URL": url})
    assert out.code == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["slowlog"]["entries"] == []
    assert report["slowlog"]["length"] is None
    assert report["latency_monitor"]["threshold_ms"] is None
    notes = " ".join(report["notes"])
    assert "SLOWLOG not allowed" in notes
    assert "LATENCY not allowed" in notes
    assert "CONFIG GET not allowed" in notes
    assert report["round_trip"]["samples"] == 3


def test_monitor_off_is_said(redis_url):
    out = cli("latency", "--json", "--samples", "1", env={"REDIS_URL": redis_url})
    assert out.code == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["latency_monitor"]["threshold_ms"] == 0
    assert any("latency monitor is off" in n for n in report["notes"])


def test_unreachable_is_one_line():
    out = cli("latency", env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert out.code == ExitCode.UNREACHABLE
    assert "cannot connect" in out.one_error_line()


async def test_dashboard_latency_pane_shows_the_same_report(slow_server):
    """Pilot: `l` opens the pane; it reads through the poller process like every panel."""
    from textual.widgets import Static

    from echoes_ops.tui.panels.latency import LatencyScreen
    from tests.test_tui_pilot import make_app, text_of, until

    worker = redis.Redis.from_url(slow_server.url, decode_responses=True)
    worker.client_setname("w-pane")
    worker.hset(keys.worker_meta_key("w-pane"), mapping={"mode": "redis"})
    worker.eval(SLOW_SCRIPT, 1, keys.session_key(7))
    app = make_app(slow_server.url)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LatencyScreen))
        pane = app.screen.query_one("#latency-text", Static)
        await until(pilot, lambda: "round trip over 20 PINGs" in text_of(pane), timeout=20)
        shown = text_of(pane)
        assert "script:sessions" in shown
        assert "w-pane (worker)" in shown
        assert "latency monitor events over 1 ms" in shown
        assert "command" in shown
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, LatencyScreen))
    worker.close()
