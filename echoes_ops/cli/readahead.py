"""A plain ``preload`` reads the world in a child process while it loads its Redis client.

Of an unchanged bundled world's preload with an empty gamedata cache, about a third is
reading and validating the files and two thirds loading redis-py and asyncio (#17): one
CPU-bound step after the other, on a machine with cores to spare. So, before it imports
anything heavy, a plain ``preload`` forks a child that does what ``validate`` does (read,
validate, store the world in the gamedata cache) and notes beside it what preload derives
from a world (its content hash and keys, ``operations/preload_memo``), then ends; the
command, meanwhile, loads its modules, then waits for the child and reads the world as it
always does, through the cache (keyed by the files' content: a file changed since the child
read it is read again). Nothing the command prints, decides or exits with comes from the child: if the child
fails, the cache is off or the world is larger than ``READ_AHEAD_MAX_BYTES`` (where a
world that must be written would cost more read back than the overlap saves), the command
reads the files itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from echoes_ops.cli.core import CliState, cache_of, gamedata_folder
from echoes_ops.errors import OpsError

# Worlds up to this size are read ahead. A world Redis does not hold yet (a first load, a
# change) is then read back from the cache and encoded again by the command: about 75 ms of
# CPU per MB here (22,000 entries, 8 MB: 0.32 s + 0.28 s), against the overlap's gain, which
# is at most the ~0.1 s of loading the Redis client. Past this size the command reads the
# world itself, as it did before.
READ_AHEAD_MAX_BYTES = 512 * 1024


def read_ahead(cli_state: CliState, given: Path | None) -> None:
    """Start the child (where a gamedata cache is on and ``os.fork`` exists) and set
    ``cli_state.read_ahead`` to the wait for it, which :func:`echoes_ops.cli.running.
    load_world` runs before it reads. Settings that do not load start nothing: the command
    reports them; a fork the system refuses starts nothing either."""
    if not hasattr(os, "fork"):
        return
    try:
        settings = cli_state.settings()
        cache = cache_of(cli_state)
        folder = gamedata_folder(cli_state, given)
    except (OpsError, ValueError):  # bad settings, text that is not UTF-8: the command says
        return
    if cache is None or not _small(folder):
        return
    from echoes_ops.cli.running import yield_cpu

    yield_cpu(settings)  # the child reads at the command's own priority
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError:  # no process to spare: the command reads the world itself
        return
    if pid == 0:  # the child: warm the cache, say nothing, end
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            from echoes_ops.gamedata import validate_gamedata
            from echoes_ops.operations.preload_memo import noted, read_memo

            world = validate_gamedata(folder, cache=cache).world
            if world is not None and read_memo(world) is None:
                noted(world)  # its hash and keys: the command need not build or encode it
        finally:
            os._exit(0)  # whatever happened: the command reads the world on its own
    cli_state.read_ahead = _Child(pid)


class _Child:
    """The reading child: called, it is waited for; abandoned, it is ended."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __call__(self) -> None:
        """Wait for the child, as long as it reads: it does what the command would otherwise
        do (it is forked before any thread exists, so nothing it needs is held by another).
        Ctrl-C reaches both: the child ends, the command reports the interruption."""
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            return

    def abandon(self) -> None:
        """End the child and reap it (the command stopped before it read the world: an
        error, Ctrl-C): no reader is left behind the command."""
        with contextlib.suppress(ProcessLookupError):  # it had ended already; reaped below
            os.kill(self.pid, signal.SIGKILL)
        self()


def abandon(cli_state: CliState) -> None:
    """End a reading child the command never waited for (:func:`read_ahead`)."""
    child, cli_state.read_ahead = cli_state.read_ahead, None
    if isinstance(child, _Child):
        child.abandon()


def _small(folder: Path) -> bool:
    """Whether the world's files add up to at most ``READ_AHEAD_MAX_BYTES``."""
    from echoes_ops.gamedata.loader import gamedata_files

    try:
        return sum(path.stat().st_size for path in gamedata_files(folder)) <= READ_AHEAD_MAX_BYTES
    except (OpsError, OSError):  # no such folder, no files: the command says so
        return False
