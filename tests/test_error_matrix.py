"""Each provider's own error table, read through a real exchange with its peer.

SMTP: the standard reply texts of Postfix, Exim and Exchange, answered by an
aiosmtpd relay at RCPT, MAIL or DATA, and classified by the SMTP provider.
HTTP: each provider's documented error bodies, answered by its loopback fake
(FakeSES for SES's JSON errors), and classified by that provider's module.

The same text can mean one thing from one provider and another from the next:
"Domain not found" from Mailgun is its missing sending domain (the provider's
fault), from an SMTP relay the recipient's missing domain (permanent, for that
recipient only).
"""

from __future__ import annotations

import json

import pytest

from bitmail.mta.mailgun import MailgunProvider
from bitmail.mta.mandrill import MandrillProvider
from bitmail.mta.outcomes import (
    EnhancedStatus,
    Outcome,
    ProviderError,
    classify_smtp_reply,
    enhanced_status,
)
from bitmail.mta.ses import SESProvider
from bitmail.mta.smtp import SMTPProvider
from bitmail.testing import Answer, FakeMailgun, FakeMandrill
from bitmail.testing.ses import FakeSES, error_answer

from conftest import (
    SES_ACCESS_KEY_ID,
    SES_REGION,
    SES_SECRET_KEY,
    SMTP_PASSWORD,
    SMTP_USERNAME,
    Relay,
    run_relay,
    sample_job,
)

T, P, F = Outcome.TRANSIENT, Outcome.PERMANENT, Outcome.PROVIDER_FAULT
C = Outcome.CANNOT_CARRY  # over this relay's size limit: another provider may take it
BAD, GOOD = "cc@example.org", "to@example.com"

# (server, stage, reply, outcome). At RCPT the reply refuses one recipient of
# three (the others go); at MAIL and DATA it refuses the whole send.
SMTP_REPLIES = [
    # Postfix
    ("postfix", "rcpt", "550 5.1.2 <cc@example.org>: Recipient address rejected: "
                        "Domain not found", P),
    ("postfix", "rcpt", "450 4.1.2 <cc@example.org>: Recipient address rejected: "
                        "Domain not found", T),
    ("postfix", "rcpt", "550 5.1.1 <cc@example.org>: Recipient address rejected: "
                        "User unknown in local recipient table", P),
    ("postfix", "rcpt", "550 5.1.1 <cc@example.org>: Recipient address rejected: "
                        "User unknown in virtual mailbox table", P),
    ("postfix", "rcpt", "554 5.7.1 <cc@example.org>: Relay access denied", F),
    ("postfix", "rcpt", "454 4.7.1 <cc@example.org>: Relay access denied", F),
    ("postfix", "rcpt", "554 5.7.1 <cc@example.org>: Recipient address rejected: "
                        "Access denied", P),
    ("postfix", "rcpt", "450 4.2.0 <cc@example.org>: Recipient address rejected: "
                        "Greylisted, see http://postgrey.schweikert.ch/", T),
    ("postfix", "rcpt", "452 4.5.3 Error: too many recipients", T),
    ("postfix", "rcpt", "553 5.7.1 <alice@bitmail.test>: Sender address rejected: "
                        "not owned by user bitmail", F),
    ("postfix", "mail", "553 5.7.1 <alice@bitmail.test>: Sender address rejected: "
                        "not owned by user bitmail", F),
    ("postfix", "mail", "452 4.3.1 Insufficient system storage", T),
    ("postfix", "mail", "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked "
                        "using zen.spamhaus.org", F),
    ("postfix", "mail", "530 5.7.0 Must issue a STARTTLS command first", F),
    # smtpd_client_restrictions (check_client_access, or permit_sasl_authenticated
    # then reject): our host is refused, given at RCPT (smtpd_delay_reject).
    ("postfix", "rcpt", "554 5.7.1 <unknown[192.0.2.7]>: Client host rejected: "
                        "Access denied", F),
    ("postfix", "rcpt", "450 4.7.1 <unknown[192.0.2.7]>: Client host rejected: "
                        "cannot find your hostname, [192.0.2.7]", F),
    ("postfix", "rcpt", "553 5.7.1 <alice@bitmail.test>: Sender address rejected: "
                        "not logged in", F),
    ("postfix", "rcpt", "504 5.5.2 <bitmail>: Helo command rejected: need "
                        "fully-qualified hostname", F),
    # reject_unverified_recipient quotes the recipient's server: the recipient's.
    ("postfix", "rcpt", "450 4.1.1 <cc@example.org>: Recipient address rejected: "
                        "unverified address: host mx.example.org[192.0.2.9] said: "
                        "550 5.7.1 Client host rejected: Access denied", T),
    ("postfix", "data", "552 5.3.4 Message size exceeds fixed limit", C),
    ("postfix", "mail", "552 5.3.4 Message size exceeds fixed limit", C),  # SIZE=n at MAIL
    ("postfix", "data", "451 4.3.0 Error: queue file write error", T),
    ("postfix", "data", "554 5.7.1 Spam message rejected", P),
    # Exim
    ("exim", "rcpt", "550 Unrouteable address", P),
    ("exim", "rcpt", "550 relay not permitted", F),
    ("exim", "rcpt", "550 Administrative prohibition", P),
    ("exim", "rcpt", "451 Temporary local problem - please try later", T),
    ("exim", "mail", "550 Sender verify failed", F),
    ("exim", "rcpt", "550 rejected because 192.0.2.7 is in a black list at "
                     "zen.spamhaus.org", F),
    # Sendmail
    ("sendmail", "rcpt", "550 5.7.1 <cc@example.org>... Relaying denied. Proper "
                         "authentication required.", F),
    ("sendmail", "mail", "530 5.7.0 Authentication required", F),
    ("sendmail", "mail", "554 5.7.0 Authentication required", F),
    # Gmail's SMTP relay service
    ("gmail", "rcpt", "550 5.7.0 Mail relay denied [192.0.2.7]. Invalid credentials for "
                      "relay for one of the domains in: bitmail.test", F),
    ("exim", "mail", "421 Too many concurrent SMTP connections; please try again later.", T),
    ("exim", "data", "552 Message size limit exceeded", C),
    ("exim", "data", "550 This message was classified as SPAM and may not be delivered", P),
    # Exchange (Exchange Online's NDR texts)
    ("exchange", "rcpt", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found "
                         "by SMTP address lookup", P),
    ("exchange", "rcpt", "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found", P),
    ("exchange", "rcpt", "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain",
     F),
    ("exchange", "rcpt", "550 5.7.1 Unable to relay", F),
    ("exchange", "rcpt", "550 5.4.1 Recipient address rejected: Access denied. "
                         "AS(201806281)", P),
    ("exchange", "rcpt", "452 4.5.3 Too many recipients", T),
    ("exchange", "mail", "530 5.7.57 Client not authenticated to send mail. [AM0PR01CA0001]",
     F),
    ("exchange", "mail", "550 5.7.60 SMTP; Client does not have permissions to send as "
                         "this sender", F),
    ("exchange", "mail", "550 5.7.708 Service unavailable. Access denied, traffic not "
                         "accepted from this IP.", F),
    ("exchange", "mail", "451 4.7.500 Server busy. Please try again later from [192.0.2.7]",
     T),
    ("exchange", "data", "554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException."
                         "MapiExceptionSendAsDenied; Failed to process message", F),
    ("exchange", "data", "552 5.3.4 Message size exceeds fixed maximum message size", C),
    ("exchange", "data", "554 5.6.0 Invalid message content", P),
    ("exchange", "data", "421 4.3.2 Service not available, closing transmission channel", T),
]


def _smtp_id(case: tuple) -> str:
    server, stage, reply, outcome = case
    return f"{server}-{stage}-{reply[:13].replace(' ', '_')}-{outcome}"


@pytest.mark.parametrize("case", [pytest.param(c, id=_smtp_id(c)) for c in SMTP_REPLIES])
async def test_smtp_reply_is_classified_by_the_smtp_provider(case, certificate):
    _server, stage, reply, outcome = case
    relay = Relay()
    if stage == "rcpt":
        relay.refuse[BAD] = reply
    else:
        setattr(relay, f"{stage}_always", reply)
    running = run_relay(certificate, relay=relay)
    port = next(running).port
    provider = SMTPProvider("smtp", host="127.0.0.1", port=port, username=SMTP_USERNAME,
                            password=SMTP_PASSWORD, ca_file=str(certificate[0]),
                            timeout="2s")
    try:
        await provider.start()
        if stage == "rcpt":
            result = await provider.send(sample_job())
            [refused] = result.refused
            assert (refused.recipient, refused.outcome) == (BAD, outcome)
            assert reply.split(" ", 1)[1] in refused.detail
            [got] = relay.received
            assert BAD not in got.rcpt_tos and GOOD in got.rcpt_tos  # the others went
        else:
            with pytest.raises(ProviderError) as info:
                await provider.send(sample_job())
            assert info.value.outcome == outcome
    finally:
        await provider.close()
        running.close()


async def test_every_recipient_refused_for_the_relays_sake_is_a_provider_fault(certificate):
    relay = Relay()
    for address in ("to@example.com", "cc@example.org", "bcc@example.net"):
        relay.refuse[address] = f"554 5.7.1 <{address}>: Relay access denied"
    running = run_relay(certificate, relay=relay)
    port = next(running).port
    provider = SMTPProvider("smtp", host="127.0.0.1", port=port, username=SMTP_USERNAME,
                            password=SMTP_PASSWORD, ca_file=str(certificate[0]),
                            timeout="2s")
    try:
        with pytest.raises(ProviderError) as info:
            await provider.send(sample_job())
        assert info.value.outcome == F and "Relay access denied" in info.value.detail
    finally:
        await provider.close()
        running.close()


@pytest.mark.parametrize(("text", "status"), [
    ("5.1.1 <bob@x>: Recipient address rejected", EnhancedStatus(5, 1, 1)),
    ("4.7.500 Server busy", EnhancedStatus(4, 7, 500)),
    ("Requested action aborted 5.3.4 size", EnhancedStatus(5, 3, 4)),
    ("Unrouteable address", None),
    ("queued as 12.345.678", None),  # not a status code: no class 1
    ("version 5.1.10.2 of the spec", None),
])
def test_enhanced_status_code_is_read_per_rfc_3463(text, status):
    assert enhanced_status(text) == status


@pytest.mark.parametrize(("code", "text", "outcome"), [
    (250, "2.0.0 Ok", Outcome.ACCEPTED),
    (451, "4.3.0 try later", T),
    (550, "5.1.1 unknown", P),
    (535, "5.7.8 Error: authentication failed", F),
    (454, "4.7.0 TLS not available", T),
    (550, "5.7.8 credentials invalid", F),  # the code says it, whatever the reply code
    (550, "5.7.1 Message rejected as spam", P),  # the text is the provider's to read
    (552, "5.3.4 Message too big for system", Outcome.CANNOT_CARRY),  # RFC 3463 §3.4
    (554, "5.3.4 Message too big for system", Outcome.CANNOT_CARRY),
    (452, "4.3.4 Message too big for now", T),
    (552, "5.2.2 Mailbox full", P),  # the recipient's mailbox, not the relay
])
def test_generic_smtp_reply_classification(code, text, outcome):
    assert classify_smtp_reply(code, text) == outcome


# -- HTTP providers: their documented error bodies --------------------------------------

MAILGUN_ERRORS = [
    (Answer(400, json.dumps({"message": "'to' parameter is not a valid address. please "
                                        "check documentation"})), P),
    (Answer(400, json.dumps({"message": "Need at least one of 'text' or 'html' parameters "
                                        "specified"})), P),
    (Answer(400, json.dumps({"message": "Sandbox subdomains are for test purposes only. "
                                        "Please add your own domain or add the address to "
                                        "authorized recipients in Account Settings."})), F),
    (Answer(403, json.dumps({"message": "Domain mg.example.com is not allowed to send: "
                                        "Free accounts are for test purposes only. Please "
                                        "upgrade or add the address to authorized "
                                        "recipients in Account Settings."})), F),
    (Answer(401, "Forbidden", content_type="text/plain"), F),
    (Answer(404, json.dumps({"message": "Domain not found: mg.example.com"})), F),
    # Over Mailgun's 25 MB: SES takes 40 MB, a relay what it is set to.
    (Answer(413, json.dumps({"message": "request entity too large"})), C),
    (Answer(429, json.dumps({"message": "Too many requests"})), T),
    (Answer(500, json.dumps({"message": "Internal server error"})), T),
    (Answer(503, "<html><body><h1>503 Service Unavailable</h1></body></html>",
            content_type="text/html"), T),
]


@pytest.mark.parametrize(("answer", "outcome"), MAILGUN_ERRORS,
                         ids=[f"{a.status}-{o}" for a, o in MAILGUN_ERRORS])
async def test_mailgun_error_body_is_classified_by_the_mailgun_provider(answer, outcome):
    async with FakeMailgun(api_key="key", domain="mg.example.com") as fake:
        fake.fail_always(answer)
        provider = MailgunProvider("mailgun", api_key="key", domain="mg.example.com",
                                   base_url=fake.url, timeout="2s")
        try:
            with pytest.raises(ProviderError) as info:
                await provider.send(sample_job())
        finally:
            await provider.close()
    assert info.value.outcome == outcome
    assert f"mailgun {answer.status}" in info.value.detail


def _mandrill(name: str, message: str, code: int = -1) -> Answer:
    return Answer(500, json.dumps({"status": "error", "code": code, "name": name,
                                   "message": message}))


MANDRILL_ERRORS = [
    (_mandrill("Invalid_Key", "Invalid API key"), F),
    (_mandrill("PaymentRequired", "This feature is only available for paid accounts"), F),
    (_mandrill("Unknown_Subaccount", "No subaccount exists with the id 'cust-1'", 12), F),
    (_mandrill("ValidationError", "You must specify a raw_message value"), P),
    (_mandrill("GeneralError", "An unexpected error occurred processing the request"), T),
    (_mandrill("ServiceUnavailable", "Service temporarily unavailable"), T),
    (Answer(502, "<html>Bad Gateway</html>", content_type="text/html"), T),
]


@pytest.mark.parametrize(("answer", "outcome"), MANDRILL_ERRORS,
                         ids=[json.loads(a.body)["name"] if a.status == 500 else str(a.status)
                              for a, _ in MANDRILL_ERRORS])
async def test_mandrill_error_body_is_classified_by_the_mandrill_provider(answer, outcome):
    async with FakeMandrill(api_key="key") as fake:
        fake.fail_always(answer)
        provider = MandrillProvider("mandrill", api_key="key", base_url=f"{fake.url}/api/1.0",
                                    timeout="2s")
        try:
            with pytest.raises(ProviderError) as info:
                await provider.send(sample_job())
        finally:
            await provider.close()
    assert info.value.outcome == outcome


@pytest.mark.parametrize(("reason", "outcome"), [
    ("hard-bounce", P), ("soft-bounce", T), ("spam", P), ("unsub", P), ("custom", P),
    ("invalid-sender", F), ("invalid", P), ("test-mode-limit", F), ("unsigned", F),
    ("rule", P), ("recipient-domain-mismatch", F),
])
async def test_mandrill_reject_reason_is_classified_per_recipient(reason, outcome):
    answer = Answer(200, json.dumps([
        {"email": GOOD, "status": "sent", "_id": "a1", "reject_reason": None},
        {"email": BAD, "status": "rejected", "_id": "a2", "reject_reason": reason},
        {"email": "bcc@example.net", "status": "queued", "_id": "a3", "reject_reason": None},
    ]))
    async with FakeMandrill(api_key="key") as fake:
        fake.fail_always(answer)
        provider = MandrillProvider("mandrill", api_key="key", base_url=f"{fake.url}/api/1.0",
                                    timeout="2s")
        try:
            result = await provider.send(sample_job())
        finally:
            await provider.close()
    [refused] = result.refused
    assert (refused.recipient, refused.outcome) == (BAD, outcome)


SES_ERRORS = [
    (error_answer(400, "MessageRejected", "Email address is not verified. The following "
                  "identities failed the check in region US-EAST-1: cc@example.org"), F),
    (error_answer(400, "MessageRejected", "Illegal address"), P),
    (error_answer(400, "BadRequestException", "Invalid request."), P),
    (error_answer(400, "Throttling", "Maximum sending rate exceeded."), T),
    (error_answer(400, "Throttling", "Daily message quota exceeded."), T),
    (error_answer(429, "TooManyRequestsException", "Too many requests."), T),
    (error_answer(400, "LimitExceededException", "Too many requests."), T),
    (error_answer(400, "AccountSuspendedException", "Your account has been suspended."), F),
    (error_answer(400, "SendingPausedException", "Sending is paused for this account."), F),
    (error_answer(400, "MailFromDomainNotVerifiedException",
                  "The MAIL FROM domain is not verified."), F),
    (error_answer(404, "NotFoundException", "Configuration set <x> does not exist."), F),
    (error_answer(403, "UnrecognizedClientException",
                  "The security token included in the request is invalid."), F),
    (error_answer(403, "AccessDeniedException", "User is not authorized to perform "
                  "ses:SendEmail"), F),
    (error_answer(500, "InternalFailure", "The request processing has failed."), T),
    (error_answer(503, "ServiceUnavailable", "Service is unable to handle request."), T),
]


@pytest.mark.parametrize(("answer", "outcome"), SES_ERRORS,
                         ids=[f"{json.loads(a.body)['__type']}-{i}"
                              for i, (a, _) in enumerate(SES_ERRORS)])
async def test_ses_error_is_classified_by_the_ses_provider(answer, outcome):
    async with FakeSES() as fake:
        fake.fail_always(answer)
        provider = SESProvider("ses", region=SES_REGION, endpoint_url=fake.url,
                               access_key_id=SES_ACCESS_KEY_ID,
                               secret_access_key=SES_SECRET_KEY, timeout="2s")
        try:
            with pytest.raises(ProviderError) as info:
                await provider.send(sample_job())
        finally:
            await provider.close()
    assert info.value.outcome == outcome
    assert json.loads(answer.body)["__type"] in info.value.detail


def test_no_phrase_table_is_shared_between_providers():
    """The cause of item 16: one table matched against every provider's text."""
    import bitmail.mta.outcomes as outcomes

    assert not hasattr(outcomes, "ERROR_NAMES") and not hasattr(outcomes, "classify_name")
