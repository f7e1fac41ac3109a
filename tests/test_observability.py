"""What operators see: /metrics from prometheus-client, one access line per
request, structured (JSON) logs with the message id on lines about a message,
no secrets in any line, a line when the service stops, and no warnings for
every SMTP connection."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import secrets
import signal
import time
import warnings

import aiosmtplib
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bitmail import logs
from bitmail.outbox import Outbox
from bitmail.smtpd import start_smtp
from bitmail.store import Batch, open_store

from conftest import MAILGUN_KEY, ServeProcess, free_port, sent_message, track, write_config


def value(name: str, **labels: str) -> float:
    """A sample of the process-wide registry right now (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def scrape(service) -> dict[tuple[str, tuple], float]:
    """GET /metrics, parsed: {(sample name, sorted labels): value}."""
    resp = await service.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    families = text_string_to_metric_families(await resp.text())
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families for s in f.samples}


# -- /metrics ----------------------------------------------------------------------


async def test_an_accepted_message_is_counted_with_its_request(service):
    headers = await service.api_key("alice")
    accepted = value("bitmail_messages_accepted_total")
    posted = value("bitmail_http_requests_total", method="POST", route="/api/messages",
                   status="202")
    refused = value("bitmail_http_requests_total", method="POST", route="/api/messages",
                    status="400")
    resp = await service.client.post("/api/messages", headers=headers,
                                     json={"to": "bob@example.com", "subject": "s", "text": "t"})
    assert resp.status == 202
    resp = await service.client.post("/api/messages", headers=headers,
                                     json={"to": "not an address", "subject": "s"})
    assert resp.status == 400
    got = await scrape(service)
    assert got[("bitmail_messages_accepted_total", ())] == accepted + 1
    key = ("bitmail_http_requests_total",
           (("method", "POST"), ("route", "/api/messages"), ("status", "202")))
    assert got[key] == posted + 1
    assert value("bitmail_http_requests_total", method="POST", route="/api/messages",
                 status="400") == refused + 1


async def test_requests_are_counted_by_route_template_not_by_path(service):
    headers = await service.api_key("alice")
    before = value("bitmail_http_requests_total", method="GET", route="/api/messages/{id}",
                   status="404")
    for n in range(3):
        resp = await service.client.get(f"/api/messages/nope-{n}", headers=headers)
        assert resp.status == 404
    assert value("bitmail_http_requests_total", method="GET", route="/api/messages/{id}",
                 status="404") == before + 3
    text = await (await service.client.get("/metrics")).text()
    assert "nope-" not in text


async def test_a_wrong_password_is_a_login_failure(service):
    await service.login("alice", "right-password-1")
    before = value("bitmail_login_failures_total", via="web")
    resp = await service.client.post("/api/session",
                                     json={"username": "alice", "password": "wrong-password"})
    assert resp.status == 401
    assert value("bitmail_login_failures_total", via="web") == before + 1


async def test_store_commits_are_timed(store_url):
    engine = "sqlite" if store_url.startswith("sqlite") else "postgres"
    async with open_store(store_url) as store:
        before = value("bitmail_store_commit_seconds_count", store=engine)
        await store.put("note", {"n": 1})
        async with store.batch() as batch:
            batch.put("note", {"n": 2})
        assert value("bitmail_store_commit_seconds_count", store=engine) == before + 2
        assert value("bitmail_store_commit_seconds_sum", store=engine) > 0


async def test_providers_and_outbox_are_read_at_scrape_time(service):
    headers = await service.api_key("alice")
    resp = await service.client.post("/api/messages", headers=headers,
                                     json={"to": "bob@example.com", "subject": "s", "text": "t"})
    assert resp.status == 202
    got = await scrape(service)
    assert got[("bitmail_provider_up", (("provider", "local"),))] == 1
    assert ("bitmail_outbox_pending", ()) in got
    assert ("bitmail_outbox_oldest_age_seconds", ()) in got
    assert ("bitmail_provider_send_seconds_count", (("provider", "local"),)) in got
    # The process's own figures come with the library.
    assert any(name.startswith("process_") or name.startswith("python_") for name, _ in got)


async def test_oldest_outbox_age_is_that_of_the_first_entry_waiting(tmp_path):
    async with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        outbox = Outbox(store)
        assert await outbox.oldest_age(now=2000.0) == 0.0
        batch = Batch()
        for at in (1000.0, 1500.0):
            Outbox.enqueue(batch, message_doc_id="m", sender="a@x", recipients=("b@y",),
                           body="b", message_id="<m@x>", now=at)
        await store.commit(batch)
        assert await outbox.oldest_age(now=2000.0) == 1000.0


async def test_webhook_events_are_counted_by_provider_and_type(hook_service, caplog):
    caplog.set_level(logging.INFO)
    message = await sent_message(hook_service)
    await track(hook_service, "mailgun", message["message_id"].strip("<>"), message["id"])
    before = value("bitmail_webhook_events_total", provider="mailgun", type="delivered")
    ts, token = str(int(time.time())), secrets.token_hex(25)
    signature = hmac.new(MAILGUN_KEY.encode(), (ts + token).encode(), hashlib.sha256)
    resp = await hook_service.client.post("/hooks/mailgun", json={
        "signature": {"timestamp": ts, "token": token, "signature": signature.hexdigest()},
        "event-data": {"event": "delivered", "id": secrets.token_urlsafe(16),
                       "timestamp": time.time(), "recipient": "bob@example.com",
                       "message": {"headers": {"message-id": message["message_id"].strip("<>")}},
                       "delivery-status": {"code": 250, "message": "OK"}}})
    assert resp.status == 200, await resp.text()
    await hook_service.runtime.notices.idle()
    assert value("bitmail_webhook_events_total", provider="mailgun",
                 type="delivered") == before + 1
    # Every line about the message, from accept to the webhook, carries its id.
    about = [r for r in caplog.records
             if r.name.startswith("bitmail") and message["id"] in r.getMessage()]
    assert {r.name for r in about} >= {"bitmail.mailbox", "bitmail.notices.effects"}
    assert all(getattr(r, "message_doc_id", None) == message["id"] for r in about), \
        [(r.name, r.getMessage()) for r in about]


# -- logs ---------------------------------------------------------------------------


async def test_every_request_has_one_access_line_without_its_query(service, caplog):
    headers = await service.api_key("alice")
    with caplog.at_level(logging.INFO, logger="bitmail.access"):
        resp = await service.client.get("/api/messages?folder=sent&q=secret-search",
                                         headers=headers)
        assert resp.status == 200
    [line] = [r for r in caplog.records if r.name == "bitmail.access"]
    assert line.getMessage().startswith("GET /api/messages 200 ")
    assert "secret-search" not in line.getMessage()
    assert (line.route, line.status, line.user) == ("/api/messages", 200, "alice")


def json_lines(settings, emit) -> list[dict]:
    """What the configured handler writes while `emit()` runs, one JSON object a line."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter(settings))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        emit()
    finally:
        root.removeHandler(handler)
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_json_lines_about_a_message_carry_its_id(make_settings):
    settings = make_settings('[log]\nformat = "json"\n')
    from support.harness import start_service

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter(settings))
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        async with start_service(settings) as service:
            message = await sent_message(service, to="bob@example.com")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    # (aiohttp.access: the test server's own log, which `serve` turns off.)
    about = [line for line in lines if message["id"] in line["message"]
             and line["logger"] != "aiohttp.access"]
    assert {line["logger"] for line in about} >= {"bitmail.mailbox", "bitmail.mta.container"}
    assert all(line.get("message_doc_id") == message["id"] for line in about), about
    access = [line for line in lines if line["logger"] == "bitmail.access"]
    assert {"method", "path", "route", "status", "ms", "user"} <= access[0].keys()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_configured_secret_is_ever_written(make_settings, fmt):
    settings = make_settings(f'''
        [log]
        format = "{fmt}"

        [[mta.providers]]
        name = "mg"
        type = "mailgun"
        api_key = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
        domain = "mg.example.com"
        webhook_signing_key = "whsec-\\"quoted\\"-0123"
    ''')
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter(settings))
    log = logging.getLogger("some.library")
    log.addHandler(handler)
    try:
        log.warning("calling https://api:key-3ax6xnjp29jd6fds4gc373sgvjxteol0@x/ failed")
        log.warning("signing with %s", 'whsec-"quoted"-0123')
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    assert "3ax6xnjp29" not in text and "quoted" not in text
    assert text.count("***") == 2


@pytest.mark.slow
async def test_the_service_says_when_it_stops_and_logs_json_when_asked(tmp_path):
    port = free_port()
    path = write_config(tmp_path, '[log]\nformat = "json"\n', port=port)
    serve = await ServeProcess(path, port, tmp_path / "serve.log").start()
    serve.kill(signal.SIGTERM)
    assert serve.proc is not None and serve.proc.returncode == 0
    lines = [json.loads(line) for line in serve.output().splitlines() if line.strip()]
    assert lines[0]["message"].startswith("BitMail serving on http://127.0.0.1")
    assert lines[-1]["message"] == "BitMail stopped: SIGTERM received (exit code 0)"
    assert any(line["logger"] == "bitmail.access" and line["path"] == "/healthz"
               for line in lines)


async def test_smtp_connections_print_no_warnings(service, caplog):
    port = free_port()
    server = await start_smtp(service.runtime, "127.0.0.1", port)
    key = await service.runtime.accounts.create_api_key(
        (await service.runtime.accounts.create("robot", "secret-robot-pw")).username)
    try:
        with warnings.catch_warnings(record=True) as caught, \
                caplog.at_level(logging.INFO):
            warnings.simplefilter("always")
            for _ in range(2):
                await aiosmtplib.send("Subject: hi\r\n\r\nhello\r\n", sender="robot@localhost",
                                      recipients=["bob@example.com"], hostname="127.0.0.1",
                                      port=port, username="robot", password=key)
    finally:
        server.close()
        await server.wait_closed()
    assert [str(w.message) for w in caught] == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_log_lines_are_written_in_batches_warnings_at_once_and_all_at_close():
    out = io.StringIO()
    handler = logs.BatchedStream(out, interval=0.2)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("bitmail.test-batched")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        log.warning("first")  # a warning takes what waits with it, at once
        assert out.getvalue() == "WARNING first\n"
        log.info("second")
        assert out.getvalue() == "WARNING first\n"  # waits for the next batch
        deadline = time.monotonic() + 5
        while "second" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert out.getvalue() == "WARNING first\nINFO second\n"
        log.info("third")
    finally:
        log.removeHandler(handler)
        handler.close()
    assert out.getvalue().endswith("INFO second\nINFO third\n")
