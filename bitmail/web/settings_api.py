"""The user's own settings: PATCH /api/me and POST /api/me/password.
(GET /api/me, in api.py, includes the same settings.)"""

from __future__ import annotations

from aiohttp import web

from ..errors import Forbidden, ValidationError
from ..profile import Profiles
from .keys import RUNTIME, session_of, user_of
from .middlewares import read_json

routes = web.RouteTableDef()


def profiles(request: web.Request) -> Profiles:
    runtime = request.app[RUNTIME]
    return Profiles(runtime.store, runtime.accounts)


@routes.patch("/api/me")
async def update(request: web.Request) -> web.Response:
    """{"display_name"?, "signature"?, "geolists"?, "location"?: null} → the settings."""
    profile = await profiles(request).update(user_of(request).username, await read_json(request))
    return web.json_response(profile.to_json())


@routes.post("/api/me/password")
async def password(request: web.Request) -> web.Response:
    """{"current", "new"} → {"ended_sessions": n}; only from a logged-in page
    (a program's API key cannot change the password)."""
    session = session_of(request)
    if session is None:
        raise Forbidden("log in with the password to change it", code="session_required")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    ended = await profiles(request).change_password(session, body.get("current"),
                                                    body.get("new"),
                                                    client=request.remote or "unknown")
    return web.json_response({"ended_sessions": ended})
