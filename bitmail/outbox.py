"""The durable queue of messages to send, on the store.

An entry is written in the same batch as the sender's Sent copy. The container
claims due entries with a lease, so a crashed process's entries come back when
its lease runs out and two processes never hold the same entry at once.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass

from .bodies import load_mime
from .store import Batch, Store

KIND = "outbox"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """One message on its way to some recipients."""

    id: str  # the outbox entry
    message: str  # BitMail's message id (the sender's Sent copy)
    sender: str
    recipients: tuple[str, ...]
    mime: bytes
    message_id: str  # the RFC 5322 Message-ID, the same on every try
    attempts: int = 0
    ambiguous: bool = False  # an earlier try may have gone out (its answer was lost)
    smtputf8: bool = False  # only a provider that carries SMTPUTF8 (RFC 6531) may send it


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    lease: float = 60.0
    base: float = 5.0
    max: float = 600.0
    give_up_after: float = 3 * 24 * 3600.0

    def delay(self, attempts: int) -> float:
        """Exponential back-off with jitter, so retries of many messages spread out."""
        return min(self.max, self.base * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)


class Outbox:
    """enqueue, claim with a lease, complete, defer with back-off, give up."""

    def __init__(self, store: Store, policy: RetryPolicy | None = None):
        self.store = store
        self.policy = policy or RetryPolicy()
        self.owner = uuid.uuid4().hex  # this process, as the holder of leases

    async def start(self) -> None:
        if self.store.exclusive:
            # Nobody else uses this store: leases left are from our own crash.
            await self.store.release_leases(KIND)

    @staticmethod
    def enqueue(batch: Batch, *, message: str, sender: str, recipients: tuple[str, ...],
                body: str, message_id: str, smtputf8: bool = False,
                now: float | None = None) -> str:
        """Add an entry to `batch`, which the caller commits with the Sent copy;
        `body` is the id of the body document that holds the message's bytes."""
        now = time.time() if now is None else now
        return batch.put(KIND, {
            "message": message,
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

    async def claim(self, limit: int) -> list[Job]:
        docs = await self.store.claim(KIND, now=time.time(), owner=self.owner,
                                      lease=self.policy.lease, limit=limit)
        jobs = []
        for doc in docs:
            mime = await load_mime(self.store, doc["body"])
            if mime is None:
                # The body is written in the entry's own commit and kept while
                # an entry points to it: this is a damaged store, said loudly.
                log.error("outbox entry %s: its body %s is missing; dropped",
                          doc["id"], doc.get("body"))
                await self.store.delete(KIND, doc["id"])
                continue
            jobs.append(_job(doc, mime))
        return jobs

    async def renew(self, job_ids: list[str]) -> None:
        """Extend the leases on jobs this process still holds."""
        until = time.time() + self.policy.lease
        async with self.store.batch() as batch:
            for job_id in job_ids:
                batch.update(KIND, job_id, {"due": until})

    @staticmethod
    def complete(batch: Batch, job: Job) -> None:
        """Remove a job that needs nothing more, with the batch that records why."""
        batch.delete(KIND, job.id)

    async def defer(self, job: Job, recipients: tuple[str, ...], error: str) -> float | None:
        """Try `recipients` again after a back-off; None when it is time to give up.

        Whether an earlier try may have gone out stays with the entry, so
        whichever process sends it next says so."""
        doc = await self.store.get_one(KIND, {"id": job.id})
        now = time.time()
        if doc is None:
            return None
        if now - doc["accepted_at"] > self.policy.give_up_after:
            await self.store.delete(KIND, job.id)
            return None
        attempts = doc["attempts"] + 1
        due = now + self.policy.delay(attempts)
        await self.store.update(KIND, job.id, {
            "recipients": list(recipients), "due": due,
            "attempts": attempts, "last_error": error,
            "ambiguous": job.ambiguous or doc.get("ambiguous", False),
        })
        return due

    async def release(self, jobs: list[Job]) -> None:
        """Hand jobs back untried (shutdown, no room): due now, which ends the lease."""
        async with self.store.batch() as batch:
            for job in jobs:
                change = {"due": time.time()}
                if job.ambiguous:
                    change["ambiguous"] = True
                batch.update(KIND, job.id, change)

    async def pending(self) -> int:
        return await self.store.count(KIND)


def _job(doc: dict, mime: bytes) -> Job:
    return Job(
        id=doc["id"],
        message=doc["message"],
        sender=doc["sender"],
        recipients=tuple(doc["recipients"]),
        mime=mime,
        message_id=doc["message_id"],
        attempts=doc["attempts"],
        ambiguous=doc.get("ambiguous", False),
        smtputf8=doc.get("smtputf8", False),
    )
