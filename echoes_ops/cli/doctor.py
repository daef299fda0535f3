"""``doctor``: check the tier against what the design needs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops.cli.common import (
    emit_json,
    gamedata_dir,
    redis_client,
    run,
    state,
    stdout_console,
    world_cache,
)
from echoes_ops.cli.options import JsonOption
from echoes_ops.errors import ExitCode

if TYPE_CHECKING:
    from echoes_ops.operations.doctor import DoctorReport

STYLES = {"ok": "green", "unknown": "cyan", "warn": "yellow", "fail": "bold red"}


def exit_code(worst: str, *, strict: bool) -> int:
    """ok -> 0; warn and unknown -> 0 (1 with --strict); fail -> 1."""
    if worst == "fail" or (strict and worst in {"warn", "unknown"}):
        return int(ExitCode.PROBLEMS_FOUND)
    return int(ExitCode.OK)


def doctor(
    ctx: typer.Context,
    gamedata: Annotated[
        Path | None,
        typer.Option(
            "--gamedata",
            help="Gamedata folder to compare the static caches with (env ECHOES_OPS_GAMEDATA; "
            "default ./gamedata).",
            show_default=False,
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Exit 1 on warn or unknown too, not only on fail."),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Also explain the checks that passed."),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Check the tier against what the design needs: eviction policy, persistence, memory
    headroom, Redis version, static data vs gamedata, sessions/inventories/locks without
    TTL, dead workers with leftovers, the pub/sub output buffer limit, network exposure
    without auth, connecting as the shared default ACL user (docs/team.md), clock skew of
    workers' heartbeats, REDIS_ENABLED agreement between PostgreSQL, the env file, the
    Redis mirror and the workers.

    Each check has a verdict (ok, unknown, warn, fail), why it matters and how to fix it.
    A check whose command is disabled or denied (CONFIG, ACL) is "unknown", with the reason.
    Exit code: 0 when nothing failed (ok, warn, unknown), 1 when any check fails; with
    --strict, warn and unknown also exit 1. --json prints {"worst", "counts", "checks": [...],
    "exit_code"} for monitoring.

    \b
    Examples:
      echoes-ops doctor
      echoes-ops doctor --gamedata ./gamedata --verbose
      echoes-ops doctor --json --strict | jq '.checks[] | select(.verdict != "ok")'
    """
    from echoes_ops.errors import ConfigError
    from echoes_ops.gamedata import load_gamedata
    from echoes_ops.operations.doctor import doctor as run_doctor

    settings = state(ctx).settings()
    folder = gamedata_dir(ctx, gamedata)
    problem = None
    data = None
    try:
        data = load_gamedata(folder, cache=world_cache(ctx))
    except ConfigError as exc:
        problem = f"gamedata at {folder}: {exc}"

    async def work() -> DoctorReport:
        async with redis_client(ctx) as r:
            return await run_doctor(
                r,
                gamedata=data,
                gamedata_problem=problem,
                database_url=settings.database_dsn(),
                env_file=settings.env_file,
                pubsub_mode=settings.pubsub_mode,
            )

    report = run(ctx, work)
    code = exit_code(report.worst, strict=strict)
    if json:
        emit_json({**report.as_dict(), "strict": strict, "exit_code": code})
    else:
        from rich.table import Table

        console = stdout_console()
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column()
        for check in report.checks:
            style = STYLES.get(check.verdict, "")
            grid.add_row(f"[{style}]{check.verdict.upper()}[/]", f"{check.title}: {check.summary}")
            if check.verdict != "ok" or verbose:
                grid.add_row("", f"[dim]why:[/] {check.why}")
                if check.fix:
                    grid.add_row("", f"[dim]fix:[/] {check.fix}")
        console.print(grid, markup=True)
        counts = report.counts()
        console.print(
            f"\n{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail, "
            f"{counts['unknown']} unknown; worst: {report.worst} (exit {code})"
        )
    if code:
        raise typer.Exit(code)
