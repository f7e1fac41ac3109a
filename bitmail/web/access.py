"""One access log line and one count per HTTP request.

The line has the method, the path (never the query string, which may carry
a cursor or a search but should not land in logs), the status, the size of
the answer, the time taken and, once known, the user. Requests are counted
by route template (`/api/messages/{id}`), not by path, so message ids do not
become label values.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from ..metrics import HTTP_REQUESTS
from .keys import USER
from .middlewares import Handler

log = logging.getLogger("bitmail.access")

# Routes whose {id} is a message's: their lines carry it as message_doc_id.
MESSAGE_ROUTES = ("/api/messages/{id}", "/api/drafts/{id}")


def route_of(request: web.Request) -> str:
    """The matched route's template; "unmatched" for a 404 that matched none."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: sees the status the client gets, after every other middleware."""
    started = time.perf_counter()
    status, size = 500, 0
    try:
        response = await handler(request)
        # A body not sent yet has its length; a stream (live updates), what it sent.
        status = response.status
        size = response.content_length if response.content_length is not None \
            else response.body_length
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away first (nginx's code for it)
        raise
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        route = route_of(request)
        HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        user = request.get(USER)
        fields = {"remote": request.remote, "method": request.method, "path": request.path,
                  "route": route, "status": status, "bytes": size,
                  "ms": round(elapsed_ms, 1), "user": user.username if user else None}
        if route.startswith(MESSAGE_ROUTES):
            fields["message_doc_id"] = request.match_info.get("id")
        log.info("%s %s %s %d B %.1f ms%s", request.method, request.path, status, size,
                 elapsed_ms, f" user={user.username}" if user else "", extra=fields)
