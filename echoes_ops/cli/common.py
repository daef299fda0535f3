"""What every command shares: settings from the global options, running a coroutine with
operator-facing error handling, and printing results as rich text or JSON.

Commands import operations lazily (inside the command function) so ``--help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from echoes_ops.cli import running
from echoes_ops.cli.core import CliState as CliState
from echoes_ops.cli.core import cache_of, error_line, failure_code, gamedata_folder
from echoes_ops.cli.core import emit_json as emit_json
from echoes_ops.cli.core import warn as warn
from echoes_ops.cli.running import CommandExit, stoppable
from echoes_ops.cli.running import ProgressBar as ProgressBar
from echoes_ops.cli.running import announce as announce_to
from echoes_ops.cli.running import is_tty as is_tty
from echoes_ops.cli.running import stderr_console as stderr_console
from echoes_ops.cli.running import stdout_console as stdout_console
from echoes_ops.cli.running import yield_cpu as yield_cpu
from echoes_ops.errors import OpsError

if TYPE_CHECKING:
    from echoes_ops.client.connect import AnyRedis
    from echoes_ops.config import RedisTarget
    from echoes_ops.gamedata import World, WorldCache
    from echoes_ops.gamedata.models import GameData
    from echoes_ops.operations.audit import AuditEntry, AuditLog
    from echoes_ops.operations.stop import StopToken

T = TypeVar("T")


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    error_line(message)
    raise typer.Exit(code)


def run(ctx: typer.Context, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work()`` in a fresh event loop; every failure becomes one line and an exit code."""
    import asyncio

    return guard(ctx, lambda: asyncio.run(_as_coroutine(work)))


async def _as_coroutine(work: Callable[[], Awaitable[T]]) -> T:
    return await work()


def run_stoppable(ctx: typer.Context, work: Callable[[StopToken], Awaitable[T]]) -> T:
    """Like :func:`run`, for a long command that checks a stop token at its step
    boundaries: the first SIGINT (Ctrl-C) or SIGTERM requests a stop there (the command
    then reports and audits what it really did, exit 130); a second one aborts at once."""
    import asyncio

    return guard(ctx, lambda: asyncio.run(stoppable(work)))


def guard(ctx: typer.Context, work: Callable[[], T]) -> T:
    """Call ``work()``; an :class:`OpsError` becomes one stderr line and its exit code,
    Ctrl-C exits 130, and anything unexpected is reported as an internal error (exit 70)
    without a traceback unless ``--debug`` (:func:`echoes_ops.cli.core.failure_code`)."""
    debug = state(ctx).debug
    try:
        return work()
    except typer.Exit:
        raise
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - no traceback for users
        raise typer.Exit(failure_code(exc, debug=debug)) from None


async def announce(ctx: typer.Context, client: AnyRedis, target: RedisTarget | None = None) -> None:
    """:func:`echoes_ops.cli.running.announce` for this run: the target and topology line,
    once, on a terminal only."""
    await announce_to(state(ctx), client, target)


async def announce_target(
    ctx: typer.Context, target: RedisTarget | None, *, runs_without_redis: bool = False
) -> None:
    """:func:`announce` for a command whose operation connects by itself (``tail``,
    ``simulate``, ``metrics serve``): a short connection of its own, on a terminal only.
    When Redis cannot be reached the command reports that itself; one that goes on without
    Redis (``runs_without_redis``) says here that the topology is not known yet."""
    cli_state = state(ctx)
    if target is None or cli_state.announced or not sys.stderr.isatty():
        return
    from echoes_ops.client.connect import open_redis

    try:
        async with open_redis(target) as client:
            await announce(ctx, client, target)
    except OpsError as exc:
        if runs_without_redis:
            cli_state.announced = True
            sys.stderr.write(f"echoes-ops: {target.display}: topology not known yet ({exc})\n")


def redis_client(ctx: typer.Context) -> AbstractAsyncContextManager[AnyRedis]:
    """Redis for a reading command (:func:`echoes_ops.cli.running.redis_client`)."""
    return running.redis_client(state(ctx))


def audited_redis(
    ctx: typer.Context, action: str, args: dict[str, Any], *, dry_run: bool
) -> AbstractAsyncContextManager[tuple[AnyRedis, AuditEntry]]:
    """Redis for a mutating command, with its audit record written when the block ends
    (:func:`echoes_ops.cli.running.audited_redis`)."""
    return running.audited_redis(state(ctx), action, args, dry_run=dry_run)


@asynccontextmanager
async def write_log(ctx: typer.Context) -> AsyncIterator[AuditLog]:
    """The audit log a write of :mod:`echoes_ops.operations.writes` runs with: Redis
    connected (or, when it cannot be, the reason kept in ``log.connect_error`` so the write
    records its failure in PostgreSQL). Audit sink problems are printed as warnings after a
    successful command."""
    from contextlib import AsyncExitStack

    from echoes_ops.client.connect import open_redis
    from echoes_ops.operations.audit import AuditLog

    settings = state(ctx).settings()
    target = settings.redis_target()
    log = AuditLog(
        operator=settings.operator_name(),
        database_url=settings.database_dsn(),
        pg_timeouts=settings.pg_timeouts(),
    )
    async with AsyncExitStack() as stack:
        try:
            log.redis = await stack.enter_async_context(open_redis(target))
        except OpsError as exc:
            log.connect_error = exc
        if log.redis is not None:
            await announce(ctx, log.redis, target)
        yield log
    for message in log.warnings:
        warn(message)


def refuse_audited(
    ctx: typer.Context, action: str, args: dict[str, Any], error: OpsError, *, dry_run: bool
) -> NoReturn:
    """A mutating command refused before touching anything (bad input, a policy check):
    record it as failed, then exit with the error's line and code. If the record cannot
    be written (Redis unreachable), the refusal is still what the operator is told."""
    import asyncio

    async def record() -> None:
        async with audited_redis(ctx, action, args, dry_run=dry_run):
            raise error

    try:
        asyncio.run(record())
    except OpsError as exc:
        if exc is not error:
            warn(f"this refusal is not in the audit trail: {exc}")
    fail(str(error), int(error.exit_code))


def gamedata_dir(ctx: typer.Context, given: Path | None) -> Path:
    """--gamedata, else ECHOES_OPS_GAMEDATA / config, else ./gamedata, else the bundled set."""
    return gamedata_folder(state(ctx), given)


def world_cache(ctx: typer.Context) -> WorldCache | None:
    """The parsed-gamedata cache: ECHOES_OPS_CACHE_DIR / config, else the XDG cache folder;
    None when set to ``off``."""
    return cache_of(state(ctx))


def load_world(ctx: typer.Context, given: Path | None) -> World:
    """The validated gamedata (from the cache when unchanged); GamedataError if invalid."""
    return running.load_world(state(ctx), gamedata_dir(ctx, given))


def load_gamedata(ctx: typer.Context, given: Path | None) -> GameData:
    return load_world(ctx, given).data()


def confirm(ctx: typer.Context, question: str, *, yes: bool) -> None:
    """Ask before a destructive action (:func:`echoes_ops.cli.running.confirm`): ``--yes``
    skips; no terminal means refuse."""
    try:
        running.confirm(state(ctx), question, yes=yes)
    except CommandExit as exc:
        raise typer.Exit(exc.exit_code) from None
