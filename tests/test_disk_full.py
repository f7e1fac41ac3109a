"""A full disk: a JSON 503 `storage_full` with Retry-After and the database's
own error in the log, never a 202 for a message that is not on disk, and
service again once there is room (issue 11, item 9)."""

from __future__ import annotations

import logging
import os

import asyncpg
import pytest
from aiosmtpd.smtp import Envelope

from bitmail import config
from bitmail.mailbox import Mailbox
from bitmail.mta.outcomes import Outcome
from bitmail.outbox import Outbox, RetryPolicy
from bitmail.store import StorageFull
from bitmail.store.postgres import PostgresStore
from bitmail.store.sqlite import SQLiteStore

from conftest import (
    pg_admin,
    pg_database_url,
    start_service,
    wait_for,
    write_config,
)
from support.postgres import run_aside
from support.tmpfs import fill

BIG = {"to": "bob@example.com", "subject": "a large report", "text": "x" * 1_500_000}


async def test_a_full_disk_is_a_503_and_service_comes_back(small_tmpfs, caplog):
    settings = config.load(write_config(small_tmpfs), environ={})
    async with start_service(settings) as svc:
        headers = await svc.api_key("alice")
        small = {"to": "bob@example.com", "subject": "before", "text": "fits"}
        assert (await svc.client.post("/api/messages", json=small, headers=headers)).status == 202
        ballast = fill(small_tmpfs, leave=16 * 1024)
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            full = await svc.client.post("/api/messages", json=BIG,
                                         headers={**headers, "Idempotency-Key": "r1"})
        assert full.status == 503, await full.text()
        assert full.content_type == "application/json"
        assert (await full.json())["error"]["code"] == "storage_full"
        assert int(full.headers["Retry-After"]) > 0
        logged = caplog.text
        assert "database or disk is full" in logged, logged
        assert "cannot rollback" not in logged
        # Nothing of it was stored: the Sent folder has only the first message.
        sent = await svc.client.get("/api/messages", params={"folder": "sent"},
                                    headers=headers)
        assert [m["subject"] for m in (await sent.json())["messages"]] == ["before"]

        ballast.unlink()
        again = await svc.client.post("/api/messages", json=BIG,
                                      headers={**headers, "Idempotency-Key": "r1"})
        assert again.status == 202, await again.text()
        one = await svc.client.get(f"/api/messages/{(await again.json())['id']}",
                                   headers=headers)
        assert (await one.json())["subject"] == "a large report"


async def test_a_full_disk_refuses_smtp_submission_with_452(small_tmpfs):
    from bitmail.smtpd import SubmissionHandler

    settings = config.load(write_config(small_tmpfs), environ={})
    async with start_service(settings) as svc:
        await svc.runtime.accounts.create("alice", "correct horse battery")
        handler = SubmissionHandler(svc.runtime)
        session = type("S", (), {"bitmail_user": svc.runtime.accounts.user("alice")})()
        envelope = Envelope()
        envelope.content = envelope.original_content = (
            b"From: alice@localhost\r\nTo: bob@example.com\r\nSubject: s\r\n\r\n"
            + b"y" * 1_500_000 + b"\r\n")
        envelope.rcpt_tos = ["bob@example.com"]
        fill(small_tmpfs, leave=16 * 1024)
        reply = await handler.handle_DATA(None, session, envelope)
        assert reply.startswith("452 4.3.1"), reply


async def test_a_full_postgresql_tablespace_is_a_503_and_service_comes_back(
        pg_url, pg_tmpfs, tmp_path, caplog):
    # pg_url: skipped only when no server answers; past it, a tablespace the
    # local server cannot make is a failure, not a skip.
    name = f"bitmail_full_{os.urandom(4).hex()}"
    space = f"bitmail_full_{os.urandom(4).hex()}"
    run_aside(lambda: pg_admin(f"CREATE TABLESPACE {space} LOCATION '{pg_tmpfs}'"))
    try:
        run_aside(lambda: pg_admin(f'CREATE DATABASE "{name}" TABLESPACE {space}'))
        settings = config.load(
            write_config(tmp_path, f'[store]\nurl = "{pg_database_url(name)}"\n'), environ={})
        async with start_service(settings) as svc:
            headers = await svc.api_key("alice")
            ballast = fill(pg_tmpfs.parent, leave=64 * 1024)
            caplog.clear()
            with caplog.at_level(logging.ERROR):
                full = await svc.client.post("/api/messages", json=BIG, headers=headers)
            assert full.status == 503, await full.text()
            assert (await full.json())["error"]["code"] == "storage_full"
            assert "Retry-After" in full.headers
            assert "No space left on device" in caplog.text, caplog.text
            ballast.unlink()
            again = await svc.client.post("/api/messages", json=BIG, headers=headers)
            assert again.status == 202, await again.text()
    finally:
        run_aside(lambda: pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        run_aside(lambda: pg_admin(f"DROP TABLESPACE IF EXISTS {space}"))


async def test_postgresql_disk_full_is_storage_full(pg_url):
    store = PostgresStore(pg_url)
    await store.open()
    try:
        async def full(groups):
            raise asyncpg.DiskFullError("could not extend file: No space left on device")

        store._apply_groups = full
        with pytest.raises(StorageFull, match="No space left on device"):
            await store.put("message", {"x": 1})
    finally:
        await store.close()


async def test_a_claim_on_a_full_disk_is_tried_again_and_sending_goes_on(small_tmpfs):
    from test_container import Scripted, accept, start

    store = SQLiteStore(str(small_tmpfs / "db.sqlite"))
    await store.open()
    mailbox, outbox = Mailbox(store, "localhost"), Outbox(store, RetryPolicy(base=1.0, max=1.0))
    provider = Scripted("p", Outcome.TRANSIENT)
    container = await start((store, mailbox, outbox), provider, threshold=100)
    try:
        [message_id] = await accept(mailbox)
        await wait_for(lambda: outbox_entry_deferred(store))  # due again in about 1 s
        provider.fail = None
        # Its claim (an UPDATE) comes due on a full disk, and fails.
        ballast, real_claim, full = fill(small_tmpfs), store.claim, []

        async def claim(*args, **kwargs):
            try:
                return await real_claim(*args, **kwargs)
            except StorageFull:
                full.append(1)
                raise

        store.claim = claim
        await wait_for(lambda: full)
        ballast.unlink()
        await wait_for(lambda: [j.message_doc_id for j in provider.received] == [message_id])
    finally:
        await container.stop()
        await store.close()


async def outbox_entry_deferred(store) -> bool:
    return any(d["attempts"] for d in await store.get("outbox"))
