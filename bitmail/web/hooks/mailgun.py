"""Mailgun webhooks: tracking events (`/hooks/mailgun`, JSON or the legacy
form); routes' forward() of inbound mail (`/hooks/mailgun/inbound`) is in
mailgun_inbound.py, signed and checked by what is here.

All are signed the same way ("Securing Webhooks" in Mailgun's documentation):
`signature` = hex HMAC-SHA256 of `timestamp` + `token`, concatenated with no
separator, with the provider's `webhook_signing_key`. The signature covers
only that string, not the body, so a captured signature could carry any
payload: every verified signed string is remembered (in the store, so all
processes share the memory) and refused the second time — spent whatever the
answer, so a refused request's signature cannot carry another payload either.

Because the two values are signed as one string, the split between them is
not signed: "1700000000" + "e0…" and "1700000000e0" + "…" have one HMAC. So
only Mailgun's own shapes are accepted — `timestamp` the seconds since the
epoch as ASCII digits (an "int"), `token` 50 hex digits ("randomly generated
string with length of 50") — which leaves one split for each signed string,
and what is spent is the signed string itself, not the token alone.

Mailgun retries a webhook that was not answered 200 or 406 for 8 hours (5
and 10 and 15 minutes, then 1, 2 and 4 hours: "Automatic Retries" in its
webhook documentation), with the signature it first made. A signed timestamp
is therefore accepted for FRESHNESS — those 8 hours and a little clock skew —
and spent signed strings are kept at least that long, so a replay inside the
window is refused as spent.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from email.utils import getaddresses
from typing import Any, ClassVar

from aiohttp import web

from ... import tokens
from ...config import ProviderSettings
from ...errors import BitMailError, ValidationError
from ...events import EventType
from ...notices import Item, Notice, Skip
from ...store import Batch, Kind, StoreError
from ..keys import RUNTIME
from .base import (
    SKEW,
    BadSignature,
    Incoming,
    Record,
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

log = logging.getLogger(__name__)

RETRY_WINDOW = 8 * 3600.0  # Mailgun retries for 8 hours
FRESHNESS = RETRY_WINDOW + SKEW  # a signed timestamp older than this is refused
TOKEN_TTL = FRESHNESS + 2 * SKEW  # a signature older than this would be refused as stale anyway

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
# The legacy (form-encoded) webhooks' event names. "dropped" is Mailgun giving
# up before or after trying (code 605: a recipient that bounced before; a
# bounce reason: it failed for good): the message is not delivered to that
# recipient, a rejection; "bounced" is a hard bounce, which suppresses.
LEGACY_EVENT_TYPES: dict[str, EventType] = {
    "delivered": EventType.DELIVERED,
    "dropped": EventType.REJECTED,
    "bounced": EventType.BOUNCED,
    "complained": EventType.COMPLAINED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
}
# Form fields that sign the request, not part of the event or mail.
SIGNATURE_FIELDS = ("timestamp", "token", "signature")
# The shapes of Mailgun's signed values ("Securing Webhooks"): timestamp "int,
# number of seconds passed since January 1, 1970" (10 digits until 2286; up to
# 12 are read, and freshness refuses what is far off), token a "randomly generated
# string with length of 50" — hex digits in every one Mailgun sends (its
# documentation's example: "e0b5477167110d68991efc6b9f89f0a11066af27834600e123").
# ASCII digits only: str.isdigit() and float() also take fullwidth digits,
# "1_7", " 17" and "17e0".
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_TOKEN = re.compile(r"[0-9a-fA-F]{50}")


class NotAcceptable(BitMailError):
    """Mail for nobody here: Mailgun takes a 406 as "do not retry"."""

    status = 406
    code = "unknown_recipient"


def check_signature(providers: Sequence[ProviderSettings], timestamp: str, token: str,
                    signature: str) -> ProviderSettings:
    """The provider whose signing key made `signature`, compared in constant time."""
    signed = (timestamp + token).encode()  # ASCII: their shapes are checked first
    for provider in providers:
        key = str(provider.webhook["webhook_signing_key"]).encode()
        expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
        if tokens.same(signature.strip().lower(), expected):
            return provider
    raise BadSignature("the signature does not match any configured Mailgun signing key",
                       field="signature")


def _signature_fields(source: Any, where: str) -> tuple[str, str, str]:
    prefix = f"{where}." if where else ""
    ts, token, sig = (str(need(source, k, str, prefix + k)) for k in SIGNATURE_FIELDS)
    return ts, token, sig


def check_shapes(timestamp: str, token: str, where: str) -> None:
    """Refuse a timestamp or token Mailgun would not send (403 bad_signature).

    The HMAC covers timestamp + token as one string, so another split of a
    signed string ("1700000000e0" + token[2:]) verifies too, with a token
    never seen: only Mailgun's shapes fix the split. Such a request is
    refused as unproven (403), whether or not its HMAC matches — a matching
    one is a signed string cut where Mailgun did not cut it.
    """
    prefix = f"{where}." if where else ""
    if not _TIMESTAMP.fullmatch(timestamp):
        raise BadSignature("the timestamp must be the seconds since 1970 as ASCII digits, "
                           "as Mailgun signs it", field=prefix + "timestamp")
    if not _TOKEN.fullmatch(token):
        raise BadSignature("the token must be 50 hex digits, as Mailgun makes it",
                           field=prefix + "token")


def verify_fields(providers: Sequence[ProviderSettings], source: Any,
                  where: str) -> tuple[ProviderSettings, str]:
    """Check the shapes, the signature, then the timestamp: the provider and
    the signed string (timestamp + token), which is what spends the request."""
    ts, token, sig = _signature_fields(source, where)
    check_shapes(ts, token, where)
    provider = check_signature(providers, ts, token, sig)
    check_fresh(ts, f"{where}.timestamp" if where else "timestamp", max_age=FRESHNESS)
    return provider, ts + token


# -- one-time tokens ------------------------------------------------------------


class MailgunHook(Webhook):
    """What Mailgun's endpoints share: the signing key and the spent signatures."""

    type = "mailgun"
    secrets = ("webhook_signing_key",)

    def spend(self, batch: Batch, verified: Verified) -> None:
        if verified.once:
            # The signed string (timestamp + token), not the token: the same
            # signature under another split of it is the same request.
            # Added, not put: of two requests with one signature, even in two
            # processes at the same moment, only the first commits.
            batch.add(Kind.WEBHOOK_TOKEN, {"at": time.time(), "provider": verified.provider.name},
                      id=f"{self.type}:{verified.once}")

    def setup(self, app: web.Application) -> None:
        if _forget_tokens not in app.cleanup_ctx:
            app.cleanup_ctx.append(_forget_tokens)


async def forget_tokens(store: Any, *, now: float | None = None) -> int:
    """Drop tokens whose timestamps would be refused as stale anyway; how many."""
    cutoff = (time.time() if now is None else now) - TOKEN_TTL
    old = [d["id"] for d in await store.get(Kind.WEBHOOK_TOKEN) if d.get("at", 0) < cutoff]
    if old:
        batch = Batch()
        for token_id in old:
            batch.delete(Kind.WEBHOOK_TOKEN, token_id)
        await store.commit(batch)
    return len(old)


async def _forget_tokens(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: every minute, forget tokens past TOKEN_TTL."""

    async def sweep() -> None:
        while True:
            await asyncio.sleep(60.0)
            try:
                await forget_tokens(app[RUNTIME].store)
            except StoreError as exc:
                log.warning("could not forget old webhook tokens: %s", exc)

    task = asyncio.create_task(sweep(), name="mailgun tokens")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# -- tracking events ------------------------------------------------------------


class MailgunEvents(MailgunHook):
    """`POST /hooks/mailgun`: tracking webhooks, as JSON or as the legacy form
    (urlencoded or multipart) that accounts set up before the JSON webhooks
    still receive."""

    name = "mailgun"
    event_types: ClassVar[dict[str, EventType]] = EVENT_TYPES

    async def validate_request(self, app: web.Application, incoming: Incoming,
                               providers: Sequence[ProviderSettings]) -> Verified:
        if incoming.form is not None:
            return self._validate_legacy(incoming, providers)
        payload = parse_json(incoming.body)
        if not isinstance(payload, dict):
            raise ValidationError("the body must be a JSON object", code="bad_json")
        signature = need(payload, "signature", dict, "signature")
        need(payload, "event-data", dict, "event-data")
        provider, signed = verify_fields(providers, signature, "signature")
        event = payload["event-data"]
        event_id = optional(event, "id", str, "event-data.id") or content_key(event)
        return Verified(provider, (Record(event_key(provider.name, event_id), payload),),
                        once=signed)

    def _validate_legacy(self, incoming: Incoming,
                         providers: Sequence[ProviderSettings]) -> Verified:
        form = incoming.form
        assert form is not None
        fields = {k: form[k] for k in form}  # the first value of each field
        need(fields, "event", str, "event")
        provider, signed = verify_fields(providers, fields, "")
        # No event id in the legacy form: the same event posted again (a
        # retry) has the same fields, so their hash is its id.
        event_id = "legacy:" + content_key(
            {k: v for k, v in fields.items() if k not in ("token", "signature")})
        payload = {"legacy": fields, "files": [f.filename for f in incoming.files]}
        return Verified(provider, (Record(event_key(provider.name, event_id), payload),),
                        once=signed)

    def parse_events(self, payload: Any) -> list[Item]:
        if isinstance(payload, dict) and "legacy" in payload:
            return _legacy_events(payload["legacy"])
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
        # Tracking keeps Mailgun's id without <>; the same value is the
        # Message-ID of what BitMail sent, so it is the fallback too.
        pmid = _bare(mid)
        recipient = optional(data, "recipient", str, "event-data.recipient")
        at = timestamp(data.get("timestamp"))
        detail = _detail(data)
        if recipient:
            return [Notice(kind, recipient, detail, at, provider_message_id=pmid,
                           message_id=pmid)]
        # A rejection names no recipient: Mailgun refused the message before
        # sending, and the addresses are only in its To header.
        to = optional(headers, "to", str, "event-data.message.headers.to") or ""
        addresses = [a for _, a in getaddresses([to]) if a]
        if not addresses:
            return [Skip(f"mailgun event {name!r} names no recipient")]
        return [Notice(kind, address, detail, at, provider_message_id=pmid, message_id=pmid)
                for address in addresses]


def _bare(message_id: str | None) -> str | None:
    if not message_id:
        return None
    return message_id.strip().removeprefix("<").removesuffix(">") or None


def _detail(data: dict[str, Any]) -> str:
    """What a person reading the message's events wants to know."""
    parts: list[str] = []
    status = data.get("delivery-status")
    if isinstance(status, dict):
        code = status.get("code")
        text = status.get("description") or status.get("message")
        parts += [str(code) if code else "", str(text) if text else ""]
    reject = data.get("reject")
    if isinstance(reject, dict):
        parts += [str(reject.get(k) or "") for k in ("reason", "description")]
    for key in ("reason", "url"):
        if isinstance(data.get(key), str) and data[key] not in ("generic", ""):
            parts.append(data[key])
    return " ".join(dict.fromkeys(p for p in parts if p)).strip()


def _legacy_events(fields: dict[str, Any]) -> list[Item]:
    """A legacy form webhook as items: the same events as the JSON ones."""
    name = need(fields, "event", str, "event")
    kind = LEGACY_EVENT_TYPES.get(name)
    if kind is None:
        return [Skip(f"mailgun legacy event {name!r} is not tracked")]
    recipient = need(fields, "recipient", str, "recipient")
    mid = fields.get("Message-Id") or fields.get("message-id")
    if not mid and fields.get("message-headers"):
        mid = form_headers(fields).get("message-id")
    pmid = _bare(mid if isinstance(mid, str) else None)
    parts = [fields.get(k) for k in ("code", "error", "reason", "description", "notification",
                                     "url")]
    detail = " ".join(dict.fromkeys(str(p) for p in parts if p and p != "generic"))
    return [Notice(kind, recipient, detail, timestamp(fields.get("timestamp")),
                   provider_message_id=pmid, message_id=pmid)]


def header_pairs(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """`message-headers`: a JSON list of [name, value], in order.

    Mailgun writes some parsed values as structures (Content-Type as
    `["multipart/alternative", {"boundary": ...}]` in its legacy webhooks);
    only text values are kept.
    """
    raw = fields.get("message-headers")
    if not raw:
        return []
    pairs = parse_json(raw, "message-headers")
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
        raise ValidationError("must be a JSON list of [name, value] pairs",
                              field="message-headers")
    return [(name, value) for name, value in pairs if isinstance(value, str)]


def form_headers(fields: dict[str, Any]) -> dict[str, str]:
    """`message-headers` as a dict of lower-cased names, first value wins."""
    out: dict[str, str] = {}
    for name, value in header_pairs(fields):
        out.setdefault(name.lower(), value)
    return out
