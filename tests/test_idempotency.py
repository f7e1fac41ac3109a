"""Idempotency-Key: one key, one message, however many requests race with it
(issue 11, item 8), on both stores."""

from __future__ import annotations

import asyncio

MESSAGE = {"to": "bob@example.com; carol@localhost", "subject": "once", "text": "only once"}


async def sent_count(service) -> int:
    return await service.runtime.store.count("message", {"owner": "alice", "folder": "sent"})


async def test_eight_concurrent_requests_with_one_key_send_one_message(store_service):
    headers = {**await store_service.api_key("alice"), "Idempotency-Key": "order-4711"}
    await store_service.runtime.accounts.create("carol", "correct horse battery")

    async def post():
        resp = await store_service.client.post("/api/messages", json=MESSAGE, headers=headers)
        return resp.status, await resp.json()

    answers = await asyncio.gather(*(post() for _ in range(8)))
    assert {status for status, _ in answers} == {202}, answers
    assert len({body["id"] for _, body in answers}) == 1, answers
    assert len({body["message_id"] for _, body in answers}) == 1
    assert await sent_count(store_service) == 1
    assert await store_service.runtime.store.count("message", {"owner": "carol"}) == 1
    assert await store_service.runtime.store.count("outbox") <= 1
    # And a retry much later still gets the first answer.
    assert await post() == answers[0]


async def test_the_same_key_with_another_body_is_a_422(store_service):
    headers = {**await store_service.api_key("alice"), "Idempotency-Key": "k1"}
    first = await store_service.client.post("/api/messages", json=MESSAGE, headers=headers)
    assert first.status == 202
    other = await store_service.client.post("/api/messages", headers=headers,
                                            json={**MESSAGE, "subject": "twice?"})
    assert other.status == 422
    body = await other.json()
    assert body["error"]["code"] == "idempotency_key_reused"
    assert body["error"]["field"] == "Idempotency-Key"
    assert await sent_count(store_service) == 1


async def test_the_same_json_written_differently_is_the_same_request(service):
    headers = {**await service.api_key("alice"), "Idempotency-Key": "k2",
               "Content-Type": "application/json"}
    a = await service.client.post("/api/messages", headers=headers,
                                  data=b'{"to": "b@example.com", "subject": "s"}')
    b = await service.client.post("/api/messages", headers=headers,
                                  data=b'{"subject":"s","to":"b@example.com"}')
    assert (a.status, b.status) == (202, 202)
    assert (await a.json())["id"] == (await b.json())["id"]


async def test_keys_belong_to_their_user(service):
    alice = {**await service.api_key("alice"), "Idempotency-Key": "shared"}
    bob = {**await service.api_key("bob"), "Idempotency-Key": "shared"}
    a = await service.client.post("/api/messages", json=MESSAGE, headers=alice)
    b = await service.client.post("/api/messages", json={**MESSAGE, "subject": "x"},
                                  headers=bob)
    assert (a.status, b.status) == (202, 202)
    assert (await a.json())["id"] != (await b.json())["id"]


async def test_a_refused_request_does_not_use_up_its_key(service):
    headers = {**await service.api_key("alice"), "Idempotency-Key": "k3"}
    bad = await service.client.post("/api/messages", json={"to": "not an address"},
                                    headers=headers)
    assert bad.status == 400
    good = await service.client.post("/api/messages", json=MESSAGE, headers=headers)
    assert good.status == 202


async def test_a_bad_key_is_a_400_naming_the_header(service):
    headers = {**await service.api_key("alice"), "Idempotency-Key": "x" * 201}
    resp = await service.client.post("/api/messages", json=MESSAGE, headers=headers)
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == "Idempotency-Key"
