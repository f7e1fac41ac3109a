"""Mailgun webhooks: tracking events (`/hooks/mailgun`) and routes'
forward() of inbound mail (`/hooks/mailgun/inbound`).

Both are signed the same way: `signature` = hex HMAC-SHA256 of `timestamp` +
`token` with the provider's `webhook_signing_key`. The signature covers only
those two values, not the body, so a captured signature could carry any
payload: that is why a timestamp older than five minutes is refused and every
token is remembered (in the store, so all processes share the memory) and
refused the second time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from aiohttp import web

from ...config import ProviderSettings
from ...errors import ValidationError
from ...events import EventType
from ...message import safe_filename
from ...message.received import ReceivedPart, rebuild
from ...runtime import Runtime
from .base import (
    FORM_TYPES,
    INBOUND_MAX_BODY,
    BadSignature,
    Inbound,
    Incoming,
    NotAcceptable,
    Notice,
    Record,
    Skip,
    Verified,
    Webhook,
    check_fresh,
    content_key,
    event_key,
    need,
    optional,
    parse_json,
    timestamp,
)

# Mailgun's event names → BitMail's ("failed" is refined by its severity).
EVENT_TYPES: dict[str, EventType] = {
    "accepted": EventType.SENT,
    "delivered": EventType.DELIVERED,
    "failed": EventType.BOUNCED,
    "rejected": EventType.REJECTED,
    "complained": EventType.COMPLAINED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
}
# A "failed" event's severity: permanent is a bounce, temporary a deferral
# (Mailgun keeps trying).
SEVERITY_TYPES: dict[str, EventType] = {
    "permanent": EventType.BOUNCED,
    "temporary": EventType.DEFERRED,
}


def check_signature(providers: Sequence[ProviderSettings], timestamp: str, token: str,
                    signature: str) -> ProviderSettings:
    """The provider whose signing key made `signature`, compared in constant time."""
    given = signature.strip().lower().encode()
    signed = (timestamp + token).encode()
    for provider in providers:
        key = str(provider.webhook["webhook_signing_key"]).encode()
        expected = hmac.new(key, signed, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(expected, given):
            return provider
    raise BadSignature("the signature does not match any configured Mailgun signing key",
                       field="signature")


def _signature_fields(source: Any, where: str) -> tuple[str, str, str]:
    prefix = f"{where}." if where else ""
    return tuple(need(source, k, str, prefix + k)  # type: ignore[return-value]
                 for k in ("timestamp", "token", "signature"))


class MailgunEvents(Webhook):
    """`POST /hooks/mailgun`: Mailgun's JSON tracking webhooks."""

    type = "mailgun"
    name = "mailgun"
    secrets = ("webhook_signing_key",)
    event_types: ClassVar[dict[str, EventType]] = EVENT_TYPES

    async def validate_request(self, app: web.Application, incoming: Incoming,
                               providers: Sequence[ProviderSettings]) -> Verified:
        if incoming.content_type in FORM_TYPES:
            raise ValidationError("Mailgun's legacy form-encoded webhooks are not supported; "
                                  "use its JSON webhooks", code="unsupported_media_type")
        payload = parse_json(incoming.body)
        if not isinstance(payload, dict):
            raise ValidationError("the body must be a JSON object", code="bad_json")
        signature = need(payload, "signature", dict, "signature")
        ts, token, sig = _signature_fields(signature, "signature")
        event = need(payload, "event-data", dict, "event-data")
        provider = check_signature(providers, ts, token, sig)
        check_fresh(ts, "signature.timestamp")
        event_id = optional(event, "id", str, "event-data.id") or content_key(event)
        return Verified(provider, (Record(event_key(provider.name, event_id), payload),),
                        token=token)

    def parse_events(self, payload: Any) -> list[Notice | Skip]:
        data = need(payload, "event-data", dict, "event-data")
        name = need(data, "event", str, "event-data.event")
        kind = self.event_types.get(name)
        if kind is None:
            return [Skip(f"mailgun event {name!r} is not tracked")]
        if name == "failed":
            kind = SEVERITY_TYPES.get(optional(data, "severity", str, "event-data.severity")
                                      or "permanent", EventType.BOUNCED)
        message = optional(data, "message", dict, "event-data.message") or {}
        headers = optional(message, "headers", dict, "event-data.message.headers") or {}
        mid = optional(headers, "message-id", str, "event-data.message.headers.message-id")
        recipient = optional(data, "recipient", str, "event-data.recipient")
        # Tracking keeps Mailgun's id without <>; the same value is the
        # Message-ID of what BitMail sent, so it is the fallback too.
        pmid = mid.strip().removeprefix("<").removesuffix(">") if mid else None
        return [Notice(kind, recipient, _detail(data), timestamp(data.get("timestamp")),
                       provider_message_id=pmid, message_id=pmid)]


def _detail(data: dict[str, Any]) -> str:
    """What a person reading the message's events wants to know."""
    status = data.get("delivery-status")
    parts = []
    if isinstance(status, dict):
        code = status.get("code")
        text = status.get("description") or status.get("message")
        parts += [str(code) if code else "", str(text) if text else ""]
    for key in ("reason", "url"):
        if isinstance(data.get(key), str) and data[key] not in ("generic", ""):
            parts.append(data[key])
    return " ".join(p for p in parts if p).strip()


_ATTACHMENT = re.compile(r"^attachment-(\d+)$")


class MailgunInbound(Webhook):
    """`POST /hooks/mailgun/inbound`: a route's forward() of received mail,
    as the parsed form or (for a URL ending in "mime") with `body-mime`."""

    type = "mailgun"
    name = "mailgun/inbound"
    secrets = ("webhook_signing_key",)
    max_body = INBOUND_MAX_BODY
    event_types: ClassVar[dict[str, EventType]] = {}

    async def validate_request(self, app: web.Application, incoming: Incoming,
                               providers: Sequence[ProviderSettings]) -> Verified:
        form = incoming.form
        if form is None:
            raise ValidationError("send the form Mailgun's forward() posts "
                                  "(multipart/form-data or urlencoded)",
                                  code="unsupported_media_type")
        fields = {k: form[k] for k in form}  # the first value of each field
        ts, token, sig = _signature_fields(fields, "")
        provider = check_signature(providers, ts, token, sig)
        check_fresh(ts, "timestamp")
        payload = {"fields": fields, "files": [
            {"name": f.name, "filename": f.filename, "content_type": f.content_type,
             "content": base64.b64encode(f.content).decode()} for f in incoming.files]}
        recipient = need(fields, "recipient", str, "recipient").strip().lower()
        headers = _headers(fields)
        # The same mail forwarded twice (a retried route) is one event.
        event_id = (f"inbound:{headers['message-id']}:{recipient}"
                    if headers.get("message-id") else f"inbound:token:{token}")
        return Verified(provider, (Record(event_key(provider.name, event_id), payload),),
                        token=token)

    def parse_events(self, payload: Any) -> list[Inbound]:
        fields = need(payload, "fields", dict, "fields")
        recipients = tuple(a.strip().lower() for a in
                           need(fields, "recipient", str, "recipient").split(",") if a.strip())
        if not recipients:
            raise ValidationError("is empty", field="recipient")
        if fields.get("body-mime"):
            return [Inbound(recipients, mime=str(fields["body-mime"]).encode("utf-8",
                                                                             "surrogateescape"))]
        return [Inbound(recipients, mime=_mime(fields, payload.get("files") or []))]

    async def admit(self, runtime: Runtime, verified: Verified, items: list[Any]) -> None:
        # Mail for nobody here is refused now, with the answer Mailgun takes
        # as final (406: no retries), and nothing is stored.
        recipients = [r for item in items if isinstance(item, Inbound) for r in item.recipients]
        if not await runtime.mailbox.local_users(recipients):
            raise NotAcceptable(f"no user here for {', '.join(recipients)}", field="recipient")


def _headers(fields: dict[str, Any]) -> dict[str, str]:
    """`message-headers` (a JSON list of [name, value]) as a dict, first value wins."""
    raw = fields.get("message-headers")
    if not raw:
        return {}
    pairs = parse_json(raw, "message-headers")
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in pairs):
        raise ValidationError("must be a JSON list of [name, value] pairs",
                              field="message-headers")
    out: dict[str, str] = {}
    for name, value in pairs:
        out.setdefault(name.lower(), value)
    return out


def _mime(fields: dict[str, Any], files: list[dict[str, Any]]) -> bytes:
    """The parsed form rebuilt as MIME: the original headers, the bodies, and
    the `attachment-N` files in order, those named in `content-id-map` inline."""
    pairs = parse_json(fields["message-headers"], "message-headers") \
        if fields.get("message-headers") else []
    headers = [(n, v) for n, v in pairs] if _header_pairs(pairs) else []
    if not any(n.lower() == "from" for n, _ in headers) and fields.get("from"):
        headers.append(("From", str(fields["from"])))
    if not any(n.lower() == "subject" for n, _ in headers) and fields.get("subject"):
        headers.append(("Subject", str(fields["subject"])))
    cids: dict[str, str] = {}
    if fields.get("content-id-map"):
        mapping = parse_json(fields["content-id-map"], "content-id-map")
        if isinstance(mapping, dict):
            cids = {str(name): str(cid).strip("<>") for cid, name in mapping.items()}
    numbered = []
    for f in files:
        m = _ATTACHMENT.match(str(f.get("name", "")))
        if m and isinstance(f.get("content"), str):
            numbered.append((int(m.group(1)), f))
    parts = []
    for index, f in sorted(numbered, key=lambda pair: pair[0]):
        content_type = str(f.get("content_type") or "application/octet-stream")
        parts.append(ReceivedPart(
            filename=safe_filename(str(f.get("filename") or ""), index - 1, content_type),
            content_type=content_type, content=base64.b64decode(f["content"]),
            content_id=cids.get(str(f.get("name")), "")))
    return rebuild(headers, str(fields.get("body-plain") or ""),
                   str(fields.get("body-html") or ""), parts)


def _header_pairs(pairs: Any) -> bool:
    return isinstance(pairs, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
        for p in pairs)


