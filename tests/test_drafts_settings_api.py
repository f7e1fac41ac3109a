"""Server drafts (item 7), the user's settings (item 5), delivery-failure
notices (item 6) and logging in with a full address (item 10)."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from bitmail.dsn import notice_id
from bitmail.events import Event, EventType
from bitmail.store import Batch
from bitmail.web.app import make_app

from conftest import Service, wait_for

DRAFT = "d0a1b2c3d4e5f6a7"


async def record(service: Service, message_id: str, *events: Event) -> None:
    """Apply provider events to a Sent copy, as the container does."""
    batch = Batch()
    service.runtime.mailbox.record(batch, message_id, list(events))
    await service.runtime.store.commit(batch)


async def other_client(service: Service) -> TestClient:
    client = TestClient(TestServer(make_app(service.runtime)))
    await client.start_server()
    return client


async def test_a_draft_is_saved_listed_opened_replaced_and_removed(service):
    alice = await service.api_key("alice")
    draft = {"to": "bob@localhost; half-typ", "cc": "", "bcc": "", "subject": "Plans",
             "text": "First words"}
    resp = await service.client.put(f"/api/drafts/{DRAFT}", headers=alice, json=draft)
    assert resp.status == 201, await resp.text()
    row = await resp.json()
    assert (row["id"], row["folder"], row["subject"]) == (DRAFT, "drafts", "Plans")
    assert row["to"] == ["bob@localhost", "half-typ"]  # unchecked until it is sent

    again = await service.client.put(f"/api/drafts/{DRAFT}", headers=alice,
                                     json={**draft, "text": "More words"})
    assert again.status == 200
    listed = await service.client.get("/api/messages?folder=drafts", headers=alice)
    assert [m["id"] for m in (await listed.json())["messages"]] == [DRAFT]
    full = await (await service.client.get(f"/api/messages/{DRAFT}", headers=alice)).json()
    assert full["draft"]["text"] == "More words" and full["text"].strip() == "More words"
    assert full["draft"]["to"] == "bob@localhost; half-typ"
    counts = {f["name"]: f for f in await (await service.client.get(
        "/api/folders", headers=alice)).json()}
    assert counts["drafts"]["total"] == 1

    assert (await service.client.delete(f"/api/drafts/{DRAFT}", headers=alice)).status == 204
    assert (await service.client.get(f"/api/messages/{DRAFT}", headers=alice)).status == 404
    # Removed twice (two devices): still fine.
    assert (await service.client.delete(f"/api/drafts/{DRAFT}", headers=alice)).status == 204
    assert await service.runtime.store.count("body") == 0


async def test_bad_drafts_are_refused_with_the_field_and_nothing_is_stored(service):
    alice, bob = await service.api_key("alice"), await service.api_key("bob")
    cases = [("short", {"to": ""}, "id"), (DRAFT, {"to": 5}, "to"),
             (DRAFT, {"subject": "x" * 999}, "subject"), (DRAFT, {"text": ["a"]}, "text"),
             (DRAFT, {"in_reply_to": 7}, "in_reply_to"), (DRAFT, {"mode": "shout"}, "mode")]
    for draft_id, body, field in cases:
        resp = await service.client.put(f"/api/drafts/{draft_id}", headers=alice, json=body)
        assert resp.status == 400, body
        assert (await resp.json())["error"]["field"] == field
    assert await service.runtime.store.count("message") == 0
    # Somebody else's draft id cannot be taken over or removed.
    await service.client.put(f"/api/drafts/{DRAFT}", headers=alice, json={"text": "mine"})
    taken = await service.client.put(f"/api/drafts/{DRAFT}", headers=bob, json={"text": "x"})
    assert taken.status == 409
    assert (await service.client.delete(f"/api/drafts/{DRAFT}", headers=bob)).status == 404
    full = await (await service.client.get(f"/api/messages/{DRAFT}", headers=alice)).json()
    assert full["draft"]["text"] == "mine"


async def test_sending_a_draft_removes_it(service):
    alice = await service.api_key("alice")
    await service.client.put(f"/api/drafts/{DRAFT}", headers=alice,
                             json={"to": "x@example.com", "subject": "Go", "text": "now"})
    resp = await service.client.post("/api/messages", headers=alice, json={
        "to": "x@example.com", "subject": "Go", "text": "now", "draft": DRAFT})
    assert resp.status == 202
    listed = await service.client.get("/api/messages?folder=drafts", headers=alice)
    assert (await listed.json())["messages"] == []
    bad = await service.client.post("/api/messages", headers=alice, json={
        "to": "x@example.com", "subject": "Go", "text": "now", "draft": "../x"})
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "draft"


async def test_display_name_and_signature_are_kept_and_checked(service):
    me = await service.login("alice")
    csrf = {"X-CSRF-Token": me["csrf_token"]}
    assert (me["display_name"], me["signature"], me["geolists"]) == ("", "", False)
    resp = await service.client.patch("/api/me", headers=csrf, json={
        "display_name": "  Alice   Liddell ", "signature": "-- \nAlice"})
    assert resp.status == 200
    assert (await resp.json())["display_name"] == "Alice Liddell"
    got = await (await service.client.get("/api/me")).json()
    assert (got["display_name"], got["signature"]) == ("Alice Liddell", "-- \nAlice")
    for body, field in (({"display_name": "Eve\r\nBcc: x@y"}, "display_name"),
                        ({"display_name": 3}, "display_name"),
                        ({"display_name": "x" * 101}, "display_name"),
                        ({"signature": "x" * 4001}, "signature"),
                        ({"geolists": "no"}, "geolists"),
                        ({"location": {"lat": 100, "lon": 2}}, "location"),
                        ({"colour": "red"}, "colour")):
        resp = await service.client.patch("/api/me", headers=csrf, json=body)
        assert resp.status == 400, body
        assert (await resp.json())["error"]["field"] == field
    got = await (await service.client.get("/api/me")).json()
    assert got["display_name"] == "Alice Liddell"
    # Without the CSRF token a cookie request changes nothing.
    assert (await service.client.patch("/api/me", json={"signature": ""})).status == 403


async def test_geolists_are_switched_on_with_a_location_and_off_forgetting_it(service):
    here = {"lat": 40.7128, "lon": -74.006}
    me = await service.login("alice")
    csrf = {"X-CSRF-Token": me["csrf_token"]}
    assert (me["geolists"], me["located"]) == (False, False)  # opt-in
    bob_client = await other_client(service)
    try:
        resp = await bob_client.post("/api/session", json={
            "username": "bob", "password": "secret-pass", "location": here})
        bob_csrf = {"X-CSRF-Token": (await resp.json())["csrf_token"]}

        # On needs a location.
        resp = await service.client.patch("/api/me", headers=csrf, json={"geolists": True})
        assert resp.status == 400 and (await resp.json())["error"]["field"] == "geolists"
        bad = await service.client.patch("/api/me", headers=csrf, json={
            "geolists": True, "location": {"lat": 91, "lon": 0}})
        assert bad.status == 400 and (await bad.json())["error"]["field"] == "location"
        resp = await service.client.patch("/api/me", headers=csrf, json={
            "geolists": True, "location": here})
        assert (await resp.json())["geolists"] is True
        lists = await (await bob_client.get("/api/geolists")).json()
        assert "alice@localhost" in lists["lists"][0]["addresses"]

        resp = await service.client.patch("/api/me", headers=csrf, json={"geolists": False})
        assert (await resp.json()) == {"display_name": "", "signature": "", "geolists": False,
                                       "located": False}
        lists = await (await bob_client.get("/api/geolists")).json()
        assert "alice@localhost" not in lists["lists"][0]["addresses"]

        resp = await bob_client.patch("/api/me", headers=bob_csrf, json={"location": None})
        assert (await resp.json())["located"] is False
        assert (await (await bob_client.get("/api/geolists")).json())["located"] is False
    finally:
        await bob_client.close()


async def test_compose_learns_which_local_addresses_name_nobody(service):
    await service.api_key("bob")
    alice = await service.api_key("alice")
    resp = await service.client.post("/api/recipients/check", headers=alice, json={
        "addresses": ["bob@localhost", "Nobody@localhost", "x@example.com", "nobody@localhost"]})
    assert resp.status == 200
    assert (await resp.json())["unknown"] == ["Nobody@localhost", "nobody@localhost"]
    for body in ({"addresses": "bob@localhost"}, {"addresses": ["a@b"] * 21}, {"addresses": [3]},
                 []):
        resp = await service.client.post("/api/recipients/check", headers=alice, json=body)
        assert resp.status == 400 and (await resp.json())["error"]["field"] == "addresses"


async def test_a_new_password_ends_the_other_sessions_but_not_this_one(service):
    await service.login("alice", "old-password")
    phone = await other_client(service)
    try:
        resp = await phone.post("/api/session",
                                json={"username": "alice", "password": "old-password"})
        csrf = {"X-CSRF-Token": (await resp.json())["csrf_token"]}
        wrong = await phone.post("/api/me/password", headers=csrf,
                                 json={"current": "nope-nope", "new": "new-password"})
        assert wrong.status == 403 and (await wrong.json())["error"]["field"] == "current"
        empty = await phone.post("/api/me/password", headers=csrf,
                                 json={"current": "old-password", "new": "short"})
        assert empty.status == 400 and (await empty.json())["error"]["field"] == "new"
        assert (await service.client.get("/api/me")).status == 200

        resp = await phone.post("/api/me/password", headers=csrf,
                                json={"current": "old-password", "new": "new-password"})
        assert resp.status == 200 and (await resp.json())["ended_sessions"] == 1
        assert (await phone.get("/api/me")).status == 200
        assert (await service.client.get("/api/me")).status == 401
        old = await service.client.post("/api/session",
                                        json={"username": "alice", "password": "old-password"})
        assert old.status == 401
        await service.login("alice", "new-password")
    finally:
        await phone.close()
    # A program's API key cannot change the password.
    headers = await service.api_key("alice")
    resp = await service.client.post("/api/me/password", headers=headers,
                                     json={"current": "new-password", "new": "x-password"})
    assert resp.status == 403


async def test_a_username_typed_as_our_address_logs_in_and_another_domain_says_why(service):
    await service.login("bob")
    resp = await service.client.post("/api/session",
                                     json={"username": "Bob@LOCALHOST", "password": "secret-pass"})
    assert resp.status == 200 and (await resp.json())["address"] == "bob@localhost"
    resp = await service.client.post("/api/session", json={"username": "bob@example.com",
                                                           "password": "secret-pass"})
    body = await resp.json()
    assert resp.status == 400 and body["error"]["field"] == "username"
    assert "@localhost" in body["error"]["message"]


async def test_an_unknown_local_user_brings_a_delivery_failure_notice_once(service):
    alice = await service.api_key("alice")
    await service.api_key("bob")
    resp = await service.client.post("/api/messages", headers=alice, json={
        "to": "bob@localhost; nobody@localhost", "subject": "Hi all", "text": "x"})
    sent_id = (await resp.json())["id"]
    listed = await (await service.client.get("/api/messages?folder=inbox",
                                             headers=alice)).json()
    (row,) = listed["messages"]
    assert row["id"] == notice_id(sent_id, "nobody@localhost")
    assert row["from"] == "mailer-daemon@localhost" and row["unread"] is True
    assert row["subject"] == "Undelivered mail: Hi all"
    full = await (await service.client.get(f"/api/messages/{row['id']}", headers=alice)).json()
    assert "could not be delivered to nobody@localhost" in full["text"]
    assert "Final-Recipient: rfc822; nobody@localhost" in full["text"]
    assert "Status: 5.1.1" in full["text"] and "no such user here" in full["text"]
    assert full["notice"] == {"message": sent_id, "recipient": "nobody@localhost",
                              "reason": "no such user here", "action": "failed",
                              "status": "5.1.1"}
    # The same failure reported again adds nothing.
    await record(service, sent_id, Event(EventType.FAILED, sent_id, recipient="nobody@localhost"))
    await asyncio.sleep(0.2)
    assert await service.runtime.store.count("message", {"owner": "alice",
                                                         "folder": "inbox"}) == 1


async def test_a_later_bounce_brings_a_notice_live(service):
    alice = await service.api_key("alice")
    resp = await service.client.post("/api/messages", headers=alice, json={
        "to": "carol@example.com", "subject": "Far away", "text": "x"})
    sent_id = (await resp.json())["id"]
    sub = service.runtime.store.subscribe()
    try:
        await record(service, sent_id, Event(
            EventType.BOUNCED, sent_id, recipient="carol@example.com",
            detail="550 5.1.1 mailbox unavailable"))

        async def notice():
            while not sub.queue.empty():
                p = sub.queue.get_nowait()
                if p["type"] == "message" and p["message"].get("notice"):
                    return p
            return None

        payload = await wait_for(notice)
    finally:
        sub.close()
    assert payload["owner"] == "alice"
    assert payload["message"]["notice"]["recipient"] == "carol@example.com"
    full = await (await service.client.get(f"/api/messages/{payload['message']['id']}",
                                           headers=alice)).json()
    assert "550 5.1.1 mailbox unavailable" in full["text"]


async def test_open_pages_are_told_when_somebodys_position_changes(service):
    me = await service.login("alice")
    csrf = {"X-CSRF-Token": me["csrf_token"]}
    sub = service.runtime.store.subscribe()
    try:
        await service.client.patch("/api/me", headers=csrf, json={
            "geolists": True, "location": {"lat": 40.7, "lon": -74.0}})
        await service.client.patch("/api/me", headers=csrf, json={"geolists": False})
        await service.client.patch("/api/me", headers=csrf, json={"geolists": False})
        kinds = []
        while not sub.queue.empty():
            kinds.append(sub.queue.get_nowait()["type"])
    finally:
        sub.close()
    assert kinds.count("geolists") == 2  # shared, forgotten; forgetting twice tells once


async def test_the_display_name_goes_into_from(service):
    me = await service.login("alice")
    await service.api_key("bob")
    csrf = {"X-CSRF-Token": me["csrf_token"]}
    await service.client.patch("/api/me", headers=csrf, json={"display_name": "Alice Liddell"})
    resp = await service.client.post("/api/messages", headers=csrf, json={
        "to": "bob@localhost", "subject": "Named", "text": "x"})
    assert resp.status == 202
    sent = await service.runtime.store.get_one("message", {"owner": "bob", "folder": "inbox"})
    mime = await service.runtime.mailbox.mime(sent)
    assert b"From: Alice Liddell <alice@localhost>" in mime
