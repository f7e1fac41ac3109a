"""The JSON API: sessions, messages, folders, contacts, GeoLists, providers."""

from __future__ import annotations

import asyncio
import json
from email.headerregistry import Address
from typing import Any

from aiohttp import web

from .. import geo, idempotency, live, threads
from ..accounts import User
from ..draft_ids import DRAFT_ID
from ..drafts import Drafts
from ..errors import NotFound, ValidationError
from ..folders import FOLDERS
from ..mailbox import Mailbox, public, summary
from ..message import parse_message, read_content, read_part
from ..message.headers import threads_on
from ..message.reading import parse
from ..mta import carries_smtputf8
from ..profile import Profiles
from ..store import AlreadyExists, Kind
from ..threads import THREAD_ID
from .credentials import CredentialWatch
from .downloads import content_disposition, with_inline_parts, with_links_in_new_tabs
from .keys import CREDENTIAL, RUNTIME, SESSION_COOKIE, operator_of, session_of, user_of
from .middlewares import read_json
from .params import MAX_CURSOR, query_int

routes = web.RouteTableDef()


async def _me(request: web.Request, user: User,
              csrf: str | None = None) -> dict[str, Any]:
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    profile = await Profiles(runtime.store, runtime.accounts).get(user.username)
    out = {"username": user.username, "address": user.address,
           "operator": await runtime.accounts.is_operator(user.username),
           "max_message_size": settings.max_message_size, **profile.to_json()}
    if csrf:
        out["csrf_token"] = csrf
    return out


def own_username(typed: object, domain: str) -> object:
    """`bob@DOMAIN` means bob; an address at another domain is refused with why."""
    if isinstance(typed, str) and "@" in typed:
        name, _, at = typed.strip().rpartition("@")
        if at.lower() != domain:
            raise ValidationError(f"this is BitMail for @{domain}: log in with your username "
                                  f"alone (the part before @{domain})", field="username")
        return name
    return typed


@routes.post("/api/session")
async def login(request: web.Request) -> web.Response:
    """`{"username", "password", "create"?, "location"?}` → 200 Me, or 201 Me
    for an account made now (only with `"create": true`); 404
    `no_such_account` for an unknown name without it."""
    runtime = request.app[RUNTIME]
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    # Only an explicit true creates an account: a mistyped name must be asked about.
    create = body.get("create", False)
    if not isinstance(create, bool):
        raise ValidationError("must be true or false", field="create")
    session, created = await runtime.accounts.login(
        own_username(body.get("username"), runtime.settings.domain), body.get("password"),
        client=request.remote or "unknown", location=body.get("location"), create=create)
    me = await _me(request, session.user, session.csrf_token)
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
    return web.json_response(await _me(request, user_of(request), csrf))


@routes.post("/api/messages")
async def send(request: web.Request) -> web.Response:
    """Accept a message: 202 only once it is durably stored."""
    runtime = request.app[RUNTIME]
    user = user_of(request)
    key = idempotency.check_key(request.headers.get(idempotency.HEADER))
    payload = await read_json(request, limit=None)  # the message itself
    draft = payload.get("draft") if isinstance(payload, dict) else None
    if draft is not None and not (isinstance(draft, str) and DRAFT_ID.match(draft)):
        raise ValidationError("must be the id of one of your drafts", field="draft")
    claim = idempotency.Claim.of(user.username, key, payload) if key else None
    if claim and (first := await idempotency.first_answer(runtime.store, claim)):
        return web.json_response(first, status=202)
    thread = None
    if isinstance(payload, dict) and payload.get("in_reply_to") is not None:
        thread = await _thread(runtime.mailbox, user, payload["in_reply_to"])
    local, _, domain = user.address.rpartition("@")
    # The user's display name (Settings) goes before the address in From.
    shown = (await Profiles(runtime.store, runtime.accounts).get(user.username)).display_name
    message = parse_message(
        payload, sender=Address(shown or user.display_name, local, domain),
        domain=runtime.settings.domain, max_size=runtime.settings.max_message_size,
        smtputf8=carries_smtputf8(runtime.settings.mta),
        thread=thread)
    try:
        message_id = await runtime.mailbox.accept(message, user.username, idempotency=claim)
    except AlreadyExists as exc:
        if claim is None or exc.kind != Kind.IDEMPOTENCY:
            raise  # nothing was stored: no document ever takes another's place
        # A request with the same key committed first: its answer is ours too.
        first = await idempotency.first_answer(runtime.store, claim)
        return web.json_response(first, status=202)
    if draft is not None:  # sent: the draft has done its job
        await Drafts(runtime.store).remove(user.username, draft)
    return web.json_response(idempotency.answer(message_id, message.message_id), status=202)


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
    if not threads_on(parent_id):
        return None  # nothing to thread on
    earlier = parent.get("references") or parent.get("in_reply_to") or []
    return parent_id, (*[i for i in earlier if threads_on(i)], parent_id)


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
    owner = user_of(request).username
    view = request.query.get("view", "messages")
    if view not in ("messages", "threads"):
        raise ValidationError("must be messages or threads", field="view")
    if (thread := request.query.get("thread")) is not None:  # one conversation, oldest first
        if not THREAD_ID.match(thread):
            raise ValidationError("a conversation id, as folder rows give it", field="thread")
        rows = await threads.members(runtime.store, owner, name, thread, summary)
        return web.json_response({"messages": rows, "next": None})
    if view == "threads" and not query:
        rows, cursor = await threads.conversations(runtime.store, owner, name, summary,
                                                   before=before, limit=limit)
        return web.json_response({"messages": rows, "next": cursor})
    docs, cursor = await runtime.mailbox.folder(owner, name, before=before, limit=limit,
                                                query=query)
    return web.json_response({"messages": [summary(d) for d in docs], "next": cursor})


@routes.get("/api/messages/{id}")
async def message(request: web.Request) -> web.Response:
    mailbox = request.app[RUNTIME].mailbox
    doc = await mailbox.get(user_of(request).username, request.match_info["id"])
    return web.json_response(public(doc, await mailbox.mime(doc)))


# Mail's HTML as a document of its own, for the reading pane's sandboxed
# frame: its own policy lets the mail's inline styles apply while scripts,
# plugins, forms and every remote load stay blocked. Its links open new tabs
# (popups), which escape the sandbox to be ordinary pages; they get no
# window.opener (the page's Cross-Origin-Opener-Policy makes a popup from a
# cross-origin frame noopener) and no Referer (Referrer-Policy: no-referrer).
MAIL_HTML_POLICY = ("sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
                    "style-src 'unsafe-inline'; img-src data:; font-src data:; "
                    "frame-ancestors 'self'")


@routes.get("/api/messages/{id}/html")
async def html(request: web.Request) -> web.Response:
    mailbox = request.app[RUNTIME].mailbox
    doc = await mailbox.get(user_of(request).username, request.match_info["id"])
    mime = await mailbox.mime(doc)
    mail = parse(mime) if mime is not None else None
    content = read_content(mail) if mail is not None else None
    if mime is None or mail is None or content is None or not content.html:
        raise NotFound("this message has no HTML")
    # Inline images may make the answer up to three times the message.
    inlined = with_inline_parts(content.html, mail, content.parts, budget=2 * len(mime))
    # Reading the mail's tags takes seconds for a mail of megabytes: not on the loop.
    served = await asyncio.to_thread(with_links_in_new_tabs, inlined)
    return web.Response(text=served, content_type="text/html", headers={
        "Content-Security-Policy": MAIL_HTML_POLICY, "X-Frame-Options": "SAMEORIGIN",
        "Referrer-Policy": "no-referrer", "Cache-Control": "private, no-store"})


@routes.get("/api/messages/{id}/attachments/{index}")
async def attachment(request: web.Request) -> web.Response:
    mailbox = request.app[RUNTIME].mailbox
    doc = await mailbox.get(user_of(request).username, request.match_info["id"])
    mime = await mailbox.mime(doc)
    index = request.match_info["index"]
    # Digits only: "-1" or "+1" are not part numbers.
    found = read_part(mime, int(index)) if mime and index.isdigit() else None
    if found is None:
        raise NotFound("no such attachment")
    part, data = found
    # Served as a download, never rendered in our origin.
    return web.Response(body=data, content_type="application/octet-stream",
                        headers={"Content-Disposition": content_disposition(part.filename),
                                 "X-Content-Type-Options": "nosniff"})


@routes.get("/api/contacts")
async def contacts(request: web.Request) -> web.Response:
    """Addresses for the compose autocomplete: the caller's own correspondents,
    and every local account only where `accounts.directory` allows it (off by
    default: the list of accounts is nobody's business)."""
    runtime = request.app[RUNTIME]
    user = user_of(request)
    merged = await runtime.mailbox.contacts(user.username)
    if runtime.settings.directory:
        domain = runtime.settings.domain
        merged += [f"{name}@{domain}" for name in await runtime.accounts.usernames()]
    return web.json_response(
        {"contacts": [a for a in dict.fromkeys(merged) if a != user.address]})


@routes.get("/api/geolists")
async def geolists(request: web.Request) -> web.Response:
    """The caller's GeoLists; none until they share a location (opt-in)."""
    runtime = request.app[RUNTIME]
    user = user_of(request)
    domain = runtime.settings.domain
    where = await geo.Places(runtime.store).everyone()
    others = [(f"{name}@{domain}", loc) for name, loc in where.items()
              if name != user.username]
    return web.json_response({"lists": geo.geolists(where.get(user.username), others),
                              "located": user.username in where})


@routes.delete("/api/geolists")
async def leave_geolists(request: web.Request) -> web.Response:
    """Stop sharing a location: the caller's position is deleted."""
    await geo.Places(request.app[RUNTIME].store).forget(user_of(request).username)
    return web.Response(status=204)


@routes.get("/api/providers")
async def providers(request: web.Request) -> web.Response:
    await operator_of(request)  # provider names, error texts and rates are the operator's
    container = request.app[RUNTIME].container
    return web.json_response({"providers": container.snapshot() if container else []})


@routes.get("/api/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: new mail, status changes (and provider figures for
    an operator), for this user only. The stream ends when the session or API
    key it was opened with ends (logout, expiry, revocation), in any process."""
    runtime = request.app[RUNTIME]
    username = user_of(request).username
    session = session_of(request)
    watch = CredentialWatch(runtime.accounts, request[CREDENTIAL],
                            expires=session.expires if session else None)
    operator = await runtime.accounts.is_operator(username)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    await response.write(b"retry: 2000\n: connected\n\n")
    # The end of the credential is never dropped, however far behind the stream is.
    sub = runtime.store.subscribe(ends=watch.ended_by)
    try:
        # Checked on every turn, payload or not: on a busy service the wait
        # below seldom runs out (every user's payloads come here).
        while await watch.holds():
            if watch.keep_alive_due():
                await response.write(b": keep-alive\n\n")
            try:
                payload = await asyncio.wait_for(sub.queue.get(), watch.timeout())
            except TimeoutError:
                continue
            if watch.ended_by(payload):
                break
            found = live.for_user(payload, username, operator=operator)
            if found is None:
                continue
            kind, data = found
            await response.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
            watch.wrote()
    except ConnectionResetError:
        pass  # the page went away
    finally:
        sub.close()
    return response

