"""One vocabulary of events for the whole system.

Provider outcomes and webhook notifications are all turned into these types,
in the spirit of django-anymail's normalized events, so that nothing above
the provider modules sees a provider's own names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum


class EventType(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    REJECTED = "rejected"
    UNSUBSCRIBED = "unsubscribed"
    OPENED = "opened"
    CLICKED = "clicked"
    INBOUND = "inbound"


class Status(StrEnum):
    """A recipient's delivery status; a message's is its least advanced recipient's."""

    QUEUED = "queued"
    DEFERRED = "deferred"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


# Statuses only move forward: a late "delivered" never hides a "bounced", and a
# "deferred" from a provider after it accepted the mail does not undo "sent".
STATUS_RANK: dict[Status, int] = {
    Status.QUEUED: 0,
    Status.DEFERRED: 1,
    Status.SENT: 2,
    Status.DELIVERED: 3,
    Status.FAILED: 4,
    Status.BOUNCED: 4,
    Status.COMPLAINED: 5,
}

# The status an event moves a recipient to; events not listed (opened,
# clicked, …) are recorded without changing the status.
EVENT_STATUS: dict[EventType, Status] = {
    EventType.QUEUED: Status.QUEUED,
    EventType.DEFERRED: Status.DEFERRED,
    EventType.SENT: Status.SENT,
    EventType.DELIVERED: Status.DELIVERED,
    EventType.FAILED: Status.FAILED,
    EventType.REJECTED: Status.FAILED,
    EventType.BOUNCED: Status.BOUNCED,
    EventType.COMPLAINED: Status.COMPLAINED,
}


def advance(current: str, new: str) -> str:
    """The status after `new` is reported for a recipient now at `current`."""
    return new if STATUS_RANK[Status(new)] > STATUS_RANK[Status(current)] else current


def least_advanced(statuses: list[str]) -> str:
    """A message's status: that of its least advanced recipient."""
    if not statuses:
        return Status.SENT
    return min(statuses, key=lambda s: STATUS_RANK[Status(s)])


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a message, a recipient or a provider."""

    type: EventType
    message_doc_id: str | None = None  # the message's document (its Sent copy)
    recipient: str | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    detail: str = ""
    ambiguous: bool = False  # the mail may already have gone out once
    at: float = field(default_factory=time.time)
