"""``status``: the one-screen view of the tier."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from echoes_ops.cli import render
from echoes_ops.cli.common import emit_json, redis_client, run
from echoes_ops.cli.options import JsonOption

if TYPE_CHECKING:
    from echoes_ops.operations.status import Status


def status(
    ctx: typer.Context,
    json: JsonOption = False,
) -> None:
    """Server (version, mode, memory, eviction policy, uptime), gamedata version, and counts
    of sessions, players in locations, workers and locks.

    \b
    Examples:
      echoes-ops status
      REDIS_URL=redis://cache.internal:6379/0 echoes-ops status --json
    """
    from echoes_ops.operations.status import status as read_status

    async def work() -> Status:
        async with redis_client(ctx) as r:
            return await read_status(r)

    result = run(ctx, work)
    if json:
        emit_json(result.as_dict())
    else:
        render.status(result)
