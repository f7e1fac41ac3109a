"""Mailgun inbound mail: a route's forward() to `POST /hooks/mailgun/inbound`,
as the parsed form or (for a URL ending in "mime") with `body-mime`, and mail
Mailgun only stored (fetched from its storage API). Signed and replay-checked
as the tracking events are (web/hooks/mailgun.py).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import Any, ClassVar

import aiohttp
from aiohttp import web
from multidict import MultiDictProxy
from yarl import URL

from ...config import ProviderSettings
from ...errors import ValidationError
from ...events import EventType
from ...message.received import ReceivedPart, rebuild
from ...notices import Inbound, Item
from ..keys import RUNTIME
from .base import (
    INBOUND_MAX_BODY,
    Incoming,
    Record,
    Unavailable,
    Verified,
    content_key,
    event_key,
    has_inbound,
    need,
    parse_json,
)
from .mailgun import (
    SIGNATURE_FIELDS,
    MailgunHook,
    NotAcceptable,
    form_headers,
    header_pairs,
    verify_fields,
)

log = logging.getLogger(__name__)


# -- inbound mail -----------------------------------------------------------------

_ATTACHMENT = re.compile(r"^attachment-(\d+)$")
# Fields of the inbound form that carry the mail itself, not kept twice.
_BODY_FIELDS = ("body-plain", "body-html", "stripped-text", "stripped-html",
                "stripped-signature", "body-mime")


class MailgunInbound(MailgunHook):
    """`POST /hooks/mailgun/inbound`: a route's forward() of received mail,
    as the parsed form or (for a URL ending in "mime") with `body-mime`."""

    name = "mailgun/inbound"
    max_body = INBOUND_MAX_BODY
    # A URL ending in "mime" gets the received message as-is in body-mime
    # ("Receiving Messages via HTTP"): its bytes are kept exactly.
    mime_fields: ClassVar[frozenset[str]] = frozenset({"body-mime"})
    event_types: ClassVar[dict[str, EventType]] = {}

    async def validate_request(self, app: web.Application, incoming: Incoming,
                               providers: Sequence[ProviderSettings]) -> Verified:
        form = incoming.require_form("the form Mailgun's forward() posts "
                                     "(multipart/form-data or urlencoded)")
        fields = {k: form[k] for k in form}  # the first value of each field
        provider, signed = verify_fields(providers, fields, "")
        files = [{"name": f.name, "filename": f.filename, "content_type": f.content_type,
                  "content": base64.b64encode(f.content).decode()} for f in incoming.files]
        payload = {"fields": fields, "files": files}
        event_id = "inbound:" + delivery_key(form, files)
        return Verified(provider, (Record(event_key(provider.name, event_id), payload),),
                        once=signed)

    def parse_events(self, payload: Any) -> list[Any]:
        fields = need(payload, "fields", dict, "fields")
        recipients = tuple(a.strip().lower() for a in
                           need(fields, "recipient", str, "recipient").split(",") if a.strip())
        if not recipients:
            raise ValidationError("is empty", field="recipient")
        if fields.get("body-mime"):
            # The exact bytes sent (read_incoming kept them: mime_fields).
            mime = str(fields["body-mime"]).encode("utf-8", "surrogateescape")
            return [Inbound(recipients, mime=mime, verdicts=_verdicts(_mime_headers(mime)))]
        if fields.get("message-url") and not payload.get("files"):
            # A route's store(notify=...): the message stays at Mailgun.
            return [StoredAtMailgun(recipients, str(fields["message-url"]),
                                    _verdicts(form_headers(fields)))]
        return [Inbound(recipients, mime=_mime(fields, payload.get("files") or []),
                        verdicts=_verdicts(form_headers(fields)))]

    async def admit(self, app: web.Application, verified: Verified,
                    items: dict[str, list[Any]]) -> None:
        # Mail for nobody here is refused now, with the answer Mailgun takes
        # as final (406: no retries), and nothing is stored.
        recipients = [r for parsed in items.values() for item in parsed
                      if isinstance(item, (Inbound, StoredAtMailgun)) for r in item.recipients]
        if not await app[RUNTIME].mailbox.local_users(recipients):
            raise NotAcceptable(f"no user here for {', '.join(recipients)}", field="recipient")
        # A store() notification carries no message: it is fetched now, so
        # what is recorded is the mail itself.
        for parsed in items.values():
            for i, item in enumerate(parsed):
                if isinstance(item, StoredAtMailgun):
                    mime = await fetch_stored(verified.provider, item.url,
                                              app[RUNTIME].settings.max_message_size)
                    parsed[i] = Inbound(item.recipients, mime=mime,
                                        verdicts=item.verdicts or _verdicts(_mime_headers(mime)))

    def kept(self, payload: Any, items: list[Item]) -> Any:
        # The mail itself is the notice's content; its headers are enough beside it.
        if not has_inbound(items):
            return payload
        fields = {k: v for k, v in payload.get("fields", {}).items() if k not in _BODY_FIELDS}
        return {"fields": fields, "files": [
            {k: v for k, v in f.items() if k != "content"} for f in payload.get("files", [])]}


def delivery_key(form: MultiDictProxy[str], files: list[dict[str, Any]]) -> str:
    """What identifies one forward() of one mail: a hash of all Mailgun posted
    — every field in order and every file — but the signature fields.

    The same mail posted again (a route retried after an answer was lost, for
    8 hours: "Receiving Messages via HTTP" in Mailgun's documentation) is one
    event whether Mailgun sends the first signature again or signs anew,
    which that documentation does not say. The Message-ID cannot be the key:
    the sender writes it, so a second, different mail reusing one (a hostile
    sender who saw it on a list or in a thread) would be taken for a retry
    and dropped — or would stand in for the real one, were it first.
    """
    unsigned = [[k, v] for k, v in form.items() if k not in SIGNATURE_FIELDS]
    return content_key({"fields": unsigned, "files": files})


@dataclass(frozen=True, slots=True)
class StoredAtMailgun:
    """Received mail a route's store() kept at Mailgun: fetched before the
    answer (MailgunInbound.admit), then an Inbound like any other."""

    recipients: tuple[str, ...]
    url: str
    verdicts: dict[str, str]


def _stored_url_allowed(url: str, base_url: str) -> bool:
    """Whether the API key may go to `url`: Mailgun's own https hosts, or the
    configured base_url's origin (a loopback fake in tests)."""
    try:
        target, base = URL(url), URL(base_url)
    except ValueError:
        return False
    if target.user is not None or target.password is not None:
        return False
    if (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port):
        return True
    host = target.host or ""
    return target.scheme == "https" and (host == "mailgun.net" or host.endswith(".mailgun.net"))


async def fetch_stored(provider: ProviderSettings, url: str, max_size: int) -> bytes:
    """A stored message's MIME from Mailgun (`Accept: message/rfc2822` gives
    `body-mime`; "Retrieving Stored Messages"), with the provider's API key.

    NotAcceptable (406: Mailgun stops retrying) when this provider cannot fetch
    it — no api_key, a URL that is not Mailgun's, too large — saying to use
    forward(); Unavailable (503: it retries) when Mailgun does not answer now.
    """
    options = provider.options
    api_key = str(options.get("api_key") or "")
    base_url = str(options.get("base_url") or "https://api.mailgun.net")
    use_forward = "; use a forward() route to the inbound hook instead of store()"
    if not api_key or not _stored_url_allowed(url, base_url):
        raise NotAcceptable("a stored message can only be fetched from Mailgun with the "
                            f"provider's api_key{use_forward}", field="message-url",
                            code="store_unsupported")
    token = base64.b64encode(f"api:{api_key}".encode()).decode()
    headers = {"Accept": "message/rfc2822", "Authorization": f"Basic {token}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            async with session.get(url, allow_redirects=False, headers=headers) as resp:
                if resp.status >= 500 or resp.status == 429:
                    raise Unavailable(f"Mailgun answered {resp.status} for the stored message; "
                                      "try again", field="message-url")
                if resp.status != 200:
                    raise NotAcceptable(f"Mailgun answered {resp.status} for the stored "
                                        f"message{use_forward}", field="message-url",
                                        code="store_unsupported")
                if resp.content_length is not None and resp.content_length > 2 * max_size:
                    raise NotAcceptable(f"the stored message is over max_message_size"
                                        f"{use_forward}", field="message-url",
                                        code="store_unsupported")
                body = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable(f"Mailgun cannot be reached for the stored message ({exc}); "
                          "try again", field="message-url") from None
    try:
        mime = str(parse_json(body, "message-url")["body-mime"])
    except (KeyError, TypeError):
        raise NotAcceptable(f"Mailgun's answer has no body-mime{use_forward}",
                            field="message-url", code="store_unsupported") from None
    data = mime.encode("utf-8", "surrogateescape")
    if len(data) > max_size:
        raise NotAcceptable(f"the stored message is over max_message_size{use_forward}",
                            field="message-url", code="store_unsupported")
    return data


# Mailgun's spam filter headers on received mail ("Spam Filter" in its
# receiving documentation): X-Mailgun-Sflag Yes/No, X-Mailgun-Sscore.
def _verdicts(headers: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    flag = headers.get("x-mailgun-sflag")
    if flag:
        out["spam"] = "FAIL" if flag.strip().lower() == "yes" else "PASS"
    score = headers.get("x-mailgun-sscore")
    if score:
        out["spam_score"] = score.strip()
    for header, name in (("x-mailgun-spf", "spf"), ("x-mailgun-dkim-check-result", "dkim")):
        if headers.get(header):
            out[name] = headers[header].strip().upper()
    return out


def _mime_headers(mime: bytes) -> dict[str, str]:
    """The top-level headers of a MIME message, lower-cased names, first wins."""
    head = BytesHeaderParser().parsebytes(mime)
    out: dict[str, str] = {}
    for name, value in head.items():
        out.setdefault(name.lower(), str(value))
    return out


def _mime(fields: dict[str, Any], files: list[dict[str, Any]]) -> bytes:
    """The parsed form rebuilt as MIME: the original headers, the bodies, and
    the `attachment-N` files in order, those named in `content-id-map` inline
    (Mailgun's routes documentation: "Parsed messages")."""
    headers = header_pairs(fields)
    for name in ("From", "Subject"):
        if not any(n.lower() == name.lower() for n, _ in headers) and fields.get(name.lower()):
            headers.append((name, str(fields[name.lower()])))
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
    parts = [ReceivedPart(filename=str(f.get("filename") or ""),
                          content_type=str(f.get("content_type") or "application/octet-stream"),
                          content=base64.b64decode(f["content"]),
                          content_id=cids.get(str(f.get("name")), ""))
             for _, f in sorted(numbered, key=lambda pair: pair[0])]
    return rebuild(headers, str(fields.get("body-plain") or ""),
                   str(fields.get("body-html") or ""), parts)
