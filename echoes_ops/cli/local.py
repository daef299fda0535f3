"""``local up|down|status|env``: a private Redis and PostgreSQL for demos and development."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops.cli import render
from echoes_ops.cli.common import emit_json, guard, load_gamedata, run
from echoes_ops.cli.options import JsonOption

if TYPE_CHECKING:
    from echoes_ops.local.stack import LocalStack, LocalState

app = typer.Typer(
    help="Start and stop a private redis-server and PostgreSQL (with demo data) on loopback.",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path,
    typer.Option("--dir", envvar="ECHOES_OPS_LOCAL_DIR", help="Folder for data, logs and state."),
]
RedisPortOption = Annotated[
    int | None,
    typer.Option(
        "--redis-port",
        envvar="ECHOES_OPS_LOCAL_REDIS_PORT",
        help="Redis port; if taken, fail naming the process. Default: the port the last "
        "'up' took, else 6390, else (taken by another process) a free one.",
        show_default=False,
    ),
]
PgPortOption = Annotated[
    int | None,
    typer.Option(
        "--pg-port",
        envvar="ECHOES_OPS_LOCAL_PG_PORT",
        help="PostgreSQL port; if taken, fail naming the process. Default: the port the "
        "last 'up' took, else 5490, else (taken by another process) a free one.",
        show_default=False,
    ),
]


def _stack(
    root: Path,
    redis_port: int | None,
    pg_port: int | None,
    postgres: bool | None = None,
    cluster: bool | None = None,
) -> LocalStack:
    from echoes_ops.local.stack import LocalStack

    return LocalStack.load(
        root, redis_port=redis_port, pg_port=pg_port, postgres=postgres, cluster=cluster
    )


@app.command("up")
def up(
    ctx: typer.Context,
    root: DirOption = Path(".echoes-local"),
    redis_port: RedisPortOption = None,
    pg_port: PgPortOption = None,
    no_postgres: Annotated[bool, typer.Option("--no-postgres", help="Start Redis only.")] = False,
    characters: Annotated[int, typer.Option("--characters", help="Demo characters to seed.")] = 300,
    cluster: Annotated[
        bool | None,
        typer.Option(
            "--cluster/--no-cluster",
            help="Redis as a cluster of 3 primaries and 3 replicas (ports 7390-7395, or free "
            "ones) instead of one server. Default: what the last 'up' in --dir started.",
            show_default=False,
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Start the local services (if not running) and seed the demo characters.

    Prints the URLs to export. Without --redis-port/--pg-port, a port another process holds
    (another checkout's services, say) is replaced by a free one, and the ports taken are
    recorded in --dir for status, env and down. With --cluster, Redis is a Redis Cluster of
    3 primaries and 3 replicas (six redis-servers joined by redis-cli --cluster create);
    'local env' then prints REDIS_URL with ?cluster=true and REDIS_CLUSTER_NODES, and
    'local down' stops all six. Nodes of the cluster that are down are started again on
    their recorded ports and rejoin it; if another process took one of those ports, the
    running nodes are stopped and a new cluster starts (said in a note). Needs redis-server and redis-cli (apt-get install
    redis-server) and, unless --no-postgres, the PostgreSQL server binaries (apt-get install
    postgresql).

    \b
    Examples:
      echoes-ops local up
      eval "$(echoes-ops local env)" && echoes-ops status
      echoes-ops local up --cluster --no-postgres
    """
    stack = guard(
        ctx, lambda: _stack(root, redis_port, pg_port, postgres=not no_postgres, cluster=cluster)
    )
    data = guard(ctx, lambda: load_gamedata(ctx, None))

    async def work() -> LocalState:
        return await stack.up(
            location_ids=sorted(data.locations), item_ids=sorted(data.items), characters=characters
        )

    state = run(ctx, work)
    if json:
        emit_json(state.as_dict())
    else:
        render.local_state(state)


@app.command("down")
def down(
    ctx: typer.Context,
    root: DirOption = Path(".echoes-local"),
    json: JsonOption = False,
) -> None:
    """Stop the local services (data stays in --dir); a local cluster's six nodes all.

    \b
    Examples:
      echoes-ops local down
    """
    state = guard(ctx, lambda: _stack(root, None, None).down())
    if json:
        emit_json(state.as_dict())
    else:
        render.local_state(state)


@app.command("status")
def status(
    ctx: typer.Context,
    root: DirOption = Path(".echoes-local"),
    json: JsonOption = False,
) -> None:
    """Whether the local services run, and their URLs (the ports 'up' took).

    A service that is not running but whose port another process listens on is shown as
    "port in use by another process", with that process when it can be found.

    \b
    Examples:
      echoes-ops local status --json
    """
    state = guard(ctx, lambda: _stack(root, None, None).status())
    if json:
        emit_json(state.as_dict())
    else:
        render.local_state(state)


@app.command("env")
def env(
    ctx: typer.Context, root: DirOption = Path(".echoes-local"), json: JsonOption = False
) -> None:
    """Print shell export lines for the local services' URLs (the ports 'up' took).

    \b
    Examples:
      eval "$(echoes-ops local env)"
      echoes-ops local env --json
    """
    state = guard(ctx, lambda: _stack(root, None, None).status())
    if json:
        emit_json(state.env())
    else:
        sys.stdout.write("\n".join(state.env_lines()) + "\n")
