"""Docs stay true: the CLI reference matches --help, every command is documented with
examples, readers have --json, writers --dry-run, and every setting and exit code is listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from echoes_ops.cli import reference
from echoes_ops.config import ENV_VARS
from echoes_ops.errors import ExitCode

DOCS = Path(__file__).resolve().parent.parent / "docs"
CLI_DOC = (DOCS / "cli.md").read_text(encoding="utf-8")
COMMANDS = reference.commands()
LEAVES = [(path, cmd, ctx) for path, cmd, ctx in COMMANDS if not hasattr(cmd, "list_commands")]
# commands that change state; the rest are readers
WRITERS = {
    "echoes-ops preload",
    "echoes-ops warmup",
    "echoes-ops cache invalidate",
    "echoes-ops broadcast global",
    "echoes-ops broadcast location",
    "echoes-ops broadcast player",
    "echoes-ops locks hold",
    "echoes-ops locks release",
    "echoes-ops locks extend",
    "echoes-ops flags set",
}
# commands that manage local processes rather than tier data
LOCAL = {"echoes-ops local up", "echoes-ops local down"}


def _options(cmd) -> set[str]:
    return {opt for param in cmd.params for opt in getattr(param, "opts", [])}


def test_cli_reference_is_in_sync_with_help():
    expected = reference.splice(CLI_DOC, reference.render())
    assert expected == CLI_DOC, "docs/cli.md is stale: python -m echoes_ops.cli.reference --write"


@pytest.mark.parametrize(("path", "cmd", "ctx"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_is_in_the_reference(path, cmd, ctx):
    assert f"### `{path}`" in CLI_DOC


@pytest.mark.parametrize(("path", "cmd", "ctx"), LEAVES, ids=[c[0] for c in LEAVES])
def test_every_command_has_help_with_examples(path, cmd, ctx):
    text = cmd.get_help(ctx)
    assert "Examples:" in text, f"{path} --help has no examples"
    assert path.split(" ", 1)[1] in text.split("Examples:", 1)[1]


@pytest.mark.parametrize(("path", "cmd", "ctx"), LEAVES, ids=[c[0] for c in LEAVES])
def test_readers_have_json_and_writers_have_dry_run(path, cmd, ctx):
    options = _options(cmd)
    assert "--json" in options, f"{path} lacks --json"
    if path in WRITERS:
        assert "--dry-run" in options, f"{path} lacks --dry-run"


def test_every_setting_has_a_documented_env_var():
    for name, var in ENV_VARS.items():
        assert f"`{var}`" in CLI_DOC, f"{var} ({name}) missing from docs/cli.md"


def test_every_exit_code_is_documented():
    for code in ExitCode:
        assert f"| {int(code)} | {code.name} |" in CLI_DOC, code
