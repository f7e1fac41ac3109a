"""Mandrill webhooks: message events and inbound mail, signed as Mandrill signs them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from email.message import EmailMessage

import pytest

from conftest import (
    MANDRILL_KEY,
    MANDRILL_URL,
    assert_repeat_changes_nothing,
    hook_counts,
    hooks_idle,
    inbox,
    recipient_status,
    sent_message,
    sent_through,
    track,
)


def mandrill_signature(form: dict[str, str], key: str = MANDRILL_KEY,
                       url: str = MANDRILL_URL) -> str:
    """Mandrill's documented scheme: base64(HMAC-SHA1(key, url + sorted key/value pairs))."""
    signed = url + "".join(k + form[k] for k in sorted(form))
    return base64.b64encode(hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()
                            ).decode()


def event(name: str, email: str = "bob@example.com", _id: str | None = None,
          **msg_extra) -> dict:
    """One element of mandrill_events, as Mandrill documents its message events."""
    ts = int(time.time())
    _id = _id or secrets.token_hex(16)
    msg = {"ts": ts, "_id": _id, "state": "sent", "subject": "webhook test", "email": email,
           "sender": "alice@localhost", "tags": [], "opens": [], "clicks": [],
           "smtp_events": [], "resends": [], "metadata": {}, "_version": "x"}
    msg.update(msg_extra)
    out = {"event": name, "_id": _id, "ts": ts, "msg": msg}
    if name == "click":
        out["url"] = "https://example.com/offer"
    if name in ("open", "click"):
        out.update(ip="192.0.2.1", user_agent="Mozilla/5.0", location=None)
    return out


async def post(service, events: list | str, *, key: str = MANDRILL_KEY,
               url: str = MANDRILL_URL, signature: str | None = None, path="/hooks/mandrill",
               extra_fields: dict[str, str] | None = None):
    raw = events if isinstance(events, str) else json.dumps(events)
    form = {"mandrill_events": raw, **(extra_fields or {})}
    headers = {"X-Mandrill-Signature": signature or mandrill_signature(form, key, url)}
    return await service.client.post(path, data=form, headers=headers)


async def refused(service, status: int, code: str, events=None, **kwargs):
    before = await hook_counts(service)
    resp = await post(service, events if events is not None else [event("send")], **kwargs)
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == code, error
    assert await hook_counts(service) == before
    return error


async def test_head_answers_200_for_mandrills_url_check(hook_service):
    resp = await hook_service.client.head("/hooks/mandrill")
    assert resp.status == 200


async def test_mandrills_test_ping_with_no_events_is_200(hook_service):
    before = await hook_counts(hook_service)
    resp = await post(hook_service, [])
    assert resp.status == 200 and (await resp.json())["events"] == 0
    assert await hook_counts(hook_service) == before


@pytest.mark.parametrize(("name", "msg", "event_type", "status"), [
    ("send", {}, "sent", "sent"),
    ("deferral", {"state": "deferred", "smtp_events": [
        {"ts": 1, "type": "deferred", "diag": "451 4.3.5 Try again later"}]},
     "deferred", "sent"),
    ("hard_bounce", {"state": "bounced", "bounce_description": "bad_mailbox",
                     "diag": "smtp;550 5.1.1 no such user"}, "bounced", "bounced"),
    ("soft_bounce", {"state": "soft-bounced", "bounce_description": "mailbox_full"},
     "deferred", "sent"),
    ("spam", {"state": "sent"}, "complained", "complained"),
    ("unsub", {}, "unsubscribed", "sent"),
    ("reject", {"state": "rejected"}, "rejected", "failed"),
    ("open", {}, "opened", "sent"),
    ("click", {}, "clicked", "sent"),
])
async def test_every_mandrill_event_becomes_a_bitmail_event(hook_service, name, msg,
                                                            event_type, status):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mandrill", "md-1", message["id"])
    resp = await post(hook_service, [event(name, _id="md-1", **msg)])
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    doc = await (await hook_service.client.get(f"/api/messages/{message['id']}",
                                               headers=message["headers"])).json()
    assert doc["recipients"][0]["status"] == status
    last = doc["events"][-1]
    assert last["type"] == event_type and last["provider"] == "mandrill"
    assert last["recipient"] == "bob@example.com"


async def test_a_batch_of_events_for_several_recipients(hook_service):
    message = await sent_message(hook_service)
    # Mandrill gives each recipient its own _id.
    await track(hook_service, "mandrill", "md-bob", message["id"])
    await track(hook_service, "mandrill", "md-carol", message["id"])
    resp = await post(hook_service, [
        event("send", "bob@example.com", "md-bob"),
        event("hard_bounce", "carol@example.org", "md-carol", state="bounced",
              bounce_description="bad_mailbox"),
        event("send", "carol@example.org", "md-carol"),
    ])
    assert resp.status == 200 and (await resp.json())["events"] == 3
    await hooks_idle(hook_service)
    assert (await recipient_status(hook_service, message, "bob@example.com"))["status"] == \
        "sent"
    carol = await recipient_status(hook_service, message, "carol@example.org")
    assert carol["status"] == "bounced"  # a later "send" does not move it back
    assert await hook_service.runtime.store.get_one("suppression",
                                                    {"id": "carol@example.org"})
    assert hook_service.runtime.container.slots["mandrill"].figures.events["bounced"] == 1


async def test_delivery_then_bounce_end_to_end(hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mandrill", "md-e2e", message["id"])
    updates = hook_service.runtime.store.subscribe()
    resp = await post(hook_service, [event("hard_bounce", _id="md-e2e", state="bounced",
                                           diag="smtp;550 5.1.1 no such user")])
    assert resp.status == 200
    await hooks_idle(hook_service)
    bob = await recipient_status(hook_service, message, "bob@example.com")
    assert bob["status"] == "bounced" and "550 5.1.1" in bob["detail"]
    seen = []
    while not updates.queue.empty():
        seen.append(updates.queue.get_nowait())
    updates.close()
    assert any(u["type"] == "status" and u["owner"] == "alice" for u in seen)


async def test_untracked_ids_fall_back_to_metadata(hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    await sent_through(hook_service, message, "mandrill")
    resp = await post(hook_service, [event("send", _id="never-tracked",
                                           metadata={"bitmail_id": message["id"]})])
    assert resp.status == 200
    await hooks_idle(hook_service)
    doc = await hook_service.runtime.store.get_one("message", {"id": message["id"]})
    assert doc["events"][-1]["provider"] == "mandrill"


async def test_an_event_for_an_unknown_message_is_kept_and_answered_200(hook_service):
    assert (await post(hook_service, [event("send", _id="unknown")])).status == 200
    await hooks_idle(hook_service)
    [kept] = await hook_service.runtime.store.get("notice")
    assert kept["provider"] == "mandrill" and "no such message" in kept["result"]


async def test_sync_events_are_kept_and_change_nothing(hook_service):
    sync = {"type": "blacklist", "action": "add",
            "reject": {"reason": "hard-bounce", "email": "x@example.com"}}
    assert (await post(hook_service, [sync])).status == 200
    await hooks_idle(hook_service)
    [kept] = await hook_service.runtime.store.get("notice")
    assert "not tracked" in kept["result"]


# -- refusals ----------------------------------------------------------------------


async def test_a_forged_signature_is_refused(hook_service):
    error = await refused(hook_service, 403, "bad_signature", key="not-the-key")
    assert error["field"] == "X-Mandrill-Signature"


async def test_a_signature_for_another_url_is_refused(hook_service):
    await refused(hook_service, 403, "bad_signature", url="https://elsewhere.example/hook")


async def test_a_missing_signature_is_refused(hook_service):
    before = await hook_counts(hook_service)
    resp = await hook_service.client.post("/hooks/mandrill", data={
        "mandrill_events": json.dumps([event("send")])})
    assert resp.status == 403
    assert await hook_counts(hook_service) == before


async def test_a_field_added_after_signing_is_refused(hook_service):
    events = json.dumps([event("send")])
    signature = mandrill_signature({"mandrill_events": events})
    await refused(hook_service, 403, "bad_signature", events=events, signature=signature,
                  extra_fields={"extra": "1"})


async def test_the_same_batch_twice_changes_nothing(hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "mandrill", "md-dup", message["id"])
    batch = [event("spam", _id="md-dup")]
    assert (await post(hook_service, batch)).status == 200
    await assert_repeat_changes_nothing(hook_service, message["id"],
                                        lambda: post(hook_service, batch))
    assert hook_service.runtime.container.slots["mandrill"].figures.events["complained"] == 1


async def test_broken_json_is_refused(hook_service):
    error = await refused(hook_service, 400, "bad_json", events='[{"event": "send"')
    assert error["field"] == "mandrill_events"


@pytest.mark.parametrize(("events", "field"), [
    ('{"event": "send"}', "mandrill_events"),
    ("[1, 2]", "mandrill_events"),
    (json.dumps([{"_id": "x", "ts": 1, "msg": {}}]), "mandrill_events[].event"),
    (json.dumps([{"event": "send", "_id": "x", "ts": 1}]), "mandrill_events[].msg"),
    (json.dumps([{"event": "inbound", "ts": 1, "msg": {"email": "dana@localhost"}}]),
     "mandrill_events[].msg.raw_msg"),
])
async def test_malformed_events_are_refused(hook_service, events, field):
    error = await refused(hook_service, 400, "invalid", events=events)
    assert error["field"] == field


async def test_a_signed_form_without_mandrill_events_is_refused(hook_service):
    form = {"something": "else"}
    before = await hook_counts(hook_service)
    resp = await hook_service.client.post("/hooks/mandrill", data=form, headers={
        "X-Mandrill-Signature": mandrill_signature(form)})
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == "mandrill_events"
    assert await hook_counts(hook_service) == before


async def test_a_json_body_is_refused(hook_service):
    before = await hook_counts(hook_service)
    resp = await hook_service.client.post("/hooks/mandrill", json=[event("send")])
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "unsupported_media_type"
    assert await hook_counts(hook_service) == before


async def test_an_oversize_body_is_refused(hook_service):
    big = json.dumps([event("send", padding="x" * (30 * 1024 * 1024))])
    await refused(hook_service, 413, "too_large", events=big)


# -- inbound ---------------------------------------------------------------------


def inbound_event(recipient: str = "dana@localhost") -> dict:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Eve <eve@example.net>", recipient, "Invoice"
    mail["Message-ID"] = f"<{secrets.token_hex(8)}@example.net>"
    mail.set_content("Invoice attached.")
    mail.add_alternative("<p>Invoice <b>attached</b>.</p>", subtype="html")
    mail.add_attachment(b"%PDF invoice", maintype="application", subtype="pdf",
                        filename="invoice.pdf")
    raw = mail.as_string()
    return {"event": "inbound", "ts": int(time.time()), "msg": {
        "raw_msg": raw, "headers": {"Subject": "Invoice"}, "text": "Invoice attached.",
        "html": "<p>Invoice <b>attached</b>.</p>", "from_email": "eve@example.net",
        "from_name": "Eve", "to": [[recipient, None]], "email": recipient,
        "subject": "Invoice", "tags": [], "sender": None, "spam_report": {"score": 0},
        "dkim": {"signed": False, "valid": False}, "spf": {"result": "none"}}}


async def test_inbound_mail_lands_in_the_inbox_with_its_attachment(hook_service):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    resp = await post(hook_service, [inbound_event()])
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    [mail] = await inbox(hook_service, "dana")
    assert mail["subject"] == "Invoice" and "<b>attached</b>" in mail["html"]
    assert [a["filename"] for a in mail["attachments"]] == ["invoice.pdf"]
    data = await hook_service.client.get(f"/api/messages/{mail['id']}/attachments/0",
                                         headers=mail["headers"])
    assert await data.read() == b"%PDF invoice"


async def test_inbound_for_nobody_here_is_kept_and_200(hook_service):
    resp = await post(hook_service, [inbound_event("nobody@localhost")])
    assert resp.status == 200
    await hooks_idle(hook_service)
    [kept] = await hook_service.runtime.store.get("notice")
    assert kept["result"] == "no user here"
    assert await hook_service.runtime.store.count("message") == 0


@pytest.mark.parametrize("events", [
    json.dumps([event("send", _id="\ud800")]),
    json.dumps([event("send", email="\udcff@example.com")]),
    json.dumps([{**event("send"), "\ud83d": "key"}]),
])
async def test_events_with_a_lone_surrogate_are_a_400_naming_mandrill_events(hook_service,
                                                                             events):
    error = await refused(hook_service, 400, "bad_json", events)
    assert error["field"] == "mandrill_events"
