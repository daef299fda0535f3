"""reconcile's repairs: the confirmation and --kind on the command line, the audit record,
batching in round trips, a repair failing partway, pending dead workers (split from
test_reconcile.py, which holds how drift is found)."""

from __future__ import annotations

import json
import re
import time

import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.operations.reconcile import find_drift, repair
from tests.cli_helpers import cli

pytestmark = pytest.mark.timeout(90)


def dead_worker_sessions(sync_r: redis.Redis, ids: range, *, age: float) -> None:
    """Sessions of a worker that is gone (no meta, no client), heartbeat ``age`` s old."""
    for cid in ids:
        sync_r.hset(
            keys.session_key(cid),
            mapping={
                "worker_id": "gone",
                "location_id": "ruins",
                "last_heartbeat": str(time.time() - age),
            },
        )
        sync_r.expire(keys.session_key(cid), 600)
        sync_r.sadd(keys.presence_key("ruins"), cid)
        sync_r.hset(keys.worker_connections_key("gone"), str(cid), "connected")


def test_fix_without_a_terminal_refuses_without_yes_and_says_what(redis_url, sync_r):
    """stdin is not a terminal (CliRunner, like </dev/null): --fix says how many of what it
    would remove and refuses; nothing is deleted until --yes."""
    env = {"REDIS_URL": redis_url}
    dead_worker_sessions(sync_r, range(200, 205), age=300)
    refused = cli("reconcile", "--fix", env=env)
    assert refused.code == 2
    line = refused.one_error_line()
    assert "remove 5 session(s) of dead workers" in line
    assert redis_url.split("@")[-1].split("/")[2] in line  # the target it would act on
    assert "refusing without --yes" in line
    assert all(sync_r.exists(keys.session_key(cid)) for cid in range(200, 205))
    assert sync_r.xlen("echoes:audit") == 0

    asked = cli("reconcile", "--fix", env=env, input="n\n")  # CliRunner: still no tty
    assert asked.code == 2
    done = cli("reconcile", "--fix", "--yes", "--json", env=env)
    assert done.code == 0
    assert json.loads(done.stdout)["kinds"]["dead_worker"]["fixed"] == 5
    assert not any(sync_r.exists(keys.session_key(cid)) for cid in range(200, 205))


def test_kind_repairs_one_kind_and_the_audit_names_what_was_removed(redis_url, sync_r):
    env = {"REDIS_URL": redis_url}
    dead_worker_sessions(sync_r, range(300, 420), age=300)  # 120 dead-worker sessions
    sync_r.sadd(keys.presence_key("overpass"), 99)  # an orphan member
    only = cli("reconcile", "--kind", "orphan_member", "--fix", "--yes", "--json", env=env)
    assert only.code == 0, only.stderr
    report = json.loads(only.stdout)
    assert report["selected"] == ["orphan_member"]
    assert report["kinds"]["orphan_member"]["fixed"] == 1
    assert report["kinds"]["dead_worker"]["fixed"] == 0
    assert sync_r.exists(keys.session_key(300)) == 1  # the other kind is left alone
    ((_, first),) = sync_r.xrevrange("echoes:audit", count=1)
    assert json.loads(first["args"])["kinds"] == ["orphan_member"]
    assert json.loads(first["detail"]) == {
        "orphan_member": {"found": 1, "fixed": 1, "ids": ["99@overpass"], "ids_total": 1}
    }

    dead = cli("reconcile", "--kind", "dead_worker", "--fix", "--yes", env=env)
    assert dead.code == 0, dead.stderr
    ((_, second),) = sync_r.xrevrange("echoes:audit", count=1)
    detail = json.loads(second["detail"])["dead_worker"]
    assert detail["fixed"] == detail["ids_total"] == 120
    assert len(detail["ids"]) == 100  # capped, with the total beside it
    assert detail["ids"][:2] == ["300", "301"]

    bad = cli("reconcile", "--kind", "nonsense", env=env)
    assert bad.code == 2
    assert "unknown kind 'nonsense'" in bad.one_error_line()


def test_dead_worker_inside_grace_is_reported_pending(redis_url, sync_r):
    env = {"REDIS_URL": redis_url}
    dead_worker_sessions(sync_r, range(500, 503), age=10)
    out = cli("reconcile", "--grace", "60", env=env)
    assert out.code == 0  # nothing repairable yet: not drift
    # 60 s of grace minus a 10 s old heartbeat (minus the time the test took to get here)
    assert re.search(r"dead_worker: 3 pending, repairable in (4[0-9]|50) s", out.stdout)
    report = json.loads(cli("reconcile", "--grace", "60", "--json", env=env).stdout)
    kind = report["kinds"]["dead_worker"]
    assert (kind["found"], kind["pending"]) == (0, 3)
    assert 40 <= kind["pending_ready_in_s"] <= 50
    assert report["pending"] == 3


async def test_repairs_are_batched_in_round_trips(r, sync_r, monkeypatch):
    """120 repairs in far fewer round trips than repairs (pipelined batches of EVALSHA), each
    still its own call that re-checks its condition."""
    from echoes_ops.client import bulk as bulk_module
    from echoes_ops.operations import reconcile_apply

    dead_worker_sessions(sync_r, range(600, 720), age=300)
    plan = await find_drift(r, grace=60)
    evalsha = sync_r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    sent: list[int] = []  # commands per round trip, as the repairs hand them to the client
    real_bulk = bulk_module.bulk  # what the repairs' bulk_scripts sends each batch through

    async def counting_bulk(client, commands, **kwargs):
        sent.append(len(commands))
        return await real_bulk(client, commands, **kwargs)

    monkeypatch.setattr(bulk_module, "bulk", counting_bulk)
    report = await repair(r, plan)
    assert report.kinds["dead_worker"].fixed == 120
    assert sum(sent) == 120  # every repair sent once (no NOSCRIPT retry here)
    # pipelined batches (was one round trip per repair): the first of FIRST_BATCH, the
    # next sized by how long the batches took (smaller on a loaded machine, never one each)
    assert sent[0] == reconcile_apply.FIRST_BATCH
    assert len(sent) < 120
    assert sync_r.info("commandstats")["cmdstat_evalsha"]["calls"] - evalsha == 120


async def test_a_repair_failing_partway_keeps_the_counts_of_those_that_ran(r, sync_r, redis_url):
    """A repair that fails (here a session replaced by a key of another type between the
    look and the repair) raises, and the report and the audit record keep the repairs that
    ran before it (they were lost when the error went up)."""
    from echoes_ops.operations.audit import AuditLog
    from echoes_ops.operations.writes import CLI, repair_drift_audited

    dead_worker_sessions(sync_r, range(800, 830), age=300)
    plan = await find_drift(r, grace=60)
    sync_r.delete(keys.session_key(815))
    sync_r.set(keys.session_key(815), "not a hash")
    with pytest.raises(redis.exceptions.ResponseError):
        await repair_drift_audited(AuditLog("tester", redis=r), plan, kinds=None, via=CLI)
    fixed = plan.report.kinds["dead_worker"].fixed
    assert fixed >= 15  # 800-814 ran before the failing one (its batch's others too)
    assert fixed == 30 - 1 - sum(sync_r.exists(keys.session_key(c)) for c in range(816, 830))
    ((_, record),) = sync_r.xrevrange("echoes:audit", count=1)
    assert record["result"] == "failed"
    assert json.loads(record["detail"])["dead_worker"]["fixed"] == fixed


async def test_dead_worker_findings_counted_and_shown_in_id_order(r, sync_r):
    """Old, pending and unknown heartbeats mixed: the counts add up, the examples are the
    first ten findings by id (pending ones are no finding), the repairs the old ones only."""
    ids = list(range(1000, 1040))
    kinds = {
        cid: ("unknown" if cid % 5 == 0 else "pending" if cid % 3 == 0 else "old") for cid in ids
    }
    for cid in reversed(ids):  # written (and so scanned) in no particular order
        fields = {"worker_id": "gone", "location_id": "ruins"}
        if kinds[cid] != "unknown":
            fields["last_heartbeat"] = str(time.time() - (10 if kinds[cid] == "pending" else 300))
        sync_r.hset(keys.session_key(cid), mapping=fields)
        sync_r.expire(keys.session_key(cid), 600)
        sync_r.sadd(keys.presence_key("ruins"), cid)
    plan = await find_drift(r, grace=60)
    kind = plan.report.kinds["dead_worker"]
    counts = {k: list(kinds.values()).count(k) for k in ("unknown", "pending", "old")}
    assert kind.found == counts["unknown"] + counts["old"]
    assert kind.not_repairable == counts["unknown"]
    assert kind.pending == counts["pending"]
    assert 40 <= kind.pending_ready_in <= 51
    findings = [cid for cid in ids if kinds[cid] != "pending"][:10]
    assert [e["id"] for e in kind.examples] == findings
    for example in kind.examples:
        if kinds[example["id"]] == "unknown":
            assert example["heartbeat_age"] is None
            assert example["repairable"] is False
        else:
            assert 299 <= example["heartbeat_age"] <= 320
    assert plan.planned() == {"dead_worker": counts["old"]}
    assert [call[3] for call in plan.repairs.of("dead_worker")] == [
        str(cid) for cid in ids if kinds[cid] == "old"
    ]


async def test_set_members_are_read_in_batches_one_at_a_time(r, sync_r):
    """60 sets of 300 members: read whole, in several round trips of a few thousand members
    (all 60 SSCANs in one pipeline made the server run them all before anyone else)."""
    from echoes_ops.operations.tiermap import members_of_sets

    names = [keys.presence_key(f"loc{n}") for n in range(60)]
    for n, name in enumerate(names):
        sync_r.sadd(name, *range(n * 1000, n * 1000 + 300))
    reads = sync_r.info("stats")["total_reads_processed"]
    got = await members_of_sets(r, names, [300] * 60)
    assert sync_r.info("stats")["total_reads_processed"] - reads >= 5
    assert {name: len(members) for name, members in got.items()} == dict.fromkeys(names, 300)
    assert sorted(map(int, got[names[7]])) == list(range(7000, 7300))


async def test_the_census_runs_without_cycle_collection(r, sync_r, monkeypatch):
    """The census builds a record per session and no cycles: the cycle collector, which
    walked all of them again and again (about 0.5 s at 200,000 sessions), is off meanwhile."""
    import gc

    from echoes_ops.operations import reconcile as module

    dead_worker_sessions(sync_r, range(1, 4), age=300)
    seen = []
    original = module.census_all

    async def census_all(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        return await original(*args, **kwargs)

    monkeypatch.setattr(module, "census_all", census_all)
    plan = await find_drift(r, grace=60)
    assert seen == [False]
    assert plan.report.kinds["dead_worker"].found == 3
    assert gc.isenabled()
