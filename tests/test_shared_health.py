"""Provider health shared through the store: what one process finds out about
a provider, every process on the same PostgreSQL database takes up — each
process here is a Container on its own PostgresStore."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from test_container import Scripted, accept

from bitmail.clock import SteppedClock
from bitmail.config import FailurePolicy, MtaSettings
from bitmail.mailbox import Mailbox
from bitmail.mta import container as container_module
from bitmail.mta.container import Container
from bitmail.mta.health import State, ThresholdHealth
from bitmail.mta.outcomes import Outcome, ProviderError
from bitmail.mta.scheduling import RoundRobin
from bitmail.outbox import Outbox, RetryPolicy
from bitmail.store import Kind, Store, open_store

from conftest import pg_reset, wait_for

#: Long enough that nothing is ever probed again during a test, unless asked.
LONG = 30.0


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two processes' views of one emptied database."""
    pg_reset(pg_url)
    async with open_store(pg_url) as a, open_store(pg_url) as b:
        yield a, b


class Processes(list[Container]):
    """The containers a test started (stopped after it), all on one clock
    that the test steps instead of waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = SteppedClock()


@pytest.fixture
async def containers() -> AsyncIterator[Processes]:
    started = Processes()
    yield started
    for c in started:
        await c.stop()


async def start(containers: Processes, store: Store, *providers: Scripted,
                threshold: int = 2, retry_after: float = LONG) -> Container:
    policy = FailurePolicy(threshold=threshold, retry_after=retry_after)
    container = Container([(p, policy) for p in providers], Outbox(store, RetryPolicy(
        base=0.05, max=0.1), clock=containers.clock), Mailbox(store, "localhost"),
        MtaSettings(send_timeout=2.0), scheduler=RoundRobin([p.name for p in providers]))
    await container.start()
    containers.append(container)
    return container


async def look_again(containers: Processes, times: int = 2) -> None:
    """Every container has looked at the shared health `times` more times
    (the clock steps past HEALTH_POLL before each look): whatever it was
    going to take up, it has."""
    for _ in range(times):
        containers.clock.advance(container_module.HEALTH_POLL + 0.01)
        marks = [c.turns for c in containers]
        for c in containers:
            c.wake()
        # A turn counts when the next one begins: its look has ended by then.
        await wait_for(lambda marks=marks: all(
            c.turns >= m + 2 for c, m in zip(containers, marks, strict=True)), timeout=10)


class Leaky(Scripted):
    """Fails with its own key in the error text, as a careless API might."""

    def secrets(self) -> tuple[str, ...]:
        return ("key-0123456789",)

    async def send(self, job):
        raise ProviderError(Outcome.PROVIDER_FAULT, "401 for api:key-0123456789")


async def report(store: Store, provider: str) -> dict | None:
    return await store.get_one(Kind.PROVIDER_HEALTH, {"id": provider})


async def put_report(store: Store, provider: str, state: str, *, at: float,
                     down_for: float = LONG, owner: str = "another-process") -> None:
    await store.put(Kind.PROVIDER_HEALTH, {
        "state": state, "down_until": at + down_for if state == "down" else None,
        "reason": "503 from the API" if state == "down" else "", "owner": owner, "at": at,
    }, id=provider)


# -- the strategy ----------------------------------------------------------------

def test_a_reported_down_holds_until_its_time_and_then_allows_one_probe() -> None:
    now = [100.0]
    health = ThresholdHealth(FailurePolicy(threshold=5, retry_after=3),
                             clock=lambda: now[0])
    assert health.retry_in() == 0.0
    assert health.down_for(8) == State.DOWN
    assert not health.available() and health.retry_in() == 8
    health.down_for(2)  # a shorter report does not cut the time short
    assert health.retry_in() == 8
    now[0] += 8
    assert health.available()
    health.taken()
    assert health.state == State.PROBING and not health.available()
    assert health.success() == State.UP


# -- two processes -----------------------------------------------------------------

async def test_a_provider_found_down_in_one_process_is_down_in_the_other_until_the_same_time(
        stores, containers) -> None:
    store_a, store_b = stores
    x_a, y_a = Leaky("x"), Scripted("y")
    a = await start(containers, store_a, x_a, y_a)
    await accept(a.mailbox, n=4)
    a.wake()
    await wait_for(lambda: a.slots["x"].health.state == State.DOWN)
    shared = await wait_for(lambda: report(store_a, "x"))
    assert shared["state"] == "down" and shared["owner"] == a.outbox.owner
    assert shared["down_until"] == pytest.approx(time.time() + LONG, abs=2)
    assert "key-0123456789" not in str(shared) and "***" in shared["reason"]

    x_b, y_b = Scripted("x"), Scripted("y")
    b = await start(containers, store_b, x_b, y_b)
    await wait_for(lambda: b.slots["x"].health.state == State.DOWN, timeout=10)
    assert not b.slots["x"].health.available()
    assert b.slots["x"].health.retry_in() == pytest.approx(shared["down_until"] - time.time(),
                                                            abs=1)
    assert b.slots["y"].health.state == State.UP
    assert not b.down.is_set()
    [state_b] = [p["state"] for p in b.snapshot() if p["name"] == "x"]
    assert state_b == "down"

    # New mail goes to y only, in whichever process claims it, and nobody
    # writes the report back: it is still A's.
    ids = await accept(b.mailbox, n=6)
    b.wake()
    await wait_for(lambda: len(y_a.received) + len(y_b.received) >= 10)
    await look_again(containers)
    assert x_b.received == [] and x_a.received == []
    assert await report(store_b, "x") == shared
    assert a.slots["x"].health.state == b.slots["x"].health.state == State.DOWN
    sent = Counter(j.message_doc_id for j in (*y_a.received, *y_b.received))
    assert set(ids) <= set(sent) and max(sent.values()) == 1


async def test_a_probe_that_succeeds_in_either_process_brings_the_provider_back_in_both(
        stores, containers) -> None:
    store_a, store_b = stores
    x_a = Scripted("x", Outcome.PROVIDER_FAULT)
    a = await start(containers, store_a, x_a, Scripted("y"))
    await accept(a.mailbox, n=4)
    a.wake()
    await wait_for(lambda: a.slots["x"].health.state == State.DOWN)
    x_b = Scripted("x")
    b = await start(containers, store_b, x_b, Scripted("y"))
    await wait_for(lambda: b.slots["x"].health.state == State.DOWN, timeout=10)

    x_a.fail = None  # x works again; whoever probes it first tells the other
    containers.clock.advance(LONG)  # and both may probe it now

    async def feed() -> None:
        while True:
            await accept(a.mailbox)
            a.wake()
            b.wake()
            await asyncio.sleep(0.1)

    feeding = asyncio.create_task(feed())
    try:
        await wait_for(lambda: a.slots["x"].health.state == b.slots["x"].health.state
                       == State.UP, timeout=20)
    finally:
        feeding.cancel()
    shared = await report(store_a, "x")
    assert shared["state"] == "up" and shared["down_until"] is None
    assert shared["owner"] in (a.outbox.owner, b.outbox.owner)


async def test_only_newer_reports_from_other_processes_are_taken_up(
        stores, containers) -> None:
    store, _ = stores
    b = await start(containers, store, Scripted("x"), Scripted("y"))
    now = time.time()
    await put_report(store, "x", "down", at=now)
    await wait_for(lambda: b.slots["x"].health.state == State.DOWN, timeout=10)

    await put_report(store, "x", "up", at=now - 5)  # older than what B knows
    await put_report(store, "y", "down", at=now + 1, down_for=-1)  # over already
    await look_again(containers, 3)
    assert b.slots["x"].health.state == State.DOWN
    assert b.slots["y"].health.state == State.UP

    await put_report(store, "x", "up", at=now + 2, owner=b.outbox.owner)  # its own
    await look_again(containers, 3)
    assert b.slots["x"].health.state == State.DOWN

    await put_report(store, "x", "up", at=now + 3)
    await wait_for(lambda: b.slots["x"].health.state == State.UP, timeout=10)
    assert (await report(store, "x"))["owner"] == "another-process"  # nothing written back


async def test_a_process_that_only_heard_every_provider_is_down_keeps_running(
        stores, containers) -> None:
    store, _ = stores
    x, y = Scripted("x"), Scripted("y")
    b = await start(containers, store, x, y)
    for name in ("x", "y"):
        await put_report(store, name, "down", at=time.time())
    await wait_for(lambda: all(s.health.state == State.DOWN for s in b.slots.values()),
                   timeout=10)
    await accept(b.mailbox)
    b.wake()
    await look_again(containers, 3)
    assert not b.down.is_set(), "another process's reports alone stopped the service"
    assert x.received == y.received == []
    assert await b.outbox.pending() == 1  # waiting for a provider, not lost


async def test_an_sqlite_store_keeps_reports_but_never_reads_them(
        tmp_path, containers) -> None:
    async with open_store(f"sqlite:///{tmp_path / 'db.sqlite'}", sending=True) as store:
        b = await start(containers, store, Scripted("x"), Scripted("y"))
        await put_report(store, "x", "down", at=time.time())
        await look_again(containers, 3)
        assert b.slots["x"].health.state == State.UP
        await b.stop()
        containers.clear()
