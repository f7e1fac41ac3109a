"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from aiohttp import web

from ..accounts import Session, User
from ..errors import Forbidden
from ..runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
SESSION_COOKIE = "bitmail_session"

# Request-scoped values, set by the auth middleware.
USER = web.RequestKey("user", User)
SESSION = web.RequestKey("session", Session)
# "session:<digest>" or "apikey:<digest>": what a live stream watches, to end with it.
CREDENTIAL = web.RequestKey("credential", str)


def user_of(request: web.Request) -> User:
    """The authenticated user; the auth middleware has already refused anonymous calls."""
    return request[USER]


async def operator_of(request: web.Request) -> User:
    """The authenticated user, whose account an administrator has marked as
    an operator (`python -m bitmail user set NAME --operator`); Forbidden otherwise."""
    user = request[USER]
    if not await request.app[RUNTIME].accounts.is_operator(user.username):
        raise Forbidden("only the service's operators may do this", code="not_operator")
    return user


def session_of(request: web.Request) -> Session | None:
    return request.get(SESSION)
