"""The OpenAPI 3.1 description of BitMail's HTTP API, served at
`GET /api/openapi.json` (https://spec.openapis.org/oas/v3.1.0).

Written from the handlers: one `Operation` entry per route in OPERATIONS,
with its parameters, request body, answers and who may call it. What every
operation of a kind shares — the JSON error answers, 401 for a route that
needs a user, 403 for an operator's route, 413/415 for a body, 503 when the
store is full or away — is added by `describe`, so a new route is one small
entry. `undescribed(app)` lists the routes that have none (a test keeps it
empty), and the schemathesis run in tests/test_openapi.py checks every
answer the live service gives against this description.

(Over 400 lines: most of it is the table itself, one short entry per route
and one schema per shape; splitting it would only scatter the reference.)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .. import draft_ids
from ..events import Status
from ..folders import FOLDERS
from ..message import MAX_RECIPIENTS
from .params import MAX_CURSOR

Schema = dict[str, Any]
JSON = "application/json"


class Auth(enum.StrEnum):
    """Who may call an operation."""

    PUBLIC = "public"  # anyone
    USER = "user"  # a logged-in user: API key or session cookie (+ CSRF token)
    OPERATOR = "operator"  # a user who is one of the service's operators
    SIGNATURE = "signature"  # a provider, proven by its signature on the body


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def obj(required: tuple[str, ...] = (), **properties: Schema) -> Schema:
    """An object with these properties (more are allowed: clients must ignore them)."""
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


STRING: Schema = {"type": "string"}
NUMBER: Schema = {"type": "number"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
NULLABLE_STRING: Schema = {"type": ["string", "null"]}
TIMESTAMP: Schema = {"type": "number", "description": "seconds since the Unix epoch"}
ADDRESSES: Schema = array(STRING, description="addresses as `local@domain`")
EMAIL: Schema = {"type": "string", "format": "email", "maxLength": 254}
STATUS: Schema = {"type": "string", "enum": [str(status) for status in Status]}
# A folder row's status: its least advanced recipient's, or "draft" for a draft.
ROW_STATUS: Schema = {"type": "string", "enum": [*STATUS["enum"], "draft"]}

# Shapes shared by several operations, named in components/schemas.
SCHEMAS: dict[str, Schema] = {
    "Error": obj(("error",), error=obj(
        ("code", "message", "field"),
        code={"type": "string", "description": "stable, machine-readable reason"},
        message={"type": "string", "description": "for people"},
        field={"type": ["string", "null"],
               "description": "the body field, parameter or header at fault"})),
    "Me": obj(("username", "address", "operator", "max_message_size"),
              username=STRING, address=STRING, operator=BOOLEAN,
              max_message_size={"type": "integer", "description": "bytes"},
              display_name=STRING, signature=STRING, geolists=BOOLEAN, located=BOOLEAN,
              csrf_token={"type": "string", "description":
                          "send it back as X-CSRF-Token with every state-changing "
                          "request made with the session cookie"},
              created={"type": "boolean", "description":
                       "login only: the account is new (made by this `create`)"}),
    "Location": obj(("lat", "lon"),
                    lat={"type": "number", "minimum": -90, "maximum": 90},
                    lon={"type": "number", "minimum": -180, "maximum": 180}),
    "AddressList": {"oneOf": [
        {"type": "string", "description": "`a@x; Name <b@y>` (`,` works too; groups too)"},
        array({"oneOf": [
            {"type": "string", "description": "one or more addresses, as above"},
            obj(("address",), name=STRING, address=EMAIL)]})]},
    "Attachment": obj(("filename", "content"),
                      filename={"type": "string", "minLength": 1, "maxLength": 255},
                      content_type={"type": "string", "description": "a MIME type"},
                      content={"type": "string", "contentEncoding": "base64"},
                      inline={"type": "boolean",
                              "description": "shown in the HTML body (with content_id)"},
                      content_id={"type": "string", "description":
                                  "what the HTML calls it as cid:… (RFC 2392)"}),
    "Submission": obj(
        (),
        to=ref("AddressList"), cc=ref("AddressList"), bcc=ref("AddressList"),
        reply_to=ref("AddressList"),
        in_reply_to={"type": "string", "description":
                     "the id of the caller's message this replies to: the service sets "
                     "In-Reply-To and References"},
        subject={"type": "string", "maxLength": 998}, text=STRING, html=STRING,
        attachments=array(ref("Attachment"), maxItems=100),
        headers={"type": "object", "additionalProperties": STRING, "maxProperties": 100,
                 "description": "extra header fields from the documented allow-list "
                                "(X-*, List-*, References, …); any other is a 400"}),
    "Accepted": obj(("id", "status", "message_id"), id=STRING,
                    status={"const": "queued"},
                    message_id={"type": "string", "description": "the RFC 5322 Message-ID"}),
    "FolderRow": obj(("id", "from", "to", "subject", "date", "status"),
                     id=STRING, **{"from": STRING}, to=ADDRESSES, subject=STRING,
                     date=TIMESTAMP, status=ROW_STATUS, folder=STRING,
                     unread={"type": ["boolean", "integer"], "description":
                             "a conversation row (view=threads): how many are unread"},
                     preview=STRING, has_attachments=BOOLEAN,
                     thread={"type": "string", "description": "the conversation's id"},
                     count={"type": "integer", "description": "view=threads: its messages"},
                     participants=array(STRING), ids=array(STRING),
                     recipients=array(obj(("address", "status"), address=STRING,
                                          status=STATUS))),
    "Folder": obj(("messages", "next"), messages=array(ref("FolderRow")),
                  next={"type": ["integer", "null"],
                        "description": "the `before` of the next page; null on the last"}),
    "Recipient": obj(("address", "status"), address=STRING, status=STATUS,
                     provider=NULLABLE_STRING, provider_message_id=NULLABLE_STRING,
                     detail=NULLABLE_STRING),
    "Event": obj(("type", "at"), type=STRING, at=TIMESTAMP, recipient=NULLABLE_STRING,
                 provider=NULLABLE_STRING, detail=NULLABLE_STRING),
    "Message": obj(("id", "from", "to", "subject", "text", "html", "date", "status"),
                   id=STRING, **{"from": STRING}, to=ADDRESSES, cc=ADDRESSES,
                   subject=STRING, text=STRING, html=STRING, date=TIMESTAMP, status=ROW_STATUS,
                   html_text={"type": "string", "description": (
                       "with HTML only: a plain-text form of it, to quote in a reply")},
                   recipients=array(ref("Recipient")), events=array(ref("Event")),
                   attachments=array(obj(("filename", "content_type", "size", "index"),
                                         filename=STRING, content_type=STRING,
                                         size=INTEGER, index=INTEGER))),
    "ApiKey": obj(("id", "name", "created", "last_used"), id=STRING, name=STRING,
                  created=TIMESTAMP,
                  last_used={"type": ["number", "null"], "description": "null: never"}),
    "GeoList": obj(("name", "miles", "count", "addresses"), name=STRING, miles=NUMBER,
                   count=INTEGER, addresses=ADDRESSES),
    "Provider": obj(("name", "state"), name=STRING, type=STRING,
                    state={"type": "string", "enum": ["up", "down", "probing"]}),
    "Suppression": obj(("address",), address=STRING, reason=STRING,
                       provider=NULLABLE_STRING, detail=NULLABLE_STRING, at=TIMESTAMP),
    "HookAnswer": obj(("status",), status={"type": "string",
                                           "enum": ["accepted", "duplicate"]},
                      events=INTEGER),
}


SCHEMAS["Submission"]["description"] = (
    f"A message: at least one recipient in to, cc or bcc, at most {MAX_RECIPIENTS} in all.")


@dataclass(frozen=True, slots=True)
class Param:
    """A query, path or header parameter."""

    name: str
    where: str  # query | path | header
    schema: Schema
    description: str = ""
    required: bool = False

    def json(self) -> Schema:
        out = {"name": self.name, "in": self.where, "schema": self.schema,
               "required": self.required or self.where == "path"}
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class Operation:
    """One route: `responses` maps a status to a JSON schema, to a media type
    string (a body that is not JSON), or to None (no body). Error answers
    are added by `describe`."""

    method: str
    path: str
    summary: str
    responses: dict[int, Schema | str | None]
    auth: Auth = Auth.USER
    body: Schema | None = None
    body_type: str = JSON
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()  # statuses beyond the ones every such operation has
    tags: tuple[str, ...] = ()
    description: str = ""  # more than the summary says, for people (CommonMark)
    # status → {link name: OpenAPI Link}: where an answer's values can be used next
    links: dict[int, dict[str, Schema]] = field(default_factory=dict)
    fuzz: bool = True  # False: never ends (a stream) or needs what a fuzzer cannot give

    def json(self) -> Schema:
        out: Schema = {"summary": self.summary, "operationId": self.operation_id(),
                       "responses": self._responses()}
        if self.description:
            out["description"] = self.description
        if self.tags:
            out["tags"] = list(self.tags)
        if self.params:
            out["parameters"] = [p.json() for p in self.params]
        if self.body is not None:
            out["requestBody"] = {"required": True,
                                  "content": {self.body_type: {"schema": self.body}}}
        if self.auth in (Auth.PUBLIC, Auth.SIGNATURE):
            out["security"] = []
        if not self.fuzz:
            out["x-bitmail-no-fuzz"] = True
        return out

    def operation_id(self) -> str:
        words = [w.strip("{}") for w in self.path.split("/") if w]
        return self.method.lower() + "".join(w.title().replace("_", "").replace(".", "")
                                             for w in words)

    def _statuses(self) -> set[int]:
        """The error statuses this operation can answer with."""
        out = set(self.errors) | {503}  # the store full (storage_full) or away
        if self.auth in (Auth.USER, Auth.OPERATOR):
            out.add(401)
            if self.method not in ("GET", "HEAD"):
                out.add(403)  # a session cookie without its CSRF token
        if self.auth is Auth.OPERATOR:
            out.add(403)
        if self.body is not None:
            out |= {400, 413, 415}
        if any(p.where in ("query", "header") for p in self.params):
            out.add(400)
        if any(p.where == "path" for p in self.params):
            out.add(404)
        return out

    def _responses(self) -> Schema:
        out: Schema = {}
        for status, schema in sorted(self.responses.items()):
            answer: Schema = {"description": DESCRIPTIONS.get(status, "OK")}
            if isinstance(schema, str):
                answer["content"] = {schema: {"schema": STRING}}
            elif schema is not None:
                answer["content"] = {JSON: {"schema": schema}}
            if status in self.links:
                answer["links"] = self.links[status]
            out[str(status)] = answer
        for status in sorted(self._statuses() - set(self.responses)):
            answer = {"description": DESCRIPTIONS.get(status, "refused"),
                      "content": {JSON: {"schema": ref("Error")}}}
            if status in (429, 503):
                answer["headers"] = {"Retry-After": {
                    "description": "seconds to wait before trying again",
                    "schema": {"type": "string"}}}
            out[str(status)] = answer
        return out


DESCRIPTIONS = {
    200: "OK", 201: "created", 202: "accepted: durably stored, to be sent", 204: "done",
    400: "a bad request: `error.field` names the field, parameter or header",
    401: "not logged in, or a wrong API key or password",
    403: "not allowed (not an operator, a missing X-CSRF-Token, a bad signature)",
    404: "no such thing (or not the caller's)", 406: "no such recipient here",
    409: "taken already", 413: "the body is too large", 415: "not the expected media type",
    422: "the Idempotency-Key was used with another body", 429: "too many attempts",
    503: "the store is full (`storage_full`) or out of reach; see Retry-After",
}

ID = Param("id", "path", {"type": "string", "minLength": 1}, "a message id")
FOLDER_NAMES = list(FOLDERS)
PAGING = (
    Param("before", "query", {"type": "integer", "minimum": 1, "maximum": MAX_CURSOR},
          "the `next` of the previous page"),
    Param("limit", "query", {"type": "integer", "minimum": 1},
          "rows per page (at most 200; more is taken as 200)"),
)
MOVE_TO: Schema = {"type": "string", "enum": ["inbox", "archive", "trash", "sent"]}
DRAFT_ID = Param("id", "path", {"type": "string", "pattern": draft_ids.DRAFT_ID.pattern},
                 "chosen by the client: 8 to 64 letters, digits, - or _; it names one "
                 "of the caller's drafts, whatever other users or messages go by")
HOOK_PROVIDER = Param("provider", "path", {"type": "string", "minLength": 1},
                      "the provider's name, when several of one type are configured")
ANY_JSON: Schema = {"type": "object"}
FORM: Schema = {"type": "object", "additionalProperties": STRING}


def _hooks() -> list[Operation]:
    """The provider webhooks: each also under /{provider} for a named provider."""
    table = [
        ("/hooks/mailgun", "Mailgun events (JSON, signed)", JSON, ANY_JSON),
        ("/hooks/mailgun/inbound", "Mailgun inbound mail (forward() form, signed)",
         "application/x-www-form-urlencoded", FORM),
        ("/hooks/ses", "SES events and inbound mail through SNS (signed)", "text/plain",
         STRING),
        ("/hooks/mandrill", "Mandrill events and inbound mail (form, signed)",
         "application/x-www-form-urlencoded", FORM),
    ]
    out = []
    for path, summary, body_type, body in table:
        for suffix, params in (("", ()), ("/{provider}", (HOOK_PROVIDER,))):
            out.append(Operation(
                "POST", path + suffix, summary, {200: ref("HookAnswer")},
                auth=Auth.SIGNATURE, body=body, body_type=body_type, params=params,
                errors=(400, 403, 404, 406, 413, 415), tags=("webhooks",)))
    return out


# Every route of the service. Adding a route: add its entry here.
OPERATIONS: list[Operation] = [
    Operation("POST", "/api/session", "Log in (with create: true, a new name is created)",
              {200: ref("Me"), 201: ref("Me")}, auth=Auth.PUBLIC,
              body=obj(("username", "password"), username=STRING, password=STRING,
                       create={"type": "boolean", "default": False, "description": (
                           "make the account if the name is new (201, `created`: true); "
                           "an existing account just logs in")},
                       location=ref("Location")),
              errors=(401, 403, 404, 409, 429), tags=("session",),
              description=(
                  "An unknown username without `\"create\": true` is a 404 "
                  "`no_such_account` (field `username`) and nothing is made: ask the "
                  "user, then repeat the request with `create`. A wrong password is a "
                  "401; with signup closed (`accounts.open_signup = false`) an unknown "
                  "name is a 401 too. Both ways count against the same login limiter "
                  "(429 with `Retry-After`).")),
    Operation("DELETE", "/api/session", "Log out", {204: None}, tags=("session",)),
    Operation("GET", "/api/me", "Who am I", {200: ref("Me")}, tags=("session",)),
    Operation("POST", "/api/messages", "Send a message", {202: ref("Accepted")},
              body=ref("Submission"),
              params=(Param("Idempotency-Key", "header",
                            {"type": "string", "minLength": 1, "maxLength": 200},
                            "a retried request with the same key and body gets the first "
                            "answer; only one message is sent"),),
              errors=(422,), tags=("messages",), links={202: {
                  name: {"operationId": op_id, "parameters": {"id": "$response.body#/id"}}
                  for name, op_id in (("GetMessage", "getApiMessagesId"),
                                      ("MarkMessage", "patchApiMessagesId"),
                                      ("MessageHtml", "getApiMessagesIdHtml"))}}),
    Operation("GET", "/api/messages", "A folder, newest first, paged", {200: ref("Folder")},
              params=(Param("folder", "query", {"type": "string", "enum": FOLDER_NAMES}),
                      *PAGING,
                      Param("q", "query", {"type": "string", "maxLength": 500},
                            "search: from:, to:, subject:, is:unread, words"),
                      Param("view", "query", {"type": "string",
                                              "enum": ["messages", "threads"]},
                            "threads: one row per conversation"),
                      Param("thread", "query", {"type": "string", "pattern": "^[0-9a-f]{24}$"},
                            "only this conversation's messages, oldest first")),
              tags=("messages",)),
    Operation("GET", "/api/messages/{id}", "One message with each recipient's status",
              {200: ref("Message")}, params=(ID,), tags=("messages",)),
    Operation("PATCH", "/api/messages/{id}", "Mark read or unread, or move to a folder",
              {200: ref("FolderRow")}, params=(ID,),
              body=obj((), unread=BOOLEAN, folder=MOVE_TO), errors=(409,), tags=("messages",)),
    Operation("DELETE", "/api/messages/{id}", "Delete a message in Trash for good", {204: None},
              params=(ID,), errors=(409,), tags=("messages",)),
    Operation("POST", "/api/messages/bulk", "Move, mark or delete many messages at once",
              {200: obj(("ids",), ids=array(STRING), deleted=BOOLEAN)},
              body=obj(("ids",), ids=array(STRING, minItems=1), unread=BOOLEAN,
                       folder=MOVE_TO, delete={"const": True}),
              errors=(404, 409), tags=("messages",)),
    Operation("GET", "/api/folders", "Each folder's total and unread counts",
              {200: array(obj(("name", "total", "unread"), name=STRING, total=INTEGER,
                              unread=INTEGER))}, tags=("messages",)),
    Operation("POST", "/api/folders/{name}/read", "Mark a whole folder read",
              {200: obj(("marked",), marked=INTEGER)},
              params=(Param("name", "path", {"type": "string", "minLength": 1}),),
              errors=(400,), tags=("messages",)),
    Operation("PUT", "/api/drafts/{id}", "Save a draft (create or replace)",
              {200: ref("FolderRow"), 201: ref("FolderRow")}, params=(DRAFT_ID,),
              body=obj((), to=STRING, cc=STRING, bcc=STRING, subject=STRING, text=STRING,
                       in_reply_to=STRING, forward_of=STRING,
                       mode={"type": "string",
                             "enum": ["new", "reply", "reply_all", "forward"]}),
              errors=(400, 413), tags=("drafts",)),
    Operation("DELETE", "/api/drafts/{id}", "Drop a draft (done even if already gone)",
              {204: None}, params=(DRAFT_ID,), errors=(400,), tags=("drafts",)),
    Operation("POST", "/api/recipients/check", "Which local addresses name no user",
              {200: obj(("unknown",), unknown=array(STRING))},
              body=obj(("addresses",), addresses=array(
                  {"type": "string", "minLength": 1, "maxLength": 254}, maxItems=20)),
              tags=("messages",)),
    Operation("PATCH", "/api/me", "Change the caller's settings",
              {200: obj((), display_name=STRING, signature=STRING, geolists=BOOLEAN,
                        located=BOOLEAN)},
              body={"type": "object"}, errors=(404,), tags=("session",)),
    Operation("POST", "/api/me/password", "Change the password (from the page only)",
              {200: obj(("ended_sessions",), ended_sessions=INTEGER)},
              body=obj(("current", "new"), current=STRING, new=STRING),
              errors=(401, 403, 429), tags=("session",)),
    Operation("GET", "/api/messages/{id}/html", "A message's HTML, for a sandboxed frame",
              {200: "text/html"}, params=(ID,), tags=("messages",)),
    Operation("GET", "/api/messages/{id}/attachments/{index}", "One attachment, as a download",
              {200: "application/octet-stream"},
              params=(ID, Param("index", "path", {"type": "integer", "minimum": 0})),
              tags=("messages",)),
    Operation("GET", "/api/keys", "The caller's API keys (from the page: session only)",
              {200: obj(("keys",), keys=array(ref("ApiKey")))}, errors=(403,),
              tags=("keys",)),
    Operation("POST", "/api/keys", "Make an API key; the key is in this answer only",
              {201: {"allOf": [ref("ApiKey"), obj(("key",), key=STRING)]}},
              body=obj(("name",), name=STRING), errors=(403, 409), tags=("keys",)),
    Operation("DELETE", "/api/keys/{id}", "Revoke an API key (at once, in every process)",
              {204: None}, params=(Param("id", "path", {"type": "string", "minLength": 1}),),
              errors=(403,), tags=("keys",)),
    Operation("GET", "/api/contacts", "Addresses for the compose autocomplete",
              {200: obj(("contacts",), contacts=ADDRESSES)}, tags=("messages",)),
    Operation("GET", "/api/geolists", "The caller's GeoLists (none until they share a place)",
              {200: obj(("lists", "located"), lists=array(ref("GeoList")), located=BOOLEAN)},
              tags=("geolists",)),
    Operation("DELETE", "/api/geolists", "Stop sharing a location", {204: None},
              tags=("geolists",)),
    Operation("GET", "/api/providers", "Each provider's health and figures",
              {200: obj(("providers",), providers=array(ref("Provider")))},
              errors=(403,), tags=("service",)),
    Operation("GET", "/api/events", "Live updates (server-sent events)",
              {200: "text/event-stream"}, tags=("messages",), fuzz=False),
    Operation("GET", "/api/suppressions", "The suppression list (operators)",
              {200: obj(("suppressions", "next"), suppressions=array(ref("Suppression")),
                        next={"type": ["integer", "null"]})},
              auth=Auth.OPERATOR,
              params=(Param("address", "query", STRING, "only this address"), *PAGING),
              tags=("service",)),
    Operation("DELETE", "/api/suppressions/{address}", "Send to an address again (operators)",
              {204: None}, auth=Auth.OPERATOR,
              params=(Param("address", "path", {"type": "string", "minLength": 1}),),
              tags=("service",)),
    *_hooks(),
    Operation("GET", "/healthz", "Liveness",
              {200: obj(("status",), status={"type": "string", "enum": ["ok", "down"]}),
               503: obj(("status",), status={"const": "down"})},
              auth=Auth.PUBLIC, tags=("service",)),
    Operation("GET", "/metrics", "Prometheus metrics", {200: "text/plain"},
              auth=Auth.PUBLIC, errors=(401,), tags=("service",)),
    Operation("GET", "/api/openapi.json", "This description", {200: {"type": "object"}},
              auth=Auth.PUBLIC, tags=("service",)),
    Operation("GET", "/", "The web-mail page", {200: "text/html"}, auth=Auth.PUBLIC,
              tags=("page",)),
    Operation("GET", "/static/{name}", "The page's scripts, styles and images",
              {200: "application/octet-stream"}, auth=Auth.PUBLIC,
              params=(Param("name", "path", {"type": "string", "minLength": 1}),),
              tags=("page",)),
]


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route of `app`."""
    out = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        out.add((route.method, path.replace("{name:.+}", "{name}")))
    return out


def present(app: web.Application) -> list[Operation]:
    """The operations `app` serves (an entry may be written before its route lands)."""
    have = routes_of(app)
    return [op for op in OPERATIONS if (op.method, op.path) in have]


def describe(operations: list[Operation] = OPERATIONS, *, version: str = "1") -> Schema:
    """The OpenAPI 3.1 document for these operations."""
    paths: dict[str, Schema] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = op.json()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "BitMail",
            "version": version,
            "description": (
                "BitMail's HTTP API. Programs authenticate with `Authorization: Bearer "
                "<API key>`; the page uses the session cookie from `POST /api/session`, "
                "and sends its `csrf_token` back as `X-CSRF-Token` on every request that "
                "changes something. Every refusal is JSON: "
                '`{"error": {"code", "message", "field"}}`.'),
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer",
                           "description": "an API key (`python -m bitmail apikey create`)"},
                "session": {"type": "apiKey", "in": "cookie", "name": "bitmail_session",
                            "description": "with the X-CSRF-Token header on changes"},
            },
        },
        "security": [{"apiKey": []}, {"session": []}],
    }


def undescribed(app: web.Application) -> list[str]:
    """`METHOD path` of every route of `app` that OPERATIONS does not describe."""
    known = {(op.method, op.path) for op in OPERATIONS}
    return sorted(f"{method} {path}" for method, path in routes_of(app) - known)


routes = web.RouteTableDef()


@routes.get("/api/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    """The description of the routes this application serves (a millisecond to make)."""
    return web.json_response(describe(present(request.app)))


__all__ = ["OPERATIONS", "SCHEMAS", "Auth", "Operation", "Param", "describe", "present",
           "routes", "undescribed"]
