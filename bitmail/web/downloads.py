"""How a message's parts leave the server: downloads and inline images."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from email.message import EmailMessage
from html.parser import HTMLParser
from urllib.parse import quote, unquote

from ..message import Part
from ..message.reading import read_parts

_NOT_TOKEN_SAFE = re.compile(r'[^\x20-\x7e]|["\\%]')
_CID_URL = re.compile(r"""(?i)\bcid:([^"'\s)>]+)""")
# A doctype (after a byte order mark, white space and comments): what comes
# before it must stay before it, or the document renders in quirks mode.
_DOCTYPE = re.compile(r"\A\ufeff?\s*(?:<!--.*?-->\s*)*<!doctype[^>]*>", re.IGNORECASE | re.DOTALL)
NEW_TAB = '<base target="_blank">'
# A start tag's attributes as the browser's tokenizer reads them (HTML
# §13.2.5, the attribute states): html.parser finds where a tag is, but
# reads attributes its own way (Python's white space, \xa0 included), and
# which attribute is a target is the browser's call. White space is the
# tokenizer's (CR is an LF by then); a name runs to white space, "/", ">" or
# "=" (save a first "="); a value is quoted, or runs to white space or ">".
_TAG_NAME = re.compile(r"<[^\t\n\f\r />]+")
_ATTRIBUTE = re.compile(r"""
    [\t\n\f\r /]*
    (?P<name>[^\t\n\f\r />][^\t\n\f\r />=]*)
    (?:[\t\n\f\r ]*=[\t\n\f\r ]*(?:"[^"]*"|'[^']*'|[^\t\n\f\r >]*))?
    """, re.VERBOSE)
_TAG_END = re.compile(r"[\t\n\f\r /]*>")
_MAY_TARGET = re.compile("(?i)target")


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback `filename` and the exact name as
    `filename*=UTF-8''…` (RFC 6266 §4.3, RFC 8187), so no name, however
    written (quotes, backslashes, non-ASCII), can break the header."""
    fallback = _NOT_TOKEN_SAFE.sub("_", filename).strip() or "attachment"
    exact = quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def with_links_in_new_tabs(html: str) -> str:
    """The HTML with `<base target="_blank">` first (after its doctype), and
    no `target` on its `a` and `area` elements, so each link opens in a new
    tab: the mail's frame may not navigate itself (the page's frame-src) or
    the page (its sandbox), so `_self`, `_parent`, `_top` and a frame's name
    would make dead links. A link's own target comes before the document's
    base target, and of the base elements with a target the first decides
    ("get an element's target", HTML §4.6; HTML §4.2.3), so a base the mail
    has comes too late. Nothing else in the HTML changes."""
    html = _without_link_targets(html)
    found = _DOCTYPE.match(html)
    at = found.end() if found else 0
    return f"{html[:at]}{NEW_TAB}{html[at:]}"


# Elements whose content the browser reads as text up to their end tag (HTML
# §13.2.5: RCDATA title and textarea; RAWTEXT style, xmp, iframe, noembed,
# noframes; script). html.parser knows only script and style: a tag-like text
# inside the others is shown as written and must stay so. (noscript is read
# as markup: the mail's frame runs no scripts.)
_TEXT_ONLY = frozenset({"title", "textarea", "style", "xmp", "iframe", "noembed", "noframes",
                        "script"})


class _TargetedLinks(HTMLParser):
    """Where the start tags of `a` and `area` that may carry a `target` are
    (comments and the text-only elements' content skipped)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.found: list[tuple[int, int, str]] = []  # (line, column, the tag's text)
        self._plaintext = False  # after <plaintext> everything is text (§13.2.5.5)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._plaintext:
            return
        text = self.get_starttag_text()
        if tag in ("a", "area") and text and _MAY_TARGET.search(text):
            line, column = self.getpos()
            self.found.append((line, column, text))
        elif tag in _TEXT_ONLY:
            self.set_cdata_mode(tag)
        elif tag == "plaintext":
            self._plaintext = True


def _without_link_targets(html: str) -> str:
    if not _MAY_TARGET.search(html):
        return html
    parser = _TargetedLinks()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # html.parser on badly broken markup
        pass  # the tags found before it gave up are still right
    if not parser.found:
        return html
    # getpos() counts lines at "\n" only, and columns in characters.
    line_starts = [0, *(m.end() for m in re.finditer("\n", html))]
    out: list[str] = []
    done = 0
    for line, column, tag in parser.found:
        start = line_starts[line - 1] + column
        if html[start:start + len(tag)] != tag:
            continue  # not where the parser says: leave the tag as it is
        out += (html[done:start], _without_target(tag))
        done = start + len(tag)
    out.append(html[done:])
    return "".join(out)


def _without_target(tag: str) -> str:
    """The start tag without its `target` attributes, every other character
    as it was; unchanged where its attributes do not read to its end."""
    name = _TAG_NAME.match(tag)
    if name is None:
        return tag
    kept: list[str] = []
    done, at = 0, name.end()
    while attribute := _ATTRIBUTE.match(tag, at):
        named = attribute["name"]
        # The tokenizer lowercases ASCII letters only (str.lower does more).
        if named.isascii() and named.lower() == "target":
            kept.append(tag[done:attribute.start("name")])
            done = attribute.end()
        at = attribute.end()
    if not _TAG_END.fullmatch(tag, at):
        return tag
    kept.append(tag[done:])
    return "".join(kept)


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
