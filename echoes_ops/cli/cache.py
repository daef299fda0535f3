"""``cache status`` and ``cache invalidate``: the static caches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops.cli import render
from echoes_ops.cli.common import (
    audited_redis,
    confirm,
    emit_json,
    fail,
    guard,
    load_gamedata,
    redis_client,
    run,
)
from echoes_ops.cli.data import GamedataOption
from echoes_ops.cli.options import JsonOption
from echoes_ops.errors import ExitCode

if TYPE_CHECKING:
    from echoes_ops.operations.cache import CacheStatus, InvalidateResult

app = typer.Typer(
    help="Inspect and invalidate the static caches (locations, items, NPCs).",
    no_args_is_help=True,
)

KINDS = ("location", "item", "npc")


@app.command("status")
def cache_status(
    ctx: typer.Context, gamedata: GamedataOption = None, json: JsonOption = False
) -> None:
    """Compare what is loaded with gamedata: counts, version, and keys missing, stale,
    extra or malformed. Exit 1 when they drift.

    \b
    Examples:
      echoes-ops cache status
      echoes-ops cache status --json | jq .kinds.item
    """
    from echoes_ops.operations.cache import cache_status as read_status

    data = guard(ctx, lambda: load_gamedata(ctx, gamedata))

    async def work() -> CacheStatus:
        async with redis_client(ctx) as r:
            return await read_status(r, data)

    result = run(ctx, work)
    if json:
        emit_json(result.as_dict())
    else:
        render.cache_status(result)
    if not result.in_sync:
        raise typer.Exit(int(ExitCode.PROBLEMS_FOUND))


@app.command("invalidate")
def cache_invalidate(
    ctx: typer.Context,
    kind: Annotated[
        str | None, typer.Argument(help="location, item or npc.", show_default=False)
    ] = None,
    ids: Annotated[
        list[str] | None, typer.Argument(help="Ids to invalidate.", show_default=False)
    ] = None,
    all_static: Annotated[
        bool, typer.Option("--all-static", help="Invalidate every location, item and NPC key.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be deleted.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json: JsonOption = False,
) -> None:
    """Delete static cache keys so the next preload rewrites them. Asks for confirmation.

    Until the next preload the game falls back to its database for these entries.

    \b
    Examples:
      echoes-ops cache invalidate item iron_sword rusty_pipe --dry-run
      echoes-ops cache invalidate location overpass --yes
      echoes-ops cache invalidate --all-static
    """
    from echoes_ops.contract.static import StaticKind
    from echoes_ops.operations.cache import invalidate, invalidate_all_static

    if all_static == (kind is not None):
        fail("give either KIND ID... or --all-static", int(ExitCode.USAGE))
    if kind is not None and kind not in KINDS:
        fail(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}", int(ExitCode.USAGE))
    if kind is not None and not ids:
        fail(f"name at least one {kind} id to invalidate", int(ExitCode.USAGE))

    async def work(preview: bool) -> InvalidateResult:
        async with redis_client(ctx) as r:
            if all_static:
                return await invalidate_all_static(r, dry_run=preview)
            return await invalidate(
                r, StaticKind.from_label(kind or ""), ids or [], dry_run=preview
            )

    async def apply() -> InvalidateResult:
        args = {"kind": kind, "ids": ids or [], "all_static": all_static}
        async with audited_redis(ctx, "cache.invalidate", args, dry_run=False) as (r, entry):
            if all_static:
                done = await invalidate_all_static(r)
            else:
                done = await invalidate(r, StaticKind.from_label(kind or ""), ids or [])
            entry.detail = {"deleted": done.deleted}
            return done

    preview = run(ctx, lambda: work(True))
    if not dry_run and preview.keys:
        confirm(ctx, f"Delete {len(preview.keys)} static cache key(s)?", yes=yes)
        result = run(ctx, apply)
    else:
        result = preview
    if json:
        emit_json(result.as_dict())
    else:
        render.invalidate(result)
