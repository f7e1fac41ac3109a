"""The health board: provider health shared by the processes on one store.

One document per provider holds the latest state change any process saw for
itself (down until when and why, or up again after a probe). Each container
posts what it found and reads what the others posted; the board also
publishes every provider's figures to open pages. It is the only writer of
these documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import live
from ..clock import SYSTEM, Clock
from ..store import Kind, Store
from .health import State


@dataclass(frozen=True, slots=True)
class Report:
    """What one process found about one provider."""

    provider: str
    state: State
    down_until: float | None  # wall-clock seconds, for a down provider
    reason: str  # redacted by the provider
    owner: str  # the process (its outbox owner id)
    at: float  # wall-clock seconds


class HealthBoard:
    """Post and read the providers' shared health; publish their figures."""

    def __init__(self, store: Store, owner: str, *, clock: Clock = SYSTEM):
        self.store = store
        self.owner = owner
        self.clock = clock

    async def post(self, provider: str, state: State, *, retry_in: float = 0.0,
                   reason: str = "") -> float:
        """Tell the other processes: `provider` is down for `retry_in` seconds
        (with `reason`), or up. Returns the report's time (wall clock)."""
        now = self.clock.time()
        down = state == State.DOWN
        await self.store.put(Kind.PROVIDER_HEALTH, {
            "state": str(state),
            "down_until": now + retry_in if down else None,
            "reason": reason if down else "",
            "owner": self.owner,
            "at": now,
        }, id=provider)
        return now

    async def others(self) -> list[Report]:
        """The latest report on each provider made by another process.
        Raises StoreError when the store cannot be read."""
        return [Report(doc["id"], State(doc["state"]), doc["down_until"], doc["reason"],
                       doc["owner"], doc["at"])
                for doc in await self.store.get(Kind.PROVIDER_HEALTH) if doc["owner"] != self.owner]

    async def publish(self, snapshot: list[dict[str, Any]]) -> None:
        """Every provider's figures, to every open page."""
        await self.store.publish(live.providers(snapshot))
