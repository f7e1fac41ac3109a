"""The provider base: one asyncio task per provider, fed by a bounded queue.

A provider only does I/O: it sends one job and returns a SendResult or raises
ProviderError. The runner times it, catches what escapes, and reports every
outcome on the container's events queue; deciding what happens next is the
container's job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ..outbox import Job
from .chunks import Call, send_in_chunks
from .outcomes import Outcome, ProviderError, SendResult

__all__ = ["Attempt", "Job", "Provider", "ProviderRunner"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Attempt:
    """What one provider made of one job, as put on the events queue."""

    job: Job
    provider: str
    outcome: Outcome
    result: SendResult | None = None
    detail: str = ""
    ambiguous: bool = False
    latency: float = 0.0
    at: float = field(default_factory=time.time)


class Provider(ABC):
    """A way out to the world: SES, Mailgun, Mandrill, an SMTP relay, local files."""

    type: str = ""
    #: The most recipients one call may name, as the provider documents it
    #: (None: no limit). The runner sends a job with more in several calls.
    max_recipients: int | None = None
    #: Whether it can send a message whose addresses have UTF-8 local parts
    #: (SMTPUTF8, RFC 6531). The HTTP APIs take ASCII addresses only.
    smtputf8: bool = False

    def __init__(self, name: str, **options: Any):
        self.name = name

    def can_carry(self, job: Job) -> bool:
        """Whether this provider can send `job` as it is, asked before it is
        picked: a provider that cannot (SMTPUTF8 it lacks, bytes its API
        cannot take) is passed over for one that can. One that finds out only
        while sending (a relay's size limit) raises Outcome.CANNOT_CARRY."""
        return self.smtputf8 or not job.smtputf8

    async def start(self) -> None:
        """Open sessions or pools; called once before the first send."""

    async def close(self) -> None:
        """Release what start() opened."""

    @abstractmethod
    async def send(self, job: Job) -> SendResult:
        """Send the job's MIME to its recipients, or raise ProviderError."""

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs, errors or the API."""
        return ()

    def redact(self, text: str) -> str:
        for secret in self.secrets():
            if secret:
                text = text.replace(secret, "***")
        return text


class ProviderRunner:
    """Runs one provider as a task reading its own bounded queue."""

    def __init__(
        self,
        provider: Provider,
        events: asyncio.Queue[Attempt],
        *,
        queue_size: int = 64,
        concurrency: int = 8,
        timeout: float = 30.0,
    ):
        self.provider = provider
        self.queue: asyncio.Queue[Job] = asyncio.Queue(queue_size)
        self._events = events
        self._concurrency = concurrency
        self._timeout = timeout
        self._tasks: list[asyncio.Task[None]] = []
        self._sending: dict[asyncio.Task[Any], Job] = {}  # by the worker sending it
        self._closing = False
        self.in_flight = 0

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def load(self) -> int:
        return self.queue.qsize() + self.in_flight

    @property
    def room(self) -> int:
        """How many more jobs it should be given now: enough to keep every
        worker busy with one waiting behind it, and no more, so that what the
        scheduler learns about a provider applies to the next jobs, not to a
        backlog that was already handed out."""
        return max(0, min(self.queue.maxsize - self.queue.qsize(),
                          2 * self._concurrency - self.load))

    async def start(self) -> None:
        """Start the workers; then the provider, whose failure the caller handles
        (the workers stay, so a probe can find it working later)."""
        self._tasks = [
            asyncio.create_task(self._work(), name=f"provider:{self.name}:{i}")
            for i in range(self._concurrency)
        ]
        await self.provider.start()

    async def stop(self, grace: float = 0.0) -> list[Job]:
        """Stop the workers. Jobs waiting in the queue are not started; sends
        in flight get `grace` seconds to finish and report their outcome.
        Returns the jobs whose sends were cut off after that: the provider
        may have them already."""
        self._closing = True  # a worker whose send ends takes no other job
        for task in self._tasks:
            if task not in self._sending:
                task.cancel()
        if self._sending and grace > 0:
            await asyncio.wait(list(self._sending), timeout=grace)
        cut = list(self._sending.values())
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._sending.clear()
        await self.provider.close()
        return cut

    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        while not self._closing:
            job = await self.queue.get()
            self.in_flight += 1
            self._sending[task] = job
            try:
                attempt = await self._attempt(job)
            finally:
                self.in_flight -= 1
                self._sending.pop(task, None)
            await self._events.put(attempt)

    async def _attempt(self, job: Job) -> Attempt:
        started = time.monotonic()
        limit = self.provider.max_recipients
        if limit and len(job.recipients) > limit:
            call = await send_in_chunks(self._call, job, limit)
        else:
            call = await self._call(job)
        return Attempt(
            job=job,
            provider=self.name,
            outcome=call.outcome,
            result=call.result,
            detail=self.provider.redact(call.detail),
            ambiguous=call.ambiguous,
            latency=time.monotonic() - started,
        )

    async def _call(self, job: Job) -> Call:
        """One call of the provider, timed out and classified."""
        outcome, result, detail, ambiguous = Outcome.ACCEPTED, None, "", False
        try:
            async with asyncio.timeout(self._timeout):
                result = await self.provider.send(job)
        except ProviderError as exc:
            outcome, detail, ambiguous = exc.outcome, exc.detail, exc.ambiguous
        except TimeoutError:
            outcome, detail, ambiguous = Outcome.TRANSIENT, "timed out", True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an unexpected library error: not the message's fault
            log.exception("provider %s raised while sending message %s", self.name,
                          job.message_doc_id,
                          extra={"message_doc_id": job.message_doc_id, "provider": self.name})
            outcome, detail = Outcome.PROVIDER_FAULT, f"{type(exc).__name__}: {exc}"
        return Call(outcome, result, detail, ambiguous)
