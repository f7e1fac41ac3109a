"""Folders beyond Inbox and Sent: moving mail, Trash, deleting for good, counts.

A message document's `folder` is where its owner keeps it. Received mail
lives in inbox, archive or trash; the Sent copy of what the owner wrote in
sent, archive or trash; drafts only in drafts (they have their own API, see
drafts.py). A message in Trash remembers when it went there, and is deleted
for good `trash_after` seconds later (30 days unless configured). Deleting a
message removes its body too once no other copy (another recipient's, the
Sent copy) points to it. Every change is published, so open pages follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from enum import StrEnum
from typing import Any

from . import live
from .draft_ids import shown_id
from .errors import Conflict, NotFound, ValidationError
from .mailbox import own_messages, summary
from .store import Batch, Document, Kind, Store

log = logging.getLogger(__name__)

TRASH_AFTER = 30 * 24 * 3600.0
SWEEP_EVERY = 3600.0
MAX_BULK = 1000


class Folder(StrEnum):
    INBOX = "inbox"
    SENT = "sent"
    ARCHIVE = "archive"
    TRASH = "trash"
    DRAFTS = "drafts"


#: The folders GET /api/messages lists and GET /api/folders counts, in page order.
FOLDERS: tuple[str, ...] = tuple(Folder)
#: Where PATCH and bulk may move a message (drafts come and go through their own API).
MOVE_TARGETS = (Folder.INBOX, Folder.ARCHIVE, Folder.TRASH, Folder.SENT)


def home_of(doc: Document) -> Folder:
    """The folder a message came from: sent for the Sent copy, else inbox."""
    if doc.get("folder") == Folder.DRAFTS:
        return Folder.DRAFTS
    return Folder.SENT if "recipients" in doc else Folder.INBOX


def check_target(doc: Document, folder: object) -> Folder:
    """The folder `doc` may move to, or ValidationError (field "folder").

    Received mail goes to inbox, archive or trash; a Sent copy to sent,
    archive or trash (never into the Inbox, where it would pose as received).
    """
    if folder not in MOVE_TARGETS:
        raise ValidationError("must be one of inbox, archive, trash, sent", field="folder")
    target = Folder(str(folder))
    home = home_of(doc)
    if home == Folder.DRAFTS:
        raise ValidationError("a draft is changed with PUT and removed with DELETE "
                              "/api/drafts/{id}", field="folder")
    if target in (Folder.INBOX, Folder.SENT) and target != home:
        raise ValidationError(f"this message belongs in {home}, not {target}", field="folder")
    return target


def check_ids(ids: object) -> list[str]:
    if not isinstance(ids, list) or not ids:
        raise ValidationError("a non-empty list of message ids", field="ids")
    if len(ids) > MAX_BULK:
        raise ValidationError(f"at most {MAX_BULK} ids at once", field="ids")
    if not all(isinstance(i, str) and 0 < len(i) <= 200 for i in ids):
        raise ValidationError("every id must be a string", field="ids")
    return list(dict.fromkeys(ids))


class Folders:
    """Move, mark, count and delete one user's mail."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    async def _mine(self, owner: str, ids: Iterable[str]) -> list[Document]:
        """The owner's messages that go by these ids (as stored: a draft's
        `id` is not the one it goes by); NotFound (naming none of the
        others) when any is missing or somebody else's."""
        ids = list(ids)
        owned = await own_messages(self.store, owner, ids)
        missing = next((m for m in ids if m not in owned), None)
        if missing is not None:
            raise NotFound(f"no such message: {missing}", field="ids")
        return [owned[m] for m in ids]

    async def change(self, owner: str, ids: list[str], *, folder: object = None,
                     unread: object = None) -> list[Document]:
        """Move and/or mark messages, all or none: every id and the target are
        checked before anything is written. Returns the changed documents.

        Raises ValidationError (bad folder/unread, nothing asked), NotFound.
        """
        if folder is None and unread is None:
            raise ValidationError("send \"folder\" and/or \"unread\"", field="folder")
        if unread is not None and not isinstance(unread, bool):
            raise ValidationError("must be true or false", field="unread")
        docs = await self._mine(owner, ids)
        targets = {d["id"]: check_target(d, folder) for d in docs} if folder is not None else {}
        now = self.clock()

        def changer(target: Folder | None) -> Callable[[Document], Document]:
            def apply(doc: Document) -> Document:
                if target is not None and doc.get("folder") != target:
                    doc["folder"] = str(target)
                    if target == Folder.TRASH:
                        doc["trashed_at"] = now
                    else:
                        doc.pop("trashed_at", None)
                if unread is not None:
                    doc["unread"] = unread
                return doc
            return apply

        batch = Batch()
        for doc in docs:
            batch.update(Kind.MESSAGE, doc["id"], changer(targets.get(doc["id"])))
        changed = [d for d in await self.store.commit(batch) if d is not None]
        for doc in changed:
            await self.store.publish(live.moved(owner, summary(doc)))
        return changed

    async def mark_all_read(self, owner: str, folder: str) -> int:
        """Mark every unread message of a folder read; how many were."""
        if folder not in FOLDERS:
            raise ValidationError(f"must be one of {', '.join(FOLDERS)}", field="folder")
        docs = await self.store.get(Kind.MESSAGE, {"owner": owner, "folder": folder,
                                                   "unread": True})
        if docs:
            await self.change(owner, [d["id"] for d in docs], unread=False)
        return len(docs)

    async def delete(self, owner: str, ids: list[str]) -> int:
        """Delete messages from Trash for good (and bodies nothing else points
        to). Conflict when any of them is not in Trash: nothing is deleted."""
        docs = await self._mine(owner, ids)
        elsewhere = [d["id"] for d in docs if d.get("folder") != Folder.TRASH]
        if elsewhere:
            raise Conflict("only messages in Trash can be deleted for good; move them there "
                           "first", field="ids", code="not_in_trash")
        await self._delete(docs)
        return len(docs)

    async def _delete(self, docs: list[Document]) -> None:
        batch = Batch()
        for doc in docs:
            batch.delete(Kind.MESSAGE, doc["id"])
        await self.store.commit(batch)
        # Checked after our own delete committed: of two copies deleted at
        # the same time, the later check sees neither and removes the body.
        # A body the outbox still has to send stays (a small leak: nothing
        # removes it once that entry is done).
        for body_id in {d["body"] for d in docs if d.get("body")}:
            if not (await self.store.get_one(Kind.MESSAGE, {"body": body_id})
                    or await self.store.get_one(Kind.OUTBOX, {"body": body_id})):
                await self.store.delete(Kind.BODY, body_id)
        for doc in docs:
            await self.store.publish(live.deleted(doc["owner"], shown_id(doc["id"]),
                                                  doc["folder"]))

    async def counts(self, owner: str) -> list[dict[str, Any]]:
        """[{"name", "total", "unread"}] for every folder, counted in the store."""
        out = []
        for name in FOLDERS:
            where = {"owner": owner, "folder": name}
            out.append({"name": name, "total": await self.store.count(Kind.MESSAGE, where),
                        "unread": await self.store.count(Kind.MESSAGE, {**where, "unread": True})})
        return out

    async def expire_trash(self, trash_after: float = TRASH_AFTER) -> int:
        """Delete for good what has been in Trash longer than `trash_after`
        seconds, for every user; how many messages went."""
        cutoff = self.clock() - trash_after
        gone = 0
        for user in await self.store.get(Kind.USER):
            old = [d for d in await self.store.get(Kind.MESSAGE, {"owner": user["id"],
                                                          "folder": Folder.TRASH})
                   if d.get("trashed_at", 0) <= cutoff]
            if old:
                await self._delete(old)
                gone += len(old)
        return gone


async def sweep_trash(store: Store, trash_after: float, every: float = SWEEP_EVERY) -> None:
    """Run expire_trash every `every` seconds until cancelled."""
    folders = Folders(store)
    while True:
        try:
            if n := await folders.expire_trash(trash_after):
                log.info("trash: deleted %d messages older than %.0f days", n,
                         trash_after / 86400)
        except Exception:  # a store hiccup must not end the sweeping for good
            log.exception("trash: sweep failed; trying again later")
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def trash_sweeper(store: Store, trash_after: float
                        ) -> AsyncIterator[asyncio.Task[None]]:
    """The sweeper as a task that lives as long as the context."""
    task = asyncio.create_task(sweep_trash(store, trash_after), name="trash-sweeper")
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
