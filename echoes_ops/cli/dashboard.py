"""``dashboard``: the live Textual dashboard (or, with --json, one reading of its data)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from echoes_ops.cli.common import emit_json, fail, guard, run, state
from echoes_ops.cli.options import JsonOption
from echoes_ops.errors import ExitCode


def dashboard(
    ctx: typer.Context,
    refresh: Annotated[
        float,
        typer.Option(
            "--refresh", metavar="SECONDS", min=0.2, help="Seconds between two fast polls."
        ),
    ] = 2.0,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Hide and refuse every write (kick, locks, ...).")
    ] = False,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            metavar="PATH",
            help="The deployment's env file a REDIS_ENABLED flip also edits, as flags set "
            "--env-file (env ECHOES_OPS_ENV_FILE).",
            show_default=False,
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Watch the tier live: connection, REDIS_ENABLED, gamedata, players, sessions, workers,
    locks, memory, hit rate, ops/s and pub/sub rates, drift; drill into workers, locations
    and sessions; kick, hold and release locks, broadcast and flip REDIS_ENABLED with a
    confirmation (each audited). Survives Redis restarts. Keys: ? in the dashboard.
    With --json, prints one reading (what the screen shows) and exits.

    \b
    Examples:
      echoes-ops dashboard
      echoes-ops dashboard --refresh 5 --read-only
      echoes-ops dashboard --env-file /srv/api/.env
      echoes-ops dashboard --json
    """
    settings = state(ctx).settings()
    if env_file is not None:
        settings = settings.with_overrides(env_file=str(env_file))
    if json:
        emit_json(run(ctx, lambda: _one_reading(settings)))
        return
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        fail("the dashboard needs a terminal (use --json for one reading)", int(ExitCode.USAGE))
    from echoes_ops.tui.app import create_app

    app = guard(ctx, lambda: create_app(settings, refresh=refresh, read_only=read_only))
    app.run()


async def _one_reading(settings: Any) -> dict[str, Any]:
    from echoes_ops.tui.process_source import ProcessSource

    source = ProcessSource(settings, read_only=True)  # the same way the screen reads
    try:
        access = await source.open()
        return {
            "target": source.display,
            "write_access": access.as_dict(),
            "snapshot": (await source.snapshot()).as_dict(),
            "tier": (await source.tier()).as_dict(),
            "drift": (await source.drift()).as_dict(),
        }
    finally:
        await source.close()
