"""``validate`` and ``preload``: game data into Redis."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops.cli import render
from echoes_ops.cli.common import (
    ProgressBar,
    audited_redis,
    emit_json,
    gamedata_dir,
    guard,
    is_tty,
    load_world,
    run_stoppable,
    state,
    warn,
    world_cache,
    yield_cpu,
)
from echoes_ops.cli.options import JsonOption

if TYPE_CHECKING:
    from echoes_ops.gamedata import World
    from echoes_ops.operations.preload import PreloadResult
    from echoes_ops.operations.stop import StopToken

GamedataOption = Annotated[
    Path | None,
    typer.Option(
        "--gamedata",
        help="Gamedata folder (env ECHOES_OPS_GAMEDATA; default ./gamedata).",
        show_default=False,
    ),
]


def validate(ctx: typer.Context, gamedata: GamedataOption = None, json: JsonOption = False) -> None:
    """Check gamedata: schema, types, unique ids, references, numeric ranges.

    Prints every problem as file:line: message. Exit 0 when clean, 1 when any problem.

    \b
    Examples:
      echoes-ops validate
      echoes-ops validate --gamedata ./gamedata --json
    """
    from echoes_ops.cli.plain import report
    from echoes_ops.gamedata import validate_gamedata

    folder = gamedata_dir(ctx, gamedata)
    result = guard(ctx, lambda: validate_gamedata(folder, cache=world_cache(ctx)))
    code = report(result, folder, as_json=json)
    if code:
        raise typer.Exit(code)


def preload(
    ctx: typer.Context,
    gamedata: GamedataOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the diff per kind; write nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Rewrite every key even if the dataset is unchanged.")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Do not ask before removing entries gone from gamedata."),
    ] = False,
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="Write the diff in steps of about 0.4 ms of server time, version record "
            "last, instead of one transaction (for a live tier; always on Redis Cluster).",
        ),
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="With --online: re-read every key after writing and compare.",
        ),
    ] = True,
    json: JsonOption = False,
) -> None:
    """Load locations, items and NPC definitions into Redis, atomically or --online.

    By default one transaction: readers see the old dataset or the new one, never a mix,
    but its EXEC holds the server about 3 us per key written (60-95 ms for 22,000 keys).
    --online writes the same diff in steps that each stay inside the server-time budget
    (1 ms), each key replaced whole, the location index and the version record last, then
    re-reads what it wrote (--verify); readers may see old and new entries side by side
    for the printed mixed window. Use the default on a first load or while the game is
    stopped, --online on a live tier (doctor says which fits the current diff; an atomic
    swap past the budget on a loaded tier is warned about first); on Redis Cluster preload
    is always --online (one transaction cannot span slots). A stopped or cut-off --online
    run leaves the old version record: run it again, it converges. Entries removed from
    gamedata are deleted: preload first says how many of each kind it will remove and asks (on a
    terminal; without one it refuses unless --yes). A version record (content hash, time,
    operator, counts) is stored. An unchanged dataset is a no-op unless --force. Invalid
    gamedata, or too little memory headroom on the server (measured with MEMORY USAGE
    probes), writes nothing (exit 7). After the swap every key is verified: keys evicted
    meanwhile are named per kind (exit 11); an allkeys-* maxmemory-policy is warned about
    first. Ctrl-C or SIGTERM stops at the next step and says whether the version was
    committed (exit 130).

    \b
    Examples:
      echoes-ops preload --dry-run
      echoes-ops preload
      echoes-ops preload --gamedata ./gamedata --force --json
      echoes-ops preload --online
    """
    from echoes_ops.operations.eviction import eviction_warning, memory_state
    from echoes_ops.operations.preload import preload as do_preload

    operator = guard(ctx, lambda: state(ctx).settings().operator_name())
    # lowered before the world is read and encoded, not only once Redis is open: on a host
    # shared with the tier that parsing is most of a routine preload's CPU (benchmarks.md)
    yield_cpu(state(ctx).settings())
    folder = gamedata_dir(ctx, gamedata)
    args = {"gamedata": str(folder), "force": force, "online": online}
    previewed: World | None = None
    unchanged: PreloadResult | None = None
    if not dry_run:
        previewed, plan = _confirm_removals(
            ctx, folder, operator=operator, force=force, yes=yes, online=online
        )
        if plan is not None and plan.skipped:
            # the preview just found every key of this version in place: the run reports
            # that (audited) instead of checking every key a second time
            unchanged = replace(plan, dry_run=False)

    async def work(stop: StopToken) -> PreloadResult:
        async with audited_redis(ctx, "preload", args, dry_run=dry_run) as (r, entry):
            # the world the preview read (not read twice); invalid gamedata is read here
            # again, to be audited as a failure
            world = previewed if previewed is not None else load_world(ctx, folder)
            risk = eviction_warning(await memory_state(r))
            if risk:
                warn(risk)
            if unchanged is not None:
                result = unchanged
            else:
                with ProgressBar("preloading", enabled=is_tty() and not json) as bar:
                    result = await do_preload(
                        r,
                        world,
                        operator=operator,
                        dry_run=dry_run,
                        force=force,
                        progress=bar,
                        stop=stop,
                        online=online,
                        verify=verify,
                    )
            entry.detail = {
                "version": result.version,
                "skipped": result.skipped,
                "keys_written": result.keys_written,
                "keys_removed": result.keys_removed,
                "estimated_bytes": result.estimated_bytes,
                "mode": result.mode,
                **(result.online.as_dict() if result.online is not None else {}),
                **result.verified,
            }
            return result

    result = run_stoppable(ctx, work)
    lost = result.verified.get("lock_lost_after_commit")
    if lost:
        warn(
            f"version {result.version[:12]} was committed, but the preload lock was lost "
            f"after the commit ({lost}): another preload may have run since; "
            "`echoes-ops preload --dry-run` shows what Redis holds now"
        )
    if json:
        emit_json(result.as_dict())
    else:
        render.preload(result)


def _confirm_removals(
    ctx: typer.Context, folder: Path, *, operator: str, force: bool, yes: bool, online: bool
) -> tuple[World | None, PreloadResult | None]:
    """Say how many entries of each kind the preload deletes (gone from gamedata) and ask;
    warn when an atomic swap would hold the server past the budget on a loaded tier (not a
    first load); the world read for the preview, if it could be read, and the preview's dry
    run."""
    from echoes_ops.cli.common import confirm, redis_client
    from echoes_ops.operations.preload import preload as do_preload

    world: World | None = None

    async def preview() -> PreloadResult:
        nonlocal world
        world = load_world(ctx, folder)
        async with redis_client(ctx) as r:
            return await do_preload(r, world, operator=operator, dry_run=True, force=force)

    import asyncio

    from echoes_ops.errors import OpsError

    def previewed() -> PreloadResult | None:
        try:
            return asyncio.run(preview())
        except OpsError:
            return None  # the preload itself fails the same way, and is audited then

    plan = guard(ctx, previewed)  # Ctrl-C or a bug: one line, never a traceback
    if plan is None:
        return world, None
    if not online and plan.mode == "atomic" and plan.previous_version is not None:
        from echoes_ops.operations.preload_online import atomic_hold_warning

        changing = sum(len(d.to_write) + len(d.removed) for d in plan.diffs.values())
        hold = atomic_hold_warning(changing)
        if hold:
            warn(hold)
    removed = {kind: d.removed for kind, d in plan.diffs.items() if d.removed}
    if not removed:
        return world, plan
    target = state(ctx).settings().redis_target().display
    what = ", ".join(
        f"{len(ids):,} {kind} ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})"
        for kind, ids in removed.items()
    )
    confirm(ctx, f"Preload on {target} removes entries gone from gamedata: {what}?", yes=yes)
    return world, plan
