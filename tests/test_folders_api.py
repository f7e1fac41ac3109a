"""Folders (issue 12, items 1 and 4): move, Trash, delete for good, bulk,
true counts, mark read/unread and mark all read."""

from __future__ import annotations

from bitmail.folders import Folders
from bitmail.store import Kind

from conftest import Service


async def send(service: Service, headers: dict, to: str, subject: str) -> str:
    resp = await service.client.post("/api/messages", headers=headers,
                                     json={"to": to, "subject": subject, "text": "hello"})
    assert resp.status == 202, await resp.text()
    return (await resp.json())["id"]


async def folder(service: Service, headers: dict, name: str, **query) -> list[dict]:
    resp = await service.client.get("/api/messages", headers=headers,
                                    params={"folder": name, **query})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["messages"]


async def counts(service: Service, headers: dict) -> dict[str, dict]:
    resp = await service.client.get("/api/folders", headers=headers)
    assert resp.status == 200
    return {f["name"]: f for f in await resp.json()}


async def inbox_ids(service: Service, headers: dict) -> list[str]:
    return [m["id"] for m in await folder(service, headers, "inbox")]


async def test_a_message_moves_to_archive_and_trash_and_back(service):
    alice, bob = await service.api_key("alice"), await service.api_key("bob")
    await send(service, alice, "bob@localhost", "Move me")
    (mid,) = await inbox_ids(service, bob)
    for target in ("archive", "trash", "inbox"):
        resp = await service.client.patch(f"/api/messages/{mid}", headers=bob,
                                          json={"folder": target})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["folder"] == target
        assert [m["id"] for m in await folder(service, bob, target)] == [mid]
        others = {"inbox", "archive", "trash"} - {target}
        for name in others:
            assert await folder(service, bob, name) == []


async def test_a_sent_copy_goes_to_trash_and_back_to_sent_but_never_into_the_inbox(service):
    alice = await service.api_key("alice")
    mid = await send(service, alice, "x@example.com", "Mine")
    bad = await service.client.patch(f"/api/messages/{mid}", headers=alice,
                                     json={"folder": "inbox"})
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "folder"
    for target in ("trash", "sent"):
        resp = await service.client.patch(f"/api/messages/{mid}", headers=alice,
                                          json={"folder": target})
        assert resp.status == 200
        assert [m["id"] for m in await folder(service, alice, target)] == [mid]


async def test_received_mail_cannot_be_moved_to_sent_nor_to_an_unknown_folder(service):
    alice, bob = await service.api_key("alice"), await service.api_key("bob")
    await send(service, alice, "bob@localhost", "Received")
    (mid,) = await inbox_ids(service, bob)
    for body in ({"folder": "sent"}, {"folder": "spam"}, {"folder": "drafts"}, {"unread": "yes"},
                 {}, {"colour": "red"}):
        resp = await service.client.patch(f"/api/messages/{mid}", headers=bob, json=body)
        assert resp.status == 400, body
        assert (await resp.json())["error"]["field"] in ("folder", "unread", "colour")
    assert await inbox_ids(service, bob) == [mid]


async def test_somebody_elses_message_cannot_be_moved_or_deleted(service):
    alice, bob = await service.api_key("alice"), await service.api_key("bob")
    mid = await send(service, alice, "x@example.com", "Private")
    assert (await service.client.patch(f"/api/messages/{mid}", headers=bob,
                                       json={"folder": "trash"})).status == 404
    assert (await service.client.delete(f"/api/messages/{mid}", headers=bob)).status == 404
    bulk = await service.client.post("/api/messages/bulk", headers=bob,
                                     json={"ids": [mid], "folder": "archive"})
    assert bulk.status == 404
    assert [m["id"] for m in await folder(service, alice, "sent")] == [mid]


async def test_delete_for_good_only_from_trash_and_the_body_goes_with_the_last_copy(service):
    store = service.runtime.store
    alice, bob = await service.api_key("alice"), await service.api_key("bob")
    sent_id = await send(service, alice, "bob@localhost", "Delete me")
    (inbox_id,) = await inbox_ids(service, bob)
    body_id = (await store.get_one("message", {"id": sent_id}))["body"]

    early = await service.client.delete(f"/api/messages/{inbox_id}", headers=bob)
    assert early.status == 409 and (await early.json())["error"]["code"] == "not_in_trash"
    assert await inbox_ids(service, bob) == [inbox_id]

    await service.client.patch(f"/api/messages/{inbox_id}", headers=bob, json={"folder": "trash"})
    assert (await service.client.delete(f"/api/messages/{inbox_id}", headers=bob)).status == 204
    assert await folder(service, bob, "trash") == []
    assert (await service.client.get(f"/api/messages/{inbox_id}", headers=bob)).status == 404
    # Alice's Sent copy still points to the body: it stays.
    assert await store.get_one(Kind.BODY, {"id": body_id}) is not None
    full = await service.client.get(f"/api/messages/{sent_id}", headers=alice)
    assert (await full.json())["text"].strip() == "hello"

    await service.client.patch(f"/api/messages/{sent_id}", headers=alice,
                               json={"folder": "trash"})
    assert (await service.client.delete(f"/api/messages/{sent_id}", headers=alice)).status == 204
    assert await store.get_one(Kind.BODY, {"id": body_id}) is None
    assert (await service.client.delete(f"/api/messages/{sent_id}", headers=alice)).status == 404


async def test_bulk_moves_marks_and_deletes_all_or_nothing(service):
    alice, bob = await service.api_key("alice"), await service.api_key("bob")
    for i in range(3):
        await send(service, alice, "bob@localhost", f"Bulk {i}")
    ids = await inbox_ids(service, bob)
    resp = await service.client.post("/api/messages/bulk", headers=bob,
                                     json={"ids": ids[:2], "folder": "archive", "unread": False})
    assert resp.status == 200 and sorted((await resp.json())["ids"]) == sorted(ids[:2])
    archived = await folder(service, bob, "archive")
    assert sorted(m["id"] for m in archived) == sorted(ids[:2])
    assert not any(m["unread"] for m in archived)

    # One unknown id: nothing at all changes.
    resp = await service.client.post("/api/messages/bulk", headers=bob,
                                     json={"ids": [ids[2], "nope"], "folder": "trash"})
    assert resp.status == 404
    assert await inbox_ids(service, bob) == [ids[2]]
    # Deleting what is not in Trash: refused, nothing deleted.
    resp = await service.client.post("/api/messages/bulk", headers=bob,
                                     json={"ids": ids, "delete": True})
    assert resp.status == 409
    assert len(await folder(service, bob, "archive")) == 2

    for body, field in (({"ids": []}, "ids"), ({"ids": "x"}, "ids"), ({"ids": [1]}, "ids"),
                        ({"ids": ids}, "folder"), ({"ids": ids, "folder": "nowhere"}, "folder"),
                        ({"ids": ids, "delete": True, "folder": "trash"}, "delete"),
                        ({"ids": ["a"] * 1001, "unread": True}, "ids")):
        resp = await service.client.post("/api/messages/bulk", headers=bob, json=body)
        assert resp.status == 400, body
        assert (await resp.json())["error"]["field"] == field, body

    resp = await service.client.post("/api/messages/bulk", headers=bob,
                                     json={"ids": ids, "folder": "trash"})
    assert resp.status == 200
    resp = await service.client.post("/api/messages/bulk", headers=bob,
                                     json={"ids": ids, "delete": True})
    assert resp.status == 200
    assert (await counts(service, bob))["trash"]["total"] == 0


async def test_counts_are_true_beyond_one_page_and_follow_reads_and_moves(service):
    alice, bob = await service.api_key("alice"), await service.api_key("bob")
    for i in range(63):
        await send(service, alice, "bob@localhost", f"Count {i}")
    first_page = await folder(service, bob, "inbox", limit="50")
    assert len(first_page) == 50
    c = await counts(service, bob)
    assert c["inbox"] == {"name": "inbox", "total": 63, "unread": 63}
    assert [name for name in c] == ["inbox", "sent", "archive", "trash", "drafts"]
    assert (await counts(service, alice))["sent"] == {"name": "sent", "total": 63, "unread": 0}

    one = first_page[0]["id"]
    await service.client.patch(f"/api/messages/{one}", headers=bob, json={"unread": False})
    assert (await counts(service, bob))["inbox"]["unread"] == 62
    await service.client.patch(f"/api/messages/{one}", headers=bob, json={"unread": True})
    assert (await counts(service, bob))["inbox"]["unread"] == 63
    await service.client.patch(f"/api/messages/{one}", headers=bob, json={"folder": "archive"})
    c = await counts(service, bob)
    assert (c["inbox"]["total"], c["inbox"]["unread"]) == (62, 62)
    assert (c["archive"]["total"], c["archive"]["unread"]) == (1, 1)

    resp = await service.client.post("/api/folders/inbox/read", headers=bob)
    assert resp.status == 200 and (await resp.json())["marked"] == 62
    c = await counts(service, bob)
    assert (c["inbox"]["unread"], c["archive"]["unread"]) == (0, 1)
    assert (await service.client.post("/api/folders/spam/read", headers=bob)).status == 400


async def test_moves_and_deletes_are_published_for_open_pages(service):
    alice, bob = await service.api_key("alice"), await service.api_key("bob")
    await send(service, alice, "bob@localhost", "Live")
    (mid,) = await inbox_ids(service, bob)
    sub = service.runtime.store.subscribe()
    try:
        await service.client.patch(f"/api/messages/{mid}", headers=bob, json={"folder": "trash"})
        await service.client.delete(f"/api/messages/{mid}", headers=bob)
        moved = await sub.queue.get()
        deleted = await sub.queue.get()
    finally:
        sub.close()
    assert (moved["type"], moved["owner"], moved["message"]["folder"]) == ("moved", "bob", "trash")
    assert (deleted["type"], deleted["message"]["id"]) == ("deleted", mid)


async def test_trash_empties_itself_after_the_configured_time(make_settings):
    from conftest import start_service

    settings = make_settings('[mail]\ntrash_after = "2d"\n')
    assert settings.trash_after == 2 * 86400
    async with start_service(settings) as service:
        alice, bob = await service.api_key("alice"), await service.api_key("bob")
        await send(service, alice, "bob@localhost", "Old")
        await send(service, alice, "bob@localhost", "New")
        old, new = sorted(await inbox_ids(service, bob))
        now = [1_000_000.0]
        folders = Folders(service.runtime.store, clock=lambda: now[0])
        await folders.change("bob", [old], folder="trash")
        now[0] += 86400
        await folders.change("bob", [new], folder="trash")
        now[0] += 86400 + 1  # old has been there two days, new one
        assert await folders.expire_trash(settings.trash_after) == 1
        assert [m["id"] for m in await folder(service, bob, "trash")] == [new]
        # Taken out of Trash, a message no longer expires.
        await folders.change("bob", [new], folder="inbox")
        now[0] += 10 * 86400
        assert await folders.expire_trash(settings.trash_after) == 0
        assert await inbox_ids(service, bob) == [new]


async def test_trash_after_must_be_a_duration(make_settings):
    import pytest

    from bitmail.config import ConfigError

    with pytest.raises(ConfigError, match=r"mail\.trash_after"):
        make_settings('[mail]\ntrash_after = "soon"\n')
