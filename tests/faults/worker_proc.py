"""A reference worker in its own process (to freeze with SIGSTOP), holding the spawn lock
with a spawn task that never ends: ``python -m tests.faults.worker_proc URL WORKER_ID``."""

from __future__ import annotations

import asyncio
import sys

from echoes_ops.primitives.lease import Lease
from echoes_ops.runtime.worker import Worker
from tests.runtime_helpers import make_worker


async def hold_forever(worker: Worker, lease: Lease) -> None:
    while True:
        lease.check()
        await asyncio.sleep(0.05)


async def main(url: str, worker_id: str) -> None:
    worker = make_worker(
        url,
        worker_id,
        heartbeat_interval=0.2,
        meta_ttl=30,  # outlives the lock's TTL and the CLI runs of test_lock_faults
        spawn_interval=0.05,
        spawn_lock_ttl=3.0,
        run_spawn_task=True,
    )
    worker.spawn_task = hold_forever
    await worker.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
