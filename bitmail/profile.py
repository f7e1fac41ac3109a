"""A user's own settings: display name, signature, GeoLists, password.

They live on the user's document. The display name is what goes before the
address in `From:` ("Name" <user@domain>, RFC 5322 §3.4); the signature is
what the page puts under a new message. Changing the password ends every
other session of the user (a stolen cookie stops working), not the one that
asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any

from . import geo
from .accounts import Accounts, Session
from .errors import Forbidden, NotFound, ValidationError
from .store import Batch, Store

MAX_NAME = 100
MAX_SIGNATURE = 4000
MAX_PASSWORD = 1024


@dataclass(frozen=True, slots=True)
class Profile:
    display_name: str = ""
    signature: str = ""
    located: bool = False  # takes part in GeoLists (has shared a location)

    def to_json(self) -> dict[str, Any]:
        return {"display_name": self.display_name, "signature": self.signature,
                "geolists": self.located, "located": self.located}


def _profile(doc: dict[str, Any]) -> Profile:
    return Profile(display_name=doc.get("display_name", ""), signature=doc.get("signature", ""),
                   located=bool(doc.get("location")))


def check_display_name(value: object) -> str:
    """A name fit for a header: no line breaks or other control characters
    (they would start a new header), at most MAX_NAME characters."""
    if not isinstance(value, str):
        raise ValidationError("must be a string", field="display_name")
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        raise ValidationError("one line, without control characters", field="display_name")
    value = " ".join(value.split())
    if len(value) > MAX_NAME:
        raise ValidationError(f"at most {MAX_NAME} characters", field="display_name")
    return value


def check_signature(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError("must be a string", field="signature")
    if len(value) > MAX_SIGNATURE:
        raise ValidationError(f"at most {MAX_SIGNATURE} characters", field="signature")
    return value.replace("\r\n", "\n")


class Profiles:
    """Read and change users' own settings."""

    def __init__(self, store: Store, accounts: Accounts):
        self.store = store
        self.accounts = accounts

    async def get(self, username: str) -> Profile:
        doc = await self.store.get_one("user", {"id": username})
        if doc is None:
            raise NotFound("no such user")
        return _profile(doc)

    async def update(self, username: str, changes: object) -> Profile:
        """PATCH /api/me: {"display_name"?, "signature"?, "geolists"? (bool),
        "location"? ({lat, lon} to share it, null to forget it)}. Every field
        is checked before anything is written; unknown fields are refused.

        GeoLists are opt-in (geo.py): taking part means sharing a location,
        so "geolists": true needs one (given now or shared before), and
        "geolists": false forgets it.
        """
        if not isinstance(changes, dict) or not changes:
            raise ValidationError("send a JSON object with the settings to change")
        known = {"display_name", "signature", "geolists", "location"}
        if unknown := sorted(set(changes) - known):
            raise ValidationError(f"unknown setting: {unknown[0]}", field=unknown[0])
        update: dict[str, Any] = {}
        if "display_name" in changes:
            update["display_name"] = check_display_name(changes["display_name"])
        if "signature" in changes:
            update["signature"] = check_signature(changes["signature"])
        location = changes.get("location")
        if location is not None:
            geo.check_location(location)
        take_part = changes.get("geolists")
        if "geolists" in changes and not isinstance(take_part, bool):
            raise ValidationError("must be true or false", field="geolists")
        current = await self.get(username)
        if take_part is True and location is None and not current.located:
            raise ValidationError("taking part needs a location: send it as \"location\"",
                                  field="geolists")
        if update:
            await self.store.update("user", username, update)
        places = geo.Places(self.store)
        if take_part is False or ("location" in changes and location is None):
            await places.forget(username)
        elif location is not None:
            await places.share(username, location)
        return await self.get(username)

    async def change_password(self, session: Session, current: object, new: object,
                              client: str) -> int:
        """Check the current password, set the new one, and end the user's
        other sessions; how many were ended. Forbidden for a wrong current
        password (counted like a failed login)."""
        username = session.user.username
        if not isinstance(current, str) or not current:
            raise ValidationError("the current password is needed", field="current")
        if not isinstance(new, str) or not 1 <= len(new) <= MAX_PASSWORD:
            raise ValidationError(f"a new password of 1 to {MAX_PASSWORD} characters",
                                  field="new")
        accounts = self.accounts
        await accounts._check_rate(username, client)
        doc = await self.store.get_one("user", {"id": username})
        if doc is None:
            raise NotFound("no such user")
        if not await asyncio.to_thread(accounts._verify, doc["password"], current):
            await accounts._fail(username, client)
            raise Forbidden("the current password is wrong", field="current",
                            code="wrong_password")
        pw_hash = await asyncio.to_thread(accounts.hasher.hash, new)
        keep = hashlib.sha256(session.token.encode()).hexdigest()
        others = [s["id"] for s in await self.store.get("session", {"username": username})
                  if s["id"] != keep]
        batch = Batch()
        batch.update("user", username, {"password": pw_hash})
        for sid in others:
            batch.delete("session", sid)
        await self.store.commit(batch)
        return len(others)

