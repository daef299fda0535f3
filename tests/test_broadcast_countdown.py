"""``broadcast --in/--every``: the countdown's steps as the plan's listener hears them, its
dry run, its Ctrl-C (real redis-server), and the durations it reads and says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from echoes_ops.errors import ExitCode
from echoes_ops.operations.broadcast import (
    BroadcastArgumentError,
    countdown_steps,
    parse_duration,
    say_duration,
)
from tests import broadcast_helpers
from tests.broadcast_helpers import BIN, audit_records
from tests.cli_helpers import cli
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

# the shared fixtures (tests/broadcast_helpers.py)
env = broadcast_helpers.env
listener = broadcast_helpers.listener
everything = broadcast_helpers.everything


# -- countdown ----------------------------------------------------------------------------


def test_countdown_sends_each_step(env, listener, sync_r):
    started = time.monotonic()
    out = cli("broadcast", "global", "Maintenance", "--in", "2s", "--every", "1s", "--yes", env=env)
    elapsed = time.monotonic() - started
    assert out.code == 0, out.stderr
    assert 1.9 <= elapsed < 5
    assert "[3/3] sent 'Maintenance'" in out.stdout
    # the players reached are counted once (a keyspace walk), after the first step
    assert "[1/3] sent 'Maintenance in 2 seconds' for 0 players (0 connections)" in out.stdout
    assert "[2/3] sent 'Maintenance in 1 second': " in out.stdout
    messages = [payload["data"]["message"] for _, _, payload in listener.drain()]
    assert messages == ["Maintenance in 2 seconds", "Maintenance in 1 second", "Maintenance"]
    (record,) = audit_records(sync_r)
    assert record["result"] == "ok"
    assert record["args"]["in"] == "2s"
    assert record["detail"]["planned"] == 3
    assert [s["message"] for s in record["detail"]["sent"]] == messages


def test_countdown_dry_run_lists_the_steps(env, everything):
    out = cli(
        "broadcast", "global", "Maintenance", "--in", "5m", "--every", "1m", "--dry-run", "--json",
        env=env,
    )  # fmt: skip
    assert out.code == 0, out.stderr
    report = json.loads(out.stdout)
    assert [s["message"] for s in report["countdown"]] == [
        "Maintenance in 5 minutes",
        "Maintenance in 4 minutes",
        "Maintenance in 3 minutes",
        "Maintenance in 2 minutes",
        "Maintenance in 1 minute",
        "Maintenance",
    ]
    assert everything() == []


def test_countdown_ctrl_c_stops_cleanly_and_is_audited(redis_url, sync_r, listener):
    env = {**os.environ, "REDIS_URL": redis_url, "ECHOES_OPS_OPERATOR": "erin"}
    proc = subprocess.Popen(
        [str(BIN), "broadcast", "global", "Restart", "--in", "20s", "--every", "1s", "--yes"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        got: list[str] = []

        def two_announcements() -> bool:
            got.extend(p["data"]["message"] for _, _, p in listener.drain())
            return len(got) >= 2

        wait_until(two_announcements, 15, "the countdown's first two announcements", interval=0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    got += [p["data"]["message"] for _, _, p in listener.drain()]  # it has exited: all in
    assert got[:2] == ["Restart in 20 seconds", "Restart in 19 seconds"]
    assert "Restart" not in got  # the final message never went out
    (record,) = audit_records(sync_r)
    assert record["result"] == "interrupted"
    assert record["operator"] == "erin"
    assert record["detail"]["planned"] == 21
    assert [s["message"] for s in record["detail"]["sent"]] == got
    assert f"[{len(got)}/21] sent" in stdout


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2.5s", 2.5), ("45", 45)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "-1s", "0", "0s", "1h-5m", "inf", "nan"])
def test_parse_duration_refuses(text):
    with pytest.raises(BroadcastArgumentError):
        parse_duration(text)


def test_say_duration():
    assert say_duration(300) == "5 minutes"
    assert say_duration(60) == "1 minute"
    assert say_duration(90) == "1 minute 30 seconds"
    assert say_duration(3600) == "1 hour"
    assert say_duration(1) == "1 second"
    assert say_duration(0.5) == "0.5 seconds"


def test_countdown_steps_with_an_uneven_step():
    steps = countdown_steps("Down", 300, 120)
    assert [(s.at, s.message) for s in steps] == [
        (0, "Down in 5 minutes"),
        (120, "Down in 3 minutes"),
        (240, "Down in 1 minute"),
        (300, "Down"),
    ]
    assert [s.message for s in countdown_steps("Down", 60, None)] == ["Down in 1 minute", "Down"]
