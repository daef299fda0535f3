"""Smaller holes (issue #13 item 6): certificate checks turned off in the URL, bad bytes
and bad ports as input, and a subscriber dropped for its output buffer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.local.redis_server import RedisServer
from tests.cli_helpers import cli
from tests.conftest import REPO
from tests.faults.helpers import CliProcess
from tests.test_tls import TlsRedis, tls_redis  # noqa: F401 - the fixture
from tests.waiting import wait_until

# -- certificate checks ---------------------------------------------------------------------


def test_cert_checks_off_in_the_url_is_refused(tls_redis: TlsRedis) -> None:  # noqa: F811
    url = f"rediss://localhost:{tls_redis.tls_port}/0?ssl_cert_reqs=none"
    out = cli("status", "--json", env={"REDIS_URL": url})
    assert out.code == ExitCode.CONFIG
    line = out.one_error_line()
    assert "ssl_cert_reqs=none turns TLS certificate checks off; refused" in line
    assert "--insecure" in line
    assert out.stdout == ""


@pytest.mark.parametrize("how", ["flag", "env"])
def test_insecure_connects_and_warns_on_every_run(tls_redis: TlsRedis, how: str) -> None:  # noqa: F811
    url = f"rediss://localhost:{tls_redis.tls_port}/0?ssl_cert_reqs=none"
    env = {"REDIS_URL": url}
    args = ["status", "--json"]
    if how == "flag":
        args = ["--insecure", *args]
    else:
        env["REDIS_TLS_INSECURE"] = "1"
    for _ in range(2):
        out = cli(*args, env=env)
        assert out.code == 0, out.stderr
        assert out.stderr.startswith("echoes-ops: warning: TLS certificate checks are OFF")
        assert json.loads(out.stdout)["server"]


# -- bad input ------------------------------------------------------------------------------


def test_non_numeric_port_is_bad_input() -> None:
    out = cli("status", env={"REDIS_URL": "redis://localhost:63x9/0"})
    assert out.code == ExitCode.CONFIG
    assert "REDIS_URL has a port that is not a number" in out.one_error_line()


@pytest.mark.parametrize(
    "args",
    [
        [b"locks", b"show", b"spawn\xff"],
        [b"locations", b"show", b"ru\xffins"],
        [b"broadcast", b"location", b"ru\xffins", b"hello", b"--dry-run"],
    ],
    ids=["locks-show", "locations-show", "broadcast"],
)
def test_non_utf8_arguments_are_bad_input(redis_url, args) -> None:
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"echoes_ops", *args],
        cwd=REPO,
        env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        check=False,
    )
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode in (ExitCode.USAGE, ExitCode.CONFIG), err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("echoes-ops: error: ")
    assert "not valid UTF-8" in lines[0]


# -- a subscriber dropped for its output buffer --------------------------------------------


CHANNEL = "game:broadcast"


def freeze_flood_thaw(r: redis.Redis, pid: int) -> None:
    """Freeze the subscriber process (SIGSTOP), flood its channel until Redis drops it at
    client-output-buffer-limit pubsub, stop the flood, thaw it (SIGCONT)."""
    wait_until(lambda: r.pubsub_numsub(CHANNEL)[0][1] == 1, what="the subscriber")
    os.kill(pid, signal.SIGSTOP)
    stop = threading.Event()

    def flood() -> None:
        payload = json.dumps({"type": "global_broadcast", "data": {"message": "x" * 2000}})
        while not stop.is_set():
            r.publish(CHANNEL, payload)

    writer = threading.Thread(target=flood, daemon=True)
    writer.start()
    try:
        wait_until(lambda: r.pubsub_numsub(CHANNEL)[0][1] == 0, what="the drop")
    finally:
        stop.set()
        writer.join()
        os.kill(pid, signal.SIGCONT)


def test_tail_names_the_output_buffer_limit(private_redis: RedisServer) -> None:
    """tail frozen (SIGSTOP) while a writer floods its channel: Redis drops it at
    client-output-buffer-limit pubsub. Thawed, it reconnects and says why."""
    private_redis.extra_args = ["--client-output-buffer-limit", "pubsub 256kb 128kb 1"]
    private_redis.start()
    r = redis.Redis.from_url(private_redis.url)
    run = CliProcess("tail", CHANNEL, env={"REDIS_URL": private_redis.url})
    try:
        freeze_flood_thaw(r, run.proc.pid)
        wait_until(lambda: "reconnected after" in run.stderr, what="the reconnect")
        run.signal(signal.SIGINT)
        done = run.finish()
    finally:
        run.kill()
        r.close()
    gap = next(line for line in done.stderr.splitlines() if "reconnected after" in line)
    assert "client-output-buffer-limit pubsub" in gap
    assert "messages published in the gap were lost" in gap


def test_worker_names_the_output_buffer_limit(private_redis: RedisServer) -> None:
    """The same for a reference worker: frozen, flooded, dropped; thawed, its meta says
    why its pub/sub connection was lost."""
    private_redis.extra_args = ["--client-output-buffer-limit", "pubsub 256kb 128kb 1"]
    private_redis.start()
    r = redis.Redis.from_url(private_redis.url, decode_responses=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.worker_proc", private_redis.url, "sim-5"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        freeze_flood_thaw(r, worker.pid)
        reason = wait_until(
            lambda: r.hget(keys.worker_meta_key("sim-5"), "last_disconnect"),
            what="the worker's reason",
        )
    finally:
        worker.send_signal(signal.SIGCONT)
        worker.kill()
        worker.wait()
        r.close()
    assert "client-output-buffer-limit pubsub" in reason
