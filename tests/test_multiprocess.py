"""Several BitMail processes on one PostgreSQL database form one service:
sessions, live updates and the outbox are shared, and a process killed
mid-stream loses nothing that was accepted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from test_durability import make_key, send_many

from bitmail.testing.mailgun import FakeMailgun

from conftest import (
    ServeProcess,
    free_port,
    fresh_database,
    pg_reset,
    start_service,
    wait_for,
    write_config,
)

LEASE = 3.0  # seconds: a killed process's claims come back this fast




@pytest.fixture
def fresh_db() -> Iterator[str]:
    """A database of its own for this test."""
    with fresh_database() as url:
        yield url


@pytest.fixture
async def fake() -> AsyncIterator[FakeMailgun]:
    async with FakeMailgun(api_key="key-multi") as f:
        yield f


def service_config(directory: Path, db_url: str, fake: FakeMailgun, port: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return write_config(directory, f"""
        [store]
        url = "{db_url}"

        [mta]
        lease = "{LEASE}s"
        retry_base = "0.2s"
        retry_max = "1s"

        [[mta.providers]]
        name = "mailgun"
        type = "mailgun"
        api_key = "{fake.api_key}"
        domain = "mg.example.com"
        base_url = "{fake.url}"
        timeout = "2s"
    """, port=port)


@pytest.fixture
async def pair(tmp_path, fresh_db, fake) -> AsyncIterator[tuple[ServeProcess, ServeProcess]]:
    """Two `serve` processes on one fresh database, both sending to `fake`."""
    procs = []
    for name in ("a", "b"):
        port = free_port()
        config = service_config(tmp_path / name, fresh_db, fake, port)
        procs.append(ServeProcess(config, port, tmp_path / f"serve-{name}.log"))
    # At once: the schema is made under the advisory lock by whichever comes first.
    await asyncio.gather(*(p.start() for p in procs))
    try:
        yield procs[0], procs[1]
    finally:
        for p in procs:
            p.kill(signal.SIGTERM)


# -- sessions and live updates --------------------------------------------------

async def login(http: aiohttp.ClientSession, url: str, username: str) -> dict[str, str]:
    """Log in (creating the account if new); the headers a browser would send
    afterwards (cookie and CSRF token)."""
    async with http.post(f"{url}/api/session", json={
            "username": username, "password": "password-" + username, "create": True}) as resp:
        assert resp.status in (200, 201), await resp.text()
        body = await resp.json()
        cookie = resp.cookies["bitmail_session"].value
    return {"Cookie": f"bitmail_session={cookie}", "X-CSRF-Token": body["csrf_token"]}


class EventStream:
    """An open GET /api/events, read event by event."""

    def __init__(self, resp: aiohttp.ClientResponse):
        self.resp = resp

    async def next(self, timeout: float) -> tuple[str, dict]:
        kind, data = "message", ""
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.resp.content.readline()).decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data += line[6:]
                elif not line and data:
                    return kind, json.loads(data)

    async def messages(self, within: float) -> list[dict]:
        """Every message event (not provider figures) that arrives within `within` s."""
        found = []
        deadline = time.monotonic() + within
        with contextlib.suppress(TimeoutError):
            while (left := deadline - time.monotonic()) > 0:
                kind, data = await self.next(left)
                if kind in ("message", "status"):
                    found.append(data)
        return found


@contextlib.asynccontextmanager
async def events(http: aiohttp.ClientSession, url: str,
                 headers: dict[str, str]) -> AsyncIterator[EventStream]:
    async with http.get(f"{url}/api/events", headers=headers) as resp:
        assert resp.status == 200
        assert (await resp.content.readline()).startswith(b"retry:")
        yield EventStream(resp)


async def test_a_message_accepted_by_one_process_reaches_the_right_user_live_on_another(
        make_settings, pg_url) -> None:
    """In one test process, two runtimes on their own PostgresStores: as two processes."""
    pg_reset(pg_url)
    settings = make_settings(f'[store]\nurl = "{pg_url}"\n')
    async with start_service(settings) as a, start_service(settings) as b:
        alice = await a.api_key("alice")
        bob, carol = await b.api_key("bob"), await b.api_key("carol")
        async with b.client.get("/api/events", headers=bob) as to_bob, \
                b.client.get("/api/events", headers=carol) as to_carol:
            for stream in (to_bob, to_carol):
                assert (await stream.content.readline()).startswith(b"retry:")
            resp = await a.client.post("/api/messages", headers=alice, json={
                "to": "bob@localhost", "subject": "across processes", "text": "hi"})
            assert resp.status == 202
            bobs = await EventStream(to_bob).messages(within=2.0)
            carols = await EventStream(to_carol).messages(within=0.5)
    assert any(m.get("subject") == "across processes" and m.get("folder") == "inbox"
               for m in bobs), bobs
    assert carols == []


@pytest.mark.slow
async def test_a_session_made_on_one_process_works_on_the_other(pair) -> None:
    a, b = pair
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        headers = await login(http, a.url, "dora")
        async with http.get(f"{b.url}/api/me", headers=headers) as resp:
            assert resp.status == 200
            assert (await resp.json())["username"] == "dora"
        async with http.post(f"{b.url}/api/messages", headers=headers, json={
                "to": "dora@localhost", "subject": "note to self"}) as resp:
            assert resp.status == 202, await resp.text()
        async with http.get(f"{a.url}/api/messages?folder=inbox", headers=headers) as resp:
            assert resp.status == 200
            inbox = (await resp.json())["messages"]
        async with http.get(f"{b.url}/api/messages?folder=sent", headers=headers) as resp:
            sent = (await resp.json())["messages"]
    assert [m["subject"] for m in inbox] == ["note to self"]
    assert [m["subject"] for m in sent] == ["note to self"]


@pytest.mark.slow
async def test_a_message_sent_through_one_process_shows_up_live_on_the_other(
        pair, fake) -> None:
    a, b = pair
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        alice = await login(http, a.url, "alice")
        bob, carol = await login(http, b.url, "bob"), await login(http, b.url, "carol")
        async with events(http, b.url, bob) as to_bob, events(http, b.url, carol) as to_carol, \
                events(http, b.url, alice) as to_alice:
            async with http.post(f"{a.url}/api/messages", headers=alice, json={
                    "to": "bob@localhost; someone@example.com", "subject": "live"}) as resp:
                assert resp.status == 202
                sent_id = (await resp.json())["id"]
            bobs = await to_bob.messages(within=3.0)
            alices = await to_alice.messages(within=1.0)
            carols = await to_carol.messages(within=0.5)
    assert any(m["subject"] == "live" and m["folder"] == "inbox" for m in bobs), bobs
    # The sender sees her Sent copy, and its status change when a process sends it.
    assert any(m["id"] == sent_id for m in alices), alices
    assert carols == []
    await wait_for(lambda: len(fake.received) == 1)


# -- a process killed mid-stream -----------------------------------------------------

async def outbox_entries(db_url: str) -> Counter:
    """Outbox entries left, leased or not, per lease owner ("" for none)."""
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT coalesce(data->>'lease_owner', '') AS owner, "
                                "count(*) AS n FROM docs WHERE kind = 'outbox' GROUP BY 1")
    finally:
        await conn.close()
    return Counter({r["owner"]: r["n"] for r in rows})


async def leased(db_url: str) -> Counter:
    """Outbox entries under a lease right now, per lease owner."""
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT data->>'lease_owner' AS owner, count(*) AS n FROM docs "
            "WHERE kind = 'outbox' AND data ? 'lease_owner' "
            "AND (data->>'due')::float8 > extract(epoch FROM clock_timestamp()) GROUP BY 1")
    finally:
        await conn.close()
    return Counter({r["owner"]: r["n"] for r in rows})


@pytest.mark.slow
async def test_killing_one_of_two_processes_mid_stream_loses_nothing(
        pair, fake, fresh_db, capsys) -> None:
    a, b = pair
    key = await make_key(a.config_path)
    via_a: dict[str, str] = {}
    via_b: dict[str, str] = {}
    total = 400
    sending = asyncio.gather(send_many(a.url, key, total // 2, via_a),
                             send_many(b.url, key, total // 2, via_b))
    await wait_for(lambda: len(via_a) >= 60, timeout=30, interval=0.002)
    a.kill(signal.SIGKILL)
    at_kill = {"accepted_a": dict(via_a), "delivered": {r.message_id for r in fake.received}}
    held = await leased(fresh_db)
    await sending

    accepted = {**via_a, **via_b}
    await wait_for(lambda: set(accepted.values()) <= {r.message_id for r in fake.received},
                   timeout=60, interval=0.1)
    # Nothing can come twice once no entry is left (a killed process's sends
    # whose answers it never recorded come back when their lease runs out).
    async def outbox_empty() -> bool:
        return sum((await outbox_entries(fresh_db)).values()) == 0

    await wait_for(outbox_empty, timeout=60, interval=0.1)
    arrivals = Counter(r.message_id for r in fake.received)
    duplicates = sum(n - 1 for n in arrivals.values())
    twice = {mid for mid, n in arrivals.items() if n > 1}
    in_flight = sum(held.values())
    undelivered_a = len(set(at_kill["accepted_a"].values()) - at_kill["delivered"])
    with capsys.disabled():
        print(f"\n  two processes, one SIGKILLed: {len(via_a)} accepted by it, {len(via_b)} "
              f"by the other, all {len(accepted)} delivered; {duplicates} delivered twice "
              f"({len(twice & set(via_b.values()))} of them accepted by the survivor)"
              f"\n  at the kill: {in_flight} outbox entries under lease "
              f"(per process: {', '.join(map(str, held.values())) or 'none'}); "
              f"{undelivered_a} of the killed process's accepted not yet delivered")
    assert b.proc.poll() is None, b.output()[-3000:]
    # A duplicate is a message the killed process had sent but not yet
    # recorded: it held it under a lease at the kill.
    assert duplicates <= in_flight
