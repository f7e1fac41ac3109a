"""Fault injection shared by the loopback fakes of provider APIs.

A fake is an aiohttp app on 127.0.0.1 that speaks one provider's documented
HTTP API. Tests tell it to misbehave for the next N requests or until healed:
answer with an HTTP status, never answer ("timeout"), close the connection
without an answer ("drop"), answer late ("slow") or answer 200 with a body
that is not JSON ("bad_json"). Each fake renders status faults in its own
provider's error format; everything else is handled here once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from types import TracebackType
from typing import Any, Self

from aiohttp import web

__all__ = ["GENERIC_FAULTS", "Answer", "FakeService", "Fault", "FaultKind", "Faults",
           "Received"]


@dataclass(frozen=True, slots=True)
class Answer:
    """A canned answer, given as it is: a provider's documented error body
    (`fake.fail_always(Answer(400, '{"message": "..."}'))`)."""

    status: int
    body: str
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


# A status code (500, 502, 503, 429, 401, 400, ...), one of GENERIC_FAULTS, a
# name a particular fake understands (Mandrill's error names, for example),
# or a canned Answer.
FaultKind = int | str | Answer
GENERIC_FAULTS = frozenset({"timeout", "drop", "slow", "bad_json"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected misbehaviour.

    `after_accept` makes "timeout" and "drop" happen after the fake has taken
    (and recorded) the mail: the answer is lost, not the message — the case
    that makes a real provider's timeout ambiguous.
    """

    kind: FaultKind
    after_accept: bool = False


@dataclass(frozen=True, slots=True)
class Received:
    """One message a fake accepted, as the provider would have sent it on."""

    endpoint: str  # which API call brought it ("messages.mime", "send-raw", ...)
    recipients: tuple[str, ...]  # the envelope: every address it goes to, bcc included
    mime: bytes
    id: str  # the id the fake answered with
    fields: dict[str, Any] = field(default_factory=dict)  # form fields or JSON body

    @property
    def email(self) -> EmailMessage:
        """The MIME, parsed."""
        parsed = BytesParser(policy=policy.default).parsebytes(self.mime)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def message_id(self) -> str:
        return str(self.email.get("Message-ID", ""))


class Faults:
    """What to do wrong next: a queue of one-off faults, then a standing one."""

    def __init__(self) -> None:
        self._next: deque[Fault] = deque()
        self._always: Fault | None = None

    def fail_next(self, n: int, kind: FaultKind, *, after_accept: bool = False) -> None:
        self._next.extend([Fault(kind, after_accept)] * n)

    def fail_always(self, kind: FaultKind, *, after_accept: bool = False) -> None:
        self._always = Fault(kind, after_accept)

    def heal(self) -> None:
        self._next.clear()
        self._always = None

    def take(self) -> Fault | None:
        """The fault for the request being handled now, if any (consumes one-offs)."""
        if self._next:
            return self._next.popleft()
        return self._always


class FakeService:
    """Base of the loopback fakes: lifecycle, latency and fault handling.

    Subclasses build routes in `routes()`, wrap each handler with `guarded`,
    and render status faults in their provider's format in `error_response`.
    Use as `async with Fake(...) as fake:`; `fake.url` is the base URL.
    """

    extra_faults: frozenset[str] = frozenset()

    def __init__(self, *, delay: float = 0.0, slow_delay: float = 1.0,
                 hang: float = 60.0) -> None:
        self.delay = delay  # latency added to every answer (after the work is done)
        self.slow_delay = slow_delay  # how late a "slow" answer comes (the work is done first)
        self.hang = hang  # how long a "timeout" waits at most (cut short by close())
        self.faults = Faults()
        self.rejected: set[str] = set()  # recipients whose requests are refused
        self.requests = 0  # every request that reached a guarded handler
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    # -- commands ---------------------------------------------------------------

    def fail_next(self, n: int, kind: FaultKind, *, after_accept: bool = False) -> None:
        """Misbehave in the way `kind` says for the next `n` requests."""
        self._check(kind)
        self.faults.fail_next(n, kind, after_accept=after_accept)

    def fail_always(self, kind: FaultKind, *, after_accept: bool = False) -> None:
        """Misbehave on every request (after the queued one-offs) until heal()."""
        self._check(kind)
        self.faults.fail_always(kind, after_accept=after_accept)

    def reject(self, address: str) -> None:
        """Refuse every request that names `address` as a recipient (until
        heal()), the way the provider refuses a bad address."""
        self.rejected.add(address.lower())

    def heal(self) -> None:
        """Forget every injected fault and rejected address."""
        self.faults.heal()
        self.rejected.clear()

    def _check(self, kind: FaultKind) -> None:
        if isinstance(kind, Answer):
            return
        if isinstance(kind, int) and not isinstance(kind, bool) and 400 <= kind <= 599:
            return
        if kind in GENERIC_FAULTS or kind in self.extra_faults:
            return
        raise ValueError(f"unknown fault {kind!r}")

    # -- lifecycle ----------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def error_response(self, status: int | str) -> web.StreamResponse:
        """A status (or named) fault in the provider's own error format."""
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on `host`, on a free port unless one is given; sets `url`."""
        self._closing.clear()
        # Mail with attachments is larger than aiohttp's 1 MiB default.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(self.routes())
        # A short shutdown: hung handlers are woken by close() anyway.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = self._runner.addresses
        bound_port = sockets[0][1]
        self.url = f"http://{host}:{bound_port}"

    async def close(self) -> None:
        self._closing.set()  # wake handlers hanging in a "timeout" fault
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- fault handling -------------------------------------------------------------

    def guarded(self, handler: Handler) -> Handler:
        """`handler` with the configured latency and the next injected fault applied."""

        async def guarded_handler(request: web.Request) -> web.StreamResponse:
            self.requests += 1
            fault = self.faults.take()
            if fault is None:
                answer = await handler(request)
            else:
                answer = await self._apply(fault, request, handler)
            # Latency after the work, as with a real API: a client that gives up
            # waiting does not know whether the mail was taken.
            if self.delay:
                await asyncio.sleep(self.delay)
            return answer

        return guarded_handler

    async def _apply(self, fault: Fault, request: web.Request,
                     handler: Handler) -> web.StreamResponse:
        kind = fault.kind
        if isinstance(kind, Answer):
            await request.read()
            return web.Response(status=kind.status, text=kind.body,
                                content_type=kind.content_type, headers=dict(kind.headers))
        if kind == "slow":
            answer = await handler(request)  # taken at once, answered late
            await asyncio.sleep(self.slow_delay)
            return answer
        if kind == "bad_json":
            # The provider took the mail; only its answer is garbled (a proxy's page).
            answer = await handler(request)
            if answer.status != 200:
                return answer
            return web.Response(status=200, text="<html><body>OK</body></html>",
                                content_type="text/html")
        if kind in ("timeout", "drop"):
            if fault.after_accept:
                await handler(request)
            else:
                # Read the whole request first, so the client has certainly sent it.
                await request.read()
            if kind == "timeout":
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.hang):
                        await self._closing.wait()
            return self._drop(request)
        return self.error_response(kind)

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        """Close the connection without a word; the client sees a disconnect."""
        transport = request.transport
        if transport is not None:
            transport.close()
        # aiohttp finds the transport closed and writes nothing.
        return web.Response(status=204)
