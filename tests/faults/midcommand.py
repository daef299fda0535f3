"""Killing a cluster primary in the middle of a command, on an observable condition, not
after a guessed delay (issue #14 item 6).

Every node logs every command it runs (SLOWLOG at threshold 0, :func:`trace_commands`). A
test waits until the command's own step shows in the log of the node to be killed (its
first walk step, its first repair, a write step: :func:`kill_when_logged`), checks that the
command is still running, and kills the node with SIGKILL. Afterwards the promoted
replica's log says whether the command carried on there (:func:`logged`), that is whether
it crossed the failover rather than finishing before the kill landed. A write a script makes
reaches a replica as its effects, never as the ``EVALSHA`` itself, so a script's ``EVALSHA``
in a promoted replica's log was sent to it by a client after the promotion."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import redis

from echoes_ops.local.redis_cluster import RedisCluster
from tests.faults.helpers import CliProcess
from tests.waiting import wait_until

Argv = Sequence[str]


def sha_of(script: str) -> str:
    """The SHA1 redis-py and ``SCRIPT LOAD`` name ``script`` by (``EVALSHA``'s argument)."""
    return hashlib.sha1(script.encode()).hexdigest()


def evalsha_of(script: str) -> Callable[[Argv], bool]:
    """Matches a logged ``EVALSHA`` of ``script``."""
    sha = sha_of(script)
    return lambda argv: len(argv) > 1 and argv[0].upper() == "EVALSHA" and argv[1] == sha


def _node(cluster: RedisCluster, port: int) -> redis.Redis:
    return redis.Redis(host=cluster.host, port=port, socket_timeout=5)


def trace_commands(cluster: RedisCluster) -> None:
    """Every running node logs every command from now on (a replica keeps the setting when
    it is promoted); the logs start empty."""
    for node in cluster.nodes:
        if not node.running():
            continue
        client = _node(cluster, node.port)
        try:
            client.config_set("slowlog-log-slower-than", 0)
            client.config_set("slowlog-max-len", 200_000)
            client.execute_command("SLOWLOG", "RESET")
        finally:
            client.close()


def logged(
    cluster: RedisCluster, port: int, match: Callable[[Argv], bool], newest: int = -1
) -> int:
    """How many of the node's logged commands (its ``newest`` ones; -1: all) ``match``."""
    client = _node(cluster, port)
    try:
        entries = client.execute_command("SLOWLOG", "GET", newest)
    finally:
        client.close()
    found = 0
    for entry in entries:
        argv = [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in entry[3]]
        if match(argv):
            found += 1
    return found


def step_logged(
    cluster: RedisCluster, port: int, match: Callable[[Argv], bool]
) -> Callable[[], bool]:
    """Whether the node's log (its newest entries) shows a command that ``match``es."""
    return lambda: logged(cluster, port, match, newest=256) > 0


def waiting_on(cluster: RedisCluster, port: int, commands: Sequence[str]) -> Callable[[], bool]:
    """Whether a client of the node is blocked (``flags=b``: e.g. held by ``CLIENT PAUSE``)
    on one of ``commands``."""

    def check() -> bool:
        client = _node(cluster, port)
        try:
            return any(
                "b" in str(c.get("flags", "")) and str(c.get("cmd", "")) in commands
                for c in client.client_list()
            )
        finally:
            client.close()

    return check


def kill_when(
    cluster: RedisCluster,
    run: CliProcess,
    port: int,
    *conditions: Callable[[], bool],
    what: str,
    timeout: float = 60.0,
) -> None:
    """SIGKILL the node on ``port`` as soon as every one of ``conditions`` holds, failing if
    ``run`` ends first: the kill lands while the command is running, at that point."""

    def ready() -> str | None:
        if run.proc.poll() is not None:
            return "ended"
        return "ready" if all(condition() for condition in conditions) else None

    state = wait_until(ready, timeout=timeout, what=what)
    assert state == "ready", f"the command ended before {what}: {run.stderr!r}"
    cluster.node(port).kill()


def kill_when_logged(
    cluster: RedisCluster,
    run: CliProcess,
    port: int,
    match: Callable[[Argv], bool],
    what: str,
    timeout: float = 60.0,
) -> None:
    """SIGKILL the node on ``port`` as soon as its log shows a command of ``run`` that
    ``match``es (the command's first step there), failing if ``run`` ends first."""
    kill_when(cluster, run, port, step_logged(cluster, port, match), what=what, timeout=timeout)


def replica_of(cluster: RedisCluster, primary: int) -> int:
    """The port of a running replica of the primary on ``primary``."""
    for node in cluster.nodes:
        if node.port == primary or not node.running():
            continue
        client = _node(cluster, node.port)
        try:
            role = client.execute_command("ROLE")
        finally:
            client.close()
        if role[0] in (b"slave", "slave") and int(role[2]) == primary:
            return node.port
    raise AssertionError(f"no running replica of {primary}")


def one_error_line(stderr: str) -> str:
    """The one line a failed command printed (``echoes-ops: error: ...``), no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("echoes-ops: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]
