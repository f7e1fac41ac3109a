"""A message built from the API's fields, rendered once at accept.

Built with `EmailMessage`; each header's value is written once, as it goes
out, by `headers.WIRE.wire_value`, so addresses keep their display names,
msg-ids stay msg-ids, text reads back as typed, and every header is folded by
its kind. The MIME tree is what the fields ask for and nothing more:

    text only                text/plain
    html only                text/html (no empty text part)
    text and html            multipart/alternative
    inline parts (cid:)      the html part becomes multipart/related
    attachments              multipart/mixed around all of it

Errors are ValidationError (400) naming the field, and TooLarge (413) when
the rendered message is over the limit: the limit counts the bytes that go
out (base64 included), not the decoded content.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from email.contentmanager import ContentManager, raw_data_manager
from email.generator import BytesGenerator
from email.headerregistry import Address, Group
from email.message import EmailMessage, MIMEPart
from io import BytesIO
from typing import Any

from ..errors import TooLarge, ValidationError
from .addresses import (
    ascii_domain,
    envelope,
    flatten,
    needs_smtputf8,
    parse_address,
    parse_address_list,
)
from .headers import (
    ADDRESS_HEADERS,
    MAX_HEADERS,
    TYPED,
    WIRE,
    WIRE_UTF8,
    WirePolicy,
    check_header_name,
    check_header_value,
)
from .model import DEFAULT_MAX_SIZE, MAX_RECIPIENTS, Message, new_message_id
from .reading import parse, read_summary, shown, summary
from .text import check_body_text, check_header_text

MAX_SUBJECT = 998
MAX_ATTACHMENTS = 100
CID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                       "!#$%&'*+-/=?^_`{|}~.@")


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment as the API gives it: decoded `content`, the
    `content_type` with its parameters, and for an inline part its
    `content_id` (without angle brackets)."""

    filename: str
    maintype: str
    subtype: str
    params: tuple[tuple[str, str], ...]
    content: bytes
    inline: bool = False
    content_id: str = ""


def parse_message(payload: Any, *, sender: str | Address, domain: str,
                  max_size: int = DEFAULT_MAX_SIZE, smtputf8: bool = True,
                  thread: tuple[str, tuple[str, ...]] | None = None) -> Message:
    """Validate an API payload and render it: a Message, or ValidationError
    (400) naming the field, or TooLarge (413).

    `sender` is the user's address, with their display name when they have
    one; `smtputf8` says whether some provider can carry a UTF-8 local part
    (else such an address is a 400). `thread` is (In-Reply-To msg-id,
    References msg-ids) for a reply, which the API works out from the message
    replied to (RFC 5322 §3.6.4).
    """
    if not isinstance(payload, dict):
        raise ValidationError("the body must be a JSON object", field=None)
    author = sender if isinstance(sender, Address) else parse_address(sender, "from",
                                                                      own_domain=domain)
    fields = {name: parse_address_list(payload.get(name), name, own_domain=domain)
              for name in ("to", "cc", "bcc", "reply_to")}
    recipients = tuple(dict.fromkeys(
        envelope(a) for name in ("to", "cc", "bcc") for a in flatten(fields[name])))
    if not recipients:
        raise ValidationError("at least one recipient is needed", field="to")
    if len(recipients) > MAX_RECIPIENTS:
        raise ValidationError(f"at most {MAX_RECIPIENTS} recipients", field="to")
    utf8_field = next((name for name in ("to", "cc", "bcc", "reply_to")
                       for a in flatten(fields[name]) if needs_smtputf8(a)), None)
    if utf8_field and not smtputf8:
        raise ValidationError("an address with a non-ASCII local part needs SMTPUTF8, which "
                              "no configured provider supports", field=utf8_field)
    wire = WIRE_UTF8 if utf8_field else WIRE
    ascii_only = utf8_field is None
    mail = EmailMessage(policy=wire)
    # Each header is written once, as it goes out (WirePolicy.wire_value),
    # and the summary is taken from the same values rather than read back.
    author = _wire_address(author, ascii_only)
    groups = {name: [_wire_group(g, ascii_only) for g in fields[name]]
              for name in ("to", "cc", "reply_to")}
    mail.set_raw("From", wire.wire_value("From", [Group(None, (author,))]))
    for name, header in (("to", "To"), ("cc", "Cc"), ("reply_to", "Reply-To")):
        if groups[name]:
            mail.set_raw(header, wire.wire_value(header, groups[name]))
    subject = check_header_text(_string(payload, "subject", MAX_SUBJECT), "subject")
    if subject:
        mail.set_raw("Subject", wire.wire_value("Subject", subject))
    date = datetime.now(UTC).replace(microsecond=0)
    mail.set_raw("Date", wire.wire_value("Date", date))
    message_id = new_message_id(domain)
    mail.set_raw("Message-ID", message_id)
    in_reply_to, references = _custom_headers(mail, wire, payload.get("headers"), thread,
                                              bool(groups["reply_to"]), ascii_only, domain)
    text = check_body_text(_string(payload, "text"), "text")
    html = check_body_text(_string(payload, "html"), "html")
    attachments = _attachments(payload.get("attachments"))
    _body(mail, text, html, attachments)
    for part in mail.walk():
        if part is not mail:
            del part["MIME-Version"]  # only the top level carries it (RFC 2045 §4)
    mime = render(mail)
    if len(mime) > max_size:
        raise TooLarge(f"the message is {len(mime)} bytes as it goes out, over the limit "
                       f"of {max_size}", field=None)
    shown_to, shown_cc = flatten(groups["to"]), flatten(groups["cc"])
    if all(_reads_back(a.display_name) for a in (author, *shown_to, *shown_cc)):
        head = summary(author=shown(author), to=[shown(a)[0] for a in shown_to],
                       cc=[shown(a)[0] for a in shown_cc], subject=subject,
                       date=date.timestamp(), message_id=message_id, in_reply_to=in_reply_to,
                       references=references, text=text, html=html,
                       has_attachments=any(not a.inline for a in attachments))
    else:
        head = read_summary(mail)
    return Message(mime=mime, sender=envelope(author), recipients=recipients,
                   message_id=message_id, smtputf8=not ascii_only,
                   bcc=tuple(str(a) for a in flatten(fields["bcc"])), head=head)


class _WireGenerator(BytesGenerator):
    """BytesGenerator that turns a body's line ends into the policy's in one
    pass: the stdlib writes each line and each line end on its own, which
    was a quarter of the time it takes to write a 100 KB message. The bytes
    are the same (the stdlib's own rule: every CR, LF or CRLF becomes one
    line end)."""

    def _write_lines(self, lines: str) -> None:
        if lines:
            # CRLF, then a CR left alone, then LF: each becomes the line end
            # (str.replace runs at memory speed, a regular expression does
            # not). A body the content manager wrote has no CR, and looking
            # for one character is a memchr, where a search for two is not.
            if "\r" in lines:
                lines = lines.replace("\r\n", "\n").replace("\r", "\n")
            self.write(lines.replace("\n", self._NL))  # type: ignore[attr-defined]


def render(mail: EmailMessage) -> bytes:
    """The message's bytes as they go out (`mail.as_bytes()`, the same bytes)."""
    out = BytesIO()
    _WireGenerator(out, mangle_from_=False, policy=mail.policy).flatten(mail)
    return out.getvalue()


def _reads_back(name: str) -> bool:
    """Whether a reader shows this display name as written: readers make runs
    of white space in a phrase one space and trim its ends (RFC 5322 §3.2.2),
    and Python's merges a Unicode space into the space beside it; such a name
    is read back from the message instead."""
    return name == " ".join(name.split())


def _wire_address(address: Address, ascii_only: bool) -> Address:
    """The address as a header carries it: without SMTPUTF8 the domain is its
    A-label (RFC 5890 §2.3.2.1), since a header domain cannot be encoded."""
    if not ascii_only or address.domain.isascii():
        return address
    return Address(address.display_name, address.username, ascii_domain(address.domain))


def _wire_group(group: Group, ascii_only: bool) -> Group:
    return Group(group.display_name, tuple(_wire_address(a, ascii_only)
                                           for a in group.addresses))


def _string(payload: dict[str, Any], key: str, limit: int | None = None) -> str:
    value = payload.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError("must be a string", field=key)
    if limit is not None and len(value) > limit:
        raise ValidationError(f"is longer than {limit} characters", field=key)
    return value


def _custom_headers(mail: EmailMessage, wire: WirePolicy, value: Any,
                    thread: tuple[str, tuple[str, ...]] | None, has_reply_to: bool,
                    ascii_only: bool, domain: str) -> tuple[str, str]:
    """Write the client's headers (and a reply's threading headers) into
    `mail`; returns the In-Reply-To and References text written ("" if none)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValidationError("must be an object of name: value", field="headers")
    if len(value) > MAX_HEADERS:
        raise ValidationError(f"at most {MAX_HEADERS} headers", field="headers")
    written: dict[str, str] = {}
    if thread is not None:
        in_reply_to, references = thread
        if not any(name.lower() == "in-reply-to" for name in value):
            written["in-reply-to"] = in_reply_to
            mail.set_raw("In-Reply-To", wire.wire_value("In-Reply-To", in_reply_to))
        if references and not any(name.lower() == "references" for name in value):
            written["references"] = " ".join(references)
            mail.set_raw("References", wire.wire_value("References", written["references"]))
    given: set[str] = set()
    for name, raw in value.items():
        where = f"headers.{name}"
        check_header_name(name, where)
        lower = name.lower()
        if lower in given:
            raise ValidationError("is given twice (header names ignore case)", field=where)
        given.add(lower)
        if lower == "reply-to" and has_reply_to:
            raise ValidationError("give Reply-To once (reply_to or headers)", field=where)
        text = check_header_value(name, raw, where)
        if lower in ADDRESS_HEADERS:
            groups = parse_address_list(text, where, own_domain=domain)
            mail.set_raw(name, wire.wire_value(name, [_wire_group(g, ascii_only)
                                                      for g in groups]))
        else:
            written[lower] = text
            mail.set_raw(name, wire.wire_value(name, text))
    return written.get("in-reply-to", ""), written.get("references", "")


def text_cte(text: str, line_limit: int = 78) -> str:
    """The transfer encoding that keeps a body readable: 7bit for short ASCII
    lines, quoted-printable while most characters are ASCII, else base64
    (RFC 2045 §6: the shortest readable form)."""
    if text.isascii() and _longest_line(text) <= line_limit:
        return "7bit"
    ascii_share = len(text.encode("ascii", "ignore")) / max(1, len(text))
    return "quoted-printable" if ascii_share >= 0.6 else "base64"


def _longest_line(text: str) -> int:
    # Lines as the email package cuts them when it encodes (bytes.splitlines:
    # CR, LF, CRLF), not str.splitlines, which also cuts at form feeds and
    # other separators that SMTP does not count. Without a CR, cutting at LF
    # alone is the same cut, and quicker.
    lines = text.split("\n") if "\r" not in text else text.encode("utf-8").splitlines()
    return max(map(len, lines), default=0)


def _set_text(part: MIMEPart, text: str, subtype: str = "plain") -> None:
    """The text set-handler of the email package's raw_data_manager, with
    `text_cte`'s choice of encoding: the same headers and the same payload.

    A 7bit body is written here, in one pass over text that is usually sent
    with LF line ends: the stdlib cuts the text into lines and joins them
    again, twice over (to choose, then to encode), which was a third of the
    time it took to build a 100 KB message."""
    cte = text_cte(text)
    if cte != "7bit":
        raw_data_manager.set_content(part, text, subtype, cte=cte)
        return
    # The payload the stdlib's encoder gives: every CR, LF or CRLF one LF,
    # and the last line ended.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # The header set_param("charset", "utf-8") would write, written once.
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part.set_payload(text if text.endswith("\n") else text + "\n")
    part["Content-Transfer-Encoding"] = cte


TEXT = ContentManager()
TEXT.add_set_handler(str, _set_text)


def set_bodies(mail: EmailMessage, text: str, html: str) -> None:
    """text/plain, text/html, or both as multipart/alternative; never an empty part
    beside a real one."""
    if html and text:
        mail.set_content(text, content_manager=TEXT)
        mail.add_alternative(html, "html", content_manager=TEXT)
    elif html:
        mail.set_content(html, "html", content_manager=TEXT)
    else:
        mail.set_content(text, content_manager=TEXT)


def _body(mail: EmailMessage, text: str, html: str, attachments: list[Attachment]) -> None:
    set_bodies(mail, text, html)
    inline = [a for a in attachments if a.inline]
    if inline:
        html_part = mail.get_body(preferencelist=("html",))
        if html_part is None:
            raise ValidationError("inline attachments are shown by the html body, which is "
                                  "missing", field="html")
        for att in inline:
            html_part.add_related(att.content, att.maintype, att.subtype,
                                  cid=f"<{att.content_id}>", disposition="inline",
                                  filename=att.filename, params=dict(att.params))
    for att in attachments:
        if att.inline:
            continue
        if (att.maintype, att.subtype) in (("message", "rfc822"), ("message", "global")):
            if mail.get_content_type() != "multipart/mixed":
                mail.make_mixed()
            # (typeshed has attach take the message's own class; MIME takes any part.)
            mail.attach(attached_message(att.filename, f"{att.maintype}/{att.subtype}",  # type: ignore[arg-type]
                                         att.content, mail.policy))
        else:
            mail.add_attachment(att.content, att.maintype, att.subtype,
                                filename=att.filename, params=dict(att.params))


def attached_message(filename: str, content_type: str, content: bytes,
                     wire: Any) -> MIMEPart:
    """An attached message as it was written: message/rfc822 is never
    base64-encoded (RFC 2046 §5.2.1), so its bytes go in 7bit or 8bit, with
    CRLF line ends."""
    part = MIMEPart(policy=wire)
    part["Content-Type"] = content_type
    part["Content-Disposition"] = "attachment"
    part.set_param("filename", filename, header="Content-Disposition")
    data = b"\r\n".join(content.splitlines()) + b"\r\n"
    part["Content-Transfer-Encoding"] = "7bit" if data.isascii() else "8bit"
    part.set_payload(data.decode("ascii", "surrogateescape"))
    return part


def _attachments(value: Any) -> list[Attachment]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError("must be a list", field="attachments")
    if len(value) > MAX_ATTACHMENTS:
        raise ValidationError(f"at most {MAX_ATTACHMENTS} attachments", field="attachments")
    out, cids = [], set()
    for i, item in enumerate(value):
        where = f"attachments[{i}]"
        if not isinstance(item, dict):
            raise ValidationError("must be an object", field=where)
        filename = item.get("filename")
        if not isinstance(filename, str) or not filename.strip() or len(filename) > 255:
            raise ValidationError("needs a filename of 1 to 255 characters",
                                  field=f"{where}.filename")
        check_header_text(filename, f"{where}.filename")
        maintype, subtype, params = _content_type(item.get("content_type"), where)
        content = item.get("content")
        if not isinstance(content, str):
            raise ValidationError("must be base64 text", field=f"{where}.content")
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("is not valid base64", field=f"{where}.content") from None
        inline = item.get("inline", False)
        if not isinstance(inline, bool):
            raise ValidationError("must be true or false", field=f"{where}.inline")
        cid = item.get("content_id", "")
        if inline or cid:
            if not isinstance(cid, str) or not cid.strip("<>") or not set(
                    cid.strip("<>")) <= CID_CHARS or len(cid) > 250:
                raise ValidationError("an inline attachment needs a content_id such as "
                                      "logo@example.com (RFC 2392)", field=f"{where}.content_id")
            cid = cid.strip("<>")
            if cid in cids:
                raise ValidationError("is used twice", field=f"{where}.content_id")
            cids.add(cid)
        if maintype == "message":
            _check_attached_message(data, f"{where}.content")
        out.append(Attachment(filename, maintype, subtype, params, data, inline, cid))
    return out


def _content_type(value: Any, where: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """`type/subtype; name=value ...` (RFC 2045 §5.1), parameters kept."""
    value = value or "application/octet-stream"
    field = f"{where}.content_type"
    if not isinstance(value, str):
        raise ValidationError("is not a MIME type", field=field)
    check_header_text(value, field)
    header = TYPED.header_factory("content-type", value)
    # Defects first: a value the parser could not read at all has no
    # maintype (headers.UnreadableHeader).
    if header.defects or "/" not in value.split(";")[0]:
        raise ValidationError("is not a MIME type such as text/csv; charset=utf-8", field=field)
    maintype, subtype = header.maintype, header.subtype
    if maintype == "multipart" or (maintype, subtype) in (("message", "partial"),
                                                           ("message", "external-body")):
        raise ValidationError(f"{maintype}/{subtype} parts are made by BitMail, not attached",
                              field=field)
    params = tuple((k, str(v)) for k, v in header.params.items())
    for _, decoded in params:  # RFC 2231 can encode any character, CR and LF too
        check_header_text(decoded, field)
    return maintype, subtype, params


def _check_attached_message(data: bytes, field: str) -> None:
    mail = parse(data)
    if not any(mail.get(h) for h in ("From", "Subject", "Date", "Message-ID")):
        raise ValidationError("is not an RFC 5322 message (no From, Subject, Date or "
                              "Message-ID header)", field=field)
