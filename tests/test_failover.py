"""Failover through the real HTTP API and the real Mailgun provider, against
two loopback Mailgun fakes; and a message one provider cannot carry, sent by
another."""

from __future__ import annotations

import signal
from collections import Counter

import pytest
from test_durability import make_key, send_many

from bitmail.message.submission import submitted
from bitmail.testing import FakeMandrill
from bitmail.testing.mailgun import FakeMailgun

from conftest import (
    ServeProcess,
    free_port,
    provider_toml,
    run_relay,
    start_service,
    wait_for,
    write_config,
)


def mailgun_providers(*fakes: FakeMailgun, threshold: int = 3) -> str:
    return "".join(f"""
[[mta.providers]]
name = "mailgun-{i}"
type = "mailgun"
api_key = "{fake.api_key}"
domain = "mg.example.com"
base_url = "{fake.url}"
timeout = "2s"
failure = {{ threshold = {threshold}, retry_after = "60s" }}
""" for i, fake in enumerate(fakes))


@pytest.fixture
async def fakes():
    async with FakeMailgun(api_key="key-a") as a, FakeMailgun(api_key="key-b") as b:
        yield a, b


async def test_first_provider_failing_with_500s_sends_everything_once_through_the_second(
        make_settings, fakes):
    failing, working = fakes
    failing.fail_always(500)
    settings = make_settings(mailgun_providers(failing, working) + "[mta]\nretry_base = 0.1\n")
    async with start_service(settings) as svc:
        headers = await svc.api_key("alice", operator=True)
        sent = []
        for i in range(30):
            resp = await svc.client.post("/api/messages", headers=headers, json={
                "to": f"r{i}@example.com", "cc": "cc@example.com", "subject": f"m{i}"})
            assert resp.status == 202
            sent.append((await resp.json())["message_id"])
        await wait_for(lambda: len({r.message_id for r in working.received}) >= 30)
        providers = {p["name"]: p for p in
                     (await (await svc.client.get("/api/providers", headers=headers)).json())
                     ["providers"]}
    arrivals = Counter(r.message_id for r in working.received)
    assert set(arrivals) == set(sent)
    assert max(arrivals.values()) == 1, "a message arrived twice"
    assert providers["mailgun-0"]["state"] == "down"
    assert providers["mailgun-1"]["state"] == "up"
    assert providers["mailgun-0"]["failed"] >= 3
    assert "key-a" not in str(providers)


async def test_a_message_that_failed_over_shows_both_tries_and_one_message_id(
        make_settings, fakes):
    failing, working = fakes
    failing.fail_next(1, 503)
    settings = make_settings(mailgun_providers(failing, working, threshold=10))
    async with start_service(settings) as svc:
        headers = await svc.api_key("bob")
        resp = await svc.client.post("/api/messages", headers=headers,
                                     json={"to": "x@example.com", "subject": "hop"})
        body = await resp.json()

        async def sent():
            doc = await (await svc.client.get(f"/api/messages/{body['id']}",
                                              headers=headers)).json()
            return doc if doc["status"] == "sent" else None

        doc = await wait_for(sent)
    types = [(e["type"], e["provider"]) for e in doc["events"]]
    assert ("deferred", "mailgun-0") in types and ("sent", "mailgun-1") in types
    assert doc["recipients"][0]["provider"] == "mailgun-1"
    assert [r.message_id for r in working.received] == [body["message_id"]]


@pytest.mark.slow
async def test_every_provider_refusing_credentials_stops_the_service_and_a_restart_delivers(
        tmp_path, fakes):
    a, b = fakes
    a.fail_always(401)
    b.fail_always(401)
    port = free_port()
    config = write_config(tmp_path, mailgun_providers(a, b, threshold=2), port=port)
    key = await make_key(config)
    server = await ServeProcess(config, port, tmp_path / "serve.log").start()
    accepted: dict[str, str] = {}
    await send_many(server.url, key, 20, accepted)
    assert await server.wait(timeout=30) == 3
    log = server.output()
    assert "service down" in log and "key-a" not in log and "key-b" not in log
    assert len(accepted) == 20

    a.heal()
    b.heal()
    server = await ServeProcess(config, port, tmp_path / "serve2.log").start()
    try:
        await wait_for(lambda: set(accepted.values()) <= {
            r.message_id for r in (*a.received, *b.received)}, timeout=30)
    finally:
        server.kill(signal.SIGTERM)
    arrivals = Counter(r.message_id for r in (*a.received, *b.received))
    assert max(arrivals.values()) == 1


LATIN1 = (b"From: alice@localhost\r\nTo: bob@example.com\r\nSubject: menu\r\n"
          b"Message-ID: <menu-1@client.example>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
          b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
          b"Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xe9 cr\xe8me br\xfbl\xe9e\r\n")


async def test_a_message_mandrill_cannot_carry_goes_out_through_the_relay(
        make_settings, certificate):
    # 8-bit Latin-1, as SMTP submission takes it: Mandrill's send-raw cannot
    # carry these bytes, the relay next to it can; the message is fine.
    message = submitted(LATIN1, user_address="alice@localhost",
                        recipients=["bob@example.com"], domain="localhost")
    async with FakeMandrill(api_key="md-key") as mandrill:
        relay_at = next(relays := run_relay(certificate, starttls=False))
        try:
            config = (provider_toml("mandrill", "mandrill", api_key="md-key",
                                    base_url=f"{mandrill.url}/api/1.0")
                      + provider_toml("relay", "smtp", host="127.0.0.1", port=relay_at.port,
                                      tls="none"))
            async with start_service(make_settings(config)) as svc:
                mailbox = svc.runtime.mailbox
                message_id = await mailbox.accept(message, "alice")
                doc = await wait_for(lambda: _settled(mailbox, message_id))
        finally:
            relays.close()
    [recipient] = doc["recipients"]
    assert (recipient["status"], recipient["provider"]) == ("sent", "relay")
    [got] = relay_at.relay.received
    assert got.content == message.mime and mandrill.requests == 0


async def _settled(mailbox, message_id):
    doc = await mailbox.get("alice", message_id)
    return doc if doc["status"] not in ("queued", "deferred") else None
