"""The suppression list: fed by hard bounces and complaints, consulted on every
send, listed and cleared by the operator (API and command line)."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from bitmail import config
from bitmail.__main__ import main
from bitmail.app import running
from bitmail.message import parse_message
from bitmail.suppression import SuppressionList
from bitmail.testing import MailgunSigner

from conftest import (
    MAILGUN_KEY,
    hooks_idle,
    recipient_status,
    sent_message,
    sent_through,
    track,
    wait_for,
    write_config,
)

SIGNER = MailgunSigner(MAILGUN_KEY)


def mailgun(name: str, recipient: str, message_id: str, **extra) -> dict:
    return SIGNER.event({"event": name, "id": secrets.token_hex(8), "timestamp": time.time(),
                         "recipient": recipient,
                         "message": {"headers": {"message-id": message_id}}, **extra})


async def posted(service, **request) -> None:
    """POST to the Mailgun webhook (json= or data=), answered 200, applied."""
    resp = await service.client.post("/hooks/mailgun", **request)
    assert resp.status == 200, await resp.text()
    await hooks_idle(service)


async def bounce(service, message: dict, recipient: str, name: str = "failed", **extra):
    pmid = message["message_id"].strip("<>")
    await track(service, "mailgun", pmid, message["id"])
    await posted(service, json=mailgun(name, recipient, pmid, **extra))


async def test_a_hard_bounce_stops_later_mail_to_that_address_only(hook_service):
    first = await sent_message(hook_service)
    await bounce(hook_service, first, "bob@example.com", severity="permanent")
    resp = await hook_service.client.post("/api/messages", headers=first["headers"], json={
        "to": "Bob@Example.com; carol@example.org", "subject": "again", "text": "x"})
    assert resp.status == 202
    second = {**await resp.json(), "headers": first["headers"]}
    bob = await recipient_status(hook_service, second, "bob@example.com")
    assert bob["status"] == "failed" and bob["detail"] == "suppressed"

    async def carol_sent():
        carol = await recipient_status(hook_service, second, "carol@example.org")
        return carol["status"] == "sent"

    await wait_for(carol_sent)
    doc = await (await hook_service.client.get(f"/api/messages/{second['id']}",
                                               headers=first["headers"])).json()
    assert any(e["type"] == "failed" and e["detail"] == "suppressed"
               and e["recipient"] == "bob@example.com" for e in doc["events"])


async def test_a_complaint_suppresses_too(hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    await bounce(hook_service, message, "bob@example.com", name="complained")
    entry = await SuppressionList(hook_service.runtime.store).get("BOB@example.com")
    assert entry["reason"] == "complained" and entry["message"] == message["id"]


async def test_soft_bounces_opens_and_unsubscribes_do_not_suppress(hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    await bounce(hook_service, message, "bob@example.com", severity="temporary")
    await bounce(hook_service, message, "bob@example.com", name="opened")
    await bounce(hook_service, message, "bob@example.com", name="unsubscribed")
    assert await hook_service.runtime.store.count("suppression") == 0


# -- what may suppress: only a recipient of mail BitMail sent -------------------------
#
# What a bounce or complaint names is written by the receiving side (a DSN's
# Final-Recipient, a feedback report's Original-Rcpt-To); the suppression list
# stops mail to an address for every user of the service.


async def notice_result(service) -> str:
    [notice] = await service.runtime.store.get("notice")
    return notice["result"]


@pytest.mark.parametrize(("name", "extra"), [
    ("failed", {"severity": "permanent", "reason": "bounce"}),
    ("complained", {}),
])
async def test_a_bounce_naming_someone_who_is_no_recipient_suppresses_nobody(hook_service,
                                                                             name, extra):
    # A hostile recipient domain can send a DSN, for mail it was sent, that
    # names any Final-Recipient: the event is matched to BitMail's message,
    # the address is found to be no recipient of it, and "nothing changed"
    # must hold for the suppression list too.
    message = await sent_message(hook_service, to="bob@example.com")
    await bounce(hook_service, message, "ceo@partner.example", name, **extra)
    assert "not a recipient" in await notice_result(hook_service)
    assert await hook_service.runtime.store.count("suppression") == 0


@pytest.mark.parametrize("name", ["failed", "complained"])
async def test_a_bounce_for_a_message_bitmail_never_sent_suppresses_nobody(hook_service, name):
    await posted(hook_service, json=mailgun(
        name, "ceo@partner.example", f"{secrets.token_hex(8)}@elsewhere.example",
        severity="permanent"))
    assert await notice_result(hook_service) == "no such message"
    assert await hook_service.runtime.store.count("suppression") == 0


async def test_a_bounce_for_mail_sent_through_another_provider_suppresses_nobody(
        hook_service):
    # Found by its Message-ID only among mail sent through the reporting
    # provider: this message went out through SES, so Mailgun's bounce for
    # it is about no message of ours, even though it names its recipient.
    message = await sent_message(hook_service, to="bob@example.com")
    await sent_through(hook_service, message, "ses")
    await posted(hook_service, json=mailgun(
        "failed", "bob@example.com", message["message_id"].strip("<>"), severity="permanent"))
    assert await notice_result(hook_service) == "no such message"
    assert await hook_service.runtime.store.count("suppression") == 0


async def test_a_legacy_form_bounce_naming_someone_who_is_no_recipient_suppresses_nobody(
        hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    pmid = message["message_id"].strip("<>")
    await track(hook_service, "mailgun", pmid, message["id"])
    await posted(hook_service, data=SIGNER.form({
        "event": "bounced", "recipient": "ceo@partner.example", "Message-Id": f"<{pmid}>",
        "code": "550"}))
    assert "not a recipient" in await notice_result(hook_service)
    assert await hook_service.runtime.store.count("suppression") == 0


@pytest.mark.parametrize("name", ["hard_bounce", "spam"])
@pytest.mark.parametrize("ours", [True, False], ids=["no-recipient", "unknown-message"])
async def test_a_mandrill_bounce_naming_no_recipient_of_ours_suppresses_nobody(hook_service,
                                                                              name, ours):
    from test_hooks_mandrill import event as mandrill_event
    from test_hooks_mandrill import post as mandrill_post

    message = await sent_message(hook_service, to="bob@example.com")
    if ours:
        await track(hook_service, "mandrill", "md-ours", message["id"])
    resp = await mandrill_post(hook_service, [mandrill_event(
        name, email="ceo@partner.example", _id="md-ours" if ours else "md-never-sent",
        state="bounced")])
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    result = await notice_result(hook_service)
    assert ("not a recipient" in result) if ours else (result == "no such message")
    assert await hook_service.runtime.store.count("suppression") == 0


async def test_a_bounce_for_one_real_recipient_suppresses_that_one_only(hook_service):
    # The other side of the rule: a recipient of the message is suppressed,
    # in the spelling the bounce gave, and nobody else from the same report.
    message = await sent_message(hook_service)
    await bounce(hook_service, message, "Bob@Example.com", severity="permanent")
    await bounce(hook_service, message, "ceo@partner.example", severity="permanent")
    entries = await hook_service.runtime.store.get("suppression")
    assert [e["id"] for e in entries] == ["bob@example.com"]
    assert entries[0]["message"] == message["id"]


# -- a Sent copy its owner has moved or deleted --------------------------------------
#
# A hard bounce can come days after the mail went (RFC 3464 DSNs are often
# sent late, after the remote MTA's own retries); by then the sender may have
# filed the Sent copy, moved it to Trash, or deleted it for good. The
# recipient's address is as dead either way.


async def to_folder(service, message: dict, folder: str) -> None:
    resp = await service.client.patch(f"/api/messages/{message['id']}",
                                      headers=message["headers"], json={"folder": folder})
    assert resp.status == 200, await resp.text()


async def delete_for_good(service, message: dict) -> None:
    await to_folder(service, message, "trash")
    resp = await service.client.delete(f"/api/messages/{message['id']}",
                                       headers=message["headers"])
    assert resp.status == 204, await resp.text()
    assert await service.runtime.store.get_one("message", {"id": message["id"]}) is None


@pytest.mark.parametrize("name", ["failed", "complained"])
async def test_a_bounce_after_the_sent_copy_is_deleted_still_suppresses(hook_service, name):
    message = await sent_message(hook_service, to="bob@example.com; carol@example.org")
    pmid = message["message_id"].strip("<>")
    await track(hook_service, "mailgun", pmid, message["id"])
    await delete_for_good(hook_service, message)
    await posted(hook_service, json=mailgun(name, "Bob@Example.com", pmid,
                                            severity="permanent"))
    entries = await hook_service.runtime.store.get("suppression")
    assert [(e["id"], e["message"], e["provider"]) for e in entries] == [
        ("bob@example.com", message["id"], "mailgun")]
    assert "is deleted; suppressed" in await notice_result(hook_service)


@pytest.mark.parametrize(("name", "recipient", "extra"), [
    ("failed", "bob@example.com", {"severity": "temporary"}),  # a soft bounce
    ("opened", "bob@example.com", {}),
    ("failed", "ceo@partner.example", {"severity": "permanent"}),  # no recipient of it
])
async def test_after_the_sent_copy_is_deleted_other_notices_suppress_nobody(
        hook_service, name, recipient, extra):
    message = await sent_message(hook_service, to="bob@example.com")
    pmid = message["message_id"].strip("<>")
    await track(hook_service, "mailgun", pmid, message["id"])
    await delete_for_good(hook_service, message)
    await posted(hook_service, json=mailgun(name, recipient, pmid, **extra))
    assert await hook_service.runtime.store.count("suppression") == 0
    assert (await notice_result(hook_service)).endswith(f": message {message['id']} is deleted")


async def test_a_bounce_names_only_whom_the_providers_id_took(hook_service):
    # Mandrill gives each recipient an id of its own: a bounce under Bob's id
    # naming Carol (also a recipient, under another id) is no bounce of hers.
    message = await sent_message(hook_service, to="bob@example.com; carol@example.org")
    await track(hook_service, "mailgun", "id-for-bob", message["id"], ["bob@example.com"])
    await delete_for_good(hook_service, message)
    await posted(hook_service, json=mailgun("failed", "carol@example.org", "id-for-bob",
                                            severity="permanent"))
    assert await hook_service.runtime.store.count("suppression") == 0


async def test_a_tracking_entry_from_before_recipients_were_kept_suppresses_nobody(
        hook_service):
    message = await sent_message(hook_service, to="bob@example.com")
    pmid = message["message_id"].strip("<>")
    await hook_service.runtime.store.put("tracking", {
        "provider": "mailgun", "provider_message_id": pmid, "message": message["id"]},
        id=f"mailgun:{pmid}")
    await delete_for_good(hook_service, message)
    await posted(hook_service, json=mailgun("failed", "bob@example.com", pmid,
                                            severity="permanent"))
    assert await hook_service.runtime.store.count("suppression") == 0


@pytest.mark.parametrize("folder", ["trash", "archive"])
async def test_a_bounce_found_by_message_id_reaches_a_sent_copy_moved_elsewhere(
        hook_service, folder):
    # No provider id was tracked: the bounce is matched by the Message-ID,
    # among mail sent through the reporting provider, in any folder.
    message = await sent_message(hook_service, to="bob@example.com")
    await sent_through(hook_service, message, "mailgun")
    await to_folder(hook_service, message, folder)
    await posted(hook_service, json=mailgun(
        "failed", "bob@example.com", message["message_id"].strip("<>"), severity="permanent"))
    bob = await recipient_status(hook_service, message, "bob@example.com")
    assert bob["status"] == "bounced"
    [entry] = await hook_service.runtime.store.get("suppression")
    assert entry["id"] == "bob@example.com" and entry["message"] == message["id"]


async def test_the_outbox_entry_leaves_suppressed_recipients_out(make_settings):
    async with running(make_settings(), with_mta=False) as rt:
        await SuppressionList(rt.store).add("bob@example.com", reason="bounced",
                                            provider="mailgun")
        message = parse_message({"to": "bob@example.com; carol@example.org", "text": "x"},
                                sender="alice@localhost", domain="localhost")
        sent_id = await rt.mailbox.accept(message, "alice")
        [entry] = await rt.store.get("outbox", {"message": sent_id})
        assert entry["recipients"] == ["carol@example.org"]
        only_bob = parse_message({"to": "bob@example.com", "text": "x"},
                                 sender="alice@localhost", domain="localhost")
        bob_id = await rt.mailbox.accept(only_bob, "alice")
        assert await rt.store.get("outbox", {"message": bob_id}) == []
        doc = await rt.store.get_one("message", {"id": bob_id})
        assert doc["status"] == "failed"
        # The notice is written with the message, whichever way it came (here
        # neither the API nor SMTP: the mailbox itself).
        notices = await rt.store.get("message", {"owner": "alice", "folder": "inbox"})
        assert [n["notice"]["message"] for n in notices] == [sent_id, bob_id]
        assert notices[1]["notice"] == {"message": bob_id, "recipient": "bob@example.com",
                                        "reason": "suppressed", "action": "failed",
                                        "status": "5.7.1"}


async def test_only_operators_see_or_change_the_list(hook_service):
    await SuppressionList(hook_service.runtime.store).add("x@example.com", reason="bounced",
                                                          provider="ses")
    headers = await hook_service.api_key("mallory")
    for resp in (await hook_service.client.get("/api/suppressions", headers=headers),
                 await hook_service.client.delete("/api/suppressions/x@example.com",
                                                  headers=headers)):
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "not_operator"
    assert await SuppressionList(hook_service.runtime.store).get("x@example.com")
    me = await (await hook_service.client.get("/api/me", headers=headers)).json()
    assert me["operator"] is False


async def test_the_operator_lists_and_removes_entries(hook_service):
    headers = await hook_service.api_key("alice")
    store = SuppressionList(hook_service.runtime.store)
    await store.add("old@example.com", reason="bounced", provider="ses", detail="550")
    await store.add("new@example.com", reason="complained", provider="mailgun")
    resp = await hook_service.client.get("/api/suppressions", headers=headers)
    assert resp.status == 200
    listed = (await resp.json())["suppressions"]
    assert [e["address"] for e in listed] == ["new@example.com", "old@example.com"]
    assert listed[1] == {"address": "old@example.com", "reason": "bounced", "provider": "ses",
                         "at": listed[1]["at"], "message": None, "detail": "550"}
    one = await (await hook_service.client.get("/api/suppressions?address=OLD@example.com",
                                               headers=headers)).json()
    assert [e["address"] for e in one["suppressions"]] == ["old@example.com"]
    page = await (await hook_service.client.get("/api/suppressions?limit=1",
                                                headers=headers)).json()
    assert len(page["suppressions"]) == 1 and page["next"] is not None

    gone = await hook_service.client.delete("/api/suppressions/Old@Example.com",
                                            headers=headers)
    assert gone.status == 204
    again = await hook_service.client.delete("/api/suppressions/old@example.com",
                                             headers=headers)
    assert again.status == 404 and (await again.json())["error"]["code"] == "not_found"
    assert await store.get("old@example.com") is None

    # Removed: mail goes to that address again.
    message = await sent_message(hook_service, to="old@example.com")
    assert (await recipient_status(hook_service, message, "old@example.com"))["status"] == \
        "sent"


async def test_the_list_needs_a_logged_in_user(hook_service):
    assert (await hook_service.client.get("/api/suppressions")).status == 401
    assert (await hook_service.client.delete("/api/suppressions/a@b.com")).status == 401


def test_the_command_line_lists_and_removes(tmp_path, capsys):
    path = write_config(tmp_path)

    async def seed():
        async with running(config.load(path, environ={}), with_mta=False) as rt:
            await SuppressionList(rt.store).add("bob@example.com", reason="bounced",
                                                provider="mailgun", detail="550 no such user")

    asyncio.run(seed())
    assert main(["--config", str(path), "suppression", "list"]) == 0
    assert capsys.readouterr().out == "bob@example.com\tbounced\tmailgun\t550 no such user\n"
    assert main(["--config", str(path), "suppression", "remove", "BOB@example.com"]) == 0
    assert "removed bob@example.com" in capsys.readouterr().out
    assert main(["--config", str(path), "suppression", "remove", "bob@example.com"]) == 1
    assert main(["--config", str(path), "suppression", "remove"]) == 2
    assert main(["--config", str(path), "suppression", "list"]) == 0
    assert capsys.readouterr().out == ""
