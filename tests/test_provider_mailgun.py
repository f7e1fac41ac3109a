"""MailgunProvider against the loopback FakeMailgun: what arrives, and how every
kind of failure is classified."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bitmail.mta import build_provider
from bitmail.mta.mailgun import MailgunProvider
from bitmail.mta.outcomes import Outcome
from bitmail.testing import FakeMailgun

from conftest import assert_same_mail, sample_job, send_expecting_error

API_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
DOMAIN = "mg.bitmail.test"


@pytest.fixture
async def fake() -> AsyncIterator[FakeMailgun]:
    async with FakeMailgun(api_key=API_KEY, domain=DOMAIN, slow_delay=1.0) as fake:
        yield fake


@pytest.fixture
async def provider(fake: FakeMailgun) -> AsyncIterator[MailgunProvider]:
    provider = MailgunProvider("mailgun-test", api_key=API_KEY, domain=DOMAIN,
                               base_url=fake.url, timeout="0.5s")
    await provider.start()
    yield provider
    await provider.close()


async def test_every_envelope_recipient_gets_the_same_mime(fake, provider):
    job = sample_job()
    result = await provider.send(job)

    [got] = fake.received
    assert got.endpoint == "messages.mime"
    assert set(got.recipients) == {"to@example.com", "cc@example.org", "bcc@example.net"}
    assert got.mime == job.mime  # byte for byte: the same message on every retry
    assert_same_mail(got.mime, job)
    assert result.provider_message_id == got.id  # Mailgun's id, without the <>
    assert not result.provider_message_id.startswith("<")
    assert result.refused == ()


@pytest.mark.parametrize(("fault", "outcome", "ambiguous"), [
    (500, Outcome.TRANSIENT, False),
    (502, Outcome.TRANSIENT, False),
    (503, Outcome.TRANSIENT, False),
    (429, Outcome.TRANSIENT, False),
    (401, Outcome.PROVIDER_FAULT, False),
    (400, Outcome.PERMANENT, False),
    ("timeout", Outcome.TRANSIENT, True),
    ("drop", Outcome.TRANSIENT, True),
])
async def test_fault_is_classified(fake, provider, fault, outcome, ambiguous):
    fake.fail_next(1, fault)
    error = await send_expecting_error(provider)
    assert (error.outcome, error.ambiguous) == (outcome, ambiguous)
    assert fake.received == []


async def test_unknown_sending_domain_is_a_provider_fault(fake):
    provider = MailgunProvider("mg", api_key=API_KEY, domain="gone.example.com",
                               base_url=fake.url, timeout="0.5s")
    await provider.start()
    try:
        error = await send_expecting_error(provider)
    finally:
        await provider.close()
    assert error.outcome == Outcome.PROVIDER_FAULT
    assert "Domain not found" in error.detail


async def test_a_rejected_recipient_refuses_the_whole_message_permanently(fake, provider):
    # Mailgun checks addresses before queueing and refuses the whole request
    # (400) without naming the recipient: there is nothing to send partially.
    fake.reject("cc@example.org")
    error = await send_expecting_error(provider)
    assert (error.outcome, error.ambiguous) == (Outcome.PERMANENT, False)
    assert "not a valid address" in error.detail


async def test_ok_answer_that_is_not_json_counts_as_sent_without_an_id(fake, provider):
    # Mailgun took the mail; calling it a failure would send it a second time.
    fake.fail_next(1, "bad_json")
    result = await provider.send(sample_job())
    assert result.provider_message_id is None
    assert len(fake.received) == 1


async def test_slow_answer_within_the_timeout_is_accepted(fake):
    fake.slow_delay = 0.2
    fake.fail_next(1, "slow")
    provider = MailgunProvider("mg", api_key=API_KEY, domain=DOMAIN, base_url=fake.url,
                               timeout="2s")
    await provider.start()
    try:
        result = await provider.send(sample_job())
    finally:
        await provider.close()
    assert result.provider_message_id == fake.received[0].id


async def test_latency_is_only_latency(fake, provider):
    fake.delay = 0.1
    await provider.send(sample_job())
    assert len(fake.received) == 1


async def test_injected_session_is_used_and_left_open(fake):
    async with aiohttp.ClientSession() as session:
        provider = MailgunProvider("mg", api_key=API_KEY, domain=DOMAIN, base_url=fake.url,
                                   session=session)
        await provider.start()
        await provider.send(sample_job())
        await provider.close()
        assert not session.closed
    assert len(fake.received) == 1


def test_secrets_cover_the_key_and_its_basic_auth_form():
    provider = MailgunProvider("mg", api_key=API_KEY, domain=DOMAIN)
    assert API_KEY in provider.secrets()
    assert all(s not in provider.redact(f"key={s}") for s in provider.secrets())


def test_built_from_configuration_by_type_name():
    provider = build_provider("mg", "mailgun", {"api_key": API_KEY, "domain": DOMAIN,
                                                "base_url": "https://api.eu.mailgun.net",
                                                "timeout": "10s"})
    assert isinstance(provider, MailgunProvider)
    assert provider.url == f"https://api.eu.mailgun.net/v3/{DOMAIN}/messages.mime"


@pytest.mark.parametrize(("type_", "options", "complaint"), [
    ("postal", {}, "unknown provider type 'postal'"),
    ("mailgun", {"api_key": API_KEY}, "needs domain"),
    ("mailgun", {"domain": DOMAIN}, "needs api_key"),
    ("mailgun", {"api_key": API_KEY, "domain": DOMAIN, "base_ulr": "x"}, "base_ulr"),
    ("mailgun", {"api_key": API_KEY, "domain": DOMAIN, "timeout": "soon"}, "timeout"),
])
def test_configuration_mistakes_are_named(type_, options, complaint):
    with pytest.raises(ValueError, match=complaint):
        build_provider("mg", type_, options)
