"""A user's own settings: display name, signature, GeoLists, password.

They live on the user's document. The display name is what goes before the
address in `From:` ("Name" <user@domain>, RFC 5322 §3.4); the signature is
what the page puts under a new message. Changing the password ends every
other session of the user (a stolen cookie stops working), not the one that
asked.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from . import geo
from .accounts import Accounts, Session, check_password
from .errors import Forbidden, NotFound, ValidationError
from .store import Kind, Store

MAX_NAME = 100
MAX_SIGNATURE = 4000


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
        doc = await self.store.get_one(Kind.USER, {"id": username})
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
            await self.store.update(Kind.USER, username, update)
        places = geo.Places(self.store)
        if take_part is False or ("location" in changes and location is None):
            await places.forget(username)
        elif location is not None:
            await places.share(username, location)
        return await self.get(username)

    async def change_password(self, session: Session, current: object, new: object,
                              client: str) -> int:
        """Check the current password (counted like a login by the accounts'
        limiter), set the new one (the same policy as at sign-up), and end the
        user's other sessions and their live streams; how many ended.

        ValidationError names "current" or "new"; Forbidden for a wrong
        current password; RateLimited after too many wrong ones."""
        username = session.user.username
        if not isinstance(current, str) or not current:
            raise ValidationError("the current password is needed", field="current")
        try:
            check_password(new, username)
        except ValidationError as exc:
            raise ValidationError(exc.message, field="new") from None
        assert isinstance(new, str)
        if not await self.accounts.verify_password(username, current, client=client):
            raise Forbidden("the current password is wrong", field="current",
                            code="wrong_password")
        return await self.accounts.set_password(username, new, keep=session.token)
