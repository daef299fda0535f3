"""``workers list|cleanup``: the game workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops import fmt
from echoes_ops.cli.common import (
    confirm,
    emit_json,
    fail,
    redis_client,
    run,
    stdout_console,
    write_log,
)
from echoes_ops.cli.options import JsonOption, WideOption
from echoes_ops.cli.output import print_table
from echoes_ops.errors import ExitCode

if TYPE_CHECKING:
    from echoes_ops.operations.workers import CleanupResult, WorkerInfo

app = typer.Typer(help="Game workers: liveness, connections, cleanup.", no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context, output: WideOption = "table", json: JsonOption = False) -> None:
    """Every worker known to Redis: alive or dead (meta TTL, client name in CLIENT LIST,
    last heartbeat), connections, players, mode (redis or fallback), version.

    \b
    Examples:
      echoes-ops workers list
      echoes-ops workers list -o wide
      echoes-ops workers list --json
    """
    from echoes_ops.operations.workers import list_workers

    if output not in ("table", "wide"):
        fail(f"-o/--output must be table or wide, not {output!r}", int(ExitCode.USAGE))
    wide = output == "wide"

    async def work() -> list[WorkerInfo]:
        async with redis_client(ctx) as r:
            return await list_workers(r)

    workers = run(ctx, work)
    if json:
        emit_json({"workers": [w.as_dict() for w in workers]})
        return
    from rich.table import Table

    stuck = sum(w.state == "unresponsive" for w in workers)
    table = Table(
        title=f"{sum(w.state == 'alive' for w in workers)} alive"
        f"{f', {stuck} UNRESPONSIVE' if stuck else ''} of {len(workers)} worker(s)"
    )
    for column in (
        "worker",
        "state",
        "heartbeat",
        "meta ttl",
        "client",
        "conns",
        "players",
        "mode",
        "version",
        *(("pid", "host") if wide else ()),
    ):
        table.add_column(
            column, justify="right" if column in ("conns", "players", "pid") else "left"
        )
    for w in workers:
        table.add_row(
            w.worker_id,
            {"alive": "alive", "unresponsive": "UNRESPONSIVE"}.get(w.state, "DEAD"),
            fmt.age(w.heartbeat_age),
            fmt.ttl(w.meta_ttl),
            "yes" if w.client_connected else "no",
            str(w.connections),
            str(w.players),
            w.mode or "?",
            w.version or "?",
            *((fmt.maybe(w.pid), w.host or "-") if wide else ()),
        )
    print_table(table)


@app.command("cleanup")
def cleanup(
    ctx: typer.Context,
    worker_id: Annotated[str, typer.Argument(help="Worker id.")],
    force: Annotated[
        bool, typer.Option("--force", help="Clean up even if the worker looks alive.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json: JsonOption = False,
) -> None:
    """Remove a dead worker's traces: its players' sessions and presence (only while the
    session still names this worker), its connections hash and meta key. Refuses a live
    worker without --force. Asks for confirmation; audited.

    \b
    Examples:
      echoes-ops workers cleanup sim-1 --dry-run
      echoes-ops workers cleanup sim-1 --yes
    """
    from echoes_ops.operations.workers import cleanup_worker

    async def preview() -> CleanupResult:
        async with redis_client(ctx) as r:
            return await cleanup_worker(r, worker_id, force=force, dry_run=True)

    plan = run(ctx, preview)
    if not dry_run:
        confirm(
            ctx, f"Remove worker {worker_id} and {len(plan.players)} player session(s)?", yes=yes
        )

        async def apply() -> CleanupResult:
            from echoes_ops.operations.writes import CLI, cleanup_worker_audited

            async with write_log(ctx) as log:
                return await cleanup_worker_audited(log, worker_id, force=force, via=CLI)

        plan = run(ctx, apply)
    if json:
        emit_json(plan.as_dict())
        return
    verb = "would remove" if plan.dry_run else "removed"
    stdout_console().print(
        f"worker {plan.worker_id}: {verb} {plan.sessions_removed} session(s), "
        f"{plan.presence_removed} presence entr(y/ies), {plan.connections_removed} connection(s)"
        f"{', meta' if plan.meta_removed else ''}"
    )
