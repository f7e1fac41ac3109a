"""The shared store: PostgreSQL, for several BitMail processes on one database.

Documents live in one table, `docs(seq, kind, id, data jsonb, blob bytea)`;
a blob is kept as it is, and the server compresses large ones (TOAST).
For the lookups the service makes (INDEXES, per kind) a query compares
those keys as `data->'key' = $n::jsonb` (the same thing as `@>` for a
scalar) and names the kind as a literal, so the planner walks that kind's
partial btree, already ordered by `seq`, and stops after `limit` rows
instead of sorting every match. Any other key of a subset is checked with
`data @> $n::jsonb` on the rows found so.

Writes go through one flusher task per process: batches that arrive while a
commit is running wait and then share the next transaction (group commit),
each batch in its own savepoint so one bad batch fails alone. Claims run apart
from it, in their own short transaction with `FOR UPDATE SKIP LOCKED`, so two
processes never lease the same document and a claim never waits for a commit.

Live updates use LISTEN/NOTIFY on the channel `bitmail`. Every process —
the publisher included — hears each notification once on a dedicated
connection and hands it to its Hub, so a subscriber sees each payload exactly
once. NOTIFY payloads must stay under 8000 bytes: a larger payload is written
to the `notices` table and only its row number is sent; listeners read it back
(rows older than five minutes are dropped by later large publishes). Payloads
published while a listener is reconnecting are lost to it; live updates are a
hint and pages resynchronise from the API.

(Over 400 lines: one store's connection pool, migrations, group commit,
claims, reads and the listener are methods of one class sharing its pool;
the SQL they run is in pg_sql.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from . import codec
from .base import (
    BLOB,
    AlreadyExists,
    Batch,
    Document,
    Op,
    StorageFull,
    Store,
    StoreError,
    StoreUnavailable,
    apply_change,
    split_blob,
)
from .group import GroupCommit, Groups
from .pg_sql import (
    COLUMNS,
    KINDS_SQL,
    MIGRATIONS,
    claim_sql,
    key_indexes,
    select_sql,
    where_sql,
)

log = logging.getLogger(__name__)

CHANNEL = "bitmail"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; leave room for the envelope.
NOTIFY_LIMIT = 7900
NOTICE_TTL = "5 minutes"
LISTENER_NAME = "bitmail-listen"
# One fixed key for pg_advisory_xact_lock: the ASCII of "bitmail".
SCHEMA_LOCK = 0x6269746D61696C
DEADLOCK_RETRIES = 3

def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _doc(seq: int, id: str, data: Document, blob: bytes | None) -> Document:
    data["id"] = id
    data["seq"] = seq
    if blob is not None:
        data[BLOB] = blob
    return data


# put writes the document whatever was there; add fails if it exists.
# Parameters: kind, id, then the document's split_blob.
_INSERTS = {
    "put": "INSERT INTO docs (kind, id, data, blob) VALUES ($1, $2, $3, $4) "
           "ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data, blob = excluded.blob",
    "add": "INSERT INTO docs (kind, id, data, blob) VALUES ($1, $2, $3, $4)",
}


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset, run on every release: nothing. asyncpg still rolls
    back a transaction left open; its default reset query (RESET ALL, UNLISTEN
    *, CLOSE ALL, advisory unlock) is a round trip per release, and the
    store's pooled connections change none of that: no SET, no LISTEN (the
    listener has its own connection), no cursor, only transaction-scoped
    advisory locks."""


def _split_url(url: str) -> tuple[str, int, int]:
    """The DSN for asyncpg and the pool sizes from `?pool_size=&pool_min=`.

    Our own query parameters are removed: asyncpg would send unknown ones to
    the server as settings, which refuses them.
    """
    parts = urlsplit(url)
    query, max_size, min_size = [], 10, 1
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in ("pool_size", "pool_min"):
            try:
                number = int(value)
            except ValueError:
                raise StoreError(f"{name} must be a whole number, not {value!r}") from None
            if name == "pool_size":
                max_size = number
            else:
                min_size = number
        else:
            query.append((name, value))
    if max_size < 1 or not 0 <= min_size <= max_size:
        raise StoreError("need 0 <= pool_min <= pool_size and pool_size >= 1")
    return urlunsplit(parts._replace(query=urlencode(query))), max_size, min_size


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects, on every pooled connection.
    await conn.set_type_codec("jsonb", encoder=codec.dumps, decoder=codec.loads,
                              schema="pg_catalog")


def _server_name(dsn: str) -> str:
    """host:port/database of a URL, without user or password, for messages."""
    parts = urlsplit(dsn)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname or 'localhost'}{port}{parts.path}"


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Database and connection failures as the store's one error type."""
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StoreError(f"{type(exc).__name__}: {exc}") from exc


async def _make_key_indexes(conn: asyncpg.Connection) -> None:
    """Build the INDEXES lookups' indexes that `docs` lacks. Only the missing
    ones: even IF NOT EXISTS would lock out writers briefly. A build holds
    writers back (not readers) until the migration commits."""
    existing = {r["indexname"] for r in await conn.fetch(
        "SELECT indexname FROM pg_indexes "
        "WHERE schemaname = current_schema() AND tablename = 'docs'")}
    for name, sql in key_indexes().items():
        if name not in existing:
            await conn.execute(sql)


class PostgresStore(Store):
    """The store shared by several processes: PostgreSQL through an asyncpg pool.

    `url` is a `postgresql://` URL; `?pool_size=N` (default 10) and
    `?pool_min=N` (default 1) size the connection pool. One more connection
    per process stays open for LISTEN.
    """

    exclusive = False

    def __init__(self, url: str):
        super().__init__()
        self.dsn, self.pool_size, self.pool_min = _split_url(url)
        self._pool: asyncpg.Pool | None = None
        self._group = GroupCommit(self._apply, "pg-group-commit")
        # Live updates published while a NOTIFY is on its way go together in
        # the next one: one statement (and one turn at the server's
        # notification queue lock, taken at every commit that notifies) for
        # many payloads, in their order.
        self._notifier = GroupCommit(self._notify_all, "pg-notify")  # type: ignore[arg-type]
        self._listener: asyncio.Task[None] | None = None
        self._deliverer: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._inbox: asyncio.Queue[str] = asyncio.Queue()

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Connect and migrate. Raises StoreUnavailable naming the server
        (never its password) and the problem."""
        try:
            with _store_errors():
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=self.pool_min, max_size=self.pool_size,
                    init=_init_connection, reset=_keep_session)
                try:
                    async with self._pool.acquire() as conn:
                        await self._migrate(conn)
                except BaseException:
                    await self._pool.close()
                    self._pool = None
                    raise
        except StoreError as exc:
            raise StoreUnavailable(f"cannot open the PostgreSQL store at "
                                   f"{_server_name(self.dsn)}: {exc}") from None
        self._group.start()
        self._notifier.start()
        self._deliverer = asyncio.create_task(self._deliver_loop(), name="pg-deliver")
        self._listener = asyncio.create_task(self._listen_loop(), name="pg-listen")
        try:
            # Publishing right after open must reach our own subscribers too.
            await asyncio.wait_for(self._listening.wait(), 10)
        except TimeoutError:
            await self.close()
            raise StoreError("could not LISTEN on the database within 10 s") from None

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        """Bring the schema up to date; several processes may start at once,
        so all of it happens under one transaction-scoped advisory lock."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
            latest = MIGRATIONS[-1][0]
            if current > latest:
                raise StoreError(f"the database schema is version {current}, newer than "
                                 f"this BitMail knows ({latest}); upgrade BitMail")
            if current:
                # The lookups' indexes first: a migration may drop an index
                # (3 does), which locks out readers too until the commit, so
                # it should come last, not before minutes of index builds.
                await _make_key_indexes(conn)
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for sql in statements:
                    await conn.execute(sql)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
                log.info("store schema migrated to version %d", version)
            if not current:  # a new database: its table came with migration 1
                await _make_key_indexes(conn)

    async def close(self) -> None:
        await self._group.stop()  # every batch already handed in is committed first
        await self._notifier.stop()
        for task in (self._listener, self._deliverer):
            if task:
                task.cancel()
        await asyncio.gather(*(t for t in (self._listener, self._deliverer) if t),
                             return_exceptions=True)
        self._listener = self._deliverer = None
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 10)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    # -- writes ------------------------------------------------------------

    async def _commit(self, batch: Batch) -> list[Any]:
        return await self._group.submit(batch.ops)

    async def _apply(self, groups: Groups) -> list[Any]:
        try:
            return await self._apply_groups(groups)
        except asyncpg.DiskFullError as exc:
            raise StorageFull(f"PostgreSQL: {exc}") from exc

    async def _apply_groups(self, groups: Groups) -> list[Any]:
        async with self._require_pool().acquire() as conn:
            try:
                # Nearly always every batch goes: then savepoints, a round trip
                # each way per batch, would only cost time.
                async with conn.transaction():
                    return await self._apply_together(conn, groups)
            except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError,
                    asyncpg.DiskFullError):
                raise  # the connection is gone, or the disk full: the whole group fails
            except Exception:  # handled below, batch by batch
                pass
            # Some batch failed and took the transaction with it: again, each
            # batch in its own savepoint, so only the failing one fails.
            async with conn.transaction():
                return [await self._apply_batch(conn, ops) for ops in groups]

    async def _apply_together(self, conn: asyncpg.Connection, groups: Groups) -> list[Any]:
        """Every batch's operations in order, as _op does them, but each run
        of inserts of distinct documents sent as one executemany (one round
        trip for the run, not one per row: an accept is three or four
        inserts, and a group holds many accepts). Any error leaves the caller
        to redo the batches one by one."""
        results: list[list[Any]] = [[None] * len(ops) for ops in groups]
        run: list[tuple[int, int, Op]] = []

        async def send_run() -> None:
            if len({(op.kind, op.id) for _, _, op in run}) < len(run):
                for g, i, op in run:  # one document twice: its order matters
                    results[g][i] = await self._op(conn, op)
            else:
                for action, sql in _INSERTS.items():
                    rows = [(op.kind, op.id, *split_blob(op.doc or {})) for _, _, op in run
                            if op.action == action]
                    if rows:
                        await conn.executemany(sql, rows)
                for g, i, op in run:
                    results[g][i] = op.id
            run.clear()

        for g, ops in enumerate(groups):
            for i, op in enumerate(ops):
                if op.action in _INSERTS:
                    run.append((g, i, op))
                    continue
                if run:
                    await send_run()
                results[g][i] = await self._op(conn, op)
        if run:
            await send_run()
        return results

    async def _apply_batch(self, conn: asyncpg.Connection, ops: list[Op]) -> Any:
        """One batch in a savepoint: its result list, or the StoreError it failed with."""
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                async with conn.transaction():  # nested: a SAVEPOINT
                    return [await self._op(conn, op) for op in ops]
            except asyncpg.DeadlockDetectedError as exc:
                # Two processes' group transactions locked the same documents
                # in opposite orders; PostgreSQL aborted this statement. The
                # savepoint is rolled back, so the batch can simply run again.
                if attempt == DEADLOCK_RETRIES:
                    return StoreError(f"deadlock: {exc}")
            except StoreError as exc:
                return exc
            except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError,
                    asyncpg.DiskFullError):
                raise  # the connection is gone, or the disk full: the whole group fails
            except Exception as exc:  # a bad document, a failing update function
                return StoreError(str(exc))
        raise AssertionError("unreachable")

    async def _op(self, conn: asyncpg.Connection, op: Op) -> Any:
        if op.action == "put":
            await conn.execute(_INSERTS["put"], op.kind, op.id, *split_blob(op.doc or {}))
            return op.id
        if op.action == "add":
            try:
                await conn.execute(_INSERTS["add"], op.kind, op.id, *split_blob(op.doc or {}))
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(op.kind, str(op.id)) from None
            return op.id
        if op.action == "update":
            return await self._update(conn, op)
        if op.action == "delete":
            status = await conn.execute(
                "DELETE FROM docs WHERE kind = $1 AND id = $2", op.kind, op.id)
            return status != "DELETE 0"
        if op.action == "claim":
            return await self._claim(conn, op.kind, **op.args)
        if op.action == "expire":
            status = await conn.execute(
                # CASE: the cast alone would fail on a document whose
                # `expires` is not a number (no order of evaluation is promised).
                "DELETE FROM docs WHERE kind = $1 AND (CASE WHEN jsonb_typeof(data->'expires') "
                "= 'number' THEN (data->>'expires')::float8 END) < $2", op.kind, op.args["now"])
            return int(status.split()[-1])
        raise StoreError(f"unknown store operation {op.action}")

    async def _update(self, conn: asyncpg.Connection, op: Op) -> Document | None:
        if not callable(op.change):
            # A merge needs no round trip through Python: jsonb `||` is the
            # same top-level merge as {**doc, **change}.
            row = await conn.fetchrow(
                "UPDATE docs SET data = data || $3::jsonb WHERE kind = $1 AND id = $2 "
                f"RETURNING {COLUMNS}", op.kind, op.id, split_blob(op.change or {})[0])
            return _doc(*row) if row else None
        # The function must see the latest version and nobody may write the
        # document until we commit: lock the row.
        row = await conn.fetchrow(
            f"SELECT {COLUMNS} FROM docs WHERE kind = $1 AND id = $2 FOR UPDATE",
            op.kind, op.id)
        if row is None:
            return None
        new = apply_change(_doc(*row), op.change)
        if new is None:
            return _doc(*row)
        await conn.execute("UPDATE docs SET data = $2, blob = $3 WHERE seq = $1", row["seq"],
                           *split_blob(new))
        new["id"], new["seq"] = row["id"], row["seq"]
        return new

    async def _claim(self, conn: asyncpg.Connection, kind: str, now: float, owner: str,
                     lease: float, limit: int) -> list[Document]:
        rows = await conn.fetch(claim_sql(kind), float(now), limit, owner, float(now + lease))
        # RETURNING follows no particular order; claimers expect oldest due first.
        rows = sorted(rows, key=lambda r: (r["was_due"], r["seq"]))
        return [_doc(r["seq"], r["id"], r["data"], r["blob"]) for r in rows]

    async def claim(self, kind: str, *, now: float, owner: str, lease: float,
                    limit: int) -> list[Document]:
        # Its own short transaction, not the group's: the row locks are held
        # only for the claim, and a claim does not queue behind commits.
        with _store_errors():
            async with self._require_pool().acquire() as conn, conn.transaction():
                return await self._claim(conn, kind, now, owner, lease, limit)

    async def renew_leases(self, kind: str, ids: Sequence[str], *, owner: str,
                           until: float) -> list[str]:
        # Its own short transaction, as a claim: a renewal queued behind the
        # group's commits could come after the lease it extends ran out, and
        # another process would claim and send the job again.
        if not ids:
            return []
        # Rows locked in seq order, as every renewal and claim meets them, so
        # two of them never wait on each other (a deadlock is a StoreError).
        with _store_errors():
            rows = await self._require_pool().fetch(
                "WITH held AS (SELECT seq FROM docs WHERE kind = $1 AND id = ANY($2::text[]) "
                "AND data->>'lease_owner' = $4 ORDER BY seq FOR UPDATE) "
                "UPDATE docs SET data = docs.data || jsonb_build_object('due', $3::float8) "
                "FROM held WHERE docs.seq = held.seq AND docs.data->>'lease_owner' = $4 "
                "RETURNING docs.id", str(kind), list(ids), until, owner)
        return [row["id"] for row in rows]

    # -- reads -------------------------------------------------------------

    async def get(self, kind: str, subset: Document | None = None, *, limit: int | None = None,
                  before: int | None = None, newest_first: bool = False) -> list[Document]:
        query = select_sql(kind, subset, limit=limit, before=before, newest_first=newest_first)
        if query is None:
            return []
        with _store_errors():
            rows = await self._require_pool().fetch(query[0], *query[1])
        return [_doc(*row) for row in rows]

    async def get_by_ids(self, kind: str, ids: Sequence[str]) -> dict[str, Document]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        with _store_errors():
            rows = await self._require_pool().fetch(
                f"SELECT {COLUMNS} FROM docs WHERE kind = $1 AND id = ANY($2::text[])",
                str(kind), wanted)
        return {row["id"]: _doc(*row) for row in rows}

    async def count(self, kind: str, subset: Document | None = None) -> int:
        where = where_sql(kind, subset)
        if where is None:
            return 0
        sql, params = where
        with _store_errors():
            count: int = await self._require_pool().fetchval(
                f"SELECT count(*) FROM docs WHERE {sql}", *params)
        return count

    async def kinds(self) -> list[str]:
        with _store_errors():
            rows = await self._require_pool().fetch(KINDS_SQL)
        return [r["kind"] for r in rows]

    async def scan(self, kind: str, *, after: int = 0, limit: int = 500) -> list[Document]:
        with _store_errors():
            rows = await self._require_pool().fetch(
                f"SELECT {COLUMNS} FROM docs WHERE kind = $1 AND seq > $2 ORDER BY seq "
                "LIMIT $3", kind, after, limit)
        return [_doc(*row) for row in rows]

    async def schema_version(self) -> int:
        with _store_errors():
            version: int = await self._require_pool().fetchval(
                "SELECT coalesce(max(version), 0) FROM schema_version")
        return version

    # -- live updates --------------------------------------------------------

    async def publish(self, payload: dict[str, Any]) -> None:
        """NOTIFY every process on the database, this one included; its
        listener delivers to local subscribers, so nothing is delivered here."""
        text = _dumps({"p": payload})  # ASCII (json escapes the rest): len == bytes
        pool = self._require_pool()
        if len(text) < NOTIFY_LIMIT:
            await self._notifier.submit([text])  # type: ignore[list-item]
            return
        with _store_errors():
            async with pool.acquire() as conn, conn.transaction():
                ref = await conn.fetchval(
                    "INSERT INTO notices (payload) VALUES ($1) RETURNING id", payload)
                await conn.execute(
                    f"DELETE FROM notices WHERE at < now() - interval '{NOTICE_TTL}'")
                # Inside the transaction, so it goes out at commit, once the row is visible.
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, _dumps({"ref": ref}))

    async def _notify_all(self, groups: list[list[str]]) -> list[None]:
        """NOTIFY each payload text, in order, in one statement."""
        with _store_errors():
            await self._require_pool().execute(
                "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, n) "
                "ORDER BY n", CHANNEL, [texts[0] for texts in groups])
        return [None] * len(groups)

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        # Queued, not handled here: a reference needs a query, and one
        # consumer keeps payloads in the order they were sent.
        self._inbox.put_nowait(payload)

    async def _deliver_loop(self) -> None:
        while True:
            text = await self._inbox.get()
            try:
                message = json.loads(text)
                if "ref" in message:
                    payload = await self._require_pool().fetchval(
                        "SELECT payload FROM notices WHERE id = $1", message["ref"])
                    if payload is None:
                        log.warning("live update %s expired before it was read", message["ref"])
                        continue
                else:
                    payload = message["p"]
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not read a live update")
                continue
            self.hub.deliver(payload)

    async def _listen_loop(self) -> None:
        """Keep one connection LISTENing; reconnect with back-off when it drops."""
        delay = 0.1
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.dsn, server_settings={"application_name": LISTENER_NAME})
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, ev=lost: ev.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                self._listening.set()
                delay = 0.1
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), 10)
                    except TimeoutError:
                        # A peer that vanished without closing TCP is only
                        # noticed when we send something.
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
                log.warning("the live-update connection closed; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the live-update connection failed (%s); retrying in %.1f s",
                            exc, delay)
            finally:
                self._listening.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
