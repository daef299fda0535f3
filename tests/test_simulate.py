"""`echoes-ops simulate` end to end: real worker processes against a real redis-server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from echoes_ops.contract import keys
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)
BIN = Path(sys.executable).parent / "echoes-ops"


def run_cli(redis_url: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url}
    return subprocess.run(
        [str(BIN), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_simulation_delivers_everything_and_leaves_nothing(redis_url, sync_r):
    out = run_cli(
        redis_url,
        "simulate",
        "--workers",
        "3",
        "--players",
        "150",
        "--duration",
        "4",
        "--move-rate",
        "1",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["published"]["location"] > 100
    assert report["expected"] == report["received"] > 0
    assert report["lost"] == 0
    assert report["duplicated"] == 0
    assert report["latency_ms"]["count"] > 0
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    assert report["moves"] > 0
    assert report["spawn_runs"] >= 1
    assert report["leftover"] == {
        "sessions": 0,
        "presence_members": 0,
        "worker_connections": 0,
        "worker_metas": 0,
        "locks": 0,
    }
    assert sync_r.dbsize() == 0


def test_crashed_workers_leave_detectable_drift(redis_url, sync_r):
    out = run_cli(
        redis_url,
        "simulate",
        "--workers",
        "3",
        "--players",
        "90",
        "--duration",
        "4",
        "--crash-workers",
        "1",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["crashed"] == ["sim-1"]
    assert report["lost"] == 0  # survivors still got everything survivors published
    assert report["leftover"]["sessions"] == 30
    assert report["leftover"]["presence_members"] == 30
    # the drift: sessions and a connections hash that name a worker with no live client
    orphaned = [
        k
        for k in sync_r.scan_iter(match=keys.SESSION_PATTERN, count=1000)
        if sync_r.hget(k, "worker_id") == "sim-1"
    ]
    assert len(orphaned) == 30
    assert sync_r.hlen(keys.worker_connections_key("sim-1")) == 30
    assert "sim-1" not in {c["name"] for c in sync_r.client_list()}
    assert sync_r.ttl(keys.worker_meta_key("sim-1")) <= keys.WORKER_META_TTL  # expiring


def _simulate(redis_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN), "simulate", "--workers", "2", "--players", "60", "--duration", "60", "--json"],
        env={**os.environ, "REDIS_URL": redis_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stopped_cleanly(proc: subprocess.Popen[str]) -> None:
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    report = json.loads(stdout)
    assert report["interrupted"] is True
    assert "did not report in time" not in stderr  # every worker stopped when asked
    assert report["duration_s"] < 30
    assert all(v == 0 for v in report["leftover"].values()), report["leftover"]


def test_ctrl_c_stops_cleanly(redis_url, sync_r):
    """Ctrl-C while the players play (their first move heard on a location channel)."""
    listener = sync_r.pubsub()
    listener.psubscribe("location:*")
    proc = _simulate(redis_url)
    try:

        def playing() -> bool:  # players move only once the run has told them to play
            assert proc.poll() is None, proc.communicate()
            message = listener.get_message(timeout=0.05)  # (NPC spawns come before)
            return message is not None and "player_arrived" in str(message["data"])

        wait_until(playing, timeout=60, what="the players' first move")
        proc.send_signal(signal.SIGINT)
        _stopped_cleanly(proc)
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()


def _worker_processes(pid: int) -> list[int]:
    """The simulation's worker processes (spawned children; not its resource tracker)."""
    found = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(c) for c in found.read_text().split()] if found.exists() else []
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_ctrl_c_while_a_worker_is_still_starting(redis_url, sync_r):
    """Ctrl-C before the play begins: one worker has its players in and waits for the go,
    the other is frozen while it starts (SIGSTOP), so the go cannot have been given. Both
    stop, report and disconnect their players at once (the ready one used to wait for a go
    that never came, and the run hung until it killed them, leaving their players)."""
    proc = _simulate(redis_url)
    frozen: list[int] = []
    try:

        def one_frozen() -> bool:
            assert proc.poll() is None, proc.communicate()
            workers = _worker_processes(proc.pid)
            if len(workers) == 2:
                os.kill(workers[1], signal.SIGSTOP)
                frozen.append(workers[1])
            return bool(frozen)

        wait_until(one_frozen, timeout=30, what="the second worker process")

        def one_ready() -> bool:  # the running worker's 30 players are in
            assert proc.poll() is None, proc.communicate()
            return sum(1 for _ in sync_r.scan_iter(match=keys.SESSION_PATTERN, count=100)) >= 30

        wait_until(one_ready, timeout=60, what="the running worker's players")
        proc.send_signal(signal.SIGINT)
        os.kill(frozen[0], signal.SIGCONT)
        _stopped_cleanly(proc)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()


def test_dry_run_starts_nothing(redis_url, sync_r):
    out = run_cli(redis_url, "simulate", "--players", "500", "--dry-run", "--json")
    assert out.returncode == 0
    plan = json.loads(out.stdout)
    assert plan["dry_run"] is True
    assert plan["players_per_worker"] == 125
    assert sync_r.dbsize() == 0


def test_refuses_to_crash_every_worker(redis_url):
    out = run_cli(redis_url, "simulate", "--workers", "2", "--crash-workers", "2")
    assert out.returncode == 2
    assert "at least one worker" in out.stderr
