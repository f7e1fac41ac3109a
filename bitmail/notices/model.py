"""What a verified webhook says, in BitMail's terms: the normalized events a
provider's hook module parses from a payload, recorded with it, and turned
into effects by this package.

Each has a JSON form (`to_json` / `item_from_json`), because a notice is
recorded when the request is answered and applied afterwards, maybe by
another process.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field
from typing import Any

from ..events import EventType


@dataclass(frozen=True, slots=True)
class Notice:
    """A delivery event, before it is matched to a message.

    It is matched by the provider's id that BitMail recorded when that
    provider (or another account of its type) took the message, else by
    BitMail's own id echoed in the provider's metadata, else by the RFC 5322
    Message-ID — those two only among messages sent through that provider.
    `recipient` None: the event names no recipient (an open that SES cannot
    attribute); it then changes no recipient's status.
    """

    type: EventType
    recipient: str | None = None
    detail: str = ""
    at: float | None = None
    provider_message_id: str | None = None
    message_doc_id: str | None = None  # BitMail's own id, echoed in the provider's metadata
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    """Received mail for addresses at our domain, as its MIME bytes, with the
    provider's findings about it (`verdicts`: "spam", "virus", "spf", "dkim",
    "dmarc" → "PASS", "FAIL", "GRAY", …, and "spam_score"), kept on the Inbox copy."""

    recipients: tuple[str, ...]
    mime: bytes
    verdicts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Skip:
    """An event that is kept but changes nothing (an event type BitMail does not
    track, a subscription message); the reason is logged and recorded."""

    reason: str


Item = Notice | Inbound | Skip


def to_json(item: Item) -> dict[str, Any]:
    """An item as a JSON object with its `kind`; MIME bytes as base64."""
    if isinstance(item, Notice):
        return {"kind": "notice", **{k: v for k, v in asdict(item).items() if v is not None}}
    if isinstance(item, Inbound):
        out: dict[str, Any] = {"kind": "inbound", "recipients": list(item.recipients),
                               "mime": base64.b64encode(item.mime).decode()}
        if item.verdicts:
            out["verdicts"] = dict(item.verdicts)
        return out
    return {"kind": "skip", "reason": item.reason}


def item_from_json(doc: dict[str, Any]) -> Item:
    """The inverse of to_json; ValueError for a kind it does not know."""
    kind = doc.get("kind")
    if kind == "notice":
        fields = {k: v for k, v in doc.items() if k != "kind"}
        fields["type"] = EventType(fields["type"])
        if "message" in fields:  # recorded before the field had its present name
            fields["message_doc_id"] = fields.pop("message")
        return Notice(**fields)
    if kind == "inbound":
        return Inbound(tuple(doc.get("recipients") or ()),
                       mime=base64.b64decode(doc.get("mime") or ""),
                       verdicts={str(k): str(v) for k, v in (doc.get("verdicts") or {}).items()})
    if kind == "skip":
        return Skip(str(doc.get("reason", "")))
    raise ValueError(f"unknown notice item {kind!r}")
