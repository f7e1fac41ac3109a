"""The JSON store: put, update, and get every document containing a subset."""

from __future__ import annotations

from .base import AlreadyExists, Batch, Document, Store, StoreError, Subscription, contains


def open_store(url: str) -> Store:
    """The store for a URL: `sqlite:///path` (default) or `postgresql://…`."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite://"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite://").removeprefix("/") or ":memory:")
    raise StoreError(f"unknown store URL scheme in {url.split(':', 1)[0]!r}")


__all__ = ["AlreadyExists", "Batch", "Document", "Store", "StoreError", "Subscription",
           "contains", "open_store"]
