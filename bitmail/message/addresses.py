"""Address lists as people write them, parsed by the standard parser.

The API takes `to`, `cc`, `bcc` and `reply_to` as one string
(`"Doe, John" <john@example.org>; b@y`), a list of such strings, or a list of
`{"name", "address"}` objects. The seed's `a@x; b@y` form keeps working: a
`;` or `,` outside quotes, comments and angle brackets separates addresses,
except the `;` that ends a group (`Friends: a@x, b@y;`, RFC 5322 §3.4). Each
piece is parsed by `email.headerregistry` (quoted names, comments, groups) and
each addr-spec is checked by email-validator (RFC 5321/5322 syntax, IDNA
domains per RFC 5891, SMTPUTF8 local parts per RFC 6531).

Addresses are `email.headerregistry.Address` objects all the way to the
header; the envelope form (`envelope()`) is the addr-spec with an ASCII
(IDNA A-label) domain, lower-cased, as providers and webhooks see it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address, Group
from typing import Any

from email_validator import EmailNotValidError, validate_email

from ..errors import ValidationError
from .headers import TYPED
from .text import check_header_text

MAX_ADDRESS_TEXT = 998  # one header line's worth (RFC 5322 §2.1.1)
_PLACEHOLDER_DOMAIN = "example.com"


def parse_address_list(value: Any, field: str, *, own_domain: str = "") -> tuple[Group, ...]:
    """The groups of an address list (a lone address is a group with no name,
    as `AddressHeader.groups` has it), duplicates (by addr-spec) dropped.

    Raises ValidationError naming `field` for a bad address, a bad shape or a
    control character; `own_domain` is this service's domain, whose names
    are accepted even where it is a special-use name such as `localhost`.
    """
    if value is None or value == "":
        return ()
    items: list[Any] = value if isinstance(value, list) else [value]
    groups: list[Group] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"{field}[{index}]" if isinstance(value, list) else field
        if isinstance(item, dict):
            found = [Group(None, (_from_object(item, where, own_domain),))]
        elif isinstance(item, str):
            check_header_text(item, where)
            if len(item) > MAX_ADDRESS_TEXT * 50:
                raise ValidationError("is too long", field=where)
            found = [_parse_piece(piece, where, own_domain) for piece in split_list(item)
                     if piece.strip()]
        else:
            raise ValidationError(
                "must be addresses as a string, a list of strings or "
                "{\"name\", \"address\"} objects", field=where)
        for group in found:
            fresh = tuple(a for a in group.addresses if _key(a) not in seen)
            seen.update(_key(a) for a in fresh)
            if fresh or group.display_name is not None:
                groups.append(Group(group.display_name, fresh))
    return tuple(groups)


def flatten(groups: Sequence[Group]) -> tuple[Address, ...]:
    return tuple(a for g in groups for a in g.addresses)


def parse_address(value: str, field: str, *, own_domain: str = "") -> Address:
    """Exactly one address (`a@x` or `Name <a@x>`); ValidationError otherwise."""
    addresses = flatten(parse_address_list(value, field, own_domain=own_domain))
    if len(addresses) != 1:
        raise ValidationError("must be exactly one address", field=field)
    return addresses[0]


def envelope(address: Address) -> str:
    """The address as an SMTP envelope names it: the domain as its IDNA
    A-label (RFC 5891), the whole lower-cased, as BitMail keys statuses."""
    local = address.addr_spec.rpartition("@")[0]  # quoted where it must be
    return f"{local}@{ascii_domain(address.domain)}".lower()


def ascii_domain(domain: str) -> str:
    return domain if domain.isascii() else domain.encode("idna").decode("ascii")


def needs_smtputf8(address: Address) -> bool:
    """Whether this address can only travel with SMTPUTF8 (RFC 6531): its
    local part is not ASCII (a non-ASCII domain has an ASCII A-label)."""
    return not address.username.isascii()


def check_envelope_address(value: str, field: str, *, own_domain: str = "") -> str:
    """One addr-spec as SMTP's MAIL FROM or RCPT TO gives it, in envelope form."""
    check_header_text(value, field)
    local, at, domain = value.strip().strip("<>").rpartition("@")
    if not at:
        raise ValidationError(f"{value!r} is not a valid e-mail address", field=field)
    return envelope(_validated("", local, domain, value, field, own_domain))


def display(address: Address) -> str:
    """`"Doe, John" <john@example.org>`, or the bare addr-spec when there is no name."""
    return str(address)


def _key(address: Address) -> str:
    return envelope(address)


def _from_object(item: dict[str, Any], where: str, own_domain: str) -> Address:
    name, addr = item.get("name", ""), item.get("address")
    if not isinstance(addr, str) or (name is not None and not isinstance(name, str)):
        raise ValidationError("needs \"address\" (and optionally \"name\") as strings",
                              field=where)
    check_header_text(name or "", f"{where}.name")
    check_header_text(addr, f"{where}.address")
    if len(name or "") > MAX_ADDRESS_TEXT:
        raise ValidationError("is too long", field=f"{where}.name")
    local, at, domain = addr.strip().rpartition("@")
    if not at:
        raise ValidationError(f"{addr!r} is not a valid e-mail address", field=f"{where}.address")
    return _validated(name or "", local, domain, addr, f"{where}.address", own_domain)


def split_list(text: str) -> Iterator[str]:
    """Split at `;` and `,` outside quotes, comments, angle brackets and groups;
    a group (`name: ...;`) stays one piece with its closing `;`."""
    start, quoted, escaped, angle, comment, in_group = 0, False, False, 0, 0, False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or comment):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == '"' and not comment:
            quoted = True
        elif char == "(":
            comment += 1
        elif char == ")" and comment:
            comment -= 1
        elif comment:
            continue
        elif char == "<":
            angle += 1
        elif char == ">" and angle:
            angle -= 1
        elif angle:
            continue
        elif char == ":" and not in_group:
            in_group = True
        elif char == ";" and in_group:
            in_group = False
            yield text[start:i + 1]
            start = i + 1
        elif char in ";," and not in_group:
            yield text[start:i]
            start = i + 1
    yield text[start:]


_SPECIALS = frozenset('"<>():;,[]\\ \t')


def _parse_piece(piece: str, where: str, own_domain: str) -> Group:
    piece = piece.strip()
    if not _SPECIALS.intersection(piece) and "@" in piece:
        # A bare addr-spec, the common case: the address check is the parse.
        local, _, domain = piece.rpartition("@")
        return Group(None, (_validated("", local, domain, piece, where, own_domain),))
    header = TYPED.header_factory("to", piece)
    # A UTF-8 local part is what SMTPUTF8 is for (RFC 6531); any other defect
    # means the parser had to guess, or could not read the piece at all (the
    # stdlib parser raises on "a@", '"" =?.<"', "a@[b": an UnreadableHeader,
    # which has no groups). Defects are looked at first for that reason.
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if defects:
        raise ValidationError(f"{piece!r} is not a valid e-mail address", field=where)
    groups = header.groups
    if len(groups) != 1 or not _reads_back(piece, groups[0]):
        raise ValidationError(f"{piece!r} is not a valid e-mail address", field=where)
    group = groups[0]
    # A name the parser decoded from an encoded-word is checked as typed text is.
    for name in (group.display_name, *(a.display_name for a in group.addresses)):
        check_header_text(name or "", where)
    checked = tuple(_validated(a.display_name, a.addr_spec.rpartition("@")[0], a.domain, piece,
                               where, own_domain)
                    for a in group.addresses)
    if group.display_name is None and len(checked) != 1:
        raise ValidationError(f"{piece!r} is not a valid e-mail address", field=where)
    return Group(group.display_name, checked)


def _reads_back(piece: str, group: Group) -> bool:
    # The parser is lenient ("a b@x" reads as "ab@x"); insist that every
    # addr-spec it found is written in the piece as it was found.
    return all(a.addr_spec.replace('"', "") in piece.replace('"', "")
               for a in group.addresses) and bool(group.addresses or group.display_name)


@functools.lru_cache(maxsize=4096)
def _checked(addr_spec: str) -> tuple[str, str] | str:
    """(local part, domain) as email-validator normalizes them, or its reason
    for refusing; cached, since the same addresses come again and again."""
    try:
        result = validate_email(addr_spec, check_deliverability=False, allow_smtputf8=True,
                                allow_quoted_local=True, test_environment=True)
    except (EmailNotValidError, UnicodeError) as exc:
        return str(exc)
    return result.local_part, result.domain


def _validated(name: str, local: str, domain: str, original: str, where: str,
               own_domain: str) -> Address:
    own = bool(own_domain) and domain.lower() == own_domain.lower()
    # This service's own domain may be a special-use name (localhost):
    # email-validator refuses those, so only its local part is checked.
    checked = _checked(f"{local}@{_PLACEHOLDER_DOMAIN if own else domain}")
    if isinstance(checked, str):
        raise ValidationError(f"{original.strip()!r} is not a valid e-mail address: {checked}",
                              field=where)
    username, valid_domain = checked
    if len(username) > 1 and username[0] == username[-1] == '"':
        username = username[1:-1]  # Address quotes it again where it must
    try:
        return Address(display_name=name or "", username=username,
                       domain=own_domain.lower() if own else valid_domain)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{original.strip()!r} is not a valid e-mail address: {exc}",
                              field=where) from None
