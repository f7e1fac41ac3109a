"""Conversations: which messages belong together, and a folder by conversation.

A message's conversation is named by the first message it refers to: the
first msg-id of its References, else of its In-Reply-To, else its own
Message-ID (RFC 5322 §3.6.4: a reply's References start with the thread's
first message). Mail with none of them falls back on its normalized subject
("Re: Re: Lunch" → "lunch"). The `thread` id is a hash of that name, so it
is URL-safe and says nothing of the headers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from typing import Any

from .store import Document, Kind, Store

THREAD_ID = re.compile(r"^[0-9a-f]{24}$")
SCAN = 2000  # documents read at most for one page of conversations
BATCH = 200
MAX_IDS = 200  # member ids listed per conversation row
# Reply and forward markers in the languages mail programs commonly use.
_PREFIX = re.compile(r"^\s*((re|fwd?|aw|wg|sv|vs|antw|rif|tr)\s*(\[\d+\])?\s*:\s*)+",
                     re.IGNORECASE)


def normalized_subject(subject: str) -> str:
    return " ".join(_PREFIX.sub("", subject or "").split()).lower()


def _first(value: Any) -> str:
    if isinstance(value, list):
        return next((v for v in value if isinstance(v, str) and v.strip()), "")
    return value.strip() if isinstance(value, str) else ""


def thread_of(doc: Document) -> str:
    """The conversation id of a message document (a folder row or the document)."""
    root = (_first(doc.get("references")) or _first(doc.get("in_reply_to"))
            or _first(doc.get("message_id")))
    name = f"id:{root.strip('<>').lower()}" if root else \
        f"subject:{normalized_subject(doc.get('subject', ''))}"
    return hashlib.sha256(name.encode()).hexdigest()[:24]


def conversation_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for a conversation from its members' folder rows, newest first:
    the newest row, with `count`, `unread` (how many unread: a number),
    `participants` (senders, newest first, once each) and `ids`."""
    newest = rows[0]
    senders = list(dict.fromkeys(r.get("from") or "" for r in rows if r.get("from")))
    return {**newest, "count": len(rows), "unread": sum(1 for r in rows if r.get("unread")),
            "participants": senders, "ids": [r["id"] for r in rows][:MAX_IDS]}


Summary = Callable[[Document], dict[str, Any]]


async def conversations(store: Store, owner: str, folder: str, summary: Summary, *,
                        before: int | None = None, limit: int = 50
                        ) -> tuple[list[dict[str, Any]], int | None]:
    """A page of a folder by conversation, newest first, and the next cursor.

    At most SCAN documents are read per page: a conversation's members older
    than that are not counted, and a long conversation that straddles two
    pages shows on both (its older part on the second). `summary(doc)` makes
    a folder row.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    scanned = 0
    cursor = before
    next_cursor: int | None = None
    while scanned < SCAN:
        docs = await store.get(Kind.MESSAGE, {"owner": owner, "folder": folder}, before=cursor,
                               limit=BATCH, newest_first=True)
        for doc in docs:
            scanned += 1
            cursor = doc["seq"]
            thread = thread_of(doc)
            if thread in groups:
                groups[thread].append(summary(doc))
            elif len(groups) < limit:
                groups[thread] = [summary(doc)]
            elif next_cursor is None:
                # The first conversation of the next page starts here.
                next_cursor = doc["seq"] + 1
        if len(docs) < BATCH:
            break
    else:
        next_cursor = next_cursor or cursor
    return [conversation_row(rows) for rows in groups.values()], next_cursor


async def members(store: Store, owner: str, folder: str, thread: str, summary: Summary
                  ) -> list[dict[str, Any]]:
    """The folder rows of one conversation, oldest first (at most SCAN read)."""
    out: list[dict[str, Any]] = []
    cursor = None
    scanned = 0
    while scanned < SCAN:
        docs = await store.get(Kind.MESSAGE, {"owner": owner, "folder": folder}, before=cursor,
                               limit=BATCH, newest_first=True)
        for doc in docs:
            scanned += 1
            cursor = doc["seq"]
            if thread_of(doc) == thread:
                out.append(summary(doc))
        if len(docs) < BATCH:
            break
    return list(reversed(out))


def ids_of(rows: Iterable[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in rows]
