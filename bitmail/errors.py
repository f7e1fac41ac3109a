"""The errors a client of BitMail can be shown.

Each carries its HTTP status and a stable code, so the web layer turns every
one of them into the same JSON shape in one middleware.
"""

from __future__ import annotations


class BitMailError(Exception):
    """A request BitMail refuses, with the reason and the field at fault."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    def to_json(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class ValidationError(BitMailError):
    status = 400
    code = "invalid"


class TooLarge(BitMailError):
    status = 413
    code = "too_large"


class Unauthorized(BitMailError):
    status = 401
    code = "unauthorized"


class Forbidden(BitMailError):
    status = 403
    code = "forbidden"


class NotFound(BitMailError):
    status = 404
    code = "not_found"


class Conflict(BitMailError):
    status = 409
    code = "conflict"


class RateLimited(BitMailError):
    """Too many attempts; `retry_after` whole seconds until the next may go
    (the HTTP answer's Retry-After header, RFC 9110 §10.2.3)."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int | None = None, **kw: str | None):
        super().__init__(message, **kw)
        self.retry_after = retry_after
