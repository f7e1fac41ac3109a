"""The aiohttp application: routes and middlewares, in the order they apply."""

from __future__ import annotations

from pathlib import Path

from aiohttp import hdrs, web

from ..errors import NotFound
from ..runtime import Runtime
from . import (
    account_api,
    api,
    drafts_api,
    folders_api,
    openapi,
    recipients_api,
    settings_api,
    status,
    suppressions,
)
from .access import access
from .hooks import add_routes as add_hook_routes
from .keys import RUNTIME
from .middlewares import authenticate, errors
from .security import security_headers

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"


async def static_file(request: web.Request) -> web.FileResponse:
    """A file of the page from STATIC_DIR; anything else is a JSON 404 (aiohttp's
    own static route answers a missing file with an empty octet-stream)."""
    path = (STATIC_DIR / request.match_info["name"]).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise NotFound("no such file")
    _check_range(request, path.stat().st_size)
    return web.FileResponse(path)


def _check_range(request: web.Request, size: int) -> None:
    """Raise 416 with `Content-Range: bytes */size` (RFC 9110 §14.4, §15.5.17)
    for a Range the file cannot satisfy: malformed, or starting at or past
    its end. FileResponse would answer that itself, as an empty
    octet-stream, after every middleware has run."""
    if hdrs.RANGE not in request.headers:
        return
    try:
        start = request.http_range.start
    except ValueError:
        start = size
    if start is not None and start >= size:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html",
                            headers={"Cache-Control": "no-cache"})


def make_app(runtime: Runtime, *, https: bool = False) -> web.Application:
    """The web application for a runtime whose store is already open."""
    app = web.Application(
        client_max_size=runtime.settings.web.max_body,
        middlewares=[access, security_headers(https), errors, authenticate],
    )
    app[RUNTIME] = runtime
    app.router.add_routes(api.routes)
    app.router.add_routes(folders_api.routes)
    app.router.add_routes(drafts_api.routes)
    app.router.add_routes(settings_api.routes)
    app.router.add_routes(recipients_api.routes)
    app.router.add_routes(account_api.routes)
    app.cleanup_ctx.append(account_api.housekeeping)
    app.router.add_routes(status.routes)
    app.router.add_routes(suppressions.routes)
    app.router.add_routes(openapi.routes)
    add_hook_routes(app)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name:.+}", static_file)
    return app
