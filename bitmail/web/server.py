"""What the HTTP server answers before any route runs.

aiohttp's parser refuses a request it cannot read (a request or header line
over 8,190 bytes, a malformed Content-Length, broken chunked framing, bytes
that are not HTTP) in `RequestHandler.handle_error`, before any middleware:
as text/plain that echoes the input, and logged at ERROR with the offending
bytes, which for a chunked login are its password and for a long Cookie
line the session token. Here such a refusal is the one JSON error shape,
and the log names the kind of error, never the bytes.

aiohttp has no public hook for this: `Runner` swaps the class of the server
its `AppRunner` makes, so that each connection gets `_Handler`. The tests
that send such requests to a serve process fail if aiohttp changes that.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .middlewares import error_json

log = logging.getLogger(__name__)


class _Handler(RequestHandler):
    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)  # a bug: traceback
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was sent already; the connection is closed")
        log.warning("refused a request that is not HTTP/1.1 it can read from %s: %s (%s)",
                    request.remote, status, type(exc).__name__ if exc else "no details")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Bad Request"
        response = error_json(status, "bad_http", f"{phrase}: the request "
                              "is not HTTP/1.1 that this server can read (RFC 9112); "
                              "a request or header line is at most 8190 bytes")
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """`web.AppRunner` whose connections answer unreadable requests in JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        return server
