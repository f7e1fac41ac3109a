"""Headers a client may set, how each kind is checked, and how each is folded.

Only the service sets the headers that say who sent a message and how it is
built (From, Sender, Date, Message-ID, Return-Path, DKIM-Signature, the MIME
headers, ...). A client may add the headers in `ALLOWED`, plus any `X-*` and
`List-*` header; anything else is refused naming the header.

`WIRE` is `email.policy.SMTP` with these corrections, each for a way the
stdlib folder changes what the writer wrote:
- msg-id lists (In-Reply-To, References, Message-ID) and URI lists (List-*)
  are folded only between their items, never turned into encoded-words, which
  would break threading (RFC 5322 §3.6.4) and unsubscribe links (RFC 2369);
- unstructured text that looks like an encoded-word (`=?utf-8?q?hi?=`), and
  any non-ASCII text without SMTPUTF8, is encoded whole (RFC 2047 §5): the
  stdlib mixes encoded-words with plain words and loses the spaces between
  them (§6.2), so a reader would not show it exactly as typed; UTF-8 text
  (SMTPUTF8) is folded only before SP/TAB, and encoded when a word is too
  long for a line; display names get the same treatment;
- address headers are written mailbox by mailbox (never an encoded-word
  glued to the next word);
- bodies are 7bit or quoted-printable/base64 (cte_type "7bit"), so every relay
  takes them without 8BITMIME.

`WirePolicy.wire_value` gives a header's value exactly as it goes out,
folded by these rules, for `Message.set_raw`: a composed message is written
without building the header registry's parse tree for the headers BitMail
makes itself (addresses, msg-ids, the date), which was most of its cost. A
raw value is written as it is (`refold_source="none"`), so the text
`wire_value` made is the text that is sent.

Every registry here (`HeaderClasses`) reads any value without raising: one
the stdlib parser raises on is an `UnreadableHeader`, its text with a
defect, so a message with such a header is still read and delivered, and
typed input with one is refused for the defect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from email._header_value_parser import TokenList, UnstructuredTokenList, ValueTerminal
from email.errors import InvalidHeaderDefect, MessageDefect
from email.header import Header
from email.headerregistry import (
    AddressHeader,
    BaseHeader,
    Group,
    HeaderRegistry,
    UnstructuredHeader,
)
from email.policy import SMTP, EmailPolicy, default
from email.utils import format_datetime, formataddr
from functools import lru_cache
from typing import Any

from ..errors import ValidationError
from .text import check_header_text

# Headers a client may add besides X-* and List-* (lower-cased). Reply-To is
# an address list; In-Reply-To and References are msg-id lists.
ALLOWED = frozenset({
    "reply-to", "in-reply-to", "references", "keywords", "comments", "importance",
    "priority", "sensitivity", "auto-submitted", "precedence", "organization",
    "feedback-id",
})
ADDRESS_HEADERS = frozenset({"reply-to"})
MSG_ID_HEADERS = frozenset({"in-reply-to", "references", "message-id"})
MAX_HEADERS = 100
MAX_LINE = 998  # octets in one line, CRLF not counted (RFC 5322 §2.1.1)
MAX_HEADER_VALUE = MAX_LINE * 8  # octets before folding
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # printable ASCII without ':' (RFC 5322 §2.2)
# `<left@right>`, no space or angle inside, and short enough for a line
# after a fold's space (RFC 5322 §2.1.1); check_header_value holds the first
# of a header to the room beside its name.
MSG_ID = re.compile(r"^(?=.{1,997}$)<[!-;=?-~]+@[!-;=?-~]+>$")
# What a reader may take for an encoded-word: Python's decodes one with white
# space in its text, and with any charset, even none (`=??q?Hello World?=`).
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?[^?]*\?=")


def threads_on(msg_id: str) -> bool:
    """Whether a stored msg-id can go into a reply's In-Reply-To and
    References: a msg-id, and short enough for any line of theirs, beside
    `In-Reply-To: ` too (998 octets)."""
    return bool(MSG_ID.match(msg_id)) and len("In-Reply-To: ") + len(msg_id) <= MAX_LINE


def may_set(name: str) -> bool:
    lower = name.lower()
    return lower in ALLOWED or lower.startswith(("x-", "list-"))


def check_header_name(name: str, field: str) -> str:
    if not _HEADER_NAME.match(name):
        raise ValidationError("is not a valid header name", field=field)
    if not may_set(name):
        raise ValidationError(
            "is not a header that can be set (allowed: X-*, List-*, "
            + ", ".join(sorted(h.title() for h in ALLOWED)) + ")", field=field)
    return name


def parse_msg_ids(value: str, field: str) -> tuple[str, ...]:
    """`<a@b> <c@d>` → ("<a@b>", "<c@d>"); ValidationError when any item is
    not a msg-id (RFC 5322 §3.6.4: `<id-left@id-right>`, ASCII, no spaces)."""
    check_header_text(value, field)
    ids = tuple(value.replace(",", " ").split())
    if not ids or not all(MSG_ID.match(i) for i in ids):
        raise ValidationError("must be msg-ids as <left@right>, separated by spaces",
                              field=field)
    return ids


def check_header_value(name: str, value: Any, field: str) -> str:
    """A custom header's value, checked for its kind."""
    if not isinstance(value, str):
        raise ValidationError("must be a string", field=field)
    check_header_text(value, field)
    if len(value.encode()) > MAX_HEADER_VALUE:
        raise ValidationError(f"is longer than {MAX_HEADER_VALUE} bytes", field=field)
    lower = name.lower()
    msg_ids, uris = lower in MSG_ID_HEADERS, lower.startswith("list-")
    if uris and not value.isascii():
        raise ValidationError("must be ASCII (URIs are, RFC 2369)", field=field)
    if msg_ids or uris:
        # Folded only between its items (msg-ids, URIs), each on a line of its
        # own at worst: the first beside `Name: `, the others after the one
        # space a fold leaves (RFC 5322 §2.1.1).
        items = (value.replace(",", " ") if msg_ids else value).split()
        for n, item in enumerate(items):
            if len(item) + (len(name) + 2 if n == 0 else 1) > MAX_LINE:
                raise ValidationError(f"holds an item of {len(item)} characters, too long "
                                      f"for a header line ({MAX_LINE} octets)", field=field)
    return " ".join(parse_msg_ids(value, field)) if msg_ids else value


class WirePolicy(EmailPolicy):
    """`policy.SMTP` that never encodes msg-ids or URI lists, writes
    unstructured text so that it reads back as typed, and writes raw values
    (`wire_value`) as they are (see the module docstring)."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        lower = name.lower()
        if isinstance(value, str):
            if lower in _MIME_HEADERS and value.isprintable():
                # set_content writes the same few MIME headers on every part;
                # header objects are immutable, so each is parsed once. (Text
                # with a control character goes to the stdlib, which refuses
                # a line break.)
                return name, _mime_header(self.header_factory, name, value)
            # The header parser decodes encoded-words in what it is given, so
            # a literal look-alike would be lost before folding: store it encoded.
            if _is_unstructured(lower) and _ENCODED_WORD.search(value):
                value = Header(value, "utf-8", header_name=name).encode(maxlinelen=0)
        return super().header_store_parse(name, value)

    def wire_value(self, name: str, value: str | datetime | Sequence[Group]) -> str:
        """The value of header `name` as it goes out, folded by its kind and
        without the `Name: ` and the final line end: for `Message.set_raw`.

        `value` is a datetime for Date (RFC 5322 §3.3), address groups for
        the address headers, else the text the client gave (msg-ids and URI
        lists as items separated by spaces)."""
        lower = name.lower()
        if isinstance(value, datetime):
            return format_datetime(value)
        folded: str
        if not isinstance(value, str):
            folded = self._fold_addresses(name, value)
        elif lower in MSG_ID_HEADERS:
            folded = _fold_items(name, value.split(), self.linesep, self.max_line_length)
        elif lower.startswith("list-"):
            # A phrase in it (List-Id) keeps every space it was written with.
            folded = _fold_text(name, value, self.linesep, self.max_line_length)
        elif value and value.isascii() and value.isprintable() and "=?" not in value and \
                len(name) + 2 + len(value) <= (self.max_line_length or 78):
            return value  # short printable ASCII text: the folder writes it unchanged
        else:
            folded = self.fold(name, self.header_store_parse(name, value)[1])
        value = folded[len(name) + 1:-len(self.linesep)]
        value = value[1:] if value.startswith(" ") else value
        # Written raw, the value is split where str.splitlines splits: only
        # the folds made here may break it (callers check text first; this
        # holds whoever calls).
        if any(len(line.splitlines()) > 1 or "\x00" in line
               for line in value.split(self.linesep)):
            raise ValueError(f"the value of {name} would break its header line")
        return value

    def fold(self, name: str, value: Any) -> str:
        if not isinstance(value, BaseHeader):
            folded: str = super().fold(name, value)  # raw: as wire_value wrote it
            return folded
        ours = self._fold_ours(name, value)
        return ours if ours is not None else super().fold(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        if not isinstance(value, BaseHeader):
            return super().fold_binary(name, value)  # raw: as wire_value wrote it
        if name.lower() in _MIME_HEADERS:
            return _folded_mime(self, name, value)
        ours = self._fold_ours(name, value)
        if ours is not None:
            return ours.encode("utf-8" if self.utf8 else "ascii")
        return super().fold_binary(name, value)

    def _fold_ours(self, name: str, value: BaseHeader) -> str | None:
        """The header as this policy folds it, or None where the stdlib's
        folding is kept."""
        lower = name.lower()
        if hasattr(value, "groups") and lower in _ADDRESS_FOLDED:
            return self._fold_addresses(name, value.groups)
        if lower in MSG_ID_HEADERS:
            return _fold_items(name, str(value).split(), self.linesep, self.max_line_length)
        if lower.startswith("list-"):
            return _fold_text(name, str(value), self.linesep, self.max_line_length)
        if self._encoded_whole(lower, str(value)):
            return self._encoded(name, str(value))
        if _is_unstructured(lower):
            # The stdlib folder breaks UTF-8 text (RFC 6532) at Unicode spaces
            # too and adds a space there, and turns an ASCII word too long for
            # 78 characters into encoded-words after the space before it,
            # which then reads as two; this folds only before SP/TAB.
            folded = _fold_text(name, str(value), self.linesep, self.max_line_length)
            if all(len(line.encode()) <= MAX_LINE for line in folded.split(self.linesep)):
                return folded
            # A word too long for one line (RFC 5322 §2.1.1: 998 octets):
            # encoded-words can be broken anywhere, and read back whole.
            return self._encoded(name, str(value))
        return None

    def _encoded(self, name: str, text: str) -> str:
        encoded = Header(text, "utf-8", header_name=name).encode(
            linesep=self.linesep, maxlinelen=self.max_line_length or 78)
        return f"{name}: {encoded}{self.linesep}"

    def _encoded_whole(self, lower: str, text: str) -> bool:
        """Whether unstructured text goes out as encoded-words from end to end:
        a look-alike, and any non-ASCII text without SMTPUTF8. The stdlib
        folder mixes encoded-words with plain words and loses or adds the
        spaces between them (RFC 2047 §6.2 has readers drop white space
        between encoded-words); whole, every character reads back."""
        return _is_unstructured(lower) and (
            _ENCODED_WORD.search(text) is not None or not (self.utf8 or text.isascii()))

    def _fold_addresses(self, name: str, groups: Any) -> str:
        """Each mailbox as `formataddr` writes it (a name that needs it quoted,
        or encoded as whole encoded-words, RFC 2047 §5(3)), folded between
        mailboxes, between the members of a group, and between the
        encoded-words of a name. The stdlib folder can glue an encoded-word
        to the next word, which readers then misread; this never does."""
        items: list[list[str]] = []
        for group in groups:
            mailboxes = [self._mailbox(a) for a in group.addresses]
            if group.display_name is None:
                items.extend(mailboxes)
                continue
            words = self._phrase(group.display_name, MAX_LINE - _NAME_ROOM)
            # An encoded-word is kept apart from a special (RFC 2047 §5(3)).
            words[-1] += " :" if _ENCODED_WORD.fullmatch(words[-1]) else ":"
            words[-1] += "" if mailboxes else " "
            for n, mailbox in enumerate(mailboxes):
                mailbox[-1] += "," if n < len(mailboxes) - 1 else ""
                words += mailbox
            words[-1] += ";"
            items.append(words)
        return _fold_items(name, items, self.linesep, self.max_line_length, joiner=",")

    def _mailbox(self, address: Any) -> list[str]:
        """The words of a mailbox: a line may end between them."""
        if not address.display_name:
            return [str(address.addr_spec)]
        angle = f" <{address.addr_spec}>"
        words = self._phrase(address.display_name, MAX_LINE - _NAME_ROOM - len(angle.encode()))
        words[-1] += angle
        return words

    def _phrase(self, text: str, room: int) -> list[str]:
        """A display name as the words it goes out as: one word (quoted where
        it must be) while it is at most `room` octets, else encoded-words of
        at most 75 characters (RFC 2047 §2), which a line may end between
        and readers join back without the space."""
        if not text:
            return ['""']  # a group's empty name: a phrase of one empty quoted-string
        if (text.isascii() or self.utf8) and not _ENCODED_WORD.search(text):
            quoted = formataddr((text, "x@y")).rpartition(" <")[0]
            if len(quoted.encode()) <= room:
                return [quoted]
        # Encoded: non-ASCII text without SMTPUTF8; text that looks like an
        # encoded-word, which readers would decode (Python's and others' even
        # inside quotes, against RFC 2047 §5(3)); and a name too long to
        # quote on one line (RFC 5322 §2.1.1). One encoded-word while it fits
        # on a line: Python's address parser, against RFC 2047 §6.2, keeps
        # the space between two encoded-words of a name. Past that, words of
        # 75 characters (§2), as RFC 2047 readers join them.
        header = Header(text, "utf-8")
        whole = header.encode(maxlinelen=0)
        if len(whole) <= room:
            return [whole]
        return header.encode(linesep="\n", maxlinelen=75).split()


_ADDRESS_FOLDED = frozenset({"from", "to", "cc", "reply-to"})
# Octets of a display name's line that are not the name or its address:
# `Reply-To: ` (the longest name of an address header), and at most ` : ;,`
# (an empty group's, with a comma before the next mailbox).
_NAME_ROOM = len("Reply-To: ") + len(" : ;,")
_MIME_HEADERS = frozenset({"mime-version", "content-type", "content-transfer-encoding",
                           "content-disposition"})


@lru_cache(maxsize=512)
def _mime_header(factory: Any, name: str, value: str) -> Any:
    return factory(name, value)


@lru_cache(maxsize=512)
def _folded_mime(policy: EmailPolicy, name: str, value: BaseHeader) -> bytes:
    # The same few MIME headers, folded the same way on every message.
    return EmailPolicy.fold_binary(policy, name, value)


def _is_unstructured(lower: str) -> bool:
    """Headers whose value is text to the stdlib's registry (its
    UnstructuredHeader, which decodes encoded-words it is given): every
    header a client may set but the address, msg-id and List-* ones."""
    return lower in _UNSTRUCTURED or lower.startswith("x-")


_UNSTRUCTURED = (ALLOWED - ADDRESS_HEADERS - MSG_ID_HEADERS) | {"subject"}


def _fold_items(name: str, items: Sequence[str | list[str]], linesep: str, width: int | None,
                joiner: str = "") -> str:
    """`Name: item item ...` (with `joiner` after every item but the last),
    folded only between items, or between the words of an item given as a
    list of words, never inside a word."""
    width = width or 78
    lines, line = [], f"{name}:"
    for n, item in enumerate(items):
        words = [item] if isinstance(item, str) else list(item)
        if n < len(items) - 1:
            words[-1] += joiner
        for word in words:
            if len(line) + 1 + len(word) > width and line != f"{name}:":
                lines.append(line)
                line = ""
            line += f" {word}"
    lines.append(line)
    return linesep.join(lines) + linesep


def _fold_text(name: str, text: str, linesep: str, width: int | None) -> str:
    """`Name: text`, a line end put before a SP or TAB of the text wherever a
    line would pass `width`: unfolding (RFC 5322 §2.2.3) gives the text back
    exactly, every space where it was."""
    width = width or 78
    head = f"{name}:"
    lines, line = [], head
    # Each piece starts with its SP/TAB; a line never holds only white space.
    for piece in re.split(r"(?=[ \t])", " " + text):
        if line != head and piece.strip(" \t") and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    return linesep.join(lines) + linesep


class UnreadableHeaderDefect(InvalidHeaderDefect):
    """The stdlib parser for the header's kind raised on its value."""


class UnreadableHeader(UnstructuredHeader, BaseHeader):
    """A header the stdlib parser for its kind raised on, kept as its text.

    Python 3.11's header parser raises, rather than noting a defect, on some
    malformed values: AttributeError on `a@[b` (an unterminated
    domain-literal, RFC 5322 §3.4.1) or `.:`, IndexError on `<` or `"`,
    TypeError on a folded ` .,`. A header is text before it is anything else
    (RFC 5322 §2.2), so such a header reads as unstructured text, the way
    the registry reads a header it does not know, with an
    UnreadableHeaderDefect: it has no `addresses`, `datetime` or `params`,
    so whoever needs those sees it could not be read. `source` is the value
    as it was given.
    """

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        try:
            super().parse(value, kwds)
        except Exception:  # even the unstructured parser: keep the text as one word
            kwds["parse_tree"] = UnstructuredTokenList([ValueTerminal(value, "vtext")])
            kwds["decoded"] = value
        kwds["defects"].append(UnreadableHeaderDefect(
            "the parser for this kind of header could not read it; kept as text"))
        kwds["source"] = value

    def init(self, name: str, *, parse_tree: TokenList, defects: Iterable[MessageDefect],
             source: str = "") -> None:
        super().init(name, parse_tree=parse_tree, defects=defects)
        self._source = source

    @property
    def source(self) -> str:
        return self._source


def unreadable(header: object) -> bool:
    """Whether a header is one the stdlib parser could not read (UnreadableHeader)."""
    return isinstance(header, UnreadableHeader)


class HeaderClasses(HeaderRegistry):
    """The stdlib registry, with two changes. It builds a new class on every
    lookup (a third of the time it takes to write a message); the classes
    are the same each time, so each is made once. And a value its parser
    raises on becomes an UnreadableHeader instead of an exception: reading
    a message must not fail on one header, and what a client typed is
    refused for the defect, as for any other (see addresses.py)."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made

    def __call__(self, name: str, value: str) -> BaseHeader:
        try:
            return self.parsed(name, value)
        except Exception:  # the stdlib parser's own failures: see UnreadableHeader
            return UnreadableHeader(name, value)

    def parsed(self, name: str, value: str) -> BaseHeader:
        """The header as the registry's class for `name` reads it; may raise."""
        header: BaseHeader = super().__call__(name, value)
        return header


# Two encoded-words with only white space between them, in an address
# header's unfolded value. The first is not glued to a word before it.
_ADJACENT_ENCODED_WORDS = re.compile(
    r"""(?<![^\s"(<,:;])(=\?[^?\s]*\?[bBqQ]\?[^?\s]*\?=)[ \t]+(?==\?[^?\s]*\?[bBqQ]\?)""")


class MailHeaders(HeaderClasses):
    """The registry for reading mail: display names as RFC 2047 §6.2 has
    them. White space between two adjacent encoded-words is not part of the
    text; the stdlib drops it in unstructured text (Subject) but keeps it in
    a phrase, so a name sent as several encoded-words, as Outlook and
    BitMail's own writer split a long one, read with a space at every
    split ("André  Dupont", "é é")."""

    def parsed(self, name: str, value: str) -> BaseHeader:
        if "?=" in value and issubclass(self[name], AddressHeader):
            value = _ADJACENT_ENCODED_WORDS.sub(r"\1", value)
        return super().parsed(name, value)


#: For reading mail: `policy.default` with the header classes made once,
#: and names split into encoded-words read whole (`MailHeaders`).
READ = default.clone(header_factory=MailHeaders())
#: For what a client typed (addresses, a part's type): the stdlib's
#: reading, and its defects, which refuse the input.
TYPED = default.clone(header_factory=HeaderClasses())
WIRE = WirePolicy(header_factory=HeaderClasses(), linesep=SMTP.linesep,
                  max_line_length=SMTP.max_line_length, cte_type="7bit", refold_source="none")
# For SMTPUTF8 messages (RFC 6531/6532): UTF-8 headers and 8bit bodies.
WIRE_UTF8 = WIRE.clone(utf8=True, cte_type="8bit")
