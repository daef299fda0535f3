"""The stat index in front of the gamedata cache: an unchanged world is not read again, and
no change to a world (even one that keeps the size and the mtime) is taken for none."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from echoes_ops.gamedata import WorldCache, loader, reading, statindex, validate_gamedata
from echoes_ops.gamedata.cache import file_digest, reader_version
from tests.gamedata_world import _write_world
from tests.waiting import wait_until

SMALL_MARGIN_NS = 50_000_000  # 50 ms: longer than a kernel timestamp tick (1-10 ms)


def _cache(tmp_path: Path) -> WorldCache:
    return WorldCache(tmp_path / "cache")


def _wait_past_margin(root: Path, margin_ns: int) -> None:
    """Wait until every file under ``root`` is older than ``margin_ns`` (so the index the
    next validation writes trusts it)."""
    newest = max(max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) for p in root.rglob("*"))
    wait_until(lambda: time.time_ns() > newest + margin_ns, 5, "the clock to pass the margin")


class Reads:
    """Counts the files hashed (the content key) and the readings of the whole world."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hashed = 0
        self.readings = 0
        original_reading = reading.Reading

        def counted_digest(path: Path) -> str:
            self.hashed += 1
            return file_digest(path)

        def counted_reading(*args: object) -> reading.Reading:
            self.readings += 1
            return original_reading(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(loader, "file_digest", counted_digest)
        monkeypatch.setattr(reading, "Reading", counted_reading)

    def reset(self) -> None:
        self.hashed = self.readings = 0


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch) -> Reads:
    """A short racy margin (so a test need not wait 2 s for its files to age)."""
    monkeypatch.setattr(statindex, "RACY_MARGIN_NS", SMALL_MARGIN_NS)
    return Reads(monkeypatch)


def _settled(tmp_path: Path, reads: Reads) -> tuple[Path, WorldCache]:
    """A world validated once, whose stat the index now trusts (proved by a second
    validation that reads and hashes nothing)."""
    root, cache = _write_world(tmp_path / "world"), _cache(tmp_path)
    _wait_past_margin(root, SMALL_MARGIN_NS)
    assert validate_gamedata(root, cache=cache).ok
    assert (reads.hashed, reads.readings) == (3, 1)
    reads.reset()
    result = validate_gamedata(root, cache=cache)
    assert result.ok
    assert (reads.hashed, reads.readings) == (0, 0)
    return root, cache


def test_an_unchanged_world_is_neither_read_nor_hashed(tmp_path: Path, trusted: Reads) -> None:
    root, cache = _settled(tmp_path, trusted)
    data = validate_gamedata(root, cache=cache).data
    assert data is not None
    assert data.counts() == {"locations": 2, "items": 1, "npcs": 1}
    assert (trusted.hashed, trusted.readings) == (0, 0)


def _same_size_edit(path: Path, old: str, new: str) -> None:
    """Change the content, keeping the size and putting the mtime back as it was."""
    assert len(old) == len(new)
    before = path.stat()
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    with path.open("r+", encoding="utf-8") as handle:  # in place: same inode
        handle.write(text.replace(old, new))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )


@pytest.mark.parametrize("mtime", ["as written", "a day in the past"])
def test_an_edit_keeping_size_and_mtime_is_seen(tmp_path: Path, trusted: Reads, mtime: str) -> None:
    root, cache = _write_world(tmp_path / "world"), _cache(tmp_path)
    if mtime == "a day in the past":
        for path in root.iterdir():
            os.utime(path, ns=(time.time_ns() - 86_400 * 10**9,) * 2)
    _wait_past_margin(root, SMALL_MARGIN_NS)
    assert validate_gamedata(root, cache=cache).ok
    assert validate_gamedata(root, cache=cache).ok  # the index is written and trusted
    _same_size_edit(root / "world.yaml", "name: Overpass", "name: Overpast")
    data = validate_gamedata(root, cache=cache).data
    assert data is not None
    assert data.locations["overpass"].name == "Overpast"


def test_a_file_replaced_by_one_of_the_same_size_and_mtime_is_seen(
    tmp_path: Path, trusted: Reads
) -> None:
    root, cache = _settled(tmp_path, trusted)
    path = root / "world.yaml"
    before = path.stat()
    other = tmp_path / "other.yaml"
    other.write_text(path.read_text().replace("name: Overpass", "name: Overpast"))
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, path)  # an editor's save: a new inode under the old name
    data = validate_gamedata(root, cache=cache).data
    assert data is not None
    assert data.locations["overpass"].name == "Overpast"


def test_a_renamed_file_is_seen(tmp_path: Path, trusted: Reads) -> None:
    root, cache = _settled(tmp_path, trusted)
    (root / "npcs.yaml").rename(root / "people.yaml")
    result = validate_gamedata(root, cache=cache)
    assert result.ok
    assert sorted(Path(f).name for f in result.files) == ["items.yaml", "people.yaml", "world.yaml"]
    assert trusted.hashed == 3


def test_an_added_file_is_seen(tmp_path: Path, trusted: Reads) -> None:
    root, cache = _settled(tmp_path, trusted)
    (root / "more.yaml").write_text(
        "items:\n  - id: bolt\n    name: Bolt\n    description: A bolt.\n    type: junk\n"
        "    weight: 0.1\n    volume: 0.1\n    emoji: x\n    image_path: /b.png\n"
        "    equippable: false\n    consumable: false\n    tier: 1\n",
        encoding="utf-8",
    )
    result = validate_gamedata(root, cache=cache)
    assert result.ok, result.problems
    assert result.data is not None
    assert "bolt" in result.data.items


def test_a_deleted_file_is_seen(tmp_path: Path, trusted: Reads) -> None:
    root, cache = _settled(tmp_path, trusted)
    (root / "npcs.yaml").unlink()
    problems = validate_gamedata(root, cache=cache).problems
    assert any("unknown npc 'raider'" in p for p in problems), problems


def test_a_copy_elsewhere_is_its_own_index(tmp_path: Path, trusted: Reads) -> None:
    root, cache = _settled(tmp_path, trusted)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    _same_size_edit(copy / "world.yaml", "name: Overpass", "name: Overpast")
    data = validate_gamedata(copy, cache=cache).data
    assert data is not None
    assert data.locations["overpass"].name == "Overpast"


def test_coarse_timestamps_still_see_an_edit_in_the_same_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a filesystem with whole-second timestamps an edit within the second the index
    was written changes neither mtime nor ctime: only the racy rule sees it, by hashing
    every file written that recently. The margin is widened here so that "recently" holds
    however slowly a loaded machine runs this test (the rule is under test, not its 2 s)."""
    monkeypatch.setattr(statindex, "RACY_MARGIN_NS", 60 * 10**9)
    real_stat = statindex._stat

    def whole_seconds(path: Path) -> statindex.Stat:
        size, mtime, ctime, inode, device = real_stat(path)
        second = 10**9
        return (size, mtime // second * second, ctime // second * second, inode, device)

    monkeypatch.setattr(statindex, "_stat", whole_seconds)
    reads = Reads(monkeypatch)
    root, cache = _write_world(tmp_path / "world"), _cache(tmp_path)
    assert validate_gamedata(root, cache=cache).ok
    reads.reset()
    assert validate_gamedata(root, cache=cache).ok
    assert reads.hashed == 3  # written less than the margin ago: racy, hashed
    path = root / "world.yaml"
    _same_size_edit(path, "name: Overpass", "name: Overpast")
    data = validate_gamedata(root, cache=cache).data
    assert data is not None
    assert data.locations["overpass"].name == "Overpast"


@pytest.mark.parametrize("damage", ["garbage", "another version", "missing"])
def test_a_damaged_or_foreign_index_only_costs_the_hashing(
    tmp_path: Path, trusted: Reads, damage: str
) -> None:
    root, cache = _settled(tmp_path, trusted)
    index = statindex.StatIndex(cache, root, "")
    [path] = cache.directory.glob(f"{index.name}.{statindex.ANNEX}")
    if damage == "garbage":
        path.write_bytes(path.read_bytes()[:-5] + b"xxxxx")
    elif damage == "another version":
        other_version = reader_version() + "-other"
        statindex.StatIndex(cache, root, other_version).record(
            ["world.yaml"], statindex.observe([root / "world.yaml"]), "0" * 64
        )
    else:
        path.unlink()
    result = validate_gamedata(root, cache=cache)
    assert result.ok
    assert trusted.hashed == 3
