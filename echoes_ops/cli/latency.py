"""``latency``: SLOWLOG, the latency monitor, and a round-trip sample."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops.cli.common import emit_json, redis_client, run, stdout_console
from echoes_ops.cli.options import JsonOption

if TYPE_CHECKING:
    from echoes_ops.operations.latency import LatencyReport


def latency(
    ctx: typer.Context,
    slowlog: Annotated[
        int,
        typer.Option(
            "--slowlog",
            "-n",
            min=0,
            max=1000,
            metavar="N",
            help="Show the N newest SLOWLOG entries.",
        ),
    ] = 20,
    samples: Annotated[
        int,
        typer.Option(
            "--samples",
            min=1,
            max=100_000,
            metavar="N",
            help="PING round trips to time (one after another, like redis-cli --latency).",
        ),
    ] = 100,
    json: JsonOption = False,
) -> None:
    """Redis latency: the newest SLOWLOG entries (when, how long, which client, which command
    on which key family; argument values are not shown), the latency monitor's events
    (LATENCY LATEST, with each event's HISTORY), and a round-trip sample measured here
    (min/avg/p99/max over --samples PINGs). Read-only; a command the ACL denies is noted,
    not fatal.

    \b
    Examples:
      echoes-ops latency
      echoes-ops latency --slowlog 50 --samples 1000
      echoes-ops latency --json | jq .round_trip
    """
    from echoes_ops.operations.latency import latency_report

    async def work() -> LatencyReport:
        async with redis_client(ctx) as r:
            return await latency_report(r, limit=slowlog, samples=samples)

    report = run(ctx, work)
    if json:
        emit_json(report.as_dict())
        return
    from echoes_ops.tui.latency_view import render_latency

    stdout_console().print(render_latency(report))
