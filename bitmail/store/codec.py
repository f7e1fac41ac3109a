"""Documents to JSON text and back, for both stores: orjson (several times
faster than the standard library on the documents the store writes for every
message), with the standard library for what orjson refuses (integers over
64 bits, keys that are not strings)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    """Compact JSON text; non-ASCII stays as it is (UTF-8 in the store)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)
