"""The key/channel contract: names, TTLs, envelopes and codecs. Pure, no I/O."""

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
