"""A live, decoded view of the tier's pub/sub traffic.

:func:`tail` subscribes to channels (SUBSCRIBE) and patterns (PSUBSCRIBE), decodes every
message under the contract and yields :class:`TailMessage` events with a one-line summary.
It owns its connection, because it must outlive Redis restarts: when the connection drops
(or goes silent: an idle connection is PINGed and declared dead when no reply comes) it
reconnects with capped backoff, resubscribes, and yields a :class:`TailGap`. Pub/sub is
at-most-once: whatever was published while we were away is lost, and the gap says so.

Credentials and ACL failures are not retried: they raise the translated :class:`OpsError`.
Nothing here prints; the CLI and the dashboard render the events.

Modules: ``events`` (what it yields), ``subscriptions`` (what to subscribe to, the
filters), ``summary`` (decoding and one-line summaries), ``live`` (the connection loop).
"""

from __future__ import annotations

from echoes_ops.operations.tail.events import (
    DEFAULT_CHANNELS,
    MAX_CHANNEL_LENGTH,
    SUMMARY_MAX,
    UNDECODABLE,
    TailArgumentError,
    TailEvent,
    TailGap,
    TailMessage,
)
from echoes_ops.operations.tail.live import tail
from echoes_ops.operations.tail.subscriptions import (
    Subscriptions,
    TailFilter,
    is_pattern,
    known_types,
    plan_subscriptions,
)
from echoes_ops.operations.tail.summary import summarize, summarize_undecodable, to_message

__all__ = [
    "DEFAULT_CHANNELS",
    "MAX_CHANNEL_LENGTH",
    "SUMMARY_MAX",
    "UNDECODABLE",
    "Subscriptions",
    "TailArgumentError",
    "TailEvent",
    "TailFilter",
    "TailGap",
    "TailMessage",
    "is_pattern",
    "known_types",
    "plan_subscriptions",
    "summarize",
    "summarize_undecodable",
    "tail",
    "to_message",
]
