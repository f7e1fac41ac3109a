"""Mandrill webhooks: `POST /hooks/mandrill` (and `HEAD`, which Mandrill
uses to check the URL when the webhook is added).

The form field `mandrill_events` is a JSON array of events, message events and
inbound mail alike. `X-Mandrill-Signature` is base64(HMAC-SHA1(webhook_key,
webhook_url + each POST key and value, sorted by key)); the URL is the
configured `webhook_url` — exactly as it was entered at Mandrill — not the one
this request arrived on, which a proxy may have rewritten.

Mandrill signs no timestamp, so a replay is recognised by its events: each is
stored under `_id` + `ts` + event name, and the same event twice changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, ClassVar

from aiohttp import web

from ... import tokens
from ...config import ProviderSettings
from ...errors import ValidationError
from ...events import EventType
from ...notices import Inbound, Item, Notice, Skip
from .base import (
    INBOUND_MAX_BODY,
    BadSignature,
    Incoming,
    Record,
    Verified,
    Webhook,
    content_key,
    event_key,
    has_inbound,
    need,
    optional,
    parse_json,
    timestamp,
)

# Mandrill's event names → BitMail's.
EVENT_TYPES: dict[str, EventType] = {
    "send": EventType.SENT,
    "deferral": EventType.DEFERRED,
    "hard_bounce": EventType.BOUNCED,
    "soft_bounce": EventType.DEFERRED,
    "spam": EventType.COMPLAINED,
    "unsub": EventType.UNSUBSCRIBED,
    "reject": EventType.REJECTED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "inbound": EventType.INBOUND,
}
# Keys of msg.metadata that BitMail's sender may set (X-MC-Metadata), tried
# when the event's _id is not one the container tracked.
METADATA_MESSAGE = "bitmail_id"
METADATA_MESSAGE_ID = "message_id"


def signature(key: str, url: str, form: Any) -> str:
    """Mandrill's signature of a POST: base64(HMAC-SHA1(key, url + sorted key/values))."""
    signed = url + "".join(k + v for k in sorted(set(form.keys())) for v in form.getall(k))
    return base64.b64encode(hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()
                            ).decode()


class MandrillHook(Webhook):
    """`POST /hooks/mandrill`: message events and inbound mail."""

    type = "mandrill"
    name = "mandrill"
    secrets = ("webhook_key", "webhook_url")
    # Inbound mail comes through here too: the inbound cap.
    max_body = INBOUND_MAX_BODY
    event_types: ClassVar[dict[str, EventType]] = EVENT_TYPES

    async def validate_request(self, app: web.Application, incoming: Incoming,
                               providers: Sequence[ProviderSettings]) -> Verified:
        form = incoming.require_form("mandrill_events as a form "
                                     "(application/x-www-form-urlencoded)")
        given = incoming.headers.get("X-Mandrill-Signature")
        if not given:
            raise BadSignature("X-Mandrill-Signature is missing", field="X-Mandrill-Signature")
        provider = None
        for candidate in providers:
            expected = signature(str(candidate.webhook["webhook_key"]),
                                 str(candidate.webhook["webhook_url"]), form)
            if tokens.same(given.strip(), expected):
                provider = candidate
                break
        if provider is None:
            raise BadSignature("the signature does not match any configured Mandrill "
                               "webhook_key and webhook_url", field="X-Mandrill-Signature")
        raw = form.get("mandrill_events")
        if raw is None:
            raise ValidationError("is missing", field="mandrill_events")
        events = parse_json(raw, "mandrill_events")
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise ValidationError("must be a JSON array of event objects",
                                  field="mandrill_events")
        return Verified(provider, tuple(
            Record(event_key(provider.name, _event_id(e)), e) for e in events))

    def setup(self, app: web.Application) -> None:
        app.router.add_route("HEAD", self.path, head)
        app.router.add_route("HEAD", self.path + "/{provider}", head)

    def kept(self, payload: Any, items: list[Item]) -> Any:
        # Inbound mail is the notice's content; not kept twice.
        if not has_inbound(items) or not isinstance(payload.get("msg"), dict):
            return payload
        msg = {k: v for k, v in payload["msg"].items() if k not in ("raw_msg", "raw_message")}
        return {**payload, "msg": msg}

    def parse_events(self, payload: Any) -> list[Item]:
        name = optional(payload, "event", str, "mandrill_events[].event")
        if name is None:
            if isinstance(payload, dict) and "type" in payload:
                # Sync events (rejection and allow lists changed) carry "type".
                return [Skip(f"mandrill sync event {payload.get('type')!r} is not tracked")]
            raise ValidationError("is missing", field="mandrill_events[].event")
        kind = self.event_types.get(name)
        if kind is None:
            return [Skip(f"mandrill event {name!r} is not tracked")]
        msg = need(payload, "msg", dict, "mandrill_events[].msg")
        if kind == EventType.INBOUND:
            return [_inbound(msg)]
        metadata = optional(msg, "metadata", dict, "mandrill_events[].msg.metadata") or {}
        headers = msg.get("headers") if isinstance(msg.get("headers"), dict) else {}
        message_id = metadata.get(METADATA_MESSAGE_ID) or next(
            (v for k, v in headers.items() if k.lower() == "message-id"), None)
        pmid = payload.get("_id") or msg.get("_id")
        return [Notice(
            kind, optional(msg, "email", str, "mandrill_events[].msg.email"), _detail(payload),
            timestamp(payload.get("ts")),
            provider_message_id=pmid if isinstance(pmid, str) else None,
            message_doc_id=metadata.get(METADATA_MESSAGE) if isinstance(
                metadata.get(METADATA_MESSAGE), str) else None,
            message_id=message_id if isinstance(message_id, str) else None)]


async def head(request: web.Request) -> web.Response:
    """Mandrill checks that the URL exists with a HEAD before it sends anything."""
    return web.Response(status=200)


def _event_id(event: dict[str, Any]) -> str:
    """`_id` + `ts` + event name (one message has many events); else a content hash."""
    if isinstance(event.get("_id"), str) and event.get("event"):
        return f"{event['_id']}:{event.get('ts')}:{event['event']}"
    return content_key(event)


def _detail(event: dict[str, Any]) -> str:
    msg = event.get("msg") or {}
    parts = [msg.get("bounce_description"), msg.get("diag")]
    smtp = msg.get("smtp_events")
    if event.get("event") == "deferral" and isinstance(smtp, list) and smtp:
        last = smtp[-1]
        if isinstance(last, dict):
            parts.append(last.get("diag"))
    if event.get("event") == "click":
        parts.append(event.get("url"))
    if event.get("event") == "reject":
        parts.append(msg.get("reject", {}).get("reason") if isinstance(msg.get("reject"), dict)
                     else msg.get("state"))
    return " ".join(str(p) for p in parts if p and p != "unknown")


def _inbound(msg: dict[str, Any]) -> Inbound:
    # Mandrill documents the MIME as raw_msg; raw_message is accepted too.
    raw = msg.get("raw_msg") or msg.get("raw_message")
    if not isinstance(raw, str) or not raw:
        raise ValidationError("is missing", field="mandrill_events[].msg.raw_msg")
    recipient = need(msg, "email", str, "mandrill_events[].msg.email")
    return Inbound((recipient.strip().lower(),), mime=raw.encode("utf-8", "surrogateescape"))
