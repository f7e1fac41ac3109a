"""The account's own API keys (`/api/keys`), and the purge of expired
sessions and rate-limit counters.

Keys are managed from a logged-in page (session cookie and CSRF token) or the
command line, never with an API key: a leaked key must not be able to make
itself a successor that outlives its revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ..errors import Forbidden, ValidationError
from .keys import RUNTIME, session_of, user_of
from .middlewares import read_json

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
PURGE_EVERY = 600.0  # seconds


def _from_page(request: web.Request) -> str:
    if session_of(request) is None:
        raise Forbidden("API keys are managed from the page (logged in) or the command line",
                        code="session_required")
    return user_of(request).username


@routes.get("/api/keys")
async def list_keys(request: web.Request) -> web.Response:
    """`{"keys": [{"id", "name", "created", "last_used"}]}`, oldest first;
    times in Unix seconds, `last_used` null when never used (updated at most
    once a minute)."""
    username = _from_page(request)
    keys = await request.app[RUNTIME].accounts.keys.list(username)
    return web.json_response({"keys": [k.to_json() for k in keys]})


@routes.post("/api/keys")
async def create_key(request: web.Request) -> web.Response:
    """`{"name"}` → 201 `{"id", "name", "created", "last_used": null, "key"}`:
    the key itself appears in this answer only. 400 for a missing or bad
    name, 409 past 100 keys."""
    username = _from_page(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ValidationError("send {\"name\": \"what uses the key\"}", field="name")
    key, info = await request.app[RUNTIME].accounts.keys.create(username, body.get("name"))
    return web.json_response({**info.to_json(), "key": key}, status=201,
                             headers={"Cache-Control": "no-store"})


@routes.delete("/api/keys/{id}")
async def revoke_key(request: web.Request) -> web.Response:
    """204; the key stops working at once, in every process. 404 for
    another user's key or an unknown id."""
    username = _from_page(request)
    await request.app[RUNTIME].accounts.keys.revoke(request.match_info["id"], username)
    return web.Response(status=204)


async def housekeeping(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: purge expired sessions and rate-limit counters every
    PURGE_EVERY seconds while the application runs."""
    accounts = app[RUNTIME].accounts

    async def loop() -> None:
        while True:
            try:
                gone = await accounts.purge()
                if gone:
                    log.info("purged %d expired sessions and rate-limit counters", gone)
            except Exception:  # the store may be briefly away; try again next round
                log.exception("purging expired sessions failed")
            await asyncio.sleep(PURGE_EVERY)

    task = asyncio.create_task(loop(), name="accounts-purge")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
