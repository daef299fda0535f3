"""Locks and leases against a real redis-server (docs/design.md, decision 1)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ClusterDownError

from echoes_ops.contract import keys
from echoes_ops.primitives import lock
from echoes_ops.primitives.lease import LockLostError, try_lease
from tests.waiting import eventually


async def test_tokens_are_unique_and_name_the_owner(r):
    first = await lock.try_acquire(r, "job", "worker-1", 5)
    assert first is not None
    assert await lock.try_acquire(r, "job", "worker-2", 5) is None
    assert lock.owner_of(first.token) == "worker-1"
    assert lock.owner_of("worker-7") == "worker-7"  # the plan's bare worker id
    assert await lock.release(r, first.key, first.token)
    again = await lock.try_acquire(r, "job", "worker-1", 5)
    assert again is not None
    assert again.token != first.token


async def test_release_after_expiry_never_deletes_the_next_owners_lock(r, sync_r):
    stale = await lock.try_acquire(r, "job", "worker-1", 0.1)
    assert stale is not None
    # worker-1 stalled past its TTL: the server let the lock expire (seen, not guessed)
    await eventually(lambda: sync_r.exists(keys.lock_key("job")) == 0)
    fresh = await lock.try_acquire(r, "job", "worker-2", 10)
    assert fresh is not None
    assert await lock.release(r, stale.key, stale.token) is False
    assert await lock.extend(r, stale.key, stale.token, 10) is False
    assert sync_r.get(keys.lock_key("job")) == fresh.token
    assert sync_r.pttl(keys.lock_key("job")) > 5000


async def test_lease_renews_while_work_runs(r, sync_r):
    ttl = 1.0  # renewed every third of it: a stall of ~0.6 s on a loaded machine is tolerated
    lease = await try_lease(r, "long-job", "worker-1", ttl)
    assert lease is not None
    async with lease:
        # time, not an event, is the property: the work outlives the lock's TTL (here more
        # than twice over) and the renewals keep the lock all along
        await asyncio.sleep(ttl * 2.5)
        assert sync_r.get(keys.lock_key("long-job")) == lease.token
        lease.check()
    assert lease.renewals >= 3
    assert sync_r.exists(keys.lock_key("long-job")) == 0  # released on exit


async def test_lost_lease_raises_and_spares_the_new_owner(r, sync_r):
    lease = await try_lease(r, "job", "worker-1", 0.2)
    assert lease is not None
    lease.renew_every = 10  # a stalled renewer
    with pytest.raises(LockLostError):
        async with lease:
            # the unrenewed lock ran out on the server (seen, not guessed)
            await eventually(lambda: sync_r.exists(keys.lock_key("job")) == 0)
            thief = await lock.try_acquire(r, "job", "worker-2", 10)
            assert thief is not None
    assert lock.owner_of(sync_r.get(keys.lock_key("job"))) == "worker-2"


async def test_force_release_by_an_operator_is_noticed(r, sync_r):
    lease = await try_lease(r, "job", "worker-1", 0.3)
    assert lease is not None
    with pytest.raises(LockLostError):
        async with lease:
            sync_r.delete(keys.lock_key("job"))  # operator force-released it
            await asyncio.wait_for(lease.lost.wait(), timeout=2)
            with pytest.raises(LockLostError):
                lease.check()  # a long task notices between its steps
    # leaving the block raised too: the work did not finish under the lock


async def test_leaving_a_lost_lease_raises(r, sync_r):
    lease = await try_lease(r, "job", "worker-1", 0.3)
    assert lease is not None
    with pytest.raises(LockLostError):
        async with lease:
            sync_r.delete(keys.lock_key("job"))
            await asyncio.wait_for(lease.lost.wait(), timeout=2)


async def test_a_failing_release_never_replaces_the_works_own_error(r, monkeypatch):
    """A cluster still down after a failover answers the release with CLUSTERDOWN: the
    work's error (preload --online's "cut off ... keys written") must be what propagates;
    the lock expires at its TTL. Without a work error the release's error still shows."""

    async def cluster_down(*_args: object) -> bool:
        raise ClusterDownError("The cluster is down")

    lease = await try_lease(r, "job", "worker-1", 5)
    assert lease is not None
    lease.release_retry_s = 0.3  # a cluster that stays down past the release's retries
    monkeypatch.setattr(lock, "release", cluster_down)
    with pytest.raises(ValueError, match="cut off"):
        async with lease:
            raise ValueError("cut off with 10 of 20 keys written")

    again = await try_lease(r, "job-2", "worker-1", 5)
    assert again is not None
    again.release_retry_s = 0.3
    with pytest.raises(ClusterDownError):
        async with again:
            pass


async def test_a_release_refused_during_a_failover_is_retried(r, sync_r, monkeypatch):
    """A run cut off by a cluster failover releases its lock once the cluster answers again
    (every node says CLUSTERDOWN until the replica is promoted), instead of leaving it in the
    next run's way until its TTL."""
    real_release = lock.release
    refused: list[str] = []

    async def down_twice(*args: object) -> bool:
        if len(refused) < 2:
            refused.append("CLUSTERDOWN")
            raise ClusterDownError("The cluster is down")
        return await real_release(*args)  # type: ignore[arg-type]

    lease = await try_lease(r, "job", "worker-1", 30)
    assert lease is not None
    monkeypatch.setattr(lock, "release", down_twice)
    with pytest.raises(ValueError, match="cut off"):
        async with lease:
            raise ValueError("cut off by a failover")
    assert refused == ["CLUSTERDOWN", "CLUSTERDOWN"]
    assert sync_r.exists(keys.lock_key("job")) == 0  # released on the third try
