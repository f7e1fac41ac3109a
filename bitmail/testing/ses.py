"""A loopback fake of Amazon SES's v2 `SendEmail` call, with fault injection.

moto's server is the one to check what SES makes of a message; it cannot
throttle, time out or refuse credentials. This fake can: it answers
`POST /v2/email/outbound-emails` with `{"MessageId": ...}`, or with SES's own
errors on command — the JSON body `{"__type", "message"}` and the
`x-amzn-ErrorType` header that botocore reads the error code from.

It checks no signature: `fail_next(1, 401)` stands for credentials SES refuses.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from aiohttp import web

from .faults import GENERIC_FAULTS, Answer, FakeService, FaultKind, Received

__all__ = ["ERRORS", "FakeSES", "error_answer"]

# fault → (HTTP status, error code, message), as SES answers them.
ERRORS: dict[int | str, tuple[int, str, str]] = {
    500: (500, "InternalFailure", "The request processing has failed because of an "
                                  "unknown error, exception or failure."),
    503: (503, "ServiceUnavailable", "Service is unable to handle request."),
    429: (429, "TooManyRequestsException", "Too many requests."),
    401: (403, "UnrecognizedClientException",
          "The security token included in the request is invalid."),
    400: (400, "BadRequestException", "Invalid request."),
    "Throttling": (400, "Throttling", "Maximum sending rate exceeded."),
    "MessageRejected": (400, "MessageRejected", "Illegal address"),
    "SandboxRecipient": (400, "MessageRejected",
                         "Email address is not verified. The following identities failed "
                         "the check in region US-EAST-1: cc@example.org"),
    "AccountSuspended": (400, "AccountSuspendedException", "Your account has been suspended."),
}


class FakeSES(FakeService):
    """SES's v2 send call on 127.0.0.1: `async with FakeSES() as fake`.

    `sent` lists the request bodies it accepted, `received` the same as
    Received entries (envelope, MIME, the id it answered). Commands: the shared
    faults ("timeout", "drop", "slow", "bad_json"), the status codes and names
    in ERRORS, and `reject(address)` — a request naming that recipient is
    refused whole, as SES does (400 MessageRejected), until heal().
    """

    extra_faults = frozenset(k for k in ERRORS if isinstance(k, str))

    def __init__(self, *, delay: float = 0.0, slow_delay: float = 1.0,
                 hang: float = 60.0) -> None:
        super().__init__(delay=delay, slow_delay=slow_delay, hang=hang)
        self.sent: list[dict[str, Any]] = []
        self.received: list[Received] = []

    def _check(self, kind: FaultKind) -> None:
        # Only the statuses SES's answers are written for (error_response needs them).
        if isinstance(kind, Answer) or kind in ERRORS or kind in GENERIC_FAULTS:
            return
        raise ValueError(f"unknown fault {kind!r} (known: {', '.join(map(str, ERRORS))}, "
                         f"{', '.join(sorted(GENERIC_FAULTS))})")

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v2/email/outbound-emails", self.guarded(self._send))]

    def error_response(self, status: int | str) -> web.StreamResponse:
        http, code, message = ERRORS[status]
        return _error(http, code, message)

    async def _send(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        recipients = tuple(body.get("Destination", {}).get("ToAddresses", []))
        if any(r.lower() in self.rejected for r in recipients):
            return _error(400, "MessageRejected", "Email address is on the suppression list")
        try:
            mime = base64.b64decode(body["Content"]["Raw"]["Data"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            return _error(400, "BadRequestException", "Raw content is missing or not base64.")
        mid = secrets.token_hex(16)
        self.sent.append(body)
        self.received.append(Received(endpoint="outbound-emails", recipients=recipients,
                                      mime=mime, id=mid,
                                      fields={k: v for k, v in body.items() if k != "Content"}))
        return web.json_response({"MessageId": mid})


def error_answer(http: int, code: str, message: str) -> Answer:
    """SES's error `code` with `message`, as a canned Answer for fail_next/fail_always."""
    return Answer(http, json.dumps({"__type": code, "message": message}),
                  headers=(("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/"),))


def _error(http: int, code: str, message: str) -> web.Response:
    return web.Response(status=http, text=json.dumps({"__type": code, "message": message}),
                        content_type="application/json",
                        headers={"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/"})
