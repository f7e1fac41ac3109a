"""What recorded notices do: status changes on the Sent copy, suppression,
provider figures, and inbound delivery.

A notice is matched to a message only through what BitMail itself recorded
or sent: the provider's id recorded when that provider (or another account
of its type) took the message; else BitMail's id or the RFC 5322 Message-ID,
and those two only among messages sent through that provider — a client can
choose its Message-ID (SMTP submission) and its provider metadata headers,
so neither alone may point at somebody else's mail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from ..events import EVENT_STATUS, Event, EventType
from ..mailbox import Mailbox, Tracked
from ..metrics import WEBHOOK_EVENTS
from ..store import Batch, Document, Kind, Store
from ..suppression import suppress
from .model import Inbound, Item, Notice, Skip

log = logging.getLogger(__name__)

# Events that take an address off the list of those BitMail sends to.
SUPPRESSING: dict[EventType, str] = {
    EventType.BOUNCED: "bounced",
    EventType.COMPLAINED: "complained",
}

Count = Callable[[str, EventType], None]


def bracketed(message_id: str) -> str:
    """A Message-ID as BitMail stores it: `<id@domain>`."""
    mid = message_id.strip()
    return mid if mid.startswith("<") else f"<{mid}>"


def sent_through(doc: Document, providers: Sequence[str]) -> bool:
    """Whether any recipient of a Sent copy went out through one of `providers`."""
    return any(r.get("provider") in providers for r in doc.get("recipients", []))


class Effects:
    """Applies the items of one recorded notice.

    `peers(provider)` names the other configured accounts of that provider's
    type (a message sent through one Mailgun account may be reported by
    another's webhook); `count(provider, type)` adds an event to the
    provider's figures (bounce and complaint rates).
    """

    def __init__(self, store: Store, mailbox: Mailbox, *,
                 peers: Callable[[str], Sequence[str]] = lambda provider: (),
                 count: Count | None = None) -> None:
        self.store = store
        self.mailbox = mailbox
        self.peers = peers
        self.count = count

    async def apply(self, key: str, provider: str, items: Sequence[Item]) -> str:
        """Carry out every item; a short account of what happened."""
        results = []
        notices = [i for i in items if isinstance(i, Notice)]
        if notices:
            results.append(await self.track(provider, notices))
        for item in items:
            if isinstance(item, Inbound):
                results.append(await self.receive(provider, key, item))
            elif isinstance(item, Skip):
                log.info("notice %s from %s: %s", key, provider, item.reason)
                results.append(item.reason)
        _count(provider, items)
        return "; ".join(r for r in results if r) or "nothing to do"

    # -- delivery events ------------------------------------------------------

    async def track(self, provider: str, notices: Sequence[Notice]) -> str:
        """Record delivery events on their messages; suppress and count.

        An address is suppressed only for a hard bounce or complaint matched to
        a message BitMail sent and naming one of that message's recipients.
        The list stops mail to that address for every user of the service,
        and what a bounce names is written by the receiving side: a DSN's
        Final-Recipient (RFC 3464 §2.3.2) or a feedback report's
        Original-Rcpt-To (RFC 5965) is whatever the remote MTA put there, and
        a provider passes it on. So an event for mail BitMail never sent, or
        naming someone the mail was not sent to, suppresses nobody — just as
        it changes no status.
        """
        matched: dict[tuple[str | None, ...], tuple[Document | None, Tracked | None]] = {}
        by_message: dict[str, tuple[Document, list[Event]]] = {}
        results: list[str] = []
        batch = Batch()
        for n in notices:
            ident = (n.provider_message_id, n.message_doc_id, n.message_id)
            if ident not in matched:
                matched[ident] = await self.match(provider, n)
            doc, tracked = matched[ident]
            recipient = n.recipient.strip().lower() if n.recipient else None
            if self.count is not None:
                self.count(provider, n.type)
            if doc is None and tracked is not None:
                # Mail BitMail sent whose Sent copy its owner has deleted: no
                # status is left to change, but a recipient that bounced hard
                # or complained is still suppressed (the tracked recipients
                # stand for the Sent copy's in the rule above).
                results.append(self._deleted(batch, provider, n, tracked, recipient))
                continue
            if doc is None:
                ids = n.provider_message_id or n.message_doc_id or n.message_id or "no id"
                log.info("notice from %s: %s for a message BitMail does not know (%s); kept",
                         provider, n.type, ids)
                results.append("no such message")
                continue
            placeable, placed = _place(doc, recipient, n.type)
            if not placeable:
                log.warning("notice from %s: %s names %s, who is no recipient of message %s; "
                            "nothing changed", provider, n.type, recipient or "no recipient",
                            doc["id"], extra={"message_doc_id": doc["id"], "provider": provider})
                results.append(f"{n.type} for {recipient or 'no recipient'}: "
                               f"not a recipient of {doc['id']}")
                continue
            if n.type in SUPPRESSING and placed is not None:
                # Only here, past both checks above: mail BitMail sent, and
                # one of its recipients (the rule is in the docstring).
                suppress(batch, placed, reason=SUPPRESSING[n.type], provider=provider,
                         detail=n.detail, message_doc_id=doc["id"])
            by_message.setdefault(doc["id"], (doc, []))[1].append(Event(
                n.type, doc["id"], placed, provider, detail=n.detail[:1000],
                at=n.at or time.time()))
        for message, (_, events) in by_message.items():
            self.mailbox.record(batch, message, events)
            log.info("message %s: %s from %s", message,
                     ", ".join(f"{e.type} {e.recipient or ''}".strip() for e in events), provider,
                     extra={"message_doc_id": message, "provider": provider})
            results.append(f"recorded on {message}")
        if batch.ops:
            # One commit: every status change, suppression and the live updates after it.
            await self.store.commit(batch)
        return "; ".join(dict.fromkeys(results))

    @staticmethod
    def _deleted(batch: Batch, provider: str, n: Notice, tracked: Tracked,
                 recipient: str | None) -> str:
        """Apply a notice for a deleted Sent copy: suppress, or nothing."""
        placed = next((r for r in tracked.recipients if r.lower() == recipient), None)
        if n.type not in SUPPRESSING or placed is None:
            log.info("notice from %s: %s for %s, of message %s, which is deleted; kept",
                     provider, n.type, recipient or "no recipient", tracked.message,
                     extra={"message_doc_id": tracked.message, "provider": provider})
            return f"{n.type}: message {tracked.message} is deleted"
        suppress(batch, placed, reason=SUPPRESSING[n.type], provider=provider,
                 detail=n.detail, message_doc_id=tracked.message)
        log.info("notice from %s: %s for %s, of message %s, which is deleted; suppressed",
                 provider, n.type, placed, tracked.message,
                 extra={"message_doc_id": tracked.message, "provider": provider})
        return f"{n.type} for {placed}: message {tracked.message} is deleted; suppressed"

    async def match(self, provider: str,
                    n: Notice) -> tuple[Document | None, Tracked | None]:
        """The Sent copy a notice is about, wherever its owner keeps it now
        (None when it is not ours, or deleted), and what BitMail tracked of
        the provider's id the notice names (None when it names none we took)."""
        providers = [provider, *self.peers(provider)]
        if n.provider_message_id:
            for name in providers:
                tracked = await self.mailbox.find_tracked(name, n.provider_message_id)
                if tracked:
                    return await self.store.get_one(Kind.MESSAGE, {"id": tracked.message}), tracked
        # Only a Sent copy has recipients with a provider: an Inbox copy or a
        # draft never matches, in whichever folder it is.
        if n.message_doc_id:
            doc = await self.store.get_one(Kind.MESSAGE, {"id": n.message_doc_id})
            if doc is not None and sent_through(doc, providers):
                return doc, None
        if n.message_id:
            docs = await self.store.get(Kind.MESSAGE, {"message_id": bracketed(n.message_id)})
            docs = [d for d in docs if sent_through(d, providers)]
            if docs:
                return docs[-1], None  # the newest, should a Message-ID have been reused
        return None, None

    # -- inbound mail -----------------------------------------------------------

    async def receive(self, provider: str, key: str, inbound: Inbound) -> str:
        """Deliver received mail to each recipient who is a user here."""
        users = await self.mailbox.local_users(inbound.recipients)
        if not users:
            log.info("notice %s from %s: mail for %s, nobody here; kept", key, provider,
                     ", ".join(inbound.recipients) or "no recipient")
            return "no user here"
        if not inbound.mime:
            return "no content"
        for name in users:
            doc_id = await self.mailbox.deliver(name, inbound.mime, received_via=provider,
                                                verdicts=inbound.verdicts or None)
            log.info("inbound mail via %s delivered to %s (message %s)", provider, name, doc_id,
                     extra={"message_doc_id": doc_id, "provider": provider})
        return "delivered to " + ", ".join(users)


def _count(provider: str, items: Sequence[Item]) -> None:
    """Webhook events applied, by provider and type ("inbound" for mail)."""
    for item in items:
        if isinstance(item, Notice):
            WEBHOOK_EVENTS.labels(provider, str(item.type)).inc()
        elif isinstance(item, Inbound):
            WEBHOOK_EVENTS.labels(provider, "inbound").inc()


def _place(doc: Document, recipient: str | None,
           kind: EventType) -> tuple[bool, str | None]:
    """(True, the recipient of `doc` an event is for, in its stored spelling),
    (True, None) for an event about the whole message that changes no status
    (an open nobody can attribute), or (False, None) when the event cannot be
    placed: it names an address that is no recipient of this message, or it
    would change a status and names nobody."""
    if recipient is None:
        return (kind not in EVENT_STATUS, None)
    for r in doc.get("recipients", []):
        if str(r["address"]).lower() == recipient:
            return True, str(r["address"])
    return False, None
