"""A tier with one ACL user per role, on one server or on every node of a cluster, for the
role tests (test_acl_roles.py): each role's URL, an admin client, and the ACL LOG of every
node (ACL users and their log are per node on Redis Cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from redis.cluster import RedisCluster as SyncCluster

from echoes_ops.local.redis_cluster import RedisCluster
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.operations.roles import ROLES
from tests.cli_helpers import cli

Admin = redis.Redis | SyncCluster


def password(role: str) -> str:
    return f"pw-{role}-secret"


@dataclass
class AclTier:
    """``topology`` standalone or cluster; ``nodes``: (host, port) of every server (a
    cluster's replicas included); ``admin_password``: the default user's."""

    topology: str
    host: str
    nodes: list[tuple[str, int]]
    admin_password: str | None = None

    @property
    def cluster(self) -> bool:
        return self.topology == "cluster"

    def url_for(self, role: str) -> str:
        """The REDIS_URL for the role's user (``default``: the unrestricted user)."""
        host, port = self.nodes[0]
        if role == "default":
            auth = f":{self.admin_password}@" if self.admin_password else ""
        else:
            auth = f"{ROLES[role].default_user()}:{password(role)}@"
        return f"redis://{auth}{host}:{port}/0" + ("?cluster=true" if self.cluster else "")

    def client(self, role: str = "default", *, decode: bool = False) -> Admin:
        """A redis-py client as ``role`` (a cluster client on a cluster)."""
        url = self.url_for(role).removesuffix("?cluster=true")
        if self.cluster:
            return SyncCluster.from_url(url, decode_responses=decode)
        return redis.Redis.from_url(url, decode_responses=decode)

    @contextmanager
    def each_node(self) -> Iterator[list[redis.Redis]]:
        """A default-user client on every node."""
        clients = [
            redis.Redis(host=h, port=p, password=self.admin_password, decode_responses=True)
            for h, p in self.nodes
        ]
        try:
            yield clients
        finally:
            for c in clients:
                c.close()

    def add_role_users(self) -> None:
        """Every role's user, from ``acl roles --format setuser`` as printed, with a
        password, on every node."""
        out = cli("acl", "roles", "--format", "setuser")
        assert out.code == 0, out.stderr
        lines = out.stdout.splitlines()
        assert len(lines) == len(ROLES)
        with self.each_node() as clients:
            for client in clients:
                for line, role in zip(lines, ROLES.values(), strict=True):
                    words = line.split()
                    assert words[:3] == ["ACL", "SETUSER", role.default_user()]
                    client.execute_command(*words)
                    client.execute_command(
                        "ACL", "SETUSER", role.default_user(), f">{password(role.name)}"
                    )

    def drop_role_users(self) -> None:
        with self.each_node() as clients:
            for client in clients:
                client.execute_command(
                    "ACL", "DELUSER", *(r.default_user() for r in ROLES.values())
                )

    def reset_log(self) -> None:
        with self.each_node() as clients:
            for client in clients:
                client.execute_command("ACL", "LOG", "RESET")

    def refusals(self, role: str) -> set[str]:
        """What the ACL LOG of any node recorded as refused to this role's user (commands,
        keys, channels)."""
        if role == "default":
            return set()
        user = ROLES[role].default_user()
        found = set()
        with self.each_node() as clients:
            for client in clients:
                for entry in client.execute_command("ACL", "LOG", "100"):
                    fields = (
                        entry
                        if isinstance(entry, dict)
                        else dict(zip(entry[::2], entry[1::2], strict=False))
                    )
                    if fields["username"] == user:
                        found.add(fields["object"])
        return found


def standalone_tier(server: RedisServer) -> AclTier:
    return AclTier("standalone", server.host, [(server.host, server.port)], server.password)


def cluster_tier(cluster: RedisCluster) -> AclTier:
    return AclTier(
        "cluster", cluster.host, [(cluster.host, p) for p in cluster.ports], cluster.password
    )
