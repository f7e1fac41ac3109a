"""Errors as JSON, authentication and CSRF, applied to every request."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from .. import jsonlimits, tokens
from ..errors import BitMailError, Forbidden, TooLarge, Unauthorized
from ..store import AlreadyExists, StorageFull, StoreError
from .keys import CREDENTIAL, RUNTIME, SESSION, SESSION_COOKIE, USER

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths anyone may call: the page itself, logging in, health, and the
# webhooks, which prove themselves with the provider's signature instead.
PUBLIC_PREFIXES = ("/hooks/", "/static/", "/healthz", "/metrics")
PUBLIC_PATHS = {"/", "/index.html", "/favicon.ico", "/api/openapi.json"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Seconds a client is asked to wait: room on a disk takes an operator.
STORAGE_RETRY_AFTER = 60
STORE_RETRY_AFTER = 5


def error_json(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "field": field}},
                             status=status)


def _reason_json(status: int, reason: str, headers: Mapping[str, str]) -> web.Response:
    """A refusal aiohttp made, in the JSON shape, with the headers it carried
    (a 405's Allow, RFC 9110 §15.5.6; a 416's Content-Range, §15.5.17)."""
    response = error_json(status, reason.lower().replace(" ", "_"), reason)
    for name, value in headers.items():
        if name.lower() not in ("content-type", "content-length"):
            response.headers.add(name, value)
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal in one JSON shape: {"error": {"code", "message", "field"}}."""
    try:
        response = await handler(request)
        if response.status >= 400 and response.content_type != "application/json" and (
                isinstance(response, web.Response)):
            # A refusal some handler (aiohttp's static files, say) returned
            # rather than raised: the same shape as every other.
            return _reason_json(response.status, response.reason, response.headers)
        return response
    except BitMailError as exc:
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return web.json_response(exc.to_json(), status=exc.status, headers=headers)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[RUNTIME].settings.web.max_body
        return error_json(413, "too_large", f"the request body is over {limit} bytes")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return _reason_json(exc.status, exc.reason, exc.headers)
    except json.JSONDecodeError as exc:
        return error_json(400, "bad_json", f"the body is not valid JSON: {exc.msg}")
    except AlreadyExists:
        return error_json(409, "conflict", "this was created already (by another request)")
    except StorageFull as exc:
        # Nothing was committed, so nothing was accepted; the client may
        # retry the same request (with its Idempotency-Key) once there is room.
        log.error("refused %s %s: the store is full: %s", request.method, request.path, exc)
        response = error_json(503, "storage_full",
                              "the service is out of storage space; try again later")
        response.headers["Retry-After"] = str(STORAGE_RETRY_AFTER)
        return response
    except StoreError as exc:
        log.error("refused %s %s: the store failed: %s", request.method, request.path, exc)
        response = error_json(503, "store_unavailable",
                              "the service cannot reach its storage; try again later")
        response.headers["Retry-After"] = str(STORE_RETRY_AFTER)
        return response
    except ConnectionResetError:
        raise  # the client went away: nobody to answer
    except Exception:
        # A bug, not a refusal: the traceback goes to the log under a
        # reference the client is given, and no internals go to the client.
        ref = uuid.uuid4().hex[:12]
        log.exception("unexpected error on %s %s (ref %s)", request.method, request.path, ref)
        return error_json(500, "internal", f"something went wrong on our side (ref {ref})")


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer API key or session cookie; a cookie request that changes state
    must also carry the session's CSRF token."""
    path = request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or (
            path == "/api/session" and request.method == "POST"):
        return await handler(request)
    runtime = request.app[RUNTIME]
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        key = auth[7:].strip()
        # A wrong key counts as a failed login from this address (limits.py).
        user = await runtime.accounts.api_key_user(key, client=request.remote or "unknown")
        if user is None:
            raise Unauthorized("unknown API key")
        request[USER] = user
        request[CREDENTIAL] = f"apikey:{tokens.digest(key)}"
        return await handler(request)
    token = request.cookies.get(SESSION_COOKIE)
    session = await runtime.accounts.session(token) if token else None
    if session is None:
        raise Unauthorized("log in first")
    if request.method not in SAFE_METHODS:
        runtime.accounts.check_csrf(session, request.headers.get("X-CSRF-Token"))
    request[USER] = session.user
    request[SESSION] = session
    request[CREDENTIAL] = session.credential
    return await handler(request)


#: Bytes of JSON a request that carries no mail may send: a login, settings,
#: keys, address checks, 1,000 ids of a bulk change.
SMALL_JSON = 64 * 1024


async def read_json(request: web.Request, limit: int | None = SMALL_JSON) -> object:
    """The JSON body, or a precise 400/415, or 413 (TooLarge) past `limit`
    bytes; `limit` None is the app's own (`web.max_body`), for bodies that
    carry mail. A small route refuses a large body before reading it, or as
    soon as it passes the limit when it comes without a Content-Length: a
    public route such as the login would otherwise read and decode 36 MB."""
    if request.content_type != "application/json":
        raise BitMailError("send the body as application/json", code="unsupported_media_type")
    body = await request.read() if limit is None else await _read_at_most(request, limit)
    if not body:
        raise BitMailError("the body is empty", code="bad_json")
    try:
        return jsonlimits.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BitMailError(f"the body is not valid JSON: {exc}", code="bad_json") from None


async def _read_at_most(request: web.Request, limit: int) -> bytes:
    too_large = TooLarge(f"this request's body is at most {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        # As the webhooks read (hooks/base.py read_incoming): a clone with its
        # own size limit, which aiohttp enforces as the body arrives.
        return await request.clone(client_max_size=limit).read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None


__all__ = ["Forbidden", "authenticate", "error_json", "errors", "read_json"]
