"""The suppression list: addresses BitMail no longer sends to.

A hard bounce or a complaint reported by a provider's webhook puts the
recipient's address here (kind "suppression", id = the lowercased address).
Mailbox.accept consults the list, so a later message is not sent to that
recipient — it fails at once with the detail "suppressed" — while the message
still goes to everyone else. Sending again to an address that bounced or
complained harms the sender's reputation with every provider, which is why the
check happens before anything reaches the outbox. The operator lists and
removes entries (API and command line) when an address is known to be good again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from .store import Batch, Document, Kind, Store
from .store.paging import newest_first

PUBLIC_KEYS = ("address", "reason", "provider", "at", "message", "detail")


def public(doc: Document) -> dict[str, Any]:
    """An entry as the API and the command line show it."""
    return {k: doc.get(k) for k in PUBLIC_KEYS}


def suppress(batch: Batch, address: str, *, reason: str, provider: str | None,
             detail: str = "", message_doc_id: str | None = None,
             at: float | None = None) -> None:
    """Add (or refresh) an entry as part of `batch`.

    A later bounce for the same address replaces the entry, so it shows the
    most recent reason; the address stays suppressed either way.
    """
    key = address.strip().lower()
    batch.put(Kind.SUPPRESSION, {"address": key, "reason": reason, "provider": provider,
                     "detail": detail[:500], "message": message_doc_id,
                     "at": time.time() if at is None else at}, id=key)


async def suppressed_among(store: Store, addresses: Iterable[str]) -> set[str]:
    """The addresses (as given) that are on the suppression list.

    One query, by id (the address in lower case).
    """
    wanted = list(dict.fromkeys(addresses))
    found = await store.get_by_ids(Kind.SUPPRESSION, [a.lower() for a in wanted])
    return {a for a in wanted if a.lower() in found}


class SuppressionList:
    """The operator's view: list, look up, add and remove entries."""

    def __init__(self, store: Store):
        self.store = store

    async def add(self, address: str, *, reason: str, provider: str | None = None,
                  detail: str = "") -> None:
        batch = Batch()
        suppress(batch, address, reason=reason, provider=provider, detail=detail)
        await self.store.commit(batch)

    async def get(self, address: str) -> Document | None:
        return await self.store.get_one(Kind.SUPPRESSION, {"id": address.strip().lower()})

    async def entries(self, *, before: int | None = None,
                      limit: int = 100) -> tuple[list[Document], int | None]:
        """A page of entries, newest first, and the cursor of the next page."""
        return await newest_first(self.store, Kind.SUPPRESSION, before=before, limit=limit)

    async def remove(self, address: str) -> bool:
        """Take an address off the list; False when it was not on it."""
        return await self.store.delete(Kind.SUPPRESSION, address.strip().lower())
