"""Folders, per-recipient delivery status, and mail for this service's own users.

Each user's mail is a set of small "message" documents owned by them: the Sent
copy of what they wrote (with every recipient's status and events) and the
Inbox copies of what reached them. The content (text, HTML, attachments) is a
separate "body" document that those copies point to, so status updates and
folder listings never read or rewrite it. Every change is published on the
store, so open pages see it live in whichever process serves them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from . import live
from .bodies import load_mime, put_body
from .draft_ids import DRAFT_ID, shown_id, stored_id
from .dsn import BAD, add_notice, announce_notice, notify_failures
from .errors import NotFound
from .events import EVENT_STATUS, Event, EventType, Status, advance, least_advanced
from .idempotency import Claim
from .message import Content, Message, read_content, read_summary
from .message.reading import html_as_text
from .metrics import MESSAGES_ACCEPTED
from .outbox import Outbox
from .store import Batch, Document, Kind, Store
from .store.paging import newest_first
from .suppression import suppressed_among
from .threads import thread_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tracked:
    """A provider's id as `Mailbox.track` remembered it: BitMail's message
    (`message`, its Sent copy's id) and the recipients taken under that id."""

    message: str
    recipients: tuple[str, ...]

MAX_EVENTS = 200
SEARCH_SCAN = 2000
LOCAL_DOMAIN = "local-domain"  # the "provider" of mail between this service's own users
SUMMARY_KEYS = ("id", "from", "to", "subject", "date", "status", "unread", "folder",
                "preview", "has_attachments")


def summary(doc: Document) -> dict[str, Any]:
    """A folder row: what the list shows of a message (a Sent copy with each
    recipient's status), and its conversation (`thread`, see threads.py)."""
    out = {k: doc.get(k) for k in SUMMARY_KEYS}
    if isinstance(out["id"], str):  # a draft goes by its client's id
        out["id"] = shown_id(out["id"])
    out["thread"] = thread_of(doc)
    if "recipients" in doc:  # a Sent copy, wherever it is kept now
        out["recipients"] = [{"address": r["address"], "status": r["status"]}
                             for r in doc.get("recipients", [])]
    return out


def public(doc: Document, mime: bytes | None) -> dict[str, Any]:
    """A message as its owner sees it: bodies as text, parts described (their
    content is fetched one by one), read from the message's bytes."""
    out = {k: v for k, v in doc.items() if k not in ("owner", "seq", "body", "source")}
    out["id"] = shown_id(doc["id"])  # a draft goes by its client's id
    content = read_content(mime) if mime is not None else Content("", "", ())
    out["text"], out["html"] = content.text, content.html
    if out["html"]:
        out["html_url"] = f"/api/messages/{out['id']}/html"
        if not out["text"]:  # something to quote in a reply, read here, not in the page
            out["html_text"] = html_as_text(content.html)
    out["attachments"] = [p.to_json() for p in content.parts]
    return out


class Search:
    """A folder search: `from:x to:y subject:z is:unread words`, all of which
    must match (case-insensitive substrings)."""

    FIELDS = {"from": ("from",), "to": ("to", "cc"), "subject": ("subject",)}

    def __init__(self, query: str):
        self.terms: list[tuple[tuple[str, ...], str]] = []
        self.unread = False
        for word in query.lower().split():
            key, colon, value = word.partition(":")
            if colon and key == "is" and value == "unread":
                self.unread = True
            elif colon and key in self.FIELDS and value:
                self.terms.append((self.FIELDS[key], value))
            else:
                self.terms.append((("from", "to", "cc", "subject", "preview"), word))

    def __call__(self, doc: Document) -> bool:
        if self.unread and not doc.get("unread"):
            return False
        return all(any(value in _text(doc.get(f)) for f in fields)
                   for fields, value in self.terms)


def _text(value: Any) -> str:
    return " ".join(value).lower() if isinstance(value, list) else str(value or "").lower()


class Mailbox:
    """Accept, track and receive mail, and read users' folders."""

    def __init__(self, store: Store, domain: str):
        self.store = store
        self.domain = domain

    def is_local(self, address: str) -> bool:
        return address.rpartition("@")[2].lower() == self.domain

    async def local_users(self, addresses: Iterable[str]) -> list[str]:
        """The users of this domain, once each, that those addresses name."""
        names = [n for n in dict.fromkeys(a.rpartition("@")[0].strip().lower()
                                          for a in addresses if self.is_local(a)) if n]
        found = await self.store.get_by_ids(Kind.USER, names)
        return [n for n in names if n in found]

    async def accept(self, message: Message, owner: str, *,
                     idempotency: Claim | None = None) -> str:
        """Store the Sent copy, the body, the outbox entry, local Inbox copies
        and a delivery-failure notice for each recipient that failed at once,
        in one commit; return the message id only once they are durable.

        With an idempotency claim, its record goes into the same commit, and
        AlreadyExists (nothing stored) when another request made it first.
        """
        now = time.time()
        recipients, events = await self._first_statuses(message, now)
        external = tuple(r["address"] for r in recipients if r["status"] == Status.QUEUED)
        inbox_owners = [r["address"].rpartition("@")[0].lower() for r in recipients
                        if r["provider"] == LOCAL_DOMAIN]
        # Folders sort by when BitMail took the message, to the microsecond;
        # the Date header (whole seconds) stays in the bytes.
        head = {**message.summary(), "date": now}
        status = least_advanced([r["status"] for r in recipients])
        batch = Batch()
        body_id = put_body(batch, message.mime)
        sent = {**head, "owner": owner, "folder": "sent", "unread": False, "body": body_id,
                "recipients": recipients, "events": events, "status": status}
        # New documents: added, so none can ever take the place of another.
        sent_id = batch.add(Kind.MESSAGE, sent)
        inbox = {}
        for name in dict.fromkeys(inbox_owners):
            copy = {**head, "bcc": [], "owner": name, "folder": "inbox", "unread": True,
                    "status": Status.DELIVERED, "body": body_id, "source": sent_id,
                    "received_via": LOCAL_DOMAIN}
            inbox[name] = {**copy, "id": batch.add(Kind.MESSAGE, copy)}
        if external:
            Outbox.enqueue(batch, message_doc_id=sent_id, sender=message.sender,
                           recipients=external,
                           body=body_id, message_id=message.message_id,
                           smtputf8=message.smtputf8, now=now)
        if idempotency is not None:
            batch.add(Kind.IDEMPOTENCY, idempotency.record(sent_id, message.message_id),
                      id=idempotency.id)
        _announce(batch, owner, {**sent, "id": sent_id})
        for name, copy in inbox.items():
            _announce(batch, name, copy)
        # A recipient failed at once (no such user here, suppressed): the
        # sender's notice is written with the message, whichever way it came.
        for r in recipients:
            if r["status"] in BAD:
                _announce_notice(batch, owner, *add_notice(
                    batch, self.domain, {**sent, "id": sent_id}, r["address"], r["detail"]))
        await self.store.commit(batch)
        MESSAGES_ACCEPTED.inc()
        log.info("message %s accepted from %s for %d recipient(s) (%s)", sent_id, owner,
                 len(recipients), message.message_id,
                 extra={"message_doc_id": sent_id, "message_id": message.message_id})
        return sent_id

    async def _first_statuses(self, message: Message, now: float
                              ) -> tuple[list[Document], list[dict[str, Any]]]:
        """Each recipient's status at accept, and the events that say so: our
        own users' mail is delivered at once, a local name nobody has and a
        suppressed address fail, everybody else is queued for a provider."""
        # An address that hard-bounced or complained is not mailed again: that
        # recipient fails at once ("suppressed"), the others still go.
        external = [r for r in message.recipients if not self.is_local(r)]
        suppressed = await suppressed_among(self.store, external)
        users = set(await self.local_users(message.recipients))
        recipients, events = [], []
        for address in message.recipients:
            status, provider, detail = Status.QUEUED, None, ""
            if self.is_local(address):
                if address.rpartition("@")[0].lower() in users:
                    status, provider = Status.DELIVERED, LOCAL_DOMAIN
                else:
                    status, detail = Status.FAILED, "no such user here"
            elif address in suppressed:
                status, detail = Status.FAILED, "suppressed"
            recipients.append({"address": address, "status": status, "provider": provider,
                               "provider_message_id": None, "detail": detail})
            events.append(_event(EventType(status), address, provider, now, detail))
        return recipients, events

    def record(self, batch: Batch, message_doc_id: str, events: list[Event]) -> None:
        """Add to `batch`: apply events to a Sent copy (statuses move forward
        only; all are kept), and once the batch is durable, tell the owner's
        open pages. The caller commits the batch, with whatever else the same
        step writes (the outbox entry's end, say)."""
        stored = [_event_json(e) for e in events]

        newly_bad: dict[str, str] = {}

        def apply(doc: Document) -> Document:
            newly_bad.clear()
            by_address = {r["address"]: r for r in doc["recipients"]}
            for ev in events:
                targets = [by_address[ev.recipient]] if ev.recipient in by_address else (
                    list(by_address.values()) if ev.recipient is None else [])
                for rec in targets:
                    if ev.type in EVENT_STATUS:
                        new = advance(rec["status"], EVENT_STATUS[ev.type])
                        if new != rec["status"] or ev.type == EventType.SENT:
                            if new in BAD and rec["status"] not in BAD:
                                newly_bad[rec["address"]] = ev.detail
                            rec["status"] = new
                            rec["detail"] = ev.detail
                    if ev.provider and ev.type in (EventType.SENT, EventType.DELIVERED):
                        rec["provider"] = ev.provider
                    if ev.provider_message_id:
                        rec["provider_message_id"] = ev.provider_message_id
            doc["events"] = (doc["events"] + stored)[-MAX_EVENTS:]
            doc["status"] = least_advanced([r["status"] for r in doc["recipients"]])
            return doc

        batch.update(Kind.MESSAGE, message_doc_id, apply)
        index = len(batch.ops) - 1

        def published(store: Store, results: list[Any]) -> dict[str, Any] | None:
            doc = results[index]
            if doc is not None and newly_bad:
                # The sender finds a delivery-failure notice in the Inbox. Its
                # own write, once this one is durable (a notice's id is fixed,
                # so doing it twice adds nothing).
                _background(notify_failures(store, self.domain, doc,
                                            list(newly_bad.items())))
            return live.status(doc, stored) if doc is not None else None

        batch.on_commit(published)

    @staticmethod
    def track(batch: Batch, provider: str, provider_message_id: str,
              message_doc_id: str, recipients: Iterable[str]) -> None:
        """Remember which message a provider's id belongs to, and the
        recipients it took under that id, for its webhooks: a hard bounce can
        come days later, when the Sent copy may be deleted, and must still
        suppress its recipient (notices/effects.py)."""
        batch.put(Kind.TRACKING, {"provider": provider, "provider_message_id": provider_message_id,
                               "message": message_doc_id, "recipients": list(recipients)},
                  id=f"{provider}:{provider_message_id}")

    async def find_tracked(self, provider: str, provider_message_id: str) -> Tracked | None:
        """What `track` remembered of a provider's id, or None."""
        doc = await self.store.get_one(Kind.TRACKING, {"id": f"{provider}:{provider_message_id}"})
        if doc is None:
            return None
        # Entries from before recipients were kept name none: such a message,
        # once deleted, suppresses nobody.
        return Tracked(doc["message"], tuple(doc.get("recipients", ())))

    async def message_id_taken(self, message_id: str) -> bool:
        """Whether some stored message already has this Message-ID."""
        found = await self.store.get_one(Kind.MESSAGE, {"message_id": message_id, "folder": "sent"})
        return found is not None

    async def find_by_message_id(self, message_id: str) -> str | None:
        """The Sent copy with this RFC 5322 Message-ID, when a provider only gives that."""
        doc = await self.store.get_one(Kind.MESSAGE, {"message_id": message_id, "folder": "sent"})
        return doc["id"] if doc else None

    async def deliver(self, username: str, mime: bytes, *, received_via: str,
                      verdicts: dict[str, str] | None = None) -> str:
        """Put received mail, as its bytes, into a user's Inbox and tell their
        open pages. `received_via` is how it arrived (a provider's name, or
        LOCAL_DOMAIN); `verdicts` are the provider's spam/virus findings."""
        # A large message takes a while to read: not on the event loop.
        head = {**await asyncio.to_thread(read_summary, mime), "date": time.time()}
        batch = Batch()
        doc = {**head, "bcc": [], "owner": username, "folder": "inbox",
               "unread": True, "status": Status.DELIVERED, "received_via": received_via,
               "body": put_body(batch, mime)}
        if verdicts:
            doc["verdicts"] = dict(verdicts)
        doc_id = batch.add(Kind.MESSAGE, doc)
        _announce(batch, username, {**doc, "id": doc_id})
        await self.store.commit(batch)
        return doc_id

    async def folder(self, owner: str, folder: str, *, before: int | None = None,
                     limit: int = 50, query: str = "") -> tuple[list[Document], int | None]:
        """A page of a folder, newest first, and the cursor of the next page.

        With a query (`from:`, `to:`, `subject:`, `is:unread`, plain words),
        only matching messages; at most SEARCH_SCAN are read per call, and the
        cursor says where to go on.
        """
        where = {"owner": owner, "folder": folder}
        if not query.strip():
            return await newest_first(self.store, Kind.MESSAGE, where, before=before, limit=limit)
        matches = Search(query)
        page: list[Document] = []
        scanned = 0
        while scanned < SEARCH_SCAN:
            docs = await self.store.get(Kind.MESSAGE, where, before=before, limit=200,
                                        newest_first=True)
            for doc in docs:
                scanned += 1
                before = doc["seq"]
                if matches(doc):
                    page.append(doc)
                    if len(page) == limit:
                        return page, before
            if len(docs) < 200:
                return page, None
        return page, before

    async def get(self, owner: str, message_id: str) -> Document:
        """One of the owner's messages (or drafts) by the id it goes by;
        somebody else's is as unknown as a missing one. NotFound."""
        doc = await own_message(self.store, owner, message_id)
        if doc is None:
            raise NotFound("no such message")
        return doc

    async def mime(self, doc: Document) -> bytes | None:
        """The bytes of a message the caller already got through get()."""
        return await load_mime(self.store, doc["body"]) if doc.get("body") else None

    async def mark_read(self, owner: str, message_id: str, unread: bool) -> None:
        doc = await self.get(owner, message_id)
        # The id as stored: a draft's is not the one it goes by.
        await self.store.update(Kind.MESSAGE, doc["id"], {"unread": unread})

    async def contacts(self, owner: str, limit: int = 500) -> list[str]:
        """Addresses the owner has written to or heard from, most recent first.
        Not a draft's: those are as typed, maybe half an address."""
        seen: dict[str, None] = {}
        docs = await self.store.get(Kind.MESSAGE, {"owner": owner}, limit=limit, newest_first=True)
        for doc in docs:
            if doc.get("folder") == "drafts":
                continue
            for addr in [*doc.get("to", []), *doc.get("cc", []), doc.get("from", "")]:
                if addr and "@" in addr:
                    seen.setdefault(addr)
        return list(seen)


async def own_message(store: Store, owner: str, message_id: str) -> Document | None:
    """The owner's message document that goes by `message_id` (a folder
    row's id), or None; see own_messages."""
    return (await own_messages(store, owner, [message_id])).get(message_id)


async def own_messages(store: Store, owner: str,
                       message_ids: Iterable[str]) -> dict[str, Document]:
    """id it goes by → the owner's message document, for each of
    `message_ids` that names one, in one read. A draft goes by its client's
    id and is stored under one of its owner's (draft_ids.py). When the owner
    gave a draft the id of one of their own messages (nobody else can), the
    message comes first."""
    candidates = {m: [m, stored_id(owner, m)] if DRAFT_ID.match(m) else [m]
                  for m in message_ids}
    found = await store.get_by_ids(Kind.MESSAGE, [i for c in candidates.values() for i in c])
    owned: dict[str, Document] = {}
    for message_id, ids in candidates.items():
        doc = next((found[i] for i in ids if i in found and found[i].get("owner") == owner),
                   None)
        if doc is not None:
            owned[message_id] = doc
    return owned


_TASKS: set[asyncio.Task[Any]] = set()


def _background(work: Coroutine[Any, Any, Any]) -> None:
    """Run `work` on its own (kept referenced until it ends; a failure is logged)."""
    task = asyncio.get_running_loop().create_task(work)
    _TASKS.add(task)

    def done(t: asyncio.Task[Any]) -> None:
        _TASKS.discard(t)
        if not t.cancelled() and t.exception():
            log.error("delivery-failure notice not stored", exc_info=t.exception())

    task.add_done_callback(done)


def _announce_notice(batch: Batch, owner: str, notice_id: str, notice: Document) -> None:
    batch.on_commit(lambda store, results: announce_notice(owner, notice_id, notice))


def _announce(batch: Batch, owner: str, doc: Document) -> None:
    """Once `batch` is durable, tell `owner`'s open pages about the new `doc`."""
    batch.on_commit(lambda store, results: live.new_message(owner, summary(doc)))


def _event(type: EventType, recipient: str, provider: str | None, at: float,
           detail: str = "") -> dict[str, Any]:
    return {"type": str(type), "at": at, "recipient": recipient, "provider": provider,
            "detail": detail}


def _event_json(ev: Event) -> dict[str, Any]:
    out = _event(ev.type, ev.recipient or "", ev.provider, ev.at, ev.detail)
    if ev.ambiguous:
        out["ambiguous"] = True
    return out
