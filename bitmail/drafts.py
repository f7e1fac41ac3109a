"""Drafts kept on the server, so a message begun on one device goes on on another.

A draft is a message document in the owner's "drafts" folder (so it lists,
counts and opens like any other) with the fields as the user typed them under
`draft`, unchecked: a half-written address is fine until it is sent. Its text
is a body document like any message's. The page picks the id (a random
string) and saves with PUT as the user types; sending removes it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from typing import Any

from . import live
from .bodies import put_body
from .errors import Conflict, NotFound, TooLarge, ValidationError
from .mailbox import summary
from .store import Batch, Kind, Store

DRAFT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
TEXT_FIELDS = {"to": 20_000, "cc": 20_000, "bcc": 20_000, "subject": 998}
REF_FIELDS = ("in_reply_to", "forward_of")
MAX_TEXT = 5 * 1024 * 1024
ADDRESS_SPLIT = re.compile(r"[;,]")


def check_id(draft_id: str) -> str:
    if not DRAFT_ID.match(draft_id):
        raise ValidationError("a draft id is 8 to 64 letters, digits, - or _", field="id")
    return draft_id


def parse_draft(payload: object) -> dict[str, Any]:
    """{"to", "cc", "bcc", "subject", "text", "in_reply_to"?, "forward_of"?,
    "mode"?, "attachments"?: [file names]} as typed, each optional;
    ValidationError names the field of a wrong type or length."""
    if not isinstance(payload, dict):
        raise ValidationError("the body must be a JSON object")
    out: dict[str, Any] = {}
    for name, limit in TEXT_FIELDS.items():
        value = payload.get(name, "")
        if not isinstance(value, str):
            raise ValidationError("must be a string", field=name)
        if len(value) > limit:
            raise ValidationError(f"at most {limit} characters", field=name)
        out[name] = value
    text = payload.get("text", "")
    if not isinstance(text, str):
        raise ValidationError("must be a string", field="text")
    if len(text.encode()) > MAX_TEXT:
        raise TooLarge(f"a draft's text is at most {MAX_TEXT} bytes", field="text")
    out["text"] = text
    for name in REF_FIELDS:
        value = payload.get(name)
        if value is not None and not (isinstance(value, str) and 0 < len(value) <= 200):
            raise ValidationError("must be a message id", field=name)
        out[name] = value
    names = payload.get("attachments", [])
    if not (isinstance(names, list) and len(names) <= 100
            and all(isinstance(n, str) and 0 < len(n) <= 255 for n in names)):
        raise ValidationError("a list of file names (the files themselves are not kept)",
                              field="attachments")
    out["attachments"] = names
    mode = payload.get("mode", "new")
    if mode not in ("new", "reply", "reply_all", "forward"):
        raise ValidationError("must be new, reply, reply_all or forward", field="mode")
    out["mode"] = mode
    return out


def _text_mime(text: str) -> bytes:
    mail = EmailMessage(policy=policy.SMTP)
    mail.set_content(text)
    return mail.as_bytes()


def _addresses(value: str) -> list[str]:
    return [a.strip() for a in ADDRESS_SPLIT.split(value) if a.strip()]


class Drafts:
    """One user's drafts."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    async def save(self, owner: str, address: str, draft_id: str,
                   payload: object) -> tuple[dict[str, Any], bool]:
        """Create or replace a draft; (its folder row, created).

        Conflict when the id is taken by something that is not this user's
        draft (another user's, or a message).
        """
        check_id(draft_id)
        fields = parse_draft(payload)
        old = await self.store.get_one(Kind.MESSAGE, {"id": draft_id})
        if old is not None and (old.get("owner") != owner or old.get("folder") != "drafts"):
            raise Conflict("this id is taken; choose another", field="id")
        text = fields.pop("text")
        doc = {
            "owner": owner, "folder": "drafts", "unread": False, "status": "draft",
            "from": address, "to": _addresses(fields["to"]), "cc": _addresses(fields["cc"]),
            "subject": fields["subject"], "date": self.clock(),
            "preview": " ".join(text.split())[:140],
            "has_attachments": bool(fields["attachments"]),
            "draft": {**fields, "text": text},
        }
        batch = Batch()
        # The text as a message's bytes, so a draft opens like any message.
        doc["body"] = put_body(batch, _text_mime(text))
        if old and old.get("body"):
            batch.delete(Kind.BODY, old["body"])
        batch.put(Kind.MESSAGE, doc, id=draft_id)
        await self.store.commit(batch)
        row = summary({**doc, "id": draft_id})
        await self.store.publish(live.draft(owner, row))
        return row, old is None

    async def remove(self, owner: str, draft_id: str) -> bool:
        """Remove a draft and its body; False when there was none (already sent
        or removed on another device). NotFound for an id that is not a draft."""
        check_id(draft_id)
        doc = await self.store.get_one(Kind.MESSAGE, {"id": draft_id})
        if doc is None:
            return False
        if doc.get("owner") != owner or doc.get("folder") != "drafts":
            raise NotFound("no such draft")
        batch = Batch()
        batch.delete(Kind.MESSAGE, draft_id)
        if doc.get("body"):
            batch.delete(Kind.BODY, doc["body"])
        await self.store.commit(batch)
        await self.store.publish(live.deleted(owner, draft_id, "drafts"))
        return True
