"""The MTA container: claims due mail, schedules it, and decides on outcomes.

The shape is channel plumbing: one bounded queue into each provider task, one
events queue out of all of them, and one decision loop. The loop's decisions
(health, failover) are made at once and in order. Each outcome becomes one
batch — the outbox entry's end or back-off, the Sent copy's new statuses, the
provider's ids — that the container commits once, in a task beside the loop,
so those commits share group commits. The outbox says when new mail is there;
the health board holds the health shared with other processes.

Errors: a StoreError in a loop's store call (a PostgreSQL restart, a lost
connection, a full disk) is passing: it is logged, and the call is tried again
after the outbox's back-off, capped at a third of the lease, until the store
answers again; an outcome's batch is committed again the same way. Anything
else that ends a loop is a fault this process cannot reason about: the service
goes down as when no provider is left (logged, exit code 3, every accepted
message left in the outbox).

(About 400 lines: claiming, deciding and recording read and change the same
per-job state — held, tried, the slots' health — under one loop's ordering;
apart, that state would have to be shared between modules.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..clock import Clock
from ..config import FailurePolicy, MtaSettings
from ..events import Event, EventType
from ..mailbox import Mailbox
from ..outbox import Job, Outbox
from ..store import Batch, StoreError
from .board import HealthBoard, Report
from .figures import Figures
from .health import State, ThresholdHealth
from .outcomes import Outcome
from .provider import Attempt, Provider, ProviderRunner
from .scheduling import Scheduler, make_scheduler

log = logging.getLogger(__name__)

EXIT_SERVICE_DOWN = 3
MAY_HAVE_GONE = "an earlier try may also have gone out"
HEALTH_POLL = 1.5  # seconds between looks at the other processes' reports
# Seconds a claimed job waits when the only providers that can carry it are
# busy: soon enough not to delay it, not so soon that it is claimed in a loop.
BUSY_WAIT = 1.0
# Tries of a write the store refuses while the container stops: a stop must
# end, though the write is lost (logged; its job may be sent again).
STOP_STORE_TRIES = 3
# Seconds sends in flight get to finish at a stop (at most the send timeout):
# short of the ten seconds a container manager waits before it kills.
STOP_GRACE = 5.0


@dataclass(slots=True)
class Slot:
    """One provider with its task, health and figures."""

    runner: ProviderRunner
    health: ThresholdHealth
    figures: Figures = field(default_factory=Figures)
    reported: State = State.UP  # the state last logged and published
    known_at: float = 0.0  # wall-clock time of the newest shared health report seen
    adopted: bool = False  # its state came from another process's report

    @property
    def name(self) -> str:
        return self.runner.name


class Container:
    """Owns the providers and moves every claimed message to an outcome."""

    def __init__(self, providers: list[tuple[Provider, FailurePolicy]], outbox: Outbox,
                 mailbox: Mailbox, settings: MtaSettings | None = None,
                 scheduler: Scheduler | None = None, board: HealthBoard | None = None,
                 clock: Clock | None = None):
        self.settings = settings or MtaSettings()
        self.outbox = outbox
        self.mailbox = mailbox
        self.store = outbox.store
        self.clock = clock or outbox.clock  # one clock for leases, health and back-off
        self.board = board or HealthBoard(outbox.store, outbox.owner, clock=self.clock)
        self.events: asyncio.Queue[Attempt] = asyncio.Queue()
        self.slots = {
            p.name: Slot(ProviderRunner(p, self.events, queue_size=self.settings.queue_size,
                                        concurrency=self.settings.concurrency,
                                        timeout=self.settings.send_timeout),
                         ThresholdHealth(policy, clock=self.clock.monotonic))
            for p, policy in providers
        }
        self.scheduler = scheduler or make_scheduler(self.settings.scheduler, list(self.slots))
        self.down = asyncio.Event()  # set when the service must stop (see _service_down)
        self.down_reason = ""  # why, once `down` is set
        self._held: dict[str, Job] = {}  # claimed, at a provider or waiting for one
        self._recording: dict[str, Job] = {}  # decided, the outcome not yet committed
        self._lost: set[str] = set()  # held, but another process has claimed them since
        self._tried: dict[str, set[str]] = {}
        self._cannot: dict[str, set[str]] = {}  # job id → providers that said CANNOT_CARRY
        self._tasks: list[asyncio.Task[None]] = []
        self._writes: set[asyncio.Task[Any]] = set()
        self.turns = 0  # times the claim loop went round (tests wait for the next one)
        self.stop_grace = min(STOP_GRACE, self.settings.send_timeout)  # seconds
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        await self.outbox.start()
        for slot in self.slots.values():
            try:
                await slot.runner.start()
            except Exception as exc:
                # A provider that cannot even start is down, not fatal: the
                # others carry the mail, and it is probed after retry_after.
                slot.figures.last_error = slot.runner.provider.redact(
                    f"cannot start: {type(exc).__name__}: {exc}")
                self._set_state(slot, slot.health.failed_to_start())
        self._tasks = [self._spawn(self._claim_loop(), "mta-claim"),
                       self._spawn(self._decide_loop(), "mta-decide"),
                       self._spawn(self._renew_loop(), "mta-renew")]

    def _spawn(self, loop: Any, name: str) -> asyncio.Task[None]:
        """Run one of the container's loops, watched: a loop only ends when
        it is cancelled, so any other end takes the service down."""
        task: asyncio.Task[None] = asyncio.create_task(loop, name=name)
        task.add_done_callback(self._loop_ended)
        return task

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        log.critical("the MTA's %s loop ended: %s", task.get_name(),
                     f"{type(exc).__name__}: {exc}" if exc else "returned", exc_info=exc)
        self._service_down(f"its {task.get_name()} loop failed")

    async def stop(self) -> None:
        """Stop taking work; give sends in flight `stop_grace` seconds to
        finish and record their outcomes; hand back everything else, a send
        cut off flagged as possibly gone out. Raises StoreError when the
        store cannot take the last writes."""
        self._stopping = True  # from now on no job is handed to a provider
        claim, others = self._tasks[:1], self._tasks[1:]  # none when never started
        await self._cancel(claim)
        # The decide loop records the outcomes of the sends that finish.
        cut = [job for jobs in await asyncio.gather(
            *(slot.runner.stop(self.stop_grace) for slot in self.slots.values()))
            for job in jobs]
        await self._cancel(others)
        self._tasks = []
        # Outcomes that arrived but were not decided: their sends happened.
        while not self.events.empty():
            self._decide_one(self.events.get_nowait())
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        for job in cut:
            if job.id in self._held:
                self._held[job.id] = replace(self._held[job.id], ambiguous=True)
        if self._held:
            batch = Batch()
            self.outbox.release(batch, list(self._held.values()))
            await self.store.commit(batch)
            self._held.clear()
        self.outbox.stop()

    @staticmethod
    async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self) -> None:
        """Claim now rather than at the next poll (the outbox does this itself
        when mail is enqueued in this process)."""
        self.outbox.added.set()

    def count_event(self, provider: str, event: str) -> None:
        """A provider's webhook reported `event` (bounced, complained, …): its
        figures count it (the bounce and complaint rates)."""
        slot = self.slots.get(provider)
        if slot is not None:
            slot.figures.events[str(event)] += 1

    # -- claiming and dispatch --------------------------------------------

    def _candidates(self, job: Job, *, room: bool = True) -> list[str]:
        """Providers that may take this job now: healthy, with room, not yet
        tried, and able to carry it (Provider.can_carry)."""
        tried = self._tried.get(job.id, set())
        return [n for n, s in self.slots.items()
                if s.health.available() and (s.runner.room > 0 or not room)
                and n not in tried and s.runner.provider.can_carry(job)]

    def _free(self) -> int:
        return sum(s.runner.room for s in self.slots.values() if s.health.available())

    async def _claim_loop(self) -> None:
        looked = -HEALTH_POLL  # look at the shared health at once
        while True:
            self.turns += 1
            if not self.outbox.store.exclusive and self.clock.monotonic() - looked > HEALTH_POLL:
                looked = self.clock.monotonic()
                await self._adopt_health()
            if await self._store_call("claiming mail", self._claim):
                await asyncio.sleep(0)
                continue  # a full claim: there may be more due at once
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self.outbox.added.wait()
            self.outbox.added.clear()

    async def _claim(self) -> bool:
        """Claim as many due jobs as the providers have room for and hand
        them out; True when the claim came back full."""
        free = self._free()
        if free <= 0:
            return False
        limit = min(free, 256)
        jobs = await self.outbox.claim(limit)
        unplaced = []
        for job in jobs:
            if job.id in self._held or job.id in self._recording:
                # Ours already: its lease ran out before the renewal came (a
                # store slower than a third of the lease); the claim renewed it.
                log.warning("message %s: its lease ran out while this process held it; "
                            "a longer lease would suit this store", job.message_doc_id,
                            extra=_about(job, ""))
                continue
            self._held[job.id] = job
            if not self._dispatch(job):
                self._finish(job)
                unplaced.append(job)
        if unplaced:
            # No provider up can carry them (one that carries SMTPUTF8, say):
            # back off as after a failure, and give up in time. Handed back
            # due now instead, they would be claimed again at once, for ever.
            # When one that can is up but busy, the job only waits its turn.
            batch = Batch()
            busy = [job for job in unplaced if self._candidates(job, room=False)]
            self.outbox.release(batch, busy, after=BUSY_WAIT)
            waiting = {job.id for job in busy}
            for job in unplaced:
                if job.id not in waiting:
                    self._defer(batch, job, job.recipients, "", _unplaceable(job))
            await self.store.commit(batch)
        return len(jobs) == limit

    async def _renew_loop(self) -> None:
        """Renew the leases of every job held, a third of a lease apart: on a
        clock of its own, since a claim turn may take longer than a lease
        (a backlog claimed turn after turn, a slow store)."""
        while True:
            await asyncio.sleep(self.outbox.policy.lease / 3)
            await self._store_call("renewing leases", self._renew)

    async def _renew(self) -> None:
        held = list(dict.fromkeys([*self._held, *self._recording]))
        for job_id in await self.outbox.renew(held):
            job = self._held.get(job_id) or self._recording.get(job_id)
            if job is None or job_id in self._lost:
                continue  # done meanwhile, or said already
            # Its lease ran out before this renewal (the process was paused or
            # the store out of reach for most of a lease): another process may
            # be sending it too. What this process still has to do with it is
            # to record what its own send did, and nothing more.
            self._lost.add(job_id)
            log.warning("message %s: its lease ran out while this process held it; another "
                        "process may send it too", job.message_doc_id, extra=_about(job, ""))

    async def _store_call(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """`call()`'s result, tried again while the store fails (a StoreError);
        other errors are raised. `what` names the call in the log."""
        failures = 0
        while True:
            try:
                return await call()
            except StoreError as exc:
                failures += 1
                if self._stopping and failures >= STOP_STORE_TRIES:
                    log.error("%s failed (%s) while stopping; given up after %d tries",
                              what, exc, failures)
                    raise
                delay = self._store_back_off(failures)
                # Store errors name the server, never its password.
                log.warning("%s failed (%s); trying again in %.1f s (%d failures in a row)",
                            what, exc, delay, failures)
                await asyncio.sleep(delay)

    def _store_back_off(self, failures: int) -> float:
        """Seconds to wait before the next try after `failures` store errors in
        a row: the outbox's back-off, but at most a third of the lease, so that
        once the store is back the held jobs' leases are renewed in time."""
        if self._stopping:
            return min(1.0, self.outbox.policy.lease / 3)
        return min(self.outbox.policy.delay(failures), self.outbox.policy.lease / 3)

    def _dispatch(self, job: Job) -> bool:
        """Put the job on a provider's queue; False when none can take it now."""
        if self._stopping:
            return False
        load = {name: slot.runner.load for name, slot in self.slots.items()}
        name = self.scheduler.pick(self._candidates(job), load)
        if name is None:
            return False
        slot = self.slots[name]
        slot.runner.queue.put_nowait(job)  # _candidates left out full queues
        slot.health.taken()
        self._set_state(slot, slot.health.state)  # a probe is out: "probing"
        self._tried.setdefault(job.id, set()).add(name)
        return True

    # -- deciding ------------------------------------------------------------

    async def _decide_loop(self) -> None:
        while True:
            self._decide_one(await self.events.get())

    def _decide_one(self, attempt: Attempt) -> None:
        tried = len(self._tried.get(attempt.job.id, ()))
        try:
            self._decide(attempt)
        except Exception:
            # One odd outcome (a provider's unexpected answer, a bug) must
            # not stop the outcomes of every other message being recorded.
            self._undecided(attempt, handed_on=len(self._tried.get(attempt.job.id, ())) > tried)

    def _undecided(self, attempt: Attempt, *, handed_on: bool) -> None:
        """`_decide` raised on `attempt`: say so with the message's id, and
        back the job off flagged as possibly sent, so that its next try says
        it may have gone out. A job that was handed to another provider
        before the error (`handed_on`) is left to that provider's outcome."""
        job = replace(attempt.job, ambiguous=True)
        log.exception("message %s: the outcome of its send through %s (%s) could not be "
                      "recorded", job.message_doc_id, attempt.provider, attempt.outcome,
                      extra=_about(job, attempt.provider))
        if handed_on:
            return
        self._finish(job)
        batch = Batch()
        self._defer(batch, job, job.recipients, attempt.provider,
                    f"its outcome ({attempt.outcome}) could not be recorded")
        self._write(self._record(batch, job))

    def _decide(self, attempt: Attempt) -> None:
        slot = self.slots[attempt.provider]
        job = attempt.job
        slot.figures.record(attempt.outcome, attempt.latency, attempt.detail)
        # Refusals of the message are answers too: only failures say the provider is slow or ill.
        ok = attempt.outcome in (Outcome.ACCEPTED, Outcome.PERMANENT, Outcome.CANNOT_CARRY)
        self.scheduler.observe(attempt.provider, attempt.latency, ok)
        if attempt.ambiguous and not job.ambiguous:
            job = replace(job, ambiguous=True)  # and so it stays, wherever it goes next

        batch = Batch()
        if attempt.outcome == Outcome.ACCEPTED:
            self._set_state(slot, slot.health.success())
            self._finish(job)
            self._accepted(batch, attempt, job)
        elif attempt.outcome == Outcome.PERMANENT:
            slot.health.neutral()
            self._finish(job)
            self._failed(batch, job, attempt.provider, attempt.detail)
        else:
            if attempt.outcome == Outcome.CANNOT_CARRY:
                # Neither the message nor the provider is at fault: nothing
                # counts against its health.
                slot.health.neutral()
                self._cannot.setdefault(job.id, set()).add(attempt.provider)
            else:
                self._set_state(slot, slot.health.failure())
            if job.id in self._lost:
                self._finish(job)  # the process that holds it now tries it again
            elif attempt.outcome == Outcome.CANNOT_CARRY and not self._may_carry(job):
                self._finish(job)
                self._failed(batch, job, attempt.provider, attempt.detail)
            elif self.down.is_set():
                self._finish(job)
                self.outbox.release(batch, [job])
            else:
                self._retry(batch, attempt, job)
        self._write(self._record(batch, job))

    def _may_carry(self, job: Job) -> bool:
        """Whether some provider may still carry `job`: one that has not said
        it cannot. One only tried and failed may carry it once it is back."""
        cannot = self._cannot.get(job.id, set())
        return any(name not in cannot and slot.runner.provider.can_carry(job)
                   for name, slot in self.slots.items())

    async def _record(self, batch: Batch, job: Job) -> None:
        """Commit an outcome's batch, again while the store fails; the job's
        lease is renewed meanwhile."""
        self._recording[job.id] = job
        try:
            await self._store_call(f"recording the outcome of message {job.message_doc_id}",
                                   lambda: self.store.commit(batch))
        finally:
            self._recording.pop(job.id, None)

    def _retry(self, batch: Batch, attempt: Attempt, job: Job) -> None:
        """A transient failure or a provider fault: another provider now, or
        back in line, or a back-off when none is left."""
        log.info("message %s: %s on %s (%s)", job.message_doc_id, attempt.outcome,
                 attempt.provider, attempt.detail, extra=_about(job, attempt.provider))
        failover = [Event(EventType.DEFERRED, job.message_doc_id, r, attempt.provider,
                          detail=f"{attempt.detail}; trying another provider",
                          ambiguous=attempt.ambiguous) for r in job.recipients]
        if self._dispatch(job):
            self._held[job.id] = job
            self.mailbox.record(batch, job.message_doc_id, failover)
        elif self._candidates(job, room=False):
            # Healthy providers are left but busy: back in line, no back-off.
            self._finish(job)
            self.outbox.release(batch, [job])
            self.mailbox.record(batch, job.message_doc_id, failover)
        else:
            self._finish(job)
            self._defer(batch, job, job.recipients, attempt.provider, attempt.detail)

    def _finish(self, job: Job) -> None:
        self._held.pop(job.id, None)
        self._tried.pop(job.id, None)
        self._cannot.pop(job.id, None)
        self._lost.discard(job.id)
        self.outbox.added.set()  # room for one more: claim

    def _write(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception():
            log.error("recording an outcome failed", exc_info=task.exception())

    def _set_state(self, slot: Slot, state: State, report: Report | None = None) -> None:
        """`state` is what this process found, or what another one `report`ed."""
        if state == slot.reported:
            return
        probed = slot.reported == State.PROBING
        slot.reported, slot.adopted = state, report is not None
        self._write(self.board.publish(self.snapshot()))
        # The other processes hear of every down this one found, and of an up
        # only from a probe: an up from a send that was out already would flap.
        if not report and (state == State.DOWN or (state == State.UP and probed)):
            self._write(self._share_health(slot, state))
        source = f" (reported by process {report.owner})" if report else ""
        if state == State.DOWN:
            log.warning("provider %s is down%s: %s", slot.name, source,
                        report.reason if report else slot.figures.last_error)
        elif state == State.UP:
            log.info("provider %s is up again%s", slot.name, source)
        # Only what this process saw for itself stops it: one process's bad
        # network must not take every process down.
        if all(s.health.state == State.DOWN and not s.adopted for s in self.slots.values()):
            self._service_down()

    async def _share_health(self, slot: Slot, state: State) -> None:
        """Tell the other processes (runs in a task, through _write)."""
        down = state == State.DOWN
        slot.known_at = self.clock.time()  # reports older than this one are stale already
        slot.known_at = await self.board.post(
            slot.name, state, retry_in=slot.health.retry_in() if down else 0.0,
            reason=slot.runner.provider.redact(slot.figures.last_error) if down else "")

    async def _adopt_health(self) -> None:
        """Take up the state changes other processes found since the last look."""
        try:
            reports = await self.board.others()
        except StoreError as exc:
            log.warning("could not read the providers' shared health: %s", exc)
            return
        now = self.clock.time()
        for report in reports:
            slot = self.slots.get(report.provider)
            if slot is None or report.at <= slot.known_at:
                continue
            slot.known_at = report.at
            if slot.health.state == State.PROBING:
                continue  # our own probe is out, and decides
            until = report.down_until or 0.0
            if report.state == State.DOWN and until > now:
                self._set_state(slot, slot.health.down_for(until - now), report)
            elif report.state == State.UP and slot.health.state != State.UP:
                self._set_state(slot, slot.health.success(), report)

    def _service_down(self, reason: str | None = None) -> None:
        """Stop the service: `reason`, or every provider being down. The
        service exits non-zero; accepted mail stays in the outbox."""
        if self.down.is_set():
            return
        if reason is None:
            reason = "every provider is down ({})".format(
                "; ".join(f"{s.name}: {s.figures.last_error}" for s in self.slots.values()))
        log.critical("service down: %s; accepted mail stays in the outbox and goes out after "
                     "a restart", reason)
        self.down_reason = reason
        self.down.set()

    # -- recording: what an outcome writes, added to its one batch ----------------

    def _accepted(self, batch: Batch, attempt: Attempt, job: Job) -> None:
        result = attempt.result
        refused = {f.recipient: f for f in (result.refused if result else ())}
        pmid = result.provider_message_id if result else None
        ids = result.recipient_ids if result else {}  # a provider's own id per recipient
        events = []
        for r in job.recipients:
            if r in refused:
                f = refused[r]
                kind = EventType.FAILED if f.outcome == Outcome.PERMANENT else EventType.DEFERRED
                events.append(Event(kind, job.message_doc_id, r, attempt.provider, detail=f.detail))
            else:
                events.append(Event(
                    EventType.SENT, job.message_doc_id, r, attempt.provider, ids.get(r, pmid),
                    detail=MAY_HAVE_GONE if job.ambiguous else "", ambiguous=job.ambiguous))
        log.info("message %s: sent via %s (%s)%s", job.message_doc_id, attempt.provider,
                 pmid or "no provider id", f", {len(refused)} refused" if refused else "",
                 extra=_about(job, attempt.provider))
        taken: dict[str | None, list[str]] = {}  # the provider's id → whom it took under it
        for r in job.recipients:
            if r not in refused:
                taken.setdefault(ids.get(r, pmid), []).append(r)
        for tracked in dict.fromkeys(i for i in (pmid, *ids.values()) if i):
            self.mailbox.track(batch, attempt.provider, tracked, job.message_doc_id,
                               taken.get(tracked, []))
        self.mailbox.record(batch, job.message_doc_id, events)
        retry = [refused[r] for r in job.recipients
                 if r in refused and refused[r].outcome != Outcome.PERMANENT]
        if not retry:
            self.outbox.complete(batch, job)
        else:
            # Only these recipients are tried again; a chunk that timed out may
            # have gone, and the retry says so.
            if any(f.ambiguous for f in retry):
                job = replace(job, ambiguous=True)
            self._defer(batch, job, tuple(f.recipient for f in retry), attempt.provider,
                        "; ".join(f"{f.recipient}: {f.detail}" for f in retry), record=False)

    def _failed(self, batch: Batch, job: Job, provider: str, detail: str) -> None:
        if job.ambiguous:
            detail = f"{detail}; {MAY_HAVE_GONE}"
        log.warning("message %s: failed on %s (%s)", job.message_doc_id, provider, detail,
                    extra=_about(job, provider))
        self.outbox.complete(batch, job)
        self.mailbox.record(batch, job.message_doc_id, [
            Event(EventType.FAILED, job.message_doc_id, r, provider, detail=detail,
                  ambiguous=job.ambiguous) for r in job.recipients])

    def _defer(self, batch: Batch, job: Job, recipients: tuple[str, ...], provider: str,
               detail: str, *, record: bool = True) -> None:
        now = self.clock.time()
        due = self.outbox.defer(batch, job, recipients, detail, now)
        if due is None:
            # Given up: the entry is gone with this batch; the failure is recorded in it.
            if job.ambiguous:
                detail = f"{detail}; {MAY_HAVE_GONE}"
            log.warning("message %s: gave up (%s)", job.message_doc_id, detail,
                        extra=_about(job, provider))
            self.mailbox.record(batch, job.message_doc_id, [
                Event(EventType.FAILED, job.message_doc_id, r, provider,
                      detail=f"gave up: {detail}",
                      ambiguous=job.ambiguous) for r in recipients])
        elif record:
            self.mailbox.record(batch, job.message_doc_id, [
                Event(EventType.DEFERRED, job.message_doc_id, r, provider,
                      detail=f"{detail}; retrying in {due - now:.0f}s",
                      ambiguous=job.ambiguous) for r in recipients])

    # -- figures ---------------------------------------------------------------

    def figures(self) -> list[tuple[str, State, Figures]]:
        """Each provider's name, state and figures (for /metrics)."""
        return [(s.name, s.health.state, s.figures) for s in self.slots.values()]

    def snapshot(self) -> list[dict[str, Any]]:
        """Each provider's state and figures, as GET /api/providers shows them."""
        out = []
        for slot in self.slots.values():
            f = slot.figures
            out.append({
                "name": slot.name,
                "type": slot.runner.provider.type,
                "state": str(slot.health.state),
                "sent": f.sent,
                "failed": f.failed,
                "queued": slot.runner.load,
                "latency_ms": {"p50": f.percentile(0.5), "p95": f.percentile(0.95)},
                "last_error": slot.runner.provider.redact(f.last_error) or None,
                "bounce_rate": f.rate("bounced"),
                "complaint_rate": f.rate("complained"),
            })
        return out


def _unplaceable(job: Job) -> str:
    """Why no provider took a job that was claimed for the room they had."""
    if job.smtputf8:
        return "it needs SMTPUTF8 and no provider that carries it is up"
    return "no provider that can carry it is up"


def _about(job: Job, provider: str) -> dict[str, str]:
    """The fields of a log line about a job (JSON logs show them as keys)."""
    return {"message_doc_id": job.message_doc_id, "message_id": job.message_id,
            "provider": provider}
