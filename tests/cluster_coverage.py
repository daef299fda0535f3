"""Which CLI commands each test runs, and on which topology (#14: "the whole CLI reference run
against ``local up --cluster`` by the tests that cover it").

Every CLI run of the suite is recorded with its command path (``sessions list``) and whether
it reached a cluster:

- in-process runs (``tests.cli_helpers.cli``): "cluster" when the command built a client for a
  cluster target (``client.connect._options`` sees every client the product makes, plain
  per-node and pub/sub clients of a cluster included), so the record is what the command did,
  not what the test meant;
- runs in a subprocess (``note_subprocess``): from the environment and arguments given to
  it (``REDIS_CLUSTER=true``, ``?cluster=true`` on the URL, ``local up --cluster``);
- an in-process run that reaches Redis from a child process of its own (``dashboard``: its
  poller) builds no client in the test's process: the test calls ``note_answer_from_cluster``
  after checking that the answer names the cluster's nodes.

``tests/test_cluster_coverage.py`` holds the table of which test runs which command on a
cluster; ``conftest.py`` checks, at the end of every test the table names, that the test
really ran that command on a cluster (recorded, not assumed).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

ROOT = "echoes-ops"


@dataclass
class Run:
    command: str  # "sessions list" (no program name)
    cluster: bool
    clients: int = 0  # Redis clients the run built (in-process runs only)
    stack: str | None = None  # ``local`` commands: the --dir they act on


@dataclass
class Recorder:
    """The CLI runs of the current test (reset by conftest's autouse fixture per test)."""

    runs: list[Run] = field(default_factory=list)
    current: Run | None = None

    def reset(self) -> None:
        self.runs.clear()
        self.current = None

    def saw_client(self, cluster: bool) -> None:
        if self.current is not None:
            self.current.clients += 1
            self.current.cluster = self.current.cluster or cluster

    def on_cluster(self) -> set[str]:
        return {run.command for run in self.runs if run.cluster}


# one recorder for the test process (pytest runs one test at a time in it): cli() has no
# access to fixtures, so the record lives here and the autouse fixture resets it per test
RECORDER = Recorder()


@functools.cache
def _root() -> Any:
    import typer

    from echoes_ops.cli.main import app

    return typer.main.get_command(app)


def command_path(args: Sequence[str]) -> str:
    """The command ``args`` run, as in the reference (``locks hold``), global options and
    their values skipped; "" for the program alone (``--help``, ``--version``)."""
    command = _root()
    path: list[str] = []
    rest = list(args)
    while rest and hasattr(command, "list_commands"):
        arg = rest.pop(0)
        if arg == "--":
            break
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            option = next((p for p in command.params if name in p.opts), None)
            if option is not None and "=" not in arg and not option.is_flag:
                rest = rest[option.nargs :]
            continue
        sub = command.commands.get(arg)
        if sub is None:
            break
        path.append(arg)
        command = sub
    return " ".join(path)


def leaf_commands() -> list[str]:
    """Every command of the reference that runs something (groups left out)."""
    from echoes_ops.cli.reference import commands

    return [
        path.removeprefix(ROOT).strip()
        for path, command, _ctx in commands()
        if not hasattr(command, "list_commands")
    ]


def _option_value(args: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _local_run(path: str, args: Sequence[str]) -> Run:
    """A ``local`` command: on a cluster when it starts one (``local up --cluster``) or acts
    on the stack (``--dir``) that an earlier run of the test started as a cluster."""
    stack = _option_value(args, "--dir") or ".echoes-local"
    clustered = {run.stack for run in RECORDER.runs if run.command == "local up" and run.cluster}
    cluster = (path == "local up" and "--cluster" in args) or stack in clustered
    return Run(path, cluster=cluster, stack=stack)


@contextmanager
def recording(args: Sequence[str]) -> Iterator[None]:
    """Record one in-process CLI run of ``args``; the clients it builds say its topology."""
    path = command_path(args)
    run = _local_run(path, args) if path.startswith("local ") else Run(path, cluster=False)
    RECORDER.runs.append(run)
    RECORDER.current = run
    try:
        yield
    finally:
        RECORDER.current = None


def note_answer_from_cluster(command: str) -> None:
    """The last run of ``command`` read a cluster from a child process (the dashboard's
    poller): call only after asserting that its answer shows the cluster's nodes."""
    run = next(run for run in reversed(RECORDER.runs) if run.command == command)
    assert run.clients == 0, "an in-process client says the topology: no note needed"
    run.cluster = True


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def note_subprocess(args: Sequence[str], env: Mapping[str, str] | None) -> None:
    """Record a CLI run in a subprocess (``python -m echoes_ops ARGS`` or the console script)
    with environment ``env``: on a cluster when its settings say so."""
    env = env or {}
    urls = [env.get("REDIS_URL", "")]
    urls += [a.split("=", 1)[-1] for a in args if a.startswith("--redis-url")]
    urls += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--redis-url"]
    path = command_path(args)
    if path.startswith("local "):
        RECORDER.runs.append(_local_run(path, args))
        return
    cluster = _truthy(env.get("REDIS_CLUSTER")) or any("cluster=true" in url for url in urls)
    RECORDER.runs.append(Run(path, cluster=cluster, clients=-1))  # -1: not counted


# -- the table: which test runs which command on a cluster -------------------------------------
# Each entry names tests (pytest node ids, with the ``[cluster]`` parameter where the test
# runs on both topologies) that run the command through the CLI on a cluster and check its
# answer; the failover tests of #14 item 6 (a primary killed mid-command) are named too. conftest.py verifies, at the end of each named test, that it did run the command on
# a cluster; tests/test_cluster_coverage.py that every command has an entry and that every
# named test exists. Keep one or two per command: the one that checks the answer most closely.

CLI = "tests/test_cluster_cli.py::"
REST = "tests/test_cluster_cli_rest.py::"
SEAM = "tests/test_cluster_seam.py::"
HEALTH = "tests/test_cluster_health.py::"
PUBSUB = "tests/test_pubsub_cluster.py::"
FAILOVER = "tests/faults/test_cluster_failover.py::"

ON_CLUSTER: dict[str, tuple[str, ...]] = {
    "status": (
        CLI + "test_status_counts_the_whole_tier[cluster]",
        HEALTH + "test_status_stats_and_doctor_show_every_node",
    ),
    "tail": (
        REST + "test_tail_receives_what_any_node_publishes[cluster]",
        REST + "test_tail_in_sharded_mode_hears_every_primary",
    ),
    "stats": (
        CLI + "test_stats_and_latency[cluster]",
        HEALTH + "test_status_stats_and_doctor_show_every_node",
    ),
    "latency": (CLI + "test_stats_and_latency[cluster]",),
    "audit": (CLI + "test_audit_reads_the_same_trail_on_both_topologies",),
    "dashboard": (REST + "test_dashboard_json_reads_the_whole_tier[cluster]",),
    "reconcile": (
        CLI + "test_reconcile_finds_the_same_on_both_topologies",
        "tests/test_reconcile_cluster.py::test_cli_says_how_repairs_are_guarded_on_a_cluster",
        "tests/faults/test_reconcile_failover.py::test_reconcile_fix_while_a_primary_is_killed",
    ),
    "preload": (
        "tests/test_cluster_writes.py::test_cluster_preload_cli_says_per_slot",
        REST + "test_cache_invalidate_deletes_the_key_and_status_sees_it[cluster]",
        FAILOVER + "test_preload_cli_killed_mid_write_converges",
    ),
    "warmup": (REST + "test_warmup_writes_every_session_and_a_second_run_nothing[cluster]",),
    "doctor": (
        CLI + "test_doctor_finds_the_same_on_both_topologies",
        HEALTH + "test_doctor_memory_headroom_is_per_primary",
    ),
    "simulate": (
        "tests/test_simulate_cluster.py::test_simulate_on_the_cluster_loses_nothing[classic]",
        "tests/test_simulate_cluster.py::test_simulate_on_the_cluster_loses_nothing[sharded]",
    ),
    "sessions list": (
        CLI + "test_sessions_list_and_show[cluster]",
        FAILOVER + "test_sessions_list_while_a_primary_fails_over",
    ),
    "sessions show": (CLI + "test_sessions_list_and_show[cluster]",),
    "sessions kick": (CLI + "test_audit_reads_the_same_trail_on_both_topologies",),
    "locations list": (CLI + "test_locations_list_and_show[cluster]",),
    "locations show": (CLI + "test_locations_list_and_show[cluster]",),
    "workers list": (CLI + "test_workers_and_locks[cluster]",),
    "workers cleanup": (CLI + "test_workers_cleanup_removes_the_same_on_both_topologies",),
    "broadcast global": (CLI + "test_audit_reads_the_same_trail_on_both_topologies",),
    "broadcast location": (PUBSUB + "test_broadcast_counts_classic_subscribers_on_every_node",),
    "broadcast player": (PUBSUB + "test_broadcast_on_the_cluster_in_sharded_mode",),
    "locks list": (CLI + "test_workers_and_locks[cluster]",),
    "locks show": (CLI + "test_workers_and_locks[cluster]",),
    "locks hold": (
        CLI + "test_audit_reads_the_same_trail_on_both_topologies",
        FAILOVER + "test_locks_hold_while_its_primary_fails_over[lock]",
        FAILOVER + "test_locks_hold_while_its_primary_fails_over[holder record]",
    ),
    "locks release": (CLI + "test_audit_reads_the_same_trail_on_both_topologies",),
    "locks extend": (REST + "test_locks_extend_only_with_the_token[cluster]",),
    "flags set": (CLI + "test_flags_set_and_status_agree_on_both_topologies",),
    "flags status": (CLI + "test_flags_set_and_status_agree_on_both_topologies",),
    "cache status": (
        CLI + "test_cache_status_and_preload_dry_run[cluster]",
        REST + "test_cache_invalidate_deletes_the_key_and_status_sees_it[cluster]",
    ),
    "cache invalidate": (
        REST + "test_cache_invalidate_deletes_the_key_and_status_sees_it[cluster]",
    ),
    "metrics serve": (REST + "test_metrics_serve_counts_the_whole_tier[cluster]",),
    "local up": (SEAM + "test_local_up_cluster_env_status_down",),
    "local down": (SEAM + "test_local_up_cluster_env_status_down",),
    "local status": (SEAM + "test_local_up_cluster_env_status_down",),
    "local env": (SEAM + "test_local_up_cluster_env_status_down",),
}

# commands that never reach Redis: conftest.py checks, in every test that runs one, that the
# run built no Redis client
NO_REDIS: dict[str, str] = {
    "validate": "reads the gamedata folder only (no server at all)",
    "db migrate": "applies echoes-ops' PostgreSQL schema; Redis is not opened",
    "acl roles": "prints the Redis ACL rules to apply; connects to nothing",
    "acl postgres": "prints the PostgreSQL grants to apply; connects to nothing",
    "flags get": "reads the flag from PostgreSQL (the source of truth) only",
    "flags list": "reads the flags from PostgreSQL (the source of truth) only",
}


def claims() -> dict[str, set[str]]:
    """Test node id -> the commands the table says it runs on a cluster."""
    by_test: dict[str, set[str]] = {}
    for command, tests in ON_CLUSTER.items():
        for test in tests:
            by_test.setdefault(test, set()).add(command)
    return by_test


def problems_of(nodeid: str) -> list[str]:
    """What the current test's record contradicts in the table (empty: nothing)."""
    found = []
    missing = claims().get(nodeid, set()) - RECORDER.on_cluster()
    for command in sorted(missing):
        found.append(
            f"tests/cluster_coverage.py names {nodeid} as running `{command}` on a cluster, "
            f"but it did not (its CLI runs: {[(r.command, r.cluster) for r in RECORDER.runs]})"
        )
    for run in RECORDER.runs:
        if run.command in NO_REDIS and run.clients > 0:
            found.append(
                f"`{run.command}` is listed as never reaching Redis "
                f"({NO_REDIS[run.command]}), but it built {run.clients} Redis client(s)"
            )
    return found
