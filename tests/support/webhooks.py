"""Webhooks (test_hooks_*.py, test_suppression.py): a service whose providers
carry known webhook secrets, and helpers that post and inspect."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from bitmail.mailbox import Mailbox
from bitmail.mta import PROVIDER_TYPES
from bitmail.mta.outcomes import SendResult
from bitmail.mta.provider import Job, Provider
from bitmail.store import Batch

from support.harness import PASSWORD, Service, start_service, wait_for

MAILGUN_KEY = "mailgun-signing-key"
MAILGUN_EU_KEY = "mailgun-eu-signing-key"
SES_TOPIC = "arn:aws:sns:us-east-1:123456789012:bitmail-ses"
MANDRILL_KEY = "mandrill-webhook-key"
MANDRILL_URL = "https://mail.example.com/hooks/mandrill"

# The store kinds a webhook may touch: a refused request must change none.
# A verified one-time token is spent whatever the answer; its tests count it.
HOOK_KINDS = ("notice", "message", "body", "suppression", "tracking", "outbox", "user")

# The local provider and one Mailgun account whose webhooks are signed with MAILGUN_KEY.
MAILGUN_CONFIG = f"""
[[mta.providers]]
name = "local"
type = "local"

[[mta.providers]]
name = "mailgun"
type = "mailgun"
api_key = "unused"
domain = "mg.example.com"
webhook_signing_key = "{MAILGUN_KEY}"
"""

HOOK_CONFIG = MAILGUN_CONFIG + f"""
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
        monkeypatch.setitem(PROVIDER_TYPES, ptype, f"support.webhooks:{cls}")
    async with start_service(make_settings(HOOK_CONFIG)) as svc:
        # alice is the operator (test_suppression.py).
        await svc.runtime.accounts.create("alice", PASSWORD, operator=True)
        yield svc


async def hook_counts(service: Service) -> dict[str, int]:
    """How many documents of each kind a webhook may touch (after processing ends)."""
    await hooks_idle(service)
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
    """Wait until every recorded webhook notice has been applied."""
    assert service.runtime.notices is not None
    await service.runtime.notices.idle()


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
                message: str, recipients: Sequence[str] | None = None) -> None:
    """A tracking entry, as the container makes when a provider accepts a
    message: for `recipients`, by default every recipient of its Sent copy."""
    if recipients is None:
        doc = await service.runtime.store.get_one("message", {"id": message})
        recipients = [r["address"] for r in doc["recipients"]] if doc else []
    batch = Batch()
    Mailbox.track(batch, provider, provider_message_id, message, recipients)
    await service.runtime.store.commit(batch)


async def sent_through(service: Service, message: dict, provider: str) -> None:
    """Mark every recipient of a Sent copy as sent through `provider` (the
    provider that took it decides which webhooks may name it)."""

    def change(doc: dict) -> dict:
        for r in doc["recipients"]:
            r["provider"] = provider
        return doc

    await service.runtime.store.update("message", message["id"], change)


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
