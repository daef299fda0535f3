"""Every command that talks to Redis says on a terminal which server and topology it reaches."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from echoes_ops.config import redact_url


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``echoes-ops ARGS`` with stderr on a pseudo-terminal (stdout piped): what an
    operator sees at a shell with the output piped to a pager or a file."""
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
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other side is closed: all read
                break
            if not chunk:
                break
            chunks.append(chunk)
        return done.returncode, done.stdout.decode(), b"".join(chunks).decode()
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
