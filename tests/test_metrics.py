"""Domain metrics and `metrics serve` against real redis-server and PostgreSQL processes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.local.redis_server import free_port
from echoes_ops.operations.metrics.source import Cached
from echoes_ops.operations.migrations import migrate
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)
BIN = Path(sys.executable).parent / "echoes-ops"


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, object], name: str, **labels: str) -> float:
    samples = [s for s in fams[name].samples if s.labels == labels]  # type: ignore[attr-defined]
    assert len(samples) == 1, (name, labels, fams[name].samples)  # type: ignore[attr-defined]
    return float(samples[0].value)


class Server:
    """`echoes-ops metrics serve` as a real process; its URL from the listening line."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def scrape(self, *, context: ssl.SSLContext | None = None) -> str:
        with urllib.request.urlopen(self.url, timeout=30, context=context) as reply:
            return reply.read().decode()


@contextmanager
def serving(env: dict[str, str], *args: str) -> Iterator[Server]:
    proc = subprocess.Popen(
        [str(BIN), "metrics", "serve", "--port", "0", "--json", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        event = json.loads(line)
        assert event["event"] == "listening"
        yield Server(proc, event["url"])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


@pytest.fixture
def migrated(database_url: str) -> str:
    asyncio.run(migrate(database_url))
    return database_url


# -- the cache ---------------------------------------------------------------------------------


async def test_cached_reads_once_per_interval_whatever_the_callers():
    now = [100.0]
    reads = []

    async def read() -> int:
        reads.append(now[0])
        await asyncio.sleep(0.01)
        return len(reads)

    cached = Cached(read, 10.0, clock=lambda: now[0])
    assert await asyncio.gather(*(cached.get() for _ in range(50))) == [1] * 50
    now[0] += 9.9
    assert await cached.get() == 1
    now[0] += 0.1
    assert await asyncio.gather(*(cached.get() for _ in range(50))) == [2] * 50
    assert reads == [100.0, 110.0]


async def test_a_failed_read_is_not_retried_before_the_interval():
    now = [0.0]
    calls = 0

    async def read() -> int:
        nonlocal calls
        calls += 1
        raise RuntimeError("down")

    cached = Cached(read, 5.0, clock=lambda: now[0])
    for _ in range(20):
        with pytest.raises(RuntimeError):
            await cached.get()
    assert calls == 1
    now[0] = 5.0
    with pytest.raises(RuntimeError):
        await cached.get()
    assert calls == 2


# -- what the domain metrics say ---------------------------------------------------------------


def _populate(r: redis.Redis) -> None:
    now = time.time()
    for cid in (1, 2, 3):  # fresh, in a location
        r.hset(keys.session_key(cid), mapping={"worker_id": "w-gone", "location_id": "overpass",
                                               "last_heartbeat": str(now)})  # fmt: skip
        r.expire(keys.session_key(cid), 1800)
        r.sadd(keys.presence_key("overpass"), str(cid))
    r.hset(
        keys.session_key(4), mapping={"location_id": "overpass", "last_heartbeat": str(now - 900)}
    )
    r.hset(keys.session_key(5), mapping={"location_id": "overpass", "last_heartbeat": "loop-clock"})
    r.expire(keys.session_key(5), 1800)  # 4 has no TTL
    r.hset(keys.worker_connections_key("w-gone"), "1", "connected")  # a dead worker
    r.set(keys.lock_key("spawn_manager"), "w-gone#abc")  # dead owner, no TTL
    r.set(keys.lock_key("task"), "operator.dana#def", ex=300)


def test_stats_prometheus_adds_the_domain_metrics(redis_url, sync_r, tmp_path):
    _populate(sync_r)
    env_file = tmp_path / "api.env"
    env_file.write_text("REDIS_ENABLED=false\n")
    out = cli("stats", "--prometheus", "--drift", "--env-file", str(env_file),
              "--gamedata", str(BUNDLED_GAMEDATA), env={"REDIS_URL": redis_url})  # fmt: skip
    assert out.code == 0, out.stderr
    f = families(out.stdout)
    assert value(f, "echoes_redis_up") == 1
    assert value(f, "echoes_redis_players_online") == 3
    assert value(f, "echoes_redis_locations_with_players") == 1
    assert value(f, "echoes_redis_sessions") == 5
    assert value(f, "echoes_redis_sessions_stale") == 1
    assert value(f, "echoes_redis_sessions_unknown_heartbeat") == 1
    assert value(f, "echoes_redis_sessions_without_ttl") == 1
    assert value(f, "echoes_redis_workers_alive") == 0
    assert value(f, "echoes_redis_workers_dead") == 1
    assert value(f, "echoes_redis_locks_held") == 2
    assert value(f, "echoes_redis_locks_without_ttl") == 1
    assert value(f, "echoes_redis_locks_dead_owner") == 1
    assert value(f, "echoes_redis_drift", kind="no_ttl_lock") == 1
    assert value(f, "echoes_redis_drift", kind="no_ttl_session") == 1
    flag = {"flag": "REDIS_ENABLED"}
    assert value(f, "echoes_redis_flag_enabled", source="env_file", **flag) == 0
    assert value(f, "echoes_redis_flag_enabled", source="redis", **flag) == 1  # mirror unset
    assert value(f, "echoes_redis_flag_source_readable", source="postgresql", **flag) == 0
    assert value(f, "echoes_redis_flag_sources_agree", **flag) == 0
    (info,) = f["echoes_redis_gamedata_version_info"].samples  # type: ignore[attr-defined]
    assert info.labels["loaded"] == "none"
    assert len(info.labels["disk"]) == 64
    # never a label per player, location or lock
    for fam in f.values():
        for sample in fam.samples:  # type: ignore[attr-defined]
            assert not {"player", "location", "lock", "session"} & set(sample.labels)


def test_gamedata_current_after_preload_and_warmup_from_the_audit_trail(redis_url, sync_r):
    env = {"REDIS_URL": redis_url}
    assert cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env=env).code == 0
    assert cli("warmup", "--what", "static", "--gamedata", str(BUNDLED_GAMEDATA),
               env=env).code == 0  # fmt: skip
    out = cli("stats", "--prometheus", "--no-keys", "--gamedata", str(BUNDLED_GAMEDATA), env=env)
    assert out.code == 0, out.stderr
    f = families(out.stdout)
    assert value(f, "echoes_redis_gamedata_current") == 1
    (info,) = f["echoes_redis_gamedata_version_info"].samples  # type: ignore[attr-defined]
    assert info.labels["loaded"] == info.labels["disk"] != "none"
    assert value(f, "echoes_redis_warmup_last_result", result="ok") == 1
    assert value(f, "echoes_redis_warmup_last_result", result="failed") == 0
    assert abs(value(f, "echoes_redis_warmup_last_run_timestamp_seconds") - time.time()) < 60
    assert value(f, "echoes_redis_warmup_last_duration_seconds") >= 0
    assert value(f, "echoes_redis_warmup_last_success_timestamp_seconds") == value(
        f, "echoes_redis_warmup_last_run_timestamp_seconds"
    )


# -- the endpoint --------------------------------------------------------------------------------


def _commandstat(r: redis.Redis, command: str) -> int:
    stats = r.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_fifty_scrapes_a_second_read_the_tier_at_most_once_per_interval(redis_url, sync_r):
    _populate(sync_r)
    interval = 1.0
    with serving({"REDIS_URL": redis_url}, "--interval", str(interval),
                 "--drift-interval", "0") as server:  # fmt: skip
        first = families(server.scrape())  # the first reading
        # what one reading costs the server, in TIME calls (the snapshot's clock and the
        # budgeted walk steps' own timing): count them across the next reading
        times_before = _commandstat(sync_r, "time")
        refreshes = value(first, "echoes_redis_exporter_refreshes")
        wait_until(
            lambda: (
                value(families(server.scrape()), "echoes_redis_exporter_refreshes") != refreshes
            ),
            10,
            "a second reading",
            interval=0.05,
        )
        per_reading = _commandstat(sync_r, "time") - times_before
        assert per_reading >= 1
        times_before = _commandstat(sync_r, "time")
        started = time.monotonic()
        bodies: list[str] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            pending = []
            for n in range(150):  # 50 a second for 3 s
                pause = started + n / 50 - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                pending.append(pool.submit(server.scrape))
            bodies = [p.result() for p in pending]
        elapsed = time.monotonic() - started
        times_after = _commandstat(sync_r, "time")
        last = families(server.scrape())
    readings, rest = divmod(times_after - times_before, per_reading)
    assert rest == 0, (times_after - times_before, per_reading)
    assert len(bodies) == 150
    assert all("echoes_redis_sessions 5.0" in b for b in bodies)
    assert 2 <= readings <= int(elapsed / interval) + 1, (readings, elapsed)
    # the exporter's own count agrees with what the server saw
    assert value(last, "echoes_redis_exporter_refreshes") >= readings + 1


def test_sigterm_stops_cleanly_and_releases_the_port(redis_url):
    port = free_port()
    with serving({"REDIS_URL": redis_url}, "--port", str(port), "--drift-interval", "0") as server:
        assert "echoes_redis_up 1.0" in server.scrape()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) == 0
        out = server.proc.stdout.read() if server.proc.stdout else ""
        assert json.loads(out.splitlines()[-1])["event"] == "stopped"
        assert "Traceback" not in (server.proc.stderr.read() if server.proc.stderr else "")
    # the port is released: a new server binds it at once
    with serving({"REDIS_URL": redis_url}, "--port", str(port), "--drift-interval", "0") as again:
        assert "echoes_redis_up 1.0" in again.scrape()


def test_redis_down_serves_up_0_and_the_flag_from_postgresql(migrated, tmp_path):
    env_file = tmp_path / "api.env"
    env_file.write_text("REDIS_ENABLED=false\n")
    env = {"DATABASE_URL": migrated, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "ECHOES_OPS_ENV_FILE": str(env_file), "ECHOES_OPS_OPERATOR": "dana"}  # fmt: skip
    set_out = cli("flags", "set", "REDIS_ENABLED", "false", "--reason", "outage", "--yes", env=env)
    assert set_out.code == 0, set_out.stderr
    with serving(env, "--drift-interval", "0") as server:
        f = families(server.scrape())
    assert value(f, "echoes_redis_up") == 0
    assert "echoes_redis_sessions" not in f
    flag = {"flag": "REDIS_ENABLED"}
    assert value(f, "echoes_redis_flag_enabled", source="postgresql", **flag) == 0
    assert value(f, "echoes_redis_flag_enabled", source="env_file", **flag) == 0
    assert value(f, "echoes_redis_flag_source_readable", source="redis", **flag) == 0
    assert value(f, "echoes_redis_flag_sources_agree", **flag) == 1


def test_tls_from_prometheus_client(redis_url, tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
         "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    with serving({"REDIS_URL": redis_url}, "--tls-cert", str(cert), "--tls-key", str(key),
                 "--drift-interval", "0") as server:  # fmt: skip
        assert server.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        assert "echoes_redis_up 1.0" in server.scrape(context=context)
        plain = server.url.replace("https://", "http://")
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(plain, timeout=10).read()


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("--tls-cert", "/nonexistent.pem"), ExitCode.CONFIG, "--tls-key"),
        (("--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"), ExitCode.CONFIG,
         "/nonexistent.pem"),
    ],
)  # fmt: skip
def test_bad_tls_settings_are_one_line(redis_url, args, code, text):
    out = cli("metrics", "serve", "--port", "0", *args, env={"REDIS_URL": redis_url})
    assert out.code == code
    assert text in out.one_error_line()


def test_port_in_use_is_busy(redis_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli("metrics", "serve", "--port", str(port), env={"REDIS_URL": redis_url})
    assert out.code == ExitCode.BUSY
    assert "in use" in out.one_error_line()


# -- the endpoint agrees with status and flags status, under simulate load --------------------------


def _status_view(env: dict[str, str]) -> tuple[dict[str, object], dict[str, object]]:
    status = cli("status", "--json", env=env)
    assert status.code == 0, status.stderr
    flags = cli("flags", "status", "--json", env=env)
    assert flags.code in (0, 1), flags.stderr
    return json.loads(status.stdout), json.loads(flags.stdout)


def _compare(
    f: dict[str, object], status: dict[str, object], flags: dict[str, object]
) -> list[str]:
    counts = status["counts"]  # type: ignore[index]
    flag = {"flag": "REDIS_ENABLED"}
    pairs = [
        ("sessions", value(f, "echoes_redis_sessions"), counts["sessions"]),
        ("players", value(f, "echoes_redis_players_online"), counts["players_in_locations"]),
        ("locations", value(f, "echoes_redis_locations_with_players"),
         counts["locations_with_players"]),
        ("workers alive", value(f, "echoes_redis_workers_alive"), counts["workers_alive"]),
        ("workers known", value(f, "echoes_redis_workers_alive")
         + value(f, "echoes_redis_workers_dead"), counts["workers"]),
        ("locks", value(f, "echoes_redis_locks_held"), counts["locks"]),
        ("agree", value(f, "echoes_redis_flag_sources_agree", **flag), int(flags["agree"])),
    ]  # fmt: skip
    truth = status["redis_enabled"]["value"]  # type: ignore[index]
    pairs.append(("status REDIS_ENABLED", value(f, "echoes_redis_flag_enabled",
                  source="postgresql", **flag), 1 if truth == "true" else 0))  # fmt: skip
    for source in flags["sources"]:  # type: ignore[attr-defined]
        effective = source["effective"]
        if effective is not None:
            pairs.append((source["source"],
                          value(f, "echoes_redis_flag_enabled", source=source["source"], **flag),
                          1 if effective == "true" else 0))  # fmt: skip
    modes = {
        (s.labels["worker"], s.labels["mode"])
        for s in f["echoes_redis_worker_mode"].samples  # type: ignore[attr-defined]
    }
    shown = {(w["worker_id"], w["mode"]) for w in flags["workers"]}  # type: ignore[attr-defined]
    pairs.append(("worker modes", modes, shown))  # type: ignore[arg-type]
    return [f"{name}: endpoint {a} != cli {b}" for name, a, b in pairs if a != b]


@pytest.mark.timeout(240)
def test_endpoint_shows_what_status_and_flags_status_print_under_simulate_load(
    migrated, redis_url, sync_r, tmp_path
):
    env_file = tmp_path / "api.env"
    env_file.write_text("REDIS_ENABLED=true\n")
    env = {"DATABASE_URL": migrated, "REDIS_URL": redis_url,
           "ECHOES_OPS_ENV_FILE": str(env_file), "ECHOES_OPS_OPERATOR": "dana"}  # fmt: skip
    assert cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env=env).code == 0
    assert (
        cli("flags", "set", "REDIS_ENABLED", "true", "--reason", "on", "--yes", env=env).code == 0
    )
    # players heartbeat, fight, reconnect and send messages, but do not move: which
    # locations hold players must hold still between the scrape and the CLI's reads
    sim = subprocess.Popen(
        [str(BIN), "simulate", "--workers", "2", "--players", "60", "--duration", "300",
         "--move-rate", "0", "--gamedata", str(BUNDLED_GAMEDATA), "--json"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def started() -> dict:  # the workers are up and the players in
            counts = _status_view(env)[0]["counts"]
            return counts if counts["workers_alive"] == 2 and counts["sessions"] >= 50 else {}

        wait_until(started, 60, "simulate's 2 workers and 50 players", interval=0.2)
        interval = 1.0
        with serving(env, "--interval", str(interval), "--drift-interval", "0") as server:
            compared = {"refreshes": -1.0, "problems": ["no reading compared"]}

            def agrees() -> tuple[dict, dict] | None:
                """A fresh reading (its refresh count moved) that the CLI's agree with."""
                f = families(server.scrape())
                refreshes = value(f, "echoes_redis_exporter_refreshes")
                if refreshes == compared["refreshes"]:
                    return None  # the cached reading, compared already
                status, flags = _status_view(env)
                compared.update(refreshes=refreshes, problems=_compare(f, status, flags))
                return None if compared["problems"] else (f, status)

            try:
                f, status = wait_until(agrees, 20, "a reading status agrees with", interval=0.1)
            except AssertionError as failed:
                raise AssertionError(f"{failed}: {compared['problems']}") from None
            assert value(f, "echoes_redis_up") == 1
            assert value(f, "echoes_redis_sessions") >= 50
            assert value(f, "echoes_redis_players_online") > 0
            assert value(f, "echoes_redis_workers_alive") == 2
            assert value(f, "echoes_redis_workers_by_mode", mode="redis") == 2
            assert status["redis_enabled"]["modes"] == "2/2 workers redis"
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(timeout=60)


def test_scrapes_keep_working_in_threads_while_a_reading_runs(redis_url):
    """Requests are served in threads; none is lost while the loop reads the tier."""
    with serving({"REDIS_URL": redis_url}, "--interval", "1", "--drift-interval", "0") as server:
        results: list[str] = []
        threads = [
            threading.Thread(target=lambda: results.append(server.scrape())) for _ in range(20)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(results) == 20


def test_audit_records_that_fell_back_to_the_stream(migrated, redis_url, sync_r):
    """A write audited while PostgreSQL is down is counted until `audit` copies it in; reading
    the metrics copies nothing (the exporter only reads)."""
    down = {"DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/x",
            "REDIS_URL": redis_url, "ECHOES_OPS_OPERATOR": "dana"}  # fmt: skip
    held = cli("locks", "hold", "job", "--ttl", "5m", "--reason", "pg down", env=down)
    assert held.code == 0, held.stderr
    assert sync_r.scard(keys.AUDIT_UNSYNCED_KEY) == 1
    up = {**down, "DATABASE_URL": migrated}
    out = cli("stats", "--prometheus", "--no-keys", env=up)
    assert out.code == 0, out.stderr
    assert value(families(out.stdout), "echoes_redis_audit_unsynced_records") == 1
    assert sync_r.scard(keys.AUDIT_UNSYNCED_KEY) == 1  # still there: nothing was copied
    assert cli("audit", env=up).code == 0  # the audit reader copies it in
    out = cli("stats", "--prometheus", "--no-keys", env=up)
    assert value(families(out.stdout), "echoes_redis_audit_unsynced_records") == 0
