"""``locations list|show``: who is where."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops import fmt
from echoes_ops.cli.common import emit_json, redis_client, run, stdout_console
from echoes_ops.cli.options import JsonOption

if TYPE_CHECKING:
    from echoes_ops.operations.locations import LocationDetail, LocationList

app = typer.Typer(help="Players per location.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    top: Annotated[
        int | None, typer.Option("--top", min=1, help="Only the N busiest.", show_default=False)
    ] = None,
    json: JsonOption = False,
) -> None:
    """Players per location, busiest first, with names from the static cache.

    \b
    Examples:
      echoes-ops locations list --top 10
      echoes-ops locations list --json
    """
    from echoes_ops.operations.locations import list_locations

    async def work() -> LocationList:
        async with redis_client(ctx) as r:
            return await list_locations(r, top=top)

    result = run(ctx, work)
    if json:
        emit_json(result.as_dict())
        return
    console = stdout_console()
    console.print(f"{result.total_players} player(s) in {result.total_locations} location(s)")
    widest = max((loc.players for loc in result.locations), default=1)
    for loc in result.locations:
        bar = "█" * max(1, round(30 * loc.players / widest))
        console.print(f"  {loc.players:>6}  {fmt.named(loc.location_id, loc.name):<40} {bar}")


@app.command("show")
def show(
    ctx: typer.Context,
    location_id: Annotated[str, typer.Argument(help="Location id.")],
    json: JsonOption = False,
) -> None:
    """The players in one location, each with a session summary; members whose session is
    missing or names another location are marked as drift.

    \b
    Examples:
      echoes-ops locations show overpass
      echoes-ops locations show overpass --json
    """
    from echoes_ops.operations.locations import show_location

    async def work() -> LocationDetail:
        async with redis_client(ctx) as r:
            return await show_location(r, location_id)

    detail = run(ctx, work)
    if json:
        emit_json(detail.as_dict())
        return
    console = stdout_console()
    console.print(f"{fmt.named(detail.location_id, detail.name)}: {len(detail.members)} player(s)")
    for m in detail.members:
        drift = ""
        if not m.has_session:
            drift = "  <- no session (drift)"
        elif m.session_location != detail.location_id:
            drift = f"  <- session says {m.session_location} (drift)"
        console.print(
            f"  {m.character_id:>8}  {m.username or '?':<16} lvl {m.level if m.level is not None else '?':<3} "
            f"hp {m.hp if m.hp is not None else '?':<4} {m.worker_id or '?'}{drift}"
        )
