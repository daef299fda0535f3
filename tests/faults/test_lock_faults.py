"""Lock liveness under faults (issue #13 item 5): a holder frozen with SIGSTOP is
"unresponsive" (connected, heartbeat old), and once another takes its lock, the frozen
former holder's claim is flagged."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import redis

from echoes_ops.contract import keys
from echoes_ops.runtime.worker import SPAWN_LOCK
from tests.cli_helpers import cli
from tests.conftest import REPO
from tests.waiting import wait_until

SPAWN = keys.lock_key(SPAWN_LOCK)


def test_frozen_holder_is_unresponsive_then_its_stale_claim_is_flagged(redis_url, sync_r):
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.worker_proc", redis_url, "sim-8"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    env = {"REDIS_URL": redis_url}
    try:
        wait_until(lambda: (sync_r.get(SPAWN) or "").startswith("sim-8#"), what="sim-8's lock")
        held = sync_r.get(SPAWN)
        wait_until(
            lambda: (
                json.loads(sync_r.hget(keys.worker_meta_key("sim-8"), "locks") or "{}")
                == {SPAWN_LOCK: held}
            ),
            what="sim-8's meta to claim the lock",
        )

        # waited on, not read once: the heartbeat (every 0.2 s, stale after 0.6 s) comes from
        # another process, which a loaded machine may deschedule for a moment
        def shown_alive() -> dict[str, object] | None:
            shown = json.loads(cli("locks", "show", SPAWN_LOCK, "--json", env=env).stdout)
            return shown if shown["alive"] is True else None

        def listed_states() -> list[tuple[str, str]]:
            workers = json.loads(cli("workers", "list", "--json", env=env).stdout)["workers"]
            return [(w["id"], w["state"]) for w in workers]

        alive = wait_until(shown_alive, what="locks show to call sim-8 alive")
        wait_until(lambda: listed_states() == [("sim-8", "alive")], what="sim-8 listed alive")
        assert str(alive["liveness"]).startswith("a client named sim-8 is connected, heartbeat ")

        worker.send_signal(signal.SIGSTOP)
        frozen_at = time.time()
        wait_until(
            lambda: (
                time.time() - float(sync_r.hget(keys.worker_meta_key("sim-8"), "heartbeat")) > 0.7
            ),
            what="the heartbeat to go stale",
        )
        shown = cli("locks", "show", SPAWN_LOCK, env=env)
        assert shown.code == 0
        assert "not alive: unresponsive: connected, heartbeat " in shown.stdout
        listed = cli("locks", "list", env=env)
        assert "UNRESPONSIVE" in listed.stdout
        # every command tells the same story about the frozen worker (one liveness rule)
        workers = json.loads(cli("workers", "list", "--json", env=env).stdout)["workers"]
        assert [(w["id"], w["alive"], w["state"]) for w in workers] == [
            ("sim-8", True, "unresponsive")
        ]
        table = cli("workers", "list", env=env).stdout
        assert "0 alive, 1 UNRESPONSIVE of 1 worker(s)" in table
        assert "UNRESPONSIVE" in table.split("worker(s)", 1)[1]

        # its TTL runs out while it is frozen; someone else takes the lock
        wait_until(lambda: sync_r.set(SPAWN, "sim-9#fresh", nx=True, ex=60), what="the lock")
        assert time.time() - frozen_at < 30, "sim-8's meta must still be there"
        listed = cli("locks", "list", env=env)
        assert listed.code == 0
        assert (
            f"warning: sim-8 still claims {SPAWN} in its worker meta, but the lock now holds "
            "'sim-9#fresh'" in listed.stdout
        )
        data = json.loads(cli("locks", "list", "--json", env=env).stdout)
        assert data["locks"][0]["stale_claims"] == ["sim-8"]
    finally:
        worker.send_signal(signal.SIGCONT)
        worker.kill()
        worker.wait()
    assert sync_r.get(SPAWN) == "sim-9#fresh"  # nothing took it back


def test_liveness_without_a_heartbeat_field_is_not_guessed(redis_url, sync_r):
    """A named client whose meta was never written (or expired) is not called alive."""
    client = redis.Redis.from_url(redis_url, client_name="sim-3")
    client.ping()
    try:
        sync_r.set(SPAWN, "sim-3#aa", ex=60)
        shown = cli("locks", "show", SPAWN_LOCK, env={"REDIS_URL": redis_url})
        assert "unresponsive: connected, no heartbeat (no worker:meta key)" in shown.stdout
    finally:
        client.close()
