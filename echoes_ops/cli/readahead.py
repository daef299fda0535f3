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
fails or the cache is off, the command reads the files itself.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from echoes_ops.cli.core import CliState, cache_of, gamedata_folder
from echoes_ops.errors import OpsError


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
    if cache is None:
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
    cli_state.read_ahead = lambda: _wait(pid)


def _wait(pid: int) -> None:
    """Wait for the child, as long as it reads: it does what the command would otherwise do
    (it is forked before any thread exists, so nothing it needs is held by another). Ctrl-C
    reaches both: the child ends, the command reports the interruption."""
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        return
