"""The JSON API: sessions, messages, folders, contacts, GeoLists, providers."""

from __future__ import annotations

import asyncio
import json
from email.headerregistry import Address

from aiohttp import web

from .. import geo
from ..accounts import User
from ..errors import NotFound, ValidationError
from ..mailbox import Mailbox, public, summary
from ..message import parse_message, read_content, read_part
from ..message.headers import MSG_ID
from .downloads import content_disposition, with_inline_parts
from .keys import RUNTIME, SESSION_COOKIE, session_of, user_of
from .middlewares import read_json
from .params import MAX_CURSOR, query_int

routes = web.RouteTableDef()
FOLDERS = ("inbox", "sent")


def _me(request: web.Request, user: User, csrf: str | None = None) -> dict:
    settings = request.app[RUNTIME].settings
    out = {"username": user.username, "address": user.address,
           "operator": user.username in settings.operators,
           "max_message_size": settings.max_message_size}
    if csrf:
        out["csrf_token"] = csrf
    return out


@routes.post("/api/session")
async def login(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    session, created = await runtime.accounts.login(
        body.get("username"), body.get("password"), client=request.remote or "unknown",
        location=body.get("location"))
    me = _me(request, session.user, session.csrf_token)
    response = web.json_response({**me, "created": created}, status=201 if created else 200)
    response.set_cookie(SESSION_COOKIE, session.token, httponly=True, samesite="Strict",
                        secure=request.secure, path="/", max_age=14 * 24 * 3600)
    return response


@routes.delete("/api/session")
async def logout(request: web.Request) -> web.Response:
    session = session_of(request)
    if session:
        await request.app[RUNTIME].accounts.logout(session.token)
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    session = session_of(request)
    csrf = session.csrf_token if session else None
    return web.json_response(_me(request, user_of(request), csrf))


@routes.post("/api/messages")
async def send(request: web.Request) -> web.Response:
    """Accept a message: 202 only once it is durably stored."""
    runtime = request.app[RUNTIME]
    user = user_of(request)
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        if not 1 <= len(key) <= 200:
            raise ValidationError("must be 1 to 200 characters", field="Idempotency-Key")
        first = await runtime.store.get_one("idempotency", {"id": f"{user.username}:{key}"})
        if first:
            return web.json_response(first["body"], status=first["status"])
    payload = await read_json(request)
    thread = None
    if isinstance(payload, dict) and payload.get("in_reply_to") is not None:
        thread = await _thread(runtime.mailbox, user, payload["in_reply_to"])
    local, _, domain = user.address.rpartition("@")
    message = parse_message(
        payload, sender=Address(user.display_name, local, domain),
        domain=runtime.settings.domain, max_size=runtime.settings.max_message_size,
        smtputf8=runtime.container.carries_smtputf8() if runtime.container else True,
        thread=thread)
    message_id = await runtime.mailbox.accept(message, user.username)
    if runtime.container:
        runtime.container.wake()
    body = {"id": message_id, "status": "queued", "message_id": message.message_id}
    if key is not None:
        await runtime.store.put("idempotency", {"status": 202, "body": body,
                                                "username": user.username},
                                id=f"{user.username}:{key}")
    return web.json_response(body, status=202)


async def _thread(mailbox: Mailbox, user: User, replied: object
                  ) -> tuple[str, tuple[str, ...]] | None:
    """(In-Reply-To, References) for a reply to the user's message `replied`
    (RFC 5322 §3.6.4: the parent's References, else its In-Reply-To, then
    the parent's own Message-ID)."""
    if not isinstance(replied, str):
        raise ValidationError("must be the id of one of your messages", field="in_reply_to")
    try:
        parent = await mailbox.get(user.username, replied)
    except NotFound:
        raise ValidationError("is not one of your messages", field="in_reply_to") from None
    parent_id = parent.get("message_id") or ""
    if not MSG_ID.match(parent_id):
        return None  # nothing to thread on
    earlier = parent.get("references") or parent.get("in_reply_to") or []
    return parent_id, (*[i for i in earlier if MSG_ID.match(i)], parent_id)

@routes.get("/api/messages")
async def folder(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    name = request.query.get("folder", "inbox")
    if name not in FOLDERS:
        raise ValidationError(f"must be one of {', '.join(FOLDERS)}", field="folder")
    before = query_int(request, "before", None, minimum=1, maximum=MAX_CURSOR)
    limit = query_int(request, "limit", 50, minimum=1, maximum=200, cap=True)
    query = request.query.get("q", "")
    if len(query) > 500:
        raise ValidationError("at most 500 characters", field="q")
    docs, cursor = await runtime.mailbox.folder(user_of(request).username, name,
                                                before=before, limit=limit, query=query)
    return web.json_response({"messages": [summary(d) for d in docs], "next": cursor})


@routes.get("/api/messages/{id}")
async def message(request: web.Request) -> web.Response:
    mailbox = request.app[RUNTIME].mailbox
    doc = await mailbox.get(user_of(request).username, request.match_info["id"])
    return web.json_response(public(doc, await mailbox.mime(doc)))


@routes.patch("/api/messages/{id}")
async def mark(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("unread"), bool):
        raise ValidationError("send {\"unread\": true|false}", field="unread")
    await request.app[RUNTIME].mailbox.mark_read(user_of(request).username,
                                                 request.match_info["id"], body["unread"])
    return web.Response(status=204)


# Mail's HTML as a document of its own, for the reading pane's sandboxed
# frame: its own policy lets the mail's inline styles apply while scripts,
# plugins, forms and every remote load stay blocked.
MAIL_HTML_POLICY = ("sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                    "font-src data:; frame-ancestors 'self'")


@routes.get("/api/messages/{id}/html")
async def html(request: web.Request) -> web.Response:
    mailbox = request.app[RUNTIME].mailbox
    doc = await mailbox.get(user_of(request).username, request.match_info["id"])
    mime = await mailbox.mime(doc)
    content = read_content(mime) if mime is not None else None
    if content is None or not content.html:
        raise NotFound("this message has no HTML")
    return web.Response(text=with_inline_parts(content.html, mime or b""),
                        content_type="text/html", headers={
        "Content-Security-Policy": MAIL_HTML_POLICY, "X-Frame-Options": "SAMEORIGIN",
        "Cache-Control": "private, no-store"})


@routes.get("/api/messages/{id}/attachments/{index}")
async def attachment(request: web.Request) -> web.Response:
    mailbox = request.app[RUNTIME].mailbox
    doc = await mailbox.get(user_of(request).username, request.match_info["id"])
    mime = await mailbox.mime(doc)
    try:
        found = read_part(mime, int(request.match_info["index"])) if mime else None
    except ValueError:
        found = None
    if found is None:
        raise NotFound("no such attachment")
    part, data = found
    # Served as a download, never rendered in our origin.
    return web.Response(body=data, content_type="application/octet-stream",
                        headers={"Content-Disposition": content_disposition(part.filename),
                                 "X-Content-Type-Options": "nosniff"})


@routes.get("/api/contacts")
async def contacts(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    user = user_of(request)
    domain = runtime.settings.domain
    own = [f"{name}@{domain}" for name in await runtime.accounts.usernames()
           if name != user.username]
    seen = await runtime.mailbox.contacts(user.username)
    merged = list(dict.fromkeys([*seen, *own]))
    return web.json_response({"contacts": [a for a in merged if a != user.address]})


@routes.get("/api/geolists")
async def geolists(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    user = user_of(request)
    domain = runtime.settings.domain
    where = dict(await runtime.accounts.locations())
    others = [(f"{name}@{domain}", loc) for name, loc in where.items()
              if name != user.username]
    return web.json_response({"lists": geo.geolists(where.get(user.username), others),
                              "located": user.username in where})


@routes.get("/api/providers")
async def providers(request: web.Request) -> web.Response:
    container = request.app[RUNTIME].container
    return web.json_response({"providers": container.snapshot() if container else []})


@routes.get("/api/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: new mail, status changes and provider figures, for
    this user only."""
    runtime = request.app[RUNTIME]
    username = user_of(request).username
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    await response.write(b"retry: 2000\n: connected\n\n")
    sub = runtime.store.subscribe()
    try:
        while True:
            try:
                payload = await asyncio.wait_for(sub.queue.get(), 15.0)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            kind = payload.get("type")
            if kind == "providers":
                data = {"providers": payload["providers"]}
            elif payload.get("owner") == username:
                data = payload["message"]
            else:
                continue
            await response.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
    except ConnectionResetError:
        pass  # the page went away
    finally:
        sub.close()
    return response

