"""``stats``: health metrics of the tier, once, as Prometheus text, or refreshed live."""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops import fmt
from echoes_ops.cli.common import (
    announce_target,
    emit_json,
    fail,
    gamedata_dir,
    redis_client,
    run,
    state,
    stdout_console,
)
from echoes_ops.cli.data import GamedataOption
from echoes_ops.cli.flags import EnvFileOption
from echoes_ops.cli.options import JsonOption
from echoes_ops.cli.output import print_table
from echoes_ops.errors import ExitCode

if TYPE_CHECKING:
    from rich.console import Console

    from echoes_ops.operations.stats import StatsSnapshot


def render(s: StatsSnapshot, console: Console) -> None:
    from rich.table import Table

    from echoes_ops.operations.keyspace import FAMILY_DESCRIPTIONS

    console.print(
        f"[bold]Redis {s.version}[/] ({s.role}), up {fmt.duration(s.uptime_s)}, {s.db_keys:,} keys "
        f"in this database; at {fmt.timestamp(s.taken_at)} (server clock), "
        f"took {fmt.timing(s.elapsed_s)}"
    )
    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    if s.cluster is not None:
        from echoes_ops.cli.render import cluster_lines

        for label, line in cluster_lines(s.cluster):
            summary.add_row(label, line)
    c = s.counters
    summary.add_row(
        "cache",
        f"hit rate {fmt.percent(c.hit_rate)} since start ({c.keyspace_hits:,} hits, "
        f"{c.keyspace_misses:,} misses); {c.evicted_keys:,} evicted, {c.expired_keys:,} expired",
    )
    if s.interval is not None:
        i = s.interval
        summary.add_row(
            "last interval",
            f"{fmt.duration(i.seconds)}: hit rate {fmt.percent(i.hit_rate)} ({i.keyspace_hits:,} hits, "
            f"{i.keyspace_misses:,} misses), {i.ops_per_sec:,.1f} ops/s, "
            f"{i.evicted_keys:,} evicted, {i.expired_keys:,} expired",
        )
    summary.add_row(
        "ops",
        f"{s.instantaneous_ops_per_sec:,} ops/s (Redis' estimate), "
        f"{c.commands_processed:,} commands since start",
    )
    m = s.memory
    limit = fmt.size(m.max_bytes) if m.max_bytes else "no limit"
    share = f" ({fmt.percent(m.used_of_max)})" if m.used_of_max is not None else ""
    frag = f"{m.fragmentation_ratio:.2f}" if m.fragmentation_ratio is not None else "?"
    summary.add_row(
        "memory",
        f"{fmt.size(m.used_bytes)} used{share} of maxmemory {limit}, peak {fmt.size(m.peak_bytes)}, "
        f"rss {fmt.size(m.rss_bytes)}, fragmentation {frag}, policy {m.policy}",
    )
    cl = s.clients
    if cl.visible:
        workers = ", ".join(cl.workers_connected[:8]) + (
            f", ... ({len(cl.workers_connected) - 8} more)" if len(cl.workers_connected) > 8 else ""
        )
        summary.add_row(
            "clients",
            f"{cl.connected:,} connected, {cl.worker_connections:,} of them from "
            f"{len(cl.workers_connected)} worker(s){' (' + workers + ')' if workers else ''}; "
            f"{cl.pubsub_clients:,} subscribed ({cl.pattern_subscribers:,} to patterns); "
            f"{cl.blocked:,} blocked",
        )
    else:
        summary.add_row("clients", f"{cl.connected:,} connected (CLIENT LIST not allowed)")
    p = s.pubsub
    pub = f"{p.channels_total:,} channels, {p.patterns_total:,} patterns"
    if p.listed:
        parts = [
            f"{name} {f.channels:,} ({f.subscriptions:,} subs)"
            if name != "other"
            else f"other {f.channels:,}"
            for name, f in p.families.items()
        ]
        pub += ": " + ", ".join(parts)
    elif p.why_not_listed:
        pub += f" ({p.why_not_listed})"
    summary.add_row("pub/sub", pub)
    if p.top_channels:
        summary.add_row("busiest", ", ".join(f"{channel} {n}" for channel, n in p.top_channels[:5]))
    version = s.gamedata.get("content_hash")
    summary.add_row(
        "gamedata", version[:12] if version else "no version record (run: echoes-ops preload)"
    )
    print_table(summary, console)

    if s.families is not None:
        table = Table(title="keys by family (memory: ~ = estimate from a sample)")
        for column in ("family", "keys", "memory", "sampled", "what"):
            table.add_column(column, justify="left" if column in ("family", "what") else "right")
        for name, f in s.families.items():
            mark = "" if f.exact or f.estimated_bytes in (None, 0) else "~"
            table.add_row(
                name,
                f"{f.keys:,}",
                mark + fmt.size(f.estimated_bytes),
                f"{f.sampled:,}",
                FAMILY_DESCRIPTIONS[name],
            )
        print_table(table, console)
    if s.ttl is not None:
        from echoes_ops.operations.stats import ttl_bucket_labels

        labels = ttl_bucket_labels()
        table = Table(title="remaining TTL (~ = estimate from a sample)")
        table.add_column("family")
        for label in labels:
            table.add_column(label, justify="right")
        for name, t in s.ttl.items():
            mark = "" if t.exact else "~"
            table.add_row(name, *(f"{mark}{t.buckets[label]:,}" for label in labels))
        print_table(table, console)


def _prometheus(
    ctx: typer.Context, no_keys: bool, drift: bool, env_file: Path | None, gamedata: Path | None
) -> str:
    """The stats snapshot and the domain metrics (and drift) as one exposition."""
    from echoes_ops.operations.metrics.domain import DiskVersion, read_drift
    from echoes_ops.operations.metrics.source import MetricsConfig, read_all, reading_exposition

    settings = state(ctx).settings()
    config = MetricsConfig(
        target=settings.redis_target(),
        database_url=settings.database_dsn(),
        env_file=str(env_file) if env_file is not None else settings.env_file,
        keyspace=not no_keys,
        operator=settings.operator_name(),
        flag_timeouts=settings.flag_timeouts(),
    )
    disk = DiskVersion(gamedata_dir(ctx, gamedata))

    async def read() -> str:
        await announce_target(ctx, config.target)
        reading = await read_all(config, disk)
        if reading.stats_error is not None:
            raise reading.stats_error
        found = await read_drift(config.target) if drift else None
        return reading_exposition(reading, found).text()

    return run(ctx, read)


def stats(
    ctx: typer.Context,
    json: JsonOption = False,
    prometheus: Annotated[
        bool,
        typer.Option(
            "--prometheus",
            help="Print the Prometheus text exposition format (for the node-exporter "
            "textfile collector or a scrape).",
        ),
    ] = False,
    watch: Annotated[
        float | None,
        typer.Option(
            "--watch",
            min=0.1,
            metavar="SECONDS",
            help="Refresh every SECONDS (counted from the end of the previous poll), with "
            "per-interval hit rate and ops/s. Ctrl-C stops (exit 130).",
            show_default=False,
        ),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(
            "--count",
            "-n",
            min=1,
            metavar="N",
            help="With --watch: stop after N polls (exit 0).",
            show_default=False,
        ),
    ] = None,
    no_keys: Annotated[
        bool,
        typer.Option(
            "--no-keys",
            help="Skip the key walk (families, memory estimates, TTL buckets): cheaper on "
            "a big keyspace.",
        ),
    ] = False,
    drift: Annotated[
        bool,
        typer.Option(
            "--drift",
            help="With --prometheus: also run reconcile's drift detector (read-only, one more "
            "walk) and print drift per kind; run it at the cadence you want drift measured.",
        ),
    ] = False,
    env_file: EnvFileOption = None,
    gamedata: GamedataOption = None,
) -> None:
    """Cache hit rate, evictions, expirations, memory, clients (and which are workers),
    ops/s, pub/sub channels and subscribers, keys and estimated memory per key family,
    sessions and inventories by remaining TTL, gamedata version. --prometheus adds the
    tier's domain metrics (players, sessions, workers and their modes, REDIS_ENABLED per
    source, locks, gamedata on disk vs loaded, last warmup; drift with --drift), the same
    families `metrics serve` exposes.

    Key counts come from one SCAN pass; memory per family is estimated from MEMORY USAGE of
    a random sample of up to 64 keys per family, and TTL buckets from up to 1000 keys per
    family (marked ~ and "estimate": true). --watch adds per-interval figures that leave
    out the reads stats itself makes. With --json and --watch, one JSON object per line.

    \b
    Examples:
      echoes-ops stats
      echoes-ops stats --json | jq .cache.hit_rate
      echoes-ops stats --prometheus > /var/lib/node_exporter/textfile/echoes.prom.tmp
      echoes-ops stats --prometheus --drift --env-file /srv/api/.env
      echoes-ops stats --watch 5
      echoes-ops stats --watch 10 --count 6 --json --no-keys
    """
    if prometheus and json:
        fail("--prometheus and --json are two output formats: pick one", int(ExitCode.USAGE))
    if prometheus and watch is not None:
        fail(
            "--prometheus prints one snapshot: run it from cron or a timer instead of --watch",
            int(ExitCode.USAGE),
        )
    if count is not None and watch is None:
        fail("--count needs --watch", int(ExitCode.USAGE))
    if not prometheus and (drift or env_file is not None or gamedata is not None):
        fail("--drift, --env-file and --gamedata go with --prometheus", int(ExitCode.USAGE))
    if prometheus:
        sys.stdout.write(_prometheus(ctx, no_keys, drift, env_file, gamedata))
        return

    from echoes_ops.operations import stats as ops

    if watch is None:

        async def once() -> StatsSnapshot:
            async with redis_client(ctx) as r:
                return await ops.snapshot(r, keyspace=not no_keys)

        result = run(ctx, once)
        if json:
            emit_json(result.as_dict())
        else:
            render(result, stdout_console())
        return

    console = stdout_console()
    every = watch

    async def poll() -> None:
        import asyncio
        import signal

        from echoes_ops.errors import OpsError

        # Ctrl-C: asyncio.run cancels the main task, but on Python 3.11 redis-py's writes
        # (asyncio.wait_for) can swallow that cancellation; the flag makes the loop stop at
        # the next poll boundary anyway, so one Ctrl-C always exits 130.
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        stop = False

        def on_sigint() -> None:
            nonlocal stop
            stop = True
            if main_task is not None:
                main_task.cancel()

        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
            installed = True
        except (NotImplementedError, RuntimeError, ValueError):
            installed = False  # not the main thread (embedded use): asyncio.run's handling
        try:
            async with redis_client(ctx) as r:
                async for snap in ops.watch(r, every, count=count, keyspace=not no_keys):
                    if stop:
                        raise KeyboardInterrupt
                    if json:
                        line = jsonlib.dumps(snap.as_dict(), ensure_ascii=False, default=str)
                        sys.stdout.write(line + "\n")
                        sys.stdout.flush()
                    else:
                        if console.is_terminal:
                            console.clear()
                        else:
                            console.rule()
                        render(snap, console)
        except (asyncio.CancelledError, OpsError):
            if stop:
                raise KeyboardInterrupt from None
            raise
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)

    run(ctx, poll)
