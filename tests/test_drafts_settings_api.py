"""Server drafts (item 7), the user's settings (item 5), delivery-failure
notices (item 6) and logging in with a full address (item 10)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bitmail.bodies import put_body
from bitmail.dsn import notice_id, notice_text
from bitmail.events import Event, EventType
from bitmail.store import Batch, base
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
    alice = await service.api_key("alice")
    cases = [("short", {"to": ""}, "id"), (DRAFT, {"to": 5}, "to"),
             (DRAFT, {"subject": "x" * 999}, "subject"), (DRAFT, {"text": ["a"]}, "text"),
             (DRAFT, {"in_reply_to": 7}, "in_reply_to"), (DRAFT, {"mode": "shout"}, "mode")]
    for draft_id, body, field in cases:
        resp = await service.client.put(f"/api/drafts/{draft_id}", headers=alice, json=body)
        assert resp.status == 400, body
        assert (await resp.json())["error"]["field"] == field
    assert await service.runtime.store.count("message") == 0


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


def ids_after(seen: str, offsets: range) -> list[str]:
    """The ids the store will hand out after `seen`, one of them (store/base.py
    new_id: a per-process prefix and a counter, so anyone can tell)."""
    prefix, counter = seen[:12], int(seen[12:], 16)
    return [f"{prefix}{counter + k:010x}" for k in offsets]


async def subjects(service: Service, headers: dict[str, str], folder: str) -> list[str]:
    """The subjects of a folder's rows, newest first (up to 200)."""
    listed = await (await service.client.get(f"/api/messages?folder={folder}&limit=200",
                                             headers=headers)).json()
    return [m["subject"] for m in listed["messages"]]


async def test_each_users_drafts_are_their_own_whatever_ids_others_use(service):
    """A draft id names one of its owner's drafts and nothing else: the same
    id is free to every other user, a message's id is no draft's, and the
    answer never tells whether an id is in use elsewhere."""
    alice, bob = await service.api_key("alice"), await service.api_key("bob")
    resp = await service.client.post("/api/messages", headers=alice,
                                     json={"to": "alice@localhost", "subject": "kept"})
    message = (await resp.json())["id"]
    await service.client.put(f"/api/drafts/{DRAFT}", headers=alice, json={"text": "mine"})

    for draft_id in (DRAFT, message):  # Alice's draft's id, Alice's message's id
        resp = await service.client.put(f"/api/drafts/{draft_id}", headers=bob,
                                        json={"subject": "bob's", "text": "x"})
        assert resp.status == 201, (draft_id, resp.status, await resp.text())
        assert (await resp.json())["id"] == draft_id
    assert sorted(await subjects(service, bob, "drafts")) == ["bob's", "bob's"]
    full = await (await service.client.get(f"/api/messages/{DRAFT}", headers=bob)).json()
    assert full["draft"]["subject"] == "bob's" and full["id"] == DRAFT
    assert (await service.client.delete(f"/api/drafts/{DRAFT}", headers=bob)).status == 204
    assert (await service.client.delete(f"/api/drafts/{message}", headers=bob)).status == 204

    # Alice's draft and message are as they were, under their ids.
    full = await (await service.client.get(f"/api/messages/{DRAFT}", headers=alice)).json()
    assert full["draft"]["text"] == "mine"
    full = await (await service.client.get(f"/api/messages/{message}", headers=alice)).json()
    assert (full["subject"], full["folder"]) == ("kept", "sent")
    # A send naming another user's draft (or message) removes nothing of theirs.
    resp = await service.client.post("/api/messages", headers=bob, json={
        "to": "x@example.com", "subject": "s", "text": "t", "draft": DRAFT})
    assert resp.status == 202
    assert await subjects(service, alice, "drafts") == [""]
    assert (await service.client.get(f"/api/messages/{DRAFT}", headers=bob)).status == 404


async def test_mail_written_under_ids_drafts_were_saved_under_is_filed_as_it_came(service):
    """A user saves drafts under ids the store will give other users' mail
    later. That mail must neither replace the drafts nor keep their place:
    it is filed when it came, after mail that came before it."""
    mallory, carol, dave, bob = [await service.api_key(n)
                                 for n in ("mallory", "carol", "dave", "bob")]
    own = await service.client.post("/api/messages", headers=mallory,
                                    json={"to": "mallory@localhost", "subject": "probe"})
    seen = (await own.json())["id"]
    ahead = ids_after(seen, range(500, 560))
    for draft_id in ahead:
        resp = await service.client.put(f"/api/drafts/{draft_id}", headers=mallory,
                                        json={"subject": "placeholder"})
        assert resp.status == 201, await resp.text()

    older = await service.client.post("/api/messages", headers=carol,
                                      json={"to": "bob@localhost", "subject": "older"})
    assert older.status == 202
    # Other traffic on the service moves the counter on, up to the taken ids.
    while int(base.new_id()[12:], 16) < int(ahead[0][12:], 16) - 1:
        pass
    newer = await service.client.post("/api/messages", headers=dave,
                                      json={"to": "bob@localhost", "subject": "newer"})
    assert newer.status == 202
    assert await subjects(service, bob, "inbox") == ["newer", "older"]
    assert await subjects(service, dave, "sent") == ["newer"]
    assert await subjects(service, mallory, "drafts") == ["placeholder"] * len(ahead)


@pytest.mark.parametrize("copy", [("dave", "sent", 4), ("bob", "inbox", 5)],
                         ids=["senders-sent-copy", "recipients-inbox-copy"])
async def test_saving_a_draft_never_replaces_mail_written_meanwhile(service, copy):
    """Mail written under the draft's id while the save is under way
    (between whatever it reads and its write) stays whole: Dave's Sent copy,
    Bob's Inbox copy. Their ids follow the probe's (its Sent copy, its Inbox
    copy), the draft's body and the body of Dave's message."""
    owner, folder, offset = copy
    users = {n: await service.api_key(n) for n in ("mallory", "dave", "bob")}
    own = await service.client.post("/api/messages", headers=users["mallory"],
                                    json={"to": "mallory@localhost", "subject": "probe"})
    [target] = ids_after((await own.json())["id"], range(offset, offset + 1))
    store = service.runtime.store
    real_commit = store.commit
    raced = []

    async def commit(batch):
        if not raced and any(op.kind == "message" and (op.doc or {}).get("folder") == "drafts"
                             for op in batch.ops):
            # Dave's mail is accepted while Mallory's save is about to write.
            raced.append(await service.client.post("/api/messages", headers=users["dave"], json={
                "to": "bob@localhost", "subject": "for bob"}))
        return await real_commit(batch)

    store.commit = commit
    try:
        resp = await service.client.put(f"/api/drafts/{target}", headers=users["mallory"],
                                        json={"subject": "placeholder"})
    finally:
        store.commit = real_commit
    assert [r.status for r in raced] == [202]
    assert resp.status == 201, await resp.text()
    assert await subjects(service, users["dave"], "sent") == ["for bob"]
    assert await subjects(service, users["bob"], "inbox") == ["for bob"]
    assert await subjects(service, users["mallory"], "drafts") == ["placeholder"]
    listed = await (await service.client.get(f"/api/messages?folder={folder}",
                                             headers=users[owner])).json()
    assert [m["id"] for m in listed["messages"]] == [target]  # the race was on its id


async def test_a_draft_cannot_take_the_id_of_a_delivery_failure_notice(service):
    """A notice's id comes from its message's id and the recipient (dsn.py
    notice_id), so it is as easy to tell in advance. Drafts saved under the
    ids of Dave's coming notices neither refuse his message nor keep its
    notice from his Inbox."""
    mallory, dave = await service.api_key("mallory"), await service.api_key("dave")
    own = await service.client.post("/api/messages", headers=mallory,
                                    json={"to": "mallory@localhost", "subject": "probe"})
    # After the probe's Inbox copy and a body per draft saved, Dave's body
    # and then his Sent copy: about 10 + 3 ids on.
    for sent in ids_after((await own.json())["id"], range(11, 21)):
        draft_id = notice_id(sent, "nobody@localhost")
        resp = await service.client.put(f"/api/drafts/{draft_id}", headers=mallory,
                                        json={"subject": "placeholder"})
        assert resp.status == 201, await resp.text()
    resp = await service.client.post("/api/messages", headers=dave, json={
        "to": "nobody@localhost", "subject": "Hello", "text": "x"})
    assert resp.status == 202, await resp.text()
    assert await subjects(service, dave, "inbox") == ["Undelivered mail: Hello"]


async def test_drafts_saved_before_drafts_had_ids_of_their_own_still_work(store_service):
    """Drafts stored under the client's id itself (before each user's drafts
    had ids of their own) open, save and go by that id still, on every
    store; saving one moves it to an id of its owner's."""
    service = store_service
    store = service.runtime.store
    alice, bob = await service.api_key("alice"), await service.api_key("bob")
    await service.client.put(f"/api/drafts/{DRAFT}", headers=alice, json={"subject": "x"})
    [made] = await store.get("message", {"owner": "alice"})
    old_ids = ("0ldDraft_saved-again", "0ldDraft_left-alone")
    batch = Batch()
    for old_id in old_ids:  # as they were stored: under the client's id, a body each
        batch.put("message", {**made, "subject": old_id,
                              "body": put_body(batch, b"Subject: x\r\n\r\nold\r\n")}, id=old_id)
    batch.delete("message", made["id"])
    batch.delete("body", made["body"])
    await store.commit(batch)

    saved, left = old_ids
    full = await (await service.client.get(f"/api/messages/{saved}", headers=alice)).json()
    assert (full["id"], full["subject"], full["text"].strip()) == (saved, saved, "old")
    assert (await service.client.get(f"/api/messages/{saved}", headers=bob)).status == 404
    resp = await service.client.put(f"/api/drafts/{saved}", headers=alice,
                                    json={"subject": "saved again"})
    assert resp.status == 200 and (await resp.json())["id"] == saved
    assert await store.get_one("message", {"id": saved}) is None
    listed = await (await service.client.get("/api/messages?folder=drafts",
                                             headers=alice)).json()
    assert sorted((m["id"], m["subject"]) for m in listed["messages"]) == [
        (left, left), (saved, "saved again")]
    assert await store.count("body") == 2  # the old text went
    for draft_id in old_ids:
        assert (await service.client.delete(f"/api/drafts/{draft_id}",
                                            headers=alice)).status == 204
    assert await subjects(service, alice, "drafts") == []
    assert await store.count("message") == 0 and await store.count("body") == 0


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
            "username": "bob", "password": "secret-pass", "location": here, "create": True})
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


@pytest.mark.parametrize(("reason", "status"), [
    ("relay: 550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown", "5.1.1"),
    ("552 5.2.2 Mailbox full", "5.2.2"),
    ("550-5.7.26 Unauthenticated email is not accepted", "5.7.26"),
    ("gave up after 3 days: 451 4.4.1 No answer from host", "4.4.1"),
    ("smtp; 550 Requested action not taken", "5.0.0"),  # no enhanced code given
    ("rejected by 10.2.5.1 (5 tries)", "5.0.0"),  # an address is no status code
    ("no such user here", "5.1.1"),  # BitMail's own reasons
    ("suppressed", "5.7.1"),
])
def test_a_notice_gives_the_status_code_the_receiving_side_gave(reason, status):
    text = notice_text({"subject": "s"}, "bob@example.org", reason, "localhost", 0.0)
    assert f"\nStatus: {status}\n" in text


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
    # The receiving side's own status code, not a generic one (RFC 3464 §2.3.4).
    assert "Status: 5.1.1" in full["text"] and payload["message"]["notice"]["status"] == "5.1.1"


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
