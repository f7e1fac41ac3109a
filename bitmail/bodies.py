"""The stored form of a message's bytes: one `body` document per message.

The Sent copy, the Inbox copies and the outbox entry all point to it, so a
message's content is stored once. The store holds JSON, so bytes that are
ASCII (every message BitMail renders, and most that arrive) are kept as text,
and only 8-bit messages as base64.
"""

from __future__ import annotations

import base64
from typing import Any

from .store import Batch, Store

KIND = "body"


def put_body(batch: Batch, mime: bytes) -> str:
    """Add the body document for `mime` to `batch`; its id."""
    if mime.isascii():
        return batch.put(KIND, {"mime": mime.decode("ascii")})
    return batch.put(KIND, {"mime_base64": base64.b64encode(mime).decode("ascii")})


def mime_of(doc: dict[str, Any]) -> bytes:
    """The bytes a body document holds."""
    if "mime" in doc:
        return str(doc["mime"]).encode("ascii")
    return base64.b64decode(doc["mime_base64"])


async def load_mime(store: Store, body_id: str) -> bytes | None:
    doc = await store.get_one(KIND, {"id": body_id})
    return None if doc is None or not ("mime" in doc or "mime_base64" in doc) else mime_of(doc)
