"""What the HTTP API providers (Mailgun, Mandrill) share: one aiohttp session,
timeouts, and turning transport failures into classified ProviderErrors.

The one question a transport failure must answer is whether the request may
have reached the provider: a connection that never opened is a plain
transient failure; a timeout or a disconnect after the request went out is an
ambiguous one (the mail may be on its way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from ..config import parse_duration
from .outcomes import Outcome, ProviderError, connection_failure
from .provider import Provider

__all__ = ["HTTPAnswer", "HTTPProvider"]


@dataclass(frozen=True, slots=True)
class HTTPAnswer:
    status: int
    body: bytes

    def text(self, limit: int = 300) -> str:
        """The body for an error detail, shortened: never a whole HTML page in a log."""
        text = self.body.decode("utf-8", "replace").strip()
        return text if len(text) <= limit else text[:limit] + "…"


class HTTPProvider(Provider):
    """A provider that talks to one HTTP API through an aiohttp session.

    Options: `timeout` (the whole request, default 30s) and `connect_timeout`
    (opening the connection, default the smaller of 10s and `timeout`), both
    numbers of seconds or strings like "500ms"; `session` to use a given
    ClientSession (tests) instead of one of its own.
    """

    def __init__(self, name: str, *, timeout: float | str = 30.0,
                 connect_timeout: float | str | None = None,
                 session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(name)
        total = parse_duration(timeout, f"{name}.timeout")
        connect = (min(10.0, total) if connect_timeout is None
                   else parse_duration(connect_timeout, f"{name}.connect_timeout"))
        self.timeout = aiohttp.ClientTimeout(total=total, sock_connect=connect)
        self._session = session
        self._own_session = session is None

    async def start(self) -> None:
        if self._session is None or (self._own_session and self._session.closed):
            self._session = aiohttp.ClientSession(timeout=self.timeout)
            self._own_session = True

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, **kwargs: Any) -> HTTPAnswer:
        """POST and read the whole answer, or raise a classified ProviderError."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        try:
            async with self._session.post(url, timeout=self.timeout, **kwargs) as resp:
                return HTTPAnswer(resp.status, await resp.read())
        except aiohttp.ConnectionTimeoutError:
            raise connection_failure("timed out connecting", sent=False) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            # A certificate that does not verify will not verify on a retry either.
            raise ProviderError(Outcome.PROVIDER_FAULT,
                                f"TLS certificate rejected: {exc.certificate_error}") from None
        except aiohttp.ClientConnectorError as exc:
            raise connection_failure(f"cannot connect: {exc.strerror or exc}", sent=False) from None
        except TimeoutError:
            raise connection_failure("timed out waiting for the answer", sent=True) from None
        except aiohttp.ClientError as exc:
            # Disconnected, reset or cut short after the request went out.
            raise connection_failure(f"connection lost: {type(exc).__name__}",
                                     sent=True) from None
