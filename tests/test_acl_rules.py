"""``acl roles``: the rules themselves, with no seeded tier: no role is granted an admin
command or every key, every key pattern comes from the contract, the ACL file as printed
loads into a server, docs/team.md shows the matrix the role tests verify, and a cluster
user without the slot map gets the permission line (the matrix run as each role's user:
test_acl_roles.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.operations.roles import FORBIDDEN, ROLES
from tests.acl_matrix import matrix_rows
from tests.acl_tier import cluster_tier
from tests.cli_helpers import cli

pytestmark = pytest.mark.timeout(600)


def test_forbidden_commands_are_granted_to_no_role():
    for role in ROLES.values():
        assert not set(FORBIDDEN) & set(role.commands), role.name
        for rule in role.rules():
            assert rule not in ("allcommands", "+@all", "allkeys", "~*", "allchannels", "&*")


def test_key_patterns_come_from_the_contract():
    """Every pattern a role names is one of the contract's patterns or keys."""
    contract = {
        value for name, value in vars(keys).items() if name.isupper() and isinstance(value, str)
    } | {
        keys.lock_key("echoes-ops.warmup"),
        keys.lock_key("echoes-ops.preload"),
        keys.lock_info_key("echoes-ops.preload"),  # who holds preload's lock (host, pid)
    }
    contract.add(f"{keys.NAMESPACE_PREFIX}*")
    for role in ROLES.values():
        assert set(role.keys) | set(role.read_keys) <= contract, role.name


def test_aclfile_lines_load_into_a_server(tmp_path: Path):
    """The ACL file snippet, as printed, is a valid ACL file (the server starts with it)
    and gives the same rules as ACL SETUSER."""
    out = cli("acl", "roles", "--format", "aclfile")
    assert out.code == 0
    acl = tmp_path / "users.acl"
    acl.write_text(out.stdout)
    server = RedisServer(tmp_path / "srv", extra_args=["--aclfile", str(acl)])
    server.start()
    try:
        admin = redis.Redis.from_url(server.url, decode_responses=True)
        users = admin.execute_command("ACL", "LIST")
        for role in ROLES.values():
            line = next(u for u in users if u.startswith(f"user {role.default_user()} "))
            assert " on " in f" {line} "
            assert "nopass" not in line
            # no password in the file: nobody can log in as it until one is added
            with pytest.raises(redis.exceptions.AuthenticationError):
                redis.Redis(port=server.port, username=role.default_user(), password="").ping()
        admin.close()
    finally:
        server.stop()


def test_operator_may_do_everything_warmup_may():
    operator, warmup = ROLES["operator"], ROLES["warmup"]
    assert set(warmup.commands) <= set(operator.commands)
    assert all(any(_covers(o, k) for o in operator.keys) for k in warmup.keys)


def _covers(pattern: str, key: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(key, pattern)


def test_docs_show_the_matrix_the_tests_verify():
    text = (Path(__file__).resolve().parent.parent / "docs" / "team.md").read_text()
    for row in matrix_rows():
        assert row in text, f"docs/team.md lacks or contradicts: {row}"


def test_a_cluster_user_without_the_slot_map_gets_the_permission_line(redis_cluster, cluster_url):
    """A user that may not run CLUSTER SLOTS (as every role was before the cluster
    commands were added) gets the permission line and exit 6: redis-py keeps the refusal
    only in its exception chain, and it used to read 'cannot reach any seed node' (exit 4)."""
    tier = cluster_tier(redis_cluster)
    user = "echoes-noslots"
    with tier.each_node() as nodes:
        for node in nodes:
            node.execute_command(
                "ACL", "SETUSER", user, "on", ">pw", "-@all", "+hello", "+ping", "+command", "~*"
            )
    try:
        host, port = tier.nodes[0]
        out = cli("status", env={"REDIS_URL": f"redis://{user}:pw@{host}:{port}/0?cluster=true"})
        assert out.code == ExitCode.PERMISSION, (out.code, out.stderr)
        assert "this ACL user may not run the 'cluster|slots' command" in out.one_error_line()
    finally:
        with tier.each_node() as nodes:
            for node in nodes:
                node.execute_command("ACL", "DELUSER", user)
