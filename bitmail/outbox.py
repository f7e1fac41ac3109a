"""The durable queue of messages to send, on the store.

An entry is written in the same batch as the sender's Sent copy; once that
batch is durable, the outbox itself tells its claimer in this process that new
work is there (`Outbox.added`). The container claims due entries with a lease,
so a crashed process's entries come back when its lease runs out and two
processes never hold the same entry at once. What happens to an entry after a
send (complete, defer, give up, release) goes into the batch that records the
outcome, so each outcome is one commit.

A lease is only as good as its renewal: the holder renews it (`renew`) well
before it ends. Renewing, deferring and releasing change an entry only while
this process still holds its lease: a holder whose lease ran out (paused, or
cut off from the store for longer than a lease) must not move an entry that
another process has claimed since. Completing removes the entry whoever holds
it: it went out.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from .bodies import mime_of
from .clock import SYSTEM, Clock
from .store import Batch, Document, Kind, Store, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """One message on its way to some recipients."""

    id: str  # the outbox entry
    message_doc_id: str  # the message's document: the sender's Sent copy
    sender: str
    recipients: tuple[str, ...]
    mime: bytes
    message_id: str  # the RFC 5322 Message-ID, the same on every try
    attempts: int = 0
    ambiguous: bool = False  # an earlier try may have gone out (its answer was lost)
    smtputf8: bool = False  # only a provider that carries SMTPUTF8 (RFC 6531) may send it
    accepted_at: float = 0.0  # wall-clock seconds, when it was first accepted


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    lease: float = 60.0
    base: float = 5.0
    max: float = 600.0
    give_up_after: float = 3 * 24 * 3600.0

    def delay(self, attempts: int) -> float:
        """Exponential back-off with jitter, so retries of many messages spread out."""
        return min(self.max, self.base * 2.0 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)


class Outbox:
    """enqueue, claim with a lease, complete, defer with back-off, give up."""

    # The started outboxes of this process: an enqueue on their store wakes them.
    _started: ClassVar[weakref.WeakSet[Outbox]] = weakref.WeakSet()

    def __init__(self, store: Store, policy: RetryPolicy | None = None, *,
                 clock: Clock = SYSTEM):
        self.store = store
        self.policy = policy or RetryPolicy()
        self.clock = clock  # due times and leases are on its wall clock
        self.owner = uuid.uuid4().hex  # this process, as the holder of leases
        self.added = asyncio.Event()  # set when entries were enqueued; the claimer clears it

    async def start(self) -> None:
        if self.store.exclusive:
            # Nobody else uses this store: leases left are from our own crash.
            await self.store.release_leases(Kind.OUTBOX)
        Outbox._started.add(self)

    def stop(self) -> None:
        Outbox._started.discard(self)

    @staticmethod
    def enqueue(batch: Batch, *, message_doc_id: str, sender: str, recipients: tuple[str, ...],
                body: str, message_id: str, smtputf8: bool = False,
                now: float | None = None) -> str:
        """Add an entry to `batch`, which the caller commits with the Sent copy;
        `body` is the id of the body document that holds the message's bytes."""
        now = time.time() if now is None else now
        entry = batch.add(Kind.OUTBOX, {
            "message": message_doc_id,  # stored under its first name
            "sender": sender,
            "recipients": list(recipients),
            "body": body,
            "smtputf8": smtputf8,
            "message_id": message_id,
            "due": now,
            "attempts": 0,
            "accepted_at": now,
            "last_error": "",
        })
        batch.on_commit(_signal_added)
        return entry

    async def claim(self, limit: int) -> list[Job]:
        docs = await self.store.claim(Kind.OUTBOX, now=self.clock.time(), owner=self.owner,
                                      lease=self.policy.lease, limit=limit)
        bodies, unreadable = await self._bodies([d["body"] for d in docs if "body" in d])
        jobs = []
        for doc in docs:
            if doc.get("body") in unreadable:
                continue  # claimed, not sent: it comes back when its lease ends
            # An entry queued before messages were kept once carries its own copy.
            body = bodies.get(doc["body"]) if "body" in doc else None
            mime = (mime_of(body) if body is not None
                    else base64.b64decode(doc["mime"]) if "mime" in doc else None)
            if mime is None:
                # The body is written in the entry's own commit and kept while
                # an entry points to it: this is a damaged store, said loudly.
                log.error("outbox entry %s: its body %s is missing; dropped",
                          doc["id"], doc.get("body"))
                await self.store.delete(Kind.OUTBOX, doc["id"])
                continue
            jobs.append(_job(doc, mime))
        return jobs

    async def _bodies(self, ids: list[str]) -> tuple[dict[str, Document], set[str]]:
        """The body documents by id, and the ids whose body cannot be read.

        One query for all; when it fails, one query each, so that one
        damaged body (a blob that does not decompress) holds back only its
        own message, not every message claimed with it, claim after claim.
        Its entry is kept for the operator; it is said loudly at every lease."""
        try:
            return await self.store.get_by_ids(Kind.BODY, ids), set()
        except StoreError:
            pass
        found: dict[str, Document] = {}
        unreadable: set[str] = set()
        for body_id in dict.fromkeys(ids):
            try:
                found.update(await self.store.get_by_ids(Kind.BODY, [body_id]))
            except StoreError as exc:
                log.error("body %s cannot be read (%s): its message waits in the outbox",
                          body_id, exc)
                unreadable.add(body_id)
        return found, unreadable

    async def renew(self, job_ids: list[str]) -> list[str]:
        """Extend the leases on these jobs to a lease (seconds) from now.

        Returns the ids of those another process holds now: their lease ran
        out and it claimed them (an entry that is gone is done, and left out).
        Raises StoreError when the store cannot be written."""
        if not job_ids:
            return []
        renewed = set(await self.store.renew_leases(
            Kind.OUTBOX, job_ids, owner=self.owner, until=self.clock.time() + self.policy.lease))
        left = [job_id for job_id in job_ids if job_id not in renewed]
        if not left:
            return []
        # Not renewed: done (the entry is gone), or another process holds it.
        still = await self.store.get_by_ids(Kind.OUTBOX, left)
        return [job_id for job_id in left if job_id in still]

    def _if_held(self, change: dict[str, Any]) -> Callable[[Document], Document | None]:
        """An update that applies `change` only while this process holds the
        entry's lease (run inside the store's transaction, on its latest version)."""
        owner = self.owner

        def apply(doc: Document) -> Document | None:
            return {**doc, **change} if doc.get("lease_owner") == owner else None

        return apply

    @staticmethod
    def complete(batch: Batch, job: Job) -> None:
        """Remove a job that needs nothing more, with the batch that records why."""
        batch.delete(Kind.OUTBOX, job.id)

    def defer(self, batch: Batch, job: Job, recipients: tuple[str, ...], error: str,
              now: float | None = None) -> float | None:
        """Add to `batch`: try `recipients` again after a back-off. Returns when
        (wall-clock seconds), or None when it is time to give up (the entry is
        then removed in the batch, and the caller records the failure with it).

        The claim gave this process the entry and its attempts, so nothing is
        read; the entry is only changed while this process holds it. Whether
        an earlier try may have gone out stays with the entry, so whichever
        process sends it next says so."""
        now = self.clock.time() if now is None else now
        if now - job.accepted_at > self.policy.give_up_after:
            batch.delete(Kind.OUTBOX, job.id)
            return None
        attempts = job.attempts + 1
        due = now + self.policy.delay(attempts)
        change: dict[str, Any] = {"recipients": list(recipients), "due": due,
                                  "attempts": attempts, "last_error": error}
        if job.ambiguous:
            change["ambiguous"] = True
        batch.update(Kind.OUTBOX, job.id, self._if_held(change))
        return due

    def release(self, batch: Batch, jobs: list[Job], after: float = 0.0) -> None:
        """Add to `batch`: hand jobs back untried (shutdown, no room): due now,
        or `after` seconds from now, which ends the lease; no try is counted."""
        now = self.clock.time()
        for job in jobs:
            change: dict[str, Any] = {"due": now + after}
            if job.ambiguous:
                change["ambiguous"] = True
            batch.update(Kind.OUTBOX, job.id, self._if_held(change))

    async def pending(self) -> int:
        return await self.store.count(Kind.OUTBOX)

    async def oldest_age(self, now: float | None = None) -> float:
        """Seconds since the oldest entry still waiting was accepted; 0 when
        the outbox is empty. (Entries are stored in the order they come.)"""
        oldest = await self.store.get(Kind.OUTBOX, limit=1)
        if not oldest:
            return 0.0
        now = self.clock.time() if now is None else now
        accepted: float = oldest[0].get("accepted_at", now)
        return max(0.0, now - accepted)


def _job(doc: dict[str, Any], mime: bytes) -> Job:
    return Job(
        id=doc["id"],
        message_doc_id=doc["message"],
        sender=doc["sender"],
        recipients=tuple(doc["recipients"]),
        mime=mime,
        message_id=doc["message_id"],
        attempts=doc["attempts"],
        ambiguous=doc.get("ambiguous", False),
        smtputf8=doc.get("smtputf8", False),
        accepted_at=doc.get("accepted_at", 0.0),
    )


def _signal_added(store: Store, results: list[Any]) -> None:
    for outbox in list(Outbox._started):
        if outbox.store is store:
            outbox.added.set()
