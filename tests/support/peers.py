"""Provider peers: moto's SES server and an aiosmtpd relay (test_provider_*,
e2e, fault matrix), a test certificate, and provider tables for settings."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from bitmail.web.tls import make_self_signed, ssl_context

from support.harness import free_port

SES_REGION = "us-east-1"
SES_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SES_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SMTP_USERNAME = "bitmail"
SMTP_PASSWORD = "s3cret-relay-pa55word"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's server on loopback: a real SES API, one for the whole run."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


async def ses_identity(moto_url: str, identity: str) -> str:
    """Verify an address or a whole domain at moto's SES, as sending needs."""
    from aiobotocore.session import get_session

    async with get_session().create_client(
            "sesv2", region_name=SES_REGION, endpoint_url=moto_url,
            aws_access_key_id=SES_ACCESS_KEY_ID,
            aws_secret_access_key=SES_SECRET_KEY) as client:
        await client.create_email_identity(EmailIdentity=identity)
    return identity


def sent_by_moto(message_id: str):
    """What moto's SES sent under this MessageId (source, destinations, raw_data)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    backend = ses_backends[DEFAULT_ACCOUNT_ID][SES_REGION]
    [sent] = [m for m in backend.sent_messages if m.id == message_id]
    return sent


@dataclass(frozen=True)
class Delivery:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    peer: tuple
    tls: bool
    authenticated: bool


@dataclass
class Relay:
    """aiosmtpd handler: records deliveries and misbehaves on command.

    `refuse` answers RCPT for the given addresses; `mail_fault`/`data_fault`
    apply once to the next MAIL or DATA, `mail_always`/`data_always` to every
    one until heal(). A fault is an SMTP reply ("451 4.7.1 slow down"), "drop"
    (close the connection) or "timeout" (answer after `hang` seconds). At MAIL
    nothing was taken yet; at DATA the relay has the message and only its
    answer is lost. AUTH takes `username` and `password`.
    """

    received: list[Delivery] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    mail_fault: str | None = None
    data_fault: str | None = None
    mail_always: str | None = None
    data_always: str | None = None
    username: str = SMTP_USERNAME
    password: str = SMTP_PASSWORD
    hang: float = 3.0

    def heal(self) -> None:
        self.refuse.clear()
        self.mail_fault = self.data_fault = self.mail_always = self.data_always = None

    def authenticate(self, server: SMTPServer, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: LoginPassword) -> AuthResult:
        ok = (auth_data.login, auth_data.password) == (self.username.encode(),
                                                       self.password.encode())
        # handled=False: aiosmtpd then answers a failure itself (535).
        return AuthResult(success=ok, handled=False)

    async def handle_MAIL(self, server: SMTPServer, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        fault, self.mail_fault = self.mail_fault or self.mail_always, None
        if fault == "drop":
            server.transport.abort()
            return "421 4.3.0 gone"
        if fault == "timeout":
            await asyncio.sleep(self.hang)
            return "421 4.4.2 timed out"
        if fault:
            return fault
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: SMTPServer, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session,
                          envelope: Envelope) -> str:
        fault, self.data_fault = self.data_fault or self.data_always, None
        if fault and fault[0].isdigit():
            return fault
        # The relay has the message; only its answer may go missing.
        self.received.append(Delivery(envelope.mail_from, tuple(envelope.rcpt_tos),
                                      envelope.original_content or b"", session.peer,
                                      server.transport.get_extra_info("ssl_object") is not None,
                                      bool(session.authenticated)))
        if fault == "drop":
            server.transport.abort()
        elif fault == "timeout":
            await asyncio.sleep(self.hang)
        return "250 2.0.0 Ok: queued as 4B2C91C0A1"

    @property
    def connections(self) -> int:
        return len({d.peer for d in self.received})


# A self-signed certificate for 127.0.0.1 and localhost, trusted as its own
# CA by a client given it as `ca_file`: the one `serve --self-signed` makes.
make_certificate_files = make_self_signed


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert, key) files."""
    return make_certificate_files(tmp_path_factory.mktemp("tls"))


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl_context(*certificate)


@dataclass
class Running:
    relay: Relay
    port: int


def run_relay(certificate: tuple[Path, Path], *, implicit: bool = False,
              starttls: bool = True, relay: Relay | None = None) -> Iterator[Running]:
    """An aiosmtpd relay on 127.0.0.1 (STARTTLS required, then AUTH, by default),
    running while the generator is suspended."""
    relay = relay or Relay()
    port = free_port()
    context = server_context(certificate)
    if implicit:
        # aiosmtpd only counts STARTTLS as TLS for AUTH; here the whole session is TLS.
        controller = Controller(relay, hostname="127.0.0.1", port=port, ssl_context=context,
                                authenticator=relay.authenticate, auth_required=True,
                                auth_require_tls=False)
    elif starttls:
        controller = Controller(relay, hostname="127.0.0.1", port=port, tls_context=context,
                                require_starttls=True, authenticator=relay.authenticate,
                                auth_required=True)
    else:
        controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Running(relay, port)
    finally:
        controller.stop()


@pytest.fixture
def relay_at(certificate) -> Iterator[Running]:
    """A relay with STARTTLS and AUTH (SMTP_USERNAME / SMTP_PASSWORD), and its port."""
    yield from run_relay(certificate)


@pytest.fixture
def relay(relay_at: Running) -> Relay:
    return relay_at.relay


def provider_toml(name: str, type: str, *, failure: dict[str, Any] | None = None,
                  **options: Any) -> str:
    """One `[[mta.providers]]` table for make_settings; `failure` as an inline table."""
    import json

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v)  # strings and numbers are written alike in TOML

    lines = ["", "[[mta.providers]]", f"name = {value(name)}", f"type = {value(type)}"]
    lines += [f"{k} = {value(v)}" for k, v in options.items() if v is not None]
    if failure:
        lines.append("failure = { " + ", ".join(f"{k} = {value(v)}"
                                                for k, v in failure.items()) + " }")
    return "\n".join(lines) + "\n"
