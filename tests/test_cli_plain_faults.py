"""The Typer-free ``validate`` and ``preload`` (cli/plain.py) end as the Typer commands do
when the operator or the terminal cuts them short: Ctrl-C while modules load, Ctrl-C or
Ctrl-D at a question, a closed stdout. One line and an exit code, never a traceback, and no
reading child left behind."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from echoes_ops.cli.readahead import _Child
from tests.gamedata_world import _write_world
from tests.test_cli_plain_preload import BIN, BUNDLED, _env, _preloaded
from tests.waiting import wait_until

# Runs ``echoes-ops ARGV...`` with Ctrl-C arriving while the plain preload imports its Redis
# client: exactly the window in which an operator's Ctrl-C used to end in a traceback.
_INTERRUPTED_IMPORT = """
import importlib, sys
real = importlib.import_module
def interrupted(name, *args, **kwargs):
    if name == "echoes_ops.operations.eviction":
        raise KeyboardInterrupt
    return real(name, *args, **kwargs)
importlib.import_module = interrupted
from echoes_ops.cli.main import main
sys.argv = ["echoes-ops", *sys.argv[1:]]
main()
"""


def test_ctrl_c_while_the_plain_preload_loads_is_one_line_and_130(
    tmp_path: Path, redis_url: str
) -> None:
    env = _env(tmp_path, redis_url)
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_IMPORT, "preload", "--gamedata", str(BUNDLED)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr == "echoes-ops: interrupted\n"
    assert done.stdout == ""


def test_an_abandoned_reading_child_is_ended_and_reaped() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        _Child(child.pid).abandon()
        # reaped: no such process is left, not even a zombie
        with pytest.raises(ProcessLookupError):
            os.kill(child.pid, 0)
    finally:
        if child.returncode is None:
            child.returncode = -9  # reaped by abandon(): Popen must not wait on it again


# read(2)'s number in /proc/PID/syscall, by machine
_READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}


def _reading_stdin(pid: int) -> bool:
    """Whether process ``pid`` sleeps in read() on its standard input."""
    fields = Path(f"/proc/{pid}/syscall").read_text().split()
    return fields[:2] == [_READ_SYSCALL[os.uname().machine], "0x0"]


def _answer_on_a_terminal(args: list[str], env: dict[str, str], answer: str) -> tuple[int, str]:
    """Run ``echoes-ops ARGS`` on a pseudo-terminal and, once it asks, answer with Ctrl-D
    (end of input) or Ctrl-C (SIGINT, what the terminal sends its foreground process; this
    pseudo-terminal is not the child's controlling terminal, so the test sends it); return
    its exit code and everything it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [BIN, *args], stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True
    )
    os.close(follower)
    seen = b""
    try:

        def asked() -> bool:
            nonlocal seen
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                seen += os.read(leader, 65536)
            return b"[y/N]" in seen

        wait_until(asked, timeout=60, what="the removal question")
        # The question is shown before input() blocks on the terminal: a SIGINT that lands
        # in between is only noted by Python, and read() then waits for a key that never
        # comes (seen under load: the command hung for the whole timeout). Answer once the
        # command sleeps in read() on its standard input.
        wait_until(
            lambda: _reading_stdin(proc.pid), timeout=60, what="the question to wait for input"
        )
        if answer == "ctrl-d":
            os.write(leader, b"\x04")
        else:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other side is closed: all read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return proc.returncode, seen.decode(errors="replace")


@pytest.mark.parametrize("answer", ["ctrl-d", "ctrl-c"])
@pytest.mark.parametrize("path", ["plain", "typer"])
def test_ctrl_d_or_ctrl_c_at_the_removal_question_changes_nothing(
    tmp_path: Path, redis_url: str, answer: str, path: str
) -> None:
    import redis

    env = {**_env(tmp_path, redis_url), "TERM": "xterm"}
    _preloaded(BUNDLED)(env)
    smaller = _write_world(tmp_path / "smaller")
    before = redis.Redis.from_url(redis_url).dbsize()
    args = (["--plain"] if path == "typer" else []) + ["preload", "--gamedata", str(smaller)]
    code, seen = _answer_on_a_terminal(args, env, answer)
    assert code == 7, seen
    assert "echoes-ops: aborted, nothing changed" in seen
    assert "Traceback" not in seen
    assert "Aborted!" not in seen
    assert redis.Redis.from_url(redis_url).dbsize() == before


@pytest.mark.parametrize(
    "args",
    [["validate", "--gamedata", str(BUNDLED)], ["--plain", "validate", "--gamedata", str(BUNDLED)]],
    ids=["plain", "typer"],
)
def test_a_closed_stdout_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    env = {**os.environ, "ECHOES_OPS_CACHE_DIR": str(tmp_path / "cache")}
    read, write = os.pipe()
    os.close(read)  # nobody reads: the first write fails with EPIPE
    try:
        done = subprocess.run(
            [BIN, *args], stdout=write, stderr=subprocess.PIPE, env=env, timeout=60, text=True
        )
    finally:
        os.close(write)
    assert done.returncode == 1
    assert done.stderr == ""


# A broken pipe that is not stdout's (a child or a socket of the run) is a failure to report,
# not a closed stdout to end quietly on.
_BROKEN_ELSEWHERE = """
import sys
import echoes_ops.cli.preloading as preloading
def broken(*args, **kwargs):
    raise BrokenPipeError(32, "Broken pipe")
preloading.preload_command = broken
from echoes_ops.cli.main import main
sys.argv = ["echoes-ops", *sys.argv[1:]]
main()
"""


def test_a_broken_pipe_that_is_not_stdout_is_reported(tmp_path: Path, redis_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _BROKEN_ELSEWHERE, "preload", "--gamedata", str(BUNDLED)],
        env=_env(tmp_path, redis_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 70, done.stderr
    assert done.stderr.startswith("echoes-ops: error: internal error: BrokenPipeError"), done.stderr
    assert "Traceback" not in done.stderr
