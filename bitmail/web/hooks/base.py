"""The shared webhook flow: cap, verify, record, answer — then process.

A provider module fills in what differs, in the three small steps of
django-anymail's webhooks:

- `validate_request`: find the configured provider whose secret signed the
  request (constant-time comparison) or refuse it with a precise 4xx;
- `parse_events`: one recorded payload → normalized `Notice`s (delivery
  events) and `Inbound` mail, raising ValidationError when it is malformed;
- `event_types`: a plain dict from the provider's event names to EventType.

The base owns the order, which is what makes webhooks safe to retry:

1. read the body under a cap (1 MB for events, 30 MB where mail comes in): 413;
2. validate: 403 (signature, stale, replay), 400 (malformed), 404 (no provider);
3. parse every event once, so a malformed one is refused before anything is
   stored; a forged or malformed request changes nothing;
4. record, in one commit: each verified event as a "webhook" document whose id
   is the provider's event id (so the same event twice is recognised), a
   "webhook_pending" marker beside it, and the one-time token, if any;
5. answer 200 — quickly, whatever the processing will find;
6. process in a background task that the application awaits when it stops:
   take the marker on a lease (exactly one task holds it, in any process),
   match the event to a message, record it on the Sent copy (statuses only
   move forward; the sender sees it live), suppress hard-bounced and
   complaining addresses, count bounces and complaints in the provider's
   figures, or deliver inbound mail, then drop the marker. Markers left by a
   process that stopped before or during 6 are taken up when their lease
   runs out, by any process.

Events for messages BitMail cannot find are kept (the "webhook" document) and
logged, never an error: the provider has done nothing wrong.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web
from multidict import CIMultiDictProxy, MultiDict, MultiDictProxy

from ... import jsonlimits
from ...config import ProviderSettings
from ...errors import BitMailError, NotFound, TooLarge, ValidationError
from ...events import Event, EventType
from ...message import parse_mime
from ...metrics import WEBHOOK_EVENTS
from ...runtime import Runtime
from ...store import AlreadyExists, Batch, Store, StoreError
from ...store.base import new_id
from ...suppression import suppress
from ..keys import RUNTIME

log = logging.getLogger(__name__)

KIND = "webhook"  # every verified event, as received
PENDING = "webhook_pending"  # events recorded but not yet processed, leased when taken
MARKER_LEASE = 60.0  # a task that took an event and died gives it back after this
TOKENS = "webhook_token"  # one-time tokens already used (Mailgun), to refuse replays

EVENTS_MAX_BODY = 1024 * 1024
INBOUND_MAX_BODY = 30 * 1024 * 1024
FRESHNESS = 5 * 60.0  # a signed timestamp older (or further ahead) than this is refused
TOKEN_TTL = 2 * FRESHNESS  # a token older than this would be refused as stale anyway
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

# Events that take an address off the list of those BitMail sends to.
SUPPRESSING: dict[EventType, str] = {
    EventType.BOUNCED: "bounced",
    EventType.COMPLAINED: "complained",
}


# -- errors -------------------------------------------------------------------


class BadSignature(BitMailError):
    """The request does not prove it comes from the provider (forged, stale, replayed)."""

    status = 403
    code = "bad_signature"


class NotAcceptable(BitMailError):
    """Mail for nobody here: Mailgun takes a 406 as "do not retry"."""

    status = 406
    code = "unknown_recipient"


class Unavailable(BitMailError):
    """The request cannot be checked right now (the SNS certificate could not be
    fetched): a 5xx, so the provider tries again later."""

    status = 503
    code = "unavailable"


# -- what a request and its events become -------------------------------------


@dataclass(frozen=True, slots=True)
class FormFile:
    """A file field of a multipart form (an attachment of inbound mail)."""

    name: str
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class Incoming:
    """A webhook request, read under its cap: a body, or a form."""

    headers: CIMultiDictProxy[str]
    content_type: str
    body: bytes = b""
    form: MultiDictProxy[str] | None = None
    files: tuple[FormFile, ...] = ()


@dataclass(frozen=True, slots=True)
class Record:
    """One verified event, stored as it came: `key` is the provider's event id."""

    key: str
    payload: Any


@dataclass(frozen=True, slots=True)
class Verified:
    """What validate_request proved: which provider signed, and what it sent."""

    provider: ProviderSettings
    records: tuple[Record, ...]
    token: str | None = None  # a one-time value to remember, so a replay is refused


@dataclass(frozen=True, slots=True)
class Notice:
    """A delivery event in BitMail's terms, before it is matched to a message.

    It is matched by the provider's id (as the container tracked it), else by
    BitMail's own id (when the provider echoes metadata), else by the RFC 5322
    Message-ID.
    """

    type: EventType
    recipient: str | None = None
    detail: str = ""
    at: float | None = None
    provider_message_id: str | None = None
    message: str | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    """Received mail for addresses at our domain: MIME, or content already in
    parse_mime's shape (Mailgun's parsed form)."""

    recipients: tuple[str, ...]
    mime: bytes | None = None
    content: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    """An event that is kept but changes nothing (an event type BitMail does not
    track, a notice without content); the reason is logged."""

    reason: str


# -- small helpers shared by the provider modules ---------------------------


def event_key(provider: str, event_id: str) -> str:
    """The "webhook" document id for a provider's event id (hashed when unwieldy)."""
    if len(event_id) > 200 or not event_id.isprintable():
        event_id = "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()
    return f"{provider}:{event_id}"


def content_key(value: Any) -> str:
    """An event id for events the provider gives none: a hash of their content."""
    return "sha256:" + hashlib.sha256(
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def parse_json(data: bytes | str, field: str | None = None) -> Any:
    """JSON, or a 400 naming the field."""
    try:
        return jsonlimits.loads(data)
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
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        from datetime import datetime

        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def bracketed(message_id: str) -> str:
    """A Message-ID as BitMail stores it: `<id@domain>`."""
    mid = message_id.strip()
    return mid if mid.startswith("<") else f"<{mid}>"


def check_fresh(signed_at: str, field: str) -> None:
    """Refuse a signed timestamp from more than FRESHNESS ago (or ahead)."""
    try:
        at = float(signed_at)
    except ValueError:
        raise ValidationError("is not a number of seconds", field=field) from None
    age = time.time() - at
    if age > FRESHNESS:
        raise BadSignature(f"the signature is {age:.0f}s old; at most {FRESHNESS:.0f}s is "
                           "accepted", field=field, code="stale_timestamp")
    if age < -FRESHNESS:
        raise BadSignature("the signature's timestamp is in the future", field=field,
                           code="stale_timestamp")


# -- reading ------------------------------------------------------------------


async def read_incoming(request: web.Request, cap: int) -> Incoming:
    """The body or form, refusing more than `cap` bytes with a precise 413."""
    too_large = TooLarge(f"a webhook body may be at most {cap} bytes")
    if request.content_length is not None and request.content_length > cap:
        raise too_large
    # A clone with its own size limit: aiohttp then enforces the cap while it
    # reads, for plain bodies and multipart forms alike, without buffering more.
    capped = request.clone(client_max_size=cap)
    try:
        if capped.content_type not in FORM_TYPES:
            return Incoming(request.headers, capped.content_type, body=await capped.read())
        post = await capped.post()
        fields: MultiDict[str] = MultiDict()
        files = []
        for name, value in post.items():
            if isinstance(value, web.FileField):
                try:
                    data = await asyncio.to_thread(value.file.read)
                finally:
                    await asyncio.to_thread(value.file.close)
                files.append(FormFile(name, value.filename or "attachment",
                                      value.content_type or "application/octet-stream", data))
            elif isinstance(value, (bytes, bytearray)):
                fields.add(name, bytes(value).decode("utf-8", "replace"))
            else:
                fields.add(name, value)
        return Incoming(request.headers, capped.content_type, form=MultiDictProxy(fields),
                        files=tuple(files))
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    except (ValueError, UnicodeDecodeError, web.HTTPBadRequest) as exc:
        raise ValidationError(f"the form cannot be read: {exc}", code="bad_form") from None


# -- background work ----------------------------------------------------------


class Background:
    """Webhook processing tasks; the application awaits them when it stops."""

    def __init__(self, concurrency: int = 16) -> None:
        self._tasks: set[asyncio.Task] = set()
        # Bounded, so a burst of webhooks queues here instead of opening a
        # store commit per event all at once.
        self._limit = asyncio.Semaphore(concurrency)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "webhook") -> None:
        task = asyncio.create_task(self._run(coro), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _run(self, coro: Coroutine[Any, Any, Any]) -> None:
        async with self._limit:
            await coro

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception():
            log.error("webhook processing failed", exc_info=task.exception())

    async def idle(self) -> None:
        """Wait until every task spawned so far (and any they spawn) has ended."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self, grace: float = 30.0) -> None:
        try:
            async with asyncio.timeout(grace):
                await self.idle()
        except TimeoutError:
            # What is cancelled puts its marker back (see Webhook.process), so
            # the next start finishes it.
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


BACKGROUND = web.AppKey("webhook_background", Background)
HOOKS = web.AppKey("webhooks", dict)


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
    def parse_events(self, payload: Any) -> list[Notice | Inbound | Skip | Any]:
        """One recorded payload as normalized events; ValidationError if malformed."""

    async def admit(self, runtime: Runtime, verified: Verified, items: list[Any]) -> None:
        """Refuse, before anything is stored, what the provider must be told
        about now (Mailgun inbound for nobody here: 406)."""

    async def perform(self, app: web.Application, provider: str, item: Any) -> str:
        """Carry out a provider-specific item (an SNS subscription to confirm)."""
        raise TypeError(f"{type(self).__name__} cannot process {item!r}")

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
        """The route handler: cap, verify, record, answer; processing goes on after."""
        app = request.app
        runtime = app[RUNTIME]
        providers = self.providers(runtime, request.match_info.get("provider"))
        cap = min(self.max_body, runtime.settings.web.max_body)
        incoming = await read_incoming(request, cap)
        verified = await self.validate_request(app, incoming, providers)
        # Parsed now only to refuse what is malformed before anything is
        # stored; the processing parses the stored payload again.
        items = [item for r in verified.records for item in self.parse_events(r.payload)]
        await self.admit(runtime, verified, items)
        fresh = await self._record(runtime, verified)
        for key in fresh:
            app[BACKGROUND].spawn(self.process(app, key), name=f"webhook {key}")
        status = "duplicate" if verified.records and not fresh else "accepted"
        return web.json_response({"status": status, "events": len(fresh)})

    async def _record(self, runtime: Runtime, verified: Verified) -> list[str]:
        """Store the events not seen before, with their markers and the token, in
        one commit; the keys of those stored."""
        store = runtime.store
        records = list({r.key: r for r in verified.records}.values())
        known = await asyncio.gather(*(store.get_one(KIND, {"id": r.key}) for r in records))
        fresh = [r for r, doc in zip(records, known, strict=True) if doc is None]
        if not fresh:
            # The provider retried something already stored (its earlier answer
            # was lost): 200 again, and nothing changes.
            return []
        now = time.time()
        batch = Batch()
        if verified.token:
            token_id = f"{self.type}:{verified.token}"
            # Added, not put: of two requests with one token, even in two
            # processes at the same moment, only the first commits.
            batch.add(TOKENS, {"at": now, "provider": verified.provider.name}, id=token_id)
        for r in fresh:
            batch.put(KIND, {"provider": verified.provider.name, "type": self.type,
                             "hook": self.name, "received": now, "payload": r.payload,
                             "state": "pending"}, id=r.key)
            batch.put(PENDING, {"hook": self.name, "due": now}, id=r.key)
        try:
            await store.commit(batch)
        except AlreadyExists:
            raise _replayed() from None
        return [r.key for r in fresh]

    # -- processing (in the background) --

    async def process(self, app: web.Application, key: str) -> None:
        """Apply one recorded event, once, whichever process gets to it first."""
        runtime = app[RUNTIME]
        store = runtime.store
        if not await _claim_marker(store, key):
            return  # gone, or another task or process holds it
        applied = False
        try:
            doc = await store.get_one(KIND, {"id": key})
            if doc is None:
                return
            provider = doc["provider"]
            try:
                items = self.parse_events(doc["payload"])
            except ValidationError as exc:  # validated when received; kept, not retried
                log.warning("webhook %s from %s cannot be read: %s", key, provider, exc)
                items = [Skip(f"unreadable: {exc}")]
            results = []
            notices = [i for i in items if isinstance(i, Notice)]
            if notices:
                results.append(await self._track(runtime, provider, notices))
            for item in items:
                if isinstance(item, Inbound):
                    results.append(await self._receive(runtime, provider, key, item))
                elif isinstance(item, Skip):
                    log.info("webhook %s from %s: %s", key, provider, item.reason)
                    results.append(item.reason)
                elif not isinstance(item, Notice):
                    results.append(await self.perform(app, provider, item))
            applied = True
            _count(provider, items)
            batch = Batch()
            batch.update(KIND, key, {"state": "done",
                                     "result": "; ".join(results) or "nothing to do"})
            batch.delete(PENDING, key)
            await store.commit(batch)
        except BaseException:
            if not applied:
                # Due again at once; a process that dies here leaves its
                # lease, which runs out by itself.
                await store.update(PENDING, key, {"due": time.time()})
            raise

    async def _track(self, runtime: Runtime, provider: str, notices: list[Notice]) -> str:
        """Record delivery events on their messages; suppress and count."""
        others = [p.name for p in runtime.settings.mta.providers
                  if p.type == self.type and p.name != provider]
        matched: dict[tuple, str | None] = {}
        by_message: dict[str | None, list[Event]] = {}
        batch = Batch()
        for n in notices:
            ident = (n.provider_message_id, n.message, n.message_id)
            if ident not in matched:
                matched[ident] = await self.match(runtime, [provider, *others], n)
            message = matched[ident]
            recipient = n.recipient.strip().lower() if n.recipient else None
            by_message.setdefault(message, []).append(Event(
                n.type, message, recipient, provider, detail=n.detail[:1000],
                at=n.at or time.time()))
            if n.type in SUPPRESSING and recipient:
                suppress(batch, recipient, reason=SUPPRESSING[n.type], provider=provider,
                         detail=n.detail, message=message)
        results = []
        for message, events in by_message.items():
            if message is None:
                ids = {n.provider_message_id or n.message_id or "no id" for n in notices}
                log.info("webhook from %s: %s for a message BitMail does not know (%s); kept",
                         provider, ", ".join(str(e.type) for e in events), ", ".join(ids))
                results.append("no such message")
                continue
            runtime.mailbox.record(batch, message, events)
            log.info("message %s: %s from %s", message,
                     ", ".join(f"{e.type} {e.recipient or ''}".strip() for e in events), provider,
                     extra={"message_doc_id": message, "provider": provider})
            results.append(f"recorded on {message}")
        if batch.ops:
            await runtime.store.commit(batch)
        slot = runtime.container.slots.get(provider) if runtime.container else None
        if slot is not None:
            for n in notices:
                slot.figures.events[str(n.type)] += 1
        return "; ".join(results)

    async def match(self, runtime: Runtime, providers: list[str], n: Notice) -> str | None:
        """BitMail's message id for a notice, or None when it is not ours."""
        if n.provider_message_id:
            for name in providers:
                found = await runtime.mailbox.find_tracked(name, n.provider_message_id)
                if found:
                    return found
        if n.message:
            doc = await runtime.store.get_one("message", {"id": n.message})
            if doc is not None and doc.get("folder") == "sent":
                return n.message
        if n.message_id:
            return await runtime.mailbox.find_by_message_id(bracketed(n.message_id))
        return None

    async def _receive(self, runtime: Runtime, provider: str, key: str,
                       inbound: Inbound) -> str:
        """Deliver received mail to each recipient who is a user here."""
        users = await runtime.mailbox.local_users(inbound.recipients)
        if not users:
            log.info("webhook %s from %s: mail for %s, nobody here; kept", key, provider,
                     ", ".join(inbound.recipients) or "no recipient")
            return "no user here"
        if inbound.content is not None:
            content = inbound.content
        elif inbound.mime is not None:
            # A large MIME takes a while to parse: not on the event loop.
            content = await asyncio.to_thread(parse_mime, inbound.mime)
        else:
            return "no content"
        for name in users:
            doc_id = await runtime.mailbox.deliver(name, content, source=provider)
            log.info("inbound mail via %s delivered to %s (message %s)", provider, name, doc_id,
                     extra={"message_doc_id": doc_id, "provider": provider})
        return "delivered to " + ", ".join(users)


def _count(provider: str, items: list[Any]) -> None:
    """Webhook events applied, by provider and type ("inbound" for mail)."""
    for item in items:
        if isinstance(item, Notice):
            WEBHOOK_EVENTS.labels(provider, str(item.type)).inc()
        elif isinstance(item, Inbound):
            WEBHOOK_EVENTS.labels(provider, "inbound").inc()


def _replayed() -> BadSignature:
    return BadSignature("this signature's token was used before (a replay)",
                        field="token", code="replayed")


# -- lifecycle ----------------------------------------------------------------


async def _claim_marker(store: Store, key: str) -> bool:
    """Take the event's marker on a lease: True when this task holds it now."""
    owner, now = new_id(), time.time()

    def take(marker: dict[str, Any]) -> dict[str, Any] | None:
        if marker.get("due", 0) > now:
            return None  # held by another task, and its lease still runs
        return {**marker, "due": now + MARKER_LEASE, "owner": owner}

    marker = await store.update(PENDING, key, take)
    return marker is not None and marker.get("owner") == owner


async def resume_pending(app: web.Application, every: float = MARKER_LEASE) -> None:
    """Process events left pending: at start, those of a process that stopped
    before processing them; then, now and again, those whose processing died
    with its process and whose lease ran out."""
    while True:
        await _resume_once(app)
        await asyncio.sleep(every)


async def _resume_once(app: web.Application) -> None:
    runtime = app[RUNTIME]
    hooks = app[HOOKS]
    due = [d for d in await runtime.store.get(PENDING) if d.get("due", 0) <= time.time()]
    for doc in due:
        hook = hooks.get(doc.get("hook"))
        if hook is None:
            log.warning("pending webhook %s is for an unknown endpoint %r", doc["id"],
                        doc.get("hook"))
            continue
        app[BACKGROUND].spawn(hook.process(app, doc["id"]), name=f"webhook {doc['id']}")


async def forget_tokens(app: web.Application, every: float = 60.0) -> None:
    """Drop one-time tokens once their timestamps would be refused as stale anyway."""
    store = app[RUNTIME].store
    while True:
        await asyncio.sleep(every)
        try:
            cutoff = time.time() - TOKEN_TTL
            old = [d["id"] for d in await store.get(TOKENS) if d.get("at", 0) < cutoff]
            if old:
                batch = Batch()
                for token_id in old:
                    batch.delete(TOKENS, token_id)
                await store.commit(batch)
        except StoreError as exc:
            log.warning("could not forget old webhook tokens: %s", exc)


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: resume what was left pending; at the end, let processing finish."""
    background = app[BACKGROUND]
    sweepers = [asyncio.create_task(resume_pending(app), name="webhook resume"),
                asyncio.create_task(forget_tokens(app), name="webhook tokens")]
    yield
    for sweeper in sweepers:
        sweeper.cancel()
    await asyncio.gather(*sweepers, return_exceptions=True)
    await background.stop()
