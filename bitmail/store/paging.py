"""Pages of documents, newest first, and the cursor of the next page.

The cursor is a document's `seq` (the store's insertion order): the next page
is `before=cursor`. It never skips or repeats a document when new ones arrive
between pages, which an offset would.
"""

from __future__ import annotations

from typing import Any

from .base import Document, Store


async def newest_first(store: Store, kind: str, where: dict[str, Any] | None = None, *,
                       before: int | None = None,
                       limit: int) -> tuple[list[Document], int | None]:
    """Up to `limit` documents of `kind` containing `where`, newest first,
    older than the cursor `before`; and the next page's cursor (None at the end)."""
    docs = await store.get(kind, where, before=before, limit=limit + 1, newest_first=True)
    page = docs[:limit]
    return page, page[-1]["seq"] if len(docs) > limit else None
