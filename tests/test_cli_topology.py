"""Every command that talks to Redis says on a terminal which server and topology it reaches."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from echoes_ops.config import redact_url
from tests.cluster_coverage import note_subprocess


def _read_all(leader: int) -> str:
    """Everything written to a pseudo-terminal whose other side is closed."""
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other side is closed: all read
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``echoes-ops ARGS`` with stderr on a pseudo-terminal (stdout piped): what an
    operator sees at a shell with the output piped to a pager or a file."""
    note_subprocess(args, env)
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "echoes_ops", *args],
            stdout=subprocess.PIPE,
            stderr=follower,
            env={**os.environ, **env},
            timeout=60,
        )
        os.close(follower)
        follower = -1
        return done.returncode, done.stdout.decode(), _read_all(leader)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)


@pytest.mark.parametrize(
    "args", [["locks", "list"], ["sessions", "list"], ["workers", "list", "--json"]]
)
def test_the_topology_line_on_a_terminal(tier_url: str, topology: str, args: list[str]) -> None:
    code, stdout, stderr = _run_on_a_terminal(args, {"REDIS_URL": tier_url})
    assert code == 0, stderr
    expected = "cluster 3 primaries / 3 replicas" if topology == "cluster" else "standalone"
    lines = [line for line in stderr.splitlines() if line.startswith("echoes-ops: redis")]
    assert len(lines) == 1, stderr
    assert lines[0].rstrip().endswith(f": {expected}")
    assert redact_url(tier_url.split("?")[0]).split("/")[2] in lines[0]  # host:port
    assert "echoes-ops:" not in stdout  # piped output is unchanged


def test_no_topology_line_when_stderr_is_not_a_terminal(redis_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "echoes_ops", "locks", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "REDIS_URL": redis_url},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "echoes-ops: redis" not in done.stderr
    assert "standalone" not in done.stderr


def test_status_says_it_once_in_its_own_output(redis_url: str) -> None:
    code, stdout, stderr = _run_on_a_terminal(["status"], {"REDIS_URL": redis_url})
    assert code == 0, stderr
    assert "standalone" in stdout
    assert "standalone" not in stderr


def _topology_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("echoes-ops: redis")]


def _says_its_topology(stderr: str, tier_url: str, topology: str) -> None:
    expected = "cluster 3 primaries / 3 replicas" if topology == "cluster" else "standalone"
    lines = _topology_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].rstrip().endswith(f": {expected}"), stderr
    assert redact_url(tier_url.split("?")[0]).split("/")[2] in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["broadcast", "global", "topology test", "--dry-run"],
        ["broadcast", "global", "topology test", "--yes"],
        ["audit", "--limit", "5"],
        ["stats", "--prometheus"],
        ["tail", "--timeout", "0.5"],
        ["simulate", "--workers", "1", "--players", "4", "--duration", "1", "--yes"],
    ],
    ids=["broadcast-dry-run", "broadcast", "audit", "stats-prometheus", "tail", "simulate"],
)
def test_writes_and_self_connecting_commands_say_it(
    tier_url: str, topology: str, args: list[str]
) -> None:
    code, stdout, stderr = _run_on_a_terminal(args, {"REDIS_URL": tier_url})
    assert code == 0, stderr
    _says_its_topology(stderr, tier_url, topology)
    assert "echoes-ops: redis" not in stdout


def test_the_lock_writes_say_it(tier_url: str, topology: str) -> None:
    env = {"REDIS_URL": tier_url}
    for args in (
        ["locks", "hold", "spawn_manager", "--ttl", "60", "--reason", "topology test", "--json"],
        ["locks", "extend", "spawn_manager", "--ttl", "120"],
        ["locks", "release", "spawn_manager"],
        ["locks", "hold", "spawn_manager", "--ttl", "60", "--reason", "topology test"],
        ["locks", "release", "spawn_manager", "--force", "--even-if-alive", "--yes"],
    ):
        code, _, stderr = _run_on_a_terminal(args, env)
        assert code == 0, (args, stderr)
        _says_its_topology(stderr, tier_url, topology)


def test_flags_set_says_it(tier_url: str, topology: str, database_url: str) -> None:
    import asyncio

    from echoes_ops.operations.migrations import migrate

    asyncio.run(migrate(database_url))
    code, _, stderr = _run_on_a_terminal(
        ["flags", "set", "REDIS_ENABLED", "true", "--reason", "topology test", "--yes"],
        {"REDIS_URL": tier_url, "DATABASE_URL": database_url},
    )
    assert code == 0, stderr
    _says_its_topology(stderr, tier_url, topology)


def _metrics_serve_on_a_terminal(env: dict[str, str]) -> str:
    """Start ``metrics serve`` with stderr on a pseudo-terminal, stop it with SIGTERM once
    it listens, and return what it wrote on stderr."""
    import signal

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "echoes_ops",
            "metrics",
            "serve",
            "--port",
            "0",
            "--no-keys",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, **env},
    )
    os.close(follower)
    seen = ""
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the listening line: the topology line came before
        assert b"listening" in first, first
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        seen = _read_all(leader)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return seen


def test_metrics_serve_says_it_before_serving(tier_url: str, topology: str) -> None:
    _says_its_topology(_metrics_serve_on_a_terminal({"REDIS_URL": tier_url}), tier_url, topology)


def test_metrics_serve_with_redis_down_says_the_topology_is_not_known() -> None:
    from echoes_ops.local.redis_server import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    stderr = _metrics_serve_on_a_terminal({"REDIS_URL": url})
    lines = _topology_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"echoes-ops: {url}: topology not known yet ("), stderr


def test_sessions_kick_says_it_once(tier_url: str, topology: str) -> None:
    """The kick's preview and its write each open Redis: one line for the run."""
    import redis
    from redis.cluster import RedisCluster

    from echoes_ops.contract import keys

    plain = tier_url.split("?")[0]
    client = RedisCluster.from_url(plain) if topology == "cluster" else redis.Redis.from_url(plain)
    try:
        client.hset(keys.session_key(42), mapping={"location_id": "overpass", "worker_id": "w1"})
        client.sadd(keys.presence_key("overpass"), 42)
    finally:
        client.close()
    code, stdout, stderr = _run_on_a_terminal(
        ["sessions", "kick", "42", "--reason", "topology test", "--yes"], {"REDIS_URL": tier_url}
    )
    assert code == 0, stderr
    assert "removed the session" in stdout
    _says_its_topology(stderr, tier_url, topology)
