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


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, refusing documents nested deeper than `max_depth`.

    Raises ValueError (json.JSONDecodeError for bad JSON, JSONTooDeep for too
    deep) and UnicodeDecodeError for bytes that are not UTF-8.
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
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise JSONTooDeep(f"nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return value
