"""Group commit: concurrent writers share one transaction, so durability
does not cost one fsync (or one round trip) per batch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .base import Op, StoreError

log = logging.getLogger(__name__)

Groups = list[list[Op]]


class GroupCommit:
    """Group commit: batches handed in while a commit is running wait, then
    all go together in the next one, so concurrent writers share a commit.

    `apply(groups)` writes every batch in one transaction, each batch alone
    (a savepoint), and returns per batch its results or the exception it
    failed with; if it raises, the whole transaction failed.
    """

    def __init__(self, apply: Callable[[Groups], Awaitable[list[Any]]], name: str):
        self._apply = apply
        self._name = name
        self._pending: list[tuple[list[Op], asyncio.Future[list[Any]]]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self._name)

    async def stop(self) -> None:
        """Commit every batch already handed in, then stop."""
        if self._task is None:
            return
        while self._pending or not self._idle.is_set():
            self._wake.set()
            await asyncio.sleep(0.005)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def submit(self, ops: list[Op]) -> list[Any]:
        """Each op's result, once the commit that took them is durable."""
        if self._task is None:
            raise StoreError("the store is not open")
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((ops, future))
        self._wake.set()
        return await future

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            groups, self._pending = self._pending, []
            if not groups:
                continue
            self._idle.clear()
            try:
                results = await self._apply([ops for ops, _ in groups])
            except Exception as exc:
                # The transaction itself failed, so every batch in it did. (A
                # connection lost during COMMIT leaves the outcome unknown;
                # callers treat it as any failed write.) The database's own
                # words go to the log: they are what an operator acts on.
                log.error("%s: a commit of %d batches failed: %s: %s", self._name,
                          len(groups), type(exc).__name__, exc)
                failed = exc if isinstance(exc, StoreError) else StoreError(
                    f"commit failed: {exc}")
                results = [failed] * len(groups)
            finally:
                self._idle.set()
            for (_, future), result in zip(groups, results, strict=True):
                if future.done():  # the caller gave up waiting
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
