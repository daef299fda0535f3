"""``simulate``: N reference workers (OS processes) with M simulated players."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops.cli import render
from echoes_ops.cli.common import (
    announce_target,
    confirm,
    emit_json,
    guard,
    is_tty,
    load_gamedata,
    run,
    state,
)
from echoes_ops.cli.data import GamedataOption
from echoes_ops.cli.options import JsonOption

if TYPE_CHECKING:
    from echoes_ops.runtime.simulate import Progress, SimConfig

LOOPBACK = ("127.", "localhost", "[::1]", "::1", "unix:")


def _is_local(display: str) -> bool:
    rest = display.split("://", 1)[-1].rsplit("@", 1)[-1]
    return display.startswith("unix:") or rest.startswith(LOOPBACK)


def simulate(
    ctx: typer.Context,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker processes.")] = 4,
    players: Annotated[int, typer.Option("--players", min=0, help="Simulated players.")] = 1000,
    duration: Annotated[float, typer.Option("--duration", min=1, help="Seconds of play.")] = 30.0,
    move_rate: Annotated[
        float, typer.Option("--move-rate", min=0, help="Moves per player per second.")
    ] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same choices).")] = 1,
    crash_workers: Annotated[
        int,
        typer.Option(
            "--crash-workers", min=0, help="SIGKILL this many workers half-way (makes drift)."
        ),
    ] = 0,
    kill_primary: Annotated[
        float | None,
        typer.Option(
            "--kill-primary",
            min=0.5,
            metavar="AFTER",
            help="Redis Cluster on this machine: SIGKILL one primary AFTER seconds into play "
            "and report the failover (what was lost in its window, how long delivery stopped).",
            show_default=False,
        ),
    ] = None,
    gamedata: GamedataOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; start nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask before writing to a non-local Redis.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Run game workers with simulated players against Redis, then report delivery.

    Players connect, move along gamedata exits, heartbeat, fight, disconnect and reconnect.
    The report counts messages published, received by the workers, lost and duplicated,
    and the delivery latency (publish to the player's inbox) p50/p95/p99, and the publishes
    each primary received (PUBLISH/SPUBLISH, from INFO commandstats). Workers publish and
    subscribe in REDIS_PUBSUB_MODE. Ctrl-C stops cleanly; without --crash-workers no
    session, presence or lock is left behind.

    On a local cluster (local up --cluster), --kill-primary AFTER kills the primary owning
    the most subscribed channels; the report states the failover window, the loss inside
    and outside it, and the longest time a worker was off its subscriptions.

    \b
    Examples:
      echoes-ops simulate --workers 4 --players 1000 --duration 30
      echoes-ops simulate --workers 3 --players 300 --duration 20 --crash-workers 1 --json
      REDIS_PUBSUB_MODE=sharded echoes-ops simulate --duration 30 --kill-primary 10
    """
    from echoes_ops.runtime.simulate import SimConfig, run_simulation

    if crash_workers >= workers:
        from echoes_ops.cli.common import fail
        from echoes_ops.errors import ExitCode

        fail("--crash-workers must leave at least one worker running", int(ExitCode.USAGE))
    data = guard(ctx, lambda: load_gamedata(ctx, gamedata))
    target = guard(ctx, lambda: state(ctx).settings().redis_target())
    if kill_primary is not None and not target.cluster:
        from echoes_ops.cli.common import fail
        from echoes_ops.errors import ExitCode

        fail(
            "--kill-primary needs a Redis Cluster (REDIS_CLUSTER=true; local up --cluster "
            "starts one): it kills one of its primaries",
            int(ExitCode.USAGE),
        )
    exits = {loc_id: sorted(set(loc.exits.values())) for loc_id, loc in data.locations.items()}
    config = SimConfig(
        target=target,
        exits=exits,
        workers=workers,
        players=players,
        duration=duration,
        move_rate=move_rate,
        seed=seed,
        crash_workers=crash_workers,
        kill_primary=kill_primary,
        database_url=guard(ctx, lambda: state(ctx).settings().database_dsn()),
    )
    if dry_run:
        _print_plan(config, target.display, json)
        return
    run(ctx, lambda: announce_target(ctx, target))
    if not _is_local(target.display):
        confirm(ctx, f"Write {players} simulated players to {target.display}?", yes=yes)
    live = is_tty() and not json

    progress_line = [live]  # a progress line is being drawn (ended by the first phase)

    def phase(text: str) -> None:
        if progress_line[0]:
            sys.stderr.write("\n")
            progress_line[0] = False
        sys.stderr.write(f"echoes-ops: simulate: {text}\n")
        sys.stderr.flush()

    result = guard(
        ctx,
        lambda: run_simulation(
            config, on_progress=_progress_line if live else None, on_phase=phase
        ),
    )
    if json:
        emit_json(result.as_dict())
    else:
        render.simulation(result)


def _progress_line(p: Progress) -> None:
    sys.stderr.write(
        f"\r{p.elapsed:5.1f}s  workers {p.workers_alive}  players {p.players}  "
        f"published {p.published}  delivered {p.delivered}   "
    )
    sys.stderr.flush()


def _print_plan(config: SimConfig, where: str, as_json: bool) -> None:
    per_second = config.players * config.move_rate * 2  # each move tells two locations
    plan = {
        "redis": where,
        "workers": config.workers,
        "players": config.players,
        "players_per_worker": -(-config.players // config.workers) if config.workers else 0,
        "duration_s": config.duration,
        "locations": len(config.exits),
        "expected_location_messages_per_s": round(per_second, 1),
        "crash_workers": config.crash_workers,
        "pubsub_mode": config.target.pubsub_mode,
        "kill_primary_after_s": config.kill_primary,
        "seed": config.seed,
    }
    if as_json:
        emit_json({"dry_run": True, **plan})
        return
    sys.stdout.write("dry run: nothing started\n")
    for name, value in plan.items():
        sys.stdout.write(f"  {name:34} {value}\n")
