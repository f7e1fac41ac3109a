"""Mailgun: the MIME as it is, through `POST /v3/{domain}/messages.mime`.

Sending the finished MIME (rather than form fields) keeps our Message-ID and
every header byte for byte, so a retry through another provider is the same
message. Every envelope recipient goes in `to` — bcc included: Mailgun sends to
the `to` parameter, not to the headers.
"""

from __future__ import annotations

import base64
import json
import logging

import aiohttp

from .http import HTTPAnswer, HTTPProvider
from .outcomes import Outcome, ProviderError, SendResult, classify_http
from .provider import Job

__all__ = ["ERRORS", "MailgunProvider", "classify"]

log = logging.getLogger(__name__)

# Mailgun's error texts (the "message" of its JSON answer) that say more than
# the HTTP status: each phrase, matched case-insensitively, → Outcome. From
# Mailgun's API response codes and sending errors: a 400 is the request's
# fault unless its text says the account or domain cannot send.
ERRORS: dict[str, Outcome] = {
    # 404 {"message": "Domain not found: mg.example.com"}: the sending domain
    # is gone (the provider's configuration), whatever the recipients.
    "domain not found": Outcome.PROVIDER_FAULT,
    # 400 on a sandbox domain for a recipient not authorized in the account.
    "sandbox subdomains are for test purposes only": Outcome.PROVIDER_FAULT,
    # 400/403 "Domain x is not allowed to send: Free accounts are for test
    # purposes only ..." and the like: the account, not the message.
    "is not allowed to send": Outcome.PROVIDER_FAULT,
    "free accounts are for test purposes only": Outcome.PROVIDER_FAULT,
}


def classify(status: int, message: str) -> Outcome:
    """Mailgun's answer → Outcome: its ERRORS phrases, else the HTTP status."""
    text = message.lower()
    for phrase, outcome in ERRORS.items():
        if phrase in text:
            return outcome
    return classify_http(status)



class MailgunProvider(HTTPProvider):
    """Sends through Mailgun's HTTP API.

    Options: `api_key`, `domain` (required); `base_url` (default
    https://api.mailgun.net; https://api.eu.mailgun.net for the EU region);
    `timeout`, `connect_timeout`, `session` as for every HTTP provider.
    """

    type = "mailgun"
    # "The maximum number of recipients allowed for Batch Sending is 1,000"
    # (Mailgun's sending documentation).
    max_recipients = 1000

    def __init__(self, name: str, *, api_key: str, domain: str,
                 base_url: str = "https://api.mailgun.net", timeout: float | str = 30.0,
                 connect_timeout: float | str | None = None,
                 session: aiohttp.ClientSession | None = None) -> None:
        super().__init__(name, timeout=timeout, connect_timeout=connect_timeout, session=session)
        if not api_key or not domain:
            raise ValueError("a mailgun provider needs api_key and domain")
        self.api_key = api_key
        self.domain = domain
        self.url = f"{base_url.rstrip('/')}/v3/{domain}/messages.mime"
        token = base64.b64encode(f"api:{api_key}".encode()).decode()
        self._auth = {"Authorization": f"Basic {token}"}

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key, self._auth["Authorization"].removeprefix("Basic "))

    async def send(self, job: Job) -> SendResult:
        form = aiohttp.FormData()
        for recipient in job.recipients:
            form.add_field("to", recipient)
        form.add_field("message", job.mime, filename="message.mime",
                       content_type="message/rfc822")
        answer = await self.post(self.url, data=form, headers=self._auth)
        if answer.status == 200:
            return SendResult(provider_message_id=self._message_id(answer, job))
        raise self._error(answer)

    def _message_id(self, answer: HTTPAnswer, job: Job) -> str | None:
        """Mailgun's id without its angle brackets.

        A 200 whose body is not the documented JSON (a proxy's page, a cut-off
        body) still means Mailgun took the mail: reporting a failure would send
        it twice. So it is accepted, with no id; webhooks then cannot be
        matched to it, which is the lesser harm.
        """
        try:
            body = json.loads(answer.body)
            mid = body["id"]
            if not isinstance(mid, str):
                raise TypeError("the id is not a string")
        except (ValueError, TypeError, KeyError):
            log.warning("mailgun %s accepted message %s with an unreadable answer: %r",
                        self.name, job.message_doc_id, answer.text(100),
                        extra={"message_doc_id": job.message_doc_id, "provider": self.name})
            return None
        return mid.strip().removeprefix("<").removesuffix(">") or None

    def _error(self, answer: HTTPAnswer) -> ProviderError:
        # Mailgun's errors are {"message": "..."} (sometimes plain text, e.g. 401
        # "Forbidden"); the text can say more than the status ("Domain not found").
        try:
            body = json.loads(answer.body)
            message = str(body.get("message", "")) if isinstance(body, dict) else ""
        except ValueError:
            message = ""
        message = message or answer.text()
        outcome = classify(answer.status, message)
        return ProviderError(outcome, self.redact(f"mailgun {answer.status}: {message}"))
