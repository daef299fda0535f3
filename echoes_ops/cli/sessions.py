"""``sessions list|show|kick``: players as game state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops import fmt
from echoes_ops.cli.common import (
    confirm,
    emit_json,
    redis_client,
    run,
    state,
    stdout_console,
    write_log,
)
from echoes_ops.cli.options import JsonOption
from echoes_ops.cli.output import print_table

if TYPE_CHECKING:
    from echoes_ops.operations.sessions import KickResult, SessionDetail, SessionList

app = typer.Typer(help="List, inspect and kick player sessions.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    location: Annotated[
        str | None, typer.Option("--location", help="Only this location id.", show_default=False)
    ] = None,
    worker: Annotated[
        str | None, typer.Option("--worker", help="Only this worker id.", show_default=False)
    ] = None,
    stale: Annotated[
        float | None,
        typer.Option(
            "--stale",
            help="Only sessions whose heartbeat is older than SECONDS (an unknown heartbeat "
            "is never stale).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Show at most N.", show_default=False)
    ] = None,
    sort: Annotated[
        str,
        typer.Option("--sort", help="id, username, location, worker, level, hp, ttl, heartbeat."),
    ] = "id",
    desc: Annotated[bool, typer.Option("--desc", help="Sort descending.")] = False,
    json: JsonOption = False,
) -> None:
    """List sessions: id, username, location, worker, hp/stamina, level, TTL, heartbeat age.

    Reads with SCAN and pipelined batches (never KEYS); --stale reads only heartbeats
    first, so it stays cheap on a large, healthy server.

    \b
    Examples:
      echoes-ops sessions list --limit 20 --sort heartbeat --desc
      echoes-ops sessions list --stale 300 --json
      echoes-ops sessions list --location overpass
    """
    from echoes_ops.operations.sessions import SORT_FIELDS, list_sessions

    if sort not in SORT_FIELDS:
        from echoes_ops.cli.common import fail
        from echoes_ops.errors import ExitCode

        fail(f"--sort must be one of {', '.join(SORT_FIELDS)}", int(ExitCode.USAGE))

    async def work() -> SessionList:
        async with redis_client(ctx) as r:
            return await list_sessions(
                r,
                location=location,
                worker=worker,
                stale_after=stale,
                limit=limit,
                sort=sort,
                descending=desc,
            )

    result = run(ctx, work)
    if json:
        emit_json(result.as_dict())
        return
    from rich.table import Table

    table = Table(title=f"{len(result.rows)} of {result.total} session(s)")
    for column in (
        "id",
        "username",
        "location",
        "worker",
        "hp",
        "stamina",
        "lvl",
        "ttl",
        "heartbeat",
    ):
        table.add_column(
            column, justify="right" if column in ("id", "hp", "stamina", "lvl", "ttl") else "left"
        )
    for row in result.rows:
        table.add_row(
            str(row.character_id),
            row.username or "?",
            fmt.named(row.location_id, row.location_name),
            row.worker_id or "?",
            f"{row.hp}/{row.max_hp}",
            f"{row.stamina}/{row.max_stamina}",
            str(row.level),
            fmt.ttl(row.ttl),
            fmt.age(row.heartbeat_age) + (" STALE" if row.stale else ""),
        )
    print_table(table)


@app.command("show")
def show(
    ctx: typer.Context,
    character_id: Annotated[int, typer.Argument(help="Character id.")],
    json: JsonOption = False,
) -> None:
    """One session in full: fields, inventory cache (count, TTL), which location sets hold
    the player, and whether its worker is alive.

    \b
    Examples:
      echoes-ops sessions show 42
      echoes-ops sessions show 42 --json
    """
    from echoes_ops.operations.sessions import show_session

    async def work() -> SessionDetail:
        async with redis_client(ctx) as r:
            return await show_session(r, character_id)

    detail = run(ctx, work)
    if json:
        emit_json(detail.as_dict())
        return
    console = stdout_console()
    s = detail.summary
    alive = {True: "alive", False: "DEAD", None: "unknown"}[detail.worker_alive]
    console.print(f"player {s.character_id} ({s.username or '?'})")
    console.print(f"  location   {fmt.named(s.location_id, s.location_name)}")
    console.print(f"  worker     {s.worker_id or '?'} ({alive})")
    console.print(f"  session    TTL {fmt.ttl(s.ttl)}, heartbeat {fmt.age(s.heartbeat_age)}")
    console.print(
        f"  inventory  {detail.inventory_items} item(s), TTL {fmt.ttl(detail.inventory_ttl)}"
    )
    sets = ", ".join(detail.in_locations) or "none"
    drift = (
        "" if detail.in_locations == [s.location_id] else "  <- drift (see: echoes-ops reconcile)"
    )
    console.print(f"  in sets    {sets}{drift}")
    for problem in detail.problems:
        console.print(f"  problem    {problem}")
    for name, value in sorted(detail.fields.items()):
        console.print(f"    {name} = {value}")


@app.command("kick")
def kick(
    ctx: typer.Context,
    character_id: Annotated[int, typer.Argument(help="Character id.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Told to the player and recorded.")
    ] = "Kicked by an operator",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json: JsonOption = False,
) -> None:
    """Remove a player's session and presence in one transaction and tell the player on
    their channel. Asks for confirmation; audited.

    \b
    Examples:
      echoes-ops sessions kick 42 --dry-run
      echoes-ops sessions kick 42 --reason "stuck in combat" --yes
    """
    from echoes_ops.operations.sessions import kick as do_kick

    async def preview() -> KickResult:
        async with redis_client(ctx) as r:
            return await do_kick(r, character_id, reason=reason, dry_run=True)

    plan = run(ctx, preview)
    if not dry_run:
        confirm(
            ctx,
            f"Kick player {character_id} (session, {len(plan.removed_from)} location set(s))?",
            yes=yes,
        )

        async def apply() -> KickResult:
            from echoes_ops.operations.writes import CLI, kick_audited

            async with write_log(ctx) as log:
                return await kick_audited(
                    log,
                    character_id,
                    reason=reason,
                    via=CLI,
                    mode=state(ctx).settings().pubsub_mode,
                )

        plan = run(ctx, apply)
    if json:
        emit_json(plan.as_dict())
        return
    verb = "would remove" if plan.dry_run else "removed"
    removed = ["the session"] if plan.removed_session else []
    removed += [f"presence in {loc}" for loc in plan.removed_from]
    what = ", ".join(removed) if removed else "nothing (no session, no presence)"
    stdout_console().print(
        f"player {plan.character_id}: {verb} {what}"
        + ("" if plan.dry_run else f"; told {plan.notified} subscriber(s)")
    )
