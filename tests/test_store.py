"""The store contract, on every store: subset lookups with jsonb `@>`
semantics, paging, writes in atomic batches with group commit, leased claims,
and live updates. PostgreSQL-only behaviour (several processes on one
database, migrations, index use) is at the end."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bitmail.store import BLOB, Batch, Store, StoreError, contains, open_store, packing
from bitmail.store.pg_sql import MIGRATIONS, key_indexes
from bitmail.store.postgres import PostgresStore, claim_sql, select_sql

from conftest import pg_admin, pg_database_url, pg_reset, wait_for


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with open_store(store_url) as s:
        yield s


@pytest.fixture
async def peer(store: Store, store_url: str) -> AsyncIterator[Store]:
    """Another process's view of the same data: a second PostgresStore on the
    database; for SQLite (one process per file) the same store again."""
    if not store_url.startswith("postgres"):
        yield store
        return
    async with open_store(store_url) as other:
        yield other


@pytest.fixture
def pg_store_url(pg_url: str) -> str:
    pg_reset(pg_url)
    return pg_url


def ids(docs: list[dict]) -> list[str]:
    return [d["id"] for d in docs]


# -- subset lookups ----------------------------------------------------------

DOCS = {
    "a": {"owner": "ann", "folder": "inbox", "n": {"x": 1, "y": {"z": "deep"}},
          "tags": ["red", "green"], "flag": True, "one": 1, "nil": None, "s": "1"},
    "b": {"owner": "ann", "folder": "sent", "n": {"x": 2}, "tags": ["green"], "flag": False,
          "one": 1.0, "rcpt": [{"address": "x@y", "status": "sent"},
                               {"address": "z@y", "status": "queued"}]},
    "c": {"owner": "bob", "folder": "inbox", "tags": [], "flag": 1, "s": 1},
    "d": {"owner": "bob", "tags": ["red", "red"], "nums": [1, 2, 3]},
}

SUBSETS = [
    ({}, "abcd"),
    ({"owner": "ann"}, "ab"),
    ({"owner": "ann", "folder": "inbox"}, "a"),
    ({"owner": "nobody"}, ""),
    # nested objects: contained recursively; {} is in every object
    ({"n": {"x": 1}}, "a"),
    ({"n": {"y": {"z": "deep"}}}, "a"),
    ({"n": {}}, "ab"),
    ({"n": {"x": 1, "w": 0}}, ""),
    # arrays: every element of the subset is somewhere in the document's array,
    # in any order; repeating an element asks for nothing more
    ({"tags": ["green"]}, "ab"),
    ({"tags": ["green", "red"]}, "a"),
    ({"tags": ["red", "red"]}, "ad"),
    ({"tags": []}, "abcd"),
    ({"tags": "red"}, ""),  # a scalar is not an element of a nested array
    ({"nums": [3, 1]}, "d"),
    ({"rcpt": [{"status": "queued"}]}, "b"),
    ({"rcpt": [{"status": "queued", "address": "x@y"}]}, ""),  # must be one element
    # booleans are not numbers; 1 and 1.0 are the same number; "1" is a string
    ({"flag": True}, "a"),
    ({"flag": False}, "b"),
    ({"one": True}, ""),
    ({"one": 1}, "ab"),
    ({"s": "1"}, "a"),
    ({"s": 1}, "c"),
    # null is a value: only a document that has the key set to null
    ({"nil": None}, "a"),
    ({"missing": None}, ""),
    # id lookups, alone and with other keys
    ({"id": "c"}, "c"),
    ({"id": "c", "owner": "bob"}, "c"),
    ({"id": "c", "owner": "ann"}, ""),
    ({"id": "zzz"}, ""),
]


@pytest.fixture(params=["thing", "message"])
async def loaded(store: Store, request: pytest.FixtureRequest) -> tuple[Store, str]:
    """DOCS in a kind with no indexes, then in one whose owner and folder are indexed."""
    kind = request.param
    async with store.batch() as b:
        for doc_id, doc in DOCS.items():
            b.put(kind, doc, id=doc_id)
        # Same content in another kind: never returned.
        b.put("other", DOCS["a"], id="a")
    return store, kind


@pytest.mark.parametrize(("subset", "expected"), SUBSETS, ids=[json.dumps(s) for s, _ in SUBSETS])
async def test_get_returns_every_document_containing_the_subset(
        loaded: tuple[Store, str], subset: dict, expected: str) -> None:
    store, kind = loaded
    # The reference `contains` agrees with the table, so both stores are held
    # to jsonb `@>` as PostgreSQL defines it.
    assert "".join(k for k, d in DOCS.items() if contains({**d, "id": k}, subset)) == expected
    assert ids(await store.get(kind, subset)) == list(expected)
    assert await store.count(kind, subset) == len(expected)


async def test_get_by_ids_reads_many_documents_by_id_in_their_kind_only(
        loaded: tuple[Store, str]) -> None:
    store, kind = loaded
    found = await store.get_by_ids(kind, ["d", "a", "missing", "a"])
    assert sorted(found) == ["a", "d"]
    assert {k: v for k, v in found["a"].items() if k != "seq"} == {**DOCS["a"], "id": "a"}
    assert await store.get_by_ids(kind, []) == {}
    assert list(await store.get_by_ids("other", ["a", "b"])) == ["a"]
    # More ids than one query names, and more than are read on the loop's thread.
    async with store.batch() as b:
        for i in range(1200):
            b.put("many", {"i": i}, id=f"m{i}")
    many = await store.get_by_ids("many", [f"m{i}" for i in range(0, 1300, 1)])
    assert len(many) == 1200 and many["m1199"]["i"] == 1199


TYPED = {"str": "5", "int": 5, "float": 5.0, "true": True, "one": 1, "null": None,
         "object": {"v": 5}, "list": ["5"]}


@pytest.mark.parametrize(("value", "expected"), [
    ("5", ["str"]), (5, ["int", "float"]), (5.0, ["int", "float"]), (True, ["true"]),
    (None, ["null"]), ({"v": 5}, ["object"]), (["5"], ["list"]), ("true", []),
    pytest.param(1, ["one"], id="1-is-not-true"),
])
async def test_an_indexed_key_matches_by_json_type_and_value(
        store: Store, value: object, expected: list[str]) -> None:
    async with store.batch() as b:
        for name, owner in TYPED.items():
            b.put("message", {"owner": owner, "folder": "inbox"}, id=name)
        b.put("message", {"folder": "inbox"}, id="missing")
    found = await store.get("message", {"owner": value, "folder": "inbox"}, newest_first=True)
    assert sorted(ids(found)) == sorted(expected)


async def test_a_number_does_not_match_a_boolean(loaded: tuple[Store, str]) -> None:
    store, kind = loaded
    assert ids(await store.get(kind, {"flag": 1})) == ["c"]


async def test_documents_come_back_with_id_and_seq(loaded: tuple[Store, str]) -> None:
    store, kind = loaded
    doc = await store.get_one(kind, {"id": "a"})
    assert doc == {**DOCS["a"], "id": "a", "seq": doc["seq"]}
    assert isinstance(doc["seq"], int)


async def test_newest_first_pages_with_before(store: Store) -> None:
    async with store.batch() as b:
        for i in range(10):
            b.put("message", {"owner": "ann", "folder": "inbox", "i": i})
            b.put("message", {"owner": "bob", "folder": "inbox", "i": i})
    pages, before = [], None
    while True:
        page = await store.get("message", {"owner": "ann", "folder": "inbox"}, limit=4,
                               before=before, newest_first=True)
        if not page:
            break
        pages.append([d["i"] for d in page])
        before = page[-1]["seq"]
    assert pages == [[9, 8, 7, 6], [5, 4, 3, 2], [1, 0]]


async def test_oldest_first_by_default_and_limit(store: Store) -> None:
    for i in range(5):
        await store.put("message", {"owner": "ann", "i": i})
    assert [d["i"] for d in await store.get("message", {"owner": "ann"})] == [0, 1, 2, 3, 4]
    assert [d["i"] for d in await store.get("message", limit=2)] == [0, 1]
    assert await store.get("message", limit=0) == []


# -- writes --------------------------------------------------------------------

async def test_put_with_an_existing_id_replaces_the_whole_document(store: Store) -> None:
    await store.put("user", {"name": "ann", "old": True}, id="ann")
    first = await store.get_one("user", {"id": "ann"})
    assert await store.put("user", {"name": "Ann"}, id="ann") == "ann"
    again = await store.get_one("user", {"id": "ann"})
    assert again == {"name": "Ann", "id": "ann", "seq": first["seq"]}
    assert await store.count("user") == 1


async def test_put_takes_the_id_from_the_document_or_makes_one(store: Store) -> None:
    assert await store.put("user", {"id": "bob", "seq": 99, "x": 1}) == "bob"
    made = await store.put("user", {"x": 2})
    assert made and made != "bob"
    bob = await store.get_one("user", {"id": "bob"})
    assert bob["x"] == 1 and bob["seq"] != 99  # seq is the store's, never the caller's


async def test_update_merges_the_top_level(store: Store) -> None:
    await store.put("user", {"a": 1, "n": {"x": 1, "y": 2}}, id="u")
    new = await store.update("user", "u", {"b": 2, "n": {"x": 3}, "id": "ignored"})
    assert new == {"a": 1, "b": 2, "n": {"x": 3}, "id": "u", "seq": new["seq"]}
    assert await store.get_one("user", {"id": "u"}) == new


async def test_update_with_a_function_replaces_the_document(store: Store) -> None:
    await store.put("user", {"count": 1, "keep": "me"}, id="u")

    def bump(doc: dict) -> dict:
        assert doc["id"] == "u" and "seq" in doc  # it sees what get would return
        return {"count": doc["count"] + 1}

    new = await store.update("user", "u", bump)
    assert new == {"count": 2, "id": "u", "seq": new["seq"]}
    # None leaves the document as it is, and returns it.
    assert await store.update("user", "u", lambda doc: None) == new
    assert await store.get_one("user", {"id": "u"}) == new


async def test_update_of_a_missing_document_returns_none_and_creates_nothing(
        store: Store) -> None:
    assert await store.update("user", "ghost", {"a": 1}) is None
    assert await store.update("user", "ghost", lambda doc: {"a": 1}) is None
    assert await store.count("user") == 0


async def test_delete(store: Store) -> None:
    await store.put("user", {"a": 1}, id="u")
    assert await store.delete("user", "u") is True
    assert await store.delete("user", "u") is False
    assert await store.get("user") == []


async def test_commit_returns_each_operations_result(store: Store) -> None:
    await store.put("user", {"a": 1}, id="old")
    batch = Batch()
    batch.put("user", {"b": 1}, id="new")
    batch.update("user", "old", {"a": 2})
    batch.delete("user", "nothing")
    put, updated, deleted = await store.commit(batch)
    assert (put, updated["a"], deleted) == ("new", 2, False)


def boom(doc: dict) -> dict:
    raise ValueError("this change refuses")


async def test_a_failing_batch_rolls_back_whole_and_alone(store: Store) -> None:
    await store.put("acct", {"balance": 10}, id="x")
    bad = Batch()
    bad.put("acct", {"balance": 0}, id="bad-new")
    bad.update("acct", "x", {"balance": 0})
    bad.update("acct", "x", boom)
    goods = []
    for i in range(5):
        good = Batch()
        good.put("acct", {"balance": i}, id=f"good{i}")
        goods.append(good)
    # Handed over together, so they share one group commit.
    results = await asyncio.gather(store.commit(goods[0]), store.commit(bad),
                                   *(store.commit(g) for g in goods[1:]),
                                   return_exceptions=True)
    assert isinstance(results[1], StoreError) and "refuses" in str(results[1])
    assert all(r == [f"good{i}"] for i, r in zip([0, 1, 2, 3, 4], results[:1] + results[2:],
                                                  strict=True))
    assert (await store.get_one("acct", {"id": "x"}))["balance"] == 10
    assert await store.get_one("acct", {"id": "bad-new"}) is None
    assert await store.count("acct") == 6


async def test_concurrent_batches_all_commit(store: Store) -> None:
    async def one(i: int) -> list:
        batch = Batch()
        batch.put("message", {"owner": f"u{i % 7}", "i": i}, id=f"m{i}")
        batch.put("outbox", {"message": f"m{i}", "due": 0}, id=f"o{i}")
        return await store.commit(batch)

    results = await asyncio.gather(*(one(i) for i in range(300)))
    assert results == [[f"m{i}", f"o{i}"] for i in range(300)]
    assert await store.count("message") == 300
    assert await store.count("outbox") == 300


async def test_function_updates_never_lose_a_write(store: Store, peer: Store) -> None:
    await store.put("counter", {"n": 0}, id="c")

    def inc(doc: dict) -> dict:
        return {**doc, "n": doc["n"] + 1}

    # From two processes on PostgreSQL: the row lock orders them.
    await asyncio.gather(*(s.update("counter", "c", inc) for _ in range(40)
                           for s in (store, peer)))
    assert (await store.get_one("counter", {"id": "c"}))["n"] == 80


async def test_a_closed_store_refuses_writes(store_url: str) -> None:
    s = open_store(store_url)
    await s.open()
    await s.close()
    with pytest.raises(StoreError):
        await s.put("user", {"a": 1})


# -- blobs: a document's bytes beside its JSON ------------------------------------

# Text that compresses, bytes that do not, every byte value, CR and LF as
# they are, a NUL first, and the sizes around the packing threshold.
BLOBS = {
    "text": b"Subject: hi\r\n\r\n" + b"the same line of mail text\r\n" * 400,
    "random": os.urandom(70_000),
    "every-byte": bytes(range(256)) * 3,
    "line-ends": b"\x00a\rb\nc\r\n.\r\n\xff",
    "empty": b"",
    "below-threshold": b"y" * (packing.MIN_SIZE - 1),
    "at-threshold": b"y" * packing.MIN_SIZE,
}


async def test_a_blob_reads_back_byte_for_byte_from_every_read(store: Store) -> None:
    async with store.batch() as b:
        for name, blob in BLOBS.items():
            b.put("body", {BLOB: blob, "name": name}, id=name)
        b.add("body", {BLOB: b"added"}, id="added")
        b.put("body", {"name": "none"}, id="none")
    by_id = await store.get_by_ids("body", [*BLOBS, "none"])
    for name, blob in BLOBS.items():
        assert by_id[name][BLOB] == blob, name
        assert by_id[name]["name"] == name  # the JSON part is there beside it
        assert (await store.get_one("body", {"id": name}))[BLOB] == blob
    assert BLOB not in by_id["none"]  # no blob: no key, not None
    assert (await store.get_one("body", {"id": "added"}))[BLOB] == b"added"
    scanned = {d["id"]: d.get(BLOB) for d in await store.scan("body")}
    assert scanned == {**BLOBS, "added": b"added", "none": None}
    assert {d["id"] for d in await store.get("body", {"name": "text"})} == {"text"}


async def test_updates_keep_replace_or_drop_a_blob(store: Store) -> None:
    await store.put("body", {BLOB: b"first", "n": 1}, id="b")
    merged = await store.update("body", "b", {"n": 2})
    assert (merged[BLOB], merged["n"]) == (b"first", 2)
    seen = []

    def replace(doc: dict) -> dict:
        seen.append(doc[BLOB])
        return {**doc, BLOB: doc[BLOB] + b" and more"}

    assert (await store.update("body", "b", replace))[BLOB] == b"first and more"
    assert seen == [b"first"]  # the function sees the bytes
    assert (await store.get_one("body", {"id": "b"}))[BLOB] == b"first and more"
    await store.update("body", "b", lambda doc: {"n": doc["n"]})  # returned without: dropped
    assert BLOB not in await store.get_one("body", {"id": "b"})
    await store.put("body", {BLOB: b"again"}, id="b")
    await store.put("body", {"n": 3}, id="b")  # put replaces the whole document
    assert sorted(await store.get_one("body", {"id": "b"})) == ["id", "n", "seq"]


async def test_a_blob_that_is_not_bytes_or_a_merge_of_one_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="must be bytes, not str"):
        await store.put("body", {BLOB: "text"})
    await store.put("body", {BLOB: b"kept"}, id="k")
    with pytest.raises(StoreError, match="a merge cannot change blob"):
        await store.update("body", "k", {BLOB: b"other"})
    assert (await store.get_one("body", {"id": "k"}))[BLOB] == b"kept"


def test_packing_compresses_what_pays_and_keeps_the_rest_as_it_is() -> None:
    for name, blob in BLOBS.items():
        packed = packing.pack(blob)
        assert packing.unpack(packed) == blob, name
    text = BLOBS["text"]
    assert packing.pack(text)[0] == packing.ZSTD and len(packing.pack(text)) < len(text) // 10
    for name in ("random", "empty", "below-threshold", "line-ends"):
        assert packing.pack(BLOBS[name]) == bytes((packing.RAW,)) + BLOBS[name], name
    with pytest.raises(StoreError, match="unknown marker 7"):
        packing.unpack(b"\x07abc")
    with pytest.raises(StoreError, match="does not decompress"):
        packing.unpack(bytes((packing.ZSTD,)) + b"not a frame")
    with pytest.raises(StoreError, match="empty"):
        packing.unpack(b"")
    packed = packing.pack(text)
    with pytest.raises(StoreError, match="unused data"):
        packing.unpack(packed + b"more")  # nothing after the frame is ignored
    for at in range(5, len(packed)):  # any flipped bit: an error, never other bytes
        damaged = bytearray(packed)
        damaged[at] ^= 0x10
        try:
            assert packing.unpack(bytes(damaged)) == text
        except StoreError:
            pass


async def test_sqlite_keeps_text_blobs_compressed_on_disk(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "store.db"
    async with open_store(f"sqlite:///{path}") as store:
        await store.put("body", {BLOB: BLOBS["text"]}, id="text")
        await store.put("body", {BLOB: BLOBS["random"]}, id="random")
    with sqlite3.connect(path) as conn:
        sizes = dict(conn.execute("SELECT id, length(blob) FROM docs"))
        data = dict(conn.execute("SELECT id, data FROM docs"))
    assert sizes["text"] < len(BLOBS["text"]) // 10
    assert sizes["random"] == len(BLOBS["random"]) + 1  # the marker byte
    assert data == {"text": "{}", "random": "{}"}  # nothing of the bytes in the JSON


async def test_a_sqlite_file_of_schema_1_gains_the_blob_column_and_keeps_its_documents(
        tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _schema_1_file(path)
    async with open_store(f"sqlite:///{path}") as store:
        old = await store.get_one("body", {"id": "old"})
        assert old == {"mime": "From: a@b\r\n\r\nold\r\n", "id": "old", "seq": 1}
        await store.put("body", {BLOB: b"new"}, id="new")
    async with open_store(f"sqlite:///{path}") as store:  # and a second open changes nothing
        assert (await store.get_one("body", {"id": "new"}))[BLOB] == b"new"
        assert await store.schema_version() == 2


def _schema_1_file(path: Path) -> None:
    """An SQLite file as the first wave made it, with a body in JSON."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.executescript("""CREATE TABLE docs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, id TEXT NOT NULL,
            data TEXT NOT NULL, UNIQUE (id, kind));
            CREATE INDEX ix_kind ON docs (kind, seq);""")
        conn.execute("INSERT INTO docs (kind, id, data) VALUES ('body', 'old', ?)",
                     (json.dumps({"mime": "From: a@b\r\n\r\nold\r\n"}),))


async def test_several_stores_opening_a_new_or_schema_1_file_at_once_all_open(
        tmp_path: Path) -> None:
    # Both first opens: the journal turns into WAL, and a schema 1 file gains its column.
    for attempt in range(20):
        path = tmp_path / f"store-{attempt}.db"
        if attempt % 2:
            _schema_1_file(path)
        stores = [open_store(f"sqlite:///{path}") for _ in range(4)]
        results = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
        await asyncio.gather(*(s.close() for s, r in zip(stores, results, strict=True)
                               if r is None))
        assert [r for r in results if r is not None] == []
    async with open_store(f"sqlite:///{tmp_path / 'store-1.db'}") as store:
        assert (await store.get_one("body", {"id": "old"}))["mime"].endswith("old\r\n")


async def test_a_sqlite_file_of_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    import sqlite3

    from bitmail.store import StoreUnavailable

    path = tmp_path / "store.db"
    async with open_store(f"sqlite:///{path}") as store:
        await store.put("user", {"a": 1}, id="u")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreUnavailable, match="version 99, newer than this BitMail knows "
                                               r"\(2\); upgrade BitMail"):
        await open_store(f"sqlite:///{path}", sending=True).open()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (99,)
    # The lock was let go: once the version is one it knows, it opens.
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 2")
    async with open_store(f"sqlite:///{path}", sending=True) as store:
        assert (await store.get_one("user", {"id": "u"}))["a"] == 1


# -- claims --------------------------------------------------------------------

async def test_claim_leases_the_oldest_due_first_up_to_the_limit(store: Store) -> None:
    async with store.batch() as b:
        for i, due in enumerate([50.0, 10.0, 30.0, 20.0, 200.0]):
            b.put("outbox", {"due": due, "i": i}, id=f"j{i}")
    claimed = await store.claim("outbox", now=100.0, owner="me", lease=60.0, limit=3)
    # The three oldest due (10, 20, 30); the order they come back in is not pinned.
    assert sorted(ids(claimed)) == ["j1", "j2", "j3"]
    # A lease is the owner and a due moved to its end, in what comes back and in the store.
    assert all((d["lease_owner"], d["due"]) == ("me", 160.0) for d in claimed)
    stored = await store.get_one("outbox", {"id": "j1"})
    assert (stored["lease_owner"], stored["due"], stored["i"]) == ("me", 160.0, 1)
    # The rest that is due; j4 is not due until 200.
    assert ids(await store.claim("outbox", now=100.0, owner="me", lease=60.0,
                                 limit=10)) == ["j0"]


async def test_two_concurrent_claimers_never_get_the_same_document(store: Store,
                                                                  peer: Store) -> None:
    async with store.batch() as b:
        for i in range(120):
            b.put("outbox", {"due": float(i % 13)}, id=f"j{i}")

    async def claimer(s: Store, name: str) -> list[str]:
        got: list[str] = []
        while batch := await s.claim("outbox", now=100.0, owner=name, lease=60.0, limit=7):
            got += ids(batch)
            await asyncio.sleep(0)
        return got

    runs = await asyncio.gather(*(claimer(s, f"c{n}") for n, s in
                                  enumerate([store, peer, store, peer])))
    every = [i for run in runs for i in run]
    assert len(every) == len(set(every)) == 120
    assert sum(1 for run in runs if run) >= 2  # they really did compete


async def test_an_expired_lease_can_be_claimed_again(store: Store) -> None:
    await store.put("outbox", {"due": 10.0}, id="j")
    assert ids(await store.claim("outbox", now=100.0, owner="a", lease=5.0, limit=1)) == ["j"]
    assert await store.claim("outbox", now=104.9, owner="b", lease=5.0, limit=1) == []
    again = await store.claim("outbox", now=105.0, owner="b", lease=5.0, limit=1)
    assert ids(again) == ["j"] and again[0]["lease_owner"] == "b"


async def test_a_renewal_extends_only_the_leases_its_owner_holds(store: Store,
                                                                  peer: Store) -> None:
    async with store.batch() as b:
        for name in ("mine", "theirs", "unclaimed"):
            b.put("outbox", {"due": 10.0}, id=name)
    await store.claim("outbox", now=100.0, owner="a", lease=5.0, limit=1)  # "mine"
    await peer.claim("outbox", now=100.0, owner="b", lease=5.0, limit=1)  # "theirs"
    renewed = await store.renew_leases("outbox", ["mine", "theirs", "unclaimed", "gone"],
                                       owner="a", until=160.0)
    assert renewed == ["mine"]
    docs = {d["id"]: d for d in await store.get("outbox")}
    assert (docs["mine"]["due"], docs["theirs"]["due"], docs["unclaimed"]["due"]) == \
        (160.0, 105.0, 10.0)
    # Renewed, it is nobody else's to claim until then; the others' leases ran out.
    assert sorted(ids(await peer.claim("outbox", now=150.0, owner="b", lease=5.0,
                                       limit=5))) == ["theirs", "unclaimed"]
    assert await store.renew_leases("outbox", [], owner="a", until=1.0) == []


async def test_documents_without_a_due_are_never_claimed(store: Store) -> None:
    async with store.batch() as b:
        b.put("outbox", {"due": None}, id="null")
        b.put("outbox", {"attempts": 0}, id="missing")
        b.put("outbox", {"due": "soon"}, id="not-a-number")
        b.put("outbox", {"due": 1.0}, id="due")
        b.put("other", {"due": 1.0}, id="other-kind")
    claimed = await store.claim("outbox", now=1e12, owner="me", lease=1.0, limit=10)
    assert ids(claimed) == ["due"]


# -- live updates --------------------------------------------------------------

async def next_payload(sub, timeout: float = 5.0) -> dict:
    return await asyncio.wait_for(sub.queue.get(), timeout)


async def test_subscribers_get_each_payload_exactly_once(store: Store) -> None:
    first, second = store.subscribe(), store.subscribe()
    for i in range(3):
        await store.publish({"type": "message", "i": i})
    await store.publish({"type": "message", "i": "end"})  # comes after any repeat
    for sub in (first, second):
        assert [(await next_payload(sub))["i"] for _ in range(4)] == [0, 1, 2, "end"]
    assert first.queue.empty() and second.queue.empty()  # nothing twice
    second.close()
    await store.publish({"after": "close"})
    assert await next_payload(first) == {"after": "close"}
    assert second.queue.empty()


def test_a_payload_that_ends_a_subscription_goes_first_and_is_never_dropped() -> None:
    """A full queue drops what comes next (a reader that stopped reading
    must not hold the others back), but never what ends the subscription
    (a credential's end, for a live-update stream): that goes ahead of what
    is queued, which its reader will not read."""
    from bitmail.store.hub import QUEUE_SIZE, Hub

    hub = Hub()
    ends = hub.subscribe(ends=lambda p: p.get("type") == "end")
    other = hub.subscribe()
    for i in range(QUEUE_SIZE + 10):
        hub.deliver({"type": "message", "i": i})
    hub.deliver({"type": "end"})
    assert ends.queue.get_nowait() == {"type": "end"}
    assert other.queue.qsize() == QUEUE_SIZE  # the others: dropped past the size
    assert [other.queue.get_nowait()["i"] for _ in range(3)] == [0, 1, 2]
    hub.deliver({"type": "message", "i": "after"})
    assert ends.queue.get_nowait() == {"type": "message", "i": "after"}


# -- PostgreSQL: several processes on one database -------------------------------

pg = pytest.mark.postgres


@pg
async def test_another_process_receives_published_payloads(pg_store_url: str) -> None:
    async with open_store(pg_store_url) as a, open_store(pg_store_url) as b:
        sub_a, sub_b = a.subscribe(), b.subscribe()
        await a.publish({"type": "status", "owner": "ann", "n": 1})
        await a.publish({"type": "status", "owner": "ann", "n": "end"})
        assert [(await next_payload(sub_b))["n"] for _ in range(2)] == [1, "end"]
        # Notifications reach each process in commit order: a's own two, had
        # they come back to it, would come before this one of b's.
        await b.publish({"type": "status", "owner": "ann", "n": "flush"})
        assert [(await next_payload(sub_a))["n"] for _ in range(3)] == [1, "end", "flush"]
        assert (await next_payload(sub_b))["n"] == "flush"
        assert sub_a.queue.empty() and sub_b.queue.empty()  # nothing twice


@pg
async def test_a_payload_too_large_for_notify_still_arrives_whole(pg_store_url: str) -> None:
    big = {"type": "status", "owner": "ann", "events": ["é" * 100] * 200}  # ~120 kB as JSON
    async with open_store(pg_store_url) as a, open_store(pg_store_url) as b:
        sub_a, sub_b = a.subscribe(), b.subscribe()
        await a.publish(big)
        await a.publish({"small": 1})
        assert [await next_payload(sub_b), await next_payload(sub_b)] == [big, {"small": 1}]
        assert await next_payload(sub_a) == big


@pg
async def test_the_listener_reconnects_after_its_connection_is_killed(
        pg_store_url: str) -> None:
    async with open_store(pg_store_url) as store:
        sub = store.subscribe()
        await pg_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE application_name = 'bitmail-listen' "
                       "AND datname = current_database()", pg_store_url)

        async def heard() -> bool:
            # What is published while it reconnects is lost; keep publishing.
            await store.publish({"ping": True})
            await asyncio.sleep(0.1)
            return not sub.queue.empty()

        await wait_for(heard, timeout=15)
        assert await next_payload(sub) == {"ping": True}


class CountingStore(PostgresStore):
    """Counts the batches in each group commit (one transaction each)."""

    groups: list[int]

    async def _apply(self, groups: list) -> list:
        self.groups.append(len(groups))
        return await super()._apply(groups)


@pg
async def test_concurrent_batches_share_transactions(pg_store_url: str) -> None:
    async with CountingStore(pg_store_url) as store:
        store.groups = []
        await asyncio.gather(*(store.put("message", {"i": i}) for i in range(200)))
        assert sum(store.groups) == 200
        assert len(store.groups) <= 20, store.groups
        assert await store.count("message") == 200


@pg
async def test_a_postgresql_database_of_schema_1_gains_the_blob_column_and_loses_its_gin(
        pg_url: str) -> None:
    name = f"bitmail_test_{os.urandom(5).hex()}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    url = pg_database_url(name)
    try:
        conn = await asyncpg.connect(url)
        try:  # the database as version 1 left it, with a body in JSON
            await conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY, "
                               "applied_at timestamptz NOT NULL DEFAULT now())")
            for sql in MIGRATIONS[0][1]:
                await conn.execute(sql)
            await conn.execute("INSERT INTO schema_version (version) VALUES (1)")
            await conn.execute("INSERT INTO docs (kind, id, data) VALUES ('body', 'old', $1)",
                               json.dumps({"mime": "old"}))
        finally:
            await conn.close()
        async with open_store(url) as store:
            assert await store.schema_version() == MIGRATIONS[-1][0]
            old = await store.get_one("body", {"id": "old"})
            assert (old["mime"], BLOB in old) == ("old", False)
            await store.put("body", {BLOB: b"\x00new\xff"}, id="new")
            assert (await store.get_one("body", {"id": "new"}))[BLOB] == b"\x00new\xff"
        conn = await asyncpg.connect(url)
        try:  # version 3: the GIN index gone, every lookup's btree there
            indexes = {r["indexname"]: r["indexdef"] for r in await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'docs'")}
        finally:
            await conn.close()
        assert "docs_data" not in indexes and not any("gin" in d for d in indexes.values())
        assert set(key_indexes()) <= set(indexes)
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pg
async def test_the_schema_is_made_once_when_several_processes_start_at_once(
        pg_url: str) -> None:
    name = f"bitmail_test_{os.urandom(5).hex()}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    url = pg_database_url(name)
    try:
        stores = [open_store(url) for _ in range(6)]
        await asyncio.gather(*(s.open() for s in stores))
        await stores[0].put("user", {"a": 1}, id="u")
        assert (await stores[-1].get_one("user", {"id": "u"}))["a"] == 1
        await asyncio.gather(*(s.close() for s in stores))
        conn = await asyncpg.connect(url)
        try:
            versions = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
        finally:
            await conn.close()
        assert [r["version"] for r in versions] == [v for v, _ in MIGRATIONS]  # each once
        async with open_store(url):  # and a restart changes nothing
            pass
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pg
async def test_a_newer_schema_is_refused(pg_store_url: str) -> None:
    async with open_store(pg_store_url):
        pass
    await pg_admin("INSERT INTO schema_version (version) VALUES (999)", pg_store_url)
    try:
        with pytest.raises(StoreError, match="newer"):
            async with open_store(pg_store_url):
                pass
    finally:
        await pg_admin("DELETE FROM schema_version WHERE version = 999", pg_store_url)


def plan_nodes(plan: dict) -> list[tuple[str, str | None]]:
    """(node type, index name) of every node of an EXPLAIN (FORMAT JSON) plan."""
    node = plan["Node Type"]
    if plan.get("Scan Direction") == "Backward":
        node += " Backward"
    out = [(node, plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        out += plan_nodes(child)
    return out


async def explain(conn: asyncpg.Connection, sql: str, args: list) -> list[tuple[str, str | None]]:
    """The generic plan of `sql` — the one a prepared statement settles on
    after a few runs — whatever the argument values."""
    await conn.execute("DEALLOCATE ALL")
    await conn.execute(f"PREPARE q AS {sql}")
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    literals = ", ".join("NULL" if a is None else "'" + str(a).replace("'", "''") + "'"
                         for a in args)
    rows = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE q({literals})")
    return plan_nodes(json.loads(rows)[0]["Plan"])


@pg
async def test_folder_pages_and_claims_use_indexes(pg_store_url: str) -> None:
    async with open_store(pg_store_url):
        pass  # the schema
    conn = await asyncpg.connect(pg_store_url)
    try:
        await conn.copy_records_to_table("docs", columns=["kind", "id", "data"], records=[
            ("message", f"m{i}", json.dumps({"owner": f"u{i % 300}", "folder": "inbox"
                                             if i % 3 else "sent", "subject": "hi"}))
            for i in range(30000)
        ] + [("outbox", f"o{i}", json.dumps({"due": float(i), "body": f"b{i}"}))
             for i in range(3000)
        ] + [(kind, f"{kind}{i}", json.dumps({"username": f"u{i % 300}"}))
             for kind in ("session", "apikey") for i in range(3000)])
        await conn.execute("ANALYZE docs")

        subset = {"owner": "u7", "folder": "inbox"}
        sql, args = select_sql("message", subset, limit=51, newest_first=True)
        args = [json.dumps(a) if isinstance(a, str | dict) else a for a in args]
        nodes = await explain(conn, sql, args)
        assert ("Index Scan Backward", "docs_message_owner_folder") in nodes, nodes
        assert "Sort" not in {n for n, _ in nodes}, nodes

        sql, args = select_sql("message", subset, limit=51, before=20000, newest_first=True)
        args = [json.dumps(a) if isinstance(a, str | dict) else a for a in args]
        nodes = await explain(conn, sql, args)
        assert ("Index Scan Backward", "docs_message_owner_folder") in nodes, nodes

        nodes = await explain(conn, claim_sql("outbox"), [100.0, 10, "me", 160.0])
        assert ("Index Scan", "docs_outbox_due") in nodes, nodes
        assert "Sort" not in {n for n, _ in nodes}, nodes

        # Every lookup the service makes has its btree; no GIN index makes
        # every write of every kind pay for lookups nobody makes (schema 3).
        for kind, subset, index in [("outbox", {"body": "b1"}, "docs_outbox_body"),
                                    ("session", {"username": "u2"}, "docs_session_username"),
                                    ("apikey", {"username": "u3"}, "docs_apikey_username")]:
            sql, args = select_sql(kind, subset)
            nodes = await explain(conn, sql, [json.dumps(a) for a in args])
            assert index in {name for _, name in nodes}, (kind, nodes)
        methods = await conn.fetch("SELECT DISTINCT am.amname FROM pg_index i "
                                   "JOIN pg_class c ON c.oid = i.indexrelid "
                                   "JOIN pg_am am ON am.oid = c.relam "
                                   "WHERE i.indrelid = 'docs'::regclass")
        assert {r["amname"] for r in methods} == {"btree"}
    finally:
        await conn.close()


def test_pool_size_comes_from_the_url() -> None:
    store = PostgresStore("postgresql://u@db.invalid/mail?pool_size=3&pool_min=0&sslmode=disable")
    assert (store.pool_size, store.pool_min) == (3, 0)
    assert "pool_size" not in store.dsn and "sslmode=disable" in store.dsn
    assert PostgresStore("postgresql://u@db.invalid/mail").pool_size == 10
    with pytest.raises(StoreError):
        PostgresStore("postgresql://u@db.invalid/mail?pool_size=none")
    with pytest.raises(StoreError):
        PostgresStore("postgresql://u@db.invalid/mail?pool_size=2&pool_min=5")


async def test_add_refuses_an_id_that_exists_and_fails_only_its_batch(store: Store) -> None:
    from bitmail.store import AlreadyExists

    async with store.batch() as b:
        b.add("token", {"n": 1}, id="t1")
    other = Batch()
    other.put("thing", {"n": 2}, id="x")
    other.add("token", {"n": 3}, id="t1")
    winner = Batch()
    winner.add("token", {"n": 4}, id="t2")
    results = await asyncio.gather(store.commit(other), store.commit(winner),
                                   return_exceptions=True)
    assert isinstance(results[0], AlreadyExists)
    assert results[1] == ["t2"]
    assert await store.get_one("thing", {"id": "x"}) is None  # its batch rolled back
    assert (await store.get_one("token", {"id": "t1"}))["n"] == 1


async def test_add_without_an_id_inserts_a_new_document_and_never_replaces_one(
        store: Store) -> None:
    from bitmail.store import AlreadyExists

    made = await store.add("thing", {"n": 1})
    again = Batch()
    assert again.add("thing", {"n": 2}) not in (made, None)
    assert (await store.commit(again))[0] != made
    with pytest.raises(AlreadyExists) as refused:
        await store.add("thing", {"id": "ignored", "n": 3}, id=made)
    assert (refused.value.kind, refused.value.id) == ("thing", made)
    assert (await store.get_one("thing", {"id": made}))["n"] == 1
    assert await store.count("thing") == 2


async def test_add_lets_exactly_one_of_two_processes_claim_a_name(pg_store_url: str) -> None:
    from bitmail.store import AlreadyExists

    async with open_store(pg_store_url) as a, open_store(pg_store_url) as b:
        tries = []
        for s in (a, b):
            batch = Batch()
            batch.add("token", {"by": id(s)}, id="once")
            tries.append(s.commit(batch))
        results = await asyncio.gather(*tries, return_exceptions=True)
    assert sum(isinstance(r, AlreadyExists) for r in results) == 1


async def test_one_sending_process_per_sqlite_file_and_admin_commands_beside_it(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    async with open_store(url, sending=True) as serving:
        with pytest.raises(StoreError, match="another BitMail service is sending"):
            await open_store(url, sending=True).open()
        async with open_store(url) as admin:
            await admin.put("user", {"username": "robot"}, id="robot")
        assert await serving.get_one("user", {"id": "robot"})
