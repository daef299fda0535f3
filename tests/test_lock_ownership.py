"""Ownership that cannot be claimed: releasing or extending an operator hold without its token
works only for whoever took it as authenticated (the same OS user on the same host, or the
same Redis ACL user other than the shared default); anyone else, whatever ``--operator`` they
declare, is asked for ``--token`` or ``--force``. The other person is a real other OS user:
a forked child that switched its effective uid to ``nobody``. Real redis-server."""

from __future__ import annotations

import multiprocessing
import os
import pwd
from typing import Any

import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.operations import identity
from tests.cli_helpers import Outcome, cli

pytestmark = pytest.mark.timeout(60)
OTHER = "nobody"


def _child(conn: Any, user: str, args: tuple[str, ...], env: dict[str, str]) -> None:
    entry = pwd.getpwnam(user)
    os.setegid(entry.pw_gid)
    os.seteuid(entry.pw_uid)
    out = cli(*args, env=env)
    conn.send((out.code, out.stdout, out.stderr))
    conn.close()


def as_os_user(user: str, *args: str, env: dict[str, str]) -> Outcome:
    """Run the CLI in a forked child whose effective uid is ``user``'s (needs root)."""
    assert os.geteuid() == 0, "this test switches to another OS user: run it as root"
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, user, args, env))
    proc.start()
    code, stdout, stderr = parent.recv()
    proc.join(10)
    return Outcome(code, stdout, stderr)


@pytest.fixture
def acl_url(redis_url: str, sync_r: redis.Redis):
    """URLs for ACL users of their own on the test server (removed afterwards)."""
    made = []

    def make(user: str) -> str:
        sync_r.execute_command("ACL", "SETUSER", user, "on", f">{user}-pw", "~*", "&*", "+@all")
        made.append(user)
        return redis_url.replace("redis://", f"redis://{user}:{user}-pw@")

    yield make
    for user in made:
        sync_r.acl_deluser(user)


def hold(url: str, name: str = "maint") -> str:
    out = cli(
        "--operator", "alice", "locks", "hold", name, "--ttl", "10m", "--reason", "event", "--json",
        env={"REDIS_URL": url},
    )  # fmt: skip
    assert out.code == 0, out.stderr
    import json

    return str(json.loads(out.stdout)["token"])


def test_the_hold_records_who_took_it(acl_url, sync_r):
    token = hold(acl_url("alice"))
    info = sync_r.hgetall(keys.lock_info_key("maint"))
    assert info["operator"] == "alice"
    assert info["value"] == token
    assert info["os_user"] == identity.os_user()
    assert info["redis_user"] == "alice"
    assert info["host"]
    shown = cli("locks", "show", "maint", env={"REDIS_URL": acl_url("carol")})
    assert f"OS user {identity.os_user()}" in " ".join(shown.stdout.split())


def test_another_person_claiming_the_name_cannot_release_or_extend(redis_url, sync_r):
    """The issue's reproduction: mallory declares alice's name; the hold stays."""
    token = hold(redis_url)
    env = {"REDIS_URL": redis_url}
    for args in (("locks", "release", "maint"), ("locks", "extend", "maint", "--ttl", "1h")):
        out = as_os_user(OTHER, "--operator", "alice", *args, env=env)
        assert out.code == ExitCode.REFUSED, out.stderr
        line = out.one_error_line()
        assert "taken by OS user" in line
        assert f"not by you (OS user {OTHER}" in line
        assert "--token" in line
        assert "--force" in line
        assert sync_r.get(keys.lock_key("maint")) == token
        assert sync_r.pttl(keys.lock_key("maint")) <= 600_000
    # refused attempts are audited, with the real identity of who tried
    tried = [f for _, f in sync_r.xrange(keys.AUDIT_STREAM_KEY) if f["action"] == "locks.release"]
    assert [(f["operator"], f["os_user"], f["result"]) for f in tried] == [
        ("alice", OTHER, "failed")
    ]


def test_with_the_token_or_force_another_person_can(redis_url, sync_r):
    token = hold(redis_url)
    env = {"REDIS_URL": redis_url}
    out = as_os_user(
        OTHER, "--operator", "alice", "locks", "extend", "maint", "--ttl", "1h",
        "--token", token, env=env,
    )  # fmt: skip
    assert out.code == 0, out.stderr
    out = as_os_user(
        OTHER, "locks", "release", "maint", "--force", "--even-if-alive", "--yes", env=env
    )
    assert out.code == 0, out.stderr
    assert not sync_r.exists(keys.lock_key("maint"))
    forced = [
        f for _, f in sync_r.xrange(keys.AUDIT_STREAM_KEY) if f["action"] == "locks.release.force"
    ]
    assert [(f["os_user"], f["result"]) for f in forced] == [(OTHER, "ok")]


def test_the_owner_releases_without_the_token(redis_url, sync_r):
    hold(redis_url)
    out = cli("--operator", "alice", "locks", "extend", "maint", "--ttl", "1h",
              env={"REDIS_URL": redis_url})  # fmt: skip
    assert out.code == 0, out.stderr
    out = cli("--operator", "alice", "locks", "release", "maint", env={"REDIS_URL": redis_url})
    assert out.code == 0, out.stderr
    assert not sync_r.exists(keys.lock_key("maint"))


def test_the_same_acl_user_from_another_os_account_may(acl_url, sync_r):
    """Alice on another machine (or account) still authenticates as herself to Redis."""
    url = acl_url("alice")
    hold(url)
    out = as_os_user(OTHER, "--operator", "alice", "locks", "release", "maint",
                     env={"REDIS_URL": url})  # fmt: skip
    assert out.code == 0, out.stderr
    assert not sync_r.exists(keys.lock_key("maint"))


def test_the_shared_default_user_proves_nothing(redis_url, sync_r):
    """Both connect as 'default': only the OS identity could tell, and it differs."""
    hold(redis_url)
    assert sync_r.hget(keys.lock_info_key("maint"), "redis_user") == "default"
    out = as_os_user(OTHER, "--operator", "alice", "locks", "release", "maint",
                     env={"REDIS_URL": redis_url})  # fmt: skip
    assert out.code == ExitCode.REFUSED
    assert sync_r.exists(keys.lock_key("maint"))


def test_a_hold_that_recorded_no_identity_needs_its_token(redis_url, sync_r):
    token = hold(redis_url)
    for field in ("os_user", "sudo_user", "host", "redis_user"):
        sync_r.hdel(keys.lock_info_key("maint"), field)
    out = cli("--operator", "alice", "locks", "release", "maint", env={"REDIS_URL": redis_url})
    assert out.code == ExitCode.REFUSED
    assert "an identity it did not record" in out.one_error_line()
    out = cli("locks", "release", "maint", "--token", token, env={"REDIS_URL": redis_url})
    assert out.code == 0, out.stderr
