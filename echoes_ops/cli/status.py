"""``status``: the one-screen view of the tier."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from echoes_ops.cli import render
from echoes_ops.cli.common import emit_json, guard, redis_client, run, state
from echoes_ops.cli.options import JsonOption

if TYPE_CHECKING:
    from echoes_ops.operations.status import Status


def status(
    ctx: typer.Context,
    json: JsonOption = False,
) -> None:
    """Where it talks to (the Redis URL without its password, the topology, the environment
    named by --environment / ECHOES_OPS_ENVIRONMENT, red when it says production), then
    REDIS_ENABLED as PostgreSQL (the source of truth) holds it with the live workers' modes
    and a loud ALARM line when the env file, the Redis mirror or the workers disagree; then
    the server (version, mode, memory, eviction policy, uptime), the gamedata version, and
    counts of sessions, players in locations, workers and locks.

    \b
    Examples:
      echoes-ops status
      REDIS_URL=redis://cache.internal:6379/0 echoes-ops status --json
    """
    from echoes_ops.operations.status import status as read_status

    settings = guard(ctx, lambda: state(ctx).settings())

    state(ctx).announced = True  # the target and topology are part of this output

    async def work() -> Status:
        async with redis_client(ctx) as r:
            return await read_status(
                r,
                target=settings.redis_target(),
                environment=settings.environment,
                database_url=settings.database_dsn(),
                env_file=settings.env_file,
                flag_timeouts=settings.flag_timeouts(),
            )

    result = run(ctx, work)
    if json:
        emit_json(result.as_dict())
    else:
        render.status(result)
