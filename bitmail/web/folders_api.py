"""Folders over HTTP: counts, moving and marking (one or many), deleting for good."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..draft_ids import shown_id
from ..errors import ValidationError
from ..folders import FOLDERS, Folders, check_ids
from ..mailbox import summary
from .keys import RUNTIME, user_of
from .middlewares import read_json

routes = web.RouteTableDef()


def _folders(request: web.Request) -> Folders:
    return Folders(request.app[RUNTIME].store)


async def _object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    for name in ("folder", "unread", "delete"):
        if name in body and body[name] is None:  # null is not "leave it as it is"
            raise ValidationError("leave it out rather than send null", field=name)
    return body


@routes.get("/api/folders")
async def counts(request: web.Request) -> web.Response:
    """[{"name", "total", "unread"}] for inbox, sent, archive, trash, drafts."""
    return web.json_response(await _folders(request).counts(user_of(request).username))


@routes.post("/api/folders/{name}/read")
async def mark_all_read(request: web.Request) -> web.Response:
    """Mark the whole folder read: {"marked": n}."""
    name = request.match_info["name"]
    if name not in FOLDERS:
        raise ValidationError(f"must be one of {', '.join(FOLDERS)}", field="folder")
    marked = await _folders(request).mark_all_read(user_of(request).username, name)
    return web.json_response({"marked": marked})


@routes.patch("/api/messages/{id}")
async def change(request: web.Request) -> web.Response:
    """{"unread"?, "folder"?: "inbox"|"archive"|"trash"|"sent"} → the folder row."""
    body = await _object(request)
    if unknown := sorted(set(body) - {"unread", "folder"}):
        raise ValidationError(f"unknown field {unknown[0]}", field=unknown[0])
    docs = await _folders(request).change(user_of(request).username,
                                          [request.match_info["id"]],
                                          folder=body.get("folder"), unread=body.get("unread"))
    return web.json_response(summary(docs[0]))


@routes.delete("/api/messages/{id}")
async def delete(request: web.Request) -> web.Response:
    """Delete a message in Trash for good; 409 when it is not in Trash."""
    await _folders(request).delete(user_of(request).username, [request.match_info["id"]])
    return web.Response(status=204)


@routes.post("/api/messages/bulk")
async def bulk(request: web.Request) -> web.Response:
    """{"ids": [...], "folder"?, "unread"?} or {"ids": [...], "delete": true}
    (from Trash only); all or nothing. Answers {"ids": [the changed ids]}."""
    body = await _object(request)
    if unknown := sorted(set(body) - {"ids", "folder", "unread", "delete"}):
        raise ValidationError(f"unknown field {unknown[0]}", field=unknown[0])
    ids = check_ids(body.get("ids"))
    folders = _folders(request)
    owner = user_of(request).username
    if body.get("delete") is not None:
        if body["delete"] is not True or "folder" in body or "unread" in body:
            raise ValidationError("\"delete\": true goes alone with \"ids\"", field="delete")
        await folders.delete(owner, ids)
        return web.json_response({"ids": ids, "deleted": True})
    docs = await folders.change(owner, ids, folder=body.get("folder"), unread=body.get("unread"))
    return web.json_response({"ids": [shown_id(d["id"]) for d in docs]})
