"""The message model: addresses, content, validation and the MIME form."""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from dataclasses import dataclass, field
from email import policy
from email.encoders import encode_base64
from email.header import Header
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesParser
from email.utils import formatdate, getaddresses, parseaddr
from typing import Any

from .errors import TooLarge, ValidationError

DEFAULT_MAX_SIZE = 25 * 1024 * 1024
MAX_RECIPIENTS = 500

# Deliberately plain: one @, a dotted domain with a TLD, no spaces or brackets.
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII without ':'


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """A validated message, ready to be stored and turned into MIME."""

    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    text: str = ""
    html: str = ""
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    message_id: str = ""
    date: float = field(default_factory=time.time)

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every envelope recipient, once, in order (bcc included)."""
        return tuple(dict.fromkeys(a.lower() for a in (*self.to, *self.cc, *self.bcc)))

    @property
    def size(self) -> int:
        return (
            len(self.subject) + len(self.text) + len(self.html)
            + sum(len(a.content) for a in self.attachments)
        )

    def to_mime(self) -> bytes:
        """The MIME form; built once at accept, so every provider and every
        retry sends the same bytes.

        Built with the classic (compat32) MIME classes: addresses here are
        plain ASCII addr-specs and other headers are encoded explicitly, and
        they take half the time of EmailMessage's header registry.
        """
        body: MIMEBase = MIMEText(self.text or "", "plain", "utf-8")
        if self.html:
            body = _multipart("alternative", body, MIMEText(self.html, "html", "utf-8"))
        if self.attachments:
            parts = [body]
            for att in self.attachments:
                maintype, _, subtype = att.content_type.partition("/")
                part = MIMEBase(maintype, subtype or "octet-stream")
                part.set_payload(att.content)
                encode_base64(part)
                part.add_header("Content-Disposition", "attachment",
                                filename=_rfc2231(att.filename))
                parts.append(part)
            body = _multipart("mixed", *parts)
        for name, value in (
            ("From", self.sender),
            ("To", ", ".join(self.to)),
            ("Cc", ", ".join(self.cc)),
            ("Subject", _encoded(self.subject)),
            ("Date", formatdate(self.date)),
            ("Message-ID", self.message_id),
            *((n, _encoded(v)) for n, v in self.headers),
        ):
            if value:
                body[name] = value
        return body.as_bytes(policy=_SMTP_7BIT)

    def to_json(self) -> dict[str, Any]:
        """The stored form of the message's content (attachments in base64)."""
        return {
            "from": self.sender,
            "to": list(self.to),
            "cc": list(self.cc),
            "bcc": list(self.bcc),
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "attachments": [
                {
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "size": len(a.content),
                    "content": base64.b64encode(a.content).decode(),
                }
                for a in self.attachments
            ],
            "message_id": self.message_id,
            "date": self.date,
        }


_SMTP_7BIT = policy.SMTP.clone(cte_type="7bit")


def _multipart(subtype: str, *parts: MIMEBase) -> MIMEMultipart:
    container = MIMEMultipart(subtype)
    for part in parts:
        del part["MIME-Version"]  # only the top level carries it
        container.attach(part)
    return container


def _encoded(value: str) -> str:
    return value if value.isascii() else Header(value, "utf-8").encode()


def _rfc2231(filename: str) -> str | tuple[str, str, str]:
    return filename if filename.isascii() else ("utf-8", "", filename)


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def check_address(value: str, field_name: str) -> str:
    """One address as `a@x`, from `a@x` or `Name <a@x>`; ValidationError if bad."""
    _, addr = parseaddr(value.strip())
    if not addr or not _ADDRESS.match(addr) or len(addr) > 254:
        raise ValidationError(f"{value.strip()!r} is not a valid e-mail address", field=field_name)
    local, _, domain = addr.rpartition("@")
    if len(local) > 64:
        raise ValidationError(f"{addr!r}: the part before @ is too long", field=field_name)
    return f"{local}@{domain.lower()}"


def parse_addresses(value: Any, field_name: str) -> tuple[str, ...]:
    """A list of addresses from `a@x; b@y` (commas work too) or a JSON list."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        parts = [p for p in re.split(r"[;,]", value) if p.strip()]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        parts = [p for v in value for p in re.split(r"[;,]", v) if p.strip()]
    else:
        raise ValidationError("must be a string of addresses or a list of them", field=field_name)
    for part in parts:
        _check_header_value(part, field_name)
    return tuple(dict.fromkeys(check_address(p, field_name) for p in parts))


def _check_header_value(value: str, field_name: str) -> None:
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValidationError("must not contain line breaks", field=field_name)


def _text(payload: dict, key: str, limit: int | None = None) -> str:
    value = payload.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError("must be a string", field=key)
    if limit is not None and len(value) > limit:
        raise ValidationError(f"is longer than {limit} characters", field=key)
    return value


def _attachments(value: Any) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValidationError("must be a list", field="attachments")
    out = []
    for i, item in enumerate(value):
        where = f"attachments[{i}]"
        if not isinstance(item, dict):
            raise ValidationError("must be an object", field=where)
        filename = item.get("filename")
        if not isinstance(filename, str) or not filename.strip() or len(filename) > 255:
            raise ValidationError("needs a filename", field=f"{where}.filename")
        _check_header_value(filename, f"{where}.filename")
        ctype = item.get("content_type") or "application/octet-stream"
        if not isinstance(ctype, str) or not re.match(r"^[\w.+-]+/[\w.+-]+$", ctype):
            raise ValidationError("is not a MIME type", field=f"{where}.content_type")
        content = item.get("content")
        if not isinstance(content, str):
            raise ValidationError("must be base64 text", field=f"{where}.content")
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("is not valid base64", field=f"{where}.content") from None
        out.append(Attachment(filename, ctype.lower(), data))
    return tuple(out)


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ValidationError("must be an object of name: value", field="headers")
    reserved = {"from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version",
                "content-type", "content-transfer-encoding"}
    out = []
    for name, val in value.items():
        where = f"headers.{name}"
        if not _HEADER_NAME.match(name) or name.lower() in reserved:
            raise ValidationError("is not a header that can be set", field=where)
        if not isinstance(val, str):
            raise ValidationError("must be a string", field=where)
        _check_header_value(val, where)
        out.append((name, val))
    return tuple(out)


def parse_message(
    payload: Any, *, sender: str, domain: str, max_size: int = DEFAULT_MAX_SIZE
) -> Message:
    """Validate an API payload into a Message; ValidationError names the field."""
    if not isinstance(payload, dict):
        raise ValidationError("the body must be a JSON object", field=None)
    to = parse_addresses(payload.get("to"), "to")
    cc = parse_addresses(payload.get("cc"), "cc")
    bcc = parse_addresses(payload.get("bcc"), "bcc")
    if not (to or cc or bcc):
        raise ValidationError("at least one recipient is needed", field="to")
    subject = _text(payload, "subject", 998)
    _check_header_value(subject, "subject")
    message = Message(
        sender=sender,
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        text=_text(payload, "text"),
        html=_text(payload, "html"),
        attachments=_attachments(payload.get("attachments")),
        headers=_headers(payload.get("headers")),
        message_id=new_message_id(domain),
    )
    if len(message.recipients) > MAX_RECIPIENTS:
        raise ValidationError(f"at most {MAX_RECIPIENTS} recipients", field="to")
    if message.size > max_size:
        raise TooLarge(f"the message is larger than {max_size} bytes", field="text")
    return message


def parse_mime(raw: bytes) -> dict[str, Any]:
    """The displayable parts of a received MIME message (for Inboxes)."""
    mail = BytesParser(policy=policy.default).parsebytes(raw)
    text_part = mail.get_body(preferencelist=("plain",))
    html_part = mail.get_body(preferencelist=("html",))
    attachments = []
    for part in mail.iter_attachments():
        data = part.get_payload(decode=True) or b""
        attachments.append({
            "filename": part.get_filename() or "attachment",
            "content_type": part.get_content_type(),
            "size": len(data),
            "content": base64.b64encode(data).decode(),
        })
    date_header = mail.get("Date")
    try:
        date = date_header.datetime.timestamp() if date_header else time.time()
    except (AttributeError, TypeError, ValueError):
        date = time.time()
    return {
        "from": str(mail.get("From", "")),
        "to": [a for _, a in getaddresses([str(v) for v in mail.get_all("To", [])])],
        "cc": [a for _, a in getaddresses([str(v) for v in mail.get_all("Cc", [])])],
        "subject": str(mail.get("Subject", "")),
        "text": text_part.get_content() if text_part else "",
        "html": html_part.get_content() if html_part else "",
        "attachments": attachments,
        "message_id": str(mail.get("Message-ID", "")),
        "date": date,
    }
