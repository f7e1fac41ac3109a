"""Provider webhooks, signed as each provider signs them, for tests.

Each signer makes what its provider posts, with the secret BitMail is
configured with, and can post it to a BitMail (an aiohttp TestClient or
ClientSession — anything with `post(url, **kwargs)`):

    mailgun = MailgunSigner("webhook-signing-key")
    await mailgun.post_event(client, "/hooks/mailgun", {"event": "delivered", ...})

    mandrill = MandrillSigner("webhook-key", "https://mail.example.com/hooks/mandrill")
    await mandrill.post_events(client, "/hooks/mandrill", [{"event": "send", ...}])

    sns = SnsSigner()                       # its own key and certificate
    app[SNS_CLIENT].fetch = sns.fetch       # BitMail fetches the certificate from it
    await sns.post(client, "/hooks/ses", sns.notification(topic, ses_event))

The formats: Mailgun's `signature` (hex HMAC-SHA256 of timestamp + token),
Mandrill's X-Mandrill-Signature (base64 HMAC-SHA1 of the webhook URL and the
sorted POST fields), SNS's RSA signature over its canonical string
(SignatureVersion 1: SHA1, 2: SHA256) with the certificate at an
`https://sns.<region>.amazonaws.com/….pem` URL.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

__all__ = ["MailgunSigner", "MandrillSigner", "SnsSigner"]


class MailgunSigner:
    """Mailgun's webhook signature with one signing key."""

    def __init__(self, signing_key: str) -> None:
        self.signing_key = signing_key

    def signature(self, *, timestamp: float | str | None = None,
                  token: str | None = None) -> dict[str, str]:
        """`{"timestamp", "token", "signature"}`; now and a fresh token by default."""
        ts = str(int(time.time())) if timestamp is None else str(
            int(timestamp) if isinstance(timestamp, float) else timestamp)
        token = token or secrets.token_hex(25)
        sig = hmac.new(self.signing_key.encode(), (ts + token).encode(),
                       hashlib.sha256).hexdigest()
        return {"timestamp": ts, "token": token, "signature": sig}

    def event(self, event_data: Mapping[str, Any], **signature: Any) -> dict[str, Any]:
        """A JSON webhook body: `{"signature": ..., "event-data": ...}`."""
        return {"signature": self.signature(**signature), "event-data": dict(event_data)}

    def form(self, fields: Mapping[str, str], **signature: Any) -> dict[str, str]:
        """A legacy (form-encoded) webhook or a route's forward(): the fields and
        the signature fields beside them."""
        return {**fields, **self.signature(**signature)}

    async def post_event(self, client: Any, url: str, event_data: Mapping[str, Any],
                         **signature: Any) -> Any:
        return await client.post(url, json=self.event(event_data, **signature))

    async def post_form(self, client: Any, url: str, fields: Mapping[str, str],
                        **signature: Any) -> Any:
        return await client.post(url, data=self.form(fields, **signature))


class MandrillSigner:
    """Mandrill's webhook signature with one webhook key and URL."""

    def __init__(self, webhook_key: str, webhook_url: str) -> None:
        self.webhook_key = webhook_key
        self.webhook_url = webhook_url

    def signature(self, form: Mapping[str, str]) -> str:
        signed = self.webhook_url + "".join(k + form[k] for k in sorted(form))
        return base64.b64encode(hmac.new(self.webhook_key.encode(), signed.encode(),
                                         hashlib.sha1).digest()).decode()

    def form(self, events: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        return {"mandrill_events": json.dumps(list(events))}

    async def post_events(self, client: Any, url: str,
                          events: Sequence[Mapping[str, Any]]) -> Any:
        form = self.form(events)
        return await client.post(url, data=form,
                                 headers={"X-Mandrill-Signature": self.signature(form)})


# The fields each SNS message type signs, in the documented order.
_SNS_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                "TopicArn", "Type"),
}


class SnsSigner:
    """An SNS signing key and certificate of its own, served at `cert_url`.

    Give BitMail's SnsClient `fetch=signer.fetch` (or set `.fetch` on the
    application's client): it then gets this certificate for `cert_url` and
    records subscription confirmations in `confirmed`.
    """

    def __init__(self, region: str = "us-east-1", *, version: str = "1") -> None:
        self.region = region
        self.version = version
        self.cert_url = (f"https://sns.{region}.amazonaws.com/"
                         "SimpleNotificationService-bitmail-test.pem")
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sns.{region}.amazonaws.com")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .sign(self.key, hashes.SHA256()))
        self.pem = cert.public_bytes(serialization.Encoding.PEM)
        self.confirmed: list[str] = []

    async def fetch(self, url: str) -> bytes:
        """SnsClient.fetch: this certificate, or a recorded confirmation."""
        if url == self.cert_url:
            return self.pem
        if "Action=ConfirmSubscription" in url:
            self.confirmed.append(url)
            return b"<ConfirmSubscriptionResponse/>"
        from ..web.hooks.sns import FetchError

        raise FetchError(url, 404)

    @staticmethod
    def timestamp(shift: float = 0.0) -> str:
        """An SNS Timestamp (ISO 8601, milliseconds, Z), `shift` seconds from now."""
        at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=shift)
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"

    def sign(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """`message` with SignatureVersion, SigningCertURL and its Signature."""
        msg = {"SignatureVersion": self.version, "SigningCertURL": self.cert_url, **message}
        text = "".join(f"{f}\n{msg[f]}\n" for f in _SNS_SIGNED[msg["Type"]] if f in msg)
        algorithm = hashes.SHA1() if msg["SignatureVersion"] == "1" else hashes.SHA256()
        signature = self.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
        return {**msg, "Signature": base64.b64encode(signature).decode()}

    def notification(self, topic: str, message: str | Mapping[str, Any], *,
                     subject: str | None = None, **fields: Any) -> dict[str, Any]:
        """A signed Notification; `message` (an SES event) is sent as JSON text."""
        body = message if isinstance(message, str) else json.dumps(message)
        msg: dict[str, Any] = {"Type": "Notification", "MessageId": str(uuid.uuid4()),
                               "TopicArn": topic, "Message": body,
                               "Timestamp": self.timestamp()}
        if subject is not None:
            msg["Subject"] = subject
        msg.update(fields)
        return self.sign(msg)

    def subscription(self, topic: str, kind: str = "SubscriptionConfirmation",
                     **fields: Any) -> dict[str, Any]:
        """A signed SubscriptionConfirmation (or UnsubscribeConfirmation)."""
        token = uuid.uuid4().hex
        msg = {"Type": kind, "MessageId": str(uuid.uuid4()), "TopicArn": topic,
               "Token": token, "Timestamp": self.timestamp(),
               "Message": f"You have chosen to subscribe to the topic {topic}.",
               "SubscribeURL": (f"https://sns.{self.region}.amazonaws.com/?Action="
                                f"ConfirmSubscription&TopicArn={topic}&Token={token}")}
        msg.update(fields)
        return self.sign(msg)

    async def post(self, client: Any, url: str, message: Mapping[str, Any]) -> Any:
        """POST as SNS does: JSON as text/plain, with x-amz-sns-message-type."""
        return await client.post(url, data=json.dumps(message).encode(), headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": str(message.get("Type", "Notification"))})
