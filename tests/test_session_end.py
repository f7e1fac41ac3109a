"""The live-update stream ends when the session (or API key) it was opened
with ends: logout, expiry, revocation, in every process (issue 11, item 5)."""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp
import pytest

from bitmail import live
from bitmail.web import credentials

from conftest import start_service


@pytest.fixture(autouse=True)
def no_polling(monkeypatch):
    # Only the event under test may end a stream, not the periodic re-read.
    monkeypatch.setattr(credentials, "RECHECK", 3600.0)


async def open_stream(client, **kw) -> aiohttp.ClientResponse:
    resp = await client.get("/api/events", **kw)
    assert resp.status == 200
    assert b"connected" in await resp.content.readuntil(b"connected")
    return resp


async def ends(resp: aiohttp.ClientResponse, within: float = 10.0) -> bool:
    """True when the stream closes within `within` seconds."""
    try:
        await asyncio.wait_for(resp.content.read(), within)
    except TimeoutError:
        return False
    return resp.content.at_eof()


async def test_logging_out_ends_the_stream(service):
    me = await service.login("alice")
    stream = await open_stream(service.client)
    resp = await service.client.delete("/api/session", headers={"X-CSRF-Token": me["csrf_token"]})
    assert resp.status == 204
    assert await ends(stream)


async def test_an_expired_session_ends_its_stream(service):
    await service.login("alice")
    token = service.client.session.cookie_jar.filter_cookies(
        service.client.make_url("/"))["bitmail_session"].value
    digest = hashlib.sha256(token.encode()).hexdigest()
    now = service.runtime.accounts.clock()
    await service.runtime.store.update("session", digest, {"expires": now + 1.0})
    stream = await open_stream(service.client)
    assert await ends(stream, within=8.0)
    assert (await service.client.get("/api/me")).status == 401


async def test_a_revoked_key_ends_its_stream(service):
    headers = await service.api_key("alice")
    stream = await open_stream(service.client, headers=headers)
    [info] = await service.runtime.accounts.keys.list("alice")
    await service.runtime.accounts.keys.revoke(info.id)
    assert await ends(stream)


async def test_a_stream_polls_for_what_another_process_changed_on_sqlite(service, monkeypatch):
    """An admin command against an SQLite file cannot reach the service's
    listeners: the stream's periodic re-read ends it."""
    monkeypatch.setattr(credentials, "RECHECK", 0.3)
    headers = await service.api_key("alice")
    stream = await open_stream(service.client, headers=headers)
    [doc] = await service.runtime.store.get("apikey")
    await service.runtime.store.delete("apikey", doc["id"])  # no notice published
    assert await ends(stream, within=5.0)


async def busy(service, traffic: str, headers: dict[str, str]) -> None:
    """What keeps a service busy: Bob's page saving his draft as he types
    (payloads for another user), or mail for the stream's user itself; a
    payload every 0.1 s, so a stream never waits long for the next one."""
    for i in range(200):
        if traffic == "others-drafts":
            await service.client.put("/api/drafts/bobsdraft1", headers=headers,
                                     json={"text": f"typing {i}"})
        else:
            await service.client.post("/api/messages", headers=headers, json={
                "to": "alice@localhost", "subject": f"busy {i}"})
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("traffic", ["others-drafts", "mail-for-the-user"])
async def test_a_key_revoked_by_another_process_ends_its_stream_on_a_busy_service(
        service, monkeypatch, traffic):
    """What another process changed (`bitmail apikey revoke` against the
    SQLite file, a purge) reaches the stream only by its re-read, every
    RECHECK seconds; payloads keep coming on a service in use (every
    user's reach every stream), and must not put the re-read off for good."""
    monkeypatch.setattr(credentials, "RECHECK", 0.5)
    alice, bob = await service.api_key("alice"), await service.api_key("bob")
    stream = await open_stream(service.client, headers=alice)
    working = asyncio.create_task(busy(service, traffic, bob))
    try:
        await asyncio.sleep(0.5)
        [doc] = await service.runtime.store.get("apikey", {"username": "alice"})
        await service.runtime.store.delete("apikey", doc["id"])  # nothing published
        assert (await service.client.get("/api/me", headers=alice)).status == 401
        await asyncio.sleep(2.0)  # four RECHECK periods
        await service.client.post("/api/messages", headers=bob, json={
            "to": "alice@localhost", "subject": "after revocation"})
        try:
            # Ends at the end of the stream, or once the new mail went out on it.
            seen = await asyncio.wait_for(stream.content.readuntil(b"after revocation"), 5.0)
        except TimeoutError:
            pytest.fail("the stream of a revoked key is still open")
        assert b"after revocation" not in seen, seen[-400:]
        assert stream.content.at_eof()
    finally:
        working.cancel()
        stream.close()


async def test_a_stream_seeing_only_other_users_updates_still_keeps_alive(service, monkeypatch):
    """The comment lines that keep proxies from closing an idle stream are
    due by time, not only when no payload at all came for a while."""
    monkeypatch.setattr(credentials, "KEEP_ALIVE", 1.0)
    alice, bob = await service.api_key("alice"), await service.api_key("bob")
    stream = await open_stream(service.client, headers=alice)
    working = asyncio.create_task(busy(service, "others-drafts", bob))
    try:
        await asyncio.wait_for(stream.content.readuntil(b"keep-alive"), 5.0)
    except TimeoutError:
        pytest.fail("no keep-alive in 5 s on a stream that wrote nothing else")
    finally:
        working.cancel()
        stream.close()


async def test_the_end_of_a_credential_is_never_lost_behind_a_full_queue(service):
    """The stream's queue holds so many payloads; past that they are dropped
    (the page resynchronises). A burst (another process's live updates read
    in one go) fills it before the stream reads any: the notice that its
    key was revoked, right behind, still ends it (the re-read is an hour
    off here: only the notice can)."""
    headers = await service.api_key("alice")
    stream = await open_stream(service.client, headers=headers)
    [doc] = await service.runtime.store.get("apikey", {"username": "alice"})
    await service.runtime.store.delete("apikey", doc["id"])
    hub = service.runtime.store.hub
    for i in range(3000):
        hub.deliver({"type": "message", "owner": "bob", "message": {"id": str(i)}})
    hub.deliver(live.credential_ended(f"apikey:{doc['id']}"))
    assert await ends(stream)


@pytest.mark.postgres
async def test_logging_out_in_one_process_ends_the_stream_in_another(make_settings, pg_url):
    from conftest import pg_reset

    pg_reset(pg_url)
    settings = make_settings(f'[store]\nurl = "{pg_url}"\n')
    async with start_service(settings) as one, start_service(settings) as two:
        me = await one.login("alice")
        cookie = one.client.session.cookie_jar.filter_cookies(
            one.client.make_url("/"))["bitmail_session"].value
        stream = await open_stream(two.client,
                                   headers={"Cookie": f"bitmail_session={cookie}"})
        resp = await one.client.delete("/api/session",
                                       headers={"X-CSRF-Token": me["csrf_token"]})
        assert resp.status == 204
        assert await ends(stream)
