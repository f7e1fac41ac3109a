"""The MTA container's decisions: failover, back-off, permanent failures,
probing, and the service going down when no provider is left."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from bitmail.config import FailurePolicy, MtaSettings
from bitmail.mailbox import Mailbox
from bitmail.message import parse_message
from bitmail.mta.container import Container
from bitmail.mta.health import State, ThresholdHealth
from bitmail.mta.outcomes import Outcome, ProviderError, RecipientFailure, SendResult
from bitmail.mta.provider import Job, Provider
from bitmail.mta.scheduling import Adaptive, RoundRobin
from bitmail.outbox import Outbox, RetryPolicy
from bitmail.store import StoreError
from bitmail.store.sqlite import SQLiteStore

from conftest import wait_for


class Scripted(Provider):
    """A provider whose answers the test sets: an Outcome to raise, or accept."""

    type = "scripted"

    def __init__(self, name: str, fail: Outcome | None = None, delay: float = 0.0):
        super().__init__(name)
        self.fail = fail
        self.delay = delay
        self.received: list[Job] = []
        self.refuse: dict[str, Outcome] = {}
        self.ambiguous = False

    async def send(self, job: Job) -> SendResult:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ProviderError(self.fail, f"{self.name} says {self.fail}",
                                ambiguous=self.ambiguous)
        self.received.append(job)
        refused = tuple(RecipientFailure(r, o, "refused") for r, o in self.refuse.items()
                        if r in job.recipients)
        return SendResult(provider_message_id=f"{self.name}-{len(self.received)}",
                          refused=refused)


@pytest.fixture
async def parts(tmp_path):
    store = SQLiteStore(str(tmp_path / "db.sqlite"))
    await store.open()
    yield store, Mailbox(store, "localhost"), Outbox(store, RetryPolicy(base=0.05, max=0.1))
    await store.close()


async def start(parts, *providers, threshold=2, retry_after=60.0, scheduler=None,
                send_timeout=2.0):
    _, mailbox, outbox = parts
    policy = FailurePolicy(threshold=threshold, retry_after=retry_after)
    container = Container([(p, policy) for p in providers], outbox, mailbox,
                          MtaSettings(send_timeout=send_timeout), scheduler=scheduler)
    await container.start()
    return container


async def accept(mailbox: Mailbox, to: str = "a@example.com", n: int = 1) -> list[str]:
    ids = []
    for i in range(n):
        msg = parse_message({"to": to, "subject": f"m{i}"}, sender="me@localhost",
                            domain="localhost")
        ids.append(await mailbox.accept(msg, "me"))
    return ids


async def status(mailbox: Mailbox, message_id: str) -> dict:
    return await mailbox.get("me", message_id)


async def test_a_damaged_body_holds_back_only_its_own_message(parts, caplog):
    import sqlite3

    store, mailbox, outbox = parts
    ids = await accept(mailbox, n=3)
    damaged = (await status(mailbox, ids[1]))["body"]
    with sqlite3.connect(store.path) as conn:  # a blob that no longer decompresses
        conn.execute("UPDATE docs SET blob = ? WHERE kind = 'body' AND id = ?",
                     (b"\x01not a zstd frame", damaged))
    jobs = await outbox.claim(10)
    assert sorted(j.message_doc_id for j in jobs) == sorted([ids[0], ids[2]])
    assert f"body {damaged} cannot be read" in caplog.text
    # Kept, not dropped: it is still in the outbox for the operator.
    assert [d["message"] for d in await store.get("outbox")] == [ids[0], ids[1], ids[2]]


async def test_failing_provider_fails_over_and_every_message_arrives_once(parts):
    bad, good = Scripted("bad", Outcome.TRANSIENT), Scripted("good")
    container = await start(parts, bad, good)
    ids = await accept(parts[1], n=20)
    container.wake()
    await wait_for(lambda: len(good.received) >= 20)
    await container.stop()
    assert Counter(j.message_doc_id for j in good.received) == Counter(ids)
    assert container.slots["bad"].health.state == State.DOWN
    assert await parts[2].pending() == 0


async def test_permanent_rejection_is_not_retried_on_another_provider(parts):
    rejecting, other = Scripted("rejecting", Outcome.PERMANENT), Scripted("other")
    container = await start(parts, rejecting, other, scheduler=RoundRobin(["rejecting", "other"]))
    [message_id] = await accept(parts[1])
    container.wake()
    doc = await wait_for(lambda: _status_is(parts[1], message_id, "failed"))
    await container.stop()
    assert other.received == []
    assert "rejecting says permanent" in doc["recipients"][0]["detail"]
    assert container.slots["rejecting"].health.state == State.UP


async def test_one_refused_recipient_fails_alone(parts):
    provider = Scripted("p")
    provider.refuse = {"bad@example.com": Outcome.PERMANENT}
    container = await start(parts, provider)
    [message_id] = await accept(parts[1], to="ok@example.com; bad@example.com")
    container.wake()
    await wait_for(lambda: _status_is(parts[1], message_id, "sent", any_=True))
    await wait_for(_outbox_empty(parts[2]))
    doc = await status(parts[1], message_id)
    await container.stop()
    got = {r["address"]: r["status"] for r in doc["recipients"]}
    assert got == {"ok@example.com": "sent", "bad@example.com": "failed"}


async def test_all_providers_down_sets_service_down_and_keeps_the_mail(parts):
    a, b = Scripted("a", Outcome.PROVIDER_FAULT), Scripted("b", Outcome.PROVIDER_FAULT)
    container = await start(parts, a, b)
    ids = await accept(parts[1], n=5)
    container.wake()
    await asyncio.wait_for(container.down.wait(), 5)
    await container.stop()
    assert await parts[2].pending() == 5
    # The next run takes every entry at once, whatever back-off it had.
    restarted = Outbox(parts[0])
    await restarted.start()
    jobs = await restarted.claim(10)
    assert sorted(j.message_doc_id for j in jobs) == sorted(ids)


async def test_no_healthy_provider_left_defers_with_back_off(parts):
    flaky = Scripted("flaky", Outcome.TRANSIENT)
    container = await start(parts, flaky, threshold=100)
    [message_id] = await accept(parts[1])
    container.wake()
    await wait_for(lambda: _status_is(parts[1], message_id, "deferred"))
    flaky.fail = None
    doc = await wait_for(lambda: _status_is(parts[1], message_id, "sent"), timeout=5)
    await container.stop()
    assert [e["type"] for e in doc["events"]][:1] == ["queued"]
    assert "deferred" in [e["type"] for e in doc["events"]]


async def test_down_provider_gets_one_probe_after_retry_after():
    now = [0.0]
    health = ThresholdHealth(FailurePolicy(threshold=2, retry_after=5),
                             clock=lambda: now[0])
    health.failure()
    assert health.state == State.UP
    health.failure()
    assert health.state == State.DOWN and not health.available()
    now[0] = 6
    assert health.available()
    health.taken()
    assert health.state == State.PROBING and not health.available()  # one probe only
    health.failure()
    assert health.state == State.DOWN and not health.available()
    now[0] = 12
    health.taken()
    health.success()
    assert health.state == State.UP and health.available()


def test_failures_in_a_row_count_however_far_apart():
    # A quiet service's tries are retries that back off past any window.
    now = [0.0]
    health = ThresholdHealth(FailurePolicy(threshold=3, retry_after=5),
                             clock=lambda: now[0])
    for at in (0.0, 100.0):
        now[0] = at
        assert health.failure() == State.UP
    now[0] = 10_000.0
    assert health.failure() == State.DOWN


def test_a_success_starts_the_count_again():
    health = ThresholdHealth(FailurePolicy(threshold=2, retry_after=5))
    health.failure()
    health.success()
    assert health.failure() == State.UP
    assert health.failure() == State.DOWN


def test_round_robin_takes_turns_and_skips_the_unavailable():
    rr = RoundRobin(["a", "b", "c"])
    assert [rr.pick(["a", "b", "c"], {}) for _ in range(4)] == ["a", "b", "c", "a"]
    assert rr.pick(["c"], {}) == "c"
    assert rr.pick([], {}) is None


def test_adaptive_sends_most_traffic_to_the_fast_provider_without_cutting_off_the_slow():
    import random

    sched = Adaptive(["fast", "slow"], rng=random.Random(7))
    for _ in range(50):
        sched.observe("fast", 0.005, True)
        sched.observe("slow", 0.2, True)
    picks = Counter(sched.pick(["fast", "slow"], {}) for _ in range(2000))
    assert picks["fast"] > 0.9 * 2000
    assert picks["slow"] > 0


async def test_adaptive_scheduler_in_the_container_favours_the_fast_provider(parts):
    fast, slow = Scripted("fast", delay=0.005), Scripted("slow", delay=0.2)
    sched = Adaptive(["fast", "slow"])
    container = await start(parts, fast, slow, scheduler=sched)
    await accept(parts[1], n=200)
    container.wake()
    await wait_for(lambda: len(fast.received) + len(slow.received) >= 200, timeout=30)
    await container.stop()
    assert len(fast.received) > 2 * len(slow.received)
    assert container.slots["slow"].health.state == State.UP


async def _status_is(mailbox, message_id, want, any_=False):
    doc = await mailbox.get("me", message_id)
    statuses = [r["status"] for r in doc["recipients"]]
    ok = want in statuses if any_ else doc["status"] == want
    return doc if ok else None


def _outbox_empty(outbox):
    async def check():
        return await outbox.pending() == 0
    return check


async def test_a_lost_answer_then_a_rejection_says_the_mail_may_have_gone(parts):
    lost, rejecting = Scripted("lost", Outcome.TRANSIENT), Scripted("rejecting", Outcome.PERMANENT)
    lost.ambiguous = True
    container = await start(parts, lost, rejecting, threshold=10,
                            scheduler=RoundRobin(["lost", "rejecting"]))
    [message_id] = await accept(parts[1])
    container.wake()
    doc = await wait_for(lambda: _status_is(parts[1], message_id, "failed"))
    await container.stop()
    failed = [e for e in doc["events"] if e["type"] == "failed"]
    assert failed and "may also have gone out" in failed[0]["detail"]
    assert failed[0].get("ambiguous") is True


async def test_a_lost_answer_is_remembered_in_the_outbox_for_the_next_try(parts):
    lost = Scripted("lost", Outcome.TRANSIENT)
    lost.ambiguous = True
    container = await start(parts, lost, threshold=100)
    [message_id] = await accept(parts[1])
    container.wake()
    await wait_for(lambda: _status_is(parts[1], message_id, "deferred"))
    await container.stop()
    [entry] = await parts[0].get("outbox")
    assert entry["ambiguous"] is True
    restarted = Outbox(parts[0])
    await restarted.start()
    [job] = await restarted.claim(1)
    assert job.ambiguous


async def test_a_temporary_refusal_keeps_its_reason_for_the_retry(parts):
    provider = Scripted("p")
    provider.refuse = {"later@example.com": Outcome.TRANSIENT}
    container = await start(parts, provider, threshold=100)
    [message_id] = await accept(parts[1], to="now@example.com; later@example.com")
    container.wake()
    await wait_for(lambda: _status_is(parts[1], message_id, "sent", any_=True))
    await container.stop()
    [entry] = await parts[0].get("outbox")
    assert entry["recipients"] == ["later@example.com"]
    assert entry["last_error"] == "later@example.com: refused"


async def test_jobs_in_flight_when_the_service_goes_down_are_handed_back(parts):
    a = Scripted("a", Outcome.PROVIDER_FAULT, delay=0.05)
    container = await start(parts, a, threshold=1)
    await accept(parts[1], n=5)
    container.wake()
    await asyncio.wait_for(container.down.wait(), 5)
    # The outbox wakes the container at each accept, so the jobs may go out
    # (and come back) one by one: wait until none is held any more.
    await wait_for(lambda: not container._held and not container._writes)
    await container.stop()
    restarted = Outbox(parts[0])
    await restarted.start()
    assert len(await restarted.claim(10)) == 5


async def test_a_store_error_in_a_claim_is_retried_and_sending_goes_on(parts, caplog):
    store, mailbox, _ = parts
    provider = Scripted("p")
    container = await start(parts, provider)
    await accept(mailbox)
    await wait_for(lambda: len(provider.received) == 1)
    # The next claim fails once, as during a PostgreSQL restart.
    real_claim, calls = store.claim, []

    async def flaky_claim(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise StoreError("ConnectionDoesNotExistError: connection was closed")
        return await real_claim(*args, **kwargs)

    store.claim = flaky_claim
    container.wake()
    await wait_for(lambda: calls)
    await accept(mailbox)
    await wait_for(lambda: len(provider.received) == 2)
    await container.stop()
    assert not container.down.is_set()
    assert "claiming mail failed (ConnectionDoesNotExistError" in caplog.text


async def test_an_outcome_whose_commit_fails_is_recorded_when_the_store_is_back(parts):
    store, mailbox, outbox = parts
    provider = Scripted("p")
    container = await start(parts, provider)
    real_commit, failed = store.commit, []

    async def flaky_commit(batch):
        if not failed and any(op.kind == "tracking" for op in batch.ops):
            failed.append(batch)  # the outcome's batch, once
            raise StoreError("ConnectionDoesNotExistError: connection was closed")
        return await real_commit(batch)

    store.commit = flaky_commit
    [message_id] = await accept(mailbox)
    await wait_for(lambda: _status_is(mailbox, message_id, "sent"))
    await wait_for(_outbox_empty(outbox))
    await container.stop()
    assert failed and len(provider.received) == 1


async def test_a_loop_that_fails_unexpectedly_takes_the_service_down(parts, caplog):
    store, mailbox, outbox = parts
    container = await start(parts, Scripted("p"))

    async def broken_claim(limit):
        raise RuntimeError("a bug")

    outbox.claim = broken_claim
    [message_id] = await accept(mailbox)
    await asyncio.wait_for(container.down.wait(), 5)
    await container.stop()
    assert "the MTA's mta-claim loop ended: RuntimeError: a bug" in caplog.text
    assert "service down: its mta-claim loop failed" in caplog.text
    # The reason the service's last line gives (app.serve), not "every provider is down".
    assert container.down_reason == "its mta-claim loop failed"
    assert [d["message"] for d in await store.get("outbox")] == [message_id]


class Gated(Scripted):
    """Sends once `gate` is set: a slow relay, holding the jobs it was given."""

    def __init__(self, name: str):
        super().__init__(name)
        self.gate = asyncio.Event()
        self.holding: list[str] = []

    async def send(self, job: Job) -> SendResult:
        self.holding.append(job.message_doc_id)
        await self.gate.wait()
        return await super().send(job)


async def stall_claims_after_the_first(outbox: Outbox) -> None:
    """After the first claim that finds a job, the claim loop's claims take
    for ever, as behind a long backlog or a slow store: nothing may depend
    on a claim turn ending."""
    real_claim, never = outbox.claim, asyncio.Event()

    async def claim(limit):
        jobs = await real_claim(limit)
        if jobs:
            outbox.claim = stalled
        return jobs

    async def stalled(limit):
        await never.wait()
        return []

    outbox.claim = claim


async def test_a_held_job_keeps_its_lease_while_a_claim_turn_outlasts_it(tmp_path):
    store = SQLiteStore(str(tmp_path / "db.sqlite"))
    await store.open()
    lease = 0.6
    mailbox, outbox = Mailbox(store, "localhost"), Outbox(store, RetryPolicy(lease=lease))
    slow = Gated("slow")
    await stall_claims_after_the_first(outbox)
    container = await start((store, mailbox, outbox), slow, send_timeout=30)
    try:
        [message_id] = await accept(mailbox)
        await wait_for(lambda: slow.holding)
        await asyncio.sleep(3 * lease)
        # Another claimer (another process on PostgreSQL) finds it leased still.
        assert await Outbox(store, RetryPolicy(lease=lease)).claim(10) == []
        slow.gate.set()
        await wait_for(_outbox_empty(outbox))
    finally:
        slow.gate.set()
        await container.stop()
        await store.close()
    assert [j.message_doc_id for j in slow.received] == [message_id]


async def test_a_lost_lease_is_neither_renewed_nor_moved_by_its_old_holder(store_url):
    from bitmail.clock import SteppedClock
    from bitmail.store import Batch, open_store

    clock = SteppedClock()
    async with open_store(store_url) as store:
        mailbox = Mailbox(store, "localhost")
        old, new = (Outbox(store, RetryPolicy(lease=60), clock=clock) for _ in range(2))
        await accept(mailbox)
        [held] = await old.claim(1)
        clock.advance(61)  # the old holder was paused for longer than its lease
        [taken] = await new.claim(1)
        [leased] = await store.get("outbox")
        assert taken.id == held.id and leased["lease_owner"] == new.owner
        assert await old.renew([held.id]) == [held.id]
        batch = Batch()
        old.release(batch, [held])
        old.defer(batch, held, held.recipients, "451 try again")
        await store.commit(batch)
        assert await store.get("outbox") == [leased]
        assert await new.renew([taken.id]) == []


@pytest.mark.postgres
async def test_two_processes_on_postgresql_never_hold_the_same_message_at_once(pg_url):
    from bitmail.store.postgres import PostgresStore

    from conftest import pg_reset

    pg_reset(pg_url)
    lease, stores = 1.0, [PostgresStore(pg_url), PostgresStore(pg_url)]
    for s in stores:
        await s.open()
    (mailbox_a, outbox_a), (mailbox_b, outbox_b) = (
        (Mailbox(s, "localhost"), Outbox(s, RetryPolicy(lease=lease))) for s in stores)
    slow, fast = Gated("slow"), Scripted("fast")
    await stall_claims_after_the_first(outbox_a)
    a = await start((stores[0], mailbox_a, outbox_a), slow, send_timeout=30)
    b = None
    try:
        [message_id] = await accept(mailbox_a)
        await wait_for(lambda: slow.holding)
        b = await start((stores[1], mailbox_b, outbox_b), fast)
        await asyncio.sleep(3 * lease)
        slow.gate.set()
        await wait_for(_outbox_empty(outbox_a))
    finally:
        slow.gate.set()
        await a.stop()
        if b:
            await b.stop()
        for s in stores:
            await s.close()
    assert [j.message_doc_id for j in slow.received] == [message_id]
    assert fast.received == []


class OddOnce(Scripted):
    """Answers its first send with a refusal that is not a RecipientFailure,
    as a provider module with a bug might: recording that outcome raises."""

    async def send(self, job: Job) -> SendResult:
        result = await super().send(job)
        if len(self.received) == 1:
            return SendResult(refused=("odd",))  # type: ignore[arg-type]
        return result


async def test_an_outcome_that_cannot_be_recorded_stops_no_other_and_is_tried_again_flagged(
        parts, caplog):
    _, mailbox, outbox = parts
    container = await start(parts, OddOnce("p"), threshold=100)
    [odd] = await accept(mailbox)
    others = await accept(mailbox, n=3)
    for message_id in others:
        await wait_for(lambda m=message_id: _status_is(mailbox, m, "sent"))
    doc = await wait_for(lambda: _status_is(mailbox, odd, "sent"))
    await wait_for(_outbox_empty(outbox))
    await container.stop()
    assert f"message {odd}: the outcome of its send through p (accepted) could not be " \
           "recorded" in caplog.text
    sent = [e for e in doc["events"] if e["type"] == "sent"]
    assert len(sent) == 1 and sent[0]["ambiguous"] and "may also have gone" in sent[0]["detail"]


async def test_a_message_no_provider_up_can_carry_backs_off_and_fails_in_time(tmp_path):
    from bitmail.message.submission import submitted

    raw = ("From: me@localhost\r\nTo: bob@example.com\r\nSubject: Grüße aus Köln\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\nHallo\r\n").encode()
    message = submitted(raw, user_address="me@localhost", recipients=["bob@example.com"],
                        domain="localhost")
    assert message.smtputf8  # only a provider that carries SMTPUTF8 may send it
    store = SQLiteStore(str(tmp_path / "db.sqlite"))
    await store.open()
    mailbox = Mailbox(store, "localhost")
    outbox = Outbox(store, RetryPolicy(base=0.2, max=0.2, give_up_after=1.0))
    ascii_only = Scripted("mailgun")
    container = await start((store, mailbox, outbox), ascii_only)
    try:
        message_id = await mailbox.accept(message, "me")
        doc = await wait_for(lambda: _status_is(mailbox, message_id, "failed"))
    finally:
        await container.stop()
        await store.close()
    assert ascii_only.received == []
    deferred = [e for e in doc["events"] if e["type"] == "deferred"]
    # Backed off between tries (0.2 s each), not claimed again at once.
    assert 1 <= len(deferred) <= 10, len(deferred)
    assert "needs SMTPUTF8" in deferred[0]["detail"]
    assert doc["recipients"][0]["detail"].startswith("gave up: it needs SMTPUTF8")


async def test_a_stop_lets_a_send_in_flight_finish_and_records_it(parts):
    _, mailbox, outbox = parts
    provider = Scripted("p", delay=0.3)  # well inside the stop's grace
    container = await start(parts, provider)
    [message_id] = await accept(mailbox)
    await wait_for(lambda: container.slots["p"].runner.in_flight)
    await container.stop()
    assert [j.message_doc_id for j in provider.received] == [message_id]
    assert (await status(mailbox, message_id))["status"] == "sent"
    assert await outbox.pending() == 0


class SecondChunkHangs(Gated):
    """One recipient a call; every call after the first waits for the gate."""

    max_recipients = 1

    async def send(self, job: Job) -> SendResult:
        if not self.received:
            return await Scripted.send(self, job)
        return await super().send(job)


@pytest.mark.parametrize("kind", [Gated, SecondChunkHangs],
                         ids=["one call", "after its first chunk"])
async def test_a_send_cut_off_by_a_stop_is_handed_back_as_possibly_sent(parts, kind):
    store, mailbox, _ = parts
    provider = kind("p")
    container = await start(parts, provider, send_timeout=30)
    container.stop_grace = 0.2
    [message_id] = await accept(mailbox, to="a@example.com; b@example.com")
    await wait_for(lambda: provider.holding)
    await container.stop()
    [entry] = await store.get("outbox")
    assert entry["ambiguous"] is True
    # The next run's send says the mail may have gone out already.
    provider.gate.set()
    container = await start(parts, provider, send_timeout=30)
    doc = await wait_for(lambda: _status_is(mailbox, message_id, "sent"))
    await container.stop()
    sent = [e for e in doc["events"] if e["type"] == "sent"]
    assert sent and all(e["ambiguous"] and "may also have gone" in e["detail"] for e in sent)


# -- a provider that cannot carry a message (Outcome.CANNOT_CARRY, can_carry) --------


class Picky(Scripted):
    """Says before it is picked that it cannot carry a message whose subject
    says "big", as a relay that announced its SIZE does."""

    def can_carry(self, job: Job) -> bool:
        return b"Subject: big" not in job.mime


async def test_a_message_one_provider_cannot_carry_goes_out_through_another(parts):
    picky, other = Scripted("picky", Outcome.CANNOT_CARRY), Scripted("other")
    container = await start(parts, picky, other, threshold=1)
    ids = await accept(parts[1], n=4)
    for message_id in ids:
        await wait_for(lambda m=message_id: _status_is(parts[1], m, "sent"))
    await container.stop()
    assert len(other.received) == 4
    # Not a failure of the provider: one in a row would have taken it down.
    assert container.slots["picky"].health.state == State.UP


async def test_a_message_no_provider_can_carry_fails_at_once(parts):
    container = await start(parts, Scripted("a", Outcome.CANNOT_CARRY),
                            Scripted("b", Outcome.CANNOT_CARRY))
    [message_id] = await accept(parts[1])
    doc = await wait_for(lambda: _status_is(parts[1], message_id, "failed"))
    await container.stop()
    assert await parts[2].pending() == 0
    assert all(s.health.state == State.UP for s in container.slots.values())
    assert "says cannot_carry" in doc["recipients"][0]["detail"]


async def test_a_provider_that_says_it_cannot_carry_a_message_is_passed_over(parts):
    picky, other = Picky("picky"), Scripted("other")
    container = await start(parts, picky, other, scheduler=RoundRobin(["picky", "other"]))
    _, mailbox, _ = parts
    big = parse_message({"to": "a@example.com", "subject": "big"}, sender="me@localhost",
                        domain="localhost")
    ids = [await mailbox.accept(big, "me") for _ in range(3)]
    for message_id in ids:
        await wait_for(lambda m=message_id: _status_is(mailbox, m, "sent"))
    await container.stop()
    assert picky.received == [] and len(other.received) == 3


# -- found by a review of the day's changes: where two of them met ----------------


async def _status(mailbox, message_id):
    return (await mailbox.get("me", message_id))["status"]


async def test_transient_failure_then_cannot_carry_elsewhere_must_not_fail_the_message(parts):
    """Provider a can carry the message but fails once, transiently; b cannot
    carry it. The message must be retried (a carries it), not failed."""
    _, mailbox, _ = parts
    a, b = Scripted("a", Outcome.TRANSIENT), Scripted("b", Outcome.CANNOT_CARRY)
    container = await start(parts, a, b, threshold=100, scheduler=RoundRobin(["a", "b"]))
    [message_id] = await accept(mailbox)

    async def settled():
        s = await _status(mailbox, message_id)
        return s if s in ("deferred", "failed", "sent") else None

    try:
        first = await wait_for(settled)
        a.fail = None  # a recovers: the message must go out through it
        if first != "failed":
            await wait_for(lambda: _status_is(mailbox, message_id, "sent"), timeout=5)
    finally:
        await container.stop()
    doc = await mailbox.get("me", message_id)
    assert first != "failed", doc["recipients"][0]["detail"]
    assert doc["status"] == "sent"


async def test_a_job_whose_carrier_is_up_but_busy_is_not_backed_off_as_unplaceable(tmp_path):
    """'carrier' is UP and can carry 'big' messages, only busy (no room);
    'picky' has room but cannot carry them. A claimed 'big' job must go back
    in line, not be deferred with a back-off saying no provider is up."""
    store = SQLiteStore(str(tmp_path / "db.sqlite"))
    await store.open()
    mailbox = Mailbox(store, "localhost")
    outbox = Outbox(store, RetryPolicy(base=30, max=60))
    carrier, picky = Gated("carrier"), Picky("picky")
    policy = FailurePolicy(threshold=100)
    container = Container([(carrier, policy), (picky, policy)], outbox, mailbox,
                          MtaSettings(send_timeout=30, concurrency=1))
    await container.start()
    try:
        big = parse_message({"to": "a@example.com", "subject": "big"}, sender="me@localhost",
                            domain="localhost")
        ids = [await mailbox.accept(big, "me") for _ in range(3)]
        await wait_for(lambda: len(carrier.holding) >= 1)
        await asyncio.sleep(1.0)
        third = await mailbox.get("me", ids[2])
        state = container.slots["carrier"].health.state
    finally:
        carrier.gate.set()
        await container.stop()
        await store.close()
    assert state == State.UP
    deferred = [e for e in third["events"] if e["type"] == "deferred"]
    assert deferred == [], deferred


async def test_stop_returns_when_the_store_cannot_take_the_last_outcome(parts):
    """Container.stop's docstring: 'Raises StoreError when the store cannot
    take the last writes.' It must not hang (a container manager kills)."""
    store, mailbox, _ = parts
    provider = Scripted("p")
    container = await start(parts, provider)
    real_commit = store.commit

    async def broken_commit(batch):
        if any(op.kind == "tracking" for op in batch.ops):
            raise StoreError("ConnectionDoesNotExistError: connection was closed")
        return await real_commit(batch)

    store.commit = broken_commit
    await accept(mailbox)
    await wait_for(lambda: provider.received)
    await wait_for(lambda: container._recording)
    try:
        await asyncio.wait_for(container.stop(), 8)
    except StoreError:
        pass  # the documented outcome
    except TimeoutError:
        store.commit = real_commit
        for task in list(container._writes):
            task.cancel()
        pytest.fail("Container.stop() still running after 8 s: the outcome write "
                    "retries for ever")


async def test_a_lost_job_refused_as_cannot_carry_is_not_sent_again_by_its_old_holder(tmp_path):
    """A job whose lease this process lost (another process claimed it) must
    not be handed to another provider by its old holder: the transient path
    leaves it to the new holder; CANNOT_CARRY re-dispatches it."""
    store = SQLiteStore(str(tmp_path / "db.sqlite"))
    await store.open()
    lease = 0.6
    mailbox, outbox = Mailbox(store, "localhost"), Outbox(store, RetryPolicy(lease=lease))
    picky, other = Gated("picky"), Scripted("other")
    picky.fail = Outcome.CANNOT_CARRY
    real_renew, resume = outbox.renew, asyncio.Event()

    async def paused_renew(ids):  # the store out of reach for longer than a lease
        await resume.wait()
        return await real_renew(ids)

    outbox.renew = paused_renew
    container = await start((store, mailbox, outbox), picky, other, threshold=100,
                            scheduler=RoundRobin(["picky", "other"]), send_timeout=30)
    try:
        await accept(mailbox)
        await wait_for(lambda: picky.holding)
        await asyncio.sleep(lease * 1.5)
        [_] = await Outbox(store, RetryPolicy(lease=60)).claim(10)  # another process
        resume.set()
        await wait_for(lambda: container._lost)
        picky.gate.set()
        await asyncio.sleep(0.5)
    finally:
        picky.gate.set()
        resume.set()
        await container.stop()
        await store.close()
    assert other.received == [], "sent by the old holder while another process holds it"
