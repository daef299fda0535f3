"""Opening Redis connections from settings, with operator-facing errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from echoes_ops.client.errors import translate
from echoes_ops.client.packing import (
    HiredisPackingConnection,
    HiredisPackingSSLConnection,
    HiredisPackingUnixConnection,
)
from echoes_ops.config import RedisTarget
from echoes_ops.errors import ConfigError

Redis = aioredis.Redis
# Sentinel(), typed: redis-py 8.1 leaves its constructor unannotated, 8.2 annotates it, so
# neither a plain call nor a ``type: ignore`` type-checks on both
_sentinel = cast(Callable[..., Sentinel], Sentinel)


def _connection_class(url: str) -> type[Any]:
    scheme = urlsplit(url).scheme
    if scheme == "rediss":
        return HiredisPackingSSLConnection
    if scheme == "unix":
        return HiredisPackingUnixConnection
    return HiredisPackingConnection


def _check_ca_file(path: str) -> None:
    """A missing CA file is a settings problem, not a server one (redis-py reports it as a
    connection failure, "Error 2 connecting to host:port")."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot read REDIS_CA_FILE {path}: {exc.strerror or exc}",
            hint="point REDIS_CA_FILE at the PEM file of the CA that signed the server certificate",
        ) from None


def make_client(target: RedisTarget, *, client_name: str | None = None, **extra: Any) -> Redis:
    """Build (but do not connect) an asyncio client for ``target``."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": target.timeout,
        "socket_timeout": extra.pop("socket_timeout", target.timeout),
        "socket_keepalive": True,
        "health_check_interval": extra.pop("health_check_interval", 30),
        "client_name": client_name,
        "username": target.username,
        "password": target.password.reveal() if target.password else None,
    }
    options.update(extra)
    tls = urlsplit(target.url).scheme == "rediss"
    if tls:
        # --insecure: the operator accepted an unverified server (the CLI warns each run)
        options["ssl_cert_reqs"] = "none" if target.tls_insecure else "required"
        options["ssl_check_hostname"] = not target.tls_insecure
        if target.ca_file:
            _check_ca_file(target.ca_file)
            options["ssl_ca_certs"] = target.ca_file
    if target.sentinels:
        if tls:
            # the primary is reached over TLS (REDIS_TLS=true); the Sentinels in plain text
            options["ssl"] = True
        sentinel = _sentinel(
            list(target.sentinels),
            socket_timeout=target.timeout,
            # fail fast like the direct clients (from_url): redis-py's Redis() default retries
            # a refused Sentinel ten times with backoff, ~4 s per dead Sentinel in the list
            sentinel_kwargs={"socket_timeout": target.timeout, "retry": Retry(NoBackoff(), 0)},
            **{k: v for k, v in options.items() if k != "socket_timeout"},
        )
        assert target.sentinel_master is not None  # checked by Settings
        client: Redis = sentinel.master_for(target.sentinel_master, redis_class=aioredis.Redis)
        return client
    options["connection_class"] = _connection_class(target.url)
    return aioredis.Redis.from_url(target.url, **options)


@asynccontextmanager
async def open_redis(
    target: RedisTarget, *, ping: bool = True, client_name: str | None = None, **extra: Any
) -> AsyncIterator[Redis]:
    """Connect (and ping) Redis; inside the block, Redis failures become :class:`OpsError`.

    Every redis-py exception raised inside the ``async with`` body is translated to a
    one-line error naming the server (never its password).
    """
    client = make_client(target, client_name=client_name, **extra)
    try:
        if ping:
            await client.ping()
        yield client
    except (TimeoutError, rx.RedisError, OSError) as exc:
        raise translate(exc, target.display) from exc
    finally:
        # the connection may already be gone; there is nothing left to release then
        with contextlib.suppress(rx.RedisError, OSError):
            await client.aclose()
