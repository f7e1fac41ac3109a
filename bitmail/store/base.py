"""The store interface, shared by the SQLite and PostgreSQL stores.

Documents are JSON objects grouped by kind ("message", "outbox", "user", …).
Each has a string `id` and a `seq` that grows with insertion, which gives the
newest-first order and the paging cursor. A document may also carry bytes
under the key `blob` (BLOB): they are kept beside its JSON, as bytes, not
inside it (no escaping, no base64, no JSON parse of a 100 KB message), and
each store keeps them compressed where that saves room. Writes go in
batches that commit together; concurrent batches may share one commit
(group commit).
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..metrics import STORE_COMMIT_SECONDS
from .hub import Hub, Subscription

Document = dict[str, Any]
# The reserved key of a document's bytes; like `id` and `seq`, it has a column
# of its own.
BLOB = "blob"
Change = dict[str, Any] | Callable[[Document], Document | None]


class Kind(StrEnum):
    """Every kind of document BitMail keeps, and the module that owns it."""

    MESSAGE = "message"  # a folder copy: a Sent one with its recipients' statuses (mailbox)
    BODY = "body"  # a message's bytes, shared by its copies (bodies)
    OUTBOX = "outbox"  # a message on its way: recipients left, attempts, due, lease (outbox)
    TRACKING = "tracking"  # a provider's id for a message -> BitMail's (mailbox)
    NOTICE = "notice"  # a verified webhook event, applied once (notices)
    WEBHOOK_TOKEN = "webhook_token"  # a one-time webhook token already used (web/hooks)
    SUPPRESSION = "suppression"  # an address BitMail no longer sends to (suppression)
    USER = "user"  # an account (accounts)
    SESSION = "session"  # a logged-in page (accounts)
    APIKEY = "apikey"  # a program's key, hashed (apikeys)
    RATELIMIT = "ratelimit"  # failed logins per account and address (limits)
    IDEMPOTENCY = "idempotency"  # a submission's first answer, by its key (idempotency)
    PROVIDER_HEALTH = "provider_health"  # a provider's health, shared (mta/board)


# The lookups the service makes, per kind. Both stores index exactly these,
# so no lookup scans a kind and no write pays for another kind's indexes.
# Everything else is looked up by id (or lists a whole kind). A new lookup
# by other keys belongs here: without its index it reads the whole kind.
INDEXES: dict[Kind, tuple[tuple[str, ...], ...]] = {
    Kind.MESSAGE: (("owner", "folder"), ("message_id",), ("body",)),
    Kind.OUTBOX: (("due",), ("body",)),  # body: is a deleted message's body still wanted?
    Kind.NOTICE: (("due",),),  # recorded webhook notices, claimed like the outbox
    Kind.SESSION: (("username",),),  # a user's sessions, ended together
    Kind.APIKEY: (("username",),),  # a user's keys, listed and counted
}
_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


# Ids: a random prefix per process and a counter: unique across processes,
# without a system call per document. Not secret: whoever sees one id can
# tell the next ones. So a client never names the id of a document in a kind
# whose ids come from here (it could take the id of somebody's mail to come),
# and a new document goes in with `add`, which never replaces one.
_ID_PREFIX = secrets.token_hex(6)
_ID_COUNTER = itertools.count()


def new_id() -> str:
    """A new document id: 22 lowercase hex digits (while the counter fits 10)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):010x}"


class StoreError(Exception):
    """The store cannot do what was asked (bad URL, bad key, lost connection)."""


class AlreadyExists(StoreError):
    """Batch.add found a document of `kind` with the id `id`; nothing of its
    batch was written."""

    def __init__(self, kind: str, id: str):
        super().__init__(f"{kind} {id} exists already")
        self.kind = kind
        self.id = id


class StoreUnavailable(StoreError):
    """The store cannot be opened at all (a corrupt or unreadable file, an
    unreachable server); the message names the file or server and the problem."""


class StorageFull(StoreError):
    """A write failed because the disk (or the database server's disk) is
    full. Nothing of the batch was committed; the same write may succeed once
    there is room again."""


def split_blob(doc: Document) -> tuple[Document, bytes | None]:
    """The JSON part of a stored document (without id, seq and blob) and its
    bytes; the document itself when it has none of those (Batch.put and add
    strip id and seq already), not a copy, so it must not be changed after.

    Raises StoreError when `blob` is there but not bytes."""
    blob = doc.get(BLOB)
    if blob is not None and not isinstance(blob, bytes):
        raise StoreError(f"a document's {BLOB} must be bytes, not {type(blob).__name__}")
    if BLOB not in doc and "id" not in doc and "seq" not in doc:
        return doc, None
    return {k: v for k, v in doc.items() if k not in ("id", "seq", BLOB)}, blob


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise StoreError(f"document keys used in lookups must be plain names, not {key!r}")
    return key


def contains(doc: Any, subset: Any) -> bool:
    """JSON containment, as PostgreSQL's jsonb `@>`: every key and element of
    `subset` is in `doc` (objects recursively, arrays as sub-multisets)."""
    if isinstance(subset, dict):
        return isinstance(doc, dict) and all(
            k in doc and contains(doc[k], v) for k, v in subset.items()
        )
    if isinstance(subset, list):
        if not isinstance(doc, list):
            return False
        return all(any(contains(d, s) for d in doc) for s in subset)
    if isinstance(subset, bool) or isinstance(doc, bool):
        return type(subset) is type(doc) and subset == doc
    return bool(doc == subset)


@dataclass(slots=True)
class Op:
    """One write inside a batch."""

    action: str  # put | add | update | delete | claim | renew | expire | release
    kind: str
    id: str | None = None
    doc: Document | None = None
    change: Change | None = None
    args: dict[str, Any] = field(default_factory=dict)


# What to do once a batch is durable: given the store and the batch's results,
# return a live update to publish (or None), and perhaps signal something in
# this process.
AfterCommit = Callable[["Store", list[Any]], dict[str, Any] | None]


class Batch:
    """Writes that commit together or not at all, and what follows once they
    are durable (live updates, wake-ups): whoever adds writes adds their
    consequences beside them, and the owner of the step commits once."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.after: list[AfterCommit] = []

    def on_commit(self, hook: AfterCommit) -> None:
        """Run `hook(store, results)` after the commit succeeds (results as
        commit returns them)."""
        self.after.append(hook)

    def put(self, kind: str, doc: Document, *, id: str | None = None) -> str:
        """Write `doc` under `id` (else its own `id`, else a new one) whatever
        is there: an existing document is replaced, and keeps its `seq`. For
        documents meant to be replaced; a new one goes in with `add`."""
        doc_id = id or doc.get("id") or new_id()
        body = {k: v for k, v in doc.items() if k not in ("id", "seq")}
        self.ops.append(Op("put", kind, doc_id, doc=body))
        return doc_id

    def add(self, kind: str, doc: Document, *, id: str | None = None) -> str:
        """Insert `doc` under `id` (a new id without one); its id. The batch
        fails with AlreadyExists when a document with that id is there
        already: a new document never replaces another, and a chosen id is
        a claim on a name, across processes."""
        doc_id = id or new_id()
        body = {k: v for k, v in doc.items() if k not in ("id", "seq")}
        self.ops.append(Op("add", kind, doc_id, doc=body))
        return doc_id

    def update(self, kind: str, id: str, change: Change) -> None:
        """Merge `change` into the document's top level, or replace the
        document with what `change(doc)` returns (None leaves it as it is).
        The function runs inside the transaction, so it sees the latest
        version and nothing else writes the document meanwhile; what it
        returns replaces the blob too. A merge cannot change the blob
        (StoreError): bytes are replaced whole, with put or a function."""
        if isinstance(change, dict) and BLOB in change:
            raise StoreError(f"a merge cannot change {BLOB}; put the document or pass a function")
        self.ops.append(Op("update", kind, id, change=change))

    def delete(self, kind: str, id: str) -> None:
        self.ops.append(Op("delete", kind, id))


class Store(ABC):
    """Documents by kind, and live updates.

    Writes, atomic per batch (`commit`, `batch()`, or one at a time): put
    (upsert), add (insert only), update (merge, or a function of the document),
    delete, expire (by an `expires` time); claim (the outbox's leases).
    Reads: get (every document containing a subset, oldest or newest first,
    paged by `seq`), get_one, count, kinds, scan (all of a kind, for a copy),
    schema_version. Live updates: publish, subscribe.
    """

    #: True when this process is the only one using the store (SQLite), so
    #: leases left by an earlier run of it can be taken back at once.
    exclusive: bool = False

    def __init__(self) -> None:
        self.hub = Hub()

    @property
    def engine(self) -> str:
        """"sqlite" or "postgres": the store's name in metrics."""
        return type(self).__name__.removesuffix("Store").lower()

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abstractmethod
    async def open(self) -> None:
        """Connect, create the schema, run migrations."""

    @abstractmethod
    async def close(self) -> None:
        """Finish pending commits and disconnect."""

    async def commit(self, batch: Batch) -> list[Any]:
        """Apply a batch atomically; returns each op's result
        (put: id, update: the new document or None, delete: bool, claim: docs).
        Then runs the batch's after-commit hooks and publishes what they give."""
        started = time.perf_counter()
        results = await self._commit(batch)
        STORE_COMMIT_SECONDS.labels(self.engine).observe(time.perf_counter() - started)
        for hook in batch.after:
            payload = hook(self, results)
            if payload is not None:
                await self.publish(payload)
        return results

    @abstractmethod
    async def _commit(self, batch: Batch) -> list[Any]:
        """Apply the batch's operations atomically (group commit); each op's result."""

    @abstractmethod
    async def get(
        self,
        kind: str,
        subset: Document | None = None,
        *,
        limit: int | None = None,
        before: int | None = None,
        newest_first: bool = False,
    ) -> list[Document]:
        """Every document of `kind` that contains `subset` (jsonb `@>` semantics).

        `before` is a `seq` cursor for paging with newest_first.
        """

    @abstractmethod
    async def get_by_ids(self, kind: str, ids: Sequence[str]) -> dict[str, Document]:
        """The documents of `kind` with those ids, by id (an id with no
        document is left out): many lookups by primary key in one query."""

    @abstractmethod
    async def count(self, kind: str, subset: Document | None = None) -> int:
        """How many documents `get` would return without a limit."""

    @abstractmethod
    async def claim(
        self, kind: str, *, now: float, owner: str, lease: float, limit: int
    ) -> list[Document]:
        """Lease up to `limit` documents whose `due` ≤ now, oldest due first.

        A claim moves `due` to the end of the lease (and sets `lease_owner`):
        the document comes back by itself if the claimer never finishes, no
        other claimer sees it meanwhile, and the lookup only ever reads rows
        that are really due. A document with `due` null is never claimed.
        """

    @abstractmethod
    async def renew_leases(self, kind: str, ids: Sequence[str], *, owner: str,
                           until: float) -> list[str]:
        """Move `due` to `until` (the end of a renewed lease, wall-clock
        seconds) on those of the documents `ids` whose `lease_owner` is
        `owner`; returns their ids. One statement, in a transaction of its own
        on a shared store, as a claim: a renewal must not wait behind other
        writes while the lease it extends runs out."""

    @abstractmethod
    async def kinds(self) -> list[str]:
        """Every kind that has documents, in name order."""

    @abstractmethod
    async def scan(self, kind: str, *, after: int = 0, limit: int = 500) -> list[Document]:
        """Up to `limit` documents of `kind` with `seq` > after, oldest first:
        every document, page by page (to copy a store)."""

    @abstractmethod
    async def schema_version(self) -> int:
        """The version of the store's schema (after open: the latest it knows)."""

    async def release_leases(self, kind: str) -> int:
        """Make all of `kind` due now, leases and back-off alike (only for an
        exclusive store, at start)."""
        raise StoreError("this store is shared; leases end by themselves")

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[Batch]:
        """`async with store.batch() as b: b.put(...); b.update(...)` — one commit."""
        batch = Batch()
        yield batch
        if batch.ops:
            await self.commit(batch)

    async def put(self, kind: str, doc: Document, *, id: str | None = None) -> str:
        batch = Batch()
        doc_id = batch.put(kind, doc, id=id)
        await self.commit(batch)
        return doc_id

    async def add(self, kind: str, doc: Document, *, id: str | None = None) -> str:
        """Batch.add alone: the new document's id, or AlreadyExists."""
        batch = Batch()
        doc_id = batch.add(kind, doc, id=id)
        await self.commit(batch)
        return doc_id

    async def update(self, kind: str, id: str, change: Change) -> Document | None:
        batch = Batch()
        batch.update(kind, id, change)
        updated: Document | None = (await self.commit(batch))[0]
        return updated

    async def delete(self, kind: str, id: str) -> bool:
        batch = Batch()
        batch.delete(kind, id)
        deleted: bool = (await self.commit(batch))[0]
        return deleted

    async def expire(self, kind: str, now: float) -> int:
        """Delete every document of `kind` whose number `expires` is below
        `now` (Unix seconds); how many went. For sessions, rate-limit
        counters and other documents with a lifetime."""
        batch = Batch()
        batch.ops.append(Op("expire", kind, args={"now": float(now)}))
        expired: int = (await self.commit(batch))[0]
        return expired

    async def get_one(self, kind: str, subset: Document) -> Document | None:
        found = await self.get(kind, subset, limit=1)
        return found[0] if found else None

    async def publish(self, payload: dict[str, Any]) -> None:
        """Send a live update to every subscriber, in every process sharing the store."""
        self.hub.deliver(payload)

    def subscribe(self, *, ends: Callable[[dict[str, Any]], bool] | None = None
                  ) -> Subscription:
        """Every payload published from now on, in this process or another;
        those `ends` names (what ends the subscriber) are never dropped."""
        return self.hub.subscribe(ends)


def apply_change(doc: Document, change: Change) -> Document | None:
    """The document after `change`, or None when the change leaves it alone."""
    if callable(change):
        return change(dict(doc))
    return {**doc, **change}
