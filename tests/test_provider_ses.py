"""SESProvider against moto's SES server (what arrives) and against a loopback
fake that answers like SES's v2 API does when it fails (how failures are
classified): moto cannot throttle, time out or refuse credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bitmail.mta import build_provider
from bitmail.mta.outcomes import Outcome, ProviderError
from bitmail.mta.ses import SESProvider
from bitmail.testing import Answer
from bitmail.testing.ses import FakeSES

from conftest import (
    SES_ACCESS_KEY_ID,
    SES_REGION,
    SES_SECRET_KEY,
    assert_same_mail,
    sample_job,
    send_expecting_error,
    sent_by_moto,
    ses_identity,
)

REGION = SES_REGION
ACCESS_KEY_ID = SES_ACCESS_KEY_ID
SECRET_KEY = SES_SECRET_KEY
SENDER = "alice@bitmail.test"


# -- moto: a real SES API on loopback ----------------------------------------------


@pytest.fixture
async def verified_sender(moto_url: str) -> str:
    return await ses_identity(moto_url, SENDER)


def ses_provider(url: str, **options: str) -> SESProvider:
    return SESProvider("ses-test", region=REGION, endpoint_url=url, access_key_id=ACCESS_KEY_ID,
                       secret_access_key=SECRET_KEY, **{"timeout": "0.5s", **options})


@pytest.fixture
async def moto_provider(moto_url: str, verified_sender: str) -> AsyncIterator[SESProvider]:
    provider = ses_provider(moto_url, timeout="5s")
    await provider.start()
    yield provider
    await provider.close()


async def test_every_envelope_recipient_gets_the_same_mime(moto_provider):
    job = sample_job(SENDER)
    result = await moto_provider.send(job)

    assert result.provider_message_id
    sent = sent_by_moto(result.provider_message_id)
    assert sent.source == SENDER
    # moto adds the To/Cc header addresses again; bcc can only come from the envelope.
    assert set(job.recipients) <= set(sent.destinations)
    assert "bcc@example.net" in sent.destinations
    assert sent.raw_data.encode() == job.mime
    assert_same_mail(sent.raw_data.encode(), job)
    assert result.refused == ()


async def test_configuration_set_is_passed_on(moto_url, verified_sender):
    from aiobotocore.session import get_session

    async with get_session().create_client(
            "sesv2", region_name=REGION, endpoint_url=moto_url,
            aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_KEY) as client:
        await client.create_configuration_set(ConfigurationSetName="tracking")
    provider = ses_provider(moto_url, timeout="5s", configuration_set="tracking")
    try:
        result = await provider.send(sample_job(SENDER))
    finally:
        await provider.close()
    assert sent_by_moto(result.provider_message_id)


async def test_unverified_sender_is_the_accounts_fault(moto_url, verified_sender):
    provider = ses_provider(moto_url, timeout="5s")
    try:
        with pytest.raises(ProviderError) as info:
            await provider.send(sample_job("mallory@elsewhere.test"))
    finally:
        await provider.close()
    # Another provider may well send from that address.
    assert info.value.outcome == Outcome.PROVIDER_FAULT
    assert "MessageRejected" in info.value.detail


# -- failures, as SES's v2 API reports them (bitmail.testing.ses) ----------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeSES]:
    async with FakeSES() as fake:
        yield fake


@pytest.fixture
async def provider(fake: FakeSES) -> AsyncIterator[SESProvider]:
    provider = ses_provider(fake.url)
    await provider.start()
    yield provider
    await provider.close()


async def test_request_names_every_envelope_recipient_and_the_raw_mime(fake, provider):
    import base64

    job = sample_job(SENDER)
    result = await provider.send(job)
    [request] = fake.sent
    assert request["FromEmailAddress"] == SENDER
    assert request["Destination"]["ToAddresses"] == list(job.recipients)
    assert base64.b64decode(request["Content"]["Raw"]["Data"]) == job.mime
    assert result.provider_message_id


@pytest.mark.parametrize(("fault", "outcome", "ambiguous"), [
    (500, Outcome.TRANSIENT, False),
    (503, Outcome.TRANSIENT, False),
    (429, Outcome.TRANSIENT, False),
    ("Throttling", Outcome.TRANSIENT, False),
    (401, Outcome.PROVIDER_FAULT, False),
    ("AccountSuspended", Outcome.PROVIDER_FAULT, False),
    (400, Outcome.PERMANENT, False),
    ("MessageRejected", Outcome.PERMANENT, False),
    ("SandboxRecipient", Outcome.PROVIDER_FAULT, False),  # one recipient not verified
    ("timeout", Outcome.TRANSIENT, True),
    ("drop", Outcome.TRANSIENT, True),
])
async def test_fault_is_classified(fake, provider, fault, outcome, ambiguous):
    fake.fail_next(1, fault)
    error = await send_expecting_error(provider)
    assert (error.outcome, error.ambiguous) == (outcome, ambiguous)


@pytest.mark.parametrize("fault", [503, 429, "Throttling", "timeout", "drop"])
async def test_botocore_never_retries_behind_our_back(fake, provider, fault):
    # A hidden retry after a lost answer would deliver the mail twice.
    fake.fail_next(1, fault)
    await send_expecting_error(provider)
    assert fake.requests == 1


async def test_ok_answer_that_is_not_json_counts_as_sent(fake, provider):
    fake.fail_next(1, "bad_json")
    result = await provider.send(sample_job(SENDER))
    assert result.provider_message_id is None
    assert len(fake.sent) == 1


@pytest.mark.parametrize("body", ["null", "[]", '"ok"', '{"MessageId": ["0100-odd"]}',
                                  '{"MessageId": 7}', '{"MessageId": ""}'])
async def test_ok_answer_that_is_json_but_not_the_documented_object_counts_as_sent(
        fake, provider, body):
    # botocore's parser raises AttributeError or TypeError on the first three,
    # after SES took the mail: a failure would send it again elsewhere.
    fake.fail_next(1, Answer(200, body))
    result = await provider.send(sample_job(SENDER))
    assert result.provider_message_id is None
    assert fake.requests == 1


@pytest.mark.parametrize(("status", "outcome"), [(500, Outcome.TRANSIENT),
                                              (403, Outcome.PROVIDER_FAULT),
                                              (400, Outcome.PERMANENT)])
async def test_an_error_answer_botocore_cannot_read_goes_by_its_status(
        fake, provider, status, outcome):
    fake.fail_next(1, Answer(status, "null"))
    error = await send_expecting_error(provider)
    assert (error.outcome, error.ambiguous) == (outcome, False)


def test_built_from_configuration_by_type_name():
    provider = build_provider("ses", "ses", {"region": "eu-west-1", "timeout": "10s",
                                             "access_key_id": ACCESS_KEY_ID,
                                             "secret_access_key": SECRET_KEY})
    assert isinstance(provider, SESProvider)
    with pytest.raises(ValueError, match="secret_access_key"):
        build_provider("ses", "ses", {"access_key_id": ACCESS_KEY_ID})
