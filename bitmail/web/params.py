"""Query parameters read once, checked, and refused with the parameter's name."""

from __future__ import annotations

from typing import overload

from aiohttp import web

from ..errors import ValidationError

# Cursors are store sequence numbers: SQLite's INTEGER and PostgreSQL's
# bigint both stop at 2**63 - 1, and a larger number would fail in the store.
MAX_CURSOR = 2**63 - 1


@overload
def query_int(request: web.Request, name: str, default: int, *, minimum: int,
              maximum: int, cap: bool = False) -> int: ...


@overload
def query_int(request: web.Request, name: str, default: None, *, minimum: int,
              maximum: int, cap: bool = False) -> int | None: ...


def query_int(request: web.Request, name: str, default: int | None, *, minimum: int,
              maximum: int, cap: bool = False) -> int | None:
    """The whole number in `?name=`, or `default` when absent.

    Below `minimum`, or above `maximum` (unless `cap`, which brings it down to
    `maximum`), or not a whole number: ValidationError naming `name`.
    """
    text = request.query.get(name)
    if text is None:
        return default
    text = text.strip()
    if not (text.isdigit() or (text[:1] == "-" and text[1:].isdigit())) or len(text) > 30:
        raise ValidationError("must be a whole number", field=name)
    value = int(text)
    if value < minimum:
        raise ValidationError(f"must be at least {minimum}", field=name)
    if value > maximum:
        if not cap:
            raise ValidationError(f"must be at most {maximum}", field=name)
        value = maximum
    return value
