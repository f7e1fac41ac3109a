"""Live updates inside one process: each payload published on the store goes
to every subscriber's queue (the PostgreSQL store feeds other processes'
payloads in here too)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


class Subscription:
    """Payloads published on the store's channel, as an async iterator."""

    def __init__(self, hub: Hub):
        self._hub = hub
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(1000)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self.queue.get()

    def close(self) -> None:
        self._hub.subscribers.discard(self)


class Hub:
    """In-process fan-out of published payloads to subscribers."""

    def __init__(self) -> None:
        self.subscribers: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self.subscribers.add(sub)
        return sub

    def deliver(self, payload: dict[str, Any]) -> None:
        for sub in list(self.subscribers):
            try:
                sub.queue.put_nowait(payload)
            except asyncio.QueueFull:
                # A reader that stopped reading must not hold the rest back;
                # it resynchronises from the API when it notices the gap.
                pass
