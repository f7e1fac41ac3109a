"""The suppression list over HTTP: `GET /api/suppressions`,
`DELETE /api/suppressions/{address}`.

Entries come from providers' webhooks (hard bounces, complaints); removing
one lets BitMail send to that address again. The list names other users'
correspondents, so only operators (`user set --operator`) see it.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import NotFound
from ..suppression import SuppressionList, public
from .keys import RUNTIME, operator_of
from .params import MAX_CURSOR, query_int

routes = web.RouteTableDef()


@routes.get("/api/suppressions")
async def entries(request: web.Request) -> web.Response:
    """A page of entries, newest first: `{"suppressions": [...], "next"}`."""
    await operator_of(request)
    suppressions = SuppressionList(request.app[RUNTIME].store)
    before = query_int(request, "before", None, minimum=1, maximum=MAX_CURSOR)
    limit = query_int(request, "limit", 100, minimum=1, maximum=1000, cap=True)
    address = request.query.get("address")
    if address:
        doc = await suppressions.get(address)
        return web.json_response({"suppressions": [public(doc)] if doc else [], "next": None})
    docs, cursor = await suppressions.entries(before=before, limit=limit)
    return web.json_response({"suppressions": [public(d) for d in docs], "next": cursor})


@routes.delete("/api/suppressions/{address}")
async def remove(request: web.Request) -> web.Response:
    await operator_of(request)
    address = request.match_info["address"]
    if not await SuppressionList(request.app[RUNTIME].store).remove(address):
        raise NotFound(f"{address} is not on the suppression list", field="address")
    return web.Response(status=204)
