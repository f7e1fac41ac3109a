"""The shared webhook flow: read, verify, record, answer.

A provider module fills in what differs, in the three small steps of
django-anymail's webhooks:

- `validate_request`: find the configured provider whose secret signed the
  request (constant-time comparison) or refuse it with a precise 4xx;
- `parse_events`: one payload → the normalized items of `bitmail.notices`
  (delivery events, inbound mail, things kept but not acted on), raising
  ValidationError when it is malformed;
- `event_types`: a plain dict from the provider's event names to EventType.

The base owns the order, which is what makes webhooks safe to retry:

1. read the body under a cap (1 MB for events, 30 MB where mail comes in): 413;
2. validate: 403 (signature, stale, replay), 400 (malformed), 404 (no provider);
3. parse every event, so a malformed one is refused before anything is
   stored; `admit` refuses what the provider must be told about now (a 406,
   a 503 so it retries); a forged or malformed request changes nothing, but a
   one-time value a verified request carried is spent whatever the answer;
4. record, in one commit, each event not seen before as a notice (its id is
   the provider's event id, so the same event twice is recognised, even two
   copies at once: a notice is only ever inserted) with the items parsed
   from it;
5. answer 200 — quickly, whatever applying the notices will find.

Applying them (matching messages, statuses, suppression, inbound delivery)
is `bitmail.notices`' job, below the web layer; the web layer only wakes it.
Provider-only machinery (Mailgun's one-time tokens and 406, the SNS client
and subscriptions, Mandrill's HEAD) lives in that provider's module.

(About 500 lines: besides the flow, the small readers every provider module
uses — body caps and forms, field checks, timestamps, freshness,
event keys — are here so that none of them is written twice.)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, hdrs, web
from multidict import CIMultiDictProxy, MultiDict, MultiDictProxy

from ... import jsonlimits, notices, tokens
from ...config import ProviderSettings
from ...errors import BitMailError, NotFound, TooLarge, ValidationError
from ...events import EventType
from ...notices import Inbound, Item
from ...runtime import Runtime
from ...store import AlreadyExists, Batch, Kind, Store
from ..keys import RUNTIME

EVENTS_MAX_BODY = 1024 * 1024
INBOUND_MAX_BODY = 30 * 1024 * 1024
# How far a signed timestamp may run ahead of our clock (clock skew).
SKEW = 5 * 60.0
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# At most this many fields in an urlencoded form (aiohttp's own default).
MAX_FORM_FIELDS = 1000


# -- errors -------------------------------------------------------------------


class BadSignature(BitMailError):
    """The request does not prove it comes from the provider (forged, stale, replayed)."""

    status = 403
    code = "bad_signature"


class Unavailable(BitMailError):
    """The request cannot be handled right now (the SNS certificate could not be
    fetched, a subscription could not be confirmed): a 5xx, so the provider
    tries again later."""

    status = 503
    code = "unavailable"


# -- what a request becomes -------------------------------------------------


@dataclass(frozen=True, slots=True)
class FormFile:
    """A file field of a multipart form (an attachment of inbound mail).

    `filename` is the name as the sender wrote it, backslashes included (a
    Windows path stays a path: see message.filenames)."""

    name: str
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class Incoming:
    """A webhook request, read under its cap: a body, or a form.

    A form field is text, decoded with the charset its part (or the form)
    declares, what is not valid in it replaced by U+FFFD: it is the
    provider's metadata. A field of the endpoint's `mime_fields` carries a
    received message instead, whose bytes are kept exactly — no accepted
    message is changed: it is decoded as UTF-8 with each byte that is not
    part of UTF-8 as a lone surrogate (PEP 383), whatever charset is
    declared, so `value.encode("utf-8", "surrogateescape")` gives back the
    very bytes sent (8-bit ISO-8859-1 mail included).
    """

    headers: CIMultiDictProxy[str]
    content_type: str
    body: bytes = b""
    form: MultiDictProxy[str] | None = None
    files: tuple[FormFile, ...] = ()

    def require_form(self, expected: str) -> MultiDictProxy[str]:
        """The form; a 415-style ValidationError saying what to send when the
        body was not one (`expected`: "the form Mailgun's forward() posts")."""
        if self.form is None:
            raise ValidationError(f"send {expected}", code="unsupported_media_type")
        return self.form


@dataclass(frozen=True, slots=True)
class Record:
    """One verified event, as it came: `key` is unique per provider event."""

    key: str
    payload: Any


@dataclass(frozen=True, slots=True)
class Verified:
    """What validate_request proved: which provider signed, and what it sent."""

    provider: ProviderSettings
    records: tuple[Record, ...]
    #: A one-time value the provider module spends (Mailgun: the signed timestamp + token).
    once: str | None = None


# -- small helpers shared by the provider modules ---------------------------


def event_key(provider: str, event_id: str) -> str:
    """The notice id for a provider's event id (hashed when unwieldy)."""
    if len(event_id) > 200 or not event_id.isprintable():
        event_id = "sha256:" + hashlib.sha256(tokens.as_bytes(event_id)).hexdigest()
    return f"{provider}:{event_id}"


def content_key(value: Any) -> str:
    """An event id for events the provider gives none: a hash of their content."""
    return "sha256:" + hashlib.sha256(
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def parse_json(data: bytes | str, field: str | None = None) -> Any:
    """JSON, or a 400 naming the field."""
    try:
        return jsonlimits.loads(data, text_only=True)
    except (ValueError, UnicodeDecodeError) as exc:
        where = f"{field} is" if field else "the body is"
        raise ValidationError(f"{where} not valid JSON: {exc}", field=field,
                              code="bad_json") from None


def need(obj: Any, key: str, kind: type | tuple[type, ...], field: str) -> Any:
    """obj[key] of the given type, or a 400 naming the field."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        raise ValidationError("is missing", field=field)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValidationError("has the wrong type", field=field)
    return value


def optional(obj: Any, key: str, kind: type | tuple[type, ...], field: str) -> Any:
    """obj[key] of the given type, None when absent, or a 400 naming the field."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ValidationError("has the wrong type", field=field)
    return value


def timestamp(value: Any) -> float | None:
    """A provider's event time in seconds, when it gives a usable one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
            return number if math.isfinite(number) else None
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def check_fresh(signed_at: float | str, field: str, *, max_age: float,
                max_ahead: float = SKEW, now: float | None = None) -> None:
    """Refuse a signed time (seconds, or a number as text) more than `max_age`
    seconds ago or `max_ahead` ahead: 403 stale_timestamp; NaN, infinities and
    text that is no number: 400."""
    try:
        at = float(signed_at)
    except (TypeError, ValueError):
        raise ValidationError("is not a number of seconds", field=field) from None
    if not math.isfinite(at):
        raise ValidationError("is not a finite number of seconds", field=field)
    age = (time.time() if now is None else now) - at
    if age > max_age:
        raise BadSignature(f"the signature is {age:.0f}s old; at most {max_age:.0f}s is "
                           "accepted", field=field, code="stale_timestamp")
    if age < -max_ahead:
        raise BadSignature("the signature's timestamp is in the future", field=field,
                           code="stale_timestamp")


# -- reading ------------------------------------------------------------------

# The filename parameter as written, before any unquoting: a quoted string
# (whose backslashes are usually a Windows path, not quoted-pairs) or a token.
_RAW_FILENAME = re.compile(r'(?:^|;)\s*filename\s*=\s*("((?:[^"\\]|\\.)*)"|[^;]*)',
                           re.IGNORECASE)


def raw_filename(disposition: str) -> str | None:
    """The filename of a Content-Disposition as the sender wrote it.

    Browsers and mail services put a Windows path in a quoted filename without
    escaping its backslashes (`filename="\\share\\forwarded.msg"`); reading
    them as RFC 7230 quoted-pairs, as a generic parser does, turns the path
    into one run-together name. Only `\\"` and `\\\\` are read as escapes.
    """
    match = _RAW_FILENAME.search(disposition)
    if match is None:
        return None
    if match.group(2) is not None:
        return re.sub(r'\\(["\\])', r"\1", match.group(2))
    return match.group(1).strip()


async def read_incoming(request: web.Request, cap: int,
                        mime_fields: frozenset[str] = frozenset()) -> Incoming:
    """The body or form, refusing more than `cap` bytes with a precise 413;
    the fields named in `mime_fields` keep their exact bytes (see Incoming)."""
    too_large = TooLarge(f"a webhook body may be at most {cap} bytes")
    if request.content_length is not None and request.content_length > cap:
        raise too_large
    # A clone with its own size limit: aiohttp then enforces the cap while it
    # reads plain bodies and urlencoded forms, without buffering more.
    capped = request.clone(client_max_size=cap)
    try:
        if capped.content_type == "multipart/form-data":
            fields, files = await _read_multipart(capped, cap, too_large, mime_fields)
            return Incoming(request.headers, capped.content_type,
                            form=MultiDictProxy(fields), files=tuple(files))
        if capped.content_type in FORM_TYPES:
            form = await _read_urlencoded(capped, mime_fields)
            return Incoming(request.headers, capped.content_type, form=MultiDictProxy(form))
        return Incoming(request.headers, capped.content_type, body=await capped.read())
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    except (ValueError, UnicodeDecodeError, AssertionError, web.HTTPBadRequest) as exc:
        raise ValidationError(f"the form cannot be read: {exc}", code="bad_form") from None


def field_value(name: str, data: bytes, charset: str, mime_fields: frozenset[str]) -> str:
    """A form field's value as Incoming describes it: a message's exact bytes
    (surrogateescape) for a field in `mime_fields`, else text in `charset`."""
    if name in mime_fields:
        # Not the declared charset: a message is bytes, and its own headers
        # say how to read them (Content-Type's charset and
        # Content-Transfer-Encoding: RFC 2045 §5 and §6).
        return data.decode("utf-8", "surrogateescape")
    return _text(data, charset, name)


def _text(data: bytes, charset: str, field: str | None) -> str:
    try:
        return data.decode(charset, "replace")
    except LookupError:
        # An unknown charset (or a codec that is no text encoding) is the
        # sender's fault: a 400, not the 500 an escaped LookupError would be.
        raise ValidationError(f"the form declares the unknown charset {charset!r}",
                              field=field, code="bad_form") from None


async def _read_urlencoded(request: web.Request, mime_fields: frozenset[str]) -> MultiDict[str]:
    """An application/x-www-form-urlencoded form (WHATWG URL Standard §5.1,
    "application/x-www-form-urlencoded parsing"): percent-decoded to bytes,
    then each value as field_value says. aiohttp's post() decodes every value
    with errors="replace", which would change a message's 8-bit bytes."""
    data = await request.read()  # under the clone's client_max_size
    charset = request.charset or "utf-8"
    # Latin-1 maps each byte to one character and back, so parse_qsl's
    # splitting, "+" and %XX decoding work on the bytes themselves.
    pairs = parse_qsl(data.rstrip().decode("latin-1"), keep_blank_values=True,
                      encoding="latin-1", max_num_fields=MAX_FORM_FIELDS)
    form: MultiDict[str] = MultiDict()
    for raw_name, raw_value in pairs:
        name = _text(raw_name.encode("latin-1"), charset, None)
        form.add(name, field_value(name, raw_value.encode("latin-1"), charset, mime_fields))
    return form


async def _read_multipart(request: web.Request, cap: int, too_large: TooLarge,
                          mime_fields: frozenset[str]) -> tuple[MultiDict[str], list[FormFile]]:
    """A multipart form's fields and files, counting bytes against `cap` as
    they are read (aiohttp's own limit covers only request.post())."""
    reader = await request.multipart()
    fields: MultiDict[str] = MultiDict()
    files: list[FormFile] = []
    total = 0
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or part.name is None:
            raise ValidationError("a form part has no name", code="bad_form")
        if part.headers.get(hdrs.CONTENT_ENCODING, "identity").lower() != "identity":
            # Decompressing would escape the cap; no provider compresses parts.
            raise ValidationError("a form part is compressed", code="bad_form")
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            total += len(chunk)
            if total > cap:
                raise too_large
            data += chunk
        decoded = part.decode(bytes(data))
        disposition = part.headers.get(hdrs.CONTENT_DISPOSITION, "")
        filename = raw_filename(disposition)
        if filename is None and part.filename is not None:
            filename = part.filename  # only filename*= (RFC 2231): aiohttp decodes it
        if filename is not None:
            files.append(FormFile(part.name, filename,
                                  part.headers.get(hdrs.CONTENT_TYPE,
                                                   "application/octet-stream"), decoded))
        else:
            fields.add(part.name, field_value(part.name, decoded, part.get_charset("utf-8"),
                                              mime_fields))
    return fields, files


# -- the flow -----------------------------------------------------------------


class Webhook(ABC):
    """One webhook endpoint: the shared flow around a provider's three steps."""

    #: The provider type whose configured providers may sign these requests.
    type: ClassVar[str]
    #: Names this endpoint; `/hooks/{name}` is its path.
    name: ClassVar[str]
    #: The webhook settings a provider needs to be a candidate signer.
    secrets: ClassVar[tuple[str, ...]]
    max_body: ClassVar[int] = EVENTS_MAX_BODY
    #: Form fields that carry a received message: read as its exact bytes (see Incoming).
    mime_fields: ClassVar[frozenset[str]] = frozenset()
    #: The provider's event names → BitMail's; names not listed are kept, not applied.
    event_types: ClassVar[dict[str, EventType]] = {}

    @property
    def path(self) -> str:
        return f"/hooks/{self.name}"

    # -- what a provider module fills in --

    @abstractmethod
    async def validate_request(self, app: web.Application, incoming: Incoming,
                               providers: Sequence[ProviderSettings]) -> Verified:
        """The provider that signed the request and its events; BadSignature or
        ValidationError when it cannot be trusted or read."""

    @abstractmethod
    def parse_events(self, payload: Any) -> list[Any]:
        """One payload as normalized items; ValidationError if malformed. An
        item that needs I/O to become one (mail stored at the provider) may
        stand in until `admit` replaces it."""

    async def admit(self, app: web.Application, verified: Verified,
                    items: dict[str, list[Any]]) -> None:
        """Refuse, before anything is stored, what the provider must be told
        about now (Mailgun inbound for nobody here: 406), or do what must be
        done before the answer (confirm an SNS subscription, fetch stored
        mail and put the Inbound in its place in `items`)."""

    def spend(self, batch: Batch, verified: Verified) -> None:
        """Add to `batch` what makes this request's one-time values used up
        (Mailgun's signed timestamp + token); committed with the notices, or
        alone when the request is refused after it was verified."""

    def kept(self, payload: Any, items: list[Item]) -> Any:
        """What of a payload to keep beside its items (all of it by default)."""
        return payload

    def setup(self, app: web.Application) -> None:
        """Add what only this provider needs to the application (routes,
        clients, cleanup contexts); called once per endpoint."""

    # -- the request --

    def providers(self, runtime: Runtime, name: str | None) -> list[ProviderSettings]:
        """Every configured provider of this type with webhook secrets (or the named one)."""
        found = [p for p in runtime.settings.mta.providers
                 if p.type == self.type and all(p.webhook.get(k) for k in self.secrets)
                 and (name is None or p.name == name)]
        if not found:
            which = f"{self.type} provider {name!r}" if name else f"{self.type} provider"
            raise NotFound(f"no {which} is configured with {' and '.join(self.secrets)}",
                           code="no_provider")
        return found

    async def handle(self, request: web.Request) -> web.Response:
        """The route handler: read, verify, record, answer."""
        app = request.app
        runtime = app[RUNTIME]
        providers = self.providers(runtime, request.match_info.get("provider"))
        cap = min(self.max_body, runtime.settings.web.max_body)
        incoming = await read_incoming(request, cap, self.mime_fields)
        verified = await self.validate_request(app, incoming, providers)
        try:
            items = {r.key: self.parse_events(r.payload) for r in verified.records}
            await self.admit(app, verified, items)
        except BitMailError:
            await self._spend_alone(runtime, verified)
            raise
        fresh = await self._record(runtime, verified, items)
        if fresh and runtime.notices is not None:
            runtime.notices.wake()
        status = "duplicate" if verified.records and not fresh else "accepted"
        return web.json_response({"status": status, "events": len(fresh)})

    async def _record(self, runtime: Runtime, verified: Verified,
                      items: dict[str, list[Item]]) -> list[str]:
        """Store the events not seen before as notices, with what spends the
        request's one-time values, in one commit; the keys of those stored.

        Notices are added (insert only), not put: two overlapping copies of
        one event (a provider's retry crossing its first try, SNS's
        at-least-once delivery) may both find it unrecorded, but only the
        first commits it. The other is answered as a duplicate for that event
        — it neither records it twice nor resets a notice already applied.
        """
        store = runtime.store
        records = list({r.key: r for r in verified.records}.values())
        fresh = await _unrecorded(store, records)
        while True:
            batch = self._notices(verified, fresh, items)
            if not batch.ops:
                return []
            try:
                await store.commit(batch)
                return [r.key for r in fresh]
            except AlreadyExists:
                # Which add failed: a notice another copy recorded meanwhile,
                # or the one-time value (spent before, or by that same copy).
                left = await _unrecorded(store, fresh)
            if len(left) < len(fresh):
                fresh = left  # some were recorded meanwhile: the rest, again
                continue
            if fresh:
                raise replayed()
            # The provider retried an event already stored (its earlier
            # answer was lost), with the same one-time value: 200 again.
            return []

    def _notices(self, verified: Verified, fresh: list[Record],
                 items: dict[str, list[Item]]) -> Batch:
        """One batch: what spends the request, and a notice for each fresh record."""
        batch = Batch()
        self.spend(batch, verified)
        now = time.time()
        for r in fresh:
            notices.record(batch, r.key, provider=verified.provider.name, source=self.name,
                           payload=self.kept(r.payload, items[r.key]), items=items[r.key],
                           now=now)
        return batch

    async def _spend_alone(self, runtime: Runtime, verified: Verified) -> None:
        batch = Batch()
        self.spend(batch, verified)
        if batch.ops:
            try:
                await runtime.store.commit(batch)
            except AlreadyExists:
                pass  # spent before; the request is refused either way


async def _unrecorded(store: Store, records: list[Record]) -> list[Record]:
    """The records with no notice yet, in order (one lookup by id)."""
    if not records:
        return []
    known = await store.get_by_ids(Kind.NOTICE, [r.key for r in records])
    return [r for r in records if r.key not in known]


def replayed() -> BadSignature:
    return BadSignature("this signature was used before (a replay)",
                        field="token", code="replayed")


def has_inbound(items: list[Item]) -> bool:
    return any(isinstance(i, Inbound) for i in items)
