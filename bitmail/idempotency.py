"""Idempotency-Key: a retried submission gets the first answer, and only one
message is ever sent for one key.

The key is recorded in the same commit as the message it produced (an insert
that fails if the key is there already), so of several requests racing with
one key exactly one commits; the others find its record and answer with it.
The record keeps a fingerprint of the request body: the same key with a
different body is refused (422), as in the IETF draft "The Idempotency-Key
HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from .errors import BitMailError, ValidationError
from .store import Document, Kind, Store

HEADER = "Idempotency-Key"
MAX_KEY = 200


class KeyReused(BitMailError):
    """The key was used before with a different request body."""

    status = 422
    code = "idempotency_key_reused"


def check_key(value: str | None) -> str | None:
    """The header's value, or None without one. ValidationError (400) naming
    the header when it is empty, over MAX_KEY characters or not printable."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY or not value.isprintable():
        raise ValidationError(f"must be 1 to {MAX_KEY} printable characters", field=HEADER)
    return value


@dataclass(frozen=True, slots=True)
class Claim:
    """One user's key and the fingerprint of the request that carries it."""

    id: str
    fingerprint: str

    @classmethod
    def of(cls, username: str, key: str, payload: Any) -> Claim:
        """The claim for `payload` (the parsed JSON body); the same JSON in
        another key order or spacing has the same fingerprint."""
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return cls(f"{username}:{key}", hashlib.sha256(canonical.encode()).hexdigest())

    def record(self, message: str, message_id: str) -> Document:
        """The document stored with the message: what the first answer said."""
        return {"fingerprint": self.fingerprint, "message": message,
                "message_id": message_id, "created": time.time()}


def answer(message: str, message_id: str) -> dict[str, str]:
    """The 202 answer for an accepted message."""
    return {"id": message, "status": "queued", "message_id": message_id}


async def first_answer(store: Store, claim: Claim) -> dict[str, Any] | None:
    """The answer given to the first request with this key, or None when the
    key is new. Raises KeyReused when that request had another body."""
    doc = await store.get_one(Kind.IDEMPOTENCY, {"id": claim.id})
    if doc is None:
        return None
    if "body" in doc:  # recorded before fingerprints were kept
        body: dict[str, Any] = doc["body"]
        return body
    if doc["fingerprint"] != claim.fingerprint:
        raise KeyReused("this key was used before with a different request body; "
                        "use a new key for a new message", field=HEADER)
    return answer(doc["message"], doc["message_id"])
