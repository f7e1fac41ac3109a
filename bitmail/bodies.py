"""The stored form of a message's bytes: one `body` document per message.

The Sent copy, the Inbox copies and the outbox entry all point to it, so a
message's content is stored once. The bytes are the document's blob: kept
as they are, beside its JSON (compressed by the store where that pays).
Bodies written before blobs hold the bytes as JSON text (`mime`, ASCII) or
base64 (`mime_base64`); they still read.
"""

from __future__ import annotations

import base64
from typing import Any

from .message.received import ReceivedPart, rebuild
from .store import BLOB, Batch, Kind, Store

# In every new body's JSON, where BitMail before blobs looked for its bytes:
# not ASCII, so such a process fails on it (str.encode("ascii")) instead of
# rebuilding an empty message and sending that (in a rolling upgrade on
# PostgreSQL, say, where old and new processes share one outbox).
BEFORE_BLOBS = "\u00ff in blob (schema 2)"


def put_body(batch: Batch, mime: bytes) -> str:
    """Add the body document for `mime` to `batch` (a new one: never in
    place of another); its id."""
    return batch.add(Kind.BODY, {BLOB: mime, "mime": BEFORE_BLOBS})


def mime_of(doc: dict[str, Any]) -> bytes:
    """The bytes a body document holds.

    A body stored before messages were kept as bytes holds `text`, `html`
    and base64 `attachments`: it is rebuilt as MIME, so mail from before an
    upgrade still reads (its headers live on the message documents)."""
    if BLOB in doc:
        return bytes(doc[BLOB])
    if "mime" in doc:
        return str(doc["mime"]).encode("ascii")
    if "mime_base64" in doc:
        return base64.b64decode(doc["mime_base64"])
    parts = [ReceivedPart(filename=str(a.get("filename") or ""),
                          content_type=str(a.get("content_type") or "application/octet-stream"),
                          content=base64.b64decode(a.get("content") or ""))
             for a in doc.get("attachments") or []]
    return rebuild([], str(doc.get("text") or ""), str(doc.get("html") or ""), parts)


async def load_mime(store: Store, body_id: str) -> bytes | None:
    doc = await store.get_one(Kind.BODY, {"id": body_id})
    return None if doc is None else mime_of(doc)
