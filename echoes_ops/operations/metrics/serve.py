"""``metrics serve``: prometheus-client's HTTP server (a thread per request, optional TLS and
client certificates) in front of a :class:`MetricsSource` living on this event loop.

A scrape's thread hands the request to the loop and waits for the (cached) exposition; the
loop also runs the drift detector. :func:`serve` returns when ``stop`` is set, after the
HTTP server has stopped accepting and released its port.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final
from wsgiref.simple_server import WSGIServer

from prometheus_client.exposition import start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from echoes_ops.errors import BusyError, ConfigError
from echoes_ops.operations.metrics.source import MetricsSource
from echoes_ops.operations.stats.prometheus import Exposition

SCRAPE_TIMEOUT: Final = 30.0  # a scrape waits this long for a reading in progress


@dataclass(frozen=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = 9808
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None  # require client certificates signed by this CA

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


class _LoopCollector:
    """A prometheus-client collector whose ``collect`` (called in a request thread) asks the
    event loop for the source's exposition."""

    def __init__(
        self, source: MetricsSource, loop: asyncio.AbstractEventLoop, timeout: float
    ) -> None:
        self._source = source
        self._loop = loop
        self._timeout = timeout

    def collect(self) -> Iterable[Metric]:
        future = asyncio.run_coroutine_threadsafe(self._source.exposition(), self._loop)
        try:
            return future.result(self._timeout).families
        except concurrent.futures.TimeoutError:
            future.cancel()  # the reading itself goes on (shielded) for the next scrape
            out = Exposition()
            out.metric(
                "exporter_scrape_timed_out",
                "gauge",
                "1: the reading took longer than this scrape could wait; the next scrape gets it.",
                1,
            )
            return out.families


def _start(listen: Listen, registry: CollectorRegistry) -> tuple[WSGIServer, threading.Thread]:
    if bool(listen.tls_cert) != bool(listen.tls_key):
        raise ConfigError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
    if listen.tls_client_ca and not listen.tls_cert:
        raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
    try:
        return start_http_server(
            listen.port,
            addr=listen.host,
            registry=registry,
            certfile=listen.tls_cert,
            keyfile=listen.tls_key,
            client_cafile=listen.tls_client_ca,
            client_auth_required=bool(listen.tls_client_ca),
        )
    except OSError as exc:
        where = f"{listen.host}:{listen.port}"
        if exc.errno == errno.EADDRINUSE:
            raise BusyError(
                f"cannot listen on {where}: the address is in use",
                hint="another metrics serve? pick a port with --port",
            ) from None
        raise ConfigError(f"cannot serve metrics on {where}: {exc}") from None


async def serve(
    source: MetricsSource,
    listen: Listen,
    stop: asyncio.Event,
    *,
    on_listening: Callable[[str], None] | None = None,
    scrape_timeout: float = SCRAPE_TIMEOUT,
) -> None:
    """Serve ``/metrics`` until ``stop`` is set; ``on_listening`` gets the URL once bound."""
    loop = asyncio.get_running_loop()
    registry = CollectorRegistry()
    registry.register(_LoopCollector(source, loop, scrape_timeout))
    server, thread = await asyncio.to_thread(_start, listen, registry)
    drift = asyncio.create_task(source.run_drift(stop))
    try:
        if on_listening is not None:
            host, port = str(server.server_address[0]), server.server_address[1]
            shown = f"[{host}]" if ":" in host else host
            on_listening(f"{listen.scheme}://{shown}:{port}/metrics")
        await stop.wait()
    finally:
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        await asyncio.to_thread(thread.join)
        drift.cancel()
        await asyncio.gather(drift, return_exceptions=True)
