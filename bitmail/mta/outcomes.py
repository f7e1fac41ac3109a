"""How a send turned out, and the generic helpers that read a failure.

Every provider module reports failures by raising ProviderError with an
Outcome; the container acts on the Outcome and never on a provider's status
codes or error names. What a provider's own error names and texts mean is in
that provider's module (its ERRORS table): a phrase means one thing from one
provider and another from the next ("Domain not found" is Mailgun's missing
sending domain, but a recipient's missing domain from an SMTP relay), so no
table here is matched against every provider's text. What is here is what
the standards say: HTTP status codes, SMTP reply codes (RFC 5321, RFC 4954)
and enhanced status codes (RFC 3463).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    TRANSIENT = "transient"  # try again, here or elsewhere
    PERMANENT = "permanent"  # this message (or recipient) can never go
    PROVIDER_FAULT = "provider_fault"  # this provider is broken: count it, go elsewhere
    # This provider cannot carry this message (over its size limit, bytes its
    # API cannot take), though the message is fine and the provider is not
    # broken: go elsewhere; the message fails only when no provider can carry it.
    CANNOT_CARRY = "cannot_carry"


class ProviderError(Exception):
    """A send that did not succeed, classified.

    `ambiguous` marks a failure after the request went out (a read timeout, a
    connection lost after the end of DATA): the mail may have been sent.
    """

    def __init__(self, outcome: Outcome, detail: str, *, ambiguous: bool = False):
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
        self.ambiguous = ambiguous


@dataclass(frozen=True, slots=True)
class RecipientFailure:
    """One recipient the provider refused while it took the others."""

    recipient: str
    outcome: Outcome
    detail: str
    ambiguous: bool = False  # the call timed out after it went out: it may have been sent


@dataclass(frozen=True, slots=True)
class SendResult:
    """A send the provider accepted, for every recipient not in `refused`.

    `recipient_ids` is for providers that give each recipient an id of its
    own (Mandrill): recipient → id, which their webhooks then name.
    `provider_message_id` stands for the whole send.

    Ids are what the container records and matches webhooks by, so both are
    made sure of here, for every provider at once: an id that is not a
    non-empty string (a provider's answer with a list, a number or "" where
    its documentation has a string) is dropped — the send stays accepted,
    with no id for it, rather than failing after the provider took the mail.
    """

    provider_message_id: str | None = None
    refused: tuple[RecipientFailure, ...] = ()
    recipient_ids: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # object.__setattr__: the dataclass is frozen; this is its construction.
        object.__setattr__(self, "provider_message_id", _usable_id(self.provider_message_id))
        ids = self.recipient_ids if isinstance(self.recipient_ids, dict) else {}
        object.__setattr__(self, "recipient_ids", {
            r: i for r, i in ids.items() if isinstance(r, str) and _usable_id(i)})


def _usable_id(value: object) -> str | None:
    """`value` when it is a string with something in it, else None."""
    return value if isinstance(value, str) and value.strip() else None


def classify_http(status: int) -> Outcome:
    """An HTTP API's status code: 429 and 5xx transient, 401/403 the provider's
    fault, 413 a message over this provider's size limit (RFC 9110 §15.5.14,
    Content Too Large), which another provider's may allow."""
    if 200 <= status < 300:
        return Outcome.ACCEPTED
    if status == 413:
        return Outcome.CANNOT_CARRY
    if status == 429 or status >= 500 or status == 408:
        return Outcome.TRANSIENT
    # 404 from a send endpoint means a wrong base URL or a deleted account or
    # domain: the provider's configuration is broken, not the message.
    if status in (401, 402, 403, 404):
        return Outcome.PROVIDER_FAULT
    return Outcome.PERMANENT


# Reply codes that say the client is not allowed in (RFC 4954: 530 authentication
# required, 534 mechanism too weak, 535 credentials invalid, 538 encryption
# required): the relay's configuration, never the message's.
SMTP_AUTH_CODES = frozenset({530, 534, 535, 538})


def classify_smtp(code: int) -> Outcome:
    """An SMTP reply code (RFC 5321 4.2.1): 2xx/3xx accepted, 4xx transient, 5xx
    permanent; the RFC 4954 authentication refusals are the provider's fault."""
    if code in SMTP_AUTH_CODES:
        return Outcome.PROVIDER_FAULT
    if 200 <= code < 400:
        return Outcome.ACCEPTED
    if 400 <= code < 500:
        return Outcome.TRANSIENT
    return Outcome.PERMANENT


@dataclass(frozen=True, slots=True)
class EnhancedStatus:
    """An RFC 3463 enhanced status code, `class.subject.detail` (e.g. 5.1.1)."""

    klass: int  # 2 success, 4 persistent transient failure, 5 permanent failure
    subject: int  # 1 addressing, 2 mailbox, 3 mail system, 4 network, 5 protocol,
    #               6 content, 7 security or policy
    detail: int

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"


# RFC 3463 section 2: class "." subject "." detail, class 2, 4 or 5, subject up
# to three digits, detail up to three; RFC 2034 puts it first in the reply text.
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")


def enhanced_status(text: str) -> EnhancedStatus | None:
    """The enhanced status code at the start of a reply's text (RFC 2034: right
    after the reply code, "550 5.1.1 ..."), else the first one in it (DSN
    diagnostic texts quote it later), else None."""
    match = _ENHANCED.match(text.strip()) or _ENHANCED.search(text)
    if match is None:
        return None
    return EnhancedStatus(*(int(g) for g in match.groups()))


def classify_smtp_reply(code: int, text: str) -> Outcome:
    """A whole SMTP reply by the standards alone: the reply code (RFC 5321),
    refined by its enhanced status code (RFC 3463) where that says the client
    is not allowed in — X.7.8 credentials invalid, X.7.9 mechanism too weak,
    X.7.11 encryption required, X.7.12 password transition needed (RFC 4954,
    5248): the relay's configuration, never the message's — or that the
    message is too big for this system (5.3.4, RFC 3463 §3.4: "larger than
    per-message size limit"): another provider's limit may be larger. A
    provider's module reads the text for what the codes do not say.
    """
    outcome = classify_smtp(code)
    status = enhanced_status(text)
    if (status is not None and code >= 400 and status.subject == 7
            and status.detail in (8, 9, 11, 12)):
        return Outcome.PROVIDER_FAULT
    if status is not None and code >= 500 and (status.subject, status.detail) == (3, 4):
        return Outcome.CANNOT_CARRY
    return outcome


def connection_failure(detail: str, *, sent: bool) -> ProviderError:
    """A connection that failed or a reply that never came: worth trying again.

    `sent` says whether the request may have reached the provider (it went out
    and the answer was lost): then the mail may be on its way, so the failure
    is ambiguous. A connection that never opened is not.
    """
    return ProviderError(Outcome.TRANSIENT, detail, ambiguous=sent)
