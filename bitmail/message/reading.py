"""The one MIME reader: what pages, search and downloads need, from the bytes.

Every message BitMail keeps is its bytes (`Message.mime`, a received
message's MIME). Nothing here changes them: it reads headers with
`email.headerregistry` and walks the MIME tree (RFC 2045/2046) to find the
text and HTML bodies and the other parts (attachments and inline parts, each
with an index that stays the same for the same bytes).
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesParser
from html.parser import HTMLParser
from typing import Any

from .addresses import split_list
from .filenames import safe_filename
from .headers import READ, unreadable

PREVIEW = 140  # characters of body text a folder row shows
_CONTROLS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class Part:
    """A part other than the bodies: `index` in document order, a safe
    `filename`, the `content_type` (without parameters), decoded `size` in
    bytes, `content_id` without angle brackets ("" when none), and whether it
    is shown `inline` (a `cid:` image of the HTML)."""

    index: int
    filename: str
    content_type: str
    size: int
    content_id: str
    inline: bool

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "filename": self.filename,
                "content_type": self.content_type, "size": self.size,
                "content_id": self.content_id, "inline": self.inline}


@dataclass(frozen=True, slots=True)
class Content:
    """The readable content: bodies as text, and every other part."""

    text: str
    html: str
    parts: tuple[Part, ...]


def parse(raw: bytes) -> EmailMessage:
    mail = BytesParser(policy=READ).parsebytes(raw)
    assert isinstance(mail, EmailMessage)
    return mail


def read_summary(raw: bytes | EmailMessage) -> dict[str, Any]:
    """What folders and search show of a message (see `summary`), read from
    its headers and bodies. Given the message already parsed, nothing is
    parsed again."""
    mail = parse(raw) if isinstance(raw, bytes) else raw
    content = read_content(mail)
    from_addresses = _addresses(mail, "From")
    return summary(
        author=from_addresses[0] if from_addresses else (_header(mail.get("From")), ""),
        to=[display for display, _ in _addresses(mail, "To")],
        cc=[display for display, _ in _addresses(mail, "Cc")],
        subject=str(mail.get("Subject") or ""), date=_date(mail),
        message_id=str(mail.get("Message-ID") or ""),
        in_reply_to=mail.get("In-Reply-To"), references=mail.get("References"),
        text=content.text, html=content.html,
        has_attachments=any(not p.inline for p in content.parts))


def summary(*, author: tuple[str, str], to: list[str], cc: list[str], subject: str,
            date: float, message_id: str, in_reply_to: object, references: object,
            text: str, html: str, has_attachments: bool) -> dict[str, Any]:
    """The summary's fields: `from` (display form), `from_address`, `to` and
    `cc` (display forms), `subject`, `date` (seconds since the epoch),
    `message_id`, `in_reply_to`, `references` (lists of msg-ids), `preview`
    (the first words of the text, else of the HTML), `has_attachments`.
    Composing fills it from the fields it wrote; reading, from the bytes."""
    return {
        "from": author[0],
        "from_address": author[1],
        "to": to,
        "cc": cc,
        # Readers, the standard library's among them, drop the white space
        # before the first word; the summary shows what they show.
        "subject": _header(subject).lstrip(" "),
        "date": date,
        "message_id": _header(message_id).strip(),
        "in_reply_to": _msg_ids(in_reply_to),
        "references": _msg_ids(references),
        "preview": _preview(text or html_to_text(html)),
        "has_attachments": has_attachments,
    }


def _preview(text: str) -> str:
    """The first PREVIEW characters of the text, its white space runs made
    one space; only as much of the text is read as that takes."""
    n = PREVIEW * 4
    while True:
        # Always a prefix of the whole text's words: a word cut at the end
        # is the start of the word.
        words = " ".join(text[:n].split())
        if len(words) >= PREVIEW or n >= len(text):
            return words[:PREVIEW]
        n *= 4


def shown(address: Address) -> tuple[str, str]:
    """(display form, addr-spec) of an address, as the summary shows it."""
    return _header(str(address)), _utf8(address.addr_spec)


def read_content(mail: EmailMessage | bytes) -> Content:
    """The text and HTML bodies (as `get_body` chooses them, RFC 2046 §5.1.4)
    and every other leaf part, in order; a message/rfc822 part is one part."""
    if isinstance(mail, bytes):
        mail = parse(mail)
    text_part = mail.get_body(preferencelist=("plain",))
    html_part = mail.get_body(preferencelist=("html",))
    bodies = {id(p) for p in (text_part, html_part) if p is not None}
    parts = tuple(_describe(i, p) for i, p in
                  enumerate(p for p in _leaves(mail) if id(p) not in bodies))
    return Content(text=_text_of(text_part), html=_text_of(html_part), parts=parts)


def read_part(raw: bytes | EmailMessage, index: int) -> tuple[Part, bytes] | None:
    """The part at `index` (as read_content numbers them) and its decoded bytes."""
    return read_parts(raw, (index,)).get(index)


def read_parts(raw: bytes | EmailMessage,
               indexes: Collection[int]) -> dict[int, tuple[Part, bytes]]:
    """index → (part, decoded bytes) for each of `indexes` that names a part
    (as read_content numbers them), from one parse of the message."""
    mail = parse(raw) if isinstance(raw, bytes) else raw
    text_part = mail.get_body(preferencelist=("plain",))
    html_part = mail.get_body(preferencelist=("html",))
    bodies = {id(p) for p in (text_part, html_part) if p is not None}
    leaves = [p for p in _leaves(mail) if id(p) not in bodies]
    # Only the parts asked for are decoded (read_content's numbering: the
    # leaves but the bodies), not every attachment beside them.
    return {i: (_describe(i, leaves[i]), _bytes_of(leaves[i]))
            for i in indexes if 0 <= i < len(leaves)}


def html_to_text(html: str) -> str:
    """The words of an HTML document on one line, for previews and search
    (not for display): `html_as_text` without link addresses, its white
    space made single spaces."""
    return " ".join(html_as_text(html, links=False).split())


def html_as_text(html: str, *, links: bool = True) -> str:
    """An HTML body as plain text to quote in a reply or a forward: its words,
    an empty line between paragraphs, a line per list item (`- `), table row
    or line break, and (with `links`) a link's address after its words (`more
    <https://...>`). Scripts, styles and the head are left out."""
    if not html:
        return ""
    reader = _Lines(links)
    try:
        reader.feed(html)
        reader.close()
    except (AssertionError, ValueError):  # html.parser on badly broken markup
        pass
    lines = (line.strip(" \t") for line in "".join(reader.out).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


class _Lines(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
    _PARAGRAPHS = frozenset({"blockquote", "dl", "figure", "h1", "h2", "h3", "h4", "h5", "h6",
                             "hr", "ol", "p", "pre", "table", "ul"})
    _LINES = frozenset({"address", "article", "aside", "dd", "div", "dt", "fieldset", "footer",
                        "form", "header", "li", "main", "nav", "section", "tr"})
    _LINK = re.compile(r"(?i)(https?|mailto):")

    def __init__(self, links: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._show_links = links
        self._skipping = 0
        self._pre = 0
        self._breaks = 0  # line ends owed before the next words
        self._links: list[tuple[str, int]] = []  # (href, where its words start)

    def _gap(self, tag: str) -> None:
        gap = 2 if tag in self._PARAGRAPHS else 1 if tag in self._LINES else 0
        self._breaks = max(self._breaks, gap)

    def _emit(self, text: str, *, keep: bool = False) -> None:
        if self._breaks and not keep and not text.strip():
            return  # white space between blocks
        if self._breaks and self.out:
            self.out.append("\n" * self._breaks)
        self._breaks = 0
        self.out.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        if self._skipping:
            return
        if tag == "br":
            self._emit("\n", keep=True)
            return
        self._gap(tag)
        if tag == "pre":
            self._pre += 1
        elif tag == "li":
            self._emit("- ")
        elif tag in ("td", "th"):
            self._emit(" ")
        elif tag == "a":
            href = (dict(attrs).get("href") or "").strip()
            self._links.append((href, len(self.out)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
            return
        if self._skipping:
            return
        if tag == "pre" and self._pre:
            self._pre -= 1
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            words = "".join(self.out[start:])
            shown = href[7:] if href.lower().startswith("mailto:") else href
            if self._show_links and self._LINK.match(href) and shown not in words:
                self._emit(f" <{href}>")
        self._gap(tag)

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._emit(data if self._pre else re.sub(r"\s+", " ", data), keep=bool(self._pre))


def _leaves(part: EmailMessage) -> Iterator[EmailMessage]:
    """Leaf parts in document order; an attached message is one leaf."""
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        for sub in part.iter_parts():
            yield from _leaves(sub)  # type: ignore[arg-type]
    else:
        yield part


def _describe(index: int, part: EmailMessage) -> Part:
    content_type = part.get_content_type()
    cid = _header(part.get("Content-ID")).strip().strip("<>")
    disposition = part.get_content_disposition()
    inline = bool(cid) and disposition != "attachment"  # what a cid: URL shows
    try:
        name = part.get_filename()
    except (TypeError, ValueError, LookupError):
        name = None
    if not name and content_type == "message/rfc822":
        inner = part.get_payload(0) if part.is_multipart() else None
        subject = _header(inner.get("Subject")) if isinstance(inner, Message) else ""
        name = f"{subject or 'message'}.eml"
    return Part(index=index, filename=safe_filename(name, content_type, index),
                content_type=content_type, size=len(_bytes_of(part)), content_id=cid,
                inline=inline)


def _bytes_of(part: EmailMessage) -> bytes:
    if part.get_content_type() == "message/rfc822" and part.is_multipart():
        inner = part.get_payload(0)
        return inner.as_bytes(policy=policy.SMTP.clone(refold_source="none"))  # type: ignore[union-attr]
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _text_of(part: MIMEPart | None) -> str:
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):
        # An unknown or broken charset: show what can be shown.
        raw = part.get_payload(decode=True)
        content = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
    # On the wire every line ends in CRLF (RFC 5322 §2.3); pages want "\n".
    return content.replace("\r\n", "\n") if isinstance(content, str) else ""


def _header(value: Any) -> str:
    return "" if value is None else _CONTROLS.sub(" ", _utf8(str(value)))


def _utf8(text: str) -> str:
    """The parser keeps raw 8-bit header bytes as surrogate escapes; UTF-8
    headers (RFC 6532) are text, anything else shows as U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _addresses(mail: EmailMessage, name: str) -> list[tuple[str, str]]:
    """(display form, addr-spec) of every address in every `name` header."""
    return [shown(a) for header in mail.get_all(name, []) for a in _readable(name, header)
            if a.addr_spec != "<>"]


def _readable(name: str, header: Any) -> tuple[Address, ...]:
    """The addresses of an address header. One the parser could not read as
    a whole (headers.UnreadableHeader: Python 3.11 raises on `b@[x`, an
    unterminated domain-literal) is read address by address, so a broken
    address hides only itself, not the others beside it."""
    if unreadable(header):
        pieces = [READ.header_factory(name, piece) for piece in split_list(header.source)]
        return tuple(a for piece in pieces if not unreadable(piece) for a in piece.addresses)
    return tuple(header.addresses)


def _msg_ids(value: Any) -> list[str]:
    return re.findall(r"<[^<>\s]+>", _utf8(str(value))) if value is not None else []


def _date(mail: EmailMessage) -> float:
    header = mail.get("Date")
    try:
        return header.datetime.timestamp() if header is not None else time.time()
    except (AttributeError, TypeError, ValueError, OverflowError):
        return time.time()
