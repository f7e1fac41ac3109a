"""A loopback fake of Mailgun's sending API, with fault injection.

It speaks the documented calls BitMail (and users' own code) may make:

- `POST /v3/{domain}/messages` — form fields from, to, cc, bcc, subject, text,
  html, attachment (files), h:X-Header, o:option, v:variable;
- `POST /v3/{domain}/messages.mime` — multipart with `to` (repeated or a comma
  list) and the MIME as a `message` file.

Authentication is HTTP basic `api:KEY` (401 "Forbidden" otherwise); an unknown
domain is 404 `{"message": "Domain not found: x"}`; success is 200
`{"id": "<...@domain>", "message": "Queued. Thank you."}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from .faults import FakeService, Received

__all__ = ["FakeMailgun"]

_GATEWAY_PAGE = "<html><head><title>{0}</title></head><body><h1>{0}</h1></body></html>"


# A request's form, as aiohttp reads it.
Form = MultiDictProxy[str | bytes | bytearray | FileField]


class FakeMailgun(FakeService):
    """Mailgun's send API on 127.0.0.1: `async with FakeMailgun(api_key=..., domain=...)`.

    `received` lists what it accepted. Misbehave on command with
    `fail_next(n, kind)` / `fail_always(kind)` / `heal()`, kinds 500, 502, 503,
    429, 401, 400, "timeout", "drop", "slow", "bad_json"; `reject(address)`
    makes a request naming that recipient fail as Mailgun does for a bad
    address (400, the whole request refused).
    """

    def __init__(self, *, api_key: str = "key-test", domain: str = "mg.example.com",
                 domains: tuple[str, ...] = (), delay: float = 0.0, slow_delay: float = 1.0,
                 hang: float = 60.0) -> None:
        super().__init__(delay=delay, slow_delay=slow_delay, hang=hang)
        self.api_key = api_key
        self.domains = {domain, *domains}
        self.received: list[Received] = []
        self.stored: dict[str, bytes] = {}  # storage key → MIME, as a route's store() keeps it

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v3/{domain}/messages", self.guarded(self._messages)),
            web.post("/v3/{domain}/messages.mime", self.guarded(self._messages_mime)),
            web.get("/v3/domains/{domain}/messages/{key}", self.guarded(self._stored_message)),
        ]

    def error_response(self, status: int | str) -> web.StreamResponse:
        assert isinstance(status, int)
        if status == 401:
            return web.Response(status=401, text="Forbidden")
        if status in (502, 503, 504):
            # What a load balancer in front of the API answers: HTML, not JSON.
            return web.Response(status=status, text=_GATEWAY_PAGE.format(status),
                                content_type="text/html")
        messages = {400: "Bad request", 429: "Too many requests",
                    500: "Internal server error"}
        return web.json_response({"message": messages.get(status, "Error")}, status=status)

    # -- handlers ----------------------------------------------------------------

    def _refusal(self, request: web.Request) -> web.StreamResponse | None:
        """401 for a bad key, 404 for an unknown domain, else None."""
        if not self._authorized(request.headers.get("Authorization", "")):
            return web.Response(status=401, text="Forbidden")
        domain = request.match_info["domain"]
        if domain not in self.domains:
            return web.json_response({"message": f"Domain not found: {domain}"}, status=404)
        return None

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, key = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == "api" and secrets.compare_digest(key, self.api_key)

    # -- stored messages (a route's store() action) ----------------------------------

    def store(self, mime: bytes, *, domain: str | None = None) -> str:
        """Keep a received message as store() does; its message-url."""
        key = secrets.token_urlsafe(24)
        self.stored[key] = mime
        return f"{self.url}/v3/domains/{domain or next(iter(self.domains))}/messages/{key}"

    def store_notification(self, mime: bytes, recipient: str) -> dict[str, str]:
        """The form store(notify=...) posts for `mime` (without the signature
        fields): the parsed message's headers and bodies, the `attachments`
        metadata list and the `message-url` to fetch it from."""
        url = self.store(mime)
        mail = message_from_bytes(mime, policy=policy.default)
        attachments = [{"url": f"{url}/attachments/{i}", "content-type": p.get_content_type(),
                        "name": p.get_filename() or "", "size": len(p.get_content())}
                       for i, p in enumerate(mail.iter_attachments())]
        text = mail.get_body(preferencelist=("plain",))
        html = mail.get_body(preferencelist=("html",))
        return {
            "domain": next(iter(self.domains)), "recipient": recipient,
            "sender": str(mail.get("From", "")), "from": str(mail.get("From", "")),
            "subject": str(mail.get("Subject", "")),
            "body-plain": text.get_content() if text else "",
            "body-html": html.get_content() if html else "",
            "message-headers": json.dumps([[k, str(v)] for k, v in mail.items()]),
            "attachments": json.dumps(attachments), "message-url": url,
        }

    async def _stored_message(self, request: web.Request) -> web.StreamResponse:
        """GET a stored message: with `Accept: message/rfc2822`, JSON whose
        `body-mime` is the MIME (Mailgun's "Retrieving Stored Messages")."""
        if not self._authorized(request.headers.get("Authorization", "")):
            return web.Response(status=401, text="Forbidden")
        mime = self.stored.get(request.match_info["key"])
        if mime is None:
            return web.json_response({"message": "Message not found"}, status=404)
        if "message/rfc2822" not in request.headers.get("Accept", ""):
            return _bad("only the MIME form is served here (Accept: message/rfc2822)")
        return web.json_response({"body-mime": mime.decode("utf-8", "surrogateescape"),
                                  "recipients": "", "sender": "", "subject": ""})

    async def _messages_mime(self, request: web.Request) -> web.StreamResponse:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        form = await request.post()
        recipients = _addresses(form.getall("to", []))
        if not recipients:
            return _bad("to parameter is missing")
        message = form.get("message")
        if message is None:
            return _bad("message parameter is missing")
        mime = message.file.read() if isinstance(message, web.FileField) else str(message).encode()
        return self._accept(request, "messages.mime", recipients, mime, form)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        form = await request.post()
        sender = form.get("from")
        if not isinstance(sender, str) or not sender:
            return _bad("from parameter is missing")
        to = _addresses(form.getall("to", []))
        if not to:
            return _bad("to parameter is missing")
        cc = _addresses(form.getall("cc", []))
        bcc = _addresses(form.getall("bcc", []))
        if not (form.get("text") or form.get("html") or form.get("template")):
            return _bad("Need at least one of 'text', 'html' or 'template' parameters specified")
        mime = _compose(form, sender, to, cc)
        return self._accept(request, "messages", tuple(dict.fromkeys((*to, *cc, *bcc))),
                            mime, form)

    def _accept(self, request: web.Request, endpoint: str, recipients: tuple[str, ...],
                mime: bytes, form: Form) -> web.StreamResponse:
        for r in recipients:
            if "@" not in r or r.lower() in self.rejected:
                return _bad("to parameter is not a valid address. please check documentation")
        domain = request.match_info["domain"]
        mid = f"{time.strftime('%Y%m%d%H%M%S')}.{secrets.token_hex(8)}@{domain}"
        fields = {k: [v for v in form.getall(k) if isinstance(v, str)] for k in form}
        self.received.append(Received(endpoint=endpoint, recipients=recipients, mime=mime,
                                      id=mid, fields=fields))
        return web.json_response({"id": f"<{mid}>", "message": "Queued. Thank you."})


def _bad(message: str) -> web.Response:
    return web.json_response({"message": message}, status=400)


def _addresses(values: list[Any]) -> tuple[str, ...]:
    """Repeated fields and comma lists alike, as bare addresses."""
    texts = [v for v in values if isinstance(v, str)]
    return tuple(addr for _, addr in getaddresses(texts) if addr)


def _compose(form: Form, sender: str, to: tuple[str, ...],
             cc: tuple[str, ...]) -> bytes:
    """The MIME Mailgun would build from the form fields of /messages."""
    mail = EmailMessage(policy=policy.SMTP)
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    if cc:
        mail["Cc"] = ", ".join(cc)
    mail["Subject"] = str(form.get("subject", ""))
    for key in form:
        if key.startswith("h:"):
            mail[key[2:]] = str(form[key])
    if "Message-ID" not in mail:
        mail["Message-ID"] = f"<{secrets.token_hex(12)}@fake.mailgun>"
    mail.set_content(str(form.get("text", "")))
    if form.get("html"):
        mail.add_alternative(str(form["html"]), subtype="html")
    for att in form.getall("attachment", []):
        if isinstance(att, web.FileField):
            maintype, _, subtype = (att.content_type or "application/octet-stream").partition("/")
            mail.add_attachment(att.file.read(), maintype=maintype,
                                subtype=subtype or "octet-stream", filename=att.filename)
    return mail.as_bytes()
