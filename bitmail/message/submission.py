"""A message submitted as MIME (SMTP submission), kept as it was written.

A submission server may change only what RFC 6409 §8 lets it change; BitMail
makes exactly these changes, on the bytes, and nothing else:

- adds `Message-ID` (§8.3) and `Date` (§8.2) when they are missing, and
  `From` (the authenticated user) when it is missing; an empty From (only
  white space) counts as missing and is removed (RFC 5322 §3.6 requires a
  From of at least one mailbox, and §8 lets the server mend a message so);
- removes `Bcc` lines (the recipients stay in the envelope, RFC 5322 §3.6.3);
- replaces a Message-ID that another message already has (`replace_message_id`),
  so delivery events can never be matched to somebody else's mail.

Who may send is enforced, not rewritten: every mailbox of `From`, `Sender`,
`Resent-From` and `Resent-Sender` must be the authenticated user's address,
written so that every reader finds the same mailboxes, else the message is
refused (SubmissionRefused, which the SMTP server answers with 550 5.7.1).
A display name is the sender's business: an encoded-word in one is not
checked, whatever its charset (RFC 2047 §6.2); one in an address is refused.
A header line holding a control character, a field name with white space
before its colon (the obsolete form of RFC 5322 §4.5, which readers read
differently), a second From, Sender, Date or Message-ID, a field the parser
cannot read, or a Message-ID that is not a msg-id, is refused too: the
fields BitMail checks are the fields that go out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.errors import (
    NonASCIILocalPartDefect,
    ObsoleteHeaderDefect,
    UndecodableBytesDefect,
)
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from ..errors import TooLarge, ValidationError
from .addresses import envelope
from .headers import MSG_ID, TYPED, unreadable
from .model import DEFAULT_MAX_SIZE, Message, new_message_id
from .reading import parse, read_summary

# A field name and its colon, nothing between (RFC 5322 §2.2, §3.6.8).
_FIELD_NAME = re.compile(rb"^([!-9;-~]+):")
# The obsolete form, white space before the colon (RFC 5322 §4.5): readers
# differ on it. Python's parser takes `From :` for a misplaced mbox "From "
# line and drops it, and `From\t:` for the start of the body; others read a
# From field. A check that reads one way while the field goes out to be read
# the other way checks nothing, so it is refused (a generator "MUST NOT"
# write obsolete syntax, RFC 5322 §4).
_OBSOLETE_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]+:")
# Fields that name who sends (RFC 5322 §3.6.2, §3.6.6).
_SENDER_FIELDS = frozenset({"from", "sender", "resent-from", "resent-sender"})
# Fields BitMail checks or adds, which RFC 5322 §3.6 allows once in a
# message: with two, a reader may take the one BitMail did not check.
_ONCE = ("from", "sender", "date", "message-id")
# Defects that leave every reader reading a sender field alike (_mailboxes):
# UTF-8 text, which the bytes parser keeps undecoded (RFC 6532 §3.2), a UTF-8
# local part (§3.2), and obsolete syntax every reader reads (RFC 5322 §4).
_READ_ALIKE_DEFECTS = (UndecodableBytesDefect, NonASCIILocalPartDefect, ObsoleteHeaderDefect)
# The stdlib's note on an encoded-word inside a quoted name (old Outlook, PHP
# mailers), against RFC 2047 §5(3): readers decode it or show it as typed,
# either way only the name (_name_only_defects).
_ENCODED_WORD_QUOTED = "encoded word inside quoted string"
# In a raw header line: every C0 control but TAB, and DEL (CR/LF end lines).
_RAW_HEADER_FORBIDDEN = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class SubmissionRefused(ValidationError):
    """The user may not send this message as written (a foreign From)."""

    code = "sender_refused"


def submitted(raw: bytes, *, user_address: str, recipients: list[str], domain: str,
              max_size: int = DEFAULT_MAX_SIZE) -> Message:
    """The message as it will go out, from the bytes of an SMTP DATA.

    `user_address` is the authenticated user's address; `recipients` are the
    envelope's RCPT TO addresses, already checked. Raises SubmissionRefused,
    ValidationError for a malformed message, TooLarge past `max_size` bytes.
    """
    head, separator, body = _split(raw)
    fields = _fields(head)
    written = [field for field in fields if not _empty_from(field)]
    if len(written) != len(fields):
        # No From at all from here on: BitMail adds the user's, below.
        fields, raw = written, _join(written, [], separator, body)
    mail = parse(raw)
    _check_read_alike(fields, mail)
    _check_senders(fields, mail, user_address)
    parsed = _readable_fields(mail)
    present = {name.lower() for name, _ in fields}
    message_id = str(parsed.get("message-id", [""])[0]).strip()
    if "message-id" in present and not MSG_ID.match(message_id):
        raise ValidationError("Message-ID is not a msg-id such as <left@right> "
                              "(RFC 5322 §3.6.4)", field="Message-ID")
    added: list[tuple[str, bytes]] = []
    if "from" not in present:
        added.append(("From", user_address.encode()))
    if "date" not in present:
        added.append(("Date", format_datetime(datetime.now(UTC)).encode()))
    if "message-id" not in present:
        message_id = new_message_id(domain)
        added.append(("Message-ID", message_id.encode()))
    kept = [(name, lines) for name, lines in fields if name.lower() != "bcc"]
    mime = _join(kept, added, separator, body)
    if len(mime) > max_size:
        raise TooLarge(f"the message is {len(mime)} bytes, over the limit of {max_size}")
    shown = {envelope_of(a.addr_spec) for name in ("to", "cc")
             for header in parsed.get(name, []) for a in header.addresses}
    return Message(mime=mime, sender=user_address.lower(), recipients=tuple(recipients),
                   message_id=message_id, smtputf8=not head.isascii() or not all(
                       r.isascii() for r in recipients),
                   bcc=tuple(r for r in recipients if r not in shown),
                   head=read_summary(parse(mime) if added or len(kept) != len(fields) else mail))


def replace_message_id(message: Message, domain: str) -> Message:
    """The same message with a new Message-ID header in place of its own."""
    head, separator, body = _split(message.mime)
    new_id = new_message_id(domain)
    fields = [(name, [f"{name}: {new_id}".encode()] if name.lower() == "message-id" else lines)
              for name, lines in _fields(head)]
    return Message(mime=_join(fields, [], separator, body), sender=message.sender,
                   recipients=message.recipients, message_id=new_id,
                   smtputf8=message.smtputf8, bcc=message.bcc,
                   head={**message.head, "message_id": new_id} if message.head else {})


def _empty_from(field: tuple[str, list[bytes]]) -> bool:
    """Whether a field is a From with nothing but white space, folded or not.

    RFC 5322 §3.6 requires a From of at least one mailbox (§3.6.2), and
    RFC 6409 §8 has a submission server mend what a message lacks so that
    what it sends conforms: an empty From names nobody, as a missing one
    does, so it is treated as missing and the user's own address is put in
    its place. (A From holding only a comment or a group's name is not
    empty: readers show that text, so it is refused, see _mailboxes.)
    """
    name, lines = field
    return name.lower() == "from" and not _unfolded(lines).strip(" \t")


def envelope_of(addr_spec: str) -> str:
    local, _, domain = addr_spec.rpartition("@")
    try:
        return envelope(Address(username=local, domain=domain))
    except (ValueError, UnicodeError):
        return addr_spec.lower()


def _readable_fields(mail: EmailMessage) -> dict[str, list[Any]]:
    """Every field of the message, parsed once: lower-cased name → its
    header objects. A field the parser could not read as its kind
    (headers.UnreadableHeader; Python 3.11 raises on `a@[b`, an unterminated
    domain-literal, RFC 5322 §3.4.1) is refused naming it, since BitMail
    would not know whom a To or Cc shows, and the receivers' readers may not
    read it either."""
    parsed: dict[str, list[Any]] = {}
    for name, header in mail.items():
        if unreadable(header):
            raise ValidationError(f"the field {name} cannot be read as its kind of field "
                                  "(RFC 5322 §3.6)", field=name)
        parsed.setdefault(name.lower(), []).append(header)
    return parsed


def _check_senders(fields: list[tuple[str, list[bytes]]], mail: EmailMessage,
                   user_address: str) -> None:
    """Every mailbox of every field that names who sends (From, Sender,
    Resent-From, Resent-Sender: RFC 5322 §3.6.2, §3.6.6) is the user's own
    address (RFC 6409 §6.1: the submission server decides who may send)."""
    # _check_read_alike made the parsed fields the written ones, in order;
    # only the sender fields are parsed here.
    for (name, lines), (_, source) in zip(fields, mail.raw_items(), strict=True):
        if name.lower() not in _SENDER_FIELDS:
            continue
        # The stdlib's own reading (TYPED): the reading registry joins a name
        # split into encoded-words (RFC 2047 §6.2), which the stdlib then
        # notes as a defect that no client wrote.
        header = TYPED.header_fetch_parse(name, source)
        for addr_spec in _mailboxes(name, _unfolded(lines), header):
            if addr_spec.lower() != user_address.lower():
                raise SubmissionRefused(f"{name} must be your own address, {user_address}",
                                        field=name)


def _mailboxes(name: str, written: str, header: Any) -> list[str]:
    """The addr-specs of a sender field, when every reader must find the
    same ones; SubmissionRefused otherwise.

    Python's parser reads `robot@localhost <ceo@bank.example>` as
    robot@localhost and drops the rest with a defect, where
    email.utils.getaddresses and mail readers find ceo@bank.example. So the
    field must be read without a defect but the harmless kinds (UTF-8 text
    and local parts, RFC 6532; obsolete syntax such as a period in a name,
    which RFC 5322 §4 has every reader read; what concerns only a display
    name's encoded-words, RFC 2047 §6.2, §6.3, while an encoded-word in an
    address is refused, §5: _name_only_defects), must be mailboxes (a mailbox-list
    has no groups, §3.6.2), at least one, and hold no addr-spec the parser
    did not return: one '@' outside quoted-strings, comments and
    domain-literals for each mailbox read (§3.4.1).
    """
    if unreadable(header) or not hasattr(header, "groups"):
        raise SubmissionRefused(f"{name} cannot be read as mailboxes (RFC 5322 §3.4)",
                                field=name)
    name_only = _name_only_defects(name, header)
    guessed = [d for d in header.defects if not isinstance(d, _READ_ALIKE_DEFECTS)
               and id(d) not in name_only]
    if guessed:
        raise SubmissionRefused(f"{name} is not mailboxes every reader reads alike "
                                f"({guessed[0]}; RFC 5322 §3.4)", field=name)
    if any(group.display_name is not None for group in header.groups):
        raise SubmissionRefused(f"{name} holds a group; it must be mailboxes "
                                "(RFC 5322 §3.6.2)", field=name)
    found = [a.addr_spec for a in header.addresses]
    if not found:
        raise SubmissionRefused(f"{name} names no mailbox (RFC 5322 §3.6.2)", field=name)
    if len(found) != _bare_at_signs(written):
        raise SubmissionRefused(f"{name} holds an address the parser does not read as a "
                                "mailbox (RFC 5322 §3.4)", field=name)
    return found


def _name_only_defects(name: str, header: Any) -> set[int]:
    """The defects (by id) of a sender field that concern only a display
    name: whatever the decoder noted about an encoded-word in it, and the
    stdlib's note that one stands inside a quoted name.

    RFC 2047 §5(3) allows encoded-words in a phrase (the name) and not in an
    addr-spec. A reader that does not know the charset shows the word as
    written (§6.2), one that cannot decode it need not show it (§6.3), but
    either way it reads no address from a name: the name is the sender's
    business, and the addresses are checked apart (_bare_at_signs, the
    user's own). An encoded-word anywhere else is refused: the stdlib
    decodes one in a local part or domain too (`=?utf-8?q?bob?= @x` reads
    as bob@x), so the address checked would not be the address written.
    """
    found: set[int] = set()
    # The parse tree the header was built from (email.headerregistry keeps
    # it); its tokens hold the defects that header.defects gathers.
    stack: list[tuple[Any, bool]] = [(header._parse_tree, False)]
    while stack:
        token, in_name = stack.pop()
        in_name = in_name or token.token_type == "display-name"
        if token.token_type == "encoded-word":
            if not in_name:
                raise SubmissionRefused(f"{name} holds an encoded-word outside a display "
                                        "name; an address has none (RFC 2047 §5)", field=name)
            found.update(id(defect) for defect in token.all_defects)
        elif in_name:
            found.update(id(d) for d in token.defects if str(d) == _ENCODED_WORD_QUOTED)
        stack.extend((child, in_name) for child in token if isinstance(child, list))
    return found


def _bare_at_signs(value: str) -> int:
    """'@' outside quoted-strings, comments, domain-literals and obsolete
    routes: one for each addr-spec written (RFC 5322 §3.4.1), whatever a
    parser makes of it.

    An obsolete route (obs-route, RFC 5322 §4.4: `<@relay.example:bob@x>`,
    `<@a,@b:bob@x>`) names relays, each by an '@' and a domain with no local
    part, so no reader finds a mailbox there; the mailbox is the addr-spec
    after its ':', and a reader must accept the form (§4). Its '@'s are not
    counted once that ':' is seen. Anything else after '<' that begins like
    one (no ':' before '>', an '@' after a word) has every '@' counted.
    """
    count, quoted, comment, literal, escaped = 0, False, 0, False, False
    # In what may be a route, since its '<': the '@'s seen, and whether an
    # `@domain` may begin here (just after '<' or a ',').
    route: int | None = None
    route_item = False
    for char in value:
        if escaped:
            escaped = False
            continue
        if quoted or comment or literal:
            if char == "\\":
                escaped = True  # a quoted-pair (§3.2.1)
            elif quoted:
                quoted = char != '"'
            elif comment:
                comment += 1 if char == "(" else -1 if char == ")" else 0
            else:
                literal = char != "]"
            continue
        if route is not None:
            if char == "@" and route_item:
                route, route_item = route + 1, False
                continue
            if char == ",":
                route_item = True
                continue
            if char == ":" and route:
                route = None  # a route: its '@'s name relays, not mailboxes
                continue
            if char not in '<>:;@\\,"' and (char in " \t([" or (route and not route_item)):
                pass  # white space, a comment or a domain (a literal too) of the route
            else:
                count, route = count + route, None  # not a route: each '@' counts
        if char == '"':
            quoted = True
        elif char == "(":
            comment = 1
        elif char == "[":
            literal = True
        elif char == "<":
            route, route_item = 0, True
        elif char == "@":
            count += 1
    return count + (route or 0)


def _unfolded(lines: list[bytes]) -> str:
    """A field's value as written, unfolded (RFC 5322 §2.2.3: the line ends
    go, the white space stays)."""
    value = b"".join(lines).partition(b":")[2]
    return value.decode("utf-8", "surrogateescape")


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, the blank line, body) as written."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(separator)
        if found:
            return head, separator, body
    return raw.rstrip(b"\r\n"), b"\r\n\r\n", b""


def _fields(head: bytes) -> list[tuple[str, list[bytes]]]:
    """Header fields as (name, their raw lines), continuation lines kept."""
    fields: list[tuple[str, list[bytes]]] = []
    for line in re.split(rb"\r?\n", head):
        if _RAW_HEADER_FORBIDDEN.search(line):
            raise ValidationError("a header line holds a control character", field="headers")
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1].append(line)
            continue
        match = _FIELD_NAME.match(line)
        if not match:
            raise _not_a_field(line)
        fields.append((match.group(1).decode("ascii"), [line]))
    return fields


def _not_a_field(line: bytes) -> ValidationError:
    """Why a header line is refused: a field name with white space before
    its colon (named, and refused as a foreign From is when it names the
    sender), or no field at all."""
    obsolete = _OBSOLETE_FIELD_NAME.match(line)
    if not obsolete:
        return ValidationError(f"{line[:40]!r} is not a header line (RFC 5322 §2.2)",
                               field="headers")
    name = obsolete.group(1).decode("ascii")
    refused = SubmissionRefused if name.lower() in _SENDER_FIELDS else ValidationError
    return refused(f"white space between the field name {name} and its colon is the obsolete "
                   f"form readers read differently (RFC 5322 §4.5); write '{name}:'",
                   field=name)


def _check_read_alike(fields: list[tuple[str, list[bytes]]], mail: EmailMessage) -> None:
    """The fields as written are the fields the parser read, in order, and
    each of those BitMail checks or adds is there at most once (RFC 5322
    §3.6): what is checked is what goes out."""
    names = [name.lower() for name, _ in fields]
    if names != [name.lower() for name in mail.keys()]:
        raise ValidationError("the header does not read as written (RFC 5322 §2.2)",
                              field="headers")
    for name in _ONCE:
        if names.count(name) > 1:
            shown = next(n for n, _ in fields if n.lower() == name)
            raise ValidationError(f"{shown} is given {names.count(name)} times; a message has "
                                  "it once (RFC 5322 §3.6)", field=shown)


def _join(fields: list[tuple[str, list[bytes]]], added: list[tuple[str, bytes]],
          separator: bytes, body: bytes) -> bytes:
    lines = [line for _, field_lines in fields for line in field_lines]
    lines += [name.encode() + b": " + value for name, value in added]
    return b"\r\n".join(lines) + separator + body
