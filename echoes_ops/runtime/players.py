"""Simulated players driven inside one worker process.

Each player connects, moves along gamedata exits (the move is one transaction; the old and
new locations hear about it, as in the plan's /move endpoint), heartbeats, fights
(stamina/hp change and a personal combat update), and now and then disconnects and
reconnects. Every message it publishes carries a ``msg_id`` and ``sent_at`` and is
recorded, so the run can count delivery, loss and duplicates afterwards.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from echoes_ops.contract import envelopes
from echoes_ops.contract.session import Session
from echoes_ops.runtime.worker import _TRANSIENT, Worker

NAMES = ("Ash", "Cinder", "Rook", "Vale", "Moss", "Tarn", "Quill", "Wren", "Flint", "Sable")


@dataclass
class PlayerPlan:
    move_rate: float = 0.2  # moves per player per second
    fight_rate: float = 0.05  # fights per player per second
    reconnect_rate: float = 0.01  # disconnect+reconnect per player per second
    heartbeat_interval: float = 5.0
    tick: float = 0.1


@dataclass
class Published:
    msg_id: str
    family: str  # "location", "personal"
    sent_at: float
    target: str  # location id or character id


@dataclass
class PlayerState:
    session: Session
    next_heartbeat: float
    connected: bool = True
    reconnect_at: float = 0.0
    last_personal: float = 0.0


@dataclass
class PlayerDriver:
    worker: Worker
    character_ids: Sequence[int]
    exits: Mapping[str, Sequence[str]]
    plan: PlayerPlan
    rng: random.Random
    published: list[Published] = field(default_factory=list)
    players: dict[int, PlayerState] = field(default_factory=dict)
    moves: int = 0
    fights: int = 0
    reconnects: int = 0
    redis_errors: int = 0  # steps that failed because Redis was away (plan: log, go on)
    error_times: list[float] = field(default_factory=list)  # when (epoch s), for failovers

    async def connect_all(self) -> None:
        locations = sorted(self.exits)
        now = time.monotonic()
        for cid in self.character_ids:
            location = self.rng.choice(locations)
            session = Session(
                character_id=cid,
                username=f"{self.rng.choice(NAMES)}{cid}",
                location_id=location,
                hp=100,
                max_hp=100,
                stamina=50,
                max_stamina=50,
                level=self.rng.randint(1, 20),
                xp=self.rng.randint(0, 5000),
                websocket_connected=True,
                in_combat=False,
                last_movement_time=time.time(),
            )
            await self.worker.connect_player(session)
            self.players[cid] = PlayerState(
                session, next_heartbeat=now + self.rng.uniform(0, self.plan.heartbeat_interval)
            )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            for cid, state in list(self.players.items()):
                if stop.is_set():
                    break
                try:
                    await self._step(cid, state, started)
                except _TRANSIENT:
                    self.redis_errors += 1  # until REDIS_ENABLED=false reaches this worker
                    self.error_times.append(time.time())
                    if state.connected and cid not in self.worker.connections:
                        state.connected = False  # let go of before Redis failed: reconnect
                        state.reconnect_at = started
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self.plan.tick - elapsed))

    async def _step(self, cid: int, state: PlayerState, now: float) -> None:
        dt = self.plan.tick
        if not state.connected:
            if now >= state.reconnect_at:
                await self.worker.connect_player(state.session)
                state.connected = True
                state.next_heartbeat = now + self.plan.heartbeat_interval
            return
        roll = self.rng.random()
        if roll < self.plan.move_rate * dt:
            await self._move(cid, state)
        elif roll < (self.plan.move_rate + self.plan.fight_rate) * dt:
            await self._fight(cid, state)
        elif (
            roll < (self.plan.move_rate + self.plan.fight_rate + self.plan.reconnect_rate) * dt
            and now - state.last_personal > 1.0  # nothing of ours still in flight to it
        ):
            await self.worker.disconnect_player(cid)
            state.connected = False
            state.reconnect_at = now + self.rng.uniform(0.3, 1.5)
            self.reconnects += 1
        if state.connected and now >= state.next_heartbeat:
            await self.worker.update_player(cid)
            state.next_heartbeat = now + self.plan.heartbeat_interval

    async def _move(self, cid: int, state: PlayerState) -> None:
        here = state.session.location_id or ""
        choices = self.exits.get(here) or []
        if not choices:
            return
        there = self.rng.choice(list(choices))
        stamina = max(0, (state.session.stamina or 0) - 1)
        await self.worker.move_player(cid, there, stamina=stamina, last_movement_time=time.time())
        state.session = self.worker.connections[cid].session
        name = state.session.username or str(cid)
        await self._publish_location(here, f"{name} left the area", "player_left", cid)
        await self._publish_location(there, f"{name} arrived", "player_arrived", cid)
        self.moves += 1

    async def _fight(self, cid: int, state: PlayerState) -> None:
        damage = self.rng.randint(1, 12)
        hp = max(1, (state.session.hp or 100) - self.rng.randint(0, 5))
        stamina = max(0, (state.session.stamina or 0) - 2)
        await self.worker.update_player(cid, hp=hp, stamina=stamina, in_combat=True)
        state.session = self.worker.connections[cid].session
        msg_id = envelopes.new_msg_id()
        envelope = envelopes.personal_message(
            cid,
            {"type": "combat_update", "data": {"message": f"You dealt {damage} damage!"}},
            msg_id=msg_id,
        )
        self.published.append(Published(msg_id, "personal", envelope.sent_at or 0.0, str(cid)))
        state.last_personal = time.monotonic()
        await self.worker.publish(envelope)
        self.fights += 1

    async def _publish_location(self, location: str, text: str, action: str, cid: int) -> None:
        msg_id = envelopes.new_msg_id()
        payload: dict[str, Any] = {
            "type": "location_update",
            "data": {"message": text, "action": action, "player_id": cid},
        }
        envelope = envelopes.location_update(
            location, payload, exclude_player_id=cid, msg_id=msg_id
        )
        self.published.append(Published(msg_id, "location", envelope.sent_at or 0.0, location))
        await self.worker.publish(envelope)
