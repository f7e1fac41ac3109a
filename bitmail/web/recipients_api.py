"""Compose's check of local recipients as they are typed."""

from __future__ import annotations

from aiohttp import web

from ..errors import ValidationError
from .keys import RUNTIME, user_of
from .middlewares import read_json

routes = web.RouteTableDef()
MAX_CHECK = 20


@routes.post("/api/recipients/check")
async def check(request: web.Request) -> web.Response:
    """{"addresses": [...]} → {"unknown": [the addresses at this service's
    domain that name no user]}. Other domains are not judged.

    Sending to such an address tells the sender the same at once (a failed
    recipient and a delivery-failure notice), so this reveals nothing a
    sender could not learn; it is capped at MAX_CHECK addresses a request,
    and lists no accounts (see accounts.directory)."""
    body = await read_json(request)
    addresses = body.get("addresses") if isinstance(body, dict) else None
    if not (isinstance(addresses, list) and len(addresses) <= MAX_CHECK
            and all(isinstance(a, str) and 0 < len(a) <= 254 for a in addresses)):
        raise ValidationError(f"a list of at most {MAX_CHECK} addresses", field="addresses")
    user_of(request)
    mailbox = request.app[RUNTIME].mailbox
    local = [a.strip() for a in addresses if mailbox.is_local(a.strip())]
    known = set(await mailbox.local_users(local))
    unknown = [a for a in local if a.rpartition("@")[0].lower() not in known]
    return web.json_response({"unknown": list(dict.fromkeys(unknown))})
