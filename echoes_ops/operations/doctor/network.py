"""Checks of the server's configuration towards its clients: the pub/sub output buffer
limit, and who can reach it without a password."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final

from redis.exceptions import ResponseError

from echoes_ops.client.connect import AnyRedis
from echoes_ops.fmt import size
from echoes_ops.operations.doctor.base import Context, Finding, found, refused
from echoes_ops.operations.doctor.server import parse_version

PUBSUB_MIN_BYTES: Final = 8 * 1024 * 1024  # a hard limit below this drops workers in bursts

_UNITS: Final = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}


def parse_bytes(text: str) -> int | None:
    match = re.fullmatch(r"(\d+)([a-zA-Z]*)", text.strip())
    if not match or match.group(2).lower() not in _UNITS:
        return None
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_buffer_limits(text: str) -> dict[str, tuple[int, int, int]]:
    """``client-output-buffer-limit`` as {class: (hard bytes, soft bytes, soft seconds)}."""
    tokens = text.split()
    out: dict[str, tuple[int, int, int]] = {}
    for start in range(0, len(tokens) - 3, 4):
        name, hard, soft, seconds = tokens[start : start + 4]
        values = parse_bytes(hard), parse_bytes(soft), parse_bytes(seconds)
        if None in values:
            continue
        out[name.lower()] = (values[0] or 0, values[1] or 0, values[2] or 0)
    return out


async def pubsub_output_buffer(ctx: Context) -> Finding:
    why = (
        "Redis queues pub/sub messages for each subscriber that reads slower than they are "
        "published. Unlimited, a stalled worker makes that queue grow without bound, in used "
        "memory, until eviction or OOM hits the whole tier. Too low, a worker that falls "
        "behind in a burst (a broadcast, a crowded location) is disconnected and everything "
        "queued is lost: pub/sub is at-most-once."
    )
    fix = (
        'CONFIG SET client-output-buffer-limit "pubsub 32mb 8mb 60" (Redis\' default), and '
        "the same in redis.conf"
    )
    text = await ctx.config.get("client-output-buffer-limit")
    if text is None:
        return found(
            "unknown",
            ctx.config.unknown("client-output-buffer-limit"),
            why,
            "check client-output-buffer-limit pubsub in redis.conf",
        )
    limits = parse_buffer_limits(text).get("pubsub")
    if limits is None:
        return found("unknown", f"no pubsub class in {text!r}", why, fix)
    hard, soft, seconds = limits
    details = {"hard_bytes": hard, "soft_bytes": soft, "soft_seconds": seconds}
    shown = f"pubsub {hard} {soft} {seconds}"
    if hard == 0 and soft == 0:
        return found(
            "warn",
            f"{shown}: unlimited; a stalled subscriber can use all memory",
            why,
            fix,
            **details,
        )
    effective = hard if hard else soft
    if effective < PUBSUB_MIN_BYTES:
        return found(
            "warn",
            f"{shown}: a subscriber is dropped after {size(effective)} of backlog, too "
            f"little for bursts (want at least {size(PUBSUB_MIN_BYTES)})",
            why,
            fix,
            **details,
        )
    return found(
        "ok",
        f"{shown}: bounded, room for bursts ({size(effective)})",
        why,
        **details,
    )


def address_scope(address: str) -> str:
    """``loopback``, ``any`` (all interfaces) or ``address`` (a specific non-loopback one)
    for a ``bind`` entry (a leading ``-`` marks it optional) or a ``laddr`` host."""
    text = address.strip()
    if text.startswith("-"):
        text = text[1:]
    if text.startswith("/"):
        return "loopback"  # a unix socket path
    if text in {"*", "::*", "", "0.0.0.0", "::"}:
        return "any"
    if text.lower() == "localhost":
        return "loopback"
    text = text.strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return "address"  # a host name: cannot be sure it is loopback
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "any"
    return "address"


def _host_of(laddr: str) -> str:
    """The host part of ``ip:port`` / ``[v6]:port`` / ``v6:port``."""
    if laddr.startswith("["):
        return laddr[1:].split("]", 1)[0]
    return laddr.rsplit(":", 1)[0] if ":" in laddr else laddr


async def _client_laddr(r: AnyRedis) -> str | None:
    """The server address our own connection came in on (CLIENT INFO, 6.2+)."""
    try:
        reply = await r.client_info()
    except ResponseError:
        return None
    laddr = reply.get("laddr") if isinstance(reply, dict) else None
    return str(laddr) if laddr else None


async def _default_user_open(ctx: Context) -> tuple[bool | None, str]:
    """Whether a client can connect without credentials (the default user is on with
    nopass), and how that was learned. Secrets are never read into the report."""
    try:
        user = await ctx.r.acl_getuser("default")
    except ResponseError as exc:
        acl_error = refused(exc)
    else:
        if not user:
            return False, "ACL: no default user"
        raw_flags: Any = user.get("flags") or []
        flags = {str(f) for f in raw_flags}
        if "off" in flags:
            return False, "ACL: default user disabled"
        return ("nopass" in flags), "ACL GETUSER default"
    password = await ctx.config.get("requirepass")
    if password is None:
        return None, f"ACL GETUSER {acl_error}; {ctx.config.unknown('requirepass')}"
    return (password == ""), "CONFIG GET requirepass"


async def network_exposure(ctx: Context) -> Finding:
    why = (
        "A Redis reachable from other hosts without a password gives anyone on that network "
        "every session, the ability to kick players, forge broadcasts and, through CONFIG, "
        "often the host itself. Protected mode refuses non-loopback clients while the "
        "default user has no password, but only on Redis 7 for explicit bind addresses, "
        "and one setting turns it off."
    )
    fix = (
        "require credentials: requirepass, or ACL users with `ACL SETUSER default off`; bind "
        "only the interfaces the workers use, firewall the port, keep protected-mode yes"
    )
    bind = await ctx.config.get("bind")
    port = await ctx.config.get("port")
    tls_port = await ctx.config.get("tls-port")
    protected = await ctx.config.get("protected-mode")
    laddr = await _client_laddr(ctx.r)
    open_access, auth_source = await _default_user_open(ctx)
    addresses = bind.split() if bind is not None else []
    exposed_binds = [a for a in addresses if address_scope(a) != "loopback"]
    if bind is not None and not addresses:
        exposed_binds = ["(all interfaces)"]
    ports = [p for p in (port, tls_port) if p not in (None, "", "0")]
    laddr_exposed = laddr is not None and address_scope(_host_of(laddr)) != "loopback"
    details: dict[str, Any] = {
        "bind": bind,
        "port": port,
        "tls_port": tls_port,
        "protected_mode": protected,
        "connected_via": laddr,
        "default_user_without_password": open_access,
        "auth_checked_with": auth_source,
    }
    if bind is None and not laddr_exposed:
        return found(
            "unknown",
            f"{ctx.config.unknown('bind')}; connected over loopback",
            why,
            "check bind, protected-mode and requirepass in redis.conf",
            **details,
        )
    exposed = laddr_exposed or (bool(exposed_binds) and (bool(ports) or port is None))
    if not exposed:
        where = "loopback only" if ports else "no TCP port (unix socket only)"
        return found("ok", f"listens on {where} ({bind})", why, **details)
    where = ", ".join(exposed_binds) if exposed_binds else f"{laddr}"
    if open_access is False:
        return found(
            "ok",
            f"reachable on {where}; credentials required ({auth_source})",
            why,
            **details,
        )
    if open_access is None:
        return found(
            "unknown",
            f"reachable on {where}; whether a password is required is unknown: {auth_source}",
            why,
            fix,
            **details,
        )
    version = parse_version(str(ctx.info.get("redis_version", ""))) if ctx.info else None
    protects = protected == "yes" and (not addresses or (version is not None and version >= (7,)))
    if protects:
        return found(
            "warn",
            f"reachable on {where} with no password for the default user; only protected "
            "mode keeps non-loopback clients out",
            why,
            fix,
            **details,
        )
    return found(
        "fail",
        f"reachable on {where} with no password for the default user and protected-mode "
        f"{protected or 'unknown'}",
        why,
        fix,
        **details,
    )
