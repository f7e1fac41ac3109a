"""Each provider type end to end: a message with to, cc and bcc recipients, a
UTF-8 subject, text, html and an attachment goes in through the HTTP API of a
service configured with only that provider, and comes out at the provider's
peer — the Mailgun and Mandrill fakes, moto's SES server, an aiosmtpd relay
with STARTTLS and AUTH — whole, to every envelope recipient, under the
Message-ID the API answered with."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from types import SimpleNamespace

import pytest

from bitmail.testing import FakeMailgun, FakeMandrill

from conftest import (
    SAMPLE_ATTACHMENT,
    SAMPLE_SUBJECT,
    SES_ACCESS_KEY_ID,
    SES_REGION,
    SES_SECRET_KEY,
    SMTP_PASSWORD,
    SMTP_USERNAME,
    Service,
    assert_same_mail,
    provider_toml,
    ses_identity,
    start_service,
    wait_for,
)

TO, CC, BCC = "to@example.com", "cc@example.org", "bcc@example.net"
SENDER = "alice@localhost"  # make_settings' domain


@dataclass(frozen=True)
class Arrival:
    """One message as the peer took it."""

    envelope: frozenset[str]  # every address it goes to
    mime: bytes
    provider_id: str | None  # the id the peer answered with


@dataclass
class Peer:
    """A provider's far side: the TOML that points a provider at it, and what it took."""

    toml: str
    arrivals: Callable[[], list[Arrival]]


@pytest.fixture(params=["mailgun", "mandrill", "ses", "smtp"])
async def peer(request: pytest.FixtureRequest) -> AsyncIterator[Peer]:
    kind = request.param
    if kind == "mailgun":
        async with FakeMailgun(api_key="key-e2e", domain="mg.example.com") as fake:
            yield Peer(provider_toml("mailgun", "mailgun", api_key="key-e2e",
                                     domain="mg.example.com", base_url=fake.url, timeout="5s"),
                       lambda: [Arrival(frozenset(r.recipients), r.mime, r.id)
                                for r in fake.received])
    elif kind == "mandrill":
        async with FakeMandrill(api_key="md-e2e") as fake:
            yield Peer(provider_toml("mandrill", "mandrill", api_key="md-e2e",
                                     base_url=f"{fake.url}/api/1.0", timeout="5s"),
                       lambda: [Arrival(frozenset(r.recipients), r.mime, r.id)
                                for r in fake.received])
    elif kind == "ses":
        url = request.getfixturevalue("moto_url")
        await ses_identity(url, "localhost")
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        backend = ses_backends[DEFAULT_ACCOUNT_ID][SES_REGION]
        before = len(backend.sent_messages)  # moto's server is shared by the whole run

        def ses_arrivals() -> list[Arrival]:
            return [Arrival(frozenset(m.destinations), m.raw_data.encode(), m.id)
                    for m in backend.sent_messages[before:]]

        yield Peer(provider_toml("ses", "ses", region=SES_REGION, endpoint_url=url,
                                 access_key_id=SES_ACCESS_KEY_ID,
                                 secret_access_key=SES_SECRET_KEY, timeout="5s"),
                   ses_arrivals)
    else:
        running = request.getfixturevalue("relay_at")
        cert, _ = request.getfixturevalue("certificate")
        relay = running.relay

        def smtp_arrivals() -> list[Arrival]:
            # The relay only counts a session that did STARTTLS and AUTH.
            assert all(d.tls and d.authenticated for d in relay.received)
            return [Arrival(frozenset(d.rcpt_tos), d.content, "4B2C91C0A1")
                    for d in relay.received]

        yield Peer(provider_toml("smtp", "smtp", host="127.0.0.1", port=running.port,
                                 username=SMTP_USERNAME, password=SMTP_PASSWORD,
                                 tls="starttls", ca_file=str(cert), timeout="5s"),
                   smtp_arrivals)


async def send_sample(svc: Service, headers: dict[str, str]) -> dict:
    resp = await svc.client.post("/api/messages", headers=headers, json={
        "to": TO, "cc": [CC], "bcc": BCC, "subject": SAMPLE_SUBJECT,
        "text": "Hallo — plain text body\n", "html": "<p>Hallo — <b>html</b> body</p>",
        "attachments": [{"filename": "report.pdf", "content_type": "application/pdf",
                         "content": base64.b64encode(SAMPLE_ATTACHMENT).decode()}],
    })
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def test_a_rich_message_sent_through_the_api_arrives_whole_at_the_providers_peer(
        make_settings, peer: Peer, request: pytest.FixtureRequest):
    kind = request.node.callspec.params["peer"]
    async with start_service(make_settings(peer.toml)) as svc:
        headers = await svc.api_key("alice")
        answer = await send_sample(svc, headers)

        async def all_sent() -> dict | None:
            resp = await svc.client.get(f"/api/messages/{answer['id']}", headers=headers)
            doc = await resp.json()
            return doc if all(r["status"] == "sent" for r in doc["recipients"]) else None

        doc = await wait_for(all_sent)
        [arrival] = await wait_for(peer.arrivals)
        tracked = {r["address"]: await svc.runtime.mailbox.find_tracked(
            kind, r["provider_message_id"]) for r in doc["recipients"]}
        pending = await svc.runtime.outbox.pending()

    # Every envelope recipient, bcc included (moto adds the header addresses again).
    assert {TO, CC, BCC} <= arrival.envelope
    # Same Message-ID as the API's answer; headers, bodies and attachment intact;
    # bcc in no header.
    assert_same_mail(arrival.mime, SimpleNamespace(message_id=answer["message_id"],
                                                   sender=SENDER))
    head = BytesParser(policy=policy.default).parsebytes(arrival.mime, headersonly=True)
    assert BCC not in "".join(f"{k}: {v}\n" for k, v in head.items())

    assert doc["status"] == "sent" and pending == 0
    assert {r["address"] for r in doc["recipients"]} == {TO, CC, BCC}
    for r in doc["recipients"]:
        assert r["provider"] == kind
        assert r["provider_message_id"]
        # Webhooks naming that id find the message.
        assert tracked[r["address"]].message == answer["id"]
        # ... and know whom that id took, for a bounce after the copy is deleted.
        assert set(tracked[r["address"]].recipients) == (
            {r["address"]} if kind == "mandrill" else {TO, CC, BCC})
    ids = {r["provider_message_id"] for r in doc["recipients"]}
    if kind == "mandrill":
        # One id per recipient at Mandrill, each its own (the fake keeps the first).
        assert len(ids) == 3 and arrival.provider_id in ids
    else:
        assert ids == {arrival.provider_id}
    assert [(e["type"], e["provider"]) for e in doc["events"] if e["type"] == "sent"] == \
        [("sent", kind)] * 3


def submitted_message() -> bytes:
    """A message as a mail program writes it: names with commas and non-ASCII,
    a group, an IDN domain as its A-label, long msg-ids, List-Unsubscribe,
    multipart/related with a cid: image, an attached message, and a text
    attachment in another charset."""
    from email.headerregistry import Address, Group
    from email.message import EmailMessage

    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = Address("Alice, the sender", "alice", "localhost")
    msg["To"] = [Address("Doe, John", addr_spec=TO), Group("Team", [
        Address("Jörg Ärger", addr_spec=CC)])]
    msg["Cc"] = [Address("Bücher", "orders", "xn--bcher-kva.example")]
    msg["Subject"] = "Grüße — =?utf-8?q?not?= an encoded-word"
    msg["Date"] = "Mon, 30 Nov 2026 10:00:00 +0100"
    msg["Message-ID"] = "<round-trip-" + "x" * 60 + "@client.example>"
    msg["In-Reply-To"] = "<" + "p" * 80 + "@client.example>"
    msg["References"] = "<" + "p" * 80 + "@client.example> <q@client.example>"
    msg["List-Unsubscribe"] = "<https://client.example/u?id=42>"
    msg.set_content("Plain — text\n")
    msg.add_alternative('<p>Rich <img src="cid:logo@client.example"></p>\n', subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG fake", "image", "png",
                                     cid="<logo@client.example>")
    inner = EmailMessage()
    inner["From"] = "bob@example.org"
    inner["Subject"] = "the original"
    inner.set_content("Original body\n")
    msg.add_attachment(inner)
    msg.add_attachment("Prijs: € 10".encode("iso-8859-15"), "text", "plain",
                       filename="prijs.txt", params={"charset": "iso-8859-15"})
    return msg.as_bytes()


def mime_tree(raw: bytes) -> list[tuple[str, str | None, bytes]]:
    """Each part's content type, Content-ID and decoded content, in order."""
    mail = BytesParser(policy=policy.default).parsebytes(raw)
    return [(p.get_content_type(), p["Content-ID"],
             b"" if p.is_multipart() else p.get_payload(decode=True) or b"")
            for p in mail.walk()]


async def test_a_message_submitted_over_smtp_reaches_the_peer_as_it_was_written(
        make_settings, peer: Peer):
    """SMTP submission → this provider → its peer: the same headers in the same
    order and the same MIME tree; only Bcc is gone (RFC 6409 §8)."""
    import aiosmtplib

    from bitmail.smtpd import start_smtp

    from conftest import free_port

    raw = submitted_message()
    with_bcc = raw.replace(b"\r\n\r\n", f"\r\nBcc: {BCC}\r\n\r\n".encode(), 1)
    async with start_service(make_settings(peer.toml)) as svc:
        port = free_port()
        server = await start_smtp(svc.runtime, "127.0.0.1", port)
        try:
            await svc.api_key("alice")
            key = await svc.runtime.accounts.create_api_key("alice")
            await aiosmtplib.send(with_bcc, sender=SENDER, hostname="127.0.0.1", port=port,
                                  username="alice", password=key,
                                  recipients=[TO, CC, "orders@xn--bcher-kva.example", BCC])
            [arrival] = await wait_for(peer.arrivals)
        finally:
            server.close()
            await server.wait_closed()
    assert {TO, CC, BCC, "orders@xn--bcher-kva.example"} <= arrival.envelope
    got = BytesParser(policy=policy.default).parsebytes(arrival.mime)
    want = BytesParser(policy=policy.default).parsebytes(raw)
    # moto adds nothing, the fakes add nothing, the relay adds nothing: equal lists.
    assert [(k, str(v)) for k, v in got.items()] == [(k, str(v)) for k, v in want.items()]
    assert mime_tree(arrival.mime) == mime_tree(raw)
    assert arrival.mime.replace(b"\r\n", b"\n").rstrip() == raw.replace(b"\r\n", b"\n").rstrip()
