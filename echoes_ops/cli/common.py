"""What every command shares: settings from the global options, running a coroutine with
operator-facing error handling, and printing results as rich text or JSON.

Commands import operations lazily (inside the command function) so ``--help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from echoes_ops.cli.core import CliState as CliState
from echoes_ops.cli.core import cache_of, error_line, failure_code, gamedata_folder
from echoes_ops.cli.core import emit_json as emit_json
from echoes_ops.cli.core import warn as warn
from echoes_ops.errors import ExitCode, OpsError

if TYPE_CHECKING:
    from rich.console import Console

    from echoes_ops.client.connect import AnyRedis
    from echoes_ops.config import RedisTarget, Settings
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


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    """Rich on a terminal; never wrapping, uncoloured text in a pipe (cli/output.py)."""
    from echoes_ops.cli.output import console

    return console()


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

    return guard(ctx, lambda: asyncio.run(_stoppable(work)))


async def _stoppable(work: Callable[[StopToken], Awaitable[T]]) -> T:
    import asyncio
    import signal

    from echoes_ops.operations.stop import StopToken

    token = StopToken()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def on_signal(name: str) -> None:
        if token.requested:
            sys.stderr.write(f"echoes-ops: {name} again: aborting now\n")
            task.cancel()
            return
        token.request(name)
        sys.stderr.write(
            f"echoes-ops: {name}: stopping at the next step boundary (again to abort at once)\n"
        )

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        return await work(token)
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


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
    """Say on stderr, once per run and only to a terminal, which server and topology the
    command talks to (``echoes-ops: redis://host:7390/0: cluster 3 primaries / 3
    replicas``), so an operator never reads one tier's answer as another's. Output that is
    piped or captured stays as it was; ``status`` prints the same in its own output.
    ``target`` is where ``client`` was opened (the settings' Redis when not given)."""
    cli_state = state(ctx)
    if cli_state.announced or not sys.stderr.isatty():
        return
    cli_state.announced = True
    from echoes_ops.client.topology import describe

    topology = await describe(client)
    shown = (target or cli_state.settings().redis_target()).display
    sys.stderr.write(f"echoes-ops: {shown}: {topology.label}\n")


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


def yield_cpu(settings: Settings) -> None:
    """Lower this process's CPU priority (``Settings.nice``, ``ECHOES_OPS_NICE``: 10 by
    default; 0 leaves it; ``idle``: the kernel's SCHED_IDLE class), once, before a command
    that reads or writes Redis does its work (for preload: before it reads and encodes the
    world). On a host shared with the game's workers or with Redis itself, a walk's client at
    full CPU otherwise takes cores the server and the game wait for: on 2 cores the game's
    own calls then queue behind it (benchmarks/impact.py, docs/design.md decision 11). Only
    ever lowered (no privilege needed); the command's own speed changes only when the CPU is
    contended."""
    from echoes_ops.config.walk import IDLE_NICE

    if settings.nice == IDLE_NICE and _sched_idle():
        return
    wanted = 19 if settings.nice == IDLE_NICE else int(settings.nice)
    current = os.nice(0)
    if wanted > current:
        os.nice(wanted - current)


def _sched_idle() -> bool:
    """Move this process (its main thread, and the threads it starts later) to SCHED_IDLE;
    False where the platform has no such class or refuses it (then nice 19 stands in)."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:
        return False
    return True


@asynccontextmanager
async def redis_client(ctx: typer.Context) -> AsyncIterator[AnyRedis]:
    from echoes_ops.client.connect import open_redis

    settings = state(ctx).settings()
    yield_cpu(settings)
    async with open_redis(settings.redis_target()) as client:
        await announce(ctx, client)
        if settings.read_from == "replicas":
            from echoes_ops.operations.cluster_health import replica_lag

            line = await replica_lag(client)
            if line is not None:
                sys.stderr.write(f"echoes-ops: note: {line}\n")
        yield client


@asynccontextmanager
async def audited_redis(
    ctx: typer.Context, action: str, args: dict[str, Any], *, dry_run: bool
) -> AsyncIterator[tuple[AnyRedis, AuditEntry]]:
    """Redis for a mutating command, with its audit record written when the block ends.
    Audit sink problems are printed as warnings after a successful command."""
    from echoes_ops.operations.audit import audited_redis as open_audited

    settings = state(ctx).settings()
    yield_cpu(settings)
    async with open_audited(
        settings.redis_target(),
        operator=settings.operator_name(),
        database_url=settings.database_dsn(),
        action=action,
        args={**args, "via": "cli"},
        dry_run=dry_run,
        pg_timeouts=settings.pg_timeouts(),
    ) as (r, entry, log):
        await announce(ctx, r)
        yield r, entry
    for message in log.warnings:
        warn(message)


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
    from echoes_ops.gamedata import load_world as load

    return load(gamedata_dir(ctx, given), cache=world_cache(ctx))


def load_gamedata(ctx: typer.Context, given: Path | None) -> GameData:
    return load_world(ctx, given).data()


def is_tty() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def confirm(ctx: typer.Context, question: str, *, yes: bool) -> None:
    """Ask before a destructive action, naming the environment it acts on (``Kick player
    42?`` asks ``Kick player 42 on prod?``, the name in red when it says production);
    ``--yes`` skips; no terminal means refuse. Every confirmation goes through here."""
    if yes:
        return
    from echoes_ops.config import looks_like_production, on_environment

    try:
        environment = state(ctx).settings().environment
    except OpsError:  # the command reports bad settings itself; the question still stands
        environment = None
    asked = on_environment(question, environment)
    if not sys.stdin.isatty():
        fail(
            f"{asked.removesuffix('?')}: refusing without --yes (no terminal to confirm on)",
            int(ExitCode.USAGE),
        )
    shown = asked
    if environment and looks_like_production(environment):
        loud = typer.style(environment, fg="red", bold=True)
        shown = asked.removesuffix(f" on {environment}?") + f" on {loud}?"
    if not typer.confirm(shown, default=False):
        sys.stderr.write("echoes-ops: aborted, nothing changed\n")
        raise typer.Exit(int(ExitCode.REFUSED))


class ProgressBar:
    """A rich progress bar on a terminal; nothing otherwise. Usable as a progress callback."""

    def __init__(self, description: str, *, enabled: bool) -> None:
        self.description = description
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=stderr_console(),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=None)
        return self

    def __call__(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
