"""Server-side drafts: PUT to save (create or replace), DELETE to drop.
They are listed with GET /api/messages?folder=drafts and opened like any message."""

from __future__ import annotations

from aiohttp import web

from ..drafts import Drafts
from .keys import RUNTIME, user_of
from .middlewares import read_json

routes = web.RouteTableDef()


@routes.put("/api/drafts/{id}")
async def save(request: web.Request) -> web.Response:
    """{"to", "cc", "bcc", "subject", "text", "in_reply_to"?, "forward_of"?, "mode"?}
    → 201 (new) or 200 with the draft's folder row."""
    user = user_of(request)
    row, created = await Drafts(request.app[RUNTIME].store).save(
        user.username, user.address, request.match_info["id"],
        await read_json(request, limit=None))  # a draft holds a whole text
    return web.json_response(row, status=201 if created else 200)


@routes.delete("/api/drafts/{id}")
async def remove(request: web.Request) -> web.Response:
    """204 whether it was there or already gone (sent from another device)."""
    await Drafts(request.app[RUNTIME].store).remove(user_of(request).username,
                                                    request.match_info["id"])
    return web.Response(status=204)
