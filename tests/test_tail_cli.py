"""``tail`` through the CLI against a real Redis: human lines, JSON lines, the gap after a
restart, exit codes and Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
import redis

from echoes_ops.errors import ExitCode
from echoes_ops.local.redis_server import RedisServer, free_port
from tests.cli_helpers import cli
from tests.conftest import REPO
from tests.tail_helpers import broadcast, combat, joined, picked_up, publish
from tests.waiting import wait_until


class WhenSubscribed(threading.Thread):
    """In a thread: for each step, wait until the CLI's tail is subscribed (its two
    patterns and game:broadcast), then run the step. ``join`` re-raises what failed in the
    thread: a tail that never subscribed fails the test with that line, not with the CLI's
    output missing messages."""

    def __init__(self, url: str, *steps: Callable[[redis.Redis], None]) -> None:
        super().__init__(daemon=True)
        self.url, self.steps = url, steps
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        client = redis.Redis.from_url(self.url)

        def subscribed() -> bool:
            return bool(
                client.pubsub_numpat() >= 2 and client.pubsub_numsub("game:broadcast")[0][1]
            )

        try:
            for n, step in enumerate(self.steps, 1):
                wait_until(
                    subscribed,
                    timeout=10,
                    what=f"tail to subscribe (before step {n} of {len(self.steps)})",
                    retry_on=(redis.ConnectionError,),  # the server restarting (a step did it)
                )
                step(client)
        except BaseException as exc:  # handed to the test's thread by join()
            self.error = exc
        finally:
            client.close()

    def join(self, timeout: float | None = 15) -> None:
        super().join(timeout)
        assert not self.is_alive(), "the steps were still running after tail exited"
        if self.error is not None:
            raise self.error


def test_cli_json_lines(redis_url):
    thread = WhenSubscribed(
        redis_url, lambda c: publish(c, broadcast(), ("player:3", "junk"), picked_up(), joined())
    )
    out = cli("tail", "--json", "--count", "3", "--timeout", "10", env={"REDIS_URL": redis_url})
    thread.join()
    assert out.code == 0, out.stderr
    assert out.stderr == ""
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(d["event"], d["channel"], d["type"]) for d in lines] == [
        ("message", "game:broadcast", "global_broadcast"),
        ("message", "player:3", "undecodable"),
        ("message", "location:overpass", "location_update"),
    ]
    assert lines[0]["summary"] == "announcement: Server maintenance in 5 minutes"
    assert lines[0]["latency_ms"] >= 0
    assert lines[1]["raw"] == "junk"


def test_cli_human_lines_with_filter(redis_url):
    thread = WhenSubscribed(redis_url, lambda c: publish(c, broadcast(), combat(), picked_up()))
    out = cli(
        "tail", "--player", "5", "--count", "2", "--timeout", "10", env={"REDIS_URL": redis_url}
    )
    thread.join()
    assert out.code == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    stamp = r"\d\d:\d\d:\d\d\.\d{3}"
    assert re.fullmatch(
        stamp + r"  player:5 +personal_message +to 5: combat_update You dealt 12 damage!", lines[0]
    )
    assert re.fullmatch(
        stamp + r"  location:overpass +location_update +overpass: Jocaru picked up 3x Iron "
        r"Ore \(exclude 5\)",
        lines[1],
    )
    assert "listening on game:broadcast, game:workers, location:*, player:*" in out.stderr


def test_cli_reports_the_gap_after_a_restart(private_redis: RedisServer):
    private_redis.start()

    def restart(client: redis.Redis) -> None:
        publish(client, broadcast())

        def sent() -> bool:  # the broadcast has left the server for tail's socket
            return all(c["oll"] == "0" and c["obl"] == "0" for c in client.client_list())

        wait_until(sent, what="the broadcast written to tail")
        private_redis.stop()  # returns once the server has exited: tail's connection is gone
        private_redis.start()

    url = private_redis.url
    thread = WhenSubscribed(url, restart, lambda c: publish(c, joined()))
    out = cli("tail", "--count", "2", "--timeout", "15", env={"REDIS_URL": url})
    thread.join()
    assert out.code == 0, out.stderr
    assert [line.split()[2] for line in out.stdout.splitlines()] == [
        "global_broadcast",
        "worker_join",
    ]
    assert "lost the connection: Redis at" in out.stderr
    assert re.search(
        r"^echoes-ops: reconnected after \d+\.\d\ds \(.*closed the connection \(the server "
        r"restarted\)\); messages published in the gap were lost$",
        out.stderr,
        re.M,
    )


def test_cli_timeout_without_traffic_exits_zero(redis_url):
    started = time.monotonic()
    out = cli("tail", "--json", "--timeout", "0.3", env={"REDIS_URL": redis_url})
    assert out.code == 0
    assert out.stdout == ""
    assert out.stderr == ""
    assert time.monotonic() - started < 3


def test_cli_unreachable_redis_is_one_line_exit_4():
    port = free_port()
    out = cli("tail", env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    assert out.code == ExitCode.UNREACHABLE
    assert f"127.0.0.1:{port}" in out.one_error_line()


@pytest.mark.parametrize("args", [["tail", " "], ["tail", "--player", "0"], ["tail", "-l", "a b"]])
def test_cli_bad_arguments_are_usage_errors(args):
    out = cli(*args, env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert out.code == ExitCode.USAGE
    out.one_error_line()


def test_ctrl_c_exits_130_without_traceback(redis_url, sync_r):
    proc = subprocess.Popen(
        [sys.executable, "-m", "echoes_ops", "--redis-url", redis_url, "tail"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:

        def subscribed() -> bool:
            assert proc.poll() is None, proc.communicate()
            return sync_r.pubsub_numpat() >= 2

        wait_until(subscribed, what="tail to subscribe to its two patterns")
        publish(sync_r, combat())
        assert proc.stdout is not None
        printed = proc.stdout.readline()  # the message is out: Ctrl-C while tail listens on
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == "echoes-ops: interrupted"
    assert "to 5: combat_update You dealt 12 damage!" in printed
