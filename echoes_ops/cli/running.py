"""Running a command without Typer: the guard that turns failures into one line and an exit
code, the stoppable event loop, Redis (audited for a mutating command), the target line,
confirmations, the progress bar. Each takes the run's :class:`~echoes_ops.cli.core.CliState`
instead of a Typer context, so a command written on them runs both from its Typer function
and from :mod:`echoes_ops.cli.plain` (a plain ``preload`` skips importing Typer, #17);
:mod:`echoes_ops.cli.common` gives every Typer command the same helpers by context.

A failure here ends the command with :class:`CommandExit`, a :class:`SystemExit` (Typer and
Click let it through, as does the plain path's caller), never a ``typer.Exit``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from echoes_ops.cli.core import CliState, error_line, failure_code, warn
from echoes_ops.errors import ExitCode, OpsError

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from echoes_ops.client.connect import AnyRedis
    from echoes_ops.config import RedisTarget, Settings
    from echoes_ops.gamedata import World
    from echoes_ops.operations.audit import AuditEntry
    from echoes_ops.operations.stop import StopToken

T = TypeVar("T")


class CommandExit(SystemExit):
    """End the command with this exit code (its message already told)."""

    @property
    def exit_code(self) -> int:
        return int(self.code or 0)


def exit_with(message: str, code: int) -> NoReturn:
    """One line on stderr, then end the command with ``code``."""
    error_line(message)
    raise CommandExit(code)


def guarded(cli_state: CliState, work: Callable[[], T]) -> T:
    """Call ``work()``; an :class:`OpsError` becomes one stderr line and its exit code,
    Ctrl-C exits 130, anything unexpected is an internal error (exit 70), without a
    traceback unless ``--debug`` (:func:`echoes_ops.cli.core.failure_code`)."""
    try:
        return work()
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - no traceback for users
        raise CommandExit(failure_code(exc, debug=cli_state.debug)) from None


def run_stoppable(cli_state: CliState, work: Callable[[StopToken], Awaitable[T]]) -> T:
    """:func:`guarded` for a long command that checks a stop token at its step boundaries:
    the first SIGINT (Ctrl-C) or SIGTERM requests a stop there (the command then reports and
    audits what it really did, exit 130); a second one aborts at once."""
    import asyncio

    return guarded(cli_state, lambda: asyncio.run(stoppable(work)))


async def stoppable(work: Callable[[StopToken], Awaitable[T]]) -> T:
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


async def announce(
    cli_state: CliState, client: AnyRedis, target: RedisTarget | None = None
) -> None:
    """Say on stderr, once per run and only to a terminal, which server and topology the
    command talks to (``echoes-ops: redis://host:7390/0: cluster 3 primaries / 3
    replicas``), so an operator never reads one tier's answer as another's. Output that is
    piped or captured stays as it was; ``status`` prints the same in its own output.
    ``target`` is where ``client`` was opened (the settings' Redis when not given)."""
    if cli_state.announced or not sys.stderr.isatty():
        return
    cli_state.announced = True
    from echoes_ops.client.topology import describe

    topology = await describe(client)
    shown = (target or cli_state.settings().redis_target()).display
    sys.stderr.write(f"echoes-ops: {shown}: {topology.label}\n")


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
async def redis_client(cli_state: CliState) -> AsyncIterator[AnyRedis]:
    from echoes_ops.client.connect import open_redis

    settings = cli_state.settings()
    yield_cpu(settings)
    async with open_redis(settings.redis_target()) as client:
        await announce(cli_state, client)
        if settings.read_from == "replicas":
            from echoes_ops.operations.cluster_health import replica_lag

            line = await replica_lag(client)
            if line is not None:
                sys.stderr.write(f"echoes-ops: note: {line}\n")
        yield client


@asynccontextmanager
async def audited_redis(
    cli_state: CliState, action: str, args: dict[str, Any], *, dry_run: bool
) -> AsyncIterator[tuple[AnyRedis, AuditEntry]]:
    """Redis for a mutating command, with its audit record written when the block ends.
    Audit sink problems are printed as warnings after a successful command."""
    from echoes_ops.operations.audit import audited_redis as open_audited

    settings = cli_state.settings()
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
        await announce(cli_state, r)
        yield r, entry
    for message in log.warnings:
        warn(message)


def load_world(cli_state: CliState, folder: Path) -> World:
    """The validated gamedata (from the cache when unchanged); GamedataError if invalid.
    A plain preload's reading child (cli/readahead.py) is waited for first."""
    from echoes_ops.cli.core import cache_of

    if cli_state.read_ahead is not None:
        waited, cli_state.read_ahead = cli_state.read_ahead, None
        waited()
    from echoes_ops.gamedata import load_world as load

    return load(folder, cache=cache_of(cli_state))


def is_tty() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def confirm(cli_state: CliState, question: str, *, yes: bool) -> None:
    """Ask before a destructive action, naming the environment it acts on (``Kick player
    42?`` asks ``Kick player 42 on prod?``, the name in red when it says production);
    ``--yes`` skips; no terminal means refuse. Every confirmation goes through here."""
    if yes:
        return
    from echoes_ops.config import looks_like_production, on_environment

    try:
        environment = cli_state.settings().environment
    except OpsError:  # the command reports bad settings itself; the question still stands
        environment = None
    asked = on_environment(question, environment)
    if not sys.stdin.isatty():
        exit_with(
            f"{asked.removesuffix('?')}: refusing without --yes (no terminal to confirm on)",
            int(ExitCode.USAGE),
        )
    import typer  # only to ask on a terminal

    shown = asked
    if environment and looks_like_production(environment):
        loud = typer.style(environment, fg="red", bold=True)
        shown = asked.removesuffix(f" on {environment}?") + f" on {loud}?"
    try:
        agreed = typer.confirm(shown, default=False)
    except typer.Abort:  # Ctrl-C or Ctrl-D at the question: a no, not Click's "Aborted!"
        sys.stderr.write("\n")
        agreed = False
    if not agreed:
        sys.stderr.write("echoes-ops: aborted, nothing changed\n")
        raise CommandExit(int(ExitCode.REFUSED))


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    """Rich on a terminal; never wrapping, uncoloured text in a pipe (cli/output.py)."""
    from echoes_ops.cli.output import console

    return console()


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
