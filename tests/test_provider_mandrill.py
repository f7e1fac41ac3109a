"""MandrillProvider against the loopback FakeMandrill: what arrives, per-recipient
answers, and how every kind of failure is classified."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from bitmail.mta import build_provider
from bitmail.mta.mandrill import MandrillProvider
from bitmail.mta.outcomes import Outcome
from bitmail.testing import FakeMandrill

from conftest import assert_same_mail, sample_job, send_expecting_error

API_KEY = "md-Xb2kP9qL7rT4vW1zY8nC3e"


@pytest.fixture
async def fake() -> AsyncIterator[FakeMandrill]:
    async with FakeMandrill(api_key=API_KEY) as fake:
        yield fake


async def started(url: str, *, api_key: str = API_KEY, timeout: str = "0.5s") -> MandrillProvider:
    provider = MandrillProvider("mandrill-test", api_key=api_key, base_url=f"{url}/api/1.0",
                                timeout=timeout)
    await provider.start()
    return provider


@pytest.fixture
async def provider(fake: FakeMandrill) -> AsyncIterator[MandrillProvider]:
    provider = await started(fake.url)
    yield provider
    await provider.close()


async def test_every_envelope_recipient_gets_the_same_mime(fake, provider):
    job = sample_job()
    result = await provider.send(job)

    [got] = fake.received
    assert set(got.recipients) == {"to@example.com", "cc@example.org", "bcc@example.net"}
    assert got.mime == job.mime
    assert_same_mail(got.mime, job)
    assert got.fields["from_email"] == job.sender
    assert result.provider_message_id == got.id
    assert result.refused == ()


async def test_queued_answer_counts_as_sent(fake, provider):
    # Queued means Mandrill has it: sending it elsewhere would deliver it twice.
    fake.answer_queued()
    result = await provider.send(sample_job())
    assert result.refused == ()
    assert result.provider_message_id


@pytest.mark.parametrize(("refuse", "outcome"), [
    ("reject", Outcome.PERMANENT),
    ("invalid", Outcome.PERMANENT),
])
async def test_one_refused_recipient_fails_alone(fake, provider, refuse, outcome):
    getattr(fake, refuse)("cc@example.org")
    result = await provider.send(sample_job())
    [failure] = result.refused
    assert (failure.recipient, failure.outcome) == ("cc@example.org", outcome)
    assert fake.received[0].recipients == ("to@example.com", "bcc@example.net")
    assert result.provider_message_id


async def test_soft_bounce_rejection_is_retried_later(fake, provider):
    fake.reject("cc@example.org", reason="soft-bounce")
    [failure] = (await provider.send(sample_job())).refused
    assert failure.outcome == Outcome.TRANSIENT


async def test_every_recipient_refused_for_the_accounts_sake_is_a_provider_fault(fake, provider):
    for address in sample_job().recipients:
        fake.reject(address, reason="unsigned")  # the sending domain is not verified
    error = await send_expecting_error(provider)
    assert error.outcome == Outcome.PROVIDER_FAULT


@pytest.mark.parametrize(("fault", "outcome", "ambiguous"), [
    (500, Outcome.TRANSIENT, False),  # GeneralError
    (502, Outcome.TRANSIENT, False),
    (503, Outcome.TRANSIENT, False),
    (429, Outcome.TRANSIENT, False),
    (401, Outcome.PROVIDER_FAULT, False),  # Invalid_Key, as HTTP 500
    (400, Outcome.PERMANENT, False),  # ValidationError
    ("PaymentRequired", Outcome.PROVIDER_FAULT, False),
    ("Unknown_Subaccount", Outcome.PROVIDER_FAULT, False),
    ("timeout", Outcome.TRANSIENT, True),
    ("drop", Outcome.TRANSIENT, True),
])
async def test_fault_is_classified(fake, provider, fault, outcome, ambiguous):
    fake.fail_next(1, fault)
    error = await send_expecting_error(provider)
    assert (error.outcome, error.ambiguous) == (outcome, ambiguous)
    assert fake.received == []


async def test_ok_answer_that_is_not_json_counts_as_sent(fake, provider):
    fake.fail_next(1, "bad_json")
    result = await provider.send(sample_job())
    assert (result.provider_message_id, result.refused) == (None, ())
    assert len(fake.received) == 1


async def test_a_message_that_is_not_utf8_is_one_mandrill_cannot_carry(fake, provider):
    # 8-bit Latin-1, as SMTP submission accepts it: send-raw takes a JSON
    # string, so Mandrill cannot carry these bytes; an SMTP relay can.
    job = dataclasses.replace(sample_job(), mime=b"Subject: menu\r\n\r\nCaf\xe9\r\n")
    # It says so before it is picked; should it be given one anyway, it refuses.
    assert not provider.can_carry(job)
    assert provider.can_carry(dataclasses.replace(job, mime="Caf\u00e9".encode()))
    error = await send_expecting_error(provider, job)
    assert (error.outcome, error.ambiguous) == (Outcome.CANNOT_CARRY, False)
    assert fake.requests == 0


def test_built_from_configuration_by_type_name():
    provider = build_provider("md", "mandrill", {"api_key": API_KEY})
    assert isinstance(provider, MandrillProvider)
    assert provider.url == "https://mandrillapp.com/api/1.0/messages/send-raw.json"
    assert provider.secrets() == (API_KEY,)
    with pytest.raises(ValueError, match="api_key"):
        build_provider("md", "mandrill", {})
