"""How a message's parts leave the server: downloads and inline images."""

from __future__ import annotations

import base64
import re
from urllib.parse import quote, unquote

from ..message import read_content, read_part

_NOT_TOKEN_SAFE = re.compile(r'[^\x20-\x7e]|["\\%]')
_CID_URL = re.compile(r"""(?i)\bcid:([^"'\s)>]+)""")


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback `filename` and the exact name as
    `filename*=UTF-8''…` (RFC 6266 §4.3, RFC 8187), so no name, however
    written (quotes, backslashes, non-ASCII), can break the header."""
    fallback = _NOT_TOKEN_SAFE.sub("_", filename).strip() or "attachment"
    exact = quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def with_inline_parts(html: str, mime: bytes) -> str:
    """The HTML with each `cid:` reference (RFC 2392) replaced by the part it
    names, as a data: URL.

    The mail's HTML runs in a sandboxed frame with an opaque origin, which
    sends no cookies; a data: URL needs no request, and the frame's policy
    allows images from data: only.
    """
    inline = {p.content_id: p.index for p in read_content(mime).parts if p.content_id}
    if not inline:
        return html

    def replace(match: re.Match[str]) -> str:
        index = inline.get(unquote(match.group(1)))
        found = read_part(mime, index) if index is not None else None
        if found is None:
            return match.group(0)
        part, data = found
        return f"data:{part.content_type};base64,{base64.b64encode(data).decode()}"

    return _CID_URL.sub(replace, html)
