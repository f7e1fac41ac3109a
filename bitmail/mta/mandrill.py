"""Mandrill: the MIME as it is, through `messages/send-raw.json`.

Mandrill answers per recipient: "sent", "queued" or "scheduled" (taken — a
queued message goes out later and must never be sent again elsewhere),
"rejected" (with a reason) or "invalid". A refused recipient is reported on
its own; the others are sent. API errors come as HTTP 500 with a `name`
(Invalid_Key, PaymentRequired, GeneralError, ValidationError, ...), which
ERRORS below classifies.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp

from .http import HTTPAnswer, HTTPProvider
from .outcomes import (
    Outcome,
    ProviderError,
    RecipientFailure,
    SendResult,
    classify_http,
)
from .provider import Job

__all__ = ["ERRORS", "REJECT_REASONS", "MandrillProvider", "classify"]

log = logging.getLogger(__name__)

TAKEN = frozenset({"sent", "queued", "scheduled"})

# Mandrill's error names (`name` in {"status": "error", "code", "name",
# "message"}, answered with HTTP 500 whatever the cause) → Outcome.
ERRORS: dict[str, Outcome] = {
    "Invalid_Key": Outcome.PROVIDER_FAULT,
    "PaymentRequired": Outcome.PROVIDER_FAULT,
    "Unknown_Subaccount": Outcome.PROVIDER_FAULT,
    "PoorReputation": Outcome.PROVIDER_FAULT,
    "ServiceUnavailable": Outcome.TRANSIENT,
    "GeneralError": Outcome.TRANSIENT,
    "ValidationError": Outcome.PERMANENT,
}
# Mandrill's reject_reason for one recipient of a send it otherwise took. Most
# say this address cannot get mail; some say the sending account cannot send
# (unverified domain, test mode), which another provider can.
REJECT_REASONS: dict[str, Outcome] = {
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
}


def classify(status: int, name: str) -> Outcome:
    """An API error → Outcome: its ERRORS name, else the HTTP status."""
    return ERRORS.get(name) or classify_http(status)


class MandrillProvider(HTTPProvider):
    """Sends through Mandrill's (Mailchimp Transactional) HTTP API.

    Options: `api_key` (required); `base_url` (default
    https://mandrillapp.com/api/1.0); `timeout`, `connect_timeout`, `session`
    as for every HTTP provider.
    """

    type = "mandrill"
    # Mandrill's API sets no recipient limit (the JSON must stay under 10 MB)
    # and "strongly recommends smaller recipient batches"; its SMTP takes up
    # to 1,000 recipients at a time, and so does this provider per call.
    max_recipients = 1000

    def __init__(self, name: str, *, api_key: str,
                 base_url: str = "https://mandrillapp.com/api/1.0",
                 timeout: float | str = 30.0, connect_timeout: float | str | None = None,
                 session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(name, timeout=timeout, connect_timeout=connect_timeout, session=session)
        if not api_key:
            raise ValueError("a mandrill provider needs api_key")
        self.api_key = api_key
        self.url = f"{base_url.rstrip('/')}/messages/send-raw.json"

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,)

    def can_carry(self, job: Job) -> bool:
        """Only UTF-8 text: send-raw takes the message as a JSON string
        (Mandrill's API reference, messages/send-raw: raw_message), so 8-bit
        bytes in another charset cannot go through it as they are."""
        if not super().can_carry(job):
            return False
        if job.mime.isascii():  # most mail: no byte to decode
            return True
        try:
            job.mime.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    async def send(self, job: Job) -> SendResult:
        try:
            raw = job.mime.decode("utf-8")
        except UnicodeDecodeError:
            # send-raw takes the message as a JSON string (Mandrill's API
            # reference, messages/send-raw: raw_message), which only UTF-8
            # bytes become unchanged: 8-bit Latin-1, say, cannot go through
            # Mandrill as it is. The message is fine; an SMTP relay carries it.
            raise ProviderError(Outcome.CANNOT_CARRY,
                                "mandrill: the message is not UTF-8 text, which send-raw "
                                "needs") from None
        body = {
            "key": self.api_key,
            "raw_message": raw,
            "from_email": job.sender,
            "to": list(job.recipients),  # the envelope: bcc is in no header
            "async": False,  # wait for per-recipient results
        }
        answer = await self.post(self.url, json=body)
        if answer.status != 200:
            raise self._error(answer)
        try:
            results = json.loads(answer.body)
        except ValueError:
            results = None
        if isinstance(results, dict) and results.get("status") == "error":
            raise self._error(answer)
        if not isinstance(results, list):
            # A 200 means Mandrill took the send; calling it a failure would send it twice.
            log.warning("mandrill %s accepted message %s with an unreadable answer: %r",
                        self.name, job.message_doc_id, answer.text(100),
                        extra={"message_doc_id": job.message_doc_id, "provider": self.name})
            return SendResult()
        return self._result(job, results)

    def _result(self, job: Job, results: list[Any]) -> SendResult:
        by_address = {r.lower(): r for r in job.recipients}
        refused: list[RecipientFailure] = []
        ids: dict[str, str] = {}  # recipient → Mandrill's id for it
        for entry in results:
            if not isinstance(entry, dict):
                continue
            recipient = by_address.get(str(entry.get("email", "")).lower())
            status = str(entry.get("status", ""))
            if recipient is None:
                continue
            if status in ("rejected", "invalid"):
                reason = str(entry.get("reject_reason") or status)
                outcome = REJECT_REASONS.get(reason, Outcome.PERMANENT)
                refused.append(RecipientFailure(recipient, outcome,
                                                f"mandrill {status}: {reason}"))
            else:
                if status not in TAKEN:
                    # An answer we do not know still means it was taken: never send twice.
                    log.warning("mandrill %s: unknown status %r for message %s",
                                self.name, status, job.message_doc_id,
                                extra={"message_doc_id": job.message_doc_id,
                                       "provider": self.name})
                if entry.get("_id"):
                    ids[recipient] = str(entry["_id"])
        if refused and len(refused) == len(job.recipients) and all(
                f.outcome == Outcome.PROVIDER_FAULT for f in refused):
            # Refused for the account's sake (unsigned domain, test mode): the
            # message is fine and another provider can send all of it.
            raise ProviderError(Outcome.PROVIDER_FAULT, refused[0].detail)
        # One id per recipient at Mandrill, each named by that recipient's
        # webhooks; the first taken one stands for the send.
        return SendResult(provider_message_id=next(iter(ids.values()), None),
                          refused=tuple(refused), recipient_ids=ids)

    def _error(self, answer: HTTPAnswer) -> ProviderError:
        name, message = "", ""
        try:
            body = json.loads(answer.body)
            if isinstance(body, dict):
                name, message = str(body.get("name", "")), str(body.get("message", ""))
        except ValueError:
            pass
        outcome = classify(answer.status, name)
        detail = f"mandrill {answer.status} {name}: {message}" if name else \
            f"mandrill {answer.status}: {answer.text()}"
        return ProviderError(outcome, self.redact(detail))
