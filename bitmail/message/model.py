"""The accepted message: its bytes, its envelope, and nothing that could
disagree with them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from .reading import read_summary

DEFAULT_MAX_SIZE = 25 * 1024 * 1024  # bytes of the message as it goes out
MAX_RECIPIENTS = 500  # envelope recipients of one message


@dataclass(frozen=True, slots=True)
class Message:
    """One message as BitMail accepted it.

    `mime` is the message exactly as every provider and every retry sends it
    (RFC 5322 with CRLF line ends); `sender` and `recipients` are the SMTP
    envelope (addr-specs, IDNA domains, recipients once each, Bcc included);
    `message_id` is the Message-ID header's value, `<left@right>`.
    `smtputf8` says the message can only travel with SMTPUTF8 (RFC 6531):
    an address has a UTF-8 local part, and its headers are UTF-8.
    `bcc` keeps the Bcc addresses, which are in no header, for the sender's
    own Sent copy. `head` is what folders and search show, read from the
    message when it was built or parsed (reading.read_summary).
    """

    mime: bytes
    sender: str
    recipients: tuple[str, ...]
    message_id: str
    smtputf8: bool = False
    bcc: tuple[str, ...] = ()
    head: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def size(self) -> int:
        """Bytes on the wire."""
        return len(self.mime)

    def summary(self) -> dict[str, Any]:
        """What folders and search need (see reading.read_summary)."""
        return {**(self.head or read_summary(self.mime)), "bcc": list(self.bcc)}


def new_message_id(domain: str) -> str:
    """A fresh msg-id (RFC 5322 §3.6.4) on this service's domain."""
    return f"<{uuid.uuid4().hex}@{domain}>"
