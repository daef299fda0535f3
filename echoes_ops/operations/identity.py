"""Who is acting, for real: the identities the audit trail and lock holds record beside the
name an operator declares (``--operator``, ``ECHOES_OPS_OPERATOR``).

- ``os_user``: the account of this process, from the kernel (the effective uid's passwd
  entry), not from ``$USER``/``$LOGNAME``, which anyone can set.
- ``sudo_user``: ``$SUDO_USER`` when set (who ran ``sudo``); sudo sets it, but so can anyone
  in their own environment, so it is shown as what it is.
- ``host``: this machine's name.
- ``redis_user``: the ACL user of the connection (``ACL WHOAMI``, read once per command): the
  server authenticated it, so it is the one a person cannot claim without its password.
- ``pg_user``: PostgreSQL's ``session_user``, stamped by the server itself on every audit row
  (a trigger, see migrations), never taken from the client.

The declared name stays what it always was: a label, shown as "declared".
"""

from __future__ import annotations

import os
import pwd
import socket
from dataclasses import asdict, dataclass, replace
from typing import Any

from redis.exceptions import ResponseError

from echoes_ops.client.connect import AnyRedis

SHARED_REDIS_USER = "default"  # the one every unconfigured client gets: no one in particular


@dataclass(frozen=True)
class Identity:
    declared: str
    os_user: str
    sudo_user: str | None
    host: str
    redis_user: str | None = None  # None: not connected, or ACL WHOAMI refused/unknown
    pg_user: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_redis_user(self, user: str | None) -> Identity:
        return replace(self, redis_user=user)

    @property
    def person(self) -> str:
        """Who ran it, as the machine knows: ``SUDO_USER`` behind root, else the OS user."""
        return self.sudo_user or self.os_user

    def summary(self) -> str:
        """``os alice (sudo bob) on host, redis alice``: the authenticated side, in one line."""
        parts = [f"os {self.os_user}"]
        if self.sudo_user:
            parts[0] += f" (sudo {self.sudo_user})"
        parts[0] += f" on {self.host}"
        if self.redis_user:
            parts.append(f"redis {self.redis_user}")
        if self.pg_user:
            parts.append(f"pg {self.pg_user}")
        return ", ".join(parts)


def os_user() -> str:
    """The effective uid's account name (the uid itself when it has no passwd entry)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def sudo_user() -> str:
    """``$SUDO_USER`` ("" when not run through sudo)."""
    return (os.environ.get("SUDO_USER") or "").strip()


def local_identity(declared: str) -> Identity:
    """Everything but the server-side identities."""
    return Identity(
        declared=declared,
        os_user=os_user(),
        sudo_user=sudo_user() or None,
        host=socket.gethostname(),
    )


async def whoami(r: AnyRedis) -> str | None:
    """``ACL WHOAMI`` of this connection; None when refused or the server has no ACL."""
    try:
        reply = await r.acl_whoami()
    except ResponseError:
        return None
    return reply.decode() if isinstance(reply, bytes) else str(reply)
