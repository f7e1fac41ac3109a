"""A loopback fake of Mandrill's send-raw API, with fault injection.

`POST /api/1.0/messages/send-raw.json` takes a JSON body (key, raw_message,
from_email, from_name, to — a list of addresses, async, ...) and answers the
documented per-recipient array `[{"email", "status", "reject_reason", "_id"}]`
with status "sent", "queued", "scheduled", "rejected" or "invalid". Errors are
HTTP 500 with `{"status": "error", "code": ..., "name": ..., "message": ...}`.
"""

from __future__ import annotations

import json
import secrets
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any

from aiohttp import web

from .faults import FakeService, Received

__all__ = ["FakeMandrill"]

# Mandrill's documented error names and codes.
ERRORS: dict[str, tuple[int, str]] = {
    "Invalid_Key": (-1, "Invalid API key"),
    "ValidationError": (-2, "Validation error"),
    "GeneralError": (-1, "An unexpected error occurred"),
    "PaymentRequired": (-1, "This feature is only available for paid accounts"),
    "Unknown_Subaccount": (12, "No subaccount exists with the id 'x'"),
}
# Status faults in Mandrill's own terms: it answers API errors with HTTP 500.
_STATUS_NAMES = {401: "Invalid_Key", 400: "ValidationError", 500: "GeneralError"}
_GATEWAY_PAGE = "<html><head><title>{0}</title></head><body><h1>{0}</h1></body></html>"


class FakeMandrill(FakeService):
    """Mandrill's send-raw call on 127.0.0.1: `async with FakeMandrill(api_key=...)`.

    `received` lists what it accepted. Commands: `reject(address, reason)` /
    `invalid(address)` for one recipient, `answer_queued()` to answer "queued"
    instead of "sent", and the shared faults (500, 502, 503, 429, 401, 400,
    "timeout", "drop", "slow", "bad_json") plus Mandrill's error names
    ("Invalid_Key", "PaymentRequired", "GeneralError", "ValidationError", ...).
    """

    extra_faults = frozenset(ERRORS)

    def __init__(self, *, api_key: str = "md-test-key", delay: float = 0.0,
                 slow_delay: float = 1.0, hang: float = 60.0) -> None:
        super().__init__(delay=delay, slow_delay=slow_delay, hang=hang)
        self.api_key = api_key
        self.received: list[Received] = []
        self.refusals: dict[str, tuple[str, str]] = {}  # address → (status, reject_reason)
        self.status = "sent"

    def reject(self, address: str, reason: str = "hard-bounce") -> None:
        """Answer "rejected" for this recipient (until heal())."""
        self.refusals[address.lower()] = ("rejected", reason)

    def invalid(self, address: str) -> None:
        """Answer "invalid" for this recipient (until heal())."""
        self.refusals[address.lower()] = ("invalid", "")

    def answer_queued(self, queued: bool = True) -> None:
        """Answer "queued" (taken, sent later) rather than "sent"."""
        self.status = "queued" if queued else "sent"

    def heal(self) -> None:
        super().heal()
        self.refusals.clear()
        self.status = "sent"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/1.0/messages/send-raw.json", self.guarded(self._send_raw))]

    def error_response(self, status: int | str) -> web.StreamResponse:
        if isinstance(status, str):
            return _error(status)
        if status in _STATUS_NAMES:
            return _error(_STATUS_NAMES[status])
        if status in (502, 503, 504):
            return web.Response(status=status, text=_GATEWAY_PAGE.format(status),
                                content_type="text/html")
        return web.Response(status=status, text="Too Many Requests" if status == 429 else "")

    async def _send_raw(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error("ValidationError", "You must specify a key value")
        if not isinstance(body, dict):
            return _error("ValidationError", "You must specify a key value")
        key = body.get("key")
        if not isinstance(key, str) or not secrets.compare_digest(key, self.api_key):
            return _error("Invalid_Key")
        raw = body.get("raw_message")
        if not isinstance(raw, str) or not raw:
            return _error("ValidationError", 'Validation error: {"raw_message":'
                          '"Sorry, this field can\'t be left blank."}')
        mime = raw.encode()
        recipients = self._recipients(body.get("to"), mime)
        if recipients is None:
            return _error("ValidationError", 'Validation error: {"to":"Please enter an array"}')
        answer: list[dict[str, Any]] = []
        taken: list[str] = []
        ids: list[str] = []
        for address in recipients:
            status, reason = self.refusals.get(address.lower(), (self.status, ""))
            entry: dict[str, Any] = {"email": address, "status": status,
                                     "_id": secrets.token_hex(16)}
            if status in ("rejected", "invalid"):
                entry["reject_reason"] = reason or None
            else:
                entry["reject_reason"] = None
                taken.append(address)
                ids.append(entry["_id"])
            answer.append(entry)
        if taken:
            fields = {k: v for k, v in body.items() if k != "raw_message"}
            self.received.append(Received(endpoint="send-raw", recipients=tuple(taken),
                                          mime=mime, id=ids[0], fields=fields))
        return web.json_response(answer)

    @staticmethod
    def _recipients(to: Any, mime: bytes) -> list[str] | None:
        """The `to` list, or the message's own To/Cc when none is given (as Mandrill does)."""
        if to is None:
            mail = BytesParser(policy=policy.default).parsebytes(mime, headersonly=True)
            headers = [str(v) for h in ("To", "Cc") for v in mail.get_all(h, [])]
            return [a for _, a in getaddresses(headers) if a]
        if not isinstance(to, list) or not all(isinstance(a, str) for a in to):
            return None
        return list(dict.fromkeys(to))


def _error(name: str, message: str | None = None) -> web.Response:
    code, default = ERRORS[name]
    return web.json_response({"status": "error", "code": code, "name": name,
                              "message": message or default}, status=500)
