"""The entry point builds only the command a run names (start-up cost), and nothing else."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from echoes_ops.cli.main import COMMANDS, build_app, command_named


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["validate", "--gamedata", "x"], "validate"),
        (["--redis-url", "redis://h:1", "status"], "status"),
        (["--timeout", "3", "--plain", "sessions", "list"], "sessions"),
        (["--debug", "preload"], "preload"),
        (["--redis-url", "status"], None),  # "status" is the URL here, no command follows
        (["--help"], None),
        (["-h", "status"], None),
        (["--version"], None),
        (["statsu"], None),  # unknown: the whole tree, for the "did you mean" error
        ([], None),
    ],
)
def test_command_named(argv: list[str], expected: str | None) -> None:
    assert command_named(argv) == expected


def test_one_command_builds_only_that_command() -> None:
    app = build_app("validate")
    names = [info.name for info in app.registered_commands] + [
        group.name for group in app.registered_groups
    ]
    assert names == ["validate"]


def test_the_whole_tree_has_every_registered_command() -> None:
    app = build_app()
    names = {info.name for info in app.registered_commands} | {
        group.name for group in app.registered_groups
    }
    assert names == set(COMMANDS)


def test_a_run_imports_only_its_own_command_module() -> None:
    probe = (
        "import sys; sys.argv = ['echoes-ops', 'validate', '--help']\n"
        "from echoes_ops.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('echoes_ops.cli.') "
        "and m.count('.') == 2), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(done.stderr.strip().splitlines()[-1])
    assert "echoes_ops.cli.data" in loaded
    assert "echoes_ops.cli.sessions" not in loaded
    assert "echoes_ops.cli.dashboard" not in loaded
