"""Live updates inside one process: each payload published on the store goes
to every subscriber's queue (the PostgreSQL store feeds other processes'
payloads in here too)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

Payload = dict[str, Any]
# Payloads a subscriber may fall behind by before the next ones are dropped.
QUEUE_SIZE = 1000


class Subscription:
    """Payloads published on the store's channel, as an async iterator.

    `ends(payload)` says which payloads end the subscription (a credential's
    end, for a live-update stream): they are never dropped, see offer."""

    def __init__(self, hub: Hub, ends: Callable[[Payload], bool] | None = None):
        self._hub = hub
        self._ends = ends
        self.queue: asyncio.Queue[Payload] = asyncio.Queue(QUEUE_SIZE)

    def __aiter__(self) -> AsyncIterator[Payload]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Payload]:
        while True:
            yield await self.queue.get()

    def offer(self, payload: Payload) -> None:
        """Queue `payload` without waiting.

        A payload that ends the subscription goes ahead of everything
        queued (which the subscriber, about to stop, will not read), so it
        always finds room and is read next. Any other is dropped when the
        queue is full: a reader that stopped reading must not hold the rest
        back; it resynchronises from the API when it notices the gap."""
        if self._ends is not None and self._ends(payload):
            while not self.queue.empty():
                self.queue.get_nowait()
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            pass

    def close(self) -> None:
        self._hub.subscribers.discard(self)


class Hub:
    """In-process fan-out of published payloads to subscribers."""

    def __init__(self) -> None:
        self.subscribers: set[Subscription] = set()

    def subscribe(self, ends: Callable[[Payload], bool] | None = None) -> Subscription:
        """A new subscription; `ends`: see Subscription."""
        sub = Subscription(self, ends)
        self.subscribers.add(sub)
        return sub

    def deliver(self, payload: Payload) -> None:
        for sub in list(self.subscribers):
            sub.offer(payload)
