"""`python -m bitmail migrate` and `python -m bitmail store copy SRC DST`, and
what the store gives them: its kinds, every document page by page, its
schema version."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitmail import config
from bitmail.store import Store, open_store
from bitmail.store.copy import same_store
from bitmail.store.pg_sql import MIGRATIONS

from conftest import fresh_database, pg_reset, start_service, wait_for, write_config


async def bitmail(*args: str) -> tuple[int, str, str]:
    """Run `python -m bitmail ARGS`: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bitmail", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def kind_counts(store: Store) -> dict[str, int]:
    return {kind: await store.count(kind) for kind in await store.kinds()}


@pytest.fixture
def fresh_db() -> Iterator[str]:
    with fresh_database() as url:
        yield url


# -- the store ------------------------------------------------------------------

async def test_kinds_and_scan_give_every_document_in_seq_order(store_url: str) -> None:
    async with open_store(store_url) as store:
        assert await store.kinds() == []
        assert await store.scan("message") == []
        async with store.batch() as batch:
            for i in range(7):
                batch.put("message", {"n": i})
                batch.put("user", {"n": i}, id=f"u{i}")
        await store.put("outbox", {"due": None})
        assert await store.kinds() == ["message", "outbox", "user"]

        pages, after = [], 0
        while page := await store.scan("user", after=after, limit=3):
            pages.append([d["id"] for d in page])
            after = page[-1]["seq"]
        assert pages == [["u0", "u1", "u2"], ["u3", "u4", "u5"], ["u6"]]
        assert [d["n"] for d in await store.scan("message", limit=100)] == list(range(7))
        assert await store.schema_version() >= 1


def test_the_same_store_is_recognised_however_its_url_is_written(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert same_store("sqlite:///data/bitmail.db", f"sqlite:///{tmp_path}/data/bitmail.db")
    assert not same_store("sqlite:///a.db", "sqlite:///b.db")
    assert same_store("postgresql://u@127.0.0.1/mail", "postgres://other:pw@localhost:5432/mail")
    assert same_store("postgresql://u@db.example.com/mail?pool_size=5",
                      "postgresql://db.example.com:5432/mail")
    assert not same_store("postgresql://u@127.0.0.1/mail", "postgresql://u@127.0.0.1/mail2")
    assert not same_store("postgresql://db1.example.com/mail", "postgresql://db2.example.com/mail")


# -- migrate --------------------------------------------------------------------------

async def test_migrate_makes_the_schema_of_a_new_database_and_prints_its_version(
        tmp_path, fresh_db) -> None:
    cfg = write_config(tmp_path, f'[store]\nurl = "{fresh_db}"\n')
    for _ in range(2):  # and once more, with nothing left to do
        code, out, err = await bitmail("--config", str(cfg), "migrate")
        assert code == 0, err
        assert out.strip() == f"postgresql store: schema version {MIGRATIONS[-1][0]}"
    assert fresh_db not in out + err  # a URL may carry a password
    async with open_store(fresh_db) as store:
        assert await store.kinds() == []


async def test_migrate_on_the_default_sqlite_store(tmp_path) -> None:
    code, out, err = await bitmail("--config", str(write_config(tmp_path)), "migrate")
    assert (code, out.strip()) == (0, "sqlite store: schema version 2"), err
    assert (tmp_path / "data" / "bitmail.db").exists()


# -- store copy -----------------------------------------------------------------------

async def mail_of(svc, headers: dict[str, str]) -> dict:
    """Everything a user sees: both folders and each message in full."""
    seen = {}
    for folder in ("inbox", "sent"):
        resp = await svc.client.get(f"/api/messages?folder={folder}", headers=headers)
        assert resp.status == 200
        rows = (await resp.json())["messages"]
        full = []
        for row in rows:
            got = await svc.client.get(f"/api/messages/{row['id']}", headers=headers)
            full.append(await got.json())
        seen[folder] = full
    return seen


async def test_store_copy_moves_a_sqlite_service_to_postgresql_which_serves_the_same_mail(
        tmp_path: Path, pg_url: str) -> None:
    pg_reset(pg_url)
    sqlite_settings = config.load(write_config(tmp_path, ""), environ={})
    async with start_service(sqlite_settings) as svc:
        alice = await svc.api_key("alice")
        bob = await svc.api_key("bob")
        for i in range(12):
            resp = await svc.client.post("/api/messages", headers=alice, json={
                "to": "bob@localhost; carol@example.com", "subject": f"m{i}", "text": f"t{i}"})
            assert resp.status == 202

        async def all_sent() -> bool:
            return await svc.runtime.outbox.pending() == 0

        await wait_for(all_sent)
        before = {"alice": await mail_of(svc, alice), "bob": await mail_of(svc, bob)}
    async with open_store(sqlite_settings.store) as source:
        source_counts = await kind_counts(source)
    assert len(before["bob"]["inbox"]) == 12
    assert {(r["address"], r["status"]) for m in before["alice"]["sent"]
            for r in m["recipients"]} == {("bob@localhost", "delivered"),
                                          ("carol@example.com", "sent")}

    code, out, err = await bitmail("store", "copy", sqlite_settings.store, pg_url,
                                   "--batch", "5")
    assert code == 0, err
    printed = dict(line.split("\t") for line in out.splitlines() if "\t" in line)
    assert {k: int(v) for k, v in printed.items()} == source_counts
    assert f"copied {sum(source_counts.values())} documents" in out

    # Copying again changes nothing: the same ids are written over.
    code, again, err = await bitmail("store", "copy", sqlite_settings.store, pg_url)
    assert (code, again) == (0, out), err
    async with open_store(pg_url) as target:
        assert await kind_counts(target) == source_counts

    pg_settings = config.load(write_config(tmp_path, f'[store]\nurl = "{pg_url}"\n'),
                              environ={})
    async with start_service(pg_settings) as svc:
        # The same API keys and passwords work, and every folder reads the same.
        after = {"alice": await mail_of(svc, alice), "bob": await mail_of(svc, bob)}
        resp = await svc.client.post("/api/session",
                                     json={"username": "alice", "password": "secret-pass"})
        assert resp.status == 200  # an existing account, not a new one
        resp = await svc.client.post("/api/messages", headers=alice, json={
            "to": "bob@localhost", "subject": "after the move"})
        assert resp.status == 202
        inbox = await (await svc.client.get("/api/messages?folder=inbox", headers=bob)).json()
    assert after == before
    assert [m["subject"] for m in inbox["messages"][:2]] == ["after the move", "m11"]


async def test_store_copy_refuses_to_copy_a_store_onto_itself(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/bitmail.db"
    same = f"sqlite:///{tmp_path}/./bitmail.db"
    code, _, err = await bitmail("store", "copy", url, same)
    assert code == 1
    assert "the source and the target are the same store" in err
    assert not (tmp_path / "bitmail.db").exists()  # nothing was opened
