"""``validate`` without Typer, for its plain command lines.

Importing Typer (and building a command with it) costs more CPU than validating the bundled
world (#17's whole-command goals: ``validate`` of the bundled world within 0.25 s), and a
cron job or CI step runs ``echoes-ops validate [--gamedata DIR] [--json]`` as such. Exactly
those command lines are run here, with the same functions and the same output as the Typer
command (:func:`echoes_ops.cli.data.validate`); anything else (global options, ``--help``,
another spelling, an unknown option, ``ECHOES_OPS_PLAIN`` set, which Typer checks) returns
None and goes to Typer unchanged. ``tests/test_cli_plain.py`` runs both ways and compares.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from echoes_ops.cli.core import CliState, cache_of, emit_json, failure_code, gamedata_folder
from echoes_ops.errors import ExitCode

if TYPE_CHECKING:
    from echoes_ops.gamedata.loader import ValidationResult


def plain_validate(argv: list[str]) -> tuple[Path | None, bool] | None:
    """(--gamedata, --json) when ``argv`` is a plain validate command line, else None."""
    if not argv or argv[0] != "validate":
        return None
    gamedata: Path | None = None
    as_json = False
    words = iter(argv[1:])
    for word in words:
        if word == "--json" and not as_json:
            as_json = True
            continue
        value: str | None = None
        if word == "--gamedata":
            value = next(words, None)
        elif word.startswith("--gamedata="):
            value = word.removeprefix("--gamedata=")
        if value is None or not value or value.startswith("-") or gamedata is not None:
            return None
        gamedata = Path(value)
    return gamedata, as_json


def run_plain(argv: list[str]) -> int | None:
    """Run a plain command line without Typer and return its exit code; None when it is
    not one (the caller runs Typer)."""
    parsed = plain_validate(argv)
    if parsed is None or "ECHOES_OPS_PLAIN" in os.environ:
        return None
    given, as_json = parsed
    cli_state = CliState()
    try:
        folder = gamedata_folder(cli_state, given)
        from echoes_ops.gamedata import validate_gamedata

        result = validate_gamedata(folder, cache=cache_of(cli_state))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - as the Typer command's guard
        return failure_code(exc, debug=False)
    return report(result, folder, as_json=as_json)


def report(result: ValidationResult, folder: Path, *, as_json: bool) -> int:
    """Print a validation's result (every problem as file:line: message) and return the
    exit code: 0 when clean, 1 when any problem."""
    if as_json:
        emit_json(
            {
                "ok": result.ok,
                "problems": result.problems,
                "files": len(result.files),
                "counts": result.world.counts if result.world else None,
            }
        )
    else:
        for problem in result.problems:
            sys.stdout.write(f"{problem}\n")
        if result.world is not None:
            counts = result.world.counts
            sys.stdout.write(
                f"ok: {counts['locations']} locations, {counts['items']} items, "
                f"{counts['npcs']} npcs in {len(result.files)} files\n"
            )
        else:
            sys.stderr.write(f"{len(result.problems)} problem(s) found in {folder}\n")
    return 0 if result.ok else int(ExitCode.PROBLEMS_FOUND)
