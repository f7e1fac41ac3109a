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
               mime=message.to_mime(), message_id=message.message_id)


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


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database made for this test run and dropped after it.

    Skipped when the server cannot be reached (a failure under BITMAIL_REQUIRE_ALL=1).
    Tests share it: reset it with `pg_reset` first (the `store_url` fixture does).
    """
    name = f"bitmail_test_{os.urandom(5).hex()}"
    try:
        run_aside(lambda: pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # refused, unknown host, bad credentials, timeout…
        require_or_skip(f"PostgreSQL at {PG_SERVER_URL} is not reachable "
                        f"({type(exc).__name__}: {exc}); set BITMAIL_TEST_PG to another server")
    try:
        yield pg_database_url(name)
    finally:
        # FORCE: a test that failed half-way may have left a connection open.
        run_aside(lambda: pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
