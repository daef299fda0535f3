"""``validate`` and ``preload`` without Typer, for their plain command lines.

Importing Typer (and building a command with it) costs more CPU than validating the bundled
world or finding it unchanged in Redis (#17's whole-command goals: ``validate`` of the
bundled world within 0.25 s, an unchanged ``preload`` within 0.35 s), and a cron job, a
deploy hook or a CI step runs ``echoes-ops validate [--gamedata DIR] [--json]`` or
``echoes-ops preload [--gamedata DIR] [--dry-run] [--force] [--yes] [--online]
[--verify/--no-verify] [--json]`` as such. Exactly those command lines are run here, with
the same functions and the same output as the Typer commands
(:func:`echoes_ops.cli.data.validate`, :func:`echoes_ops.cli.data.preload`); anything else
(global options, ``--help``, another spelling, an option given twice, an unknown option,
``ECHOES_OPS_PLAIN`` set, which Typer checks) returns None and goes to Typer unchanged.
``tests/test_cli_plain.py`` runs both ways and compares.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from echoes_ops.cli.core import CliState, cache_of, emit_json, failure_code, gamedata_folder
from echoes_ops.errors import ExitCode

if TYPE_CHECKING:
    from echoes_ops.gamedata.loader import ValidationResult


# flag -> (its setting, the value it sets); ``--gamedata`` takes a value
_PRELOAD_FLAGS = {
    "--dry-run": ("dry_run", True),
    "--force": ("force", True),
    "--yes": ("yes", True),
    "-y": ("yes", True),
    "--online": ("online", True),
    "--verify": ("verify", True),
    "--no-verify": ("verify", False),
    "--json": ("json", True),
}
_VALIDATE_FLAGS = {"--json": ("json", True)}
# what every preload imports (cli/preloading.py's operations and their Redis client)
_PRELOAD_MODULES = (
    "echoes_ops.operations.audit",
    "echoes_ops.operations.eviction",
    "echoes_ops.operations.preload",
)


def plain_options(
    argv: list[str], command: str, flags: dict[str, tuple[str, bool]]
) -> tuple[Path | None, dict[str, bool]] | None:
    """(--gamedata, the flags given) when ``argv`` is ``command`` followed only by
    ``--gamedata DIR`` and ``flags``, each setting at most once; else None."""
    if not argv or argv[0] != command:
        return None
    gamedata: Path | None = None
    given: dict[str, bool] = {}
    words = iter(argv[1:])
    for word in words:
        if word in flags:
            name, value = flags[word]
            if name in given:
                return None
            given[name] = value
            continue
        value_of: str | None = None
        if word == "--gamedata":
            value_of = next(words, None)
        elif word.startswith("--gamedata="):
            value_of = word.removeprefix("--gamedata=")
        if value_of is None or not value_of or value_of.startswith("-") or gamedata is not None:
            return None
        gamedata = Path(value_of)
    return gamedata, given


def plain_validate(argv: list[str]) -> tuple[Path | None, bool] | None:
    """(--gamedata, --json) when ``argv`` is a plain validate command line, else None."""
    parsed = plain_options(argv, "validate", _VALIDATE_FLAGS)
    if parsed is None:
        return None
    gamedata, given = parsed
    return gamedata, given.get("json", False)


def plain_preload(argv: list[str]) -> tuple[Path | None, dict[str, bool]] | None:
    """(--gamedata, every flag's value, defaults filled in) when ``argv`` is a plain
    preload command line, else None."""
    parsed = plain_options(argv, "preload", _PRELOAD_FLAGS)
    if parsed is None:
        return None
    gamedata, given = parsed
    defaults = {"dry_run": False, "force": False, "yes": False, "online": False}
    return gamedata, {**defaults, "verify": True, "json": False, **given}


def run_plain(argv: list[str]) -> int | None:
    """Run a plain command line without Typer and return its exit code; None when it is
    not one (the caller runs Typer)."""
    if "ECHOES_OPS_PLAIN" in os.environ:
        return None
    preload = plain_preload(argv)
    if preload is not None:
        return _preload(*preload)
    parsed = plain_validate(argv)
    if parsed is None:
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


def _preload(given: Path | None, options: dict[str, bool]) -> int:
    """``preload`` as the Typer command runs it (:mod:`echoes_ops.cli.preloading`), guarded
    as the Typer command is: Ctrl-C while modules load, or anything unexpected, is one line
    and an exit code, and a reading child the run did not wait for is ended."""
    from echoes_ops.cli.core import defer_package_metadata
    from echoes_ops.cli.readahead import abandon, read_ahead
    from echoes_ops.cli.running import CommandExit

    cli_state = CliState()
    try:
        read_ahead(cli_state, given)  # the world read in a child meanwhile (cli/readahead.py)
        defer_package_metadata()  # as the Typer path does: redis-py would load it for nothing
        # What every preload runs on, imported with the cycle collector still off (main()
        # turns it off for plain runs): its collections while modules load would only walk
        # their objects again and again (#17: most of an unchanged preload is loading
        # redis-py and asyncio), then frozen out of its sight. The run itself collects as
        # under Typer.
        for module in _PRELOAD_MODULES:
            importlib.import_module(module)
        gc.freeze()
        gc.enable()
        from echoes_ops.cli.preloading import preload_command

        preload_command(cli_state, given, **options)
    except CommandExit as exc:
        return exc.exit_code
    except BrokenPipeError as exc:
        if stdout_gone():  # stdout closed (`| head`): main() ends as Click does
            raise
        return failure_code(exc, debug=False)  # a pipe of ours that broke: said, not hidden
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - as the Typer command's guard
        return failure_code(exc, debug=False)
    finally:
        abandon(cli_state)
    return 0


def stdout_gone() -> bool:
    """Whether stdout's reader has gone away (a pipe whose other end is closed reports an
    error when polled for writing), so that a broken pipe is blamed on stdout only when it
    is stdout's."""
    import select

    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # no file behind it, or closed
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


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
