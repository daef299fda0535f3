"""What ``preload`` does between its options and its exit code, without Typer: the Typer
command (:func:`echoes_ops.cli.data.preload`, its options and help) and a plain ``preload``
command line (:mod:`echoes_ops.cli.plain`) both run :func:`preload_command`, so they say the
same and exit the same. An unchanged world is the common case (cron, deploy hooks) and its
whole time is start-up (#17: within 0.35 s): this module and what it imports up front stay
clear of Typer, Rich and the stepped writer.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from echoes_ops.cli.core import CliState, emit_json, gamedata_folder, warn
from echoes_ops.cli.running import (
    ProgressBar,
    audited_redis,
    confirm,
    guarded,
    is_tty,
    load_world,
    redis_client,
    run_stoppable,
    yield_cpu,
)

if TYPE_CHECKING:
    from echoes_ops.gamedata import World
    from echoes_ops.operations.preload import PreloadResult
    from echoes_ops.operations.stop import StopToken


def preload_command(
    cli_state: CliState,
    given: Path | None,
    *,
    dry_run: bool,
    force: bool,
    yes: bool,
    online: bool,
    verify: bool,
    json: bool,
) -> None:
    """Run ``preload`` and print its result; a failure ends it with
    :class:`~echoes_ops.cli.running.CommandExit` (one stderr line, the documented code)."""
    from echoes_ops.operations.eviction import eviction_warning, memory_state
    from echoes_ops.operations.preload import preload as do_preload

    operator = guarded(cli_state, lambda: cli_state.settings().operator_name())
    # lowered before the world is read and encoded, not only once Redis is open: that work
    # competes with the tier for the CPU as much as the rest of the run does
    yield_cpu(cli_state.settings())
    folder = gamedata_folder(cli_state, given)
    args = {"gamedata": str(folder), "force": force, "online": online}
    previewed: World | None = None
    unchanged: PreloadResult | None = None
    if not dry_run:
        previewed, plan = _confirm_removals(
            cli_state, folder, operator=operator, force=force, yes=yes, online=online
        )
        if plan is not None and plan.skipped:
            # the preview just found every key of this version in place: the run reports
            # that (audited) instead of checking every key a second time
            unchanged = replace(plan, dry_run=False)

    async def work(stop: StopToken) -> PreloadResult:
        async with audited_redis(cli_state, "preload", args, dry_run=dry_run) as (r, entry):
            # the world the preview read (not read twice); invalid gamedata is read here
            # again, to be audited as a failure
            world = previewed if previewed is not None else load_world(cli_state, folder)
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
                        # with --yes the preview did not diff: the hold is warned about
                        # from the run's own diff, before the swap
                        on_diff=(lambda plan: _warn_hold(plan, online)) if yes else None,
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

    result = run_stoppable(cli_state, work)
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
        from echoes_ops.cli import render

        render.preload(result)


def _confirm_removals(
    cli_state: CliState, folder: Path, *, operator: str, force: bool, yes: bool, online: bool
) -> tuple[World | None, PreloadResult | None]:
    """Say how many entries of each kind the preload deletes (gone from gamedata) and ask;
    warn when an atomic swap would hold the server past the budget on a loaded tier (not a
    first load); the world read for the preview, if it could be read, and the preview's dry
    run."""
    import asyncio

    from echoes_ops.errors import OpsError
    from echoes_ops.operations.preload import preload as do_preload

    world: World | None = None

    async def preview() -> PreloadResult:
        nonlocal world
        world = load_world(cli_state, folder)
        async with redis_client(cli_state) as r:
            # with --yes there is nothing to ask: the preview stops at the unchanged check,
            # and the run's diff under the lock is the only keyspace walk (#16: on a tier of
            # 1M keys a walk is ~0.6 s of the server's time)
            return await do_preload(
                r, world, operator=operator, dry_run=True, force=force, diff=not yes
            )

    def previewed() -> PreloadResult | None:
        try:
            return asyncio.run(preview())
        except OpsError:
            return None  # the preload itself fails the same way, and is audited then

    plan = guarded(cli_state, previewed)  # Ctrl-C or a bug: one line, never a traceback
    if plan is None:
        return world, None
    _warn_hold(plan, online)
    removed = {kind: d.removed for kind, d in plan.diffs.items() if d.removed}
    if not removed:
        return world, plan
    target = cli_state.settings().redis_target().display
    what = ", ".join(
        f"{len(ids):,} {kind} ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})"
        for kind, ids in removed.items()
    )
    confirm(cli_state, f"Preload on {target} removes entries gone from gamedata: {what}?", yes=yes)
    return world, plan


def _warn_hold(plan: PreloadResult, online: bool) -> None:
    """Warn when the diff's atomic swap would hold the server past the budget (not on a
    first load, not with --online)."""
    swap = not online and plan.mode == "atomic" and not plan.skipped
    if swap and plan.previous_version is not None:
        from echoes_ops.operations.preload_online import atomic_hold_warning

        changing = sum(len(d.to_write) + len(d.removed) for d in plan.diffs.values())
        hold = atomic_hold_warning(changing)
        if hold:
            warn(hold)
