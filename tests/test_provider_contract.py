"""The contract every provider keeps, whatever its far side: each provider
(and every future one: add its peer to PEERS) runs every test here.

- the far side gets the job's bytes, for every envelope recipient;
- a refused connection is transient, and nothing can have gone out;
- an answer later than the timeout, or lost after the far side took the
  mail, is transient and ambiguous: the mail may have gone, so a retry keeps
  its Message-ID;
- a temporary refusal is transient, and the next send works.
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
from bitmail.mta.outcomes import Outcome
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
    taken: Callable[[], list[bytes]]  # the MIME of every mail the far side took
    answer_late: Callable[[], None]  # take the next mail, answer after the timeout
    lose_answer: Callable[[], None]  # take the next mail, close without an answer
    refuse_for_now: Callable[[], None]  # refuse the next mail with a temporary error


def http_peer(fake: FakeService, make: Callable[[str | None], Provider]) -> Peer:
    fake.slow_delay = LATE
    return Peer(make=make, taken=lambda: [r.mime for r in fake.received],
                answer_late=lambda: fake.fail_next(1, "slow"),
                lose_answer=lambda: fake.fail_next(1, "drop", after_accept=True),
                refuse_for_now=lambda: fake.fail_next(1, 503))


@contextlib.asynccontextmanager
async def mailgun_peer(certificate: tuple[Path, Path]) -> AsyncIterator[Peer]:
    async with FakeMailgun(api_key="key-contract", domain="mg.bitmail.test") as fake:
        yield http_peer(fake, lambda url: MailgunProvider(
            "mailgun", api_key="key-contract", domain="mg.bitmail.test",
            base_url=url or fake.url, timeout=TIMEOUT))


@contextlib.asynccontextmanager
async def mandrill_peer(certificate: tuple[Path, Path]) -> AsyncIterator[Peer]:
    async with FakeMandrill(api_key="md-contract") as fake:
        yield http_peer(fake, lambda url: MandrillProvider(
            "mandrill", api_key="md-contract", base_url=f"{url or fake.url}/api/1.0",
            timeout=TIMEOUT))


@contextlib.asynccontextmanager
async def ses_peer(certificate: tuple[Path, Path]) -> AsyncIterator[Peer]:
    async with FakeSES() as fake:
        yield http_peer(fake, lambda url: SESProvider(
            "ses", region=SES_REGION, endpoint_url=url or fake.url,
            access_key_id=SES_ACCESS_KEY_ID, secret_access_key=SES_SECRET_KEY,
            timeout=TIMEOUT))


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
    try:
        yield Peer(
            make=lambda port: SMTPProvider(
                "smtp", host="127.0.0.1", port=int(port or running.port),
                username=SMTP_USERNAME, password=SMTP_PASSWORD, tls="starttls",
                ca_file=str(certificate[0]), timeout=TIMEOUT),
            taken=lambda: [d.content for d in relay.received],
            answer_late=late, lose_answer=lost, refuse_for_now=refuse)
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
