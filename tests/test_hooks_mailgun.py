"""Mailgun webhooks: tracking events and inbound mail, signed as Mailgun signs them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

import aiohttp
import pytest

from bitmail.events import EventType
from bitmail.mta.outcomes import Outcome
from bitmail.store import Kind
from bitmail.testing import MailgunSigner
from bitmail.web.hooks.mailgun import FRESHNESS

from conftest import (
    MAILGUN_EU_KEY,
    MAILGUN_KEY,
    assert_repeat_changes_nothing,
    hook_counts,
    hooks_idle,
    inbox,
    recipient_status,
    sent_message,
    sent_through,
    track,
    wait_for,
)


def signature(key: str = MAILGUN_KEY, *, timestamp: float | None = None,
              token: str | None = None) -> dict[str, str]:
    """Mailgun's `signature` object: hex HMAC-SHA256 of timestamp + token."""
    return MailgunSigner(key).signature(timestamp=timestamp, token=token)


def event(name: str, recipient: str, message_id: str, **extra) -> dict:
    """An `event-data` object as Mailgun documents it."""
    return {"event": name, "id": secrets.token_urlsafe(16), "timestamp": time.time(),
            "recipient": recipient, "log-level": "info",
            "message": {"headers": {"message-id": message_id, "to": recipient,
                                    "from": "alice@localhost", "subject": "webhook test"}},
            **extra}


def body(name: str, recipient: str, message_id: str, key: str = MAILGUN_KEY, **extra) -> dict:
    return {"signature": signature(key), "event-data": event(name, recipient, message_id,
                                                             **extra)}


def bare(message: dict) -> str:
    """Mailgun's id as the container tracks it: without <>."""
    return message["message_id"].strip("<>")


async def post(service, payload, path: str = "/hooks/mailgun"):
    return await service.client.post(path, json=payload)


# -- events --------------------------------------------------------------------


async def test_delivered_webhook_shows_delivered_to_the_sender_live(hook_service):
    message = await sent_message(hook_service)
    await track(hook_service, "mailgun", bare(message), message["id"])
    updates = hook_service.runtime.store.subscribe()
    resp = await post(hook_service, body("delivered", "bob@example.com", bare(message),
                                         **{"delivery-status": {"code": 250,
                                                                "message": "OK"}}))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "accepted"
    await hooks_idle(hook_service)
    bob = await recipient_status(hook_service, message, "bob@example.com")
    assert bob["status"] == "delivered" and bob["provider"] == "mailgun"
    carol = await recipient_status(hook_service, message, "carol@example.org")
    assert carol["status"] == "sent"
    live = updates.queue.get_nowait()
    while live.get("type") != "status":
        live = updates.queue.get_nowait()
    assert live["owner"] == "alice" and live["message"]["id"] == message["id"]
    updates.close()


@pytest.mark.parametrize(("name", "extra", "event_type", "status"), [
    ("accepted", {}, "sent", "sent"),
    ("delivered", {}, "delivered", "delivered"),
    ("failed", {"severity": "permanent", "reason": "bounce",
                "delivery-status": {"code": 550, "message": "5.1.1 no such user"}},
     "bounced", "bounced"),
    ("failed", {"severity": "temporary", "reason": "generic",
                "delivery-status": {"code": 452, "message": "mailbox full"}},
     "deferred", "sent"),
    ("rejected", {"reject": {"reason": "spam", "description": ""}}, "rejected", "failed"),
    ("complained", {}, "complained", "complained"),
    ("unsubscribed", {}, "unsubscribed", "sent"),
    ("opened", {"ip": "192.0.2.1"}, "opened", "sent"),
    ("clicked", {"url": "https://example.com/x"}, "clicked", "sent"),
])
async def test_every_mailgun_event_becomes_a_bitmail_event(hook_service, name, extra,
                                                           event_type, status):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mailgun", bare(message), message["id"])
    resp = await post(hook_service, body(name, "bob@example.com", bare(message), **extra))
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    got = await hook_service.client.get(f"/api/messages/{message['id']}",
                                        headers=message["headers"])
    doc = await got.json()
    assert doc["recipients"][0]["status"] == status
    last = doc["events"][-1]
    assert last["type"] == event_type and last["provider"] == "mailgun"
    assert last["recipient"] == "bob@example.com"


async def test_permanent_failure_suppresses_the_address_and_counts_a_bounce(hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mailgun", bare(message), message["id"])
    resp = await post(hook_service, body("failed", "Bob@Example.com", bare(message),
                                         severity="permanent", reason="bounce"))
    assert resp.status == 200
    await hooks_idle(hook_service)
    entry = await hook_service.runtime.store.get_one("suppression", {"id": "bob@example.com"})
    assert entry["reason"] == "bounced" and entry["provider"] == "mailgun"
    slot = hook_service.runtime.container.slots["mailgun"]
    assert slot.figures.events["bounced"] == 1
    # The rate is per message the provider accepted in this process.
    slot.figures.outcomes.clear()
    for _ in range(4):
        slot.figures.record(Outcome.ACCEPTED, 0.01)
    providers = await (await hook_service.client.get(
        "/api/providers", headers=message["headers"])).json()
    mailgun = next(p for p in providers["providers"] if p["name"] == "mailgun")
    assert mailgun["bounce_rate"] == 0.25 and mailgun["complaint_rate"] == 0.0


async def test_temporary_failure_does_not_suppress(hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mailgun", bare(message), message["id"])
    await post(hook_service, body("failed", "bob@example.com", bare(message),
                                  severity="temporary"))
    await hooks_idle(hook_service)
    assert await hook_service.runtime.store.count("suppression") == 0


async def test_the_provider_is_the_account_whose_key_signed(hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mailgun-eu", bare(message), message["id"])
    resp = await post(hook_service, body("delivered", "bob@example.com", bare(message),
                                         key=MAILGUN_EU_KEY))
    assert resp.status == 200
    await hooks_idle(hook_service)
    bob = await recipient_status(hook_service, message, "bob@example.com")
    assert bob["status"] == "delivered" and bob["provider"] == "mailgun-eu"


async def test_a_provider_path_accepts_only_that_providers_key(hook_service):
    before = await hook_counts(hook_service)
    wrong = await post(hook_service, body("delivered", "bob@example.com", "x@y"),
                       path="/hooks/mailgun/mailgun-eu")
    assert wrong.status == 403
    assert (await wrong.json())["error"]["code"] == "bad_signature"
    assert await hook_counts(hook_service) == before
    right = await post(hook_service, body("delivered", "bob@example.com", "x@y",
                                          key=MAILGUN_EU_KEY),
                       path="/hooks/mailgun/mailgun-eu")
    assert right.status == 200
    unknown = await post(hook_service, body("delivered", "bob@example.com", "x@y"),
                         path="/hooks/mailgun/nobody")
    assert unknown.status == 404
    assert (await unknown.json())["error"]["code"] == "no_provider"


async def test_falls_back_to_the_message_id_when_nothing_was_tracked(hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    await sent_through(hook_service, message, "mailgun")
    resp = await post(hook_service, body("delivered", "bob@example.com", bare(message)))
    assert resp.status == 200
    await hooks_idle(hook_service)
    bob = await recipient_status(hook_service, message, "bob@example.com")
    assert bob["status"] == "delivered"


async def test_an_event_for_an_unknown_message_is_kept_and_answered_200(hook_service):
    payload = body("delivered", "bob@example.com", "nobody-knows@mailgun.example")
    resp = await post(hook_service, payload)
    assert resp.status == 200
    await hooks_idle(hook_service)
    kept = await hook_service.runtime.store.get("notice")
    assert len(kept) == 1 and kept[0]["provider"] == "mailgun"
    assert kept[0]["state"] == "done" and "no such message" in kept[0]["result"]
    assert kept[0]["payload"]["event-data"]["id"] == payload["event-data"]["id"]


async def test_an_untracked_event_name_is_kept_and_changes_nothing(hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mailgun", bare(message), message["id"])
    resp = await post(hook_service, body("stored", "bob@example.com", bare(message)))
    assert resp.status == 200
    await hooks_idle(hook_service)
    bob = await recipient_status(hook_service, message, "bob@example.com")
    assert bob["status"] == "sent"
    assert await hook_service.runtime.store.count("notice") == 1


# -- refusals: each changes nothing --------------------------------------------


async def refused(service, payload, status: int, code: str, *, path="/hooks/mailgun",
                  raw: bytes | None = None, content_type: str = "application/json"):
    before = await hook_counts(service)
    if raw is None:
        resp = await service.client.post(path, json=payload)
    else:
        resp = await service.client.post(path, data=raw,
                                         headers={"Content-Type": content_type})
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == code, error
    assert await hook_counts(service) == before
    return error


async def test_a_forged_signature_is_refused(hook_service):
    payload = body("delivered", "bob@example.com", "x@y", key="not-the-key")
    error = await refused(hook_service, payload, 403, "bad_signature")
    assert error["field"] == "signature"


async def test_a_tampered_timestamp_is_refused(hook_service):
    payload = body("delivered", "bob@example.com", "x@y")
    payload["signature"]["timestamp"] = str(int(payload["signature"]["timestamp"]) + 1)
    await refused(hook_service, payload, 403, "bad_signature")


@pytest.mark.parametrize("shift", [-FRESHNESS - 1, -2 * FRESHNESS, 301, 3600])
async def test_stale_and_future_timestamps_are_refused(hook_service, shift):
    payload = {"signature": signature(timestamp=time.time() + shift),
               "event-data": event("delivered", "bob@example.com", "x@y")}
    error = await refused(hook_service, payload, 403, "stale_timestamp")
    assert error["field"] == "signature.timestamp"


async def test_a_token_used_before_is_refused_with_a_new_event(hook_service):
    first = body("delivered", "bob@example.com", "x@y")
    assert (await post(hook_service, first)).status == 200
    replay = {"signature": first["signature"],
              "event-data": event("complained", "bob@example.com", "x@y")}
    error = await refused(hook_service, replay, 403, "replayed")
    assert error["field"] == "token"


async def test_the_same_request_twice_changes_nothing_the_second_time(hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mailgun", bare(message), message["id"])
    payload = body("failed", "bob@example.com", bare(message), severity="permanent")
    assert (await post(hook_service, payload)).status == 200
    await assert_repeat_changes_nothing(hook_service, message["id"],
                                        lambda: post(hook_service, payload))
    assert hook_service.runtime.container.slots["mailgun"].figures.events["bounced"] == 1


async def test_broken_json_is_refused(hook_service):
    error = await refused(hook_service, None, 400, "bad_json", raw=b'{"signature": {',
                          content_type="application/json")
    assert "JSON" in error["message"]


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda p: p.pop("signature"), "signature"),
    (lambda p: p.pop("event-data"), "event-data"),
    (lambda p: p["signature"].pop("token"), "signature.token"),
    (lambda p: p["signature"].update(timestamp=12), "signature.timestamp"),
    (lambda p: p["event-data"].pop("event"), "event-data.event"),
    (lambda p: p["event-data"].update(recipient=["a", "b"]), "event-data.recipient"),
])
async def test_missing_or_wrong_fields_are_named(hook_service, mutate, field):
    payload = body("delivered", "bob@example.com", "x@y")
    mutate(payload)
    error = await refused(hook_service, payload, 400, "invalid")
    assert error["field"] == field


async def test_a_json_array_is_refused(hook_service):
    await refused(hook_service, [1, 2], 400, "bad_json")


async def test_an_oversize_body_is_refused(hook_service):
    payload = body("delivered", "bob@example.com", "x@y", padding="x" * (1024 * 1024))
    error = await refused(hook_service, payload, 413, "too_large")
    assert str(1024 * 1024) in error["message"]


async def test_an_oversize_chunked_body_is_refused(hook_service):
    async def chunks():
        yield b'{"signature": {}, "padding": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    before = await hook_counts(hook_service)
    resp = await hook_service.client.post("/hooks/mailgun", data=chunks(),
                                          headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert await hook_counts(hook_service) == before


async def test_no_configured_mailgun_provider_is_404(service):
    resp = await service.client.post("/hooks/mailgun", json=body("delivered", "a@b.c", "x@y"))
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "no_provider"


# -- inbound ---------------------------------------------------------------------


def inbound_form(recipient: str = "dana@localhost", key: str = MAILGUN_KEY, *,
                 mime: bytes | None = None, **override) -> aiohttp.FormData:
    """What a route's forward() posts: the parsed message, attachments as files."""
    form = aiohttp.FormData()
    fields = {
        "recipient": recipient, "sender": "eve@example.net",
        "from": "Eve <eve@example.net>", "subject": "Quarterly numbers",
        "message-headers": json.dumps([
            ["Received", "from mx.example.net"], ["From", "Eve <eve@example.net>"],
            ["To", recipient], ["Subject", "Quarterly numbers"],
            ["Message-Id", f"<{secrets.token_hex(8)}@example.net>"],
            ["Date", "Tue, 04 Jun 2024 10:00:00 +0000"]]),
        **signature(key),
    }
    if mime is not None:
        fields["body-mime"] = mime.decode()
    else:
        fields.update({"body-plain": "See attached.", "body-html": "<p>See <b>attached</b>.</p>",
                       "attachment-count": "1"})
    fields.update(override)
    for name, value in fields.items():
        form.add_field(name, value)
    if mime is None:
        form.add_field("attachment-1", b"%PDF-1.4 numbers", filename="numbers.pdf",
                       content_type="application/pdf")
    return form


async def test_inbound_mail_lands_in_the_inbox_with_its_attachment_and_html(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    resp = await hook_service.client.post("/hooks/mailgun/inbound", data=inbound_form())
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    [mail] = await inbox(hook_service, "dana")
    assert mail["subject"] == "Quarterly numbers" and mail["from"] == "Eve <eve@example.net>"
    # Rebuilt as MIME, each body ends with a line end (RFC 5322 §2.3).
    assert mail["html"] == "<p>See <b>attached</b>.</p>\n" and mail["text"] == "See attached.\n"
    assert [a["filename"] for a in mail["attachments"]] == ["numbers.pdf"]
    data = await hook_service.client.get(f"/api/messages/{mail['id']}/attachments/0",
                                         headers=mail["headers"])
    assert await data.read() == b"%PDF-1.4 numbers"


async def test_inbound_mime_variant_lands_in_the_inbox(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    from email.message import EmailMessage

    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "eve@example.net", "dana@localhost", "MIME"
    mail["Message-ID"] = "<mime-1@example.net>"
    mail.set_content("plain body")
    mail.add_alternative("<p>html body</p>", subtype="html")
    mail.add_attachment(b"col1,col2\n", maintype="text", subtype="csv", filename="data.csv")
    resp = await hook_service.client.post("/hooks/mailgun/inbound",
                                          data=inbound_form(mime=mail.as_bytes()))
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    [got] = await inbox(hook_service, "dana")
    assert got["subject"] == "MIME" and "html body" in got["html"]
    assert [a["filename"] for a in got["attachments"]] == ["data.csv"]


async def test_inbound_for_an_unknown_user_is_406_and_stores_nothing(hook_service):
    before = await hook_counts(hook_service)
    resp = await hook_service.client.post("/hooks/mailgun/inbound",
                                          data=inbound_form("nobody@localhost"))
    assert resp.status == 406
    assert (await resp.json())["error"]["code"] == "unknown_recipient"
    assert await hook_counts(hook_service) == before


async def test_inbound_with_a_forged_signature_is_refused(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    before = await hook_counts(hook_service)
    resp = await hook_service.client.post("/hooks/mailgun/inbound",
                                          data=inbound_form(key="forged"))
    assert resp.status == 403
    assert await hook_counts(hook_service) == before


async def test_inbound_on_a_provider_path_accepts_only_that_providers_key(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    before = await hook_counts(hook_service)
    wrong = await hook_service.client.post("/hooks/mailgun/inbound/mailgun-eu",
                                           data=inbound_form())
    assert wrong.status == 403
    assert await hook_counts(hook_service) == before
    right = await hook_service.client.post("/hooks/mailgun/inbound/mailgun-eu",
                                           data=inbound_form(key=MAILGUN_EU_KEY))
    assert right.status == 200
    await hooks_idle(hook_service)
    [mail] = await inbox(hook_service, "dana")
    assert mail["received_via"] == "mailgun-eu"


async def test_inbound_with_broken_message_headers_is_refused(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    before = await hook_counts(hook_service)
    resp = await hook_service.client.post(
        "/hooks/mailgun/inbound", data=inbound_form(**{"message-headers": "[[1"}))
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == "message-headers"
    assert await hook_counts(hook_service) == before


# Values on which Python 3.11's header parser raises (AttributeError on an
# unterminated domain-literal, IndexError on `<`, TypeError on a folded ` .,`).
@pytest.mark.parametrize(("name", "value"), [
    ("To", "dana@localhost, bob@[example.net"),
    ("Cc", "<"),
    ("From", "eve@example.net, <"),
])
async def test_inbound_mime_with_a_header_the_parser_raises_on_is_delivered(hook_service,
                                                                          name, value):
    # Answered 200, Mailgun sends it no more: reading it must not fail.
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    fields = {"From": "eve@example.net", "To": "dana@localhost", "Subject": "still mail",
              name: value}
    mime = "".join(f"{n}: {v}\r\n" for n, v in fields.items()).encode() + b"\r\nhello\r\n"
    resp = await hook_service.client.post("/hooks/mailgun/inbound",
                                          data=inbound_form(mime=mime))
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    [mail] = await inbox(hook_service, "dana")
    assert mail["subject"] == "still mail" and mail["text"] == "hello\n"
    assert mail["to"] == ["dana@localhost"]  # the broken address alone is not shown


@pytest.mark.parametrize(("name", "value"), [
    ("To", "dana@localhost, bob@[example.net"),
    ("Cc", ".:"),
    ("Reply-To", "eve@[example.net"),
    ("Message-Id", "<b@[ab"),
])
async def test_a_parsed_forward_with_a_header_the_parser_raises_on_is_delivered(hook_service,
                                                                              name, value):
    # The form is rebuilt as MIME before the answer: a 500 here had Mailgun
    # retry the same request for hours, then drop the mail.
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    headers = [["From", "Eve <eve@example.net>"], ["To", "dana@localhost"],
               ["Subject", "still mail"], ["Date", "Tue, 04 Jun 2024 10:00:00 +0000"]]
    headers = [h for h in headers if h[0] != name] + [[name, value]]
    resp = await hook_service.client.post("/hooks/mailgun/inbound", data=inbound_form(**{
        "message-headers": json.dumps(headers), "subject": "still mail"}))
    assert resp.status == 200, (resp.status, await resp.text())
    await hooks_idle(hook_service)
    [mail] = await inbox(hook_service, "dana")
    assert mail["subject"] == "still mail" and mail["to"] == ["dana@localhost"]


async def test_inbound_oversize_is_refused(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    form = inbound_form()
    form.add_field("attachment-2", b"\0" * (30 * 1024 * 1024), filename="big.bin",
                   content_type="application/octet-stream")
    before = await hook_counts(hook_service)
    resp = await hook_service.client.post("/hooks/mailgun/inbound", data=form)
    assert resp.status == 413
    assert await hook_counts(hook_service) == before


def parsed_form(message_id: str, subject: str, text: str,
                recipient: str = "dana@localhost") -> dict[str, str]:
    """A route's forward() of the parsed message (urlencoded: no attachment),
    signed with a fresh token."""
    return {"recipient": recipient, "sender": "eve@example.net",
            "from": "Eve <eve@example.net>", "subject": subject,
            "message-headers": json.dumps([
                ["From", "Eve <eve@example.net>"], ["To", recipient], ["Subject", subject],
                ["Message-Id", message_id], ["Date", "Tue, 04 Jun 2024 10:00:00 +0000"]]),
            "body-plain": text, **signature()}


def as_multipart(fields: dict[str, str]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("attachment-1", b"%PDF-1.4", filename="a.pdf", content_type="application/pdf")
    return form


@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
async def test_two_different_mails_with_one_message_id_both_arrive(hook_service, multipart):
    # The sender writes the Message-ID: a second, different mail carrying the
    # same one (each forward signed with its own fresh token) is no retry. A
    # hostile sender who learns a Message-ID beforehand (a list post, a reply
    # chain) must not make the real message vanish behind his own copy.
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    for subject, text in (("forged copy", "pay to account 666"),
                          ("the real one", "pay to account 123")):
        fields = parsed_form("<shared@example.net>", subject, text)
        resp = await hook_service.client.post(
            "/hooks/mailgun/inbound", data=as_multipart(fields) if multipart else fields)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["status"] == "accepted"
    await hooks_idle(hook_service)
    subjects = sorted(m["subject"] for m in await inbox(hook_service, "dana"))
    assert subjects == ["forged copy", "the real one"]


async def test_two_mime_forwards_with_one_message_id_both_arrive(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    for subject in ("forged copy", "the real one"):
        mime = (f"From: eve@example.net\r\nTo: dana@localhost\r\nSubject: {subject}\r\n"
                "Message-ID: <shared@example.net>\r\n\r\nhello\r\n").encode()
        headers = json.dumps([["Message-Id", "<shared@example.net>"], ["Subject", subject]])
        resp = await hook_service.client.post("/hooks/mailgun/inbound", data=inbound_form(
            mime=mime, **{"message-headers": headers}))
        assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    assert sorted(m["subject"] for m in await inbox(hook_service, "dana")) == [
        "forged copy", "the real one"]


async def test_the_same_forward_posted_again_is_one_mail(hook_service):
    # A true retry — Mailgun's first signature again, or (its documentation
    # does not say which) a new one over the same form — is a duplicate.
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    fields = parsed_form("<retried@example.net>", "once", "only once")
    first = await hook_service.client.post("/hooks/mailgun/inbound", data=fields)
    assert (await first.json())["status"] == "accepted"
    for again in (fields, {**fields, **signature()}):
        resp = await hook_service.client.post("/hooks/mailgun/inbound", data=again)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["status"] == "duplicate"
    await hooks_idle(hook_service)
    assert [m["subject"] for m in await inbox(hook_service, "dana")] == ["once"]


# -- a received message is kept byte for byte ------------------------------------

CRLF = b"\r\n"
# Legacy mailers still send 8-bit ISO-8859-1 bodies (RFC 6152 8BITMIME).
LATIN1_MIME = (b"From: eve@example.net\r\nTo: dana@localhost\r\nSubject: caf\xe9\r\n"
               b"Message-ID: <latin1@example.net>\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: text/plain; charset=iso-8859-1\r\n"
               b"Content-Transfer-Encoding: 8bit\r\n\r\nUn caf\xe9, s'il vous pla\xeet.\r\n")
# Every 8-bit byte, and UTF-8 with the characters a form encoding treats specially.
EVERY_BYTE_MIME = LATIN1_MIME.replace(b"<latin1@", b"<every-byte@") + bytes(range(0x80, 0x100)) \
    + CRLF
UTF8_MIME = ("From: eve@example.net\r\nTo: dana@localhost\r\nSubject: x\r\n"
             "Message-ID: <utf8@example.net>\r\nMIME-Version: 1.0\r\n"
             "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
             "\r\n1+1=2 & 50% off; a=b? café\r\n").encode()


def mime_form(mime: bytes, part_type: str | None = None) -> dict:
    """A route's forward() to a URL ending in "mime" as multipart/form-data,
    written byte for byte: body-mime is a plain field (no filename) holding
    the message, with `part_type` as its Content-Type if given. post() kwargs."""
    boundary = "mime-" + secrets.token_hex(8)
    fields = [(k, v.encode(), None) for k, v in {
        "recipient": "dana@localhost", "sender": "eve@example.net", **signature()}.items()]
    fields.append(("body-mime", mime, part_type))
    body = b"".join(
        b"--" + boundary.encode() + CRLF
        + f'Content-Disposition: form-data; name="{name}"'.encode() + CRLF
        + (f"Content-Type: {ctype}".encode() + CRLF if ctype else b"") + CRLF
        + value + CRLF for name, value, ctype in fields) + b"--" + boundary.encode() + b"--" + CRLF
    return {"data": body,
            "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"}}


def urlencoded_mime_form(mime: bytes) -> dict:
    """The same as application/x-www-form-urlencoded (what Mailgun sends when
    the mail has no attachment), every byte percent-encoded. post() kwargs."""
    from urllib.parse import urlencode

    fields = {"recipient": "dana@localhost", "sender": "eve@example.net", **signature(),
              "body-mime": mime}
    return {"data": urlencode(fields).encode(),
            "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


async def stored_raw(service, mail: dict) -> bytes:
    doc = await service.runtime.store.get_one(Kind.MESSAGE, {"id": mail["id"]})
    data = await service.runtime.mailbox.mime(doc)
    assert data is not None
    return data


async def delivered_raw(service, form: dict) -> tuple[dict, bytes]:
    resp = await service.client.post("/hooks/mailgun/inbound", **form)
    assert resp.status == 200, await resp.text()
    await hooks_idle(service)
    [mail] = await inbox(service, "dana")
    return mail, await stored_raw(service, mail)


@pytest.mark.parametrize("part_type", [
    None, "text/plain; charset=utf-8", "text/plain; charset=iso-8859-1",
    "application/octet-stream", "message/rfc822",
])
async def test_body_mime_with_8bit_latin1_is_kept_byte_for_byte(hook_service, part_type):
    # Each form field was decoded with its part's charset (UTF-8 by default)
    # and errors="replace": every such byte became U+FFFD (EF BF BD), or under
    # a declared ISO-8859-1 was re-encoded as UTF-8 — the message altered.
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    mail, raw = await delivered_raw(hook_service, mime_form(LATIN1_MIME, part_type))
    assert mail["text"].startswith("Un café, s'il vous plaît.")
    assert raw == LATIN1_MIME


@pytest.mark.parametrize("mime", [LATIN1_MIME, EVERY_BYTE_MIME, UTF8_MIME],
                         ids=["latin1", "every-byte", "utf8"])
async def test_body_mime_in_an_urlencoded_form_is_kept_byte_for_byte(hook_service, mime):
    # aiohttp's post() percent-decodes urlencoded values as UTF-8 with
    # errors="replace": the same loss, for mail without attachments.
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    _, raw = await delivered_raw(hook_service, urlencoded_mime_form(mime))
    assert raw == mime


async def test_body_mime_with_every_8bit_byte_is_kept_in_a_multipart_form(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    _, raw = await delivered_raw(hook_service, mime_form(EVERY_BYTE_MIME))
    assert raw == EVERY_BYTE_MIME


@pytest.mark.parametrize("urlencoded", [False, True], ids=["multipart", "urlencoded"])
async def test_a_form_declaring_an_unknown_charset_is_a_400(hook_service, urlencoded):
    # Decoding with it raised LookupError, which escaped as a bare 500.
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    if urlencoded:
        form = urlencoded_mime_form(LATIN1_MIME)
        form["headers"]["Content-Type"] += "; charset=x-no-such-charset"
    else:
        form = mime_form(LATIN1_MIME)
        form["data"] = form["data"].replace(
            b'name="recipient"\r\n', b'name="recipient"\r\n'
            b"Content-Type: text/plain; charset=x-no-such-charset\r\n", 1)
    before = await hook_counts(hook_service)
    resp = await hook_service.client.post("/hooks/mailgun/inbound", **form)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "bad_form"
    assert await hook_counts(hook_service) == before


# -- record first, process after --------------------------------------------------


async def test_notices_left_pending_by_a_dead_process_are_applied_by_the_next(
        hook_service):
    from bitmail import notices
    from bitmail.notices import Notice
    from bitmail.store import Batch

    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mailgun", bare(message), message["id"])
    store = hook_service.runtime.store
    # What a process that died while applying it leaves behind: a notice
    # whose lease has run out.
    batch = Batch()
    notices.record(batch, "mailgun:dead", provider="mailgun", source="mailgun", payload={},
                   items=[Notice(EventType.DELIVERED, "bob@example.com",
                                 provider_message_id=bare(message))],
                   now=time.time() - 120)
    await store.commit(batch)
    await store.update("notice", "mailgun:dead", {"lease_owner": "a-dead-process",
                                                  "due": time.time() - 1})

    async def applied() -> bool:
        doc = await store.get_one("notice", {"id": "mailgun:dead"})
        return doc["state"] == "done"

    await wait_for(applied)  # the running processor's poll finds it
    bob = await recipient_status(hook_service, message, "bob@example.com")
    assert bob["status"] == "delivered"


async def test_a_notice_is_claimed_with_the_stores_lease_once(hook_service):
    from bitmail import notices
    from bitmail.store import Batch

    store = hook_service.runtime.store
    await hook_service.runtime.notices.stop()  # nobody else claims meanwhile
    batch = Batch()
    notices.record(batch, "k", provider="mailgun", source="mailgun", payload={}, items=[])
    await store.commit(batch)
    now = time.time()
    [first] = await store.claim("notice", now=now, owner="a", lease=60, limit=10)
    assert first["id"] == "k"
    assert await store.claim("notice", now=now, owner="b", lease=60, limit=10) == []
    [again] = await store.claim("notice", now=now + 61, owner="b", lease=60, limit=10)
    assert again["id"] == "k" and again["lease_owner"] == "b"


# -- issue 10: rejections, the legacy form, freshness, spent tokens ---------------------


async def notice_results(service) -> list[str]:
    await hooks_idle(service)
    return [d.get("result", "") for d in await service.runtime.store.get("notice")]


async def test_a_rejection_without_recipient_is_placed_from_the_to_header(hook_service):
    message = await sent_message(hook_service)  # bob@example.com; carol@example.org
    await track(hook_service, "mailgun", bare(message), message["id"])
    data = event("rejected", "", bare(message),
                 reject={"reason": "Sandbox subdomains are for test purposes only",
                         "description": "not authorized"})
    del data["recipient"]
    data["message"]["headers"]["to"] = "Bob <bob@example.com>"
    resp = await post(hook_service, {"signature": signature(), "event-data": data})
    assert resp.status == 200
    await hooks_idle(hook_service)
    bob = await recipient_status(hook_service, message, "bob@example.com")
    carol = await recipient_status(hook_service, message, "carol@example.org")
    assert bob["status"] == "failed"
    assert "Sandbox subdomains are for test purposes only" in bob["detail"]
    assert "not authorized" in bob["detail"]
    assert carol["status"] == "sent"


@pytest.mark.parametrize("to", ["", "Mallory <mallory@example.net>"])
async def test_a_rejection_naming_nobody_of_the_message_changes_nothing(hook_service, to):
    message = await sent_message(hook_service)
    await track(hook_service, "mailgun", bare(message), message["id"])
    before = await hook_service.runtime.store.get_one("message", {"id": message["id"]})
    data = event("rejected", "", bare(message), reject={"reason": "spam"})
    del data["recipient"]
    data["message"]["headers"]["to"] = to
    resp = await post(hook_service, {"signature": signature(), "event-data": data})
    assert resp.status == 200
    [result] = await notice_results(hook_service)
    after = await hook_service.runtime.store.get_one("message", {"id": message["id"]})
    assert after["recipients"] == before["recipients"]
    assert after["events"] == before["events"]
    assert ("names no recipient" in result) if not to else ("not a recipient" in result)


def legacy_fields(name: str, recipient: str, message_id: str, key: str = MAILGUN_KEY,
                  **extra: str) -> dict[str, str]:
    """A legacy (form-encoded) webhook as Mailgun posts it."""
    return {"event": name, "recipient": recipient, "domain": "mg.example.com",
            "Message-Id": f"<{message_id}>",
            "message-headers": json.dumps([["Message-Id", f"<{message_id}>"],
                                           ["To", recipient]]),
            **extra, **signature(key)}


@pytest.mark.parametrize(("name", "extra", "event_type", "status"), [
    ("delivered", {}, "delivered", "delivered"),
    ("dropped", {"reason": "hardfail", "code": "605",
                 "description": "Not delivering to previously bounced address"},
     "rejected", "failed"),
    ("dropped", {"reason": "bounce", "code": "550", "description": "5.1.1 no such user"},
     "rejected", "failed"),
    ("bounced", {"code": "550", "error": "5.1.1 The email account does not exist",
                 "notification": "550 5.1.1 no such user"}, "bounced", "bounced"),
    ("complained", {}, "complained", "complained"),
    ("unsubscribed", {}, "unsubscribed", "sent"),
    ("opened", {"ip": "192.0.2.1"}, "opened", "sent"),
    ("clicked", {"url": "https://example.com/x"}, "clicked", "sent"),
])
@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
async def test_legacy_form_webhooks_become_the_same_events(hook_service, name, extra,
                                                           event_type, status, multipart):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mailgun", bare(message), message["id"])
    fields = legacy_fields(name, "bob@example.com", bare(message), **extra)
    if multipart:
        form = aiohttp.FormData()
        for k, v in fields.items():
            form.add_field(k, v)
        if name == "bounced":  # Mailgun attaches the bounced message
            form.add_field("attachment-1", b"From: a@b\r\n\r\nhi", filename="message.eml",
                           content_type="message/rfc822")
        resp = await hook_service.client.post("/hooks/mailgun", data=form)
    else:
        resp = await hook_service.client.post("/hooks/mailgun", data=fields)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"status": "accepted", "events": 1}
    await hooks_idle(hook_service)
    doc = await (await hook_service.client.get(f"/api/messages/{message['id']}",
                                               headers=message["headers"])).json()
    assert doc["recipients"][0]["status"] == status
    last = doc["events"][-1]
    assert (last["type"], last["recipient"], last["provider"]) == (
        event_type, "bob@example.com", "mailgun")
    suppressed = await hook_service.runtime.store.get_one("suppression",
                                                          {"id": "bob@example.com"})
    assert (suppressed is not None) == (name in ("bounced", "complained"))
    if name == "dropped":
        assert extra["code"] in last["detail"] and extra["description"] in last["detail"]


async def test_a_legacy_form_with_a_forged_signature_changes_nothing(hook_service):
    before = await hook_counts(hook_service)
    fields = legacy_fields("delivered", "bob@example.com", "x@y", key="forged")
    resp = await hook_service.client.post("/hooks/mailgun", data=fields)
    assert resp.status == 403
    assert (await resp.json())["error"]["field"] == "signature"
    assert await hook_counts(hook_service) == before


@pytest.mark.parametrize("age", [301, 2 * 3600, 8 * 3600])
async def test_a_retry_hours_later_inside_mailguns_retry_schedule_is_accepted(
        hook_service, age):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mailgun", bare(message), message["id"])
    payload = {"signature": signature(timestamp=time.time() - age),
               "event-data": event("delivered", "bob@example.com", bare(message))}
    resp = await post(hook_service, payload)
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    assert (await recipient_status(hook_service, message, "bob@example.com"))["status"] == \
        "delivered"
    # A replay of it, inside the window, is refused by its token.
    replay = {"signature": payload["signature"],
              "event-data": event("complained", "bob@example.com", bare(message))}
    resp = await post(hook_service, replay)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "replayed"


def test_the_freshness_window_covers_mailguns_retry_schedule():
    from bitmail.web.hooks.mailgun import RETRY_WINDOW, TOKEN_TTL

    # 5 + 10 + 15 minutes, then 1 + 2 + 4 hours: 7.5 hours of retries, "during 8 hours".
    schedule = (5 + 10 + 15) * 60 + (1 + 2 + 4) * 3600
    assert FRESHNESS >= RETRY_WINDOW >= 8 * 3600 > schedule
    assert TOKEN_TTL >= FRESHNESS


def signed(timestamp: str, token: str, key: str = MAILGUN_KEY) -> dict[str, str]:
    """A `signature` object whose HMAC matches whatever timestamp and token it is given."""
    sig = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": sig}


NOW = str(int(time.time()))


# Mailgun's timestamp is "int, number of seconds passed since January 1, 1970"
# ("Securing Webhooks"): ASCII digits. Each of these float() reads as a time
# (or as no finite one), and each is signed here with the right key.
@pytest.mark.parametrize("value", [
    "nan", "inf", "-inf", "NaN", "1e999", "1" * 400,
    NOW + "e0", NOW + "E0", NOW + "e00", NOW + ".0", NOW + ".", f" {NOW}", f"{NOW} ",
    f"{NOW}\n", f"+{NOW}", f"{NOW[:4]}_{NOW[4:]}", NOW.translate({ord(d): ord(d) + 0xFEE0
                                                                 for d in "0123456789"}),
    "",
])
async def test_a_signed_timestamp_that_is_not_ascii_digits_is_refused(hook_service, value):
    payload = {"signature": signed(value, secrets.token_hex(25)),
               "event-data": event("delivered", "bob@example.com", "x@y")}
    error = await refused(hook_service, payload, 403, "bad_signature")
    assert error["field"] == "signature.timestamp"


# Mailgun's token is "randomly generated string with length of 50", hex digits.
@pytest.mark.parametrize("token", [
    secrets.token_hex(24), secrets.token_hex(24) + "a", secrets.token_hex(26),
    secrets.token_urlsafe(38)[:50].replace("a", "-"), "g" * 50, secrets.token_hex(25) + "\n",
    "",
])
async def test_a_signed_token_that_is_not_50_hex_digits_is_refused(hook_service, token):
    payload = {"signature": signed(str(int(time.time())), token),
               "event-data": event("delivered", "bob@example.com", "x@y")}
    error = await refused(hook_service, payload, 403, "bad_signature")
    assert error["field"] == "signature.token"


def splits(spent: dict[str, str], first: int) -> list[dict[str, str]]:
    """The same signed string (so the same signature) cut elsewhere: the first
    k characters of the token moved onto the timestamp, k = `first` (the cut
    float() reads as the same time) and then 1 to 4."""
    return [{"timestamp": spent["timestamp"] + spent["token"][:k],
             "token": spent["token"][k:], "signature": spent["signature"]}
            for k in dict.fromkeys((first, 1, 2, 3, 4))]


@pytest.mark.parametrize("prefix", ["e0", "e00", "E0", "e000"])
async def test_a_spent_signature_cannot_be_reused_by_moving_the_token_split(hook_service,
                                                                            prefix):
    # Mailgun signs timestamp + token as one string, and the body not at all.
    # One captured, already spent request whose token begins with "e0" (1 in
    # 256 random tokens) signs the very same string as timestamp "<ts>e0" —
    # float() reads it as the same time — with the token shortened by two.
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mailgun", bare(message), message["id"])
    spent = signature(token=prefix + secrets.token_hex(25)[len(prefix):])
    first = await post(hook_service, {"signature": spent,
                                      "event-data": event("delivered", "bob@example.com",
                                                          bare(message))})
    assert first.status == 200, await first.text()
    await hooks_idle(hook_service)
    for spliced in splits(spent, len(prefix)):
        forged = {"signature": spliced,
                  "event-data": event("complained", "bob@example.com", bare(message))}
        await refused(hook_service, forged, 403, "bad_signature")
    assert await hook_service.runtime.store.get_one(
        "suppression", {"id": "bob@example.com"}) is None
    assert (await recipient_status(hook_service, message, "bob@example.com"))["status"] == \
        "delivered"


async def test_a_spent_legacy_form_signature_cannot_be_reused_by_moving_the_split(
        hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mailgun", bare(message), message["id"])
    spent = signature(token="e0" + secrets.token_hex(24))
    fields = {**legacy_fields("delivered", "bob@example.com", bare(message)), **spent}
    assert (await hook_service.client.post("/hooks/mailgun", data=fields)).status == 200
    await hooks_idle(hook_service)
    before = await hook_counts(hook_service)
    for spliced in splits(spent, 2):
        forged = {**legacy_fields("complained", "bob@example.com", bare(message)), **spliced}
        resp = await hook_service.client.post("/hooks/mailgun", data=forged)
        assert resp.status == 403, await resp.text()
    assert await hook_counts(hook_service) == before


async def test_a_spent_inbound_signature_cannot_carry_another_mail_by_moving_the_split(
        hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    spent = signature(token="e0" + secrets.token_hex(24))
    assert (await hook_service.client.post("/hooks/mailgun/inbound",
                                           data=inbound_form(**spent))).status == 200
    await hooks_idle(hook_service)
    for spliced in splits(spent, 2):
        resp = await hook_service.client.post(
            "/hooks/mailgun/inbound", data=inbound_form(**spliced))
        assert resp.status == 403, await resp.text()
    await hooks_idle(hook_service)
    assert len(await inbox(hook_service, "dana")) == 1


async def test_tokens_are_kept_as_long_as_the_window(hook_service):
    from bitmail.web.hooks.mailgun import TOKEN_TTL, forget_tokens

    store = hook_service.runtime.store
    now = time.time()
    await store.put(Kind.WEBHOOK_TOKEN, {"at": now - FRESHNESS}, id="mailgun:young")
    await store.put(Kind.WEBHOOK_TOKEN, {"at": now - TOKEN_TTL - 1}, id="mailgun:old")
    assert await forget_tokens(store, now=now) == 1
    assert [d["id"] for d in await store.get(Kind.WEBHOOK_TOKEN)] == ["mailgun:young"]


async def test_a_token_refused_after_verification_is_spent(hook_service):
    first = body("delivered", "bob@example.com", "x@y")
    first["event-data"]["recipient"] = ["not", "a", "string"]
    assert (await post(hook_service, first)).status == 400
    tokens = await hook_service.runtime.store.get(Kind.WEBHOOK_TOKEN)
    spent = first["signature"]["timestamp"] + first["signature"]["token"]
    assert [t["id"] for t in tokens] == [f"mailgun:{spent}"]
    again = {"signature": first["signature"],
             "event-data": event("complained", "bob@example.com", "x@y")}
    error = await refused(hook_service, again, 403, "replayed")
    assert error["field"] == "token"


async def test_a_token_refused_with_406_is_spent(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pw-1")
    sig = signature()
    refused_form = inbound_form("nobody@localhost", **sig)
    assert (await hook_service.client.post("/hooks/mailgun/inbound",
                                           data=refused_form)).status == 406
    resp = await hook_service.client.post("/hooks/mailgun/inbound",
                                          data=inbound_form("dana@localhost", **sig))
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "replayed"
    assert await inbox(hook_service, "dana") == []


async def test_a_forged_request_spends_no_token(hook_service):
    forged = body("delivered", "bob@example.com", "x@y", key="forged")
    assert (await post(hook_service, forged)).status == 403
    assert await hook_service.runtime.store.count(Kind.WEBHOOK_TOKEN) == 0


# -- issue 10: store() notifications, spam verdicts, content-id-map ---------------------


@pytest.fixture
async def stored_service(make_settings, monkeypatch):
    """The hook service whose "mailgun" provider is a FakeMailgun's account."""
    from bitmail.mta import PROVIDER_TYPES
    from bitmail.testing import FakeMailgun

    from conftest import HOOK_CONFIG, start_service

    for ptype, cls in (("mailgun", "StubMailgun"), ("ses", "StubSes"),
                       ("mandrill", "StubMandrill")):
        monkeypatch.setitem(PROVIDER_TYPES, ptype, f"support.webhooks:{cls}")
    async with FakeMailgun(api_key="key-stored", domain="mg.example.com") as fake:
        config = HOOK_CONFIG.replace(
            'name = "mailgun"\ntype = "mailgun"\napi_key = "unused"',
            f'name = "mailgun"\ntype = "mailgun"\napi_key = "key-stored"\n'
            f'base_url = "{fake.url}"', 1)
        assert "key-stored" in config
        async with start_service(make_settings(config)) as svc:
            await svc.runtime.accounts.create("dana", "secret-pass")
            yield svc, fake


def stored_mime() -> bytes:
    from email.message import EmailMessage

    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "eve@example.net", "dana@localhost", "Stored"
    mail["Message-ID"] = f"<{secrets.token_hex(8)}@example.net>"
    mail["X-Mailgun-Sflag"], mail["X-Mailgun-Sscore"] = "Yes", "12.5"
    mail.set_content("kept at Mailgun")
    mail.add_attachment(b"%PDF stored", maintype="application", subtype="pdf",
                        filename="stored.pdf")
    return mail.as_bytes()


async def test_a_store_notification_is_fetched_with_the_api_key_and_delivered(
        stored_service):
    svc, fake = stored_service
    fields = fake.store_notification(stored_mime(), "dana@localhost")
    resp = await MailgunSigner(MAILGUN_KEY).post_form(svc.client, "/hooks/mailgun/inbound",
                                                     fields)
    assert resp.status == 200, await resp.text()
    await hooks_idle(svc)
    [mail] = await inbox(svc, "dana")
    assert mail["subject"] == "Stored" and mail["text"].strip() == "kept at Mailgun"
    assert [a["filename"] for a in mail["attachments"]] == ["stored.pdf"]
    assert mail["received_via"] == "mailgun"
    assert mail["verdicts"] == {"spam": "FAIL", "spam_score": "12.5"}


async def test_two_stored_mails_with_one_message_id_both_arrive(stored_service):
    svc, fake = stored_service
    signer = MailgunSigner(MAILGUN_KEY)
    for subject in ("forged copy", "the real one"):
        mime = (f"From: eve@example.net\r\nTo: dana@localhost\r\nSubject: {subject}\r\n"
                "Message-ID: <shared@example.net>\r\n\r\nhello\r\n").encode()
        resp = await signer.post_form(svc.client, "/hooks/mailgun/inbound",
                                      fake.store_notification(mime, "dana@localhost"))
        assert resp.status == 200, await resp.text()
    await hooks_idle(svc)
    assert sorted(m["subject"] for m in await inbox(svc, "dana")) == [
        "forged copy", "the real one"]


async def test_a_store_notification_never_delivers_an_empty_message(stored_service):
    svc, fake = stored_service
    fields = fake.store_notification(stored_mime(), "dana@localhost")
    fields["message-url"] = fields["message-url"].rsplit("/", 1)[0] + "/gone"
    before = await hook_counts(svc)
    resp = await MailgunSigner(MAILGUN_KEY).post_form(svc.client, "/hooks/mailgun/inbound",
                                                     fields)
    assert resp.status == 406
    error = (await resp.json())["error"]
    assert error["code"] == "store_unsupported" and "forward()" in error["message"]
    assert await hook_counts(svc) == before and await inbox(svc, "dana") == []


async def test_a_store_notification_is_503_while_mailgun_fails(stored_service):
    svc, fake = stored_service
    fake.fail_next(1, 503)
    fields = fake.store_notification(stored_mime(), "dana@localhost")
    resp = await MailgunSigner(MAILGUN_KEY).post_form(svc.client, "/hooks/mailgun/inbound",
                                                     fields)
    assert resp.status == 503
    assert await inbox(svc, "dana") == []


async def test_a_store_notification_for_a_url_elsewhere_gets_no_api_key(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    fields = {"recipient": "dana@localhost", "subject": "x", "body-plain": "x",
              "message-url": "https://attacker.example/v3/domains/x/messages/k"}
    resp = await MailgunSigner(MAILGUN_KEY).post_form(hook_service.client,
                                                     "/hooks/mailgun/inbound", fields)
    assert resp.status == 406
    assert (await resp.json())["error"]["code"] == "store_unsupported"
    assert await inbox(hook_service, "dana") == []


async def test_mailguns_spam_flag_headers_are_kept_on_the_inbox_copy(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    form = inbound_form(**{"X-Mailgun-Sflag": "Yes", "X-Mailgun-Sscore": "9.1",
                           "message-headers": json.dumps([
                               ["From", "Eve <eve@example.net>"], ["To", "dana@localhost"],
                               ["Subject", "Quarterly numbers"],
                               ["Message-Id", "<spam-1@example.net>"],
                               ["X-Mailgun-Sflag", "Yes"], ["X-Mailgun-Sscore", "9.1"],
                               ["X-Mailgun-Spf", "Pass"]])})
    resp = await hook_service.client.post("/hooks/mailgun/inbound", data=form)
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    [mail] = await inbox(hook_service, "dana")
    assert mail["verdicts"] == {"spam": "FAIL", "spam_score": "9.1", "spf": "PASS"}


async def test_content_id_map_parts_are_inline_and_the_html_view_shows_them(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    form = aiohttp.FormData()
    fields = {"recipient": "dana@localhost", "from": "Eve <eve@example.net>",
              "subject": "Logo", "body-plain": "see the logo",
              "body-html": '<p><img src="cid:logo123@example.net"></p>',
              "message-headers": json.dumps([["From", "Eve <eve@example.net>"],
                                             ["To", "dana@localhost"], ["Subject", "Logo"],
                                             ["Message-Id", "<cid-1@example.net>"]]),
              "content-id-map": json.dumps({"<logo123@example.net>": "attachment-1"}),
              "attachment-count": "2", **signature()}
    for k, v in fields.items():
        form.add_field(k, v)
    form.add_field("attachment-1", b"\x89PNG logo", filename="logo.png",
                   content_type="image/png")
    form.add_field("attachment-2", b"%PDF doc", filename="doc.pdf",
                   content_type="application/pdf")
    resp = await hook_service.client.post("/hooks/mailgun/inbound", data=form)
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    [mail] = await inbox(hook_service, "dana")
    parts = {a["filename"]: a for a in mail["attachments"]}
    assert parts["logo.png"]["inline"] and parts["logo.png"]["content_id"] == \
        "logo123@example.net"
    assert not parts["doc.pdf"]["inline"]
    html = await (await hook_service.client.get(mail["html_url"],
                                                headers=mail["headers"])).text()
    # Rendered by BitMail itself (the view's own document embeds the part), never
    # fetched from anywhere else.
    assert "cid:" not in html
    assert "data:image/png;base64," + base64.b64encode(b"\x89PNG logo").decode() in html


@pytest.mark.parametrize("where", ["signature", "id", "recipient"])
async def test_an_event_with_a_lone_surrogate_is_a_400_not_a_500(hook_service, where):
    signature = MailgunSigner(MAILGUN_KEY).signature()
    data = {"event": "delivered", "id": secrets.token_urlsafe(16),
            "recipient": "bob@example.com", "message": {"headers": {"message-id": "m@x"}}}
    if where == "signature":
        signature["signature"] = "\ud800" * 64
    else:
        data[where] = "\ud800" + data[where]
    resp = await hook_service.client.post(
        "/hooks/mailgun", data=json.dumps({"signature": signature, "event-data": data}),
        headers={"Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "bad_json"
    assert await hook_service.runtime.store.count("notice") == 0
