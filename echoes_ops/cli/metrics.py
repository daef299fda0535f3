"""``metrics serve``: the tier's metrics on an HTTP endpoint for Prometheus."""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from echoes_ops.cli.common import announce_target, gamedata_dir, run, state
from echoes_ops.cli.data import GamedataOption
from echoes_ops.cli.flags import EnvFileOption
from echoes_ops.cli.options import JsonOption

app = typer.Typer(
    help="Prometheus metrics of the tier: an HTTP /metrics endpoint.",
    no_args_is_help=True,
)


def _event(json: bool, text: str, **fields: Any) -> None:
    if json:
        sys.stdout.write(jsonlib.dumps(fields) + "\n")
        sys.stdout.flush()
    else:
        sys.stderr.write(f"echoes-ops: {text}\n")
        sys.stderr.flush()


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            envvar="ECHOES_OPS_METRICS_HOST",
            help="Address to listen on (env ECHOES_OPS_METRICS_HOST). The default is loopback "
            "only; see docs/monitoring.md before opening it.",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            "--port",
            envvar="ECHOES_OPS_METRICS_PORT",
            min=0,
            max=65535,
            help="TCP port (env ECHOES_OPS_METRICS_PORT; 0 = any free port, printed).",
        ),
    ] = 9808,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            envvar="ECHOES_OPS_METRICS_INTERVAL",
            min=1.0,
            metavar="SECONDS",
            help="Read the tier at most once per SECONDS, however often it is scraped "
            "(env ECHOES_OPS_METRICS_INTERVAL).",
        ),
    ] = 30.0,
    drift_interval: Annotated[
        float,
        typer.Option(
            "--drift-interval",
            envvar="ECHOES_OPS_METRICS_DRIFT_INTERVAL",
            min=0.0,
            metavar="SECONDS",
            help="Run reconcile's drift detector (read-only) every SECONDS in the background; "
            "0 = never (env ECHOES_OPS_METRICS_DRIFT_INTERVAL).",
        ),
    ] = 300.0,
    no_keys: Annotated[
        bool,
        typer.Option(
            "--no-keys",
            help="Skip stats' key walk (families, memory estimates, TTL buckets); the tier "
            "count of the domain metrics still walks the keyspace.",
        ),
    ] = False,
    env_file: EnvFileOption = None,
    gamedata: GamedataOption = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            envvar="ECHOES_OPS_METRICS_TLS_CERT",
            help="Serve HTTPS with this certificate (PEM; env ECHOES_OPS_METRICS_TLS_CERT).",
            show_default=False,
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(
            "--tls-key",
            envvar="ECHOES_OPS_METRICS_TLS_KEY",
            help="The certificate's private key (PEM; env ECHOES_OPS_METRICS_TLS_KEY).",
            show_default=False,
        ),
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            "--tls-client-ca",
            envvar="ECHOES_OPS_METRICS_TLS_CLIENT_CA",
            help="Require client certificates signed by this CA (mutual TLS; "
            "env ECHOES_OPS_METRICS_TLS_CLIENT_CA).",
            show_default=False,
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Serve the tier's metrics for Prometheus at /metrics: everything `stats --prometheus`
    prints (the same families, the domain metrics included) plus drift per kind. A scrape
    gets the last reading; the tier is read again at most once per --interval however many
    scrapes arrive, and the drift detector runs every --drift-interval in the background.
    The server starts even while Redis is down (echoes_redis_up is 0 then, and REDIS_ENABLED
    is still read from PostgreSQL and the env file). SIGTERM or Ctrl-C stops it (exit 0).

    TLS (and client certificates) come from prometheus-client; for basic auth put a
    reverse proxy in front (docs/monitoring.md). --json prints one JSON line per event
    (listening, stopped) on stdout.

    \b
    Examples:
      echoes-ops metrics serve
      echoes-ops metrics serve --port 9808 --interval 15 --drift-interval 600
      echoes-ops metrics serve --host 0.0.0.0 --tls-cert /etc/echoes/metrics.crt --tls-key /etc/echoes/metrics.key
    """
    from echoes_ops.operations.metrics.serve import Listen
    from echoes_ops.operations.metrics.source import MetricsConfig, MetricsSource

    settings = state(ctx).settings()
    config = MetricsConfig(
        target=settings.redis_target(),
        database_url=settings.database_dsn(),
        env_file=str(env_file) if env_file is not None else settings.env_file,
        gamedata_dir=gamedata_dir(ctx, gamedata),
        interval=interval,
        drift_interval=drift_interval,
        keyspace=not no_keys,
        operator=settings.operator_name(),
        flag_timeouts=settings.flag_timeouts(),
    )
    listen = Listen(
        host=host,
        port=port,
        tls_cert=str(tls_cert) if tls_cert else None,
        tls_key=str(tls_key) if tls_key else None,
        tls_client_ca=str(tls_client_ca) if tls_client_ca else None,
    )
    source = MetricsSource(config)

    async def work() -> None:
        import asyncio
        import signal

        from echoes_ops.operations.metrics.serve import serve as serve_metrics

        await announce_target(ctx, config.target, runs_without_redis=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve_metrics(
                source,
                listen,
                stop,
                on_listening=lambda url: _event(
                    json, f"serving metrics on {url}", event="listening", url=url
                ),
            )
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    run(ctx, work)
    _event(
        json,
        f"stopped after {source.readings.reads} reading(s), {source.drift_runs} drift run(s)",
        event="stopped",
        readings=source.readings.reads,
        drift_runs=source.drift_runs,
    )
