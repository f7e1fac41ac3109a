"""Attachment names, made safe to show and to offer for download.

Senders put all sorts in a filename: a whole Windows or Unix path (Outlook
and old browsers did), nothing at all, "..". What BitMail keeps is the base
name — after the last `/` or `\\` — without control characters; an empty
name, or one made only of dots and spaces, becomes a generated one
(`attachment-2.pdf`, the extension from the content type). RFC 2183 2.3: the
receiving agent should not use a path in a filename parameter.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata

MAX_LENGTH = 255
_SEPARATORS = re.compile(r"[\\/]")


def base_name(filename: str | None) -> str:
    """The last path segment of `filename`, without control characters and
    surrounding blanks; "" when nothing usable is left."""
    name = _SEPARATORS.split(filename or "")[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = name.strip()
    if not name.strip(". "):
        return ""  # "", ".", "..", ". ." — nothing but dots and blanks
    if len(name) > MAX_LENGTH:
        _, dot, ext = name.rpartition(".")
        keep = ext if dot and len(ext) <= 16 else ""
        name = name[:MAX_LENGTH - len(keep) - 1].rstrip() + ("." + keep if keep else "")
    return name


def safe_filename(filename: str | None, content_type: str, index: int) -> str:
    """A name to keep for attachment `index` (0-based): its base name, or
    `attachment-N` with the content type's usual extension."""
    name = base_name(filename)
    if name:
        return name
    ext = mimetypes.guess_extension(content_type.split(";")[0].strip().lower()) or ".bin"
    return f"attachment-{index + 1}{ext}"
