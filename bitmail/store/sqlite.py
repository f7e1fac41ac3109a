"""The embedded store: one SQLite file in WAL mode.

All writes go through one writer thread. Batches that arrive while a commit is
running wait and then go together in the next transaction (group commit), so
many concurrent requests share one fsync. Reads use their own connections, which
WAL lets run beside the writer.

(Over 400 lines: it is the whole of one store — schema, the writer thread,
every operation, the file lock and what a full disk looks like — and its
parts share that one connection's transaction rules; the SQL of lookups and
claims is a few lines each here, unlike PostgreSQL's in pg_sql.py.)
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..datadir import private_file
from . import codec, packing
from .base import (
    BLOB,
    INDEXES,
    AlreadyExists,
    Batch,
    Document,
    Op,
    StorageFull,
    Store,
    StoreError,
    StoreUnavailable,
    check_key,
    contains,
    split_blob,
)
from .group import GroupCommit, Groups

log = logging.getLogger(__name__)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS docs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        data TEXT NOT NULL,
        blob BLOB,
        UNIQUE (id, kind)
    )""",
    "CREATE INDEX IF NOT EXISTS ix_kind ON docs (kind, seq)",
)
# (id, kind) rather than (kind, id): an index that leads with kind would look
# to the planner like the best way into any lookup by kind, and it would pick
# it over the per-kind indexes below.

# Made at open and recorded as the file's user_version (files of version 1
# recorded none). Version 2 added `blob` (a document's bytes, packed): a file
# of version 1 gets the column at open, which SQLite does without rewriting
# rows. A file of a newer version is refused, as PostgreSQL's store does.
SCHEMA_VERSION = 2
# The distinct kinds, one probe of ix_kind each rather than a scan of every row.
KINDS_SQL = """WITH RECURSIVE k(kind) AS (
    SELECT min(kind) FROM docs
    UNION ALL
    SELECT (SELECT min(kind) FROM docs WHERE docs.kind > k.kind) FROM k
    WHERE k.kind IS NOT NULL)
SELECT kind FROM k WHERE kind IS NOT NULL"""


def _storage_failed(exc: BaseException) -> bool:
    """A write refused for want of room (SQLITE_FULL: SQLite turns ENOSPC into it)."""
    return isinstance(exc, sqlite3.Error) and (
        getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL)


def _problem(exc: BaseException) -> str:
    """What went wrong, in words: OSError's strerror, SQLite's message."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


def _path(key: str) -> str:
    return f"json_extract(data, '$.{check_key(key)}')"


def _index_sql() -> list[str]:
    # Partial indexes: a kind's index is only computed for that kind's rows.
    out = []
    for kind, per_kind in INDEXES.items():
        for keys in per_kind:
            cols = ", ".join(_path(k) for k in keys)
            out.append(f"CREATE INDEX IF NOT EXISTS ix_{kind}_{'_'.join(keys)} "
                       f"ON docs ({cols}, seq) WHERE kind = '{check_key(kind)}'")
    return out


# Seconds a connection waits for another one's write lock.
BUSY_TIMEOUT = 5.0

# get_by_ids: up to this many ids are read on the loop's own thread, and a
# query names at most this many (SQLite allows 32,766 parameters).
_INLINE_IDS = 64
_RENEW_CHUNK = 500  # ids per renewal statement, well under SQLite's limit on variables
_IDS_PER_QUERY = 500


def _where(kind: str, subset: Document | None) -> tuple[str, list[Any], Document]:
    """SQL for the scalar top-level keys of `subset`; the rest is checked in Python."""
    # The kind as a literal, so the planner can use that kind's partial indexes.
    clauses, rest = [f"kind = '{check_key(kind)}'"], {}
    params: list[Any] = []
    for key, value in (subset or {}).items():
        if key == "id" and isinstance(value, str):
            clauses.append("id = ?")
            params.append(value)
        elif isinstance(value, (bool, int, float)):
            clauses.append(f"{_path(key)} = ?")
            params.append(value)
            rest[key] = value  # json_extract gives 1 for true and for 1: Python tells them apart
        elif isinstance(value, str):
            clauses.append(f"{_path(key)} = ?")
            params.append(value)
        elif value is None:
            clauses.append(f"json_type(data, '$.{check_key(key)}') = 'null'")
        else:
            rest[key] = value
    return " AND ".join(clauses), params, rest


# Every read selects these, in this order, for _doc.
_COLUMNS = "seq, id, data, blob"


def _doc(seq: int, id: str, data: str, blob: bytes | None) -> Document:
    doc: Document = codec.loads(data)
    doc["id"] = id
    doc["seq"] = seq
    if blob is not None:
        doc[BLOB] = packing.unpack(blob)
    return doc


def _row(doc: Document) -> tuple[str, bytes | None]:
    """The stored `data` and `blob` of a document (packed in the writer's thread)."""
    data, blob = split_blob(doc)
    return codec.dumps(data), None if blob is None else packing.pack(blob)


class SQLiteStore(Store):
    """The default store: nothing to install, durable, one process at a time."""

    def __init__(self, path: str, *, exclusive: bool = True):
        super().__init__()
        self.path = path
        # The one process that sends from this file holds its lock, so no two
        # send the same outbox and a restart may take back every lease.
        self.exclusive = exclusive
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-write")
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="sqlite-read")
        self._local = threading.local()
        self._wconn: sqlite3.Connection | None = None
        self._group = GroupCommit(self._apply, "sqlite-group-commit")
        self._lock_fd: int | None = None
        self._reader_conns: list[sqlite3.Connection] = []

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Open (or create, 0600 in a 0700 folder) the file.

        Raises StoreUnavailable naming the file and the problem: not a
        database, a folder in its place, no permission, another sending
        process holding it, a schema newer than this BitMail knows.
        """
        try:
            if self.path != ":memory:":
                self._prepare_files()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._writer, self._open_writer)
        except (OSError, sqlite3.Error, StoreError) as exc:
            self._release_lock()
            if self._wconn is not None:
                self._wconn.close()
                self._wconn = None
            if isinstance(exc, StoreUnavailable):
                raise
            raise StoreUnavailable(f"cannot open the SQLite store {self.path}: "
                                   f"{_problem(exc)}") from None
        self._group.start()

    def _prepare_files(self) -> None:
        path = Path(self.path)
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder, not a file")
        # Created before SQLite sees it, so it is 0600 from the first byte;
        # SQLite gives its -wal and -shm files the database file's mode.
        private_file(path)
        for extra in ("-wal", "-shm"):
            if Path(self.path + extra).exists():
                private_file(Path(self.path + extra))
        if self.exclusive:
            self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._release_lock()
                raise StoreUnavailable(
                    f"another BitMail service is sending from {self.path}; "
                    "several serving processes need the PostgreSQL store"
                ) from None

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                               timeout=BUSY_TIMEOUT)
        # Turning a file's journal into WAL (its first open) needs it to
        # itself, and SQLite answers "locked" at once rather than waiting
        # while another connection opens it too: wait here instead.
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    conn.close()
                    raise
                time.sleep(0.01)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _open_writer(self) -> None:
        self._wconn = conn = self._connect()
        # One process at a time (busy_timeout waits): two opening a file of
        # an older version at once would otherwise both add its columns.
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Files written before versions were recorded say 0 (and are 1).
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"the file's schema is version {version}, newer than this "
                                 f"BitMail knows ({SCHEMA_VERSION}); upgrade BitMail")
            for sql in SCHEMA:
                conn.execute(sql)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(docs)")}
            if BLOB not in columns:
                conn.execute(f"ALTER TABLE docs ADD COLUMN {BLOB} BLOB")
            for sql in _index_sql():
                conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if self.path != ":memory:":
            # journal_mode=WAL has just made them, with the file's mode.
            for extra in ("-wal", "-shm"):
                if Path(self.path + extra).exists():
                    private_file(Path(self.path + extra))

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # An in-memory database exists only on its own connection.
            conn = self._wconn if self.path == ":memory:" and self._wconn else self._connect()
            self._local.conn = conn
            self._reader_conns.append(conn)
        return conn

    async def close(self) -> None:
        await self._group.stop()
        loop = asyncio.get_running_loop()
        if self._wconn is not None:
            await loop.run_in_executor(self._writer, self._wconn.close)
            self._wconn = None
        for conn in self._reader_conns:
            conn.close()
        self._reader_conns.clear()
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self._release_lock()

    # -- writes ------------------------------------------------------------

    async def _commit(self, batch: Batch) -> list[Any]:
        return await self._group.submit(batch.ops)

    async def _apply(self, groups: Groups) -> list[Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._apply_in_thread, groups)

    def _apply_in_thread(self, groups: Groups) -> list[Any]:
        conn = self._wconn
        assert conn is not None
        results: list[Any] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for ops in groups:
                # Each batch in its own savepoint: one bad batch fails alone.
                conn.execute("SAVEPOINT batch")
                try:
                    results.append([self._op(conn, op) for op in ops])
                    conn.execute("RELEASE batch")
                except Exception as exc:
                    if _storage_failed(exc):
                        raise  # the whole transaction is lost, not only this batch
                    conn.execute("ROLLBACK TO batch")
                    conn.execute("RELEASE batch")
                    results.append(exc if isinstance(exc, StoreError) else StoreError(str(exc)))
            conn.execute("COMMIT")
        except BaseException as exc:
            # SQLite may have rolled back by itself already (a full disk
            # does); a ROLLBACK then would only hide the real error.
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as again:
                    log.error("rollback after %s failed too: %s", exc, again)
            if _storage_failed(exc):
                raise StorageFull(f"SQLite {self.path}: {exc}") from exc
            raise
        return results

    def _op(self, conn: sqlite3.Connection, op: Op) -> Any:
        if op.action == "put":
            conn.execute(
                "INSERT INTO docs (kind, id, data, blob) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data, blob = excluded.blob",
                (op.kind, op.id, *_row(op.doc or {})),
            )
            return op.id
        if op.action == "add":
            try:
                conn.execute("INSERT INTO docs (kind, id, data, blob) VALUES (?, ?, ?, ?)",
                             (op.kind, op.id, *_row(op.doc or {})))
            except sqlite3.IntegrityError:
                raise AlreadyExists(op.kind, str(op.id)) from None
            return op.id
        if op.action == "update" and not callable(op.change):
            # A merge is done by SQLite's JSON functions: the document is
            # never decoded in Python, however large it is.
            change = op.change or {}
            sets = ", ".join(f"'$.{check_key(k)}', json(?)" for k in change)
            row = conn.execute(
                f"UPDATE docs SET data = json_set(data, {sets}) WHERE kind = ? AND id = ? "
                f"RETURNING {_COLUMNS}",
                (*(json.dumps(v) for v in change.values()), op.kind, op.id),
            ).fetchone() if change else conn.execute(
                f"SELECT {_COLUMNS} FROM docs WHERE kind = ? AND id = ?", (op.kind, op.id)
            ).fetchone()
            return _doc(*row) if row else None
        if op.action == "update":
            assert callable(op.change)  # a merge was done above
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM docs WHERE kind = ? AND id = ?", (op.kind, op.id)
            ).fetchone()
            if row is None:
                return None
            new = op.change(_doc(*row))
            if new is None:
                return _doc(*row)
            conn.execute("UPDATE docs SET data = ?, blob = ? WHERE seq = ?", (*_row(new), row[0]))
            new["id"], new["seq"] = row[1], row[0]
            return new
        if op.action == "delete":
            cur = conn.execute("DELETE FROM docs WHERE kind = ? AND id = ?", (op.kind, op.id))
            return cur.rowcount > 0
        if op.action == "claim":
            return self._claim(conn, op.kind, **op.args)
        if op.action == "renew":
            ids = op.args["ids"]
            rows = conn.execute(
                "UPDATE docs SET data = json_set(data, '$.due', ?) "
                f"WHERE kind = ? AND id IN ({', '.join('?' * len(ids))}) "
                f"AND {_path('lease_owner')} = ? RETURNING id",
                (op.args["until"], op.kind, *ids, op.args["owner"])).fetchall()
            return [row[0] for row in rows]
        if op.action == "expire":
            cur = conn.execute(
                f"DELETE FROM docs WHERE kind = '{check_key(op.kind)}' "
                f"AND json_type(data, '$.expires') IN ('integer', 'real') "
                f"AND {_path('expires')} < ?", (op.args["now"],))
            return cur.rowcount
        if op.action == "release":
            # A restart tries everything afresh: leases dropped, back-off forgotten.
            cur = conn.execute(
                f"UPDATE docs SET data = json_set(data, '$.due', min({_path('due')}, ?)) "
                f"WHERE kind = '{check_key(op.kind)}' AND {_path('due')} > ?",
                (op.args["now"], op.args["now"]),
            )
            return cur.rowcount
        raise StoreError(f"unknown store operation {op.action}")

    def _claim(self, conn: sqlite3.Connection, kind: str, now: float, owner: str,
               lease: float, limit: int) -> list[Document]:
        rows = conn.execute(
            "UPDATE docs SET data = json_set(data, '$.lease_owner', ?, '$.due', ?) "
            f"WHERE seq IN (SELECT seq FROM docs INDEXED BY ix_{check_key(kind)}_due "
            f"WHERE kind = '{kind}' AND {_path('due')} <= ? "
            f"ORDER BY {_path('due')} LIMIT ?) RETURNING {_COLUMNS}",
            (owner, now + lease, now, limit),
        ).fetchall()
        return [_doc(*row) for row in rows]

    async def claim(self, kind: str, *, now: float, owner: str, lease: float,
                    limit: int) -> list[Document]:
        batch = Batch()
        batch.ops.append(Op("claim", kind, args={
            "now": now, "owner": owner, "lease": lease, "limit": limit}))
        claimed: list[Document] = (await self.commit(batch))[0]
        return claimed

    async def renew_leases(self, kind: str, ids: Sequence[str], *, owner: str,
                           until: float) -> list[str]:
        # One process holds an SQLite store: no other renews or claims meanwhile.
        renewed: list[str] = []
        for start in range(0, len(ids), _RENEW_CHUNK):
            batch = Batch()
            batch.ops.append(Op("renew", kind, args={
                "ids": list(ids[start:start + _RENEW_CHUNK]), "owner": owner, "until": until}))
            renewed += (await self.commit(batch))[0]
        return renewed

    async def release_leases(self, kind: str) -> int:
        batch = Batch()
        batch.ops.append(Op("release", kind, args={"now": time.time()}))
        released: int = (await self.commit(batch))[0]
        return released

    # -- reads -------------------------------------------------------------

    async def get(self, kind: str, subset: Document | None = None, *, limit: int | None = None,
                  before: int | None = None, newest_first: bool = False) -> list[Document]:
        if subset and isinstance(subset.get("id"), str) and self.path != ":memory:":
            # A lookup by primary key takes microseconds; handing it to a
            # reader thread and back would cost more than the read itself.
            return self._get(kind, subset, limit, before, newest_first)
        loop = asyncio.get_running_loop()
        pool = self._writer if self.path == ":memory:" else self._readers
        return await loop.run_in_executor(
            pool, self._get, kind, subset, limit, before, newest_first)

    async def get_by_ids(self, kind: str, ids: Sequence[str]) -> dict[str, Document]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        if self.path != ":memory:" and len(wanted) <= _INLINE_IDS:
            return self._get_by_ids(kind, wanted)  # as a lookup by id: quicker than a thread
        loop = asyncio.get_running_loop()
        pool = self._writer if self.path == ":memory:" else self._readers
        return await loop.run_in_executor(pool, self._get_by_ids, kind, wanted)

    def _get_by_ids(self, kind: str, ids: list[str]) -> dict[str, Document]:
        found: dict[str, Document] = {}
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start:start + _IDS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            for row in self._reader().execute(
                    f"SELECT {_COLUMNS} FROM docs WHERE kind = '{check_key(kind)}' "
                    f"AND id IN ({marks})", chunk):
                doc = _doc(*row)
                found[doc["id"]] = doc
        return found

    def _get(self, kind: str, subset: Document | None, limit: int | None, before: int | None,
             newest_first: bool) -> list[Document]:
        where, params, rest = _where(kind, subset)
        if before is not None:
            where += " AND seq < ?"
            params.append(before)
        sql = f"SELECT {_COLUMNS} FROM docs WHERE {where} ORDER BY seq"
        sql += " DESC" if newest_first else ""
        if not rest and limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = []
        for row in self._reader().execute(sql, params):
            doc = _doc(*row)
            if rest and not all(k in doc and contains(doc[k], v) for k, v in rest.items()):
                continue
            out.append(doc)
            if limit is not None and len(out) >= limit:
                break
        return out

    async def count(self, kind: str, subset: Document | None = None) -> int:
        where, params, rest = _where(kind, subset)
        if rest:
            return len(await self.get(kind, subset))
        loop = asyncio.get_running_loop()
        pool = self._writer if self.path == ":memory:" else self._readers
        return await loop.run_in_executor(
            pool, lambda: self._reader().execute(
                f"SELECT count(*) FROM docs WHERE {where}", params).fetchone()[0])

    async def kinds(self) -> list[str]:
        return [row[0] for row in await self._read(KINDS_SQL, ())]

    async def scan(self, kind: str, *, after: int = 0, limit: int = 500) -> list[Document]:
        rows = await self._read(f"SELECT {_COLUMNS} FROM docs WHERE kind = ? AND seq > ? "
                                "ORDER BY seq LIMIT ?", (kind, after, limit))
        return [_doc(*row) for row in rows]

    async def schema_version(self) -> int:
        rows = await self._read("PRAGMA user_version", ())
        return int(rows[0][0])

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        loop = asyncio.get_running_loop()
        pool = self._writer if self.path == ":memory:" else self._readers
        return await loop.run_in_executor(
            pool, lambda: self._reader().execute(sql, params).fetchall())
