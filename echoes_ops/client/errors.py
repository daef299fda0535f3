"""Translate redis-py exceptions into one-line operator errors with exit codes."""

from __future__ import annotations

import re
import ssl

from redis import exceptions as rx
from redis import sentinel as sync_sentinel
from redis.asyncio import sentinel as async_sentinel

from echoes_ops.errors import (
    AuthError,
    ConfigError,
    OpsError,
    PermissionDeniedError,
    RedisCommandError,
    UnreachableError,
)

_NOPERM_CMD = re.compile(r"run the '([^']+)' command")
_NOPERM_KEY = re.compile(r"no permissions to access (?:one of the keys|a key)", re.I)
_NOPERM_CHANNEL = re.compile(r"no permissions to access (?:one of the channels|a channel)", re.I)
# a command refused inside a Lua script (Redis 7.0: "The user executing the script can't run
# this command or subcommand", "... can't access at least one of the keys ...", "... can't
# publish to the channel ..."; later versions: "ACL failure in script")
_SCRIPT_DENIED = re.compile(r"user executing the script can't (\w+)|acl failure in script", re.I)
_NO_MASTER = (sync_sentinel.MasterNotFoundError, async_sentinel.MasterNotFoundError)
_NO_MASTER_NAME = re.compile(r"no master found for ('[^']*'|\"[^\"]*\")", re.I)


# the attribute per-node work sets on a Redis failure: the node it came from
_NODE = "echoes_ops_node"


def on_node(exc: BaseException, node: str) -> BaseException:
    """Mark a Redis failure of per-node work (a walk step on one node of a cluster) with
    ``node`` (``host:port``), the node that failed rather than the seed address the command
    was given (a redis-py message such as "Connection closed by server." names no node).
    The exception keeps its class, so callers catching redis-py's errors still do."""
    if isinstance(exc, rx.RedisError | OSError) and node_of(exc) is None:
        setattr(exc, _NODE, node)
    return exc


def node_of(exc: BaseException) -> str | None:
    """The node :func:`on_node` marked ``exc`` with, if any."""
    node = getattr(exc, _NODE, None)
    return node if isinstance(node, str) else None


def translate(exc: BaseException, where: str) -> OpsError:
    """Return the operator-facing error for a Redis failure against ``where`` (or against
    the cluster node :func:`on_node` marked it with)."""
    node = node_of(exc)
    if node is not None:
        where = f"cluster node {node}"
    exc = _refusal_behind(exc)
    text = str(exc).strip() or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, rx.BusyLoadingError) or ("loading" in lowered and "dataset" in lowered):
        return UnreachableError(
            f"Redis at {where} is loading its dataset into memory",
            hint="wait until loading finishes, then retry",
        )
    if isinstance(exc, rx.AuthenticationWrongNumberOfArgsError) or (
        "without any password configured" in lowered
    ):
        return AuthError(
            f"Redis at {where} has no password set, but one was given",
            hint="unset REDIS_PASSWORD or configure requirepass/ACL users on the server",
        )
    if (
        "noauth" in lowered
        or "authentication required" in lowered
        # HELLO sent before AUTH (redis-py does so on Sentinel-managed connections)
        or "must be called with the client already authenticated" in lowered
    ):
        return AuthError(
            f"Redis at {where} requires a password",
            hint="set REDIS_PASSWORD, REDIS_PASSWORD_FILE or a password in REDIS_URL",
        )
    if isinstance(exc, rx.AuthenticationError) or "wrongpass" in lowered:
        return AuthError(
            f"Redis at {where} rejected the credentials (wrong password or unknown user)",
            hint="check REDIS_USERNAME and REDIS_PASSWORD / REDIS_PASSWORD_FILE",
        )
    script_denied = _SCRIPT_DENIED.search(text)
    if isinstance(exc, rx.NoPermissionError) or lowered.startswith("noperm") or script_denied:
        match = _NOPERM_CMD.search(text)
        if match:
            what = f"run the '{match.group(1)}' command"
        elif _NOPERM_KEY.search(text):
            what = "access a key this command needs"
        elif _NOPERM_CHANNEL.search(text):
            what = "use a channel this command needs"
        elif script_denied:
            what = {"access": "access a key", "publish": "publish to a channel"}.get(
                (script_denied.group(1) or "").lower(), "run a command"
            ) + " that one of its scripts needs"
        else:
            what = "run this command"
        return PermissionDeniedError(
            f"Redis at {where}: this ACL user may not {what}",
            hint="grant it to the user (ACL SETUSER) or use an account that has it",
        )
    if isinstance(exc, rx.ReadOnlyError):
        return PermissionDeniedError(
            f"Redis at {where} is a read-only replica",
            hint="point REDIS_URL at the primary",
        )
    if "db index is out of range" in lowered or "invalid db index" in lowered:
        return ConfigError(
            f"Redis at {where} has no such database number",
            hint="REDIS_DB / the /N in REDIS_URL must be below the server's 'databases'",
        )
    if isinstance(exc, _NO_MASTER) or lowered.startswith("no master found for"):
        return _no_master(text, where)
    cluster = _cluster_problem(exc, text, where)
    if cluster is not None:
        return cluster
    if isinstance(exc, rx.ConnectionError | rx.TimeoutError | OSError):
        return _connection_problem(exc, text, where)
    if isinstance(exc, rx.ResponseError):
        return RedisCommandError(f"Redis at {where} answered with an error: {text}")
    return RedisCommandError(f"Redis at {where} failed: {text}")


def _refusal_behind(exc: BaseException) -> BaseException:
    """The ACL refusal that made redis-py's cluster client give up connecting, if one did.

    Refused CLUSTER SLOTS (an ACL user without it), redis-py reports "Cluster mode is not
    enabled on this node" and then "cannot be connected ... provide at least one reachable
    node", keeping the refusal only in the exception chain: that would read as an
    unreachable cluster. Anything else is returned as it is."""
    if not isinstance(exc, rx.RedisClusterException):
        return exc
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, rx.NoPermissionError):
            return link
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return exc


def _cluster_problem(exc: BaseException, text: str, where: str) -> OpsError | None:
    """A Redis Cluster failure (redis-py raises some outside RedisError)."""
    first = text.splitlines()[0]
    if (
        isinstance(exc, rx.ClusterDownError)
        or text.startswith("CLUSTERDOWN")
        # a script's command refused for the same reason (Redis 7.0's text, no CLUSTERDOWN)
        or "while the cluster is down" in text
    ):
        return UnreachableError(
            f"the Redis Cluster at {where} is down: {first}",
            hint="a primary and its replicas may all be down; check CLUSTER INFO on a node",
        )
    if isinstance(exc, rx.SlotNotCoveredError):
        return UnreachableError(
            f"the Redis Cluster at {where} has no node for a slot this command needs: {first}",
            hint="check slot coverage (CLUSTER INFO cluster_slots_ok) on a node",
        )
    if isinstance(exc, rx.RedisClusterException):
        if "at least one reachable node" in text or "failed to resolve" in text.lower():
            return UnreachableError(
                f"cannot reach any seed node of the Redis Cluster at {where}",
                hint="check REDIS_URL and REDIS_CLUSTER_NODES, and that the nodes run",
            )
        return RedisCommandError(f"Redis Cluster at {where} refused the command: {first}")
    return None


def _no_master(text: str, where: str) -> OpsError:
    """Sentinel gave no master. redis-py appends the Sentinels it could not reach (their
    client reprs, which hold words such as ``socket_timeout``: not evidence of a timeout)."""
    match = _NO_MASTER_NAME.search(text)
    name = match.group(1) if match else "(unknown)"
    if " : " in text:
        return UnreachableError(
            f"could not get master {name} from the Sentinels at {where}: a Sentinel did not answer",
            hint="check REDIS_SENTINELS, that the Sentinels run, and REDIS_SENTINEL_MASTER",
        )
    return UnreachableError(
        f"the Sentinels at {where} know no healthy master named {name}",
        hint="check REDIS_SENTINEL_MASTER against SENTINEL MASTERS, or the master is down",
    )


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain


# redis-py names the address it failed to reach: "Error 111 connecting to 127.0.0.1:7001."
_CONNECTING_TO = re.compile(r"connecting to (\S+?):(\d+)\.")


def _connection_problem(exc: BaseException, text: str, where: str) -> OpsError:
    lowered = text.lower()
    named = _CONNECTING_TO.search(text)
    if named and f"{named.group(1)}:{named.group(2)}" not in where:
        # another node than the one the command was given (a cluster node, a Sentinel's
        # primary): an operator must look at that one, not at the seed that answers
        where = f"node {named.group(1)}:{named.group(2)} of {where}"
    causes = _causes(exc)
    refused = any(isinstance(c, ConnectionRefusedError) for c in causes) or (
        "refused" in lowered or "error 111 " in lowered or "connect call failed" in lowered
    )
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            reason = getattr(cause, "reason", None) or cause.__class__.__name__
            # CERTIFICATE_VERIFY_FAILED alone does not tell an untrusted CA from a wrong name
            detail = getattr(cause, "verify_message", None)
            if detail:
                reason = f"{reason}: {str(detail).rstrip('.')}"
            return UnreachableError(
                f"TLS handshake with Redis at {where} failed: {reason}",
                hint="check REDIS_CA_FILE and that the server name matches its certificate",
            )
        cause = cause.__cause__ or cause.__context__
    if "ssl" in lowered or "certificate" in lowered or "tls" in lowered:
        return UnreachableError(
            f"TLS handshake with Redis at {where} failed",
            hint="check REDIS_CA_FILE and that the server name matches its certificate",
        )
    if isinstance(exc, rx.TimeoutError | TimeoutError) or "timeout" in lowered:
        return UnreachableError(
            f"timed out talking to Redis at {where}",
            hint="check the address, firewalls, and REDIS_TIMEOUT",
        )
    if refused:
        return UnreachableError(
            f"cannot connect to Redis at {where}: connection refused",
            hint="is redis-server running there? check REDIS_URL / REDIS_HOST / REDIS_PORT",
        )
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return UnreachableError(
            f"cannot resolve the Redis host in {where}",
            hint="check REDIS_URL / REDIS_HOST",
        )
    if "closed" in lowered or "reset" in lowered or "broken pipe" in lowered:
        return UnreachableError(
            f"Redis at {where} closed the connection",
            hint="the server may have restarted or killed this client; retry",
        )
    return UnreachableError(f"cannot talk to Redis at {where}: {text.splitlines()[0]}")
