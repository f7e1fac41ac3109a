"""Security headers on every response.

The page is plain files from this origin, so the policy can be strict: no
inline scripts or styles, no plugins, no framing of the page, no foreign
form targets. A mail's HTML is never put into the page: the reading pane
shows it in a sandboxed `<iframe>` (popups only: its links open new tabs)
that loads it from this origin (`GET /api/messages/{id}/html`), where it is
answered under a policy of its own (web/api.py, MAIL_HTML_POLICY): its inline
styles apply, while scripts, plugins, forms and every remote load (tracking
images too) stay blocked. Cross-Origin-Opener-Policy `same-origin` also makes
a tab opened from that cross-origin frame one without `window.opener`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping

from aiohttp import web
from aiohttp.typedefs import Middleware

CSP = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "frame-src 'self' about:",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
))
HSTS = "max-age=31536000; includeSubDomains"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def header_values(https: bool) -> dict[str, str]:
    """The headers every response carries."""
    headers = {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), payment=(), geolocation=(self)",
    }
    if https:
        headers["Strict-Transport-Security"] = HSTS
    return headers


def security_headers(https: bool) -> Middleware:
    """Middleware adding CSP, nosniff, referrer, opener and framing policies
    (and HSTS when served over HTTPS). A handler's own value wins."""
    values = header_values(https)

    def apply(headers: MutableMapping[str, str]) -> None:
        for name, value in values.items():
            headers.setdefault(name, value)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            apply(exc.headers)
            raise
        # A stream the handler already started (server-sent events) has sent
        # its headers; it carries no document, so nothing is lost.
        if not response.prepared:
            apply(response.headers)
        return response

    return middleware
