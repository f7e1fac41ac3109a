"""Copying every document of one store into another (`python -m bitmail store copy`).

Each kind is copied in `seq` order, a page at a time, and each page is one
batch in the target, so the target lists folders in the same order as the
source. Documents keep their ids and a put replaces a document with the same
id, so copying again after an interruption (or after more mail came in)
leaves no duplicates.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ..hosts import is_loopback
from . import open_store
from .base import StoreError


def _place(url: str) -> tuple[str, ...]:
    """What a store URL points at: the SQLite file, or the server and database."""
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://").removeprefix("/")  # as open_store reads it
        return ("sqlite", str(Path(path).resolve()) if path else ":memory:")
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return ("postgresql", "localhost" if is_loopback(host) else host, str(parts.port or 5432),
            parts.path.lstrip("/") or parts.username or "")


def same_store(a: str, b: str) -> bool:
    return _place(a) == _place(b) != ("sqlite", ":memory:")


async def copy_store(source_url: str, target_url: str, *, page: int = 200,
                     progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Copy every document of every kind; returns how many of each kind.

    `progress(kind, count)` is called once a kind is done. The source should
    not be in use meanwhile: documents written during the copy may be missed
    (copy again to pick them up).
    """
    if same_store(source_url, target_url):
        raise StoreError("the source and the target are the same store")
    counts: dict[str, int] = {}
    async with open_store(source_url) as source, open_store(target_url) as target:
        for kind in await source.kinds():
            after = count = 0
            while docs := await source.scan(kind, after=after, limit=page):
                async with target.batch() as batch:
                    for doc in docs:
                        batch.put(kind, doc, id=doc["id"])
                after = docs[-1]["seq"]
                count += len(docs)
            counts[kind] = count
            if progress:
                progress(kind, count)
    return counts
