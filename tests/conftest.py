"""Shared fixtures: settings on a temporary data folder, an in-process service
with an HTTP client, and whole `serve` processes for crash tests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bitmail import config
from bitmail.app import running
from bitmail.runtime import Runtime
from bitmail.web.app import make_app

REQUIRE_ALL = os.environ.get("BITMAIL_REQUIRE_ALL") == "1"

# Fixtures kept in modules of their own under tests/support/.
pytest_plugins = [
    "support.stores",
    "support.tmpfs",
]


def require_or_skip(reason: str) -> None:
    """Skip for a missing part (Chromium, PostgreSQL) — or fail under BITMAIL_REQUIRE_ALL=1."""
    if REQUIRE_ALL:
        pytest.fail(f"BITMAIL_REQUIRE_ALL=1 but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory: Path, body: str = "", *, port: int | None = None) -> Path:
    """A TOML file with data_dir in `directory` and `body` appended."""
    path = directory / "bitmail.toml"
    head = f'domain = "localhost"\ndata_dir = "{directory / "data"}"\n'
    web = f"[web]\nport = {port}\n" if port else ""
    path.write_text(head + textwrap.dedent(body) + "\n" + web)
    return path


@dataclass
class Service:
    """An in-process BitMail: its runtime and an HTTP client to it."""

    runtime: Runtime
    client: TestClient

    async def login(self, username: str, password: str = "secret", **extra) -> dict:
        """Log in on a fresh cookie jar; returns the answer (csrf_token included)."""
        resp = await self.client.post("/api/session",
                                      json={"username": username, "password": password, **extra})
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()

    async def api_key(self, username: str) -> dict[str, str]:
        if not await self.runtime.accounts.exists(username):
            await self.runtime.accounts.create(username, "secret")
        key = await self.runtime.accounts.create_api_key(username)
        return {"Authorization": f"Bearer {key}"}


@contextlib.asynccontextmanager
async def start_service(settings: config.Settings) -> AsyncIterator[Service]:
    async with running(settings) as runtime:
        client = TestClient(TestServer(make_app(runtime)))
        await client.start_server()
        try:
            yield Service(runtime, client)
        finally:
            await client.close()


@pytest.fixture
def make_settings(tmp_path):
    """make_settings(toml_body) → Settings on a temporary data folder."""

    def make(body: str = "", **env: str) -> config.Settings:
        return config.load(write_config(tmp_path, body), environ=env)

    return make


@pytest.fixture
async def service(make_settings) -> AsyncIterator[Service]:
    """The service with no configuration but its data folder (local provider)."""
    async with start_service(make_settings()) as svc:
        yield svc


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Poll an (async or plain) predicate until it is truthy; its value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


class ServeProcess:
    """`python -m bitmail serve` as a child process, for crash and restart tests."""

    def __init__(self, config_path: Path, port: int, log: Path):
        self.config_path = config_path
        self.port = port
        self.log_path = log
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{port}"

    async def start(self, timeout: float = 20.0) -> ServeProcess:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bitmail", "serve", "--config", str(self.config_path)],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited with {self.proc.returncode}:\n"
                                         + self.log_path.read_text()[-3000:])
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status in (200, 503):
                            return self
                await asyncio.sleep(0.1)
        raise AssertionError("serve did not come up:\n" + self.log_path.read_text()[-3000:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.log.close()

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError("serve did not exit:\n" + self.log_path.read_text()[-3000:])
            await asyncio.sleep(0.05)
        self.log.close()
        return self.proc.returncode

    def output(self) -> str:
        return self.log_path.read_text()


# -- provider tests: one rich message, and what must arrive of it ---------------

SAMPLE_ATTACHMENT = b"%PDF-1.4\n% a small binary attachment \x00\x01\x02\xff\n%%EOF\n"
SAMPLE_SUBJECT = "Grüße aus Zürich — ünïcødé ✓"


def sample_job(sender: str = "alice@bitmail.test", *, to: str = "to@example.com",
               cc: str = "cc@example.org", bcc: str = "bcc@example.net"):
    """A Job as the container hands it to a provider: to, cc and bcc recipients,
    a UTF-8 subject, text and html, and an attachment."""
    import base64

    from bitmail.message import parse_message
    from bitmail.outbox import Job

    message = parse_message({
        "to": to, "cc": cc, "bcc": bcc, "subject": SAMPLE_SUBJECT,
        "text": "Hallo — plain text body\n", "html": "<p>Hallo — <b>html</b> body</p>",
        "attachments": [{"filename": "report.pdf", "content_type": "application/pdf",
                         "content": base64.b64encode(SAMPLE_ATTACHMENT).decode()}],
    }, sender=sender, domain="bitmail.test")
    return Job(id="job-1", message="msg-1", sender=sender, recipients=message.recipients,
               mime=message.mime, message_id=message.message_id)


def assert_same_mail(mime: bytes, job) -> None:
    """`mime`, as the far side received it, is the job's message: same Message-ID,
    headers, bodies and attachment; bcc only in the envelope, never in a header."""
    from email import policy
    from email.parser import BytesParser

    mail = BytesParser(policy=policy.default).parsebytes(mime)
    assert mail["Message-ID"] == job.message_id
    assert mail["Subject"] == SAMPLE_SUBJECT
    assert mail["From"] == job.sender
    assert [a.addr_spec for a in mail["To"].addresses] == ["to@example.com"]
    assert [a.addr_spec for a in mail["Cc"].addresses] == ["cc@example.org"]
    assert mail["Bcc"] is None
    assert "plain text body" in mail.get_body(("plain",)).get_content()
    assert "<b>html</b>" in mail.get_body(("html",)).get_content()
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_payload(decode=True) == SAMPLE_ATTACHMENT


# -- stores ------------------------------------------------------------------

#: The server the PostgreSQL tests make their database on (any database there will do).
PG_SERVER_URL = os.environ.get("BITMAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def run_aside(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to the end on its own loop in another thread: sync
    session fixtures must not touch the loop pytest-asyncio gives the tests."""

    async def main() -> Any:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


async def pg_admin(sql: str, url: str = PG_SERVER_URL) -> None:
    """Run one statement on its own short connection."""
    import asyncpg  # only the PostgreSQL tests need the driver loaded

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_database_url(name: str) -> str:
    """PG_SERVER_URL pointing at database `name` instead."""
    return urlsplit(PG_SERVER_URL)._replace(path="/" + name).geturl()


@contextlib.contextmanager
def fresh_database(prefix: str = "bitmail_test") -> Iterator[str]:
    """A new, empty database, dropped afterwards; skipped (a failure under
    BITMAIL_REQUIRE_ALL=1) when the server cannot be reached."""
    name = f"{prefix}_{os.urandom(5).hex()}"
    try:
        run_aside(lambda: pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # refused, unknown host, bad credentials, timeout…
        require_or_skip(f"PostgreSQL at {PG_SERVER_URL} is not reachable "
                        f"({type(exc).__name__}: {exc}); set BITMAIL_TEST_PG to another server")
    try:
        yield pg_database_url(name)
    finally:
        # FORCE: a test that failed half-way, or a killed process, may have
        # left connections open.
        run_aside(lambda: pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database made for this test run and dropped after it.

    Tests share it: reset it with `pg_reset` first (the `store_url` fixture does).
    """
    with fresh_database() as url:
        yield url


def pg_reset(url: str) -> None:
    """Empty the store's tables in the run's database (if a store made them already)."""
    run_aside(lambda: pg_admin(
        "DO $$ BEGIN IF to_regclass('docs') IS NOT NULL THEN "
        "TRUNCATE docs, notices RESTART IDENTITY; END IF; END $$", url))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store in turn: a new SQLite file, then the run's PostgreSQL database, emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("pg_url")
    pg_reset(url)
    return url


# -- webhooks (test_hooks_*.py, test_suppression.py) ----------------------------

from bitmail.mailbox import Mailbox  # noqa: E402
from bitmail.mta import PROVIDER_TYPES  # noqa: E402
from bitmail.mta.outcomes import SendResult  # noqa: E402
from bitmail.mta.provider import Job, Provider  # noqa: E402
from bitmail.store import Batch  # noqa: E402

MAILGUN_KEY = "mailgun-signing-key"
MAILGUN_EU_KEY = "mailgun-eu-signing-key"
SES_TOPIC = "arn:aws:sns:us-east-1:123456789012:bitmail-ses"
MANDRILL_KEY = "mandrill-webhook-key"
MANDRILL_URL = "https://mail.example.com/hooks/mandrill"

# The store kinds a webhook may touch: a refused request must change none.
HOOK_KINDS = ("webhook", "webhook_pending", "webhook_token", "message", "body", "suppression",
              "tracking", "outbox", "user")

HOOK_CONFIG = f"""
[accounts]
operators = ["alice"]

[[mta.providers]]
name = "local"
type = "local"

[[mta.providers]]
name = "mailgun"
type = "mailgun"
api_key = "unused"
domain = "mg.example.com"
webhook_signing_key = "{MAILGUN_KEY}"

[[mta.providers]]
name = "mailgun-eu"
type = "mailgun"
api_key = "unused"
domain = "mg.example.com"
webhook_signing_key = "{MAILGUN_EU_KEY}"

[[mta.providers]]
name = "ses"
type = "ses"
sns_topics = ["{SES_TOPIC}"]

[[mta.providers]]
name = "mandrill"
type = "mandrill"
api_key = "unused"
webhook_key = "{MANDRILL_KEY}"
webhook_url = "{MANDRILL_URL}"
"""


class StubProvider(Provider):
    """Takes every job and sends it nowhere: webhook tests are about what comes
    back, so the providers only need to say "sent"."""

    def __init__(self, name: str, **options: object):
        super().__init__(name)

    async def send(self, job: Job) -> SendResult:
        return SendResult(provider_message_id=f"stub-{job.id}")


class StubMailgun(StubProvider):
    type = "mailgun"


class StubSes(StubProvider):
    type = "ses"


class StubMandrill(StubProvider):
    type = "mandrill"


@pytest.fixture
async def hook_service(make_settings, monkeypatch) -> AsyncIterator[Service]:
    """The service with a local provider and stub Mailgun (two accounts), SES and
    Mandrill providers whose webhook secrets are the constants above."""
    for ptype, cls in (("mailgun", "StubMailgun"), ("ses", "StubSes"),
                       ("mandrill", "StubMandrill")):
        monkeypatch.setitem(PROVIDER_TYPES, ptype, f"conftest:{cls}")
    async with start_service(make_settings(HOOK_CONFIG)) as svc:
        yield svc


async def hook_counts(service: Service) -> dict[str, int]:
    """How many documents of each kind a webhook may touch (after processing ends)."""
    from bitmail.web.hooks import BACKGROUND

    await service.client.app[BACKGROUND].idle()
    return {kind: await service.runtime.store.count(kind) for kind in HOOK_KINDS}


async def assert_repeat_changes_nothing(service: Service, message_id: str, post) -> None:
    """Posting a webhook the provider already delivered once (its earlier
    answer was lost): 200 "duplicate", and neither the store nor the
    message's events change. `post()` sends it again."""
    before = await hook_counts(service)
    doc_before = await service.runtime.store.get_one("message", {"id": message_id})
    again = await post()
    assert again.status == 200 and (await again.json())["status"] == "duplicate"
    assert await hook_counts(service) == before
    doc_after = await service.runtime.store.get_one("message", {"id": message_id})
    assert doc_after["events"] == doc_before["events"]


async def hooks_idle(service: Service) -> None:
    """Wait until every webhook's background processing has ended."""
    from bitmail.web.hooks import BACKGROUND

    await service.client.app[BACKGROUND].idle()


async def sent_message(service: Service, to: str = "bob@example.com; carol@example.org",
                       sender: str = "alice", **extra) -> dict:
    """A message accepted through the API and sent by some provider: its API
    answer ({"id", "message_id", ...}) plus the sender's auth headers."""
    headers = await service.api_key(sender)
    resp = await service.client.post("/api/messages", headers=headers, json={
        "to": to, "subject": "webhook test", "text": "hello", **extra})
    assert resp.status == 202, await resp.text()
    body = await resp.json()

    async def sent():
        got = await service.client.get(f"/api/messages/{body['id']}", headers=headers)
        return (await got.json())["status"] == "sent"

    await wait_for(sent)
    return {**body, "headers": headers}


async def track(service: Service, provider: str, provider_message_id: str,
                message: str) -> None:
    """A tracking entry, as the container makes when a provider accepts a message."""
    batch = Batch()
    Mailbox.track(batch, provider, provider_message_id, message)
    await service.runtime.store.commit(batch)


async def recipient_status(service: Service, message: dict, address: str) -> dict:
    """One recipient's entry in GET /api/messages/{id}."""
    resp = await service.client.get(f"/api/messages/{message['id']}",
                                    headers=message["headers"])
    assert resp.status == 200
    doc = await resp.json()
    return next(r for r in doc["recipients"] if r["address"] == address)


async def inbox(service: Service, username: str) -> list[dict]:
    """The user's Inbox, each message in full (GET /api/messages/{id})."""
    headers = await service.api_key(username)
    resp = await service.client.get("/api/messages?folder=inbox", headers=headers)
    out = []
    for row in (await resp.json())["messages"]:
        full = await service.client.get(f"/api/messages/{row['id']}", headers=headers)
        out.append({**await full.json(), "headers": headers})
    return out


# -- provider peers: moto's SES server, an aiosmtpd relay (test_provider_*, e2e, faults) --

import datetime  # noqa: E402
import ipaddress  # noqa: E402
import ssl  # noqa: E402
from dataclasses import field  # noqa: E402

from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import SMTP as SMTPServer  # noqa: E402
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session  # noqa: E402

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


def make_certificate_files(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, usable as its own CA
    (a client's `ca_file`): (cert, key) files in `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert, key) files."""
    return make_certificate_files(tmp_path_factory.mktemp("tls"))


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


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
