"""The container keeps time by its injected clock: what should happen only
after 30 s happens when the test steps the clock 30 s, and not before."""

from __future__ import annotations

import pytest
from test_container import Scripted, accept

from bitmail.clock import SteppedClock
from bitmail.config import FailurePolicy, MtaSettings
from bitmail.mailbox import Mailbox
from bitmail.mta.container import Container
from bitmail.mta.health import State
from bitmail.mta.outcomes import Outcome
from bitmail.outbox import Outbox, RetryPolicy
from bitmail.store.sqlite import SQLiteStore

from conftest import wait_for

RETRY_AFTER = 30.0


@pytest.fixture
async def started(tmp_path, request):
    """A container on a stepped clock with providers x (failing) and y; the
    threshold of failures that takes a provider down is the test's param."""
    store = SQLiteStore(str(tmp_path / "db.sqlite"))
    await store.open()
    clock = SteppedClock()
    outbox = Outbox(store, RetryPolicy(base=600, max=600), clock=clock)
    x, y = Scripted("x", Outcome.PROVIDER_FAULT), Scripted("y")
    policy = FailurePolicy(threshold=getattr(request, "param", 1), retry_after=RETRY_AFTER)
    container = Container([(x, policy), (y, policy)], outbox, Mailbox(store, "localhost"),
                          MtaSettings(send_timeout=2.0))
    await container.start()
    yield container, clock, x, y
    await container.stop()
    await store.close()


async def test_a_down_provider_is_probed_only_once_the_clock_passes_retry_after(started):
    container, clock, x, y = started
    await accept(container.mailbox, n=2)
    await wait_for(lambda: container.slots["x"].health.state == State.DOWN)
    await wait_for(lambda: len(y.received) == 2)

    x.fail = None
    clock.advance(RETRY_AFTER - 1)  # 29 s on: still down, y takes everything
    await accept(container.mailbox, n=3)
    await wait_for(lambda: len(y.received) == 5)
    assert x.received == [] and container.slots["x"].health.state == State.DOWN

    clock.advance(2)  # 31 s on: the next message probes x, which is up again
    await accept(container.mailbox, n=4)
    await wait_for(lambda: container.slots["x"].health.state == State.UP)
    await wait_for(lambda: len(x.received) + len(y.received) == 9)
    assert x.received


@pytest.mark.parametrize("started", [100], indirect=True)  # nobody goes down
async def test_a_deferred_message_waits_for_its_back_off_on_the_clock(started):
    container, clock, x, y = started
    y.fail = Outcome.TRANSIENT  # both fail: back off (600 s by the policy above)
    x.fail = Outcome.TRANSIENT
    [doc_id] = await accept(container.mailbox)
    await wait_for(lambda: container.outbox.store.count("outbox", {"attempts": 1}))
    y.fail = x.fail = None
    for _ in range(3):  # turns of the claim loop: nothing is due yet
        turns = container.turns
        container.wake()
        await wait_for(lambda turns=turns: container.turns >= turns + 2)
    assert x.received == y.received == []

    clock.advance(600 * 1.2 + 1)  # past the back-off and its jitter
    container.wake()
    await wait_for(lambda: len(x.received) + len(y.received) == 1)
    assert (x.received or y.received)[0].message_doc_id == doc_id


@pytest.mark.parametrize("started", [3], indirect=True)  # down after 3 failures in a row
async def test_a_quiet_service_whose_providers_fail_every_try_goes_down(started):
    # One message, tried again 600 s apart (the fixture's back-off; 5 s
    # doubling to 600 s by default): no two failures ever fall within a
    # minute, yet every try fails everywhere. The service must say it is
    # down (and stop, exit 3) with the message kept, not retry until it
    # gives the mail up.
    container, clock, _, y = started
    y.fail = Outcome.PROVIDER_FAULT  # x fails already
    await accept(container.mailbox)
    for attempts in range(1, 4):
        await wait_for(lambda n=attempts: container.down.is_set()
                       or container.outbox.store.count("outbox", {"attempts": n}))
        if container.down.is_set():
            break
        clock.advance(600 * 1.2 + 1)  # past the back-off and its jitter
        container.wake()
    assert container.down.is_set()
    assert await container.outbox.pending() == 1
