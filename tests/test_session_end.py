"""The live-update stream ends when the session (or API key) it was opened
with ends: logout, expiry, revocation, in every process (issue 11, item 5)."""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp
import pytest

from bitmail.web import credentials

from conftest import start_service


@pytest.fixture(autouse=True)
def no_polling(monkeypatch):
    # Only the event under test may end a stream, not the periodic re-read.
    monkeypatch.setattr(credentials, "RECHECK", 60.0)


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
