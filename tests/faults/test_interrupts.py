"""Ctrl-C / SIGTERM at a step boundary of the long commands (issue #13 item 3): they stop
there, then say and audit what they really did, exit 130."""

from __future__ import annotations

import signal

import pytest

from echoes_ops.contract import keys
from tests.faults.helpers import CliProcess, interrupt, last_audit
from tests.waiting import wait_until

ORPHANS = 20_000


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_reconcile_fix_stops_between_repairs_and_says_how_many(redis_url, sync_r, sig):
    """20,000 orphan presence members; the signal arrives once repairs are under way.
    The command stops at the next repair, says 'repaired N of 20,000', and exactly
    20,000 - N orphans are left."""
    pipe = sync_r.pipeline(transaction=False)
    for start in range(0, ORPHANS, 1000):
        pipe.sadd(keys.presence_key("ruins"), *range(start + 1, start + 1001))
    pipe.execute()
    run = CliProcess("reconcile", "--fix", "--yes", env={"REDIS_URL": redis_url})
    try:
        wait_until(
            lambda: sync_r.scard(keys.presence_key("ruins")) < ORPHANS - 50,
            timeout=30,
            what="repairs to start",
        )
        run.signal(sig)
        done = run.finish()
    finally:
        run.kill()
    assert done.code == 130, done.stderr
    line = done.line("echoes-ops: interrupted: ")
    assert f"stopped on {sig.name}: repaired " in line
    ran = int(line.split("repaired ")[1].split(" of ")[0].replace(",", ""))
    assert f"of {ORPHANS:,} (the rest left as found)" in line
    assert 0 < ran < ORPHANS
    assert sync_r.scard(keys.presence_key("ruins")) == ORPHANS - ran
    record = last_audit(sync_r, "reconcile.fix")
    assert record["result"] == "interrupted"
    assert record["detail"]["repairs_run"] == ran
    assert record["detail"]["fixed"] == {"orphan_member": ran}


@pytest.mark.postgres
def test_warmup_stops_after_a_batch_and_says_how_many(database_url, redis_url, sync_r):
    """SIGINT while warmup writes (its next batch held with CLIENT PAUSE WRITE): it stops
    after the batch in flight, says how many characters it warmed, and exactly those
    sessions are in Redis."""
    from tests.warmup_helpers import WINDOW, seed

    seed(database_url, 6000)
    run = CliProcess(
        "warmup",
        "--active-within",
        WINDOW,
        "--what",
        "sessions",
        env={"REDIS_URL": redis_url, "DATABASE_URL": database_url},
    )
    try:
        wait_until(
            lambda: (
                run.proc.poll() is not None
                or any(True for _ in sync_r.scan_iter("player:*:session", count=1000))
            ),
            timeout=30,
            what="the first sessions",
        )
        sync_r.client_pause(20_000, all=False)
        done = interrupt(run, signal.SIGINT, sync_r.client_unpause)
    finally:
        sync_r.client_unpause()
        run.kill()
    assert done.code == 130, done.stderr
    line = done.line("echoes-ops: interrupted: ")
    assert "stopped on SIGINT: warmed " in line
    warmed = int(line.split("warmed ")[1].split(" characters")[0].replace(",", ""))
    assert 0 < warmed < 6000
    sessions = sum(1 for _ in sync_r.scan_iter("player:*:session", count=1000))
    assert sessions == warmed
    record = last_audit(sync_r, "warmup")
    assert record["result"] == "interrupted"
    assert record["detail"]["characters"] == warmed
