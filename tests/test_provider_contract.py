"""The contract every provider keeps, whatever its far side: each provider
(and every future one: add its peer to PEERS) runs every test here.

- the far side gets the job's bytes, for every envelope recipient;
- a refused connection is transient, and nothing can have gone out;
- an answer later than the timeout, or lost after the far side took the
  mail, is transient and ambiguous: the mail may have gone, so a retry keeps
  its Message-ID;
- a temporary refusal is transient, and the next send works;
- refused credentials are the provider's fault, and never show in the error.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bitmail.mta import PROVIDER_TYPES
from bitmail.mta.mailgun import MailgunProvider
from bitmail.mta.mandrill import MandrillProvider
from bitmail.mta.outcomes import Outcome, SendResult
from bitmail.mta.provider import Provider
from bitmail.mta.ses import SESProvider
from bitmail.mta.smtp import SMTPProvider
from bitmail.testing import FakeMailgun, FakeMandrill
from bitmail.testing.faults import FakeService
from bitmail.testing.ses import FakeSES

from conftest import (
    SES_ACCESS_KEY_ID,
    SES_REGION,
    SES_SECRET_KEY,
    SMTP_PASSWORD,
    SMTP_USERNAME,
    Relay,
    assert_same_mail,
    free_port,
    run_relay,
    sample_job,
    send_expecting_error,
    wait_for,
)

TIMEOUT = "0.5s"  # the provider's; the far side's late answers come after LATE
LATE = 0.8


@dataclass
class Peer:
    """A provider's far side, told how to misbehave for the next mail."""

    make: Callable[[str | None], Provider]  # the provider; given a URL or port, there instead
    make_with_secret: Callable[[str], Provider]  # the provider, with a secret the far side refuses
    taken: Callable[[], list[bytes]]  # the MIME of every mail the far side took
    answer_late: Callable[[], None]  # take the next mail, answer after the timeout
    lose_answer: Callable[[], None]  # take the next mail, close without an answer
    refuse_for_now: Callable[[], None]  # refuse the next mail with a temporary error
    refusal: str  # what the far side says to a wrong secret


def http_peer(fake: FakeService, make: Callable[[str | None], Provider],
              make_with_secret: Callable[[str], Provider], refusal: str) -> Peer:
    fake.slow_delay = LATE
    return Peer(make=make, make_with_secret=make_with_secret,
                taken=lambda: [r.mime for r in fake.received],
                answer_late=lambda: fake.fail_next(1, "slow"),
                lose_answer=lambda: fake.fail_next(1, "drop", after_accept=True),
                refuse_for_now=lambda: fake.fail_next(1, 503), refusal=refusal)


@contextlib.asynccontextmanager
async def mailgun_peer(certificate: tuple[Path, Path]) -> AsyncIterator[Peer]:
    async with FakeMailgun(api_key="key-contract", domain="mg.bitmail.test") as fake:
        def make(url: str | None, key: str = "key-contract") -> Provider:
            return MailgunProvider("mailgun", api_key=key, domain="mg.bitmail.test",
                                   base_url=url or fake.url, timeout=TIMEOUT)

        yield http_peer(fake, make, lambda key: make(None, key), refusal="401")


@contextlib.asynccontextmanager
async def mandrill_peer(certificate: tuple[Path, Path]) -> AsyncIterator[Peer]:
    async with FakeMandrill(api_key="md-contract") as fake:
        def make(url: str | None, key: str = "md-contract") -> Provider:
            return MandrillProvider("mandrill", api_key=key,
                                    base_url=f"{url or fake.url}/api/1.0", timeout=TIMEOUT)

        yield http_peer(fake, make, lambda key: make(None, key), refusal="Invalid_Key")


@contextlib.asynccontextmanager
async def ses_peer(certificate: tuple[Path, Path]) -> AsyncIterator[Peer]:
    async with FakeSES() as fake:
        def make(url: str | None, secret: str = SES_SECRET_KEY) -> Provider:
            return SESProvider("ses", region=SES_REGION, endpoint_url=url or fake.url,
                               access_key_id=SES_ACCESS_KEY_ID, secret_access_key=secret,
                               timeout=TIMEOUT)

        def with_secret(secret: str) -> Provider:
            fake.fail_next(1, 401)  # the fake checks no signatures: it refuses as SES would
            return make(None, secret)

        yield http_peer(fake, make, with_secret, refusal="UnrecognizedClientException")


@contextlib.asynccontextmanager
async def smtp_peer(certificate: tuple[Path, Path]) -> AsyncIterator[Peer]:
    relay = Relay(hang=LATE)

    def late() -> None:
        relay.data_fault = "timeout"  # takes the message, answers after `hang`

    def lost() -> None:
        relay.data_fault = "drop"

    def refuse() -> None:
        relay.data_fault = "451 4.7.1 Try again later"

    relays = run_relay(certificate, relay=relay)
    running = next(relays)

    def make(port: str | None, password: str = SMTP_PASSWORD) -> Provider:
        return SMTPProvider("smtp", host="127.0.0.1", port=int(port or running.port),
                            username=SMTP_USERNAME, password=password, tls="starttls",
                            ca_file=str(certificate[0]), timeout=TIMEOUT)

    try:
        yield Peer(
            make=make, make_with_secret=lambda password: make(None, password),
            taken=lambda: [d.content for d in relay.received],
            answer_late=late, lose_answer=lost, refuse_for_now=refuse, refusal="535")
    finally:
        relays.close()  # stops the relay


PEERS = {"mailgun": mailgun_peer, "mandrill": mandrill_peer, "ses": ses_peer,
         "smtp": smtp_peer}


@pytest.fixture(params=sorted(PEERS))
async def peer(request: pytest.FixtureRequest,
               certificate: tuple[Path, Path]) -> AsyncIterator[Peer]:
    async with PEERS[request.param](certificate) as peer:
        yield peer


@pytest.fixture
async def provider(peer: Peer) -> AsyncIterator[Provider]:
    provider = peer.make(None)
    await provider.start()
    yield provider
    await provider.close()


def nobody_listens(peer: Peer) -> str:
    """A URL (or, for SMTP, a port) where nothing answers."""
    port = free_port()
    return str(port) if peer.make(None).type == "smtp" else f"http://127.0.0.1:{port}"


def test_every_provider_type_has_a_peer_here() -> None:
    # The local provider writes files: it has no far side to answer late.
    assert set(PEERS) == set(PROVIDER_TYPES) - {"local"}


async def test_the_far_side_gets_the_jobs_bytes(peer, provider):
    job = sample_job()
    await provider.send(job)
    [mime] = peer.taken()
    assert mime.rstrip(b"\r\n") == job.mime.rstrip(b"\r\n")
    assert_same_mail(mime, job)


async def test_a_refused_connection_is_transient_and_nothing_went_out(peer):
    provider = peer.make(nobody_listens(peer))
    await provider.start()
    try:
        error = await send_expecting_error(provider)
    finally:
        await provider.close()
    assert (error.outcome, error.ambiguous) == (Outcome.TRANSIENT, False)


async def test_an_answer_later_than_the_timeout_is_ambiguous_and_the_mail_went(peer, provider):
    peer.answer_late()
    job = sample_job()
    error = await send_expecting_error(provider, job)
    assert (error.outcome, error.ambiguous) == (Outcome.TRANSIENT, True)
    # It went out all the same: exactly why a retry must keep the Message-ID.
    [mime] = await wait_for(peer.taken, timeout=5)
    assert_same_mail(mime, job)


async def test_a_lost_answer_is_ambiguous_and_the_retry_keeps_the_message_id(peer, provider):
    peer.lose_answer()
    job = sample_job()
    error = await send_expecting_error(provider, job)
    assert (error.outcome, error.ambiguous) == (Outcome.TRANSIENT, True)
    await provider.send(job)  # the retry: a second copy, with the same Message-ID
    taken = peer.taken()
    assert len(taken) == 2
    for mime in taken:
        assert_same_mail(mime, job)


async def test_a_temporary_refusal_is_transient_and_the_next_send_works(peer, provider):
    peer.refuse_for_now()
    error = await send_expecting_error(provider)
    assert (error.outcome, error.ambiguous) == (Outcome.TRANSIENT, False)
    assert peer.taken() == []
    await provider.send(sample_job())
    assert len(peer.taken()) == 1


async def test_refused_credentials_are_the_providers_fault_and_never_shown(peer):
    wrong = "wrong-secret-0123456789abcdef"
    provider = peer.make_with_secret(wrong)
    await provider.start()
    try:
        error = await send_expecting_error(provider)
    finally:
        await provider.close()
    assert error.outcome == Outcome.PROVIDER_FAULT  # another provider may well send it
    assert wrong in provider.secrets()
    assert wrong not in str(error) and wrong not in error.detail
    assert peer.refusal in error.detail  # the far side's own words, for the operator
    assert peer.taken() == []


@pytest.mark.parametrize("odd", [["0100-odd"], 7, "", "  ", {"id": "x"}])
def test_a_send_result_never_carries_an_id_that_is_not_a_string(odd: object) -> None:
    # The container records these ids and matches webhooks by them: a list
    # from one odd answer must not reach it (it could not be hashed).
    result = SendResult(provider_message_id=odd,  # type: ignore[arg-type]
                        recipient_ids={"a@example.com": odd,  # type: ignore[dict-item]
                                       "b@example.com": "id-b"})
    assert result.provider_message_id is None
    assert result.recipient_ids == {"b@example.com": "id-b"}
