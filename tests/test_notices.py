"""bitmail.notices: what recorded webhook notices do — matching events to the
messages BitMail sent, and received mail's attachment names."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from email.message import EmailMessage

import aiosmtplib
import pytest
from test_hooks_mailgun import body, post, signature

from bitmail import notices
from bitmail.events import EventType
from bitmail.message.filenames import base_name, safe_filename
from bitmail.notices import Inbound, Notice, Skip
from bitmail.notices.model import item_from_json, to_json
from bitmail.smtpd import start_smtp
from bitmail.store import Batch

from conftest import (
    free_port,
    hooks_idle,
    inbox,
    recipient_status,
    sent_message,
    sent_through,
    track,
)

# -- attachment names (item 13) -----------------------------------------------------


@pytest.mark.parametrize(("given", "kept"), [
    ("\\share\\mail\\forwarded.msg", "forwarded.msg"),
    ("C:\\Users\\eve\\Desktop\\report.pdf", "report.pdf"),
    ("/home/eve/report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("report.pdf", "report.pdf"),
    ("  spaced name.txt  ", "spaced name.txt"),
    ("bell\x07.txt", "bell.txt"),
    (".htaccess", ".htaccess"),
    ("", ""),
    (None, ""),
    (".", ""),
    ("..", ""),
    ("...", ""),
    (". .", ""),
    ("dir/..", ""),
    ("C:\\", ""),
])
def test_base_name(given, kept):
    assert base_name(given) == kept


@pytest.mark.parametrize(("given", "content_type", "index", "kept"), [
    ("", "application/pdf", 0, "attachment-1.pdf"),
    ("..", "text/plain", 2, "attachment-3.txt"),
    (None, "application/x-unheard-of", 1, "attachment-2.bin"),
    ("\\share\\mail\\forwarded.msg", "application/vnd.ms-outlook", 0, "forwarded.msg"),
])
def test_safe_filename_generates_names_for_empty_and_dot_only_ones(given, content_type, index,
                                                                   kept):
    assert safe_filename(given, content_type, index) == kept


def test_a_long_name_keeps_its_extension():
    name = base_name("x" * 300 + ".pdf")
    assert len(name) == 255 and name.endswith(".pdf")


def multipart(fields: dict[str, str], files: list[tuple[str, str, str, bytes]]) -> tuple[
        bytes, str]:
    """A multipart/form-data body written as Mailgun writes it: a filename is
    quoted as it is, backslashes and all."""
    boundary = secrets.token_hex(12)
    out = bytearray()
    for name, value in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode()
    for name, filename, ctype, data in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: {ctype}\r\n\r\n").encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


async def test_mailgun_inbound_keeps_base_names_and_generates_the_missing(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pw-1")
    fields = {"recipient": "dana@localhost", "sender": "eve@example.net",
              "from": "Eve <eve@example.net>", "subject": "paths",
              "message-headers": json.dumps([["To", "dana@localhost"],
                                             ["Message-Id", "<paths@example.net>"]]),
              "body-plain": "see attached", "attachment-count": "4", **signature()}
    data, ctype = multipart(fields, [
        ("attachment-1", "\\share\\mail\\forwarded.msg", "application/vnd.ms-outlook", b"m"),
        ("attachment-2", "", "application/pdf", b"%PDF"),
        ("attachment-3", "..", "text/plain", b"dots"),
        ("attachment-4", "/tmp/x/notes.txt", "text/plain", b"n"),
    ])
    resp = await hook_service.client.post("/hooks/mailgun/inbound", data=data,
                                          headers={"Content-Type": ctype})
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    [mail] = await inbox(hook_service, "dana")
    assert [a["filename"] for a in mail["attachments"]] == [
        "forwarded.msg", "attachment-2.pdf", "attachment-3.txt", "notes.txt"]


async def test_mime_inbound_keeps_base_names(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pw-1")
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "eve@example.net", "dana@localhost", "MIME"
    mail.set_content("body")
    mail.add_attachment(b"m", maintype="application", subtype="octet-stream",
                        filename="\\share\\mail\\forwarded.msg")
    mail.add_attachment(b"d", maintype="text", subtype="plain", filename="...")
    fields = {"recipient": "dana@localhost", "body-mime": mail.as_string(), **signature()}
    resp = await hook_service.client.post("/hooks/mailgun/inbound", data=fields)
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    [got] = await inbox(hook_service, "dana")
    assert [a["filename"] for a in got["attachments"]] == ["forwarded.msg", "attachment-2.txt"]


# -- matching (item 15) ----------------------------------------------------------------


@pytest.fixture
async def smtp_port(hook_service):
    port = free_port()
    server = await start_smtp(hook_service.runtime, "127.0.0.1", port)
    yield port
    server.close()
    await server.wait_closed()


async def submit(service, port: int, username: str, message_id: str) -> dict:
    key = await service.runtime.accounts.create_api_key(username)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = f"{username}@localhost", "bob@example.com", "reuse"
    msg["Message-ID"] = message_id
    msg.set_content("hello")
    await aiosmtplib.send(msg, hostname="127.0.0.1", port=port, username=username,
                          password=key)
    [doc] = await service.runtime.store.get("message", {"owner": username, "folder": "sent"})
    return doc


async def test_a_message_id_already_taken_is_replaced_at_smtp_submission(hook_service,
                                                                         smtp_port):
    first = await sent_message(hook_service, to="bob@example.com", sender="alice")
    await hook_service.runtime.accounts.create("mallory", "secret-pw-1")
    reused = await submit(hook_service, smtp_port, "mallory", first["message_id"])
    assert reused["message_id"] != first["message_id"]
    assert reused["message_id"].endswith("@localhost>")
    await hook_service.runtime.accounts.create("trent", "secret-pw-1")
    fresh = await submit(hook_service, smtp_port, "trent", "<own-and-new@example.com>")
    assert fresh["message_id"] == "<own-and-new@example.com>"


async def test_a_bounce_is_matched_by_the_provider_id_not_a_reused_message_id(hook_service):
    """Two Sent copies with one Message-ID (mail from before ids were replaced):
    the bounce goes to the one the provider's id was recorded for."""
    alice = await sent_message(hook_service, to="bob@example.com", sender="alice")
    mallory = await sent_message(hook_service, to="bob@example.com", sender="mallory")
    store = hook_service.runtime.store
    await store.update("message", mallory["id"], {"message_id": alice["message_id"]})
    await sent_through(hook_service, alice, "mailgun")
    await sent_through(hook_service, mallory, "mailgun")
    await track(hook_service, "mailgun", "mg-alice-1", alice["id"])
    data = body("failed", "bob@example.com", alice["message_id"].strip("<>"),
                severity="permanent")
    data["event-data"]["message"]["headers"]["message-id"] = "mg-alice-1"
    assert (await post(hook_service, data)).status == 200
    await hooks_idle(hook_service)
    assert (await recipient_status(hook_service, alice, "bob@example.com"))["status"] == \
        "bounced"
    assert (await recipient_status(hook_service, mallory, "bob@example.com"))["status"] == \
        "sent"


async def test_the_message_id_fallback_only_finds_mail_sent_through_that_provider(
        hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    await sent_through(hook_service, message, "ses")  # not through Mailgun
    data = body("failed", "bob@example.com", message["message_id"].strip("<>"),
                severity="permanent")
    assert (await post(hook_service, data)).status == 200
    await hooks_idle(hook_service)
    assert (await recipient_status(hook_service, message, "bob@example.com"))["status"] == \
        "sent"
    [notice] = await hook_service.runtime.store.get("notice")
    assert notice["result"] == "no such message"
    # Through another account of the same type, it is found.
    await sent_through(hook_service, message, "mailgun-eu")
    again = body("failed", "bob@example.com", message["message_id"].strip("<>"),
                 severity="permanent")
    assert (await post(hook_service, again)).status == 200
    await hooks_idle(hook_service)
    assert (await recipient_status(hook_service, message, "bob@example.com"))["status"] == \
        "bounced"


async def test_metadata_naming_a_message_sent_elsewhere_matches_nothing(hook_service):
    from test_hooks_mandrill import event as mandrill_event
    from test_hooks_mandrill import post as mandrill_post

    message = await sent_message(hook_service, to="bob@example.com")
    await sent_through(hook_service, message, "mailgun")
    resp = await mandrill_post(hook_service, [mandrill_event(
        "hard_bounce", _id="never-tracked", metadata={"bitmail_id": message["id"]})])
    assert resp.status == 200
    await hooks_idle(hook_service)
    assert (await recipient_status(hook_service, message, "bob@example.com"))["status"] == \
        "sent"


# -- the notice itself ---------------------------------------------------------------


@pytest.mark.parametrize("item", [
    Notice(EventType.BOUNCED, "bob@example.com", "550 5.1.1", 1700000000.5,
           provider_message_id="p1", message_doc_id="m1", message_id="<x@y>"),
    Notice(EventType.OPENED),
    Inbound(("dana@localhost",), mime=b"From: a@b\r\n\r\n\xff"),
    Inbound(("dana@localhost", "erin@localhost"), mime=b"Subject: s\r\n\r\nhi\r\n"),
    Skip("not tracked"),
])
def test_items_survive_their_json_form(item):
    assert item_from_json(json.loads(json.dumps(to_json(item)))) == item


async def test_a_notice_that_keeps_failing_is_retried_then_kept_as_failed(hook_service,
                                                                          monkeypatch):
    processor = hook_service.runtime.notices
    calls = []

    async def broken(key, provider, items):
        calls.append(key)
        raise RuntimeError("boom")

    monkeypatch.setattr(processor.effects, "apply", broken)
    store = hook_service.runtime.store
    batch = Batch()
    notices.record(batch, "mailgun:broken", provider="mailgun", source="mailgun",
                   payload={}, items=[Skip("x")])
    await store.commit(batch)
    await hooks_idle(hook_service)
    doc = await store.get_one("notice", {"id": "mailgun:broken"})
    assert doc["state"] == "pending" and doc["attempts"] == 1 and doc["due"] > time.time()
    for _ in range(notices.queue.MAX_ATTEMPTS - 1):
        await store.update("notice", "mailgun:broken", {"due": time.time() - 1})
        await hooks_idle(hook_service)
    doc = await store.get_one("notice", {"id": "mailgun:broken"})
    assert doc["state"] == "failed" and doc["due"] is None and "boom" in doc["result"]
    assert len(calls) == notices.queue.MAX_ATTEMPTS


# -- two copies of one event at once ------------------------------------------------


class CommitGate:
    """Holds the first two store commits that record a notice: the first until
    the second arrives (so both copies looked for the notice before either
    wrote it), the second until `release` is set."""

    def __init__(self, store, monkeypatch) -> None:
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.count = 0
        original = store.commit

        async def commit(batch):
            if any(op.kind == "notice" and op.action in ("put", "add") for op in batch.ops):
                self.count += 1
                if self.count == 1:
                    await self.arrived.wait()
                elif self.count == 2:
                    self.arrived.set()
                    await self.release.wait()
            return await original(batch)

        monkeypatch.setattr(store, "commit", commit)


async def overlapping(service, monkeypatch, first, second) -> tuple[dict, dict]:
    """Post two requests that both find their events unrecorded; the one that
    commits first is applied before the other commits. Their answers, in
    the order they committed, and the notices as the first left them."""
    gate = CommitGate(service.runtime.store, monkeypatch)
    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    done, [late] = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    [early] = done
    await hooks_idle(service)
    applied = {d["id"]: d for d in await service.runtime.store.get("notice")}
    gate.release.set()
    answers = []
    for task in (early, late):
        resp = task.result() if task.done() else await task
        assert resp.status == 200, await resp.text()
        answers.append(await resp.json())
    await hooks_idle(service)
    return {"early": answers[0], "late": answers[1]}, applied


async def assert_applied_once(service, applied: dict, message: dict, kind: str) -> None:
    now = {d["id"]: d for d in await service.runtime.store.get("notice")}
    for key, doc in applied.items():
        assert now[key] == doc  # not reset to pending, not applied again
        assert doc["state"] == "done"
    got = await service.runtime.store.get_one("message", {"id": message["id"]})
    assert [e["type"] for e in got["events"]].count(kind) == 1


async def test_two_copies_of_a_mailgun_event_at_once_are_recorded_once(hook_service,
                                                                       monkeypatch):
    # Mailgun's retry crossing its first try, signed anew: both copies pass
    # their check for a notice before either writes; the second must not
    # record the event again, nor reset the notice the first applied.
    message = await sent_message(hook_service, to="bob@example.com")
    pmid = message["message_id"].strip("<>")
    await track(hook_service, "mailgun", pmid, message["id"])
    copy = body("delivered", "bob@example.com", pmid)
    resigned = {**copy, "signature": signature()}
    answers, applied = await overlapping(hook_service, monkeypatch,
                                         lambda: post(hook_service, copy),
                                         lambda: post(hook_service, resigned))
    assert answers["early"]["status"] == "accepted"
    assert answers["late"] == {"status": "duplicate", "events": 0}
    await assert_applied_once(hook_service, applied, message, "delivered")


async def test_two_copies_of_a_mandrill_batch_at_once_are_recorded_once(hook_service,
                                                                        monkeypatch):
    # Mandrill signs no one-time value: the same POST twice is two copies.
    from test_hooks_mandrill import event as mandrill_event
    from test_hooks_mandrill import post as mandrill_post

    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mandrill", "md-twice", message["id"])
    events = [mandrill_event("open", _id="md-twice")]
    answers, applied = await overlapping(hook_service, monkeypatch,
                                         lambda: mandrill_post(hook_service, events),
                                         lambda: mandrill_post(hook_service, events))
    assert answers["early"]["status"] == "accepted"
    assert answers["late"] == {"status": "duplicate", "events": 0}
    await assert_applied_once(hook_service, applied, message, "opened")


async def test_overlapping_batches_record_only_the_events_not_seen(hook_service, monkeypatch):
    # [a, b] and [b, c] at once: the later records c, and leaves b as the
    # earlier applied it.
    from test_hooks_mandrill import event as mandrill_event
    from test_hooks_mandrill import post as mandrill_post

    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mandrill", "md-batch", message["id"])
    a, b, c = (mandrill_event(name, _id="md-batch") for name in ("send", "open", "click"))
    answers, applied = await overlapping(hook_service, monkeypatch,
                                         lambda: mandrill_post(hook_service, [a, b]),
                                         lambda: mandrill_post(hook_service, [b, c]))
    assert answers["early"] == {"status": "accepted", "events": 2}
    assert answers["late"] == {"status": "accepted", "events": 1}
    await assert_applied_once(hook_service, applied, message, "opened")
    assert await hook_service.runtime.store.count("notice") == 3


# -- how received mail arrived (item 14) -------------------------------------------------


async def test_every_inbox_copy_records_how_it_arrived(hook_service):
    """Local mail says local-domain; mail from a provider names it — also when
    its From claims a local user, which the page then warns about."""
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    headers = await hook_service.api_key("alice")
    resp = await hook_service.client.post("/api/messages", headers=headers, json={
        "to": "dana@localhost", "subject": "webhook test", "text": "really alice"})
    assert resp.status == 202, await resp.text()
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Alice <alice@localhost>", "dana@localhost", "hi"
    mail.set_content("not really alice")
    fields = {"recipient": "dana@localhost", "body-mime": mail.as_string(), **signature()}
    resp = await hook_service.client.post("/hooks/mailgun/inbound", data=fields)
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    by_subject = {m["subject"]: m for m in await inbox(hook_service, "dana")}
    local, outside = by_subject["webhook test"], by_subject["hi"]
    assert local["received_via"] == "local-domain"
    assert outside["received_via"] == "mailgun"
    # What the page reads to mark it and warn: the same From address as the
    # local user's, but arrived through a provider.
    assert local["from_address"] == outside["from_address"] == "alice@localhost"
