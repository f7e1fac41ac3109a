"""API keys: made, listed, used and revoked.

A key is `bm_` and 43 URL-safe characters (256 random bits). The store keeps
only its SHA-256 (the document's id), so a copy of the store gives no key
away. A key's public id is the first 16 hex digits of that hash: enough to
name it in lists and URLs, useless for logging in.

Every use reads the key's document: a revoked key stops at once, in every
process sharing the store (no cache to wait out). The last-used time is
written at most once a minute per key, so a busy program does not turn each
request into a write.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import live, tokens
from .errors import Conflict, NotFound, ValidationError
from .store import Kind, Store

PREFIX = "bm_"
LAST_USED_EVERY = 60.0
MAX_KEYS_PER_USER = 100
MAX_NAME = 100


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key: never the key itself."""

    id: str
    username: str
    name: str
    created: float
    last_used: float | None

    def to_json(self) -> dict[str, Any]:
        """`{"id", "name", "created", "last_used"}`: times in Unix seconds,
        last_used None (JSON null) if never used."""
        return {"id": self.id, "name": self.name, "created": self.created,
                "last_used": self.last_used}


def _info(doc: dict[str, Any]) -> KeyInfo:
    return KeyInfo(id=doc["id"][:16], username=doc["username"], name=doc.get("name", ""),
                   created=doc.get("created", 0.0), last_used=doc.get("last_used"))


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("give the key a name (what uses it)", field="name")
    name = name.strip()
    if len(name) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValidationError(f"at most {MAX_NAME} characters, no control characters",
                              field="name")
    return name


class ApiKeys:
    """The `apikey` documents of the store."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    async def create(self, username: str, name: object) -> tuple[str, KeyInfo]:
        """A new key for an existing user: (the key, shown only now; its info).
        ValidationError for a bad name, Conflict past MAX_KEYS_PER_USER keys."""
        name = check_name(name)
        if await self.store.count(Kind.APIKEY, {"username": username}) >= MAX_KEYS_PER_USER:
            raise Conflict(f"at most {MAX_KEYS_PER_USER} keys per user; revoke one first")
        key = PREFIX + secrets.token_urlsafe(32)
        doc = {"username": username, "name": name, "created": self.clock()}
        doc_id = await self.store.add(Kind.APIKEY, doc, id=tokens.digest(key))
        return key, _info({**doc, "id": doc_id})

    async def user_of(self, key: str) -> str | None:
        """The key's username, or None for an unknown or revoked key."""
        if not key.startswith(PREFIX) or len(key) > 200:
            return None
        doc = await self.store.get_one(Kind.APIKEY, {"id": tokens.digest(key)})
        if doc is None:
            return None
        now = self.clock()
        if now - (doc.get("last_used") or 0) >= LAST_USED_EVERY:
            await self.store.update(Kind.APIKEY, doc["id"], {"last_used": now})
        username: str = doc["username"]
        return username

    async def alive(self, key_digest: str) -> bool:
        return await self.store.get_one(Kind.APIKEY, {"id": key_digest}) is not None

    async def list(self, username: str | None = None) -> list[KeyInfo]:
        """A user's keys (every user's when None), oldest first."""
        docs = await self.store.get(Kind.APIKEY, {"username": username} if username else None)
        return sorted((_info(d) for d in docs), key=lambda k: (k.created, k.id))

    async def revoke(self, key_id: str, username: str | None = None) -> KeyInfo:
        """Remove the key with this public id (only among `username`'s keys
        when given); NotFound otherwise. Returns what it was, and the digest
        is published so open streams using it end at once."""
        key_id = key_id.strip().lower()
        if len(key_id) != 16 or any(c not in "0123456789abcdef" for c in key_id):
            raise NotFound("no such API key")
        for doc in await self.store.get(Kind.APIKEY, {"username": username} if username else None):
            if doc["id"].startswith(key_id):
                await self.store.delete(Kind.APIKEY, doc["id"])
                await self.store.publish(live.credential_ended(f"apikey:{doc['id']}"))
                return _info(doc)
        raise NotFound("no such API key")
