"""Received mail that arrives already taken apart, put back together as MIME.

Mailgun's `forward()` route posts a parsed form (the original headers, the
text and HTML bodies, the attachments and which of them are inline) rather
than the message. BitMail keeps every message as its bytes, so the form is
rebuilt into one message with the same headers, bodies and parts; the
structure follows `compose` (alternative, related for inline parts, mixed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import EmailMessage

from .compose import CID_CHARS, attached_message, render, set_bodies
from .filenames import safe_filename
from .headers import WIRE_UTF8
from .text import is_header_safe

# `type/subtype`, each a token (RFC 2045 §5.1).
_MIME_TYPE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers that describe the MIME structure, which is built anew.
_STRUCTURE = frozenset({"content-type", "content-transfer-encoding", "mime-version",
                        "content-disposition", "content-id"})


@dataclass(frozen=True, slots=True)
class ReceivedPart:
    """A part of a parsed form: decoded `content`; `content_id` (without
    angle brackets) for a part the HTML shows inline."""

    filename: str
    content_type: str
    content: bytes
    content_id: str = ""


def rebuild(headers: list[tuple[str, str]], text: str, html: str,
            parts: list[ReceivedPart]) -> bytes:
    """The message as MIME bytes (UTF-8 headers, RFC 6532): the original
    headers in order (a header that cannot be written is left out), then the
    bodies and parts."""
    mail = EmailMessage(policy=WIRE_UTF8)
    for name, value in headers:
        if name.lower() in _STRUCTURE or not is_header_safe(value):
            continue
        try:
            # A value the header parser cannot read is kept as text
            # (headers.UnreadableHeader), so the mail still arrives.
            mail[name] = value
        except (ValueError, TypeError, IndexError):
            continue  # a second header of a kind a message has once; the rest still arrives
    set_bodies(mail, text, html)
    html_part = mail.get_body(preferencelist=("html",))
    for index, part in enumerate(parts):
        # What the form says of a part goes into its headers: a type that is
        # not type/subtype, a name or Content-ID that could break a line, is
        # replaced (the content itself arrives as sent).
        content_type = part.content_type if _MIME_TYPE.match(part.content_type) \
            else "application/octet-stream"
        maintype, _, subtype = content_type.lower().partition("/")
        filename = part.filename if is_header_safe(part.filename) \
            else safe_filename(part.filename, content_type, index)
        cid = part.content_id if set(part.content_id) <= CID_CHARS else ""
        if maintype == "message" and subtype in ("rfc822", "global"):
            if mail.get_content_type() != "multipart/mixed":
                mail.make_mixed()
            # (typeshed has attach take the message's own class; MIME takes any part.)
            mail.attach(attached_message(filename, content_type,  # type: ignore[arg-type]
                                         part.content, mail.policy))
        elif cid and html_part is not None:
            html_part.add_related(part.content, maintype, subtype, cid=f"<{cid}>",
                                  disposition="inline", filename=filename)
        else:
            mail.add_attachment(part.content, maintype, subtype, filename=filename)
    for sub in mail.walk():
        if sub is not mail:
            del sub["MIME-Version"]
    return render(mail)
