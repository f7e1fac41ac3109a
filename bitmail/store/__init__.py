"""The JSON store: documents by kind, written in atomic batches and found by
any subset of their content; on SQLite or PostgreSQL (`open_store(url)`)."""

from __future__ import annotations

from .base import (
    BLOB,
    AlreadyExists,
    Batch,
    Document,
    Kind,
    StorageFull,
    Store,
    StoreError,
    StoreUnavailable,
    contains,
)
from .hub import Subscription


def open_store(url: str, *, sending: bool = False) -> Store:
    """The store for a URL: `sqlite:///path` (default) or `postgresql://…`.

    `sending`: this process will run the MTA. An SQLite file allows one such
    process at a time (its lock), while admin commands may use it beside it.
    """
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite://"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite://").removeprefix("/") or ":memory:",
                           exclusive=sending)
    raise StoreError(f"unknown store URL scheme in {url.split(':', 1)[0]!r}")


__all__ = ["BLOB", "AlreadyExists", "Batch", "Document", "Kind", "StorageFull", "Store",
           "StoreError", "StoreUnavailable", "Subscription", "contains", "open_store"]
