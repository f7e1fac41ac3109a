"""Amazon SES: the MIME as it is, through the SESv2 `SendEmail` call with raw content.

The Destination lists every envelope recipient (bcc included); SES takes the
headers from the raw message, so our Message-ID is kept. botocore must not
retry on its own: a retried send after a lost answer would deliver twice
behind the container's back, so retries are left to the container, which
knows the outcome was ambiguous.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from contextvars import ContextVar
from typing import Any

import aiohttp
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    SSLError,
)

from ..config import parse_duration
from .outcomes import (
    Outcome,
    ProviderError,
    SendResult,
    classify_http,
    connection_failure,
)
from .provider import Job, Provider

__all__ = ["ERRORS", "MESSAGES", "SESProvider", "classify"]

log = logging.getLogger(__name__)

# The HTTP statuses of the answers to the current send, noted by a botocore
# hook before the body is parsed: when parsing then fails, they say whether
# SES had already taken the mail. Each send runs in its own task, and so in
# its own context: concurrent sends on one client do not see each other's.
_STATUSES: ContextVar[list[int] | None] = ContextVar("ses_statuses", default=None)


def _note_status(response_dict: dict[str, Any], **_: Any) -> None:
    """botocore's before-parse hook: note the answer's HTTP status."""
    statuses = _STATUSES.get()
    if statuses is not None:
        statuses.append(int(response_dict.get("status_code") or 0))

# SES's error codes (the `Code` botocore reads from the x-amzn-ErrorType
# header or the body's __type) → Outcome: SendEmail's own errors and the
# errors common to every AWS API. A code not listed goes by its HTTP status.
ERRORS: dict[str, Outcome] = {
    "TooManyRequestsException": Outcome.TRANSIENT,
    "Throttling": Outcome.TRANSIENT,
    "ThrottlingException": Outcome.TRANSIENT,
    "LimitExceededException": Outcome.TRANSIENT,
    "ServiceUnavailable": Outcome.TRANSIENT,
    "ServiceUnavailableException": Outcome.TRANSIENT,
    "InternalFailure": Outcome.TRANSIENT,
    "InternalServerError": Outcome.TRANSIENT,
    "RequestTimeout": Outcome.TRANSIENT,
    "RequestTimeoutException": Outcome.TRANSIENT,
    "AccountSuspendedException": Outcome.PROVIDER_FAULT,
    "SendingPausedException": Outcome.PROVIDER_FAULT,
    "MailFromDomainNotVerifiedException": Outcome.PROVIDER_FAULT,
    "InvalidClientTokenId": Outcome.PROVIDER_FAULT,
    "SignatureDoesNotMatch": Outcome.PROVIDER_FAULT,
    "UnrecognizedClientException": Outcome.PROVIDER_FAULT,
    "AccessDenied": Outcome.PROVIDER_FAULT,
    "AccessDeniedException": Outcome.PROVIDER_FAULT,
    "NotAuthorized": Outcome.PROVIDER_FAULT,
    "OptInRequired": Outcome.PROVIDER_FAULT,
    "NotFoundException": Outcome.PROVIDER_FAULT,
    "ExpiredToken": Outcome.PROVIDER_FAULT,
    "ExpiredTokenException": Outcome.PROVIDER_FAULT,
    "InvalidSignatureException": Outcome.PROVIDER_FAULT,
    "IncompleteSignature": Outcome.PROVIDER_FAULT,
    "MissingAuthenticationToken": Outcome.PROVIDER_FAULT,
    "ConfigurationSetDoesNotExist": Outcome.PROVIDER_FAULT,
    "ConfigurationSetDoesNotExistException": Outcome.PROVIDER_FAULT,
    "MessageRejected": Outcome.PERMANENT,
    "BadRequestException": Outcome.PERMANENT,
    "InvalidParameterValue": Outcome.PERMANENT,
}
# Phrases of SES's error messages that say more than the code: MessageRejected
# for an unverified sender, or an unverified recipient while the account is in
# the sandbox, is the account's fault, and another provider can send the same
# message; the sending quotas ("Maximum sending rate exceeded.", "Daily message
# quota exceeded.") come as Throttling and pass.
MESSAGES: dict[str, Outcome] = {
    "email address is not verified": Outcome.PROVIDER_FAULT,
    "email address not verified": Outcome.PROVIDER_FAULT,
    "did not have authority to send from": Outcome.PROVIDER_FAULT,
    "maximum sending rate exceeded": Outcome.TRANSIENT,
    "daily message quota exceeded": Outcome.TRANSIENT,
}


def classify(status: int, code: str, message: str) -> Outcome:
    """An SES error → Outcome: a MESSAGES phrase, else the ERRORS code, else the
    HTTP status."""
    text = message.lower()
    for phrase, outcome in MESSAGES.items():
        if phrase in text:
            return outcome
    return ERRORS.get(code) or classify_http(status)



class SESProvider(Provider):
    """Sends through Amazon SES (API v2).

    Options (all optional): `region`, `endpoint_url`, `access_key_id` and
    `secret_access_key` (else the usual AWS credential chain),
    `configuration_set`, `timeout` (waiting for the answer, default 30s) and
    `connect_timeout` (default the smaller of 10s and `timeout`);
    `s3_endpoint_url` for received mail an S3 receipt action stored (the SES
    webhook reads it with the same region and credentials; default AWS's own).
    """

    type = "ses"
    # "The combined number of To:, CC: and BCC: email addresses cannot exceed
    # 50" (SES API reference, SendEmail / SendRawEmail).
    max_recipients = 50

    def __init__(self, name: str, *, region: str | None = None, endpoint_url: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 configuration_set: str | None = None, timeout: float | str = 30.0,
                 connect_timeout: float | str | None = None,
                 s3_endpoint_url: str | None = None) -> None:
        super().__init__(name)
        if bool(access_key_id) != bool(secret_access_key):
            raise ValueError("an ses provider needs both access_key_id and secret_access_key, "
                             "or neither (for the AWS credential chain)")
        read = parse_duration(timeout, f"{name}.timeout")
        connect = (min(10.0, read) if connect_timeout is None
                   else parse_duration(connect_timeout, f"{name}.connect_timeout"))
        self.region = region
        self.endpoint_url = endpoint_url
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.configuration_set = configuration_set
        # Where received mail stored by an S3 receipt action is read from
        # (the webhook reads it with this provider's region and credentials).
        self.s3_endpoint_url = s3_endpoint_url
        self.config = Config(
            connect_timeout=connect,
            read_timeout=read,
            # One attempt in all (see the module docstring). Not max_attempts=1:
            # botocore counts that in retries, on top of the first attempt.
            retries={"total_max_attempts": 1, "mode": "standard"},
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.secret_access_key,) if s)

    async def start(self) -> None:
        if self._client is not None:
            return
        stack = contextlib.AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(get_session().create_client(
                "sesv2",
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self.access_key_id,
                aws_secret_access_key=self.secret_access_key,
                config=self.config,
            ))
        except NoRegionError:
            await stack.aclose()
            raise ProviderError(Outcome.PROVIDER_FAULT,
                                "no AWS region: set the provider's region option") from None
        self._client.meta.events.register("before-parse.sesv2.SendEmail", _note_status)
        self._stack = stack

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack, self._client = None, None

    async def send(self, job: Job) -> SendResult:
        if self._client is None:
            await self.start()
        request: dict[str, Any] = {
            "FromEmailAddress": job.sender,
            "Destination": {"ToAddresses": list(job.recipients)},
            "Content": {"Raw": {"Data": job.mime}},
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        statuses: list[int] = []
        token = _STATUSES.set(statuses)
        try:
            answer = await self._client.send_email(**request)
        except ClientError as exc:
            raise self._client_error(exc) from None
        except BotoCoreError as exc:
            raise self._transport_error(exc) from None
        except Exception as exc:
            # botocore's parser raises AttributeError or TypeError on a body
            # that is JSON but not an object (`null`, `[]`: a proxy in the
            # way). Then the HTTP status is all the answer says; without one
            # the request never got an answer, and this is a fault here.
            if not statuses:
                raise
            if not 200 <= statuses[-1] < 300:
                raise ProviderError(classify_http(statuses[-1]),
                                    f"ses {statuses[-1]}: an unreadable answer") from None
            # After a 2xx SES has the mail: a failure would send it again.
            log.warning("ses %s accepted message %s with an unreadable answer (%s: %s)",
                        self.name, job.message_doc_id, type(exc).__name__, exc,
                        extra={"message_doc_id": job.message_doc_id, "provider": self.name})
            return SendResult()
        finally:
            _STATUSES.reset(token)
        return SendResult(provider_message_id=self._message_id(answer, job))

    def _message_id(self, answer: Any, job: Job) -> str | None:
        """SES's MessageId (SESv2 API reference, SendEmail: a string). A 2xx
        without a usable one still means SES took the mail (as for Mailgun):
        it is accepted with no id, and webhooks then cannot be matched to it."""
        mid = answer.get("MessageId") if isinstance(answer, dict) else None
        if isinstance(mid, str) and mid.strip():
            return mid
        if mid is not None:
            log.warning("ses %s accepted message %s with an unusable MessageId: %.100r",
                        self.name, job.message_doc_id, mid,
                        extra={"message_doc_id": job.message_doc_id, "provider": self.name})
        return None

    def _client_error(self, exc: ClientError) -> ProviderError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400) or 400)
        outcome = classify(status, code, message)
        return ProviderError(outcome, self.redact(f"ses {status} {code}: {message}"))

    def _transport_error(self, exc: BotoCoreError) -> ProviderError:
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ProviderError(Outcome.PROVIDER_FAULT, f"no AWS credentials: {exc}")
        if isinstance(exc, SSLError):
            return ProviderError(Outcome.PROVIDER_FAULT, "TLS failed with the SES endpoint")
        if isinstance(exc, ConnectTimeoutError):
            return connection_failure("timed out connecting to SES", sent=False)
        if isinstance(exc, EndpointConnectionError):
            # aiobotocore reports any aiohttp connection error this way; only a
            # connection that never opened means the request did not go out.
            cause = exc.kwargs.get("error")
            never_opened = isinstance(cause, (aiohttp.ClientConnectorError, socket.gaierror))
            return connection_failure(f"cannot reach SES: {type(cause).__name__}",
                                      sent=not never_opened)
        # ReadTimeoutError, ConnectionClosedError and the rest: after the request went out.
        return connection_failure(f"SES: {type(exc).__name__}", sent=True)
