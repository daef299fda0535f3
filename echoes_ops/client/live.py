"""A long-lived client for faces that poll (the dashboard), and error translation for it.

:func:`open_redis` suits a command that connects, works and exits. A dashboard keeps one
client for hours while Redis may restart under it: the client must not hide a failure
behind its own retry loop (the face shows "disconnected since T" instead) and must
reconnect by itself on the next call once Redis is back, which redis-py's pool does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from echoes_ops.client.connect import AnyRedis, make_client
from echoes_ops.client.errors import translate
from echoes_ops.config import RedisTarget


def make_polling_client(target: RedisTarget, *, client_name: str | None = None) -> AnyRedis:
    """A client that retries a failed command once at once (a pooled connection that died
    with a restart is replaced), never waits between tries, and never blocks longer than
    the target's timeout."""
    return make_client(
        target,
        client_name=client_name,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=0,
    )


@contextmanager
def translated(where: str) -> Iterator[None]:
    """Inside the block, a redis-py (or socket) failure becomes the operator-facing
    :class:`~echoes_ops.errors.OpsError`, so faces catch one family of errors."""
    try:
        yield
    except (TimeoutError, rx.RedisError, rx.RedisClusterException, OSError) as exc:
        raise translate(exc, where) from exc
