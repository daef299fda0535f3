"""The key/channel contract: names, TTLs, envelopes and codecs. Pure, no I/O.

The submodules are imported where they are used (``from echoes_ops.contract import keys``),
not here: a command that needs one rule (``validate`` needs :mod:`.ids`) does not pay for
the codecs and envelopes at start-up. The names below are still reachable from the package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from echoes_ops.contract import codec, envelopes, keys
    from echoes_ops.contract.ids import check_character_id, check_name
    from echoes_ops.contract.session import Session
    from echoes_ops.contract.static import StaticKind

__all__ = [
    "Session",
    "StaticKind",
    "check_character_id",
    "check_name",
    "codec",
    "envelopes",
    "keys",
]

_WHERE = {
    "Session": "session",
    "StaticKind": "static",
    "check_character_id": "ids",
    "check_name": "ids",
}


def __getattr__(name: str) -> Any:
    if name in ("codec", "envelopes", "keys"):
        return importlib.import_module(f"{__name__}.{name}")
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
