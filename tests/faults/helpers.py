"""What the fault tests share: the CLI as a subprocess (to signal it), waiting on
conditions, and reading the audit record a command left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from tests.cluster_coverage import note_subprocess
from tests.conftest import REPO
from tests.waiting import wait_until


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str

    def line(self, prefix: str) -> str:
        found = [x for x in self.stderr.splitlines() if x.startswith(prefix)]
        assert len(found) == 1, f"expected one {prefix!r} line in {self.stderr!r}"
        assert "Traceback" not in self.stderr
        return found[0]


class CliProcess:
    """``python -m echoes_ops ...`` in its own process, to be signalled mid-run."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("REDIS_", "ECHOES_OPS_")) and k != "DATABASE_URL"
        }
        full_env.update(env)
        full_env.setdefault("ECHOES_OPS_OPERATOR", "fault-test")
        note_subprocess(args, full_env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "echoes_ops", *args],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=_drain, args=(stream, sink), daemon=True)
            for stream, sink in ((self.proc.stdout, self._out), (self.proc.stderr, self._err))
        ]
        for reader in self._readers:
            reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def signal(self, sig: int = signal.SIGINT) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 30.0) -> Finished:
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout)
        return Finished(self.proc.returncode, "".join(self._out), "".join(self._err))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


def _drain(stream: Any, sink: list[str]) -> None:
    for line in stream:
        sink.append(line)


def last_audit(r: redis.Redis, action: str) -> dict[str, Any]:
    """The newest audit record of ``action`` in the Redis stream, decoded."""
    for _, fields in r.xrevrange("echoes:audit", count=50):
        if fields["action"] == action:
            record = dict(fields)
            record["detail"] = json.loads(record["detail"]) if record["detail"] else None
            return record
    raise AssertionError(f"no audit record of {action}")


def in_big_multi(r: redis.Redis, pending: int = 4096) -> bool:
    """Whether some client is inside a MULTI with at least ``pending`` bytes of commands
    not yet run (its query buffer and the parsed command waiting): a bulk transaction,
    not a small pipeline."""
    return any(
        "x" in c.get("flags", "") and int(c.get("qbuf", 0)) + int(c.get("argv-mem", 0)) >= pending
        for c in r.client_list()
    )


def interrupt(run: CliProcess, sig: int, release: Callable[[], None]) -> Finished:
    """Signal the command while it is held at a step, wait until it acknowledged the
    signal, release what holds it, and collect its outcome."""
    run.signal(sig)
    wait_until(lambda: "stopping at the next step" in run.stderr, what="the signal")
    release()
    return run.finish()
