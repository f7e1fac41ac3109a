"""SES through SNS: signed with a certificate and key the test makes itself."""

from __future__ import annotations

import base64
import datetime
import json
import uuid
from email.message import EmailMessage

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from bitmail.web.hooks import SNS_CLIENT
from bitmail.web.hooks.sns import FetchError

from conftest import (
    SES_TOPIC,
    assert_repeat_changes_nothing,
    hook_counts,
    hooks_idle,
    inbox,
    recipient_status,
    sent_message,
    sent_through,
    track,
)

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
OTHER_TOPIC = "arn:aws:sns:us-east-1:999999999999:someone-else"


def make_certificate(*, days: int = 30) -> tuple[rsa.RSAPrivateKey, bytes]:
    """An RSA key and a self-signed certificate for it, as SNS's would be."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def signing():
    return make_certificate()


# The canonical string, written from SNS's documentation (not taken from the code).
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                       "Type")


def sign(message: dict, key: rsa.RSAPrivateKey) -> dict:
    fields = NOTIFICATION_FIELDS if message["Type"] == "Notification" else SUBSCRIPTION_FIELDS
    text = "".join(f"{f}\n{message[f]}\n" for f in fields if f in message)
    algorithm = hashes.SHA1() if message["SignatureVersion"] == "1" else hashes.SHA256()
    signature = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    return {**message, "Signature": base64.b64encode(signature).decode()}


def sns_time(shift: float = 0.0) -> str:
    """An SNS Timestamp (ISO 8601, milliseconds, Z) `shift` seconds from now."""
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=shift)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def sns(kind: str, message: str, key: rsa.RSAPrivateKey, *, version: str = "1",
        topic: str = SES_TOPIC, **extra) -> dict:
    msg = {"Type": kind, "MessageId": str(uuid.uuid4()), "TopicArn": topic,
           "Message": message, "Timestamp": sns_time(),
           "SignatureVersion": version, "SigningCertURL": CERT_URL}
    if kind != "Notification":
        token = uuid.uuid4().hex
        msg["Token"] = token
        msg["SubscribeURL"] = ("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
                               f"&TopicArn={topic}&Token={token}")
    msg.update(extra)
    return sign(msg, key)


def ses_event(name: str, *, message_id: str = "0100018f-ses-id", rfc_id: str | None = None,
              destination=("bob@example.com",), field: str = "eventType",
              common_only: bool = False, **body) -> str:
    """An SES event as event publishing (eventType) or notifications
    (notificationType) put it in the SNS Message."""
    headers = [{"name": "From", "value": "alice@localhost"},
               {"name": "To", "value": ", ".join(destination)}]
    common = {"from": ["alice@localhost"], "to": list(destination), "subject": "webhook test"}
    if rfc_id and not common_only:
        headers.append({"name": "Message-ID", "value": rfc_id})
    if rfc_id:
        common["messageId"] = rfc_id
    mail = {"timestamp": "2024-06-04T10:00:00.000Z", "source": "alice@localhost",
            "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/localhost",
            "sendingAccountId": "123456789012", "messageId": message_id,
            "destination": list(destination), "headersTruncated": False,
            "headers": headers, "commonHeaders": common}
    return json.dumps({field: name, "mail": mail, **body})


EVENT_BODIES = {
    "Send": {"send": {}},
    "Delivery": {"delivery": {"timestamp": "2024-06-04T10:00:01.000Z",
                              "processingTimeMillis": 546, "recipients": ["bob@example.com"],
                              "smtpResponse": "250 2.6.0 Message received",
                              "reportingMTA": "a8-70.smtp-out.amazonses.com"}},
    "Bounce/Permanent": {"bounce": {
        "bounceType": "Permanent", "bounceSubType": "General",
        "bouncedRecipients": [{"emailAddress": "bob@example.com", "action": "failed",
                               "status": "5.1.1",
                               "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
        "timestamp": "2024-06-04T10:00:01.000Z", "feedbackId": "fb-1"}},
    "Bounce/Transient": {"bounce": {
        "bounceType": "Transient", "bounceSubType": "MailboxFull",
        "bouncedRecipients": [{"emailAddress": "bob@example.com"}],
        "timestamp": "2024-06-04T10:00:01.000Z", "feedbackId": "fb-2"}},
    "Complaint": {"complaint": {
        "complainedRecipients": [{"emailAddress": "bob@example.com"}],
        "timestamp": "2024-06-04T10:00:01.000Z", "feedbackId": "fb-3",
        "complaintFeedbackType": "abuse"}},
    "Reject": {"reject": {"reason": "Bad content"}},
    "DeliveryDelay": {"deliveryDelay": {
        "timestamp": "2024-06-04T10:00:01.000Z", "delayType": "TransientCommunicationFailure",
        "expirationTime": "2024-06-05T10:00:00.000Z",
        "delayedRecipients": [{"emailAddress": "bob@example.com", "status": "4.4.1",
                               "diagnosticCode": "smtp; 421 4.4.1 Unable to connect"}]}},
    "Open": {"open": {"ipAddress": "192.0.2.1", "timestamp": "2024-06-04T10:05:00.000Z",
                      "userAgent": "Mozilla/5.0"}},
    "Click": {"click": {"ipAddress": "192.0.2.1", "timestamp": "2024-06-04T10:06:00.000Z",
                        "userAgent": "Mozilla/5.0", "link": "https://example.com/offer",
                        "linkTags": {}}},
}


class FakeSns:
    """SnsClient.fetch for tests: serves the test certificate at CERT_URL and
    records subscription confirmations; everything else is a 404."""

    def __init__(self, pem: bytes):
        self.pem = pem
        self.fetched: list[str] = []
        self.confirmed: list[str] = []
        self.down = False

    async def __call__(self, url: str) -> bytes:
        self.fetched.append(url)
        if self.down:
            raise aiohttp.ClientConnectionError("connection refused")
        if url == CERT_URL:
            return self.pem
        if url.startswith("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"):
            self.confirmed.append(url)
            return b"<ConfirmSubscriptionResponse/>"
        raise FetchError(url, 404)


@pytest.fixture
def fake_sns(hook_service, signing) -> FakeSns:
    fake = FakeSns(signing[1])
    hook_service.client.app[SNS_CLIENT].fetch = fake
    return fake


@pytest.fixture
def key(signing) -> rsa.RSAPrivateKey:
    return signing[0]


async def post(service, message: dict, **headers):
    # SNS posts its JSON as text/plain.
    return await service.client.post("/hooks/ses", data=json.dumps(message).encode(), headers={
        "Content-Type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": message.get("Type", "Notification"), **headers})


async def refused(service, message, status: int, code: str, raw: bytes | None = None):
    before = await hook_counts(service)
    if raw is None:
        resp = await post(service, message)
    else:
        resp = await service.client.post("/hooks/ses", data=raw,
                                         headers={"Content-Type": "text/plain"})
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == code, error
    assert await hook_counts(service) == before
    return error


# -- subscriptions ---------------------------------------------------------------


async def test_a_subscription_to_an_allowed_topic_is_confirmed(hook_service, fake_sns, key):
    message = sns("SubscriptionConfirmation", "You have chosen to subscribe...", key)
    resp = await post(hook_service, message)
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    assert fake_sns.confirmed == [message["SubscribeURL"]]


async def test_a_subscription_to_another_topic_is_refused_and_not_confirmed(hook_service,
                                                                            fake_sns, key):
    message = sns("SubscriptionConfirmation", "subscribe?", key, topic=OTHER_TOPIC)
    error = await refused(hook_service, message, 403, "topic_not_allowed")
    assert error["field"] == "TopicArn"
    await hooks_idle(hook_service)
    assert fake_sns.fetched == [] and fake_sns.confirmed == []


async def test_a_subscribe_url_off_the_sns_host_is_refused(hook_service, fake_sns, key):
    message = sns("SubscriptionConfirmation", "subscribe?", key,
                  SubscribeURL="https://evil.example.com/?Action=ConfirmSubscription")
    await refused(hook_service, message, 403, "bad_url")
    assert fake_sns.confirmed == []


async def test_an_unsubscribe_confirmation_is_kept_and_not_acted_on(hook_service, fake_sns,
                                                                    key):
    resp = await post(hook_service, sns("UnsubscribeConfirmation", "unsubscribed", key))
    assert resp.status == 200
    await hooks_idle(hook_service)
    assert fake_sns.confirmed == []
    assert await hook_service.runtime.store.count("notice") == 1


# -- events ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "event_type", "status"), [
    ("Send", "sent", "sent"),
    ("Delivery", "delivered", "delivered"),
    ("Bounce/Permanent", "bounced", "bounced"),
    ("Bounce/Transient", "deferred", "sent"),
    ("Complaint", "complained", "complained"),
    ("Reject", "rejected", "failed"),
    ("DeliveryDelay", "deferred", "sent"),
    ("Open", "opened", "sent"),
    ("Click", "clicked", "sent"),
])
async def test_every_ses_event_becomes_a_bitmail_event(hook_service, fake_sns, key, name,
                                                       event_type, status):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "ses", "0100018f-ses-id", message["id"])
    event = ses_event(name.partition("/")[0], **EVENT_BODIES[name])
    resp = await post(hook_service, sns("Notification", event, key))
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    doc = await (await hook_service.client.get(f"/api/messages/{message['id']}",
                                               headers=message["headers"])).json()
    assert doc["recipients"][0]["status"] == status
    last = doc["events"][-1]
    assert last["type"] == event_type and last["provider"] == "ses"
    assert last["recipient"] == "bob@example.com"


async def test_identity_notifications_use_notification_type(hook_service, fake_sns, key):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "ses", "0100018f-ses-id", message["id"])
    event = ses_event("Bounce", field="notificationType", **EVENT_BODIES["Bounce/Permanent"])
    assert (await post(hook_service, sns("Notification", event, key,
                                         Subject="Amazon SES Email Event"))).status == 200
    await hooks_idle(hook_service)
    bob = await recipient_status(hook_service, message, "bob@example.com")
    assert bob["status"] == "bounced" and "550 5.1.1" in bob["detail"]
    entry = await hook_service.runtime.store.get_one("suppression", {"id": "bob@example.com"})
    assert entry["reason"] == "bounced" and entry["provider"] == "ses"
    assert hook_service.runtime.container.slots["ses"].figures.events["bounced"] == 1


@pytest.mark.parametrize("common_only", [False, True])
async def test_untracked_mail_is_matched_by_its_message_id_header(hook_service, fake_sns, key,
                                                                  common_only):
    message = await sent_message(hook_service, to="bob@example.com")
    await sent_through(hook_service, message, "ses")
    event = ses_event("Delivery", message_id="never-tracked", rfc_id=message["message_id"],
                      common_only=common_only, **EVENT_BODIES["Delivery"])
    assert (await post(hook_service, sns("Notification", event, key))).status == 200
    await hooks_idle(hook_service)
    bob = await recipient_status(hook_service, message, "bob@example.com")
    assert bob["status"] == "delivered"


async def test_signature_version_2_is_sha256(hook_service, fake_sns, key):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "ses", "0100018f-ses-id", message["id"])
    event = ses_event("Delivery", **EVENT_BODIES["Delivery"])
    resp = await post(hook_service, sns("Notification", event, key, version="2"))
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    assert (await recipient_status(hook_service, message, "bob@example.com"))["status"] == \
        "delivered"


async def test_the_certificate_is_fetched_once(hook_service, fake_sns, key):
    for _ in range(3):
        event = ses_event("Send", **EVENT_BODIES["Send"])
        assert (await post(hook_service, sns("Notification", event, key))).status == 200
    assert fake_sns.fetched == [CERT_URL]


async def test_an_event_for_an_unknown_message_is_kept_and_answered_200(hook_service,
                                                                        fake_sns, key):
    event = ses_event("Delivery", message_id="unknown", **EVENT_BODIES["Delivery"])
    assert (await post(hook_service, sns("Notification", event, key))).status == 200
    await hooks_idle(hook_service)
    [kept] = await hook_service.runtime.store.get("notice")
    assert kept["provider"] == "ses" and "no such message" in kept["result"]


# -- refusals ----------------------------------------------------------------------


async def test_a_message_signed_by_another_key_is_refused(hook_service, fake_sns, key):
    other, _ = make_certificate()
    event = ses_event("Delivery", **EVENT_BODIES["Delivery"])
    error = await refused(hook_service, sns("Notification", event, other), 403,
                          "bad_signature")
    assert error["field"] == "Signature"


async def test_a_tampered_message_is_refused(hook_service, fake_sns, key):
    message = sns("Notification", ses_event("Delivery", **EVENT_BODIES["Delivery"]), key)
    message["Message"] = ses_event("Complaint", **EVENT_BODIES["Complaint"])
    await refused(hook_service, message, 403, "bad_signature")


async def test_a_signature_that_is_not_base64_is_refused(hook_service, fake_sns, key):
    message = sns("Notification", ses_event("Send", **EVENT_BODIES["Send"]), key)
    message["Signature"] = "not base64!"
    await refused(hook_service, message, 403, "bad_signature")


@pytest.mark.parametrize("url", [
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
    "https://evil.example/sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com@evil.example/SimpleNotificationService-1.pem",
    "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem?x=1",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.txt",
    "https://sns.us-east-1.amazonaws.com/dir/SimpleNotificationService-1.pem",
    "https://s3.amazonaws.com/SimpleNotificationService-1.pem",
    "file:///etc/ssl/cert.pem",
])
async def test_a_certificate_url_off_the_sns_host_is_refused_unfetched(hook_service,
                                                                       fake_sns, key, url):
    message = sns("Notification", ses_event("Send", **EVENT_BODIES["Send"]), key,
                  SigningCertURL=url)
    error = await refused(hook_service, message, 403, "bad_url")
    assert error["field"] == "SigningCertURL"
    assert fake_sns.fetched == []


async def test_a_certificate_that_cannot_be_found_is_403(hook_service, fake_sns, key):
    message = sns("Notification", ses_event("Send", **EVENT_BODIES["Send"]), key,
                  SigningCertURL="https://sns.us-east-1.amazonaws.com/Missing.pem")
    error = await refused(hook_service, message, 403, "bad_signature")
    assert "404" in error["message"]


async def test_an_unreachable_certificate_is_503_so_sns_retries(hook_service, fake_sns, key):
    fake_sns.down = True
    message = sns("Notification", ses_event("Send", **EVENT_BODIES["Send"]), key)
    await refused(hook_service, message, 503, "unavailable")


async def test_an_expired_certificate_is_refused(hook_service, key):
    old_key, old_pem = make_certificate(days=-1)
    hook_service.client.app[SNS_CLIENT].fetch = FakeSns(old_pem)
    message = sns("Notification", ses_event("Send", **EVENT_BODIES["Send"]), old_key)
    error = await refused(hook_service, message, 403, "bad_signature")
    assert "not valid now" in error["message"]


async def test_the_same_message_twice_changes_nothing(hook_service, fake_sns, key):
    message = await sent_message(hook_service, to="bob@example.com")
    await track(hook_service, "ses", "0100018f-ses-id", message["id"])
    notification = sns("Notification", ses_event("Complaint", **EVENT_BODIES["Complaint"]), key)
    assert (await post(hook_service, notification)).status == 200
    await assert_repeat_changes_nothing(hook_service, message["id"],
                                        lambda: post(hook_service, notification))
    assert hook_service.runtime.container.slots["ses"].figures.events["complained"] == 1


async def test_broken_json_is_refused(hook_service, fake_sns):
    await refused(hook_service, None, 400, "bad_json", raw=b'{"Type": "Notification"')


@pytest.mark.parametrize("field", ["Type", "MessageId", "TopicArn", "Message", "Signature",
                                   "SigningCertURL", "SignatureVersion", "Timestamp"])
async def test_a_missing_field_is_named(hook_service, fake_sns, key, field):
    message = sns("Notification", ses_event("Send", **EVENT_BODIES["Send"]), key)
    del message[field]
    error = await refused(hook_service, message, 400, "invalid")
    assert error["field"] == field


async def test_a_subscription_without_subscribe_url_is_refused(hook_service, fake_sns, key):
    message = sns("SubscriptionConfirmation", "subscribe?", key)
    del message["SubscribeURL"]
    error = await refused(hook_service, message, 400, "invalid")
    assert error["field"] == "SubscribeURL"


@pytest.mark.parametrize(("change", "field"), [
    ({"Type": "Gossip"}, "Type"),
    ({"SignatureVersion": "3"}, "SignatureVersion"),
    ({"MessageId": 12}, "MessageId"),
])
async def test_unknown_values_are_refused(hook_service, fake_sns, key, change, field):
    message = {**sns("Notification", ses_event("Send", **EVENT_BODIES["Send"]), key), **change}
    error = await refused(hook_service, message, 400, "invalid")
    assert error["field"] == field


async def test_a_message_type_header_that_disagrees_is_refused(hook_service, fake_sns, key):
    message = sns("Notification", ses_event("Send", **EVENT_BODIES["Send"]), key)
    before = await hook_counts(hook_service)
    resp = await post(hook_service, message,
                      **{"x-amz-sns-message-type": "SubscriptionConfirmation"})
    assert resp.status == 400
    assert await hook_counts(hook_service) == before


@pytest.mark.parametrize(("inner", "code", "field"), [
    (json.dumps({"eventType": "Delivery"}), "invalid", "Message.mail"),
    (json.dumps({"mail": {}}), "invalid", "Message"),
    (json.dumps(["Delivery"]), "invalid", "Message"),
    (ses_event("Bounce", bounce={"bounceType": "Permanent", "bouncedRecipients": []}),
     "invalid", "Message.bounce.bouncedRecipients"),
])
async def test_a_signed_but_malformed_ses_event_is_refused(hook_service, fake_sns, key, inner,
                                                           code, field):
    error = await refused(hook_service, sns("Notification", inner, key), 400, code)
    assert error["field"] == field


async def test_an_oversize_body_is_refused(hook_service, fake_sns, key):
    message = sns("Notification", ses_event("Send", **EVENT_BODIES["Send"]), key,
                  Padding="x" * (1024 * 1024))
    await refused(hook_service, message, 413, "too_large")


# -- received mail ------------------------------------------------------------------


def received(mime: bytes, recipients=("dana@localhost",), encoding: str = "BASE64") -> str:
    content = base64.b64encode(mime).decode() if encoding == "BASE64" else mime.decode()
    return json.dumps({
        "notificationType": "Received",
        "receipt": {"timestamp": "2024-06-04T10:00:00.000Z", "processingTimeMillis": 222,
                    "recipients": list(recipients), "spamVerdict": {"status": "PASS"},
                    "virusVerdict": {"status": "PASS"}, "spfVerdict": {"status": "PASS"},
                    "dkimVerdict": {"status": "PASS"}, "dmarcVerdict": {"status": "PASS"},
                    "action": {"type": "SNS", "topicArn": SES_TOPIC, "encoding": encoding}},
        "mail": {"timestamp": "2024-06-04T10:00:00.000Z", "source": "eve@example.net",
                 "messageId": "inbound-ses-1", "destination": list(recipients),
                 "headersTruncated": False, "headers": [],
                 "commonHeaders": {"from": ["eve@example.net"], "to": list(recipients),
                                   "subject": "Receipts"}},
        "content": content,
    })


def mime_with_attachment() -> bytes:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "eve@example.net", "dana@localhost", "Receipts"
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@example.net>"
    mail.set_content("Receipts attached.")
    mail.add_alternative("<p>Receipts <i>attached</i>.</p>", subtype="html")
    mail.add_attachment(b"\x89PNG receipt", maintype="image", subtype="png",
                        filename="receipt.png")
    return mail.as_bytes()


@pytest.mark.parametrize("encoding", ["BASE64", "UTF8"])
async def test_received_mail_lands_in_the_inbox_with_its_attachment(hook_service, fake_sns,
                                                                    key, encoding):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    mime = mime_with_attachment()
    if encoding == "UTF8":  # raw content must be text: use a text attachment
        mime = mime.replace(b"image/png", b"text/plain")
    resp = await post(hook_service, sns("Notification", received(mime, encoding=encoding), key))
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    [mail] = await inbox(hook_service, "dana")
    assert mail["subject"] == "Receipts" and "<i>attached</i>" in mail["html"]
    assert [a["filename"] for a in mail["attachments"]] == ["receipt.png"]
    data = await hook_service.client.get(f"/api/messages/{mail['id']}/attachments/0",
                                         headers=mail["headers"])
    assert await data.read() == b"\x89PNG receipt"


async def test_received_mail_for_nobody_here_is_kept_not_delivered(hook_service, fake_sns,
                                                                   key):
    resp = await post(hook_service, sns("Notification",
                                        received(mime_with_attachment(), ("x@localhost",)), key))
    assert resp.status == 200
    await hooks_idle(hook_service)
    [kept] = await hook_service.runtime.store.get("notice")
    assert kept["result"] == "no user here"
    assert await hook_service.runtime.store.count("message") == 0


# -- end to end ----------------------------------------------------------------------


async def test_a_hard_bounce_through_ses_shows_and_suppresses_the_next_send(hook_service,
                                                                            fake_sns, key):
    first = await sent_message(hook_service)
    await track(hook_service, "ses", "ses-e2e", first["id"])
    event = ses_event("Bounce", message_id="ses-e2e", **EVENT_BODIES["Bounce/Permanent"])
    assert (await post(hook_service, sns("Notification", event, key))).status == 200
    await hooks_idle(hook_service)
    assert (await recipient_status(hook_service, first, "bob@example.com"))["status"] == \
        "bounced"
    assert (await recipient_status(hook_service, first, "carol@example.org"))["status"] == \
        "sent"
    resp = await hook_service.client.post("/api/messages", headers=first["headers"], json={
        "to": "bob@example.com; carol@example.org", "subject": "again", "text": "x"})
    second = {**await resp.json(), "headers": first["headers"]}
    bob = await recipient_status(hook_service, second, "bob@example.com")
    assert bob["status"] == "failed" and bob["detail"] == "suppressed"


async def test_the_default_fetch_reads_whole_bodies_and_reports_http_errors(signing):
    """SnsClient's own I/O, against a local server (the URL checks come before it)."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from bitmail.web.hooks.sns import CERT_MAX_BYTES, SnsClient

    async def cert(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(0, len(signing[1]), 100):  # in small pieces
            await resp.write(signing[1][i:i + 100])
        return resp

    async def huge(request):
        return web.Response(body=b"x" * (CERT_MAX_BYTES * 4))

    app = web.Application()
    app.router.add_get("/cert.pem", cert)
    app.router.add_get("/huge.pem", huge)
    server = TestServer(app)
    await server.start_server()
    client = SnsClient()
    try:
        assert await client.fetch(str(server.make_url("/cert.pem"))) == signing[1]
        assert len(await client.fetch(str(server.make_url("/huge.pem")))) == CERT_MAX_BYTES + 1
        with pytest.raises(FetchError) as missing:
            await client.fetch(str(server.make_url("/nothing.pem")))
        assert missing.value.status == 404
    finally:
        await client.close()
        await server.close()


# -- issue 10: freshness, confirmations that fail, plain text, rendering failures -------


@pytest.mark.parametrize("shift", [-3601, -4 * 3600, -12 * 365 * 86400, 301,
                                   75 * 365 * 86400])
async def test_a_signed_message_outside_the_window_is_refused(hook_service, fake_sns, key,
                                                              shift):
    message = sns("Notification", ses_event("Delivery", **EVENT_BODIES["Delivery"]), key,
                  Timestamp=sns_time(shift))
    error = await refused(hook_service, message, 403, "stale_timestamp")
    assert error["field"] == "Timestamp"


@pytest.mark.parametrize("shift", [-3500, -60, 0, 240])
async def test_a_signed_message_inside_the_window_is_accepted(hook_service, fake_sns, key,
                                                              shift):
    message = sns("Notification", ses_event("Delivery", **EVENT_BODIES["Delivery"]), key,
                  Timestamp=sns_time(shift))
    assert (await post(hook_service, message)).status == 200


async def test_the_window_is_the_operators_sns_max_age(make_settings, monkeypatch, signing):
    from bitmail.mta import PROVIDER_TYPES

    from conftest import HOOK_CONFIG, start_service

    monkeypatch.setitem(PROVIDER_TYPES, "ses", "support.webhooks:StubSes")
    monkeypatch.setitem(PROVIDER_TYPES, "mailgun", "support.webhooks:StubMailgun")
    monkeypatch.setitem(PROVIDER_TYPES, "mandrill", "support.webhooks:StubMandrill")
    config = HOOK_CONFIG.replace(f'sns_topics = ["{SES_TOPIC}"]',
                                 f'sns_topics = ["{SES_TOPIC}"]\nsns_max_age = "6h"')
    async with start_service(make_settings(config)) as svc:
        svc.client.app[SNS_CLIENT].fetch = FakeSns(signing[1])
        event = ses_event("Delivery", **EVENT_BODIES["Delivery"])
        five_hours = sns("Notification", event, signing[0], Timestamp=sns_time(-5 * 3600))
        assert (await post(svc, five_hours)).status == 200
        seven_hours = sns("Notification", event, signing[0], Timestamp=sns_time(-7 * 3600))
        assert (await post(svc, seven_hours)).status == 403


async def test_a_confirmation_whose_get_fails_is_answered_503_and_kept_for_the_retry(
        hook_service, fake_sns, key):
    message = sns("SubscriptionConfirmation", "You have chosen to subscribe...", key)
    await hook_service.client.app[SNS_CLIENT].public_key(CERT_URL)  # certificate cached
    fake_sns.down = True
    before = await hook_counts(hook_service)
    resp = await post(hook_service, message)
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "unavailable"
    assert await hook_counts(hook_service) == before  # not recorded: the retry is not a duplicate
    assert fake_sns.confirmed == []
    fake_sns.down = False  # SNS sends the confirmation again
    resp = await post(hook_service, message)
    assert resp.status == 200 and (await resp.json())["status"] == "accepted"
    assert fake_sns.confirmed == [message["SubscribeURL"]]


async def test_a_plain_text_sns_message_is_kept_and_changes_nothing(hook_service, fake_sns,
                                                                   key):
    message = sns("Notification", "Successfully validated SNS topic for Amazon SES event "
                                  "publishing.", key)
    before = await hook_counts(hook_service)
    resp = await post(hook_service, message)
    assert resp.status == 200, await resp.text()
    await hooks_idle(hook_service)
    [notice] = await hook_service.runtime.store.get("notice")
    assert notice["state"] == "done" and "not an SES event" in notice["result"]
    after = await hook_counts(hook_service)
    assert {k: after[k] - before[k] for k in after} == {**dict.fromkeys(after, 0), "notice": 1}


async def test_a_rendering_failure_fails_the_message_for_its_recipients(hook_service,
                                                                       fake_sns, key):
    message = await sent_message(hook_service)  # bob@example.com; carol@example.org
    await track(hook_service, "ses", "0100018f-render", message["id"])
    failure = {"failure": {"errorMessage": "Attribute 'favoritecolor' is not present in the "
                                           "rendering data.",
                           "templateName": "MyTemplate"}}
    event = ses_event("Rendering Failure", message_id="0100018f-render",
                      destination=("bob@example.com", "carol@example.org"), **failure)
    assert (await post(hook_service, sns("Notification", event, key))).status == 200
    await hooks_idle(hook_service)
    for address in ("bob@example.com", "carol@example.org"):
        r = await recipient_status(hook_service, message, address)
        assert r["status"] == "failed"
        assert "Attribute 'favoritecolor' is not present" in r["detail"]


# -- issue 10: mail an S3 action stored; verdicts --------------------------------------


def received_in_s3(bucket: str, key: str, recipients=("dana@localhost",), *,
                   spam: str = "PASS", virus: str = "PASS") -> str:
    """SES's Received notification for an S3 action: where the mail is, no content."""
    return json.dumps({
        "notificationType": "Received",
        "receipt": {"timestamp": "2024-06-04T10:00:00.000Z", "processingTimeMillis": 420,
                    "recipients": list(recipients), "spamVerdict": {"status": spam},
                    "virusVerdict": {"status": virus}, "spfVerdict": {"status": "PASS"},
                    "dkimVerdict": {"status": "GRAY"}, "dmarcVerdict": {"status": "PASS"},
                    "action": {"type": "S3", "topicArn": SES_TOPIC, "bucketName": bucket,
                               "objectKey": key}},
        "mail": {"timestamp": "2024-06-04T10:00:00.000Z", "source": "eve@example.net",
                 "messageId": key, "destination": list(recipients), "headersTruncated": False,
                 "headers": [], "commonHeaders": {"from": ["eve@example.net"],
                                                  "to": list(recipients),
                                                  "subject": "Receipts"}},
    })


@pytest.fixture
async def s3_service(make_settings, monkeypatch, moto_url, signing):
    """The hook service, its SES provider reading S3 from moto's server."""
    from bitmail.mta import PROVIDER_TYPES

    from conftest import HOOK_CONFIG, SES_ACCESS_KEY_ID, SES_REGION, SES_SECRET_KEY, start_service

    for ptype, cls in (("mailgun", "StubMailgun"), ("ses", "StubSes"),
                       ("mandrill", "StubMandrill")):
        monkeypatch.setitem(PROVIDER_TYPES, ptype, f"support.webhooks:{cls}")
    config = HOOK_CONFIG.replace(
        f'sns_topics = ["{SES_TOPIC}"]',
        f'sns_topics = ["{SES_TOPIC}"]\nregion = "{SES_REGION}"\n'
        f's3_endpoint_url = "{moto_url}"\naccess_key_id = "{SES_ACCESS_KEY_ID}"\n'
        f'secret_access_key = "{SES_SECRET_KEY}"') + "\nmax_message_size = 400000\n"
    # max_message_size is a top-level key: before the first table.
    config = "max_message_size = 400000\n" + config.replace("\nmax_message_size = 400000\n", "")
    async with start_service(make_settings(config)) as svc:
        svc.client.app[SNS_CLIENT].fetch = FakeSns(signing[1])
        yield svc


async def put_in_s3(moto_url: str, bucket: str, key: str, data: bytes) -> None:
    from aiobotocore.session import get_session

    from conftest import SES_ACCESS_KEY_ID, SES_REGION, SES_SECRET_KEY

    async with get_session().create_client(
            "s3", region_name=SES_REGION, endpoint_url=moto_url,
            aws_access_key_id=SES_ACCESS_KEY_ID, aws_secret_access_key=SES_SECRET_KEY) as s3:
        try:
            await s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        await s3.put_object(Bucket=bucket, Key=key, Body=data)


async def test_mail_an_s3_action_stored_is_read_from_s3_and_delivered(s3_service, moto_url,
                                                                      key):
    await s3_service.runtime.accounts.create("dana", "secret-pass")
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "eve@example.net", "dana@localhost", "Receipts"
    mail.set_content("Receipts attached.")
    mail.add_attachment(b"\x89PNG " + b"r" * 160_000, maintype="image", subtype="png",
                        filename="receipt.png")
    big = mail.as_bytes()  # over the 150 KB SES puts in an SNS notification
    object_key = f"inbound/{uuid.uuid4().hex}"
    await put_in_s3(moto_url, "bitmail-inbound", object_key, big)
    resp = await post(s3_service, sns("Notification", received_in_s3(
        "bitmail-inbound", object_key, spam="FAIL"), key))
    assert resp.status == 200, await resp.text()
    await hooks_idle(s3_service)
    [mail] = await inbox(s3_service, "dana")
    assert mail["subject"] == "Receipts" and mail["received_via"] == "ses"
    assert [a["filename"] for a in mail["attachments"]] == ["receipt.png"]
    assert mail["attachments"][0]["size"] == len(b"\x89PNG ") + 160_000
    assert mail["verdicts"] == {"spam": "FAIL", "virus": "PASS", "spf": "PASS",
                                "dkim": "GRAY", "dmarc": "PASS"}


async def test_mail_in_s3_over_max_message_size_is_kept_not_delivered(s3_service, moto_url,
                                                                      key):
    await s3_service.runtime.accounts.create("dana", "secret-pass")
    object_key = f"inbound/{uuid.uuid4().hex}"
    await put_in_s3(moto_url, "bitmail-inbound", object_key, b"x" * 600_000)
    resp = await post(s3_service, sns("Notification",
                                      received_in_s3("bitmail-inbound", object_key), key))
    assert resp.status == 200
    await hooks_idle(s3_service)
    assert await inbox(s3_service, "dana") == []
    [notice] = await s3_service.runtime.store.get("notice")
    assert "over max_message_size" in notice["result"]


async def test_mail_s3_cannot_give_now_is_answered_503_for_sns_to_retry(s3_service, key):
    await s3_service.runtime.accounts.create("dana", "secret-pass")
    before = await hook_counts(s3_service)
    resp = await post(s3_service, sns("Notification",
                                      received_in_s3("no-such-bucket", "nothing"), key))
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "unavailable"
    assert await hook_counts(s3_service) == before


async def test_ses_verdicts_are_kept_on_the_inbox_copy(hook_service, fake_sns, key):
    await hook_service.runtime.accounts.create("dana", "secret-pass")
    event = json.loads(received(mime_with_attachment()))
    event["receipt"]["virusVerdict"] = {"status": "FAIL"}
    resp = await post(hook_service, sns("Notification", json.dumps(event), key))
    assert resp.status == 200
    await hooks_idle(hook_service)
    [mail] = await inbox(hook_service, "dana")
    assert mail["verdicts"]["virus"] == "FAIL" and mail["verdicts"]["spam"] == "PASS"


@pytest.mark.parametrize("where", ["messageId", "destination", "key"])
async def test_an_ses_event_with_a_lone_surrogate_is_a_400(hook_service, fake_sns, key, where):
    # JSON's "\ud800" is no Unicode text: no store, hash or encoder takes it.
    bad = "\ud800"
    if where == "messageId":
        event = ses_event("Delivery", message_id=bad, **EVENT_BODIES["Delivery"])
    elif where == "destination":
        event = ses_event("Delivery", destination=(bad + "@example.com",),
                          **EVENT_BODIES["Delivery"])
    else:
        event = json.dumps({**json.loads(ses_event("Send", **EVENT_BODIES["Send"])), bad: 1})
    before = await hook_service.runtime.store.count("notice")
    resp = await post(hook_service, sns("Notification", event, key))
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["field"] == "Message"
    assert await hook_service.runtime.store.count("notice") == before
