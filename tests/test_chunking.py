"""A message to more recipients than a provider takes in one call goes out in
several calls: every recipient gets its own status, and a call that fails is
retried for its recipients alone, never re-sending a chunk that went out."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bitmail.config import FailurePolicy, MtaSettings
from bitmail.mailbox import Mailbox
from bitmail.message import parse_message
from bitmail.mta.chunks import Call, send_in_chunks
from bitmail.mta.container import Container
from bitmail.mta.outcomes import Outcome, RecipientFailure, SendResult
from bitmail.mta.ses import SESProvider
from bitmail.mta.smtp import SMTPProvider
from bitmail.outbox import Job, Outbox, RetryPolicy
from bitmail.store.sqlite import SQLiteStore
from bitmail.testing.ses import FakeSES

from support.harness import wait_for
from support.peers import (
    SES_ACCESS_KEY_ID,
    SES_REGION,
    SES_SECRET_KEY,
    sent_by_moto,
    ses_identity,
)

SENDER = "me@localhost"


@pytest.fixture
async def parts(tmp_path) -> AsyncIterator[tuple[Mailbox, Outbox]]:
    store = SQLiteStore(str(tmp_path / "db.sqlite"))
    await store.open()
    yield Mailbox(store, "localhost"), Outbox(store, RetryPolicy(base=0.05, max=0.1))
    await store.close()


def ses(url: str) -> SESProvider:
    return SESProvider("ses", region=SES_REGION, endpoint_url=url,
                       access_key_id=SES_ACCESS_KEY_ID, secret_access_key=SES_SECRET_KEY,
                       timeout="5s")


async def send_one(parts: tuple[Mailbox, Outbox], provider: SESProvider,
                   recipients: list[str]) -> tuple[Container, str]:
    mailbox, outbox = parts
    container = Container([(provider, FailurePolicy(threshold=100, retry_after=60))],
                          outbox, mailbox, MtaSettings(send_timeout=5.0))
    await container.start()
    # All in Bcc: moto counts the header's addresses into SES's limit of 50 too.
    message = parse_message({"bcc": recipients, "subject": "to many"}, sender=SENDER,
                            domain="localhost")
    return container, await mailbox.accept(message, "me")


async def all_sent(mailbox: Mailbox, message: str) -> dict:
    doc = await mailbox.get("me", message)
    return doc if all(r["status"] == "sent" for r in doc["recipients"]) else {}


def addresses(n: int) -> list[str]:
    return [f"r{i}@example.com" for i in range(n)]


async def test_51_recipients_through_ses_go_out_in_two_calls_and_all_are_sent(parts, moto_url):
    await ses_identity(moto_url, SENDER)
    container, message = await send_one(parts, ses(moto_url), addresses(51))
    try:
        doc = await wait_for(lambda: all_sent(parts[0], message))
    finally:
        await container.stop()
    ids = [r["provider_message_id"] for r in doc["recipients"]]
    assert len(ids) == 51 and all(ids)
    # SES refuses more than 50 destinations a call: 50 went in one, 1 in another.
    assert Counter(Counter(ids).values()) == Counter({50: 1, 1: 1})
    for sent_id in set(ids):
        sent = sent_by_moto(sent_id)
        assert {r["address"] for r in doc["recipients"]
                if r["provider_message_id"] == sent_id} == set(sent.destinations)


class FailsOnceFor(FakeSES):
    """Answers 503 once to the call that names `address`, on command."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address
        self.refused_calls: list[tuple[str, ...]] = []

    async def _send(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        recipients = tuple(body["Destination"]["ToAddresses"])
        if self.address in recipients and not self.refused_calls:
            self.refused_calls.append(recipients)
            return self.error_response(503)
        return await super()._send(request)


async def test_a_failed_chunk_is_retried_alone_and_no_sent_chunk_goes_twice(parts):
    recipients = addresses(120)  # three calls: 50, 50, 20
    async with FailsOnceFor("r75@example.com") as fake:
        container, message = await send_one(parts, ses(fake.url), recipients)
        try:
            doc = await wait_for(lambda: all_sent(parts[0], message))
        finally:
            await container.stop()
    assert fake.refused_calls == [tuple(recipients[50:100])]
    calls = [r.recipients for r in fake.received]
    assert sorted(map(len, calls)) == [20, 50, 50]
    # Each recipient was sent exactly once: the retry carried the failed chunk only.
    assert Counter(r for call in calls for r in call) == Counter(recipients)
    assert calls[-1] == tuple(recipients[50:100])
    deferred = {e["recipient"] for e in doc["events"] if e["type"] == "deferred"}
    assert deferred == set(recipients[50:100])


# -- the chunking rule on its own --------------------------------------------------


def job(n: int) -> Job:
    return Job(id="j", message_doc_id="m", sender=SENDER, recipients=tuple(addresses(n)), mime=b"x",
               message_id="<x@localhost>")


async def run_chunks(n: int, limit: int, answers: dict[int, Call]) -> tuple[Call, list[int]]:
    """Chunk i gets answers[i], or is accepted with id "id-i"."""
    sizes: list[int] = []

    async def call(part: Job) -> Call:
        i = len(sizes)
        sizes.append(len(part.recipients))
        await asyncio.sleep(0)
        return answers.get(i, Call(Outcome.ACCEPTED, SendResult(f"id-{i}")))

    return await send_in_chunks(call, job(n), limit), sizes


async def test_every_recipient_keeps_the_id_of_the_call_that_carried_it():
    done, sizes = await run_chunks(5, 2, {})
    assert sizes == [2, 2, 1]
    assert done.outcome == Outcome.ACCEPTED and done.result is not None
    assert done.result.provider_message_id == "id-0"
    assert done.result.recipient_ids == {"r2@example.com": "id-1", "r3@example.com": "id-1",
                                         "r4@example.com": "id-2"}


async def test_a_first_call_failing_fails_the_whole_job_and_sends_no_more():
    fault = Call(Outcome.PROVIDER_FAULT, detail="401")
    done, sizes = await run_chunks(5, 2, {0: fault})
    assert done == fault and sizes == [2]  # the job fails over, whole


async def test_a_later_failure_refuses_only_its_chunk_with_its_outcome():
    done, sizes = await run_chunks(5, 2, {1: Call(Outcome.TRANSIENT, detail="503",
                                                  ambiguous=True)})
    assert sizes == [2, 2, 1] and done.outcome == Outcome.ACCEPTED and done.result
    assert done.result.refused == (
        RecipientFailure("r2@example.com", Outcome.TRANSIENT, "503", True),
        RecipientFailure("r3@example.com", Outcome.TRANSIENT, "503", True))


async def test_chunks_refused_for_good_are_permanent_only_when_all_are():
    bad = Call(Outcome.PERMANENT, detail="rejected")
    done, _ = await run_chunks(4, 2, {0: bad})
    assert done.outcome == Outcome.ACCEPTED and done.result
    assert [f.recipient for f in done.result.refused] == ["r0@example.com", "r1@example.com"]
    done, _ = await run_chunks(4, 2, {0: bad, 1: bad})
    assert done.outcome == Outcome.PERMANENT


def test_each_provider_type_declares_its_recipients_per_call():
    assert SESProvider.max_recipients == 50
    from bitmail.mta.mailgun import MailgunProvider
    from bitmail.mta.mandrill import MandrillProvider

    assert MailgunProvider.max_recipients == 1000
    assert MandrillProvider.max_recipients == 1000
    assert SMTPProvider("relay", host="127.0.0.1").max_recipients == 100
    assert SMTPProvider("relay", host="127.0.0.1", max_recipients=7).max_recipients == 7
    with pytest.raises(ValueError, match="max_recipients"):
        SMTPProvider("relay", host="127.0.0.1", max_recipients=0)
