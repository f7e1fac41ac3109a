"""The JSON API: sessions, sending, folders, isolation between users."""

from __future__ import annotations

import asyncio
import base64

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bitmail.store import AlreadyExists, Batch, base
from bitmail.web.app import make_app

from conftest import Service, wait_for


async def other_client(service: Service) -> TestClient:
    client = TestClient(TestServer(make_app(service.runtime)))
    await client.start_server()
    return client


async def test_first_login_creates_the_user_and_a_wrong_password_is_401(service):
    first = await service.client.post("/api/session", json={
        "username": "Alice", "password": "pw-12345678", "create": True})
    assert first.status == 201
    body = await first.json()
    assert body["address"] == "alice@localhost" and body["csrf_token"]
    cookie = first.cookies["bitmail_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    again = await service.client.post("/api/session",
                                      json={"username": "alice", "password": "pw-12345678"})
    assert again.status == 200
    wrong = await service.client.post("/api/session", json={"username": "alice", "password": "x"})
    assert wrong.status == 401
    assert (await wrong.json())["error"]["code"] == "unauthorized"


async def test_passwords_are_stored_as_argon2_hashes(service):
    await service.login("carol", "hunter2hunter2")
    doc = await service.runtime.store.get_one("user", {"id": "carol"})
    assert doc["password"].startswith("$argon2") and "hunter2hunter2" not in doc["password"]


async def test_login_is_rate_limited_per_name(service):
    await service.login("dave", "right-password")
    for _ in range(5):
        resp = await service.client.post("/api/session",
                                         json={"username": "dave", "password": "no"})
        assert resp.status == 401
    resp = await service.client.post("/api/session",
                                     json={"username": "dave", "password": "right-password"})
    assert resp.status == 429


async def test_state_changing_requests_need_the_csrf_token(service):
    me = await service.login("erin")
    payload = {"to": "x@example.com", "subject": "s", "text": "t"}
    without = await service.client.post("/api/messages", json=payload)
    assert without.status == 403 and (await without.json())["error"]["code"] == "csrf"
    wrong = await service.client.post("/api/messages", json=payload,
                                      headers={"X-CSRF-Token": "nope"})
    assert wrong.status == 403
    right = await service.client.post("/api/messages", json=payload,
                                      headers={"X-CSRF-Token": me["csrf_token"]})
    assert right.status == 202


async def test_session_cookie_stops_working_after_logout(service):
    me = await service.login("frank")
    assert (await service.client.get("/api/me")).status == 200
    token = service.client.session.cookie_jar.filter_cookies(
        service.client.make_url("/"))["bitmail_session"].value
    out = await service.client.delete("/api/session", headers={"X-CSRF-Token": me["csrf_token"]})
    assert out.status == 204
    replay = await service.client.get("/api/me", cookies={"bitmail_session": token})
    assert replay.status == 401


async def test_validation_errors_name_the_field(service):
    headers = await service.api_key("gina")
    cases = [
        ({"to": "not-an-address"}, "to"),
        ({"to": ""}, "to"),
        ({"to": "a@example.com", "cc": "b@@example.com"}, "cc"),
        ({"to": "a@example.com", "subject": "line\r\nBcc: evil@example.com"}, "subject"),
        ({"to": "a@example.com", "headers": {"X-Tag": "a\nb"}}, "headers.X-Tag"),
        ({"to": "a@example.com", "attachments": [{"filename": "f", "content": "%%%"}]},
         "attachments[0].content"),
        ({"to": "a@example.com", "text": 5}, "text"),
    ]
    for payload, field in cases:
        resp = await service.client.post("/api/messages", json=payload, headers=headers)
        assert resp.status == 400, payload
        assert (await resp.json())["error"]["field"] == field, payload
    assert await service.runtime.store.count("message") == 0
    assert await service.runtime.outbox.pending() == 0


async def test_malformed_json_and_wrong_content_type_are_refused(service):
    headers = await service.api_key("hank")
    resp = await service.client.post("/api/messages", data=b"{not json",
                                     headers={**headers, "Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_json"
    resp = await service.client.post("/api/messages", data=b"to=a", headers={
        **headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 400


async def test_oversize_message_is_413_and_nothing_is_stored(make_settings):
    from conftest import start_service

    settings = make_settings("max_message_size = 1000\n")
    async with start_service(settings) as svc:
        headers = await svc.api_key("ivan")
        resp = await svc.client.post("/api/messages", headers=headers,
                                     json={"to": "a@example.com", "text": "x" * 2000})
        assert resp.status == 413
        assert await svc.runtime.store.count("message") == 0


async def test_oversize_request_body_is_413(make_settings):
    from conftest import start_service

    settings = make_settings("[web]\nmax_body = 10000\n")
    async with start_service(settings) as svc:
        headers = await svc.api_key("judy")
        resp = await svc.client.post("/api/messages", headers=headers,
                                     json={"to": "a@example.com", "text": "x" * 20000})
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "too_large"


async def test_users_only_ever_see_their_own_mail(service):
    alice = await service.api_key("alice")
    bob = await service.api_key("bob")
    resp = await service.client.post("/api/messages", headers=alice, json={
        "to": "x@example.com", "subject": "private", "text": "t",
        "attachments": [{"filename": "a.txt", "content": base64.b64encode(b"hi").decode()}]})
    message_id = (await resp.json())["id"]
    assert (await service.client.get(f"/api/messages/{message_id}", headers=alice)).status == 200
    for path in (f"/api/messages/{message_id}", f"/api/messages/{message_id}/attachments/0"):
        resp = await service.client.get(path, headers=bob)
        assert resp.status == 404, path
    resp = await service.client.patch(f"/api/messages/{message_id}", headers=bob,
                                      json={"unread": True})
    assert resp.status == 404
    sent = await (await service.client.get("/api/messages?folder=sent", headers=bob)).json()
    assert sent["messages"] == []


async def test_mail_to_a_local_user_lands_in_their_inbox_without_a_provider(service):
    alice = await service.api_key("alice")
    bob = await service.api_key("bob")
    resp = await service.client.post("/api/messages", headers=alice, json={
        "to": "bob@localhost; nobody@localhost", "bcc": "carol@example.com",
        "subject": "hello bob", "text": "hi"})
    assert resp.status == 202
    inbox = await (await service.client.get("/api/messages?folder=inbox", headers=bob)).json()
    assert [m["subject"] for m in inbox["messages"]] == ["hello bob"]
    opened = await (await service.client.get(
        f"/api/messages/{inbox['messages'][0]['id']}", headers=bob)).json()
    assert opened["bcc"] == []  # bob must not learn about the bcc
    sent = await (await service.client.get(f"/api/messages/{(await resp.json())['id']}",
                                           headers=alice)).json()
    statuses = {r["address"]: r["status"] for r in sent["recipients"]}
    assert statuses["bob@localhost"] == "delivered"
    assert statuses["nobody@localhost"] == "failed"


async def test_idempotency_key_returns_the_first_answer(service):
    headers = {**await service.api_key("kim"), "Idempotency-Key": "order-17"}
    payload = {"to": "a@example.com", "subject": "once", "text": "t"}
    first = await (await service.client.post("/api/messages", json=payload, headers=headers)).json()
    second = await service.client.post("/api/messages", json=payload, headers=headers)
    assert second.status == 202 and (await second.json())["id"] == first["id"]
    assert await service.runtime.store.count("message", {"owner": "kim"}) == 1


@pytest.mark.parametrize("key", [None, "order-18"], ids=["plain", "with-idempotency-key"])
async def test_new_mail_never_takes_the_place_of_a_document_with_its_id(store_service, key):
    """Mail is written as new documents (insert only): when its ids are taken
    (nothing BitMail writes can take them: a store id comes from a counter
    that anybody can read off their own ids), nothing of it is stored and
    the documents that had the ids stay as they were, on every store."""
    service = store_service
    store = service.runtime.store
    alice = await service.api_key("alice")
    await service.api_key("bob")
    seen = base.new_id()  # the last id the store handed out, and so the next ones
    prefix, counter = seen[:12], int(seen[12:], 16)
    taken = [f"{prefix}{counter + k:010x}" for k in range(1, 13)]
    batch = Batch()
    for doc_id in taken:
        batch.put("message", {"owner": "bob", "folder": "inbox", "subject": "kept"}, id=doc_id)
        batch.put("body", {"kept": True}, id=doc_id)
        batch.put("outbox", {"kept": True, "due": None}, id=doc_id)
    await store.commit(batch)
    before = {kind: await store.count(kind) for kind in ("message", "body", "outbox")}

    headers = {**alice, "Idempotency-Key": key} if key else alice
    resp = await service.client.post("/api/messages", headers=headers, json={
        "to": "bob@localhost; y@example.com", "subject": "new", "text": "t"})
    assert resp.status == 409, await resp.text()
    assert {kind: await store.count(kind) for kind in before} == before
    for doc_id in taken:
        assert (await store.get_one("message", {"id": doc_id}))["subject"] == "kept"
        assert (await store.get_one("body", {"id": doc_id}))["kept"] is True
        assert (await store.get_one("outbox", {"id": doc_id}))["kept"] is True
    assert await store.count("idempotency") == 0
    with pytest.raises(AlreadyExists):  # mail that comes in: the same
        await service.runtime.mailbox.deliver("bob", b"Subject: in\r\n\r\nx\r\n",
                                              received_via="local-domain")
    assert {kind: await store.count(kind) for kind in before} == before


async def test_folders_page_newest_first(service):
    headers = await service.api_key("leo")
    for i in range(5):
        await service.client.post("/api/messages", headers=headers,
                                  json={"to": "a@example.com", "subject": f"m{i}"})
    page = await (await service.client.get("/api/messages?folder=sent&limit=3",
                                           headers=headers)).json()
    assert [m["subject"] for m in page["messages"]] == ["m4", "m3", "m2"]
    rest = await (await service.client.get(
        f"/api/messages?folder=sent&limit=3&before={page['next']}", headers=headers)).json()
    assert [m["subject"] for m in rest["messages"]] == ["m1", "m0"] and rest["next"] is None


async def test_sent_message_reaches_the_local_provider_with_status_sent(service):
    headers = await service.api_key("mia")
    resp = await service.client.post("/api/messages", headers=headers,
                                     json={"to": "a@example.com", "subject": "out"})
    message_id = (await resp.json())["id"]

    async def sent():
        doc = await (await service.client.get(f"/api/messages/{message_id}",
                                              headers=headers)).json()
        return doc["status"] == "sent" and doc

    doc = await wait_for(sent)
    assert doc["recipients"][0]["provider"] == "local"
    outgoing = list((service.runtime.settings.data_dir / "outgoing").glob("*.eml"))
    assert len(outgoing) == 1 and b"Subject: out" in outgoing[0].read_bytes()


async def test_bearer_with_an_unknown_key_is_401(service):
    resp = await service.client.get("/api/me", headers={"Authorization": "Bearer bm_nope"})
    assert resp.status == 401


async def test_api_key_requests_need_no_csrf_token(service):
    headers = await service.api_key("nina")
    resp = await service.client.post("/api/messages", headers=headers,
                                     json={"to": "a@example.com"})
    assert resp.status == 202


async def test_search_finds_by_field_and_word_across_pages(service):
    headers = await service.api_key("olga")
    for i in range(250):
        await service.client.post("/api/messages", headers=headers, json={
            "to": f"r{i}@example.com", "subject": "needle" if i == 3 else f"hay {i}",
            "text": "plain words"})
    page = await (await service.client.get("/api/messages?folder=sent&q=subject:needle",
                                           headers=headers)).json()
    assert [m["subject"] for m in page["messages"]] == ["needle"]
    page = await (await service.client.get("/api/messages?folder=sent&q=to:r7@ hay",
                                           headers=headers)).json()
    assert {m["subject"] for m in page["messages"]} == {"hay 7"}
    nothing = await (await service.client.get("/api/messages?folder=sent&q=is:unread",
                                              headers=headers)).json()
    assert nothing == {"messages": [], "next": None}


async def test_sent_rows_carry_each_recipients_status(service):
    headers = await service.api_key("pia")
    await service.api_key("quinn")
    await service.client.post("/api/messages", headers=headers,
                              json={"to": "quinn@localhost; nobody@localhost"})
    [row] = (await (await service.client.get("/api/messages?folder=sent",
                                             headers=headers)).json())["messages"]
    assert row["recipients"] == [{"address": "quinn@localhost", "status": "delivered"},
                                 {"address": "nobody@localhost", "status": "failed"}]


async def test_mail_html_is_served_as_its_own_sandboxed_document(service):
    alice = await service.api_key("alice")
    bob = await service.api_key("bob")
    resp = await service.client.post("/api/messages", headers=alice, json={
        "to": "bob@localhost", "html": "<p style='color:red'>hi</p><script>x()</script>"})
    [row] = (await (await service.client.get("/api/messages?folder=inbox",
                                             headers=bob)).json())["messages"]
    opened = await (await service.client.get(f"/api/messages/{row['id']}",
                                             headers=bob)).json()
    page = await service.client.get(opened["html_url"], headers=bob)
    assert page.status == 200 and page.content_type == "text/html"
    policy = page.headers["Content-Security-Policy"]
    # Links may open new tabs (popups, outside the sandbox); nothing else is allowed.
    sandbox = policy.split(";")[0].split()
    assert sandbox == ["sandbox", "allow-popups", "allow-popups-to-escape-sandbox"]
    assert "script-src" not in policy
    assert "default-src 'none'" in policy
    assert page.headers["Referrer-Policy"] == "no-referrer"
    body = await page.text()
    assert body.startswith('<base target="_blank">') and "<p style='color:red'>hi</p>" in body
    assert (await service.client.get(opened["html_url"], headers=alice)).status == 404
    sent_id = (await resp.json())["id"]
    assert (await service.client.get(f"/api/messages/{sent_id}/html",
                                     headers=bob)).status == 404


async def test_two_first_logins_with_one_name_create_one_user(service):
    first, second = await asyncio.gather(
        service.client.post("/api/session", json={"username": "race", "password": "password-one",
                                                  "create": True}),
        service.client.post("/api/session", json={"username": "race", "password": "password-two",
                                                  "create": True}))
    assert sorted([first.status, second.status]) == [201, 401]
    winner = "password-one" if first.status == 201 else "password-two"
    again = await service.client.post("/api/session",
                                      json={"username": "race", "password": winner})
    assert again.status == 200
