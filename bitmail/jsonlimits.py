"""JSON from the outside world, with a bound on how deeply it nests.

`json.loads` recurses once per bracket: 100,000 of them raise RecursionError
from deep inside the decoder, and a document just under the interpreter's
limit would make every later recursive walk (containment, re-encoding) fail
instead. Nothing BitMail reads nests deeper than a few levels.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class JSONTooDeep(ValueError):
    """The JSON nests objects and arrays deeper than allowed."""


class JSONNotText(ValueError):
    """A string of the JSON is not Unicode text: a lone surrogate escape
    (`"\\ud800"`), which no UTF-8 encoder, database or hash takes."""


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH, text_only: bool = False) -> Any:
    """json.loads, refusing documents nested deeper than `max_depth`, and with
    `text_only` any key or string holding a lone surrogate (RFC 8259 §8.2
    leaves such strings' behaviour unpredictable). The API checks its strings
    field by field, to name the field; a webhook's payload is refused whole.

    Raises ValueError (json.JSONDecodeError for bad JSON, JSONTooDeep for too
    deep, JSONNotText) and UnicodeDecodeError for bytes that are not UTF-8.
    """
    try:
        value = json.loads(data)
    except RecursionError:
        raise JSONTooDeep(f"nested deeper than {max_depth} levels") from None
    # Walked with a stack of its own, not recursion, so any depth is safe to check.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
            if text_only:
                _check_text(*node)
        elif isinstance(node, list):
            children = node
        else:
            if text_only and isinstance(node, str):
                _check_text(node)
            continue
        if depth > max_depth:
            raise JSONTooDeep(f"nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)) or (text_only and isinstance(child, str)))
    return value


def _check_text(*strings: str) -> None:
    for text in strings:
        if not text.isascii():  # a flag of the string: an ASCII one costs nothing
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise JSONNotText(f"a string holds a lone surrogate U+{ord(text[exc.start]):04X}"
                                  ) from None
