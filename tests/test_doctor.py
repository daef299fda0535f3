"""`echoes-ops doctor` against real redis-servers configured wrong on purpose (and right),
real PostgreSQL for the REDIS_ENABLED sources, and the reference worker.

"Non-loopback address": the test servers bind ``127.0.0.1 -192.0.2.1``. The leading ``-``
makes the second address optional, and 192.0.2.1 (TEST-NET-1, RFC 5737) is on no interface,
so Redis listens on loopback only while its configuration names a non-loopback address:
doctor judges the configuration, and nothing is ever exposed.
"""

from __future__ import annotations

import json

import pytest

from echoes_ops.cli.doctor import exit_code
from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.gamedata import load_gamedata
from echoes_ops.operations import doctor as ops
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA
from tests.doctor_helpers import (
    EXPOSED_BIND,
    GOOD_CONFIG,
    client,
    doctor,
    live_worker,
    preload,
    server_now,
    verdicts,
)

__all__ = ["client"]  # the fixture, used by name


def test_doctor_flags_each_misconfiguration(private_redis, client, tmp_path):
    private_redis.extra_args = [
        "--maxmemory-policy", "allkeys-lru",
        "--client-output-buffer-limit", "pubsub 0 0 0",
        "--protected-mode", "no",
        *EXPOSED_BIND,
    ]  # fmt: skip
    c = client()
    url = private_redis.url
    now = server_now(c)
    # a session and a lock without TTL (no static data loaded at all)
    c.hset(keys.session_key(1), mapping={"location_id": "overpass"})
    c.set(keys.lock_key("spawn_manager"), "w-old#1")
    # a dead worker with leftovers: connections and sessions naming it, no client
    c.hset(keys.worker_connections_key("w-dead"), mapping={"2": "connected", "3": "connected"})
    for cid in (2, 3):
        c.hset(
            keys.session_key(cid),
            mapping={
                "worker_id": "w-dead",
                "location_id": "overpass",
                "last_heartbeat": str(now - 300),
            },
        )
        c.expire(keys.session_key(cid), keys.SESSION_TTL)
    # a live worker whose clock is 40 s behind the server's
    named = live_worker(url, c, "w-skew", now - 40, mode="redis", pubsub_mode="sharded")
    # REDIS_ENABLED: the env file says true, the Redis mirror false
    env_file = tmp_path / "app.env"
    env_file.write_text("# deployment\nexport REDIS_ENABLED='true'\n")
    c.hset(keys.FLAGS_KEY, "REDIS_ENABLED", "false")

    code, checks = doctor(url, env={"ECHOES_OPS_ENV_FILE": str(env_file)})
    named.close()

    assert verdicts(checks) == {
        "redis_version": "ok",
        "eviction_policy": "fail",
        "memory_headroom": "warn",
        "persistence": "warn",
        "static_data": "fail",
        "keys_without_ttl": "fail",
        "dead_workers": "warn",
        "pubsub_output_buffer": "warn",
        "network_exposure": "fail",
        "acl_user": "warn",  # the shared default user
        "clock_skew": "fail",
        "redis_enabled": "warn",
        "pubsub_mode": "warn",  # w-skew publishes sharded; the configuration says classic
        "cluster": "ok",  # one server: nothing to check
    }
    assert code == ExitCode.PROBLEMS_FOUND
    for check in checks.values():
        if check["verdict"] != "ok":
            assert check["why"], check["id"]
            assert check["fix"], check["id"]
    assert "allkeys-lru" in checks["eviction_policy"]["summary"]
    assert checks["keys_without_ttl"]["details"]["without_ttl"] == {
        "sessions": 1,
        "inventories": 0,
        "locks": 1,
    }
    assert checks["keys_without_ttl"]["details"]["examples"]["locks"] == ["lock:spawn_manager"]
    (dead,) = checks["dead_workers"]["details"]["dead_with_leftovers"]
    assert (dead["id"], dead["connections"], dead["players"]) == ("w-dead", 2, 2)
    assert checks["pubsub_output_buffer"]["details"]["hard_bytes"] == 0
    assert "192.0.2.1" in checks["network_exposure"]["summary"]
    assert checks["network_exposure"]["details"]["default_user_without_password"] is True
    skew = checks["clock_skew"]["details"]["workers"]["w-skew"]
    assert skew["source"] == "meta"
    assert skew["offset_s"] == pytest.approx(-40, abs=1.5)
    details = checks["redis_enabled"]["details"]
    assert {s["source"]: (s["state"], s["effective"]) for s in details["sources"]} == {
        "postgresql": ("not configured", None),
        "env_file": ("set", "true"),
        "redis": ("set", "false"),
    }
    assert details["worker_values"] == {"true": 1}  # mode redis: REDIS_ENABLED true
    assert checks["pubsub_mode"]["details"] == {
        "configured": "classic",
        "workers": {"w-skew": "sharded"},
    }
    assert (
        "1 of 1 live worker(s) not in the configured mode classic"
        in (checks["pubsub_mode"]["summary"])
    )


def test_doctor_human_output_explains_and_exits_1(private_redis, client):
    private_redis.extra_args = ["--maxmemory-policy", "allkeys-lru"]
    client()
    out = cli(
        "doctor", "--gamedata", str(BUNDLED_GAMEDATA),
        env={"REDIS_URL": private_redis.url, "COLUMNS": "200"},
    )  # fmt: skip
    assert out.code == ExitCode.PROBLEMS_FOUND
    assert "FAIL Eviction policy: maxmemory-policy allkeys-lru" in out.stdout
    assert "why: Locks, presence sets" in out.stdout
    assert "fix: CONFIG SET maxmemory-policy volatile-lru" in out.stdout
    assert "worst: fail (exit 1)" in out.stdout


def test_doctor_passes_a_good_tier(private_redis, client, tmp_path):
    private_redis.extra_args = GOOD_CONFIG
    c = client()
    url = private_redis.url
    preload(url)
    now = server_now(c)
    named = live_worker(url, c, "w1", now, mode="redis", redis_enabled="true")
    for cid in (1, 2, 3):
        c.hset(
            keys.session_key(cid),
            mapping={"worker_id": "w1", "location_id": "overpass", "last_heartbeat": f"{now:.3f}"},
        )
        c.expire(keys.session_key(cid), keys.SESSION_TTL)
        c.sadd(keys.presence_key("overpass"), cid)
    c.hset(keys.worker_connections_key("w1"), mapping={"1": "connected", "2": "connected"})
    c.rpush(keys.inventory_key(1), "{}")
    c.expire(keys.inventory_key(1), keys.INVENTORY_TTL)
    c.set(keys.lock_key("spawn_manager"), "w1#abc", ex=30)
    env_file = tmp_path / "app.env"
    env_file.write_text("REDIS_ENABLED=true\n")
    c.hset(keys.FLAGS_KEY, "REDIS_ENABLED", "true")

    # an administrator's own ACL user, not the shared default one
    c.acl_setuser(
        "ops-admin", enabled=True, passwords=["+admin-pw"], keys=["~*"], channels=["&*"],
        commands=["+@all"],
    )  # fmt: skip
    admin_url = url.replace("redis://", "redis://ops-admin:admin-pw@")
    code, checks = doctor(admin_url, "--strict", env={"ECHOES_OPS_ENV_FILE": str(env_file)})
    named.close()

    assert verdicts(checks) == dict.fromkeys(ops.CHECK_IDS, "ok"), {
        k: v["summary"] for k, v in checks.items() if v["verdict"] != "ok"
    }
    assert code == ExitCode.OK
    assert abs(checks["clock_skew"]["details"]["workers"]["w1"]["offset_s"]) < 1.0
    assert "all agree" in checks["redis_enabled"]["summary"]
    assert checks["pubsub_mode"]["summary"] == "all 1 live worker(s) classic"
    assert checks["persistence"]["details"]["appendonly"] is True


@pytest.mark.parametrize(("factor", "verdict"), [(1.18, "warn"), (0.97, "fail")])
def test_memory_headroom_thresholds(private_redis, client, factor, verdict):
    c = client()
    used = int(c.info("memory")["used_memory"])
    c.config_set("maxmemory", int(used * factor))  # noeviction: nothing is dropped
    _, checks = doctor(private_redis.url)
    assert checks["memory_headroom"]["verdict"] == verdict
    share = checks["memory_headroom"]["details"]["used_of_max"]
    assert share > (0.95 if verdict == "fail" else 0.80)


@pytest.mark.parametrize(
    ("protected", "password", "verdict"),
    [("yes", None, "warn"), ("no", None, "fail"), ("no", "s3cret-pw", "ok")],
)
def test_network_exposure_on_a_non_loopback_bind(
    private_redis, client, protected, password, verdict
):
    private_redis.password = password
    private_redis.extra_args = ["--protected-mode", protected, *EXPOSED_BIND]
    client()
    out = cli("doctor", "--json", env={"REDIS_URL": private_redis.url})
    assert "s3cret-pw" not in out.stdout + out.stderr
    checks = {check["id"]: check for check in json.loads(out.stdout)["checks"]}
    assert checks["network_exposure"]["verdict"] == verdict, checks["network_exposure"]
    assert checks["network_exposure"]["details"]["bind"] == "127.0.0.1 -192.0.2.1"


def test_loopback_only_without_password_is_ok(private_redis, client):
    private_redis.extra_args = ["--protected-mode", "no"]
    client()
    _, checks = doctor(private_redis.url)
    assert checks["network_exposure"]["verdict"] == "ok"
    assert "loopback only" in checks["network_exposure"]["summary"]


@pytest.mark.parametrize(
    ("behind", "session_ahead", "verdict"),
    [(10.0, 0.0, "warn"), (0.0, 20.0, "warn"), (2.0, 0.0, "ok")],
)
def test_clock_skew(private_redis, client, behind, session_ahead, verdict):
    c = client()
    url = private_redis.url
    now = server_now(c)
    named = live_worker(url, c, "w1", now - behind)
    c.hset(
        keys.session_key(7),
        # stamped by the worker's clock: behind like its meta, or ahead
        mapping={"worker_id": "w1", "last_heartbeat": f"{now - behind + session_ahead:.3f}"},
    )
    c.expire(keys.session_key(7), keys.SESSION_TTL)
    _, checks = doctor(url)
    named.close()
    check = checks["clock_skew"]
    assert check["verdict"] == verdict, check
    offset = check["details"]["workers"]["w1"]["offset_s"]
    expected = session_ahead if session_ahead else -behind
    assert offset == pytest.approx(expected, abs=1.0)
    if verdict != "ok":
        assert ("ahead of" if session_ahead else "behind") in check["summary"]


@pytest.mark.parametrize("how", ["acl", "renamed"])
def test_config_unavailable_makes_checks_unknown_not_a_crash(private_redis, client, how):
    if how == "renamed":
        private_redis.extra_args = ["--rename-command", "CONFIG", ""]
    c = client()
    preload(private_redis.url)
    url = private_redis.url
    if how == "acl":
        c.acl_setuser(
            "limited",
            enabled=True,
            passwords=["+limited-pw"],
            keys=["~*"],
            channels=["&*"],
            commands=["+@all", "-config", "-acl", "-ttl"],
        )
        url = url.replace("redis://", "redis://limited:limited-pw@")
    c.set(keys.lock_key("spawn_manager"), "w1#abc", ex=60)
    code, checks = doctor(url)
    reason = "denied by ACL" if how == "acl" else "disabled or renamed"
    unknown = ("pubsub_output_buffer", "network_exposure", "persistence")
    for name in unknown:
        assert checks[name]["verdict"] == "unknown", checks[name]
        assert reason in checks[name]["summary"], checks[name]["summary"]
    if how == "acl":  # TTL refused too: no false "ok" about keys without TTL
        assert checks["keys_without_ttl"]["verdict"] == "unknown"
        assert "refused" in checks["keys_without_ttl"]["summary"]
    else:
        assert checks["keys_without_ttl"]["verdict"] == "ok"
    assert checks["eviction_policy"]["verdict"] == "ok"  # read from INFO instead
    assert code == ExitCode.OK
    strict = cli(
        "doctor", "--json", "--strict", "--gamedata", str(BUNDLED_GAMEDATA),
        env={"REDIS_URL": url},
    )  # fmt: skip
    assert strict.code == ExitCode.PROBLEMS_FOUND


def test_invalid_gamedata_makes_static_check_unknown(private_redis, client, tmp_path):
    client()
    preload(private_redis.url)
    broken = tmp_path / "gamedata"
    broken.mkdir()
    (broken / "items.yaml").write_text("items: [\n")
    out = cli("doctor", "--json", "--gamedata", str(broken), env={"REDIS_URL": private_redis.url})
    checks = {check["id"]: check for check in json.loads(out.stdout)["checks"]}
    assert checks["static_data"]["verdict"] == "unknown"
    assert str(broken) in checks["static_data"]["summary"]


def test_stale_static_data_warns_and_missing_fails(private_redis, client):
    c = client()
    preload(private_redis.url)
    data = load_gamedata(BUNDLED_GAMEDATA)
    first_item = sorted(data.items)[0] if isinstance(data.items, dict) else data.items[0].id
    c.hset(keys.item_def_key(first_item), "name", "Changed by hand")
    _, checks = doctor(private_redis.url)
    assert checks["static_data"]["verdict"] == "warn"
    assert checks["static_data"]["details"]["stale"] == 1
    c.delete(keys.item_def_key(first_item))
    _, checks = doctor(private_redis.url)
    assert checks["static_data"]["verdict"] == "fail"
    assert checks["static_data"]["details"]["missing"] == 1


def test_unreachable_redis_is_one_line():
    out = cli("doctor", "--json", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert out.code == ExitCode.UNREACHABLE
    assert "127.0.0.1:1" in out.one_error_line()


# -- pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "scope"),
    [
        ("127.0.0.1", "loopback"),
        ("-::1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("localhost", "loopback"),
        ("/run/redis.sock", "loopback"),
        ("*", "any"),
        ("-::*", "any"),
        ("0.0.0.0", "any"),
        ("::", "any"),
        ("10.0.0.5", "address"),
        ("-192.0.2.1", "address"),
        ("fe80::1%eth0", "address"),
        ("cache.internal", "address"),
    ],
)
def test_address_scope(address, scope):
    assert ops.address_scope(address) == scope


def test_buffer_limits_and_sizes():
    text = "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
    assert ops.parse_buffer_limits(text)["pubsub"] == (33554432, 8388608, 60)
    assert ops.parse_buffer_limits("pubsub 32mb 8mb 60")["pubsub"] == (32 * 2**20, 8 * 2**20, 60)
    assert ops.parse_bytes("1k") == 1000
    assert ops.parse_bytes("1gb") == 2**30
    assert ops.parse_bytes("lots") is None


def test_exit_code_mapping():
    assert exit_code("ok", strict=False) == 0
    assert exit_code("warn", strict=False) == 0
    assert exit_code("unknown", strict=False) == 0
    assert exit_code("fail", strict=False) == 1
    assert exit_code("ok", strict=True) == 0
    assert exit_code("warn", strict=True) == 1
    assert exit_code("unknown", strict=True) == 1


def test_doctor_warns_about_the_shared_default_user(private_redis, client):
    c = client()
    c.acl_setuser(
        "alice", enabled=True, passwords=["+alice-pw"], keys=["~*"], channels=["&*"],
        commands=["+@all"],
    )  # fmt: skip
    _, checks = doctor(private_redis.url)
    check = checks["acl_user"]
    assert check["verdict"] == "warn"
    assert "default user" in check["summary"]
    assert "acl roles" in check["fix"]
    assert "docs/team.md" in check["fix"]
    _, checks = doctor(private_redis.url.replace("redis://", "redis://alice:alice-pw@"))
    assert checks["acl_user"]["verdict"] == "ok"
    assert "'alice'" in checks["acl_user"]["summary"]
