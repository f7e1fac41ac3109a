"""SMTPProvider against an aiosmtpd relay on loopback (STARTTLS with a certificate
made here, AUTH): what arrives, connection reuse, per-recipient refusals, and
how every kind of failure is classified."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st

from bitmail.mta import build_provider
from bitmail.mta.outcomes import Outcome
from bitmail.mta.smtp import SMTPProvider, data_payload

from conftest import (
    SMTP_PASSWORD,
    SMTP_USERNAME,
    Relay,
    Running,
    assert_same_mail,
    run_relay,
    sample_job,
    send_expecting_error,
)

USERNAME = SMTP_USERNAME
PASSWORD = SMTP_PASSWORD


def smtp_provider(port: int, certificate: tuple[Path, Path], **options) -> SMTPProvider:
    settings = {"host": "127.0.0.1", "port": port, "username": USERNAME,
                "password": PASSWORD, "tls": "starttls", "ca_file": str(certificate[0]),
                "timeout": "0.5s", **options}
    return SMTPProvider("smtp-test", **settings)


@pytest.fixture
async def provider(relay_at: Running, certificate) -> AsyncIterator[SMTPProvider]:
    provider = smtp_provider(relay_at.port, certificate)
    await provider.start()
    yield provider
    await provider.close()


# -- what arrives ---------------------------------------------------------------------


async def test_every_envelope_recipient_gets_the_same_mime_over_starttls_with_auth(
        relay, provider):
    job = sample_job()
    result = await provider.send(job)

    [got] = relay.received
    assert got.mail_from == job.sender
    assert got.rcpt_tos == job.recipients  # to, cc and bcc
    assert got.tls and got.authenticated
    assert_same_mail(got.content, job)
    assert got.content.rstrip(b"\r\n") == job.mime.rstrip(b"\r\n")
    assert result.provider_message_id == "4B2C91C0A1"
    assert result.refused == ()


# Lines that start with a dot, every kind of line end, no end at all.
_PIECES = st.lists(st.sampled_from([b".", b"..", b"\r\n", b"\n", b"\r", b"a", b"\xff", b" "]),
                   max_size=40).map(b"".join)


@given(st.one_of(_PIECES, st.binary(max_size=300)))
def test_the_data_payload_is_what_aiosmtplib_data_would_send(mime: bytes) -> None:
    # aiosmtplib's own rules, as its execute_data_command applies them.
    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(mime)) + b".\r\n"
    assert data_payload(mime) == expected


async def test_dots_and_bare_line_ends_reach_the_relay_as_rfc_5321_has_them(relay, provider):
    mime = (b"From: a@bitmail.test\r\nSubject: dots\r\n\r\n.starts with a dot\r\n"
            b"..two\r\n.\r\nbare LF\nbare CR\rlast line without an end")
    await provider.send(dataclasses.replace(sample_job(), mime=mime))
    [got] = relay.received
    assert got.content == (b"From: a@bitmail.test\r\nSubject: dots\r\n\r\n.starts with a dot"
                           b"\r\n..two\r\n.\r\nbare LF\r\nbare CR\r\nlast line without an end"
                           b"\r\n")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_implicit_tls(certificate):
    for running in run_relay(certificate, implicit=True):
        provider = smtp_provider(running.port, certificate, tls="implicit")
        try:
            await provider.send(sample_job())
        finally:
            await provider.close()
        assert running.relay.received[0].tls


async def test_plain_relay_without_tls_or_auth(certificate):
    for running in run_relay(certificate, starttls=False):
        provider = smtp_provider(running.port, certificate, tls="none", username=None,
                                 password=None)
        try:
            await provider.send(sample_job())
        finally:
            await provider.close()
        assert not running.relay.received[0].tls


async def test_one_connection_serves_consecutive_sends(relay, provider):
    for _ in range(3):
        await provider.send(sample_job())
    assert len(relay.received) == 3
    assert relay.connections == 1


async def test_concurrent_sends_use_at_most_pool_size_connections(relay_at, certificate):
    provider = smtp_provider(relay_at.port, certificate, pool_size=2, timeout="5s")
    try:
        await asyncio.gather(*(provider.send(sample_job()) for _ in range(6)))
    finally:
        await provider.close()
    assert len(relay_at.relay.received) == 6
    assert 1 <= relay_at.relay.connections <= 2


async def test_pooled_connection_the_relay_dropped_is_replaced(relay, provider):
    await provider.send(sample_job())
    relay.mail_fault = "drop"  # the idle connection is gone when it is used again
    await provider.send(sample_job())
    assert len(relay.received) == 2
    assert relay.connections == 2


# -- per-recipient refusals -----------------------------------------------------------


@pytest.mark.parametrize(("reply", "outcome"), [
    ("550 5.1.1 No such user", Outcome.PERMANENT),
    ("450 4.2.0 Greylisted, try again later", Outcome.TRANSIENT),
])
async def test_one_refused_recipient_fails_alone(relay, provider, reply, outcome):
    relay.refuse["cc@example.org"] = reply
    result = await provider.send(sample_job())
    [failure] = result.refused
    assert (failure.recipient, failure.outcome) == ("cc@example.org", outcome)
    assert reply[:3] in failure.detail
    assert relay.received[0].rcpt_tos == ("to@example.com", "bcc@example.net")


async def test_every_recipient_refused_sends_nothing_and_keeps_the_connection(relay, provider):
    job = sample_job()
    for address in job.recipients:
        relay.refuse[address] = "550 5.1.1 No such user"
    result = await provider.send(job)
    assert {f.recipient for f in result.refused} == set(job.recipients)
    assert all(f.outcome == Outcome.PERMANENT for f in result.refused)
    assert relay.received == []
    relay.refuse.clear()
    await provider.send(job)
    assert relay.connections == 1


@pytest.mark.parametrize("reply", [
    "554 5.7.1 Relay access denied",
    # Postfix refusing our host (smtpd_client_restrictions), given at RCPT.
    "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied",
])
async def test_relay_that_will_not_relay_for_us_is_a_provider_fault(relay, provider, reply):
    for address in sample_job().recipients:
        relay.refuse[address] = reply
    error = await send_expecting_error(provider)
    assert error.outcome == Outcome.PROVIDER_FAULT


# -- what a relay cannot carry ----------------------------------------------------------


class SizedRelay(Relay):
    """Announces SIZE `announced` in its EHLO (RFC 1870) and refuses at MAIL
    a declared SIZE over `limit`, as Postfix does (message_size_limit)."""

    announced = limit = 1000

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [f"250-SIZE {self.announced}" if r.startswith("250-SIZE") else r
                for r in responses]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        sizes = [int(o[5:]) for o in mail_options if o.upper().startswith("SIZE=")]
        if sizes and sizes[0] > self.limit:
            return "552 5.3.4 Message size exceeds fixed limit"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


@pytest.fixture
def sized_at(certificate) -> Iterator[Running]:
    yield from run_relay(certificate, relay=SizedRelay())


async def test_a_message_over_the_size_the_relay_announces_is_not_sent_there(sized_at,
                                                                           certificate):
    provider = smtp_provider(sized_at.port, certificate)
    job = sample_job()
    assert len(job.mime) > SizedRelay.announced
    try:
        error = await send_expecting_error(provider, job)
    finally:
        await provider.close()
    assert (error.outcome, error.ambiguous) == (Outcome.CANNOT_CARRY, False)
    assert "SIZE" in error.detail and sized_at.relay.received == []
    # Learnt once, the limit keeps such a message from being given to it at all.
    assert not provider.can_carry(job)
    assert provider.can_carry(dataclasses.replace(job, mime=job.mime[:SizedRelay.announced]))


async def test_the_size_is_declared_at_mail_and_a_refusal_there_is_the_relays_limit(
        sized_at, certificate):
    # A relay announcing more than it takes: only the SIZE=n at MAIL can tell.
    relay = sized_at.relay
    assert isinstance(relay, SizedRelay)
    relay.announced = 10_000_000
    provider = smtp_provider(sized_at.port, certificate)
    try:
        error = await send_expecting_error(provider, sample_job())
    finally:
        await provider.close()
    assert (error.outcome, error.ambiguous) == (Outcome.CANNOT_CARRY, False)
    assert "552 5.3.4" in error.detail and relay.received == []


# -- failures -------------------------------------------------------------------------


@pytest.mark.parametrize(("where", "fault", "outcome", "ambiguous"), [
    ("data", "554 5.6.0 Message content rejected", Outcome.PERMANENT, False),
    ("data", "451 4.7.1 Rate limit exceeded, slow down", Outcome.TRANSIENT, False),
    ("mail", "421 4.7.0 Too many connections, try later", Outcome.TRANSIENT, False),
    ("mail", "drop", Outcome.TRANSIENT, False),  # on a fresh connection: nothing sent
    ("data", "drop", Outcome.TRANSIENT, True),  # after the end of DATA: maybe sent
    ("data", "timeout", Outcome.TRANSIENT, True),
])
async def test_fault_is_classified(relay, provider, where, fault, outcome, ambiguous):
    setattr(relay, f"{where}_fault", fault)
    error = await send_expecting_error(provider)
    assert (error.outcome, error.ambiguous) == (outcome, ambiguous)


async def test_untrusted_certificate_is_a_provider_fault(relay_at, certificate):
    provider = smtp_provider(relay_at.port, certificate, ca_file=None)
    try:
        error = await send_expecting_error(provider)
    finally:
        await provider.close()
    assert error.outcome == Outcome.PROVIDER_FAULT


async def test_unverified_certificate_is_accepted_when_verification_is_off(relay, relay_at,
                                                                         certificate):
    provider = smtp_provider(relay_at.port, certificate, ca_file=None, tls_verify=False)
    try:
        await provider.send(sample_job())
    finally:
        await provider.close()
    assert relay.received[0].tls


async def test_relay_without_starttls_is_a_provider_fault_when_tls_is_required(certificate):
    for running in run_relay(certificate, starttls=False):
        provider = smtp_provider(running.port, certificate)
        try:
            error = await send_expecting_error(provider)
        finally:
            await provider.close()
        assert error.outcome == Outcome.PROVIDER_FAULT
        assert running.relay.received == []


def test_built_from_configuration_by_type_name():
    provider = build_provider("relay", "smtp", {"host": "smtp.example.com", "tls": "implicit",
                                                "username": USERNAME, "password": PASSWORD})
    assert isinstance(provider, SMTPProvider)
    assert provider.port == 465
    assert provider.secrets() == (PASSWORD,)
    with pytest.raises(ValueError, match="host"):
        build_provider("relay", "smtp", {})
    with pytest.raises(ValueError, match="tls"):
        build_provider("relay", "smtp", {"host": "smtp.example.com", "tls": "ssl"})
