"""How a message's parts leave the server: downloads and inline images."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from email.message import EmailMessage
from urllib.parse import quote, unquote

from ..message import Part
from ..message.reading import read_parts

_NOT_TOKEN_SAFE = re.compile(r'[^\x20-\x7e]|["\\%]')
_CID_URL = re.compile(r"""(?i)\bcid:([^"'\s)>]+)""")
# A doctype (after a byte order mark, white space and comments): what comes
# before it must stay before it, or the document renders in quirks mode.
_DOCTYPE = re.compile(r"\A\ufeff?\s*(?:<!--.*?-->\s*)*<!doctype[^>]*>", re.IGNORECASE | re.DOTALL)
NEW_TAB = '<base target="_blank">'


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback `filename` and the exact name as
    `filename*=UTF-8''…` (RFC 6266 §4.3, RFC 8187), so no name, however
    written (quotes, backslashes, non-ASCII), can break the header."""
    fallback = _NOT_TOKEN_SAFE.sub("_", filename).strip() or "attachment"
    exact = quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def with_links_in_new_tabs(html: str) -> str:
    """The HTML with `<base target="_blank">` first (after its doctype), so
    each link opens in a new tab: the mail's frame may not navigate itself
    (the page's frame-src) or the page (its sandbox). The first base element
    with a target decides (HTML §4.2.3), so a base the mail has comes too late.
    A link's own `target` still wins; `_self`, `_parent` and `_top` stay dead."""
    found = _DOCTYPE.match(html)
    at = found.end() if found else 0
    return f"{html[:at]}{NEW_TAB}{html[at:]}"


def with_inline_parts(html: str, mail: EmailMessage, parts: Sequence[Part],
                      budget: int) -> str:
    """The HTML with each `cid:` reference (RFC 2392) to one of `parts`
    replaced by that part as a data: URL, at most `budget` characters of
    data: URLs in all.

    The mail's HTML runs in a sandboxed frame with an opaque origin, which
    sends no cookies; a data: URL needs no request, and the frame's policy
    allows images from data: only. Each part is read once, however often it
    is named, and the budget bounds the answer: a message naming one image
    thousands of times would otherwise make an answer thousands of times its
    size. A reference past the budget is left as it is (a missing image).
    """
    inline = {p.content_id: p.index for p in parts if p.content_id}
    named = {inline[cid] for cid in map(unquote, _CID_URL.findall(html)) if cid in inline}
    if not named:
        return html
    urls = {index: f"data:{part.content_type};base64,{base64.b64encode(data).decode()}"
            for index, (part, data) in read_parts(mail, named).items()}
    left = budget

    def replace(match: re.Match[str]) -> str:
        nonlocal left
        index = inline.get(unquote(match.group(1)))
        url = urls.get(index) if index is not None else None
        if url is None or len(url) > left:
            return match.group(0)
        left -= len(url)
        return url

    return _CID_URL.sub(replace, html)
