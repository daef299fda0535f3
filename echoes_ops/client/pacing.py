"""Pacing a walk so that the server keeps idle time for the game (issue #16, decision 11).

Short steps (:class:`echoes_ops.client.budget.StepBudget`) bound how long one command of ours
holds the server, but a walk that sends its next step as soon as the last one ends keeps the
server busy back to back for the whole walk: every game command then queues behind one of
our steps, and on a machine short of CPU the server and the game's processes also wait for
a core behind the walk's client. :class:`Pacer` leaves the server idle between steps: after
a step that held the server ``s`` seconds, the next one is sent no sooner than
``s * (1 - duty) / duty`` after the reply came, so the walk takes at most ``duty`` of the
server's time (0.5 by default).

Pacing costs a walk time only when someone else uses the server: every ``LOOK_EVERY``
seconds the walk reads how many bytes the server has read from its clients
(``total_net_input_bytes`` of ``INFO stats``, sent with a step) and takes away the bytes it
sent itself; while others send less than ``QUIET_RATE`` bytes per second (a few dozen
commands: replicas' acknowledgements and a monitor's polls stay under it, a game's traffic
does not) the tier is quiet and the walk runs at full speed. (The count of commands
processed cannot tell: it includes the commands our own scripts call.)
Operators set ``ECHOES_OPS_WALK_DUTY`` (``Settings.walk_duty``, 0 < duty <= 1; 1 = never
pace) for a walk at full speed on a quiet tier or a gentler one on a busy tier; a client made
from settings carries it (``client/connect.walk_duty_of``).

Every stepped walk is paced the same way, through :class:`PacedLine`: the Lua walks
(client/budget.node_walk), the plain SCAN walks (client/scan.scan_node, client/rawscan)
and the stepped reads (client/bulk.bulk with ``stepped=True``). A plain SCAN or a batch of
reads cannot report its own server time, so its round trip stands for it (an upper bound:
the gap is never shorter than it should be).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis.exceptions import ResponseError

from echoes_ops.client.connect import AnyRedis, walk_duty_of
from echoes_ops.config.walk import DEFAULT_WALK_DUTY

DEFAULT_DUTY = DEFAULT_WALK_DUTY  # the walk's share of the server's time while the game uses it
QUIET_RATE = 2000.0  # others' bytes per second below which the tier counts as quiet
LOOK_EVERY = 0.25  # seconds between looks at the server's traffic
FIRST_LOOK = 0.05  # the second look, soon after the first (until then: paced)
# the second look of a walk that turns to one pipeline once the tier is quiet (client/bulk's
# ``burst``): over so short a window one command of anyone else's makes the tier busy
QUICK_LOOK = 0.01
_INPUT = re.compile(rb"total_net_input_bytes:(\d+)")


@dataclass
class Pacer:
    """When a walk may send its next step (see the module's docstring).

    ``gap(seconds)`` is how long to wait after a step that held the server ``seconds``;
    ``want_look(now)`` says whether to send ``INFO stats`` with the next step, and
    ``looked(now, reply, ours)`` takes its reply with the bytes this walk sent since the
    last look. ``paced`` (steps sent at the pace: held back unless the caller's own work on
    the last reply already took the gap) and ``slept`` are kept for reports.
    """

    duty: float = DEFAULT_DUTY
    busy: bool = True  # others' traffic seen at the last look (assumed until looked)
    slept: float = 0.0
    paced: int = 0  # steps sent at the pace
    written: int = 0  # bytes the walk wrote since its last look (on any of its lines)
    first_look: float = FIRST_LOOK  # seconds from the first look to the second
    _last: tuple[float, int] | None = field(default=None, repr=False)  # (when, bytes read)
    _next_look: float = field(default=0.0, repr=False)

    def gap(self, seconds: float) -> float:
        if self.duty >= 1 or not self.busy:
            return 0.0
        return seconds * (1 - self.duty) / self.duty

    def want_look(self, now: float) -> bool:
        return self.duty < 1 and now >= self._next_look

    def looked(self, now: float, reply: object, ours: int) -> None:
        """Take an ``INFO stats`` reply; ``ours``: bytes this walk sent since the last look
        (the INFO itself included)."""
        text = reply if isinstance(reply, bytes) else str(reply).encode()
        found = _INPUT.search(text)
        if found is None:  # a server that does not say: assume others are there
            self.busy, self._next_look = True, now + LOOK_EVERY
            return
        processed = int(found.group(1))
        if self._last is not None:
            when, before = self._last
            others = processed - before - ours
            self.busy = others > QUIET_RATE * max(now - when, 1e-3)
            self._next_look = now + LOOK_EVERY
        else:
            self._next_look = now + self.first_look
        self._last = (now, processed)

    def note_sleep(self, seconds: float) -> None:
        self.paced += 1
        self.slept += seconds


_INFO: tuple[Any, ...] = ("INFO", "stats")
LOOK = hiredis.pack_command(_INFO)  # the look, written behind a step


class PacedLine:
    """One walk's steps on one connection, paced: the one implementation every stepped walk
    uses (the Lua walks of client/budget.node_walk, the plain SCAN walks of client/scan and
    client/rawscan, the stepped reads of client/bulk).

    A step is written with :meth:`write` (``INFO stats`` appended when a look is due); once
    the caller has read its replies, :meth:`came` reads the look's reply, if one was sent,
    and says when the step's replies came; :meth:`rest` then waits out the gap the pacer
    asks after a step that held the server ``held`` seconds. An ``INFO`` refused (an ACL
    without it, a renamed command) counts as others there: the walk goes on, paced.
    ``looks``, if given, gets a 1 appended per ``INFO`` sent (for callers that count their
    own commands, such as ``stats``' intervals).
    """

    def __init__(self, conn: Any, pacer: Pacer, looks: list[int] | None = None) -> None:
        self.conn = conn
        self.pacer = pacer
        self.looks = looks
        self.sent = 0.0  # when the last step's write began
        self._looking = False

    async def write(self, step: bytes) -> None:
        self._looking = self.pacer.want_look(time.perf_counter())
        payload = step + LOOK if self._looking else step
        if self._looking and self.looks is not None:
            self.looks.append(1)
        # counted in the pacer: a pass of several lines sharing it (client/bulk with a
        # caller's pacer) must not take its own earlier lines' bytes for others' traffic
        self.pacer.written += len(payload)
        # the clock read before the write: writing wakes the server, which may take the CPU
        # from this process and run the whole step before the write returns (a niced client
        # on a busy host), and a step timed from after it looks short and grows too big
        self.sent = time.perf_counter()
        await self.conn.send_packed_command(payload, check_health=False)

    async def came(self) -> float:
        """When the step's replies came (the caller has read them); the look taken."""
        came = time.perf_counter()
        if self._looking:
            self._looking = False
            try:
                seen: object = await self.conn.read_response()
            except ResponseError:
                seen = None
            if isinstance(seen, ResponseError):
                seen = None
            self.pacer.looked(came, seen, self.pacer.written)
            self.pacer.written = 0
        return came

    def gap(self, held: float) -> float:
        return self.pacer.gap(held)

    async def rest(self, came: float, held: float) -> None:
        """Keep the server idle for the gap after a step that held it ``held`` seconds and
        whose replies came at ``came`` (the caller's own work since then counts)."""
        gap = self.pacer.gap(held)
        if gap <= 0:
            return
        wait = came + gap - time.perf_counter()
        self.pacer.note_sleep(max(wait, 0.0))
        if wait > 0:
            await asyncio.sleep(wait)


def pacer_of(r: AnyRedis, *, first_look: float = FIRST_LOOK) -> Pacer:
    """A pacer at ``r``'s duty cycle (its settings', ``ECHOES_OPS_WALK_DUTY``)."""
    return Pacer(duty=walk_duty_of(r), first_look=first_look)
