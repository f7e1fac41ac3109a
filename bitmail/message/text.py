"""What text may go into a header or a body: the one check every way in uses.

A header value is refused when it holds anything that some reader takes for
the end of a line. CR and LF end a line on the wire (RFC 5322 §2.2), but
Python's own `str.splitlines()`, which the email package uses to fold, also
breaks on VT, FF, FS, GS, RS, NEL and the Unicode line and paragraph
separators; any other C0 control and DEL are not allowed in a header either
(RFC 5322 §3.2.3 allows only VCHAR and WSP, RFC 6532 §3.2 adds UTF-8). Text
that cannot be encoded as UTF-8 at all (a lone surrogate from JSON's
`"\\ud800"`) is refused everywhere, since no message can carry it.
"""

from __future__ import annotations

import re

from ..errors import ValidationError

# Every C0 control but TAB, DEL, NEL, and the Unicode line/paragraph separators.
_HEADER_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def check_header_text(value: str, field: str) -> str:
    """`value` unchanged, or ValidationError naming `field` when it holds a
    control character, a line or paragraph separator, or a lone surrogate."""
    check_unicode(value, field)
    bad = _HEADER_FORBIDDEN.search(value)
    if bad:
        raise ValidationError(
            f"must not contain control characters or line breaks (found U+{ord(bad.group()):04X})",
            field=field)
    return value


def is_header_safe(value: str) -> bool:
    """Whether `value` passes check_header_text (for text BitMail did not
    receive from a client, which is left out rather than refused)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not _HEADER_FORBIDDEN.search(value)


def check_body_text(value: str, field: str) -> str:
    """`value` unchanged, or ValidationError naming `field` for a NUL or a lone
    surrogate. Line ends are the body's own business; NUL is allowed in no
    message (RFC 5322 §2.3, and RFC 2045 §2.7-2.8 on 7bit and 8bit data)."""
    check_unicode(value, field)
    if "\x00" in value:  # a memchr: a regular expression walks the text
        raise ValidationError("must not contain NUL characters", field=field)
    return value


def check_unicode(value: str, field: str) -> None:
    """ValidationError naming `field` unless `value` can be encoded as UTF-8
    (a lone surrogate cannot)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"is not valid Unicode text (U+{ord(value[exc.start]):04X} at {exc.start})",
            field=field) from None
