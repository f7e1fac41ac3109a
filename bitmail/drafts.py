"""Drafts kept on the server, so a message begun on one device goes on on another.

A draft is a message document in the owner's "drafts" folder (so it lists,
counts and opens like any other) with the fields as the user typed them under
`draft`, unchecked: a half-written address is fine until it is sent. Its text
is a body document like any message's. The page picks the id (a random
string) and saves with PUT as the user types; sending removes it. The id is
the owner's alone: the draft is stored under an id no other document can
have (draft_ids.py).
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
from .draft_ids import check_id, stored_id
from .errors import TooLarge, ValidationError
from .mailbox import summary
from .store import AlreadyExists, Batch, Document, Kind, Store, StoreError

TEXT_FIELDS = {"to": 20_000, "cc": 20_000, "bcc": 20_000, "subject": 998}
REF_FIELDS = ("in_reply_to", "forward_of")
MAX_TEXT = 5 * 1024 * 1024
ADDRESS_SPLIT = re.compile(r"[;,]")


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
            # Worded as a send's refusal is (compose.py), the page names the field.
            raise ValidationError(f"is longer than {limit} characters", field=name)
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


# Tries of a save that meets another save of the same draft (two devices).
SAVE_TRIES = 3


class Drafts:
    """One user's drafts."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    async def find(self, owner: str, draft_id: str) -> Document | None:
        """`owner`'s draft `draft_id` (a checked id) as stored, or None.

        Under its stored id; else, saved before drafts had ids of their own,
        under the client's id itself (its owner's, in the drafts folder:
        anything else there is no draft of this user's)."""
        key = stored_id(owner, draft_id)
        found = await self.store.get_by_ids(Kind.MESSAGE, [key, draft_id])
        if key in found:
            return found[key]
        old = found.get(draft_id)
        if old is not None and old.get("owner") == owner and old.get("folder") == "drafts":
            return old
        return None

    async def save(self, owner: str, address: str, draft_id: str,
                   payload: object) -> tuple[dict[str, Any], bool]:
        """Create or replace `owner`'s draft `draft_id`; (its folder row,
        created). ValidationError or TooLarge for a bad id or field.

        A new draft is added (AlreadyExists if a save from another device
        made it meanwhile: this one then replaces it), so a save never
        writes over anything but the owner's own draft."""
        check_id(draft_id)
        fields = parse_draft(payload)
        # The text as a message's bytes, so a draft opens like any message
        # (made once: a retry writes the same).
        mime = _text_mime(fields["text"])
        for _ in range(SAVE_TRIES):
            old = await self.find(owner, draft_id)
            doc, batch = self._write(owner, address, draft_id, fields, mime, old)
            try:
                await self.store.commit(batch)
            except AlreadyExists:
                continue
            row = summary({**doc, "id": stored_id(owner, draft_id)})
            await self.store.publish(live.draft(owner, row))
            return row, old is None
        raise StoreError(f"draft {draft_id} of {owner} could not be saved")

    def _write(self, owner: str, address: str, draft_id: str, fields: dict[str, Any],
               mime: bytes, old: Document | None) -> tuple[Document, Batch]:
        """The draft's document and the batch that stores it in place of
        `old` (the draft as found, or None: a new one)."""
        text = fields["text"]
        doc = {
            "owner": owner, "folder": "drafts", "unread": False, "status": "draft",
            "from": address, "to": _addresses(fields["to"]), "cc": _addresses(fields["cc"]),
            "subject": fields["subject"], "date": self.clock(),
            "preview": " ".join(text.split())[:140],
            "has_attachments": bool(fields["attachments"]),
            "draft": fields,
        }
        batch = Batch()
        doc["body"] = put_body(batch, mime)
        key = stored_id(owner, draft_id)
        if old is not None and old.get("body"):
            batch.delete(Kind.BODY, old["body"])
        if old is not None and old["id"] == key:
            batch.put(Kind.MESSAGE, doc, id=key)  # the owner's own draft, replaced
        else:
            if old is not None:  # stored as drafts were before: it moves
                batch.delete(Kind.MESSAGE, old["id"])
            batch.add(Kind.MESSAGE, doc, id=key)
        return doc, batch

    async def remove(self, owner: str, draft_id: str) -> bool:
        """Remove `owner`'s draft `draft_id` and its body; False when there
        was none (already sent or removed on another device). ValidationError
        for an id that is no draft id."""
        check_id(draft_id)
        doc = await self.find(owner, draft_id)
        if doc is None:
            return False
        batch = Batch()
        batch.delete(Kind.MESSAGE, doc["id"])
        if doc.get("body"):
            batch.delete(Kind.BODY, doc["body"])
        await self.store.commit(batch)
        await self.store.publish(live.deleted(owner, draft_id, "drafts"))
        return True
