"""Folder lookups with and without the store's indexes, on SQLite and PostgreSQL.

Loads N message-like documents (owners drawn uniformly from --owners, 60 %
inbox, 40 % sent) with the databases' bulk paths, then times, one lookup at a
time, the lookup the web-mail page makes for a folder page —
`get("message", {"owner": X, "folder": "inbox"}, limit=50, newest_first=True)`
through the store — against the same query written so that no index on the
document's content can serve it:

- scan: the kind walked in seq order (newest first) until 50 matches are found,
  which is what the database does without the index (it reads about
  owners * 50 / 0.6 rows, however many documents there are);
- full scan: the same, but ordered by an expression, so every document of the
  kind is read and sorted (what any lookup for a rare owner or an empty
  folder costs without the index).

    python bench/store_lookup.py                          # 100 000 documents, both stores
    python bench/store_lookup.py --docs 1000000 --backend both
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg

from bitmail.store import Store, open_store
from bitmail.store.base import new_id
from bitmail.store.postgres import select_sql

CHUNK = 50_000
SUBSET_KEYS = ("owner", "folder")
WORDS = ("meeting notes invoice lunch report draft review budget travel plan update "
         "question photos agenda contract release friday monday").split()


def documents(n: int, owners: int, seed: int = 7) -> Iterator[list[tuple[str, str, str]]]:
    """Chunks of (kind, id, JSON) rows of realistic folder entries, oldest first."""
    rng = random.Random(seed)
    start = time.time() - n * 30.0
    chunk: list[tuple[str, str, str]] = []
    for i in range(n):
        owner = f"user{rng.randrange(owners):04d}"
        inbox = rng.random() < 0.6
        peers = [f"user{rng.randrange(owners):04d}@localhost" for _ in range(rng.randint(1, 3))]
        subject = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))).capitalize()
        doc = {
            "owner": owner,
            "folder": "inbox" if inbox else "sent",
            "from": peers[0] if inbox else f"{owner}@localhost",
            "to": [f"{owner}@localhost"] if inbox else peers,
            "cc": [],
            "subject": subject,
            "preview": " ".join(rng.choice(WORDS) for _ in range(16)),
            "date": start + i * 30.0,
            "message_id": f"<{new_id()}@localhost>",
            "unread": inbox and rng.random() < 0.3,
            "status": "delivered" if inbox else "sent",
        }
        if not inbox:
            doc["recipients"] = [{"address": a, "status": "delivered", "provider": "ses"}
                                 for a in peers]
        chunk.append(("message", new_id(), json.dumps(doc, separators=(",", ":"))))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class Timing:
    lookups: int
    seconds: float
    rows: int

    @property
    def per_second(self) -> float:
        return self.lookups / self.seconds

    @property
    def ms(self) -> float:
        return 1000 * self.seconds / self.lookups


async def timed(lookup: Callable[[str], Awaitable[int]], owners: int, seconds: float,
                at_least: int = 3) -> Timing:
    """Run `lookup` for random owners, one after another, for `seconds`."""
    rng = random.Random(11)
    for _ in range(min(20, at_least)):  # warm caches and prepared statements
        await lookup(f"user{rng.randrange(owners):04d}")
    count, rows, began = 0, 0, time.perf_counter()
    while count < at_least or time.perf_counter() - began < seconds:
        rows += await lookup(f"user{rng.randrange(owners):04d}")
        count += 1
    return Timing(count, time.perf_counter() - began, rows)


def decoded_ids(rows: list) -> list[str]:
    """The ids of (seq, id, data) rows, after decoding each document as the store does,
    so a scan pays for the same work as a lookup through the store."""
    ids = []
    for _, doc_id, data in rows:
        json.loads(data)
        ids.append(doc_id)
    return ids


# -- the two backends -----------------------------------------------------------

class Backend:
    """One store to load and time; subclasses know its bulk path and raw SQL."""

    name = ""
    url = ""

    async def setup(self) -> None: ...
    async def load(self, chunk: list[tuple[str, str, str]]) -> None: ...
    async def after_load(self) -> None: ...
    async def scan(self, owner: str, full: bool) -> list[str]: ...
    async def explain(self) -> str: ...
    async def teardown(self) -> None: ...


class SQLiteBackend(Backend):
    name = "sqlite"

    async def setup(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="bitmail-bench-")
        self.path = os.path.join(self.dir, "store.db")
        self.url = f"sqlite:///{self.path}"
        async with open_store(self.url):  # the schema and indexes, as the service makes them
            pass
        self.conn = sqlite3.connect(self.path, isolation_level=None)

    async def load(self, chunk: list[tuple[str, str, str]]) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany("INSERT INTO docs (kind, id, data) VALUES (?, ?, ?)", chunk)
        self.conn.execute("COMMIT")

    async def after_load(self) -> None:
        # Fold the bulk load's write-ahead log into the database file, as a
        # checkpoint would by itself in steady state; reads through a large
        # WAL are slower and would be counted against whichever phase ran first.
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _sql(self, full: bool) -> str:
        # What the SQLite store runs for this subset, with every index refused.
        order = "seq + 0" if full else "seq"
        return ("SELECT seq, id, data FROM docs NOT INDEXED WHERE kind = 'message' "
                "AND json_extract(data, '$.owner') = ? AND json_extract(data, '$.folder') = ? "
                f"ORDER BY {order} DESC LIMIT 50")

    async def scan(self, owner: str, full: bool) -> list[str]:
        rows = self.conn.execute(self._sql(full), (owner, "inbox")).fetchall()
        return decoded_ids(rows)

    async def explain(self) -> str:
        sql = ("SELECT seq, id, data FROM docs WHERE kind = 'message' "
               "AND json_extract(data, '$.owner') = ? AND json_extract(data, '$.folder') = ? "
               "ORDER BY seq DESC LIMIT 50")
        lines = []
        for label, q in (("indexed", sql), ("scan", self._sql(False)),
                         ("full scan", self._sql(True))):
            plan = self.conn.execute("EXPLAIN QUERY PLAN " + q, ("user0001", "inbox")).fetchall()
            lines.append(f"  {label}: " + "; ".join(row[-1] for row in plan))
        return "\n".join(lines)

    async def teardown(self) -> None:
        self.conn.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, server_url: str):
        self.server_url = server_url

    async def setup(self) -> None:
        self.db = f"bitmail_bench_{os.urandom(4).hex()}"
        admin = await asyncpg.connect(self.server_url)
        try:
            await admin.execute(f'CREATE DATABASE "{self.db}"')
        finally:
            await admin.close()
        self.url = urlsplit(self.server_url)._replace(path="/" + self.db).geturl()
        async with open_store(self.url):
            pass
        self.conn = await asyncpg.connect(self.url)

    async def load(self, chunk: list[tuple[str, str, str]]) -> None:
        await self.conn.copy_records_to_table("docs", columns=["kind", "id", "data"],
                                              records=chunk)

    async def after_load(self) -> None:
        # Autovacuum would get there too, at a moment of its choosing.
        await self.conn.execute("VACUUM ANALYZE docs")

    def _sql(self, full: bool) -> str:
        # `data || '{}'` is the same document, but no index is on that expression.
        order = "seq + 0" if full else "seq"
        return ("SELECT seq, id, data FROM docs WHERE kind = 'message' "
                f"AND (data || '{{}}'::jsonb) @> $1::jsonb ORDER BY {order} DESC LIMIT 50")

    async def scan(self, owner: str, full: bool) -> list[str]:
        rows = await self.conn.fetch(self._sql(full),
                                     json.dumps({"owner": owner, "folder": "inbox"}))
        return decoded_ids(rows)

    async def explain(self) -> str:
        subset = {"owner": "user0001", "folder": "inbox"}
        sql, args = select_sql("message", subset, limit=50, newest_first=True)
        args = [json.dumps(a) for a in args]  # jsonb parameters, as text
        lines = []
        for label, q, a in (("indexed", sql, args),
                            ("scan", self._sql(False), [json.dumps(subset)]),
                            ("full scan", self._sql(True), [json.dumps(subset)])):
            plan = await self.conn.fetch("EXPLAIN " + q, *a)
            lines.append(f"  {label}:\n" + "\n".join("    " + r[0] for r in plan))
        return "\n".join(lines)

    async def teardown(self) -> None:
        await self.conn.close()
        admin = await asyncpg.connect(self.server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        finally:
            await admin.close()


# -- the run -------------------------------------------------------------------

async def run(backend: Backend, args: argparse.Namespace) -> dict:
    await backend.setup()
    try:
        began = time.perf_counter()
        for n, chunk in enumerate(documents(args.docs, args.owners), 1):
            await backend.load(chunk)
            print(f"\r{backend.name}: loaded {min(n * CHUNK, args.docs):,} documents",
                  end="", file=sys.stderr, flush=True)
        await backend.after_load()
        load = time.perf_counter() - began
        print(file=sys.stderr)

        async with open_store(backend.url) as store:
            await check_same_results(store, backend)

            async def indexed(owner: str, store: Store = store) -> int:
                return len(await store.get("message", {"owner": owner, "folder": "inbox"},
                                           limit=50, newest_first=True))

            async def scan(owner: str) -> int:
                return len(await backend.scan(owner, False))

            async def full(owner: str) -> int:
                return len(await backend.scan(owner, True))

            result = {
                "backend": backend.name, "docs": args.docs, "load": load,
                "indexed": await timed(indexed, args.owners, args.seconds, at_least=50),
                "scan": await timed(scan, args.owners, args.seconds),
                "full": await timed(full, args.owners, args.seconds),
            }
        if args.explain:
            print(f"{backend.name} plans:\n{await backend.explain()}")
        return result
    finally:
        await backend.teardown()


async def check_same_results(store: Store, backend: Backend) -> None:
    """The three ways must find the same page, or the timings compare nothing."""
    for owner in ("user0000", "user0001"):
        page = [d["id"] for d in await store.get(
            "message", {"owner": owner, "folder": "inbox"}, limit=50, newest_first=True)]
        for full in (False, True):
            if await backend.scan(owner, full) != page:
                raise SystemExit(f"{backend.name}: the scan found another page for {owner}")


def report(results: list[dict]) -> None:
    head = (f"{'backend':9} {'docs':>10} {'load s':>7} {'docs/s':>8} | {'indexed/s':>9} "
            f"{'ms':>6} | {'scan/s':>7} {'ms':>7} | {'full/s':>7} {'ms':>8} | "
            f"{'idx÷scan':>8} {'idx÷full':>8}")
    print(head)
    print("-" * len(head))
    for r in results:
        i, s, f = r["indexed"], r["scan"], r["full"]
        print(f"{r['backend']:9} {r['docs']:>10,} {r['load']:>7.1f} {r['docs'] / r['load']:>8,.0f}"
              f" | {i.per_second:>9,.0f} {i.ms:>6.2f} | {s.per_second:>7,.1f} {s.ms:>7.1f}"
              f" | {f.per_second:>7,.2f} {f.ms:>8.1f} | {i.per_second / s.per_second:>8,.0f}"
              f" {i.per_second / f.per_second:>8,.0f}")
    rows = statistics.mean(r["indexed"].rows / r["indexed"].lookups for r in results)
    print(f"(one lookup at a time; {rows:.0f} documents per page on average)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--owners", type=int, default=1000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="how long to time each kind of lookup")
    parser.add_argument("--pg-url", default=os.environ.get(
        "BITMAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL server; a database is made on it for the run and dropped after")
    parser.add_argument("--no-explain", dest="explain", action="store_false",
                        help="do not print the query plans")
    args = parser.parse_args()

    backends: list[Backend] = []
    if args.backend in ("sqlite", "both"):
        backends.append(SQLiteBackend())
    if args.backend in ("postgres", "both"):
        backends.append(PostgresBackend(args.pg_url))

    async def all_of_them() -> list[dict]:
        return [await run(b, args) for b in backends]

    report(asyncio.run(all_of_them()))
    if args.docs < 1_000_000:
        print("\nAt a million documents (a few minutes):\n"
              f"  python bench/store_lookup.py --docs 1000000 --backend {args.backend}")


if __name__ == "__main__":
    main()
