"""How much memory a preload will take, measured rather than guessed.

Redis stores a small hash as a listpack, and a hash with a value over
``hash-max-listpack-value`` bytes (64 by default: most descriptions) as a hash table with a
dict entry and two strings per field: the per-byte cost differs by several times between
the two, and between Redis versions. So the estimate samples: for each kind and encoding,
a few of the records to write are written to scratch keys (``echoes:probe:<token>:<n>``,
with a TTL in case this process dies), measured with ``MEMORY USAGE`` and deleted at once;
the measured bytes per encoded byte, times the encoded size of everything to write, is the
estimate. The main keyspace table's growth (8 bytes per bucket, doubling) is added. When
the probes cannot run (ACL, OOM), a cruder model stands in and the estimate says so.

The queued transaction itself holds memory until EXEC (every argument an object): that
peak is estimated separately, from the bytes to send.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from echoes_ops.client.bulk import Command, bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import keys

SAMPLES = 12  # records probed per kind and encoding
PROBE_TTL_MS = 60_000
LISTPACK_VALUE = 64  # Redis defaults: hash-max-listpack-value / -entries
LISTPACK_ENTRIES = 128
# fallback model when probes cannot run: bytes per encoded byte and per key, by encoding
FALLBACK = {False: (1.3, 110), True: (1.6, 400)}
BUCKET_BYTES = 8
QUEUED_ARG_BYTES = 32  # an argument object and its pointer while a transaction is queued
QUEUED_COMMAND_BYTES = 48


@dataclass(frozen=True)
class MemoryEstimate:
    data_bytes: int  # what the written keys will hold
    queue_bytes: int  # held by the queued transaction until EXEC
    method: str

    @property
    def peak_bytes(self) -> int:
        return self.data_bytes + self.queue_bytes


def _stratum(key: str, flat: Sequence[str]) -> tuple[str, bool]:
    # max over map(len): the per-key test runs for every key of the world, in C
    big = len(flat) > 2 * LISTPACK_ENTRIES or (bool(flat) and max(map(len, flat)) > LISTPACK_VALUE)
    return key.partition(":")[0], big


def _buckets(count: int) -> int:
    if count <= 0:
        return 0
    size = 4
    while size < count:
        size *= 2
    return size


async def estimate(
    r: AnyRedis,
    to_write: Sequence[tuple[str, Sequence[str]]],
    index_ids: Sequence[str],
    *,
    keys_before: int,
    keys_added: int,
) -> MemoryEstimate:
    """Estimate the memory the keys in ``to_write`` and the location index will take."""
    if not to_write:
        return MemoryEstimate(0, 0, "nothing to write")
    strata: dict[tuple[str, bool], list[int]] = defaultdict(list)
    sizes = []
    for i, (key, flat) in enumerate(to_write):
        sizes.append(len(key) + sum(map(len, flat)))
        strata[_stratum(key, flat)].append(i)
    chosen = {
        stratum: members[:: max(1, len(members) // SAMPLES)][:SAMPLES]
        for stratum, members in strata.items()
    }
    measured = await _probe(r, to_write, chosen, index_ids)
    table = BUCKET_BYTES * (_buckets(keys_before + keys_added) - _buckets(keys_before))
    queue = (
        sum(
            QUEUED_COMMAND_BYTES + len(flat) * QUEUED_ARG_BYTES + sizes[i]
            for i, (_, flat) in enumerate(to_write)
        )
        + len(index_ids) * QUEUED_ARG_BYTES
        + sum(map(len, index_ids))
    )
    total = 0
    if measured is not None:
        per_sample, index_bytes = measured
        for stratum, members in strata.items():
            sample = chosen[stratum]
            ratio = sum(per_sample[i] for i in sample) / max(1, sum(sizes[i] for i in sample))
            total += round(ratio * sum(sizes[i] for i in members))
        probes = sum(len(s) for s in chosen.values())
        method = f"MEMORY USAGE of {probes} probe keys"
        return MemoryEstimate(total + index_bytes + table, queue, method)
    return MemoryEstimate(
        model_bytes(to_write, index_ids) + table, queue, "model (MEMORY USAGE probes refused)"
    )


def model_bytes(to_write: Sequence[tuple[str, Sequence[str]]], index_ids: Sequence[str]) -> int:
    """The cruder estimate, without touching the server (dry runs, refused probes)."""
    total = 0.0
    for key, flat in to_write:
        per_byte, per_key = FALLBACK[_stratum(key, flat)[1]]
        total += per_byte * (len(key) + sum(map(len, flat))) + per_key
    return round(total) + sum(len(i) + 40 for i in index_ids)


async def _probe(
    r: AnyRedis,
    to_write: Sequence[tuple[str, Sequence[str]]],
    chosen: dict[tuple[str, bool], list[int]],
    index_ids: Sequence[str],
) -> tuple[dict[int, int], int] | None:
    """Write each chosen record to a probe key, MEMORY USAGE it, delete it. Returns the
    bytes per chosen record (corrected to its real key's length) and the location index's
    bytes; ``None`` if any probe command was refused."""
    token = secrets.token_hex(6)
    picked = sorted(i for sample in chosen.values() for i in sample)
    probes = {i: keys.probe_key(token, n) for n, i in enumerate(picked)}
    index_probe = keys.probe_key(token, len(picked))
    writes: list[Command] = []
    for i, probe in probes.items():
        writes += [("HSET", probe, *to_write[i][1]), ("PEXPIRE", probe, PROBE_TTL_MS)]
    for start in range(0, len(index_ids), 1000):
        writes.append(("SADD", index_probe, *index_ids[start : start + 1000]))
    writes.append(("PEXPIRE", index_probe, PROBE_TTL_MS))
    every = [*probes.values(), index_probe]
    reads: list[Command] = [("MEMORY", "USAGE", p, "SAMPLES", "0") for p in every]
    deletes: list[Command] = [("DEL", p) for p in every]  # one key each: slots differ
    try:
        replies = await bulk(r, [*writes, *reads], raise_on_error=False, allow_denied=True)
    finally:
        await bulk(r, deletes, raise_on_error=False, allow_denied=True)
    if any(isinstance(reply, Exception) for reply in replies):
        return None
    usage = replies[len(writes) :]
    per_sample = {
        i: int(usage[n] or 0) - len(probes[i]) + len(to_write[i][0]) for n, i in enumerate(picked)
    }
    index_bytes = (
        (int(usage[-1] or 0) - len(index_probe) + len(keys.LOCATION_INDEX_KEY)) if index_ids else 0
    )
    return per_sample, index_bytes
