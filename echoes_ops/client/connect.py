"""Opening Redis connections from settings, with operator-facing errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.asyncio.sentinel import Sentinel

from echoes_ops.client.errors import translate
from echoes_ops.client.packing import (
    HiredisPackingConnection,
    HiredisPackingSSLConnection,
    HiredisPackingUnixConnection,
)
from echoes_ops.config import RedisTarget

Redis = aioredis.Redis


def _connection_class(url: str) -> type[Any]:
    scheme = urlsplit(url).scheme
    if scheme == "rediss":
        return HiredisPackingSSLConnection
    if scheme == "unix":
        return HiredisPackingUnixConnection
    return HiredisPackingConnection


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
    if target.sentinels:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.sentinels),
            socket_timeout=target.timeout,
            sentinel_kwargs={"socket_timeout": target.timeout},
            **{k: v for k, v in options.items() if k != "socket_timeout"},
        )
        assert target.sentinel_master is not None  # checked by Settings
        client: Redis = sentinel.master_for(target.sentinel_master, redis_class=aioredis.Redis)
        return client
    if urlsplit(target.url).scheme == "rediss":
        options["ssl_cert_reqs"] = "required"
        options["ssl_check_hostname"] = True
        if target.ca_file:
            options["ssl_ca_certs"] = target.ca_file
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
