"""How a send turned out, and the one table that classifies provider errors.

Every provider module reports failures by raising ProviderError with an
Outcome taken from the functions below; the container acts on the Outcome and
never on a provider's status codes or error names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    TRANSIENT = "transient"  # try again, here or elsewhere
    PERMANENT = "permanent"  # this message (or recipient) can never go
    PROVIDER_FAULT = "provider_fault"  # this provider is broken: count it, go elsewhere


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


@dataclass(frozen=True, slots=True)
class SendResult:
    """A send the provider accepted, for every recipient not in `refused`.

    `recipient_ids` is for providers that give each recipient an id of its
    own (Mandrill): recipient → id, which their webhooks then name.
    `provider_message_id` stands for the whole send.
    """

    provider_message_id: str | None = None
    refused: tuple[RecipientFailure, ...] = ()
    recipient_ids: dict[str, str] = field(default_factory=dict)


def classify_http(status: int) -> Outcome:
    """An HTTP API's status code: 429 and 5xx transient, 401/403 the provider's fault."""
    if 200 <= status < 300:
        return Outcome.ACCEPTED
    if status == 429 or status >= 500 or status == 408:
        return Outcome.TRANSIENT
    # 404 from a send endpoint means a wrong base URL or a deleted account or
    # domain: the provider's configuration is broken, not the message.
    if status in (401, 402, 403, 404):
        return Outcome.PROVIDER_FAULT
    return Outcome.PERMANENT


def classify_smtp(code: int) -> Outcome:
    """An SMTP reply code: 4xx transient, 5xx permanent; 530/535 are bad credentials."""
    if code in (530, 534, 535, 538):
        return Outcome.PROVIDER_FAULT
    if 200 <= code < 400:
        return Outcome.ACCEPTED
    if 400 <= code < 500:
        return Outcome.TRANSIENT
    return Outcome.PERMANENT


# Error names carried in a provider's answer body, which say more than its
# HTTP status (SES sends MessageRejected as 400 or 403, Mandrill uses 500 for
# a bad key).
ERROR_NAMES: dict[str, Outcome] = {
    # Amazon SES
    "TooManyRequestsException": Outcome.TRANSIENT,
    "Throttling": Outcome.TRANSIENT,
    "ThrottlingException": Outcome.TRANSIENT,
    "LimitExceededException": Outcome.TRANSIENT,
    "ServiceUnavailable": Outcome.TRANSIENT,
    "InternalFailure": Outcome.TRANSIENT,
    "AccountSuspendedException": Outcome.PROVIDER_FAULT,
    "SendingPausedException": Outcome.PROVIDER_FAULT,
    "MailFromDomainNotVerifiedException": Outcome.PROVIDER_FAULT,
    "InvalidClientTokenId": Outcome.PROVIDER_FAULT,
    "SignatureDoesNotMatch": Outcome.PROVIDER_FAULT,
    "UnrecognizedClientException": Outcome.PROVIDER_FAULT,
    "AccessDenied": Outcome.PROVIDER_FAULT,
    "AccessDeniedException": Outcome.PROVIDER_FAULT,
    "NotFoundException": Outcome.PROVIDER_FAULT,
    "ExpiredToken": Outcome.PROVIDER_FAULT,
    "ExpiredTokenException": Outcome.PROVIDER_FAULT,
    "InvalidSignatureException": Outcome.PROVIDER_FAULT,
    "IncompleteSignature": Outcome.PROVIDER_FAULT,
    "MissingAuthenticationToken": Outcome.PROVIDER_FAULT,
    "ConfigurationSetDoesNotExist": Outcome.PROVIDER_FAULT,
    "ConfigurationSetDoesNotExistException": Outcome.PROVIDER_FAULT,
    "ServiceUnavailableException": Outcome.TRANSIENT,
    "InternalServerError": Outcome.TRANSIENT,
    "RequestTimeout": Outcome.TRANSIENT,
    "RequestTimeoutException": Outcome.TRANSIENT,
    "MessageRejected": Outcome.PERMANENT,
    "BadRequestException": Outcome.PERMANENT,
    "InvalidParameterValue": Outcome.PERMANENT,
    # SES says MessageRejected for an unverified sender, or an unverified
    # recipient while the account is in the sandbox: the account's fault, and
    # another provider can send the same message.
    "Email address is not verified": Outcome.PROVIDER_FAULT,
    "Email address not verified": Outcome.PROVIDER_FAULT,
    "Did not have authority to send from": Outcome.PROVIDER_FAULT,
    # Mandrill
    "Invalid_Key": Outcome.PROVIDER_FAULT,
    "PaymentRequired": Outcome.PROVIDER_FAULT,
    "Unknown_Subaccount": Outcome.PROVIDER_FAULT,
    "GeneralError": Outcome.TRANSIENT,
    "ValidationError": Outcome.PERMANENT,
    # Mandrill's reject_reason for one recipient of a send it otherwise took.
    # Most say this address cannot get mail; some say the sending account
    # cannot send (unverified domain, test mode), which another provider can.
    "hard-bounce": Outcome.PERMANENT,
    "soft-bounce": Outcome.TRANSIENT,
    "spam": Outcome.PERMANENT,
    "unsub": Outcome.PERMANENT,
    "custom": Outcome.PERMANENT,
    "rule": Outcome.PERMANENT,
    "invalid": Outcome.PERMANENT,
    "invalid-sender": Outcome.PROVIDER_FAULT,
    "unsigned": Outcome.PROVIDER_FAULT,
    "test-mode-limit": Outcome.PROVIDER_FAULT,
    "recipient-domain-mismatch": Outcome.PROVIDER_FAULT,
    # Mailgun answers 400/404 with this text when the sending domain is gone
    "Domain not found": Outcome.PROVIDER_FAULT,
    # An SMTP relay that will not relay for us (5.7.1) is configured wrongly,
    # whatever the recipient.
    "Relay access denied": Outcome.PROVIDER_FAULT,
    # Mailgun's sandbox domain refuses unauthorized recipients with a 400.
    "Sandbox subdomains are for test purposes only": Outcome.PROVIDER_FAULT,
}


def classify_name(name: str, default: Outcome) -> Outcome:
    """A provider's error name (or a message containing one) → Outcome."""
    if name in ERROR_NAMES:
        return ERROR_NAMES[name]
    if "Maximum sending rate exceeded" in name:
        return Outcome.TRANSIENT
    for key, outcome in ERROR_NAMES.items():
        if " " in key and key.lower() in name.lower():
            return outcome
    return default


def connection_failure(detail: str, *, sent: bool) -> ProviderError:
    """A connection that failed or a reply that never came: worth trying again.

    `sent` says whether the request may have reached the provider (it went out
    and the answer was lost): then the mail may be on its way, so the failure
    is ambiguous. A connection that never opened is not.
    """
    return ProviderError(Outcome.TRANSIENT, detail, ambiguous=sent)
