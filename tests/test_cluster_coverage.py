"""#14's "Done when": every command of the CLI reference (docs/cli.md) has been run against a
real cluster by a test that checks its answer. The table is ``tests/cluster_coverage.py``:

- every command of the CLI tree has an entry (a new command without one fails here), either
  the tests that run it on a cluster or the reason it never reaches Redis;
- every test the table names exists and runs on a cluster (a cluster fixture, or its
  ``[cluster]`` parameter of ``tier_url``), checked here by collecting them;
- that each named test really runs its commands on a cluster is checked from the record of
  its CLI runs, at its own end, whenever it runs (conftest.py ``_cli_runs``): the table cannot
  claim what the test does not do. A recorded check, rather than this static table alone,
  because only the run knows what it did; the table stays, because a recorded check alone
  would say nothing about a command no test runs, and a partial run (one file) must not fail
  for the files it did not run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import cli
from tests.cluster_coverage import (
    NO_REDIS,
    ON_CLUSTER,
    RECORDER,
    Run,
    claims,
    command_path,
    leaf_commands,
    note_subprocess,
    problems_of,
)
from tests.conftest import REPO

# fixtures that put a test on a cluster (the session's, a private one, or both tiers at once)
CLUSTER_FIXTURES = {
    "cluster_url",
    "cluster_r",
    "cluster_settings",
    "redis_cluster",
    "private_cluster",
    "cluster_workers",
    "both",
}

COLLECT = """
import json, sys
import pytest

class Dump:
    def __init__(self):
        self.items = {}

    def pytest_collection_finish(self, session):
        for item in session.items:
            spec = getattr(item, "callspec", None)
            self.items[item.nodeid] = {
                "fixtures": sorted(item.fixturenames),
                "params": {k: str(v) for k, v in spec.params.items()} if spec else {},
            }

dump = Dump()
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *sys.argv[2:]],
                   plugins=[dump])
with open(sys.argv[1], "w") as out:
    json.dump(dump.items, out)
sys.exit(code)
"""


def test_every_command_of_the_reference_has_an_entry() -> None:
    commands = set(leaf_commands())
    assert "sessions list" in commands  # the tree was read
    listed = set(ON_CLUSTER) | set(NO_REDIS)
    assert not set(ON_CLUSTER) & set(NO_REDIS)
    missing = sorted(commands - listed)
    assert not missing, (
        f"no test runs {missing} on a cluster: add one and name it in tests/cluster_coverage.py"
        " (ON_CLUSTER), or say in NO_REDIS why the command never reaches Redis"
    )
    assert not sorted(listed - commands), "tests/cluster_coverage.py names unknown commands"
    assert all(ON_CLUSTER.values()), "a command with no test named"


def test_every_named_test_exists_and_runs_on_a_cluster(tmp_path: Path) -> None:
    files = sorted({test.split("::")[0] for test in claims()})
    dump = tmp_path / "collected.json"
    done = subprocess.run(
        [sys.executable, "-c", COLLECT, str(dump), *files],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    collected = json.loads(dump.read_text())
    for test, commands in sorted(claims().items()):
        assert test in collected, f"{test} (named for {sorted(commands)}) does not exist"
        item = collected[test]
        if all(command.startswith("local ") for command in commands):
            continue  # starts its own cluster with `local up --cluster` (recorded)
        on_cluster = CLUSTER_FIXTURES & set(item["fixtures"]) or (
            item["params"].get("topology") == "cluster"
        )
        assert on_cluster, f"{test} is not parametrized over the cluster: {item}"


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (["--redis-url", "redis://x", "sessions", "list", "--json"], "sessions list"),
        (["--timeout=3", "locks", "hold", "spawn", "--ttl", "60"], "locks hold"),
        (["--insecure", "status"], "status"),
        (["local", "up", "--cluster"], "local up"),
        (["--help"], ""),
        (["flags"], "flags"),
    ],
)
def test_command_path_skips_global_options_and_their_values(args, path) -> None:
    assert command_path(args) == path


def test_a_run_is_recorded_with_the_topology_it_reached(tier_url, topology) -> None:
    out = cli("locks", "list", "--json", env={"REDIS_URL": tier_url})
    assert out.code == 0, out.stderr
    assert cli("acl", "roles").code == 0
    locks, acl = RECORDER.runs
    assert (locks.command, locks.cluster) == ("locks list", topology == "cluster")
    assert locks.clients >= 1
    assert (acl.command, acl.cluster, acl.clients) == ("acl roles", False, 0)


def test_a_subprocess_run_is_recorded_from_its_settings() -> None:
    note_subprocess(["simulate", "--json"], {"REDIS_URL": "redis://h:1/0?cluster=true"})
    note_subprocess(["--redis-url", "redis://h:1/0", "status"], {"REDIS_CLUSTER": "true"})
    note_subprocess(["--redis-url", "redis://h:1/0", "tail"], {})
    assert [(r.command, r.cluster) for r in RECORDER.runs] == [
        ("simulate", True),
        ("status", True),
        ("tail", False),
    ]
    RECORDER.reset()


def test_the_check_catches_a_claim_the_run_contradicts() -> None:
    test = ON_CLUSTER["locks extend"][0]
    RECORDER.runs[:] = [Run("locks extend", cluster=False, clients=1)]
    assert problems_of(test) != []
    RECORDER.runs[:] = [Run("locks extend", cluster=True, clients=1)]
    assert problems_of(test) == []
    RECORDER.runs[:] = [Run("db migrate", cluster=False, clients=1)]
    assert "never reaching Redis" in problems_of("tests/elsewhere.py::test_x")[0]
    RECORDER.reset()
