"""Key and channel names: echoes_ops/contract/keys.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from echoes_ops.contract import keys
from echoes_ops.errors import InvalidIdError

BUILT = [
    (keys.session_key, 5, "player:5:session"),
    (keys.inventory_key, 5, "player:5:inventory"),
    (keys.presence_key, "overpass", "location:overpass:players"),
    (keys.location_cache_key, "overpass", "location:overpass:cache"),
    (keys.item_def_key, "iron_sword", "item:iron_sword:def"),
    (keys.npc_def_key, "raider", "npc:raider:def"),
    (keys.worker_connections_key, "w1", "worker:w1:connections"),
    (keys.worker_meta_key, "w1", "worker:w1:meta"),
    (keys.lock_key, "spawn_manager", "lock:spawn_manager"),
    (keys.lock_info_key, "spawn_manager", "echoes:lockinfo:spawn_manager"),
    (keys.location_channel, "overpass", "location:overpass"),
    (keys.player_channel, 5, "player:5"),
]


@pytest.mark.parametrize(("build", "ident", "expected"), BUILT)
def test_builders_produce_documented_names(
    build: Callable[[object], str], ident: object, expected: str
) -> None:
    assert build(ident) == expected


def test_fixed_channels() -> None:
    assert keys.BROADCAST_CHANNEL == "game:broadcast"
    assert keys.WORKERS_CHANNEL == "game:workers"


def test_character_id_builders_accept_numeric_text_and_bytes() -> None:
    assert keys.session_key("5") == "player:5:session"
    assert keys.session_key(b"5") == "player:5:session"
    assert keys.player_channel(" 12 ") == "player:12"


def test_ttls_match_the_contract() -> None:
    assert keys.SESSION_TTL == 1800
    assert keys.INVENTORY_TTL == 600
    assert 0 < keys.WORKER_HEARTBEAT_INTERVAL < keys.WORKER_META_TTL


@pytest.mark.parametrize(
    ("pattern", "key"),
    [
        (keys.SESSION_PATTERN, "player:5:session"),
        (keys.INVENTORY_PATTERN, "player:5:inventory"),
        (keys.PRESENCE_PATTERN, "location:overpass:players"),
        (keys.LOCATION_CACHE_PATTERN, "location:overpass:cache"),
        (keys.ITEM_DEF_PATTERN, "item:iron_sword:def"),
        (keys.NPC_DEF_PATTERN, "npc:raider:def"),
        (keys.WORKER_CONNECTIONS_PATTERN, "worker:w1:connections"),
        (keys.WORKER_META_PATTERN, "worker:w1:meta"),
        (keys.LOCK_PATTERN, "lock:spawn_manager"),
    ],
)
def test_patterns_match_their_keys(pattern: str, key: str) -> None:
    from fnmatch import fnmatchcase

    assert fnmatchcase(key, pattern)


def test_our_keys_are_namespaced() -> None:
    for key in (keys.GAMEDATA_VERSION_KEY, keys.FLAGS_KEY, keys.AUDIT_STREAM_KEY):
        assert key.startswith(f"{keys.NAMESPACE}:")


STRING_ID_BUILDERS = [b for b, ident, _ in BUILT if isinstance(ident, str)]
INT_ID_BUILDERS = [b for b, ident, _ in BUILT if isinstance(ident, int)]


@pytest.mark.parametrize("build", STRING_ID_BUILDERS)
@pytest.mark.parametrize("bad", ["", "a:b", "a b", "a*", "a?", "[a]", "{a}", "a\\b", "a\n", None])
def test_string_id_builders_reject_bad_ids(build: Callable[[object], str], bad: object) -> None:
    with pytest.raises(InvalidIdError):
        build(bad)


@pytest.mark.parametrize("build", INT_ID_BUILDERS)
@pytest.mark.parametrize("bad", [0, -5, "abc", "5:6", "{5}", True, None, 5.0])
def test_character_id_builders_reject_bad_ids(build: Callable[[object], str], bad: object) -> None:
    with pytest.raises(InvalidIdError):
        build(bad)


def test_no_built_name_contains_a_hash_tag_brace() -> None:
    names = [build(ident) for build, ident, _ in BUILT]
    names += [keys.BROADCAST_CHANNEL, keys.WORKERS_CHANNEL, keys.GAMEDATA_VERSION_KEY]
    names += [keys.FLAGS_KEY, keys.AUDIT_STREAM_KEY]
    for name in names:
        assert "{" not in name
        assert "}" not in name


# -- parsers ----------------------------------------------------------------------------

PARSERS: list[tuple[Callable[[object], str], Callable[[str | bytes], object], object]] = [
    (keys.session_key, keys.parse_session_key, 5),
    (keys.inventory_key, keys.parse_inventory_key, 5),
    (keys.presence_key, keys.parse_presence_key, "overpass"),
    (keys.location_cache_key, keys.parse_location_cache_key, "overpass"),
    (keys.item_def_key, keys.parse_item_def_key, "iron_sword"),
    (keys.npc_def_key, keys.parse_npc_def_key, "raider"),
    (keys.worker_meta_key, keys.parse_worker_meta_key, "w1"),
    (keys.worker_connections_key, keys.parse_worker_connections_key, "w1"),
    (keys.lock_key, keys.parse_lock_key, "spawn_manager"),
]


@pytest.mark.parametrize(("build", "parse", "ident"), PARSERS)
def test_parsers_round_trip_builders(
    build: Callable[[object], str], parse: Callable[[str | bytes], object], ident: object
) -> None:
    key = build(ident)
    assert parse(key) == ident
    assert parse(key.encode()) == ident


@pytest.mark.parametrize(("build", "parse", "ident"), PARSERS)
def test_parsers_return_none_for_other_families(
    build: Callable[[object], str], parse: Callable[[str | bytes], object], ident: object
) -> None:
    own = build(ident)
    for other_build, _, other_ident in PARSERS:
        other = other_build(other_ident)
        if other != own:
            assert parse(other) is None, (parse.__name__, other)


@pytest.mark.parametrize(
    ("parse", "key"),
    [
        (keys.parse_session_key, "player:abc:session"),
        (keys.parse_session_key, "player::session"),
        (keys.parse_session_key, "player:-5:session"),
        (keys.parse_session_key, "player:5:6:session"),
        (keys.parse_session_key, "player:５:session"),
        (keys.parse_session_key, "player:5:sessions"),
        (keys.parse_session_key, "player:5"),
        (keys.parse_session_key, b"player:\xff:session"),
        (keys.parse_inventory_key, "player:x:inventory"),
        (keys.parse_presence_key, "location:a:b:players"),
        (keys.parse_presence_key, "location::players"),
        (keys.parse_presence_key, "location:overpass"),
        (keys.parse_presence_key, "location:overpass:players:x"),
        (keys.parse_presence_key, b"location:\xff:players"),
        (keys.parse_location_cache_key, "location:a:b:cache"),
        (keys.parse_item_def_key, "item::def"),
        (keys.parse_npc_def_key, "npc:a:b:def"),
        (keys.parse_worker_meta_key, "worker:w1:x:meta"),
        (keys.parse_worker_connections_key, "worker::connections"),
        (keys.parse_lock_key, "lock:"),
        (keys.parse_lock_key, "locks:x"),
        (keys.parse_lock_key, "echoes:flags"),
        # ids the builders refuse: a parsed id must be safe to pass back to its builder
        (keys.parse_session_key, "player:0:session"),
        (keys.parse_session_key, "player:007:session"),  # would rebuild player:7:session
        (keys.parse_inventory_key, "player:00:inventory"),
        (keys.parse_presence_key, "location:*:players"),
        (keys.parse_presence_key, "location:a b:players"),
        (keys.parse_location_cache_key, "location:{x}:cache"),
        (keys.parse_item_def_key, "item:a?:def"),
        (keys.parse_worker_meta_key, "worker:w\\1:meta"),
        (keys.parse_lock_key, "lock:a:b"),
        (keys.parse_lock_key, "lock:*"),
        (keys.parse_lock_key, b"lock:\xff"),
    ],
)
def test_parsers_return_none_for_malformed_keys(
    parse: Callable[[str | bytes], object], key: str | bytes
) -> None:
    assert parse(key) is None


@pytest.mark.parametrize(("build", "parse", "ident"), PARSERS)
@pytest.mark.parametrize("variant", ["a-b.c_d", "Ünï", "🔥", "x" * 200, 1, 42, 10**12])
def test_whatever_a_parser_returns_rebuilds_the_same_key(
    build: Callable[[object], str],
    parse: Callable[[str | bytes], object],
    ident: object,
    variant: object,
) -> None:
    try:
        key = build(variant)
    except InvalidIdError:
        return  # e.g. a name for a character id builder
    parsed = parse(key)
    assert parsed is not None
    assert build(parsed) == key
