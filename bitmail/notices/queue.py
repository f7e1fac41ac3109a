"""Recorded notices, taken up and applied in the background.

The web layer records each verified event as a "notice" document (its payload
as received, and the items its provider's hook module parsed from it) and
answers at once; this processor takes pending notices with the store's own
claim and lease — the mechanism the outbox uses — and applies them. A notice
whose processing died with its process comes back when its lease runs out,
for whichever process claims next; two processes never hold one at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ..store import Batch, Document, Kind, Store, StoreError
from .effects import Effects
from .model import Item, item_from_json, to_json

log = logging.getLogger(__name__)

LEASE = 60.0  # a processor that took a notice and died gives it back after this
POLL = 5.0  # how often to look for notices other processes left
MAX_ATTEMPTS = 8  # a notice that fails this often is kept, marked failed


def record(batch: Batch, key: str, *, provider: str, source: str, payload: Any,
           items: Sequence[Item], now: float | None = None) -> None:
    """Add a pending notice to `batch`: `key` is unique per provider event (the
    same event twice is one notice); `source` names the hook it came through.

    Insert only: the commit fails with AlreadyExists when a notice with that
    key is there — a second copy of the event must not replace the first,
    least of all one already applied (its state, attempts and result)."""
    now = time.time() if now is None else now
    batch.add(Kind.NOTICE, {"provider": provider, "source": source, "received": now,
                     "payload": payload, "items": [to_json(i) for i in items],
                     "state": "pending", "due": now, "attempts": 0}, id=key)


class Notices:
    """Claims pending notices and applies them with `effects`.

    `start()` runs the loop; `wake()` says a notice was just recorded here;
    `idle()` returns once nothing due is pending or being applied (tests);
    `stop()` lets what is being applied finish.
    """

    def __init__(self, store: Store, effects: Effects, *, lease: float = LEASE,
                 poll: float = POLL, batch: int = 16) -> None:
        self.store = store
        self.effects = effects
        self.lease = lease
        self.poll = poll
        self.batch = batch
        self.owner = uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        # Held while a claim is made and its tasks registered, so idle() never
        # looks between the two.
        self._claiming = asyncio.Lock()

    async def start(self) -> None:
        if self.store.exclusive:
            # Nobody else uses this store: leases left are from our own crash.
            await self.store.release_leases(Kind.NOTICE)
        self._task = asyncio.create_task(self._loop(), name="notices")

    async def stop(self, grace: float = 30.0) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._inflight:
            # What is cancelled keeps its lease, which runs out by itself.
            _, late = await asyncio.wait(list(self._inflight), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def idle(self) -> None:
        """Return once every notice due now has been applied."""
        while True:
            async with self._claiming:
                busy = list(self._inflight)
            if busy:
                await asyncio.gather(*busy, return_exceptions=True)
                continue
            if not await self._round():
                return

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                busy = await self._round()
            except StoreError as exc:
                log.warning("cannot claim notices: %s", exc)
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll):
                        await self._wake.wait()

    async def _round(self) -> int:
        """Claim what is due and apply it; how many were claimed."""
        async with self._claiming:
            docs = await self.store.claim(Kind.NOTICE, now=time.time(), owner=self.owner,
                                          lease=self.lease, limit=self.batch)
            tasks = [asyncio.create_task(self._apply(doc), name=f"notice {doc['id']}")
                     for doc in docs]
            self._inflight.update(tasks)
            for task in tasks:
                task.add_done_callback(self._inflight.discard)
        await asyncio.gather(*tasks, return_exceptions=True)
        return len(docs)

    async def _apply(self, doc: Document) -> None:
        key, provider = doc["id"], doc.get("provider", "")
        try:
            items = [item_from_json(i) for i in doc.get("items") or []]
            result = await self.effects.apply(key, provider, items)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:
            attempts = int(doc.get("attempts", 0)) + 1
            log.exception("notice %s from %s failed (attempt %d)", key, provider, attempts)
            if attempts >= MAX_ATTEMPTS:
                change = {"state": "failed", "due": None, "attempts": attempts,
                          "result": f"{type(exc).__name__}: {exc}"}
            else:
                change = {"due": time.time() + min(600.0, 5.0 * 2 ** attempts),
                          "attempts": attempts}
            await self.store.update(Kind.NOTICE, key, change)
            return
        # `due` null: never claimed again; the notice stays as the record.
        await self.store.update(Kind.NOTICE, key, {"state": "done", "due": None, "result": result})
