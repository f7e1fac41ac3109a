"""Amazon SES through SNS: `POST /hooks/ses`.

SNS signs each message with RSA (SignatureVersion 1: SHA1, 2: SHA256) over a
canonical string of documented fields, and names the certificate in
`SigningCertURL`. Anyone with an AWS account can make SNS sign messages, so two
checks decide together: the signature (certificate fetched only from an
`https://sns.<region>.amazonaws.com/….pem` URL, and cached), and the topic,
which must be one of a configured SES provider's `sns_topics` — that also says
which provider the events belong to.

A signed message is refused when its `Timestamp` is older than the SNS retry
window the operator configures (`sns_max_age` of the SES provider, default
one hour) or more than five minutes ahead.

Three kinds of message: a `SubscriptionConfirmation` (confirmed by a GET on
its `SubscribeURL`, validated as strictly, before the answer: when the GET
fails the answer is a 503 and SNS sends it again), an
`UnsubscribeConfirmation` (kept, never acted on), and a `Notification` whose
`Message` is an SES event (event publishing's `eventType`, or identity
notifications' `notificationType`), received mail (`notificationType:
Received`), or plain text (SES's "Successfully validated SNS topic …": kept,
nothing applied).

Certificates and confirmations go through `SnsClient.fetch`, the only I/O
here. The application holds one SnsClient under `SNS_CLIENT`; tests replace
its `fetch` with one that serves their own self-signed certificate for an
`https://sns.<region>.amazonaws.com/…pem` URL and records confirmations, so
the URL checks, the cache and the signature check are exactly those that run
in production.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
from aiobotocore.session import get_session
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ... import jsonlimits
from ...config import ProviderSettings
from ...errors import ValidationError
from ...events import EventType
from ...notices import Inbound, Item, Notice, Skip
from ..keys import RUNTIME
from .base import (
    SKEW,
    BadSignature,
    Incoming,
    Record,
    Unavailable,
    Verified,
    Webhook,
    check_fresh,
    event_key,
    need,
    optional,
    parse_json,
    timestamp,
)
from .sns import (
    SIGNATURE_HASHES,
    SIGNED_FIELDS,
    SNS_CLIENT,
    FetchError,
    SnsClient,
    check_certificate_url,
    check_subscribe_url,
    verify_signature,
)

log = logging.getLogger(__name__)

# SES's event names (eventType or notificationType) → BitMail's; a bounce is
# refined by its bounceType.
EVENT_TYPES: dict[str, EventType] = {
    "Send": EventType.SENT,
    "Delivery": EventType.DELIVERED,
    "Bounce": EventType.BOUNCED,
    "Complaint": EventType.COMPLAINED,
    "Reject": EventType.REJECTED,
    "DeliveryDelay": EventType.DEFERRED,
    "Open": EventType.OPENED,
    "Click": EventType.CLICKED,
    "Received": EventType.INBOUND,
    # A templated send SES could not render: it never went out to anyone.
    "Rendering Failure": EventType.FAILED,
}
BOUNCE_TYPES: dict[str, EventType] = {
    "Permanent": EventType.BOUNCED,
    "Transient": EventType.DEFERRED,
    "Undetermined": EventType.DEFERRED,
}
# Where an event names its recipients (its own object, then the list in it);
# events not listed concern every address in mail.destination.
RECIPIENT_LISTS: dict[str, tuple[str, str]] = {
    "Bounce": ("bounce", "bouncedRecipients"),
    "Complaint": ("complaint", "complainedRecipients"),
    "Delivery": ("delivery", "recipients"),
    "DeliveryDelay": ("deliveryDelay", "delayedRecipients"),
}
# The object an event describes itself in, where its name does not say it
# ("Bounce" → "bounce", "DeliveryDelay" → "deliveryDelay").
EVENT_OBJECTS: dict[str, str] = {"Rendering Failure": "failure"}
# Opens and clicks do not say which recipient; with one destination it is clear.
UNATTRIBUTED = ("Open", "Click")

# A signed message older than this is refused: SNS's HTTP retry window, which
# the operator sets in the subscription's delivery policy (`sns_max_age` of the
# provider; SNS's default policy retries for well under an hour).
DEFAULT_MAX_AGE = 3600.0



# -- the webhook ----------------------------------------------------------------


def _topics(provider: ProviderSettings) -> list[str]:
    raw = provider.webhook.get("sns_topics") or []
    if isinstance(raw, str):  # one ARN, or several with commas (an environment variable)
        raw = raw.split(",")
    return [str(t).strip() for t in raw if str(t).strip()]


class SesHook(Webhook):
    """`POST /hooks/ses`: SNS messages carrying SES events and received mail."""

    type = "ses"
    name = "ses"
    secrets = ("sns_topics",)
    event_types: ClassVar[dict[str, EventType]] = EVENT_TYPES

    async def validate_request(self, app: web.Application, incoming: Incoming,
                               providers: Sequence[ProviderSettings]) -> Verified:
        message = parse_json(incoming.body)  # SNS posts JSON as text/plain
        if not isinstance(message, dict):
            raise ValidationError("the body must be a JSON object", code="bad_json")
        kind = need(message, "Type", str, "Type")
        if kind not in SIGNED_FIELDS:
            raise ValidationError(f"unknown SNS message type {kind!r}", field="Type")
        header = incoming.headers.get("x-amz-sns-message-type")
        if header is not None and header != kind:
            raise ValidationError("does not match the message's Type",
                                  field="x-amz-sns-message-type")
        for name in (*SIGNED_FIELDS[kind], "Signature", "SignatureVersion", "SigningCertURL"):
            if name != "Subject":
                need(message, name, str, name)
        optional(message, "Subject", str, "Subject")
        topic = message["TopicArn"]
        provider = next((p for p in providers if topic in _topics(p)), None)
        if provider is None:
            raise BadSignature(f"topic {topic} is not in any SES provider's sns_topics",
                               field="TopicArn", code="topic_not_allowed")
        if message["SignatureVersion"] not in SIGNATURE_HASHES:
            raise ValidationError("must be 1 or 2", field="SignatureVersion")
        cert_url = check_certificate_url(message["SigningCertURL"])
        verify_signature(message, await app[SNS_CLIENT].public_key(str(cert_url)))
        signed_at = timestamp(message["Timestamp"])
        if signed_at is None:
            raise ValidationError("is not an ISO 8601 time", field="Timestamp")
        check_fresh(signed_at, "Timestamp", max_age=float(
            provider.webhook.get("sns_max_age") or DEFAULT_MAX_AGE), max_ahead=SKEW)
        return Verified(provider, (Record(event_key(provider.name, message["MessageId"]),
                                          message),))

    def parse_events(self, payload: Any) -> list[Any]:
        kind = need(payload, "Type", str, "Type")
        if kind == "SubscriptionConfirmation":
            topic = need(payload, "TopicArn", str, "TopicArn")
            check_subscribe_url(need(payload, "SubscribeURL", str, "SubscribeURL"), topic)
            return [Skip(f"subscription to {topic} confirmed")]
        if kind == "UnsubscribeConfirmation":
            return [Skip("SNS says the subscription ended; not re-subscribing")]
        text = need(payload, "Message", str, "Message")
        try:
            event = jsonlimits.loads(text, text_only=True)
        except ValueError as exc:
            if isinstance(exc, (jsonlimits.JSONTooDeep, jsonlimits.JSONNotText)):
                raise ValidationError(f"is not valid JSON: {exc}", field="Message",
                                      code="bad_json") from None
            # SES sends plain text too ("Successfully validated SNS topic for
            # Amazon SES event publishing." when a topic is set up): kept.
            return [Skip(f"SNS message is not an SES event: {text[:200]!r}")]
        if not isinstance(event, dict):
            raise ValidationError("must be a JSON object (an SES event) or text",
                                  field="Message")
        name = optional(event, "eventType", str, "Message.eventType") or optional(
            event, "notificationType", str, "Message.notificationType")
        if name is None:
            raise ValidationError("has neither eventType nor notificationType", field="Message")
        kind_of = self.event_types.get(name)
        if kind_of is None:
            return [Skip(f"SES event {name!r} is not tracked")]
        mail = need(event, "mail", dict, "Message.mail")
        if kind_of == EventType.INBOUND:
            return _received(event, mail)
        return _notices(name, kind_of, event, mail)

    async def admit(self, app: web.Application, verified: Verified,
                    items: dict[str, list[Any]]) -> None:
        # Mail an S3 action stored is read before the answer, so what is
        # recorded is the mail itself; when S3 cannot be read, a 503 makes
        # SNS send the notification again.
        max_size = app[RUNTIME].settings.max_message_size
        for parsed in items.values():
            for i, item in enumerate(parsed):
                if isinstance(item, StoredInS3):
                    mime = await fetch_from_s3(verified.provider, item.bucket, item.key,
                                               max_size)
                    parsed[i] = (Inbound(item.recipients, mime=mime, verdicts=item.verdicts)
                                 if mime is not None else
                                 Skip(f"received mail s3://{item.bucket}/{item.key} is over "
                                      f"max_message_size ({max_size} bytes); not delivered"))
        # A subscription is confirmed before the answer: when the GET on its
        # SubscribeURL fails, a 503 makes SNS send the confirmation again.
        for record in verified.records:
            message = record.payload
            if message.get("Type") != "SubscriptionConfirmation":
                continue
            url = str(check_subscribe_url(message["SubscribeURL"], message["TopicArn"]))
            try:
                await app[SNS_CLIENT].confirm(url)
            except (FetchError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.error("could not confirm the SNS subscription to %s for %s: %s",
                          message["TopicArn"], verified.provider.name, exc)
                raise Unavailable("the subscription could not be confirmed now; SNS will "
                                  "send the confirmation again", field="SubscribeURL") from None
            log.info("confirmed the SNS subscription to %s for %s", message["TopicArn"],
                     verified.provider.name)

    def setup(self, app: web.Application) -> None:
        if SNS_CLIENT not in app:
            app[SNS_CLIENT] = SnsClient()
        app.cleanup_ctx.append(_close_sns_client)


async def _close_sns_client(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: close the SNS client's HTTP session at the end."""
    yield
    await app[SNS_CLIENT].close()


def _message_id(mail: dict[str, Any]) -> str | None:
    """The RFC Message-ID of the sent mail: from mail.headers, else commonHeaders."""
    for header in mail.get("headers") or []:
        if (isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id"
                and isinstance(header.get("value"), str)):
            return str(header["value"])
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        return str(common["messageId"])
    return None


def _destination(mail: dict[str, Any]) -> list[str]:
    dest = optional(mail, "destination", list, "Message.mail.destination") or []
    return [d for d in dest if isinstance(d, str)]


def _notices(name: str, kind: EventType, event: dict[str, Any],
             mail: dict[str, Any]) -> list[Item]:
    key = EVENT_OBJECTS.get(name) or name[0].lower() + name[1:]  # "bounce", "deliveryDelay", …
    body = optional(event, key, dict, f"Message.{key}") or {}
    if name == "Bounce":
        kind = BOUNCE_TYPES.get(str(body.get("bounceType")), EventType.BOUNCED)
    pmid = optional(mail, "messageId", str, "Message.mail.messageId")
    at = timestamp(body.get("timestamp")) or timestamp(mail.get("timestamp"))
    general = _general_detail(name, body)
    targets: list[tuple[str | None, str]] = []
    if name in RECIPIENT_LISTS:
        obj, listed = RECIPIENT_LISTS[name]
        for entry in optional(body, listed, list, f"Message.{obj}.{listed}") or []:
            if isinstance(entry, str):
                targets.append((entry, general))
            elif isinstance(entry, dict) and isinstance(entry.get("emailAddress"), str):
                specific = entry.get("diagnosticCode") or entry.get("status") or ""
                targets.append((entry["emailAddress"], str(specific) or general))
        if not targets:
            raise ValidationError("names no recipient", field=f"Message.{obj}.{listed}")
    elif name in UNATTRIBUTED:
        dest = _destination(mail)
        targets.append((dest[0] if len(dest) == 1 else None, general))
    else:
        targets += [(address, general) for address in _destination(mail)] or [(None, general)]
    return [Notice(kind, recipient, detail, at, provider_message_id=pmid,
                   message_id=_message_id(mail)) for recipient, detail in targets]


def _general_detail(name: str, body: dict[str, Any]) -> str:
    fields = {"Bounce": ("bounceType", "bounceSubType"), "Complaint": ("complaintFeedbackType",),
              "Delivery": ("smtpResponse",), "Reject": ("reason",),
              "DeliveryDelay": ("delayType",), "Click": ("link",),
              "Rendering Failure": ("templateName", "errorMessage")}.get(name, ())
    return " ".join(str(body[f]) for f in fields if body.get(f))


# Receipt verdicts kept on the Inbox copy: receipt field → verdict name.
VERDICTS: dict[str, str] = {
    "spamVerdict": "spam",
    "virusVerdict": "virus",
    "spfVerdict": "spf",
    "dkimVerdict": "dkim",
    "dmarcVerdict": "dmarc",
}


@dataclass(frozen=True, slots=True)
class StoredInS3:
    """Received mail an S3 receipt action put in a bucket: fetched before the
    answer (SesHook.admit), then an Inbound like any other."""

    recipients: tuple[str, ...]
    bucket: str
    key: str
    verdicts: dict[str, str]


def _verdicts(receipt: dict[str, Any]) -> dict[str, str]:
    out = {}
    for field_name, name in VERDICTS.items():
        verdict = receipt.get(field_name)
        if isinstance(verdict, dict) and isinstance(verdict.get("status"), str):
            out[name] = verdict["status"]
    return out


def _received(event: dict[str, Any], mail: dict[str, Any]) -> list[Any]:
    receipt = optional(event, "receipt", dict, "Message.receipt") or {}
    recipients = tuple(r.strip().lower() for r in (receipt.get("recipients")
                                                   or _destination(mail)) if isinstance(r, str))
    verdicts = _verdicts(receipt)
    found = receipt.get("action")
    action: dict[str, Any] = found if isinstance(found, dict) else {}
    content = optional(event, "content", str, "Message.content")
    if content is None:
        if action.get("type") == "S3":
            # SES stores mail over 150 KB (or any, by the rule) in S3 and says where.
            bucket = need(action, "bucketName", str, "Message.receipt.action.bucketName")
            key = need(action, "objectKey", str, "Message.receipt.action.objectKey")
            return [StoredInS3(recipients, bucket, key, verdicts)]
        return [Skip(f"received mail without content (a {action.get('type')!r} action)")]
    if str(action.get("encoding", "UTF8")).upper() == "BASE64":
        try:
            mime = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("is not base64", field="Message.content") from None
    else:
        mime = content.encode("utf-8", "surrogateescape")
    return [Inbound(recipients, mime=mime, verdicts=verdicts)]


async def fetch_from_s3(provider: ProviderSettings, bucket: str, key: str,
                        max_size: int) -> bytes | None:
    """The object's bytes, read with the SES provider's region, credentials and
    `s3_endpoint_url`; None when it is larger than `max_size` (not read).
    Unavailable (503, SNS retries) when S3 cannot be read now."""
    options = provider.options
    try:
        async with get_session().create_client(
                "s3", region_name=options.get("region"),
                endpoint_url=options.get("s3_endpoint_url") or None,
                aws_access_key_id=options.get("access_key_id") or None,
                aws_secret_access_key=options.get("secret_access_key") or None,
                config=Config(connect_timeout=10, read_timeout=30,
                              retries={"total_max_attempts": 2, "mode": "standard"})) as s3:
            answer = await s3.get_object(Bucket=bucket, Key=key)
            async with answer["Body"] as body:
                if int(answer.get("ContentLength") or 0) > max_size:
                    return None
                data: bytes = await body.read()
    except (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning("cannot read received mail s3://%s/%s for %s: %s", bucket, key,
                    provider.name, exc)
        raise Unavailable(f"the received mail in s3://{bucket}/{key} cannot be read now",
                          field="Message.receipt.action") from None
    return data if len(data) <= max_size else None
