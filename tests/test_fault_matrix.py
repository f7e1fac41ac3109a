"""The fault matrix: each provider and fault → the class the provider reports → what
the container does, seen through the HTTP API.

Every case runs a service with two providers: the faulty one first (round
robin gives it the message) and a healthy Mailgun fake second ("backup").
The actions:

- retry elsewhere: a "deferred" event from the faulty provider, then "sent"
  from the backup, which receives the message once;
- mark down: the same, and the faulty provider is down in /api/providers
  (bad credentials, threshold 1);
- fail that recipient: the refused recipient is "failed", the others "sent"
  by the faulty provider, and no other provider is tried (Mandrill, SMTP);
- fail the message: Mailgun and SES refuse the whole request when one
  recipient is bad (400 / MessageRejected), which is permanent, so every
  recipient is "failed" and no other provider is tried; so is SMTP's 554 at
  DATA (5xx is final in SMTP);
- ambiguous: the peer took the mail and its answer was lost; the message is
  sent elsewhere too, the events say so, and it arrives twice;
- back off: when the only provider fails transiently, "deferred", then "sent"
  once it heals.

Nothing is lost: every case ends with an empty outbox.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bitmail.mta.outcomes import Outcome
from bitmail.testing import FakeMailgun, FakeMandrill
from bitmail.testing.ses import FakeSES

from conftest import (
    SES_ACCESS_KEY_ID,
    SES_REGION,
    SMTP_USERNAME,
    Relay,
    Service,
    provider_toml,
    run_relay,
    start_service,
    wait_for,
)

TO, CC, BCC = "to@example.com", "cc@example.org", "bcc@example.net"
FINAL = ("sent", "failed")


# -- the faulty provider's peer ---------------------------------------------------------


@dataclass
class Faulty:
    """A provider's peer, misbehaving on command, and the options that point at it."""

    kind: str
    peer: Any  # FakeMailgun | FakeMandrill | FakeSES | Relay
    options: dict[str, Any]

    def arrivals(self) -> list[tuple[str, frozenset[str]]]:
        """(Message-ID, envelope) of every message the peer took."""
        if isinstance(self.peer, Relay):
            return [(_message_id(d.content), frozenset(d.rcpt_tos)) for d in self.peer.received]
        return [(r.message_id, frozenset(r.recipients)) for r in self.peer.received]


def _message_id(mime: bytes) -> str:
    return str(BytesParser(policy=policy.default).parsebytes(mime, headersonly=True)
               ["Message-ID"])


@contextlib.asynccontextmanager
async def open_faulty(kind: str, certificate: tuple[Path, Path], *, configured: str,
                      accepted: str, mailgun: type[FakeMailgun] = FakeMailgun,
                      mandrill: type[FakeMandrill] = FakeMandrill) -> AsyncIterator[Faulty]:
    """The peer for `kind`, taking the secret `accepted`; BitMail is given
    `configured` (a different one makes bad credentials). FakeSES checks no
    signature: its bad credentials are `fail_always(401)`."""
    if kind == "mailgun":
        async with mailgun(api_key=accepted, domain="mg.example.com", hang=2) as fake:
            yield Faulty(kind, fake, {"api_key": configured, "domain": "mg.example.com",
                                      "base_url": fake.url, "timeout": "0.5s"})
    elif kind == "mandrill":
        async with mandrill(api_key=accepted, hang=2) as fake:
            yield Faulty(kind, fake, {"api_key": configured, "base_url": f"{fake.url}/api/1.0",
                                      "timeout": "0.5s"})
    elif kind == "ses":
        async with FakeSES(hang=2) as fake:
            yield Faulty(kind, fake, {"region": SES_REGION, "endpoint_url": fake.url,
                                      "access_key_id": SES_ACCESS_KEY_ID,
                                      "secret_access_key": configured, "timeout": "0.5s"})
    else:
        relay = Relay(password=accepted, hang=2)
        running = run_relay(certificate, relay=relay)
        port = next(running).port
        try:
            yield Faulty(kind, relay, {"host": "127.0.0.1", "port": port,
                                       "username": SMTP_USERNAME, "password": configured,
                                       "tls": "starttls", "ca_file": str(certificate[0]),
                                       "timeout": "0.5s"})
        finally:
            running.close()  # stops the relay


MTA = """
[mta]
scheduler = "round-robin"
retry_base = "100ms"
retry_max = "300ms"
send_timeout = "5s"
"""


def faulty_toml(faulty: Faulty, *, threshold: int, retry_after: str = "60s",
                name: str | None = None) -> str:
    return provider_toml(name or faulty.kind, faulty.kind, **faulty.options, failure={
        "threshold": threshold, "retry_after": retry_after})


def backup_toml(fake: FakeMailgun) -> str:
    return provider_toml("backup", "mailgun", api_key=fake.api_key, domain="mg.example.com",
                         base_url=fake.url, timeout="2s",
                         failure={"threshold": 10, "retry_after": "60s"})


async def send(svc: Service, headers: dict[str, str], subject: str = "fault") -> dict:
    resp = await svc.client.post("/api/messages", headers=headers, json={
        "to": TO, "cc": CC, "bcc": BCC, "subject": subject, "text": "hello"})
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def message(svc: Service, headers: dict[str, str], msg: dict) -> dict:
    resp = await svc.client.get(f"/api/messages/{msg['id']}", headers=headers)
    assert resp.status == 200
    return await resp.json()


async def settled(svc: Service, headers: dict[str, str], msg: dict,
                  statuses: tuple[str, ...] = FINAL) -> dict:
    """The message once every recipient's status is in `statuses` and the outbox is empty."""

    async def done() -> dict | None:
        doc = await message(svc, headers, msg)
        if all(r["status"] in statuses for r in doc["recipients"]) and \
                await svc.runtime.outbox.pending() == 0:
            return doc
        return None

    return await wait_for(done)


async def provider_states(svc: Service, headers: dict[str, str]) -> dict[str, dict]:
    resp = await svc.client.get("/api/providers", headers=headers)
    assert resp.status == 200
    return {p["name"]: p for p in (await resp.json())["providers"]}


# -- the matrix -----------------------------------------------------------------------


class Action(StrEnum):
    RETRY_ELSEWHERE = "retry-elsewhere"
    MARK_DOWN = "mark-down"
    FAIL_RECIPIENT = "fail-that-recipient"
    FAIL_MESSAGE = "fail-the-message"
    AMBIGUOUS = "ambiguous-retry-elsewhere"


Inject = Callable[[Faulty], None]


def always(kind: int | str) -> Inject:
    return lambda f: f.peer.fail_always(kind)


def once_after_accept(kind: str) -> Inject:
    return lambda f: f.peer.fail_next(1, kind, after_accept=True)


def smtp(where: str, reply: str, *, standing: bool = True) -> Inject:
    return lambda f: setattr(f.peer, f"{where}_{'always' if standing else 'fault'}", reply)


def reject(address: str) -> Inject:
    def inject(f: Faulty) -> None:
        if isinstance(f.peer, Relay):
            f.peer.refuse[address] = "550 5.1.1 No such user"
        else:
            f.peer.reject(address)
    return inject


def refuse_with(address: str, reply: str) -> Inject:
    """The relay answers RCPT for `address` with this reply."""
    return lambda f: f.peer.refuse.__setitem__(address, reply)


# Postfix's standard refusal of a recipient whose domain does not exist: the
# recipient's fault, not the relay's (issue 10, item 16).
DOMAIN_NOT_FOUND = "550 5.1.2 <{}>: Recipient address rejected: Domain not found"

BAD_CREDENTIALS = "bad-credentials"  # BitMail is given a key the peer does not take


@dataclass(frozen=True)
class Case:
    provider: str
    fault: str
    inject: Inject | None  # None: bad credentials, made by the configuration
    outcome: Outcome
    action: Action
    ambiguous: bool = False  # the failed try may have gone out: the events must say so
    note: str = ""

    @property
    def id(self) -> str:
        return "-".join(filter(None, (self.provider, self.fault, str(self.outcome),
                                      str(self.action), self.note)))


T, P, F = Outcome.TRANSIENT, Outcome.PERMANENT, Outcome.PROVIDER_FAULT
R, D, FR, FM, A = (Action.RETRY_ELSEWHERE, Action.MARK_DOWN, Action.FAIL_RECIPIENT,
                   Action.FAIL_MESSAGE, Action.AMBIGUOUS)

CASES = [
    # Mailgun
    Case("mailgun", "5xx", always(500), T, R),
    Case("mailgun", "429", always(429), T, R),
    Case("mailgun", "timeout", always("timeout"), T, R, ambiguous=True),
    Case("mailgun", "dropped", always("drop"), T, R, ambiguous=True),
    Case("mailgun", BAD_CREDENTIALS, None, F, D),
    Case("mailgun", "rejected-recipient", reject(CC), P, FM, note="400-refuses-whole-request"),
    Case("mailgun", "timeout-after-accept", once_after_accept("timeout"), T, A, ambiguous=True),
    # Mandrill
    Case("mandrill", "5xx", always(500), T, R, note="GeneralError"),
    Case("mandrill", "429", always(429), T, R),
    Case("mandrill", "timeout", always("timeout"), T, R, ambiguous=True),
    Case("mandrill", "dropped", always("drop"), T, R, ambiguous=True),
    Case("mandrill", BAD_CREDENTIALS, None, F, D, note="Invalid_Key"),
    Case("mandrill", "rejected-recipient", reject(CC), P, FR, note="per-recipient-answer"),
    Case("mandrill", "timeout-after-accept", once_after_accept("timeout"), T, A, ambiguous=True),
    # SES (the fault fake: moto cannot fail)
    Case("ses", "5xx", always(500), T, R, note="InternalFailure"),
    Case("ses", "throttling", always("Throttling"), T, R),
    Case("ses", "timeout", always("timeout"), T, R, ambiguous=True),
    Case("ses", "dropped", always("drop"), T, R, ambiguous=True),
    Case("ses", BAD_CREDENTIALS, always(401), F, D, note="UnrecognizedClient"),
    Case("ses", "rejected-recipient", reject(CC), P, FM,
         note="MessageRejected-refuses-whole-request"),
    Case("ses", "timeout-after-accept", once_after_accept("timeout"), T, A, ambiguous=True),
    # SMTP (aiosmtpd with STARTTLS and AUTH)
    Case("smtp", "5xx", smtp("data", "554 5.6.0 Message content rejected"), P, FM,
         note="5xx-is-final-in-smtp"),
    Case("smtp", "4xx", smtp("mail", "421 4.7.0 Try again later"), T, R),
    Case("smtp", "throttling", smtp("data", "451 4.7.1 Rate limit exceeded, slow down"), T, R),
    Case("smtp", "timeout", smtp("mail", "timeout"), T, R, note="before-data"),
    Case("smtp", "dropped", smtp("mail", "drop"), T, R, note="before-data"),
    Case("smtp", BAD_CREDENTIALS, None, F, D, note="535"),
    Case("smtp", "rejected-recipient", reject(CC), P, FR, note="550-at-rcpt"),
    Case("smtp", "domain-not-found", refuse_with(CC, DOMAIN_NOT_FOUND.format(CC)), P, FR,
         note="postfix-550-5.1.2"),
    Case("smtp", "timeout-after-accept", smtp("data", "timeout", standing=False), T, A,
         ambiguous=True, note="during-data"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
async def test_fault_is_classified_and_acted_on(case: Case, make_settings, certificate):
    key = {"mailgun": "key-faulty", "mandrill": "md-faulty", "ses": "ses-secret",
           "smtp": "smtp-password"}[case.provider]
    configured = key if case.inject else key + "-wrong"
    async with (open_faulty(case.provider, certificate, configured=configured,
                            accepted=key) as faulty,
                FakeMailgun(api_key="key-backup", domain="mg.example.com") as backup):
        if case.inject:
            case.inject(faulty)
        threshold = 1 if case.action == Action.MARK_DOWN else 3
        settings = make_settings(MTA + faulty_toml(faulty, threshold=threshold, name="faulty")
                                 + backup_toml(backup))
        async with start_service(settings) as svc:
            headers = await svc.api_key("alice", operator=True)
            msg = await send(svc, headers)
            doc = await settled(svc, headers, msg)
            states = await provider_states(svc, headers)
            outcomes = dict(svc.runtime.container.slots["faulty"].figures.outcomes)
        faulty_got = faulty.arrivals()
        backup_got = [(r.message_id, frozenset(r.recipients)) for r in backup.received]

    mid = msg["message_id"]
    status = {r["address"]: (r["status"], r["provider"]) for r in doc["recipients"]}
    events = doc["events"]
    by = {(e["type"], e["provider"]) for e in events}
    everyone = frozenset({TO, CC, BCC})

    if case.action in (Action.RETRY_ELSEWHERE, Action.MARK_DOWN, Action.AMBIGUOUS):
        assert outcomes == {case.outcome: 1}
        assert status == {a: ("sent", "backup") for a in everyone}
        deferred = [e for e in events if e["type"] == "deferred"]
        sent = [e for e in events if e["type"] == "sent"]
        assert {e["provider"] for e in deferred} == {"faulty"} and len(deferred) == 3
        assert {e["provider"] for e in sent} == {"backup"} and len(sent) == 3
        assert max(e["at"] for e in deferred) <= min(e["at"] for e in sent)
        assert all("trying another provider" in e["detail"] for e in deferred)
        assert all(e.get("ambiguous", False) == case.ambiguous for e in deferred)
        assert backup_got == [(mid, everyone)]  # once
        if case.action == Action.AMBIGUOUS:
            # The peer had taken it: it went out twice, and the events say it may have.
            assert faulty_got == [(mid, everyone)]
            assert all(e.get("ambiguous") and "may also have gone out" in e["detail"]
                       for e in sent)
        else:
            assert faulty_got == []
        assert states["faulty"]["state"] == ("down" if case.action == Action.MARK_DOWN
                                             else "up")
    elif case.action == Action.FAIL_RECIPIENT:
        assert outcomes == {Outcome.ACCEPTED: 1}
        assert status == {TO: ("sent", "faulty"), BCC: ("sent", "faulty"),
                          CC: ("failed", None)}
        [cc_failed] = [e for e in events if e["recipient"] == CC and e["type"] == "failed"]
        assert cc_failed["provider"] == "faulty" and cc_failed["detail"]
        assert faulty_got == [(mid, frozenset({TO, BCC}))]
        assert backup_got == [] and "backup" not in {e["provider"] for e in events}
        assert ("deferred", "faulty") not in by
        assert states["faulty"]["state"] == "up"
    else:  # the whole message failed, here and nowhere else
        assert outcomes == {case.outcome: 1}
        assert {a: s for a, (s, _) in status.items()} == dict.fromkeys(everyone, "failed")
        failed = [e for e in events if e["type"] == "failed"]
        assert {e["provider"] for e in failed} == {"faulty"} and len(failed) == 3
        assert faulty_got == [] and backup_got == []
        assert "backup" not in {e["provider"] for e in events}
        assert states["faulty"]["state"] == "up"  # the message's fault, not the provider's
    assert doc["status"] == ("failed" if case.action == Action.FAIL_MESSAGE else "sent")


async def test_postfix_domain_not_found_for_the_only_recipient_fails_it_here(
        make_settings, certificate):
    """One recipient, refused with Postfix's 550 5.1.2 "Domain not found": the
    message fails, is not tried elsewhere, and the relay's health is untouched."""
    async with (open_faulty("smtp", certificate, configured="pw", accepted="pw") as faulty,
                FakeMailgun(api_key="key-backup", domain="mg.example.com") as backup):
        faulty.peer.refuse[TO] = DOMAIN_NOT_FOUND.format(TO)
        settings = make_settings(MTA + faulty_toml(faulty, threshold=1, name="faulty")
                                 + backup_toml(backup))
        async with start_service(settings) as svc:
            headers = await svc.api_key("alice", operator=True)
            resp = await svc.client.post("/api/messages", headers=headers, json={
                "to": TO, "subject": "nx", "text": "hello"})
            msg = await resp.json()
            doc = await settled(svc, headers, msg)
            states = await provider_states(svc, headers)
            outcomes = dict(svc.runtime.container.slots["faulty"].figures.outcomes)
    [recipient] = doc["recipients"]
    assert recipient["status"] == "failed"
    [failed] = [e for e in doc["events"] if e["type"] == "failed"]
    assert failed["provider"] == "faulty" and "Domain not found" in failed["detail"]
    assert not [e for e in doc["events"] if e["type"] == "deferred"]
    assert backup.received == []
    assert outcomes == {Outcome.ACCEPTED: 1}  # the relay answered; nothing against it
    assert states["faulty"]["state"] == "up" and states["faulty"]["last_error"] is None


BACK_OFF = {
    "mailgun": always(503),
    "mandrill": always("GeneralError"),
    "ses": always("Throttling"),
    "smtp": smtp("data", "451 4.7.1 Rate limit exceeded, slow down"),
}


@pytest.mark.parametrize("kind", list(BACK_OFF))
async def test_only_provider_failing_transiently_backs_off_then_sends_after_healing(
        kind: str, make_settings, certificate):
    key = f"{kind}-key"
    async with open_faulty(kind, certificate, configured=key, accepted=key) as faulty:
        BACK_OFF[kind](faulty)
        settings = make_settings(MTA + faulty_toml(faulty, threshold=10))
        async with start_service(settings) as svc:
            headers = await svc.api_key("alice", operator=True)
            msg = await send(svc, headers)
            await wait_for(lambda: _status_is(svc, headers, msg, "deferred"))
            assert await svc.runtime.outbox.pending() == 1  # kept, not lost
            faulty.peer.heal()
            doc = await settled(svc, headers, msg)
            states = await provider_states(svc, headers)
        arrivals = faulty.arrivals()

    events = doc["events"]
    deferred = [e for e in events if e["type"] == "deferred"]
    sent = [e for e in events if e["type"] == "sent"]
    assert deferred and all(e["provider"] == kind and "retrying in" in e["detail"]
                            for e in deferred)
    assert len(sent) == 3 and all(e["provider"] == kind for e in sent)
    assert max(e["at"] for e in deferred) < min(e["at"] for e in sent)
    assert doc["status"] == "sent"
    assert arrivals == [(msg["message_id"], frozenset({TO, CC, BCC}))]
    assert states[kind]["state"] == "up"


async def _status_is(svc: Service, headers: dict[str, str], msg: dict, status: str) -> bool:
    return (await message(svc, headers, msg))["status"] == status


# -- secrets never show ----------------------------------------------------------------

SECRETS = {
    "mailgun": "key-MGsecret-9f3c1e7a55d2",
    "mandrill": "md-MDsecret-41b7e0c9aa6f",
    "ses": "SESsecret/Zq9+Xw8vU7tS6rR5qQ4pP3oO2nN1mM0",
    "smtp": "SMTPsecret-pa55-e3d2c1b0",
}


def secret_forms() -> dict[str, str]:
    """Each secret, and the encodings it travels in (basic auth, SMTP AUTH)."""
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    return {
        **{f"{k} secret": v for k, v in SECRETS.items()},
        "mailgun basic auth": b64(f"api:{SECRETS['mailgun']}"),
        "smtp AUTH PLAIN": b64(f"\0{SMTP_USERNAME}\0{SECRETS['smtp']}"),
        "smtp AUTH LOGIN": b64(SECRETS["smtp"]),
    }


class EchoingMailgun(FakeMailgun):
    """Quotes the Authorization header back when refusing it, as a careless proxy might."""

    def _refusal(self, request: web.Request) -> web.StreamResponse | None:
        refusal = super()._refusal(request)
        if refusal is not None and refusal.status == 401:
            return web.Response(status=401,
                                text=f"Forbidden: {request.headers.get('Authorization')}")
        return refusal


class EchoingMandrill(FakeMandrill):
    """Quotes the key back in its Invalid_Key error."""

    async def _send_raw(self, request: web.Request) -> web.StreamResponse:
        answer = await super()._send_raw(request)
        if answer.status == 500 and b"Invalid_Key" in answer.body:
            key = json.loads(await request.read()).get("key")
            return web.json_response({"status": "error", "code": -1, "name": "Invalid_Key",
                                      "message": f"Invalid API key: {key}"}, status=500)
        return answer


# scenario → what each provider's peer does wrong
SCENARIOS: dict[str, dict[str, Inject | None]] = {
    BAD_CREDENTIALS: {"mailgun": None, "mandrill": None, "ses": always(401), "smtp": None},
    "server-error": {"mailgun": always(500), "mandrill": always(500), "ses": always(500),
                     "smtp": smtp("data", "451 4.3.0 Local error in processing")},
    "timeout": {"mailgun": always("timeout"), "mandrill": always("timeout"),
                "ses": always("timeout"), "smtp": smtp("mail", "timeout")},
    "dropped": {"mailgun": always("drop"), "mandrill": always("drop"),
                "ses": always("drop"), "smtp": smtp("data", "drop")},
    "rejected-recipient": dict.fromkeys(("mailgun", "mandrill", "ses", "smtp"), reject(CC)),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_credentials_never_appear_in_logs_errors_or_the_api(
        scenario: str, make_settings, certificate, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="bitmail")
    injects = SCENARIOS[scenario]
    async with contextlib.AsyncExitStack() as stack:
        peers = []
        for kind in ("mailgun", "mandrill", "ses", "smtp"):
            bad = scenario == BAD_CREDENTIALS and injects[kind] is None
            peers.append(await stack.enter_async_context(open_faulty(
                kind, certificate, configured=SECRETS[kind],
                accepted="not-" + SECRETS[kind] if bad else SECRETS[kind],
                mailgun=EchoingMailgun, mandrill=EchoingMandrill)))
            if injects[kind]:
                injects[kind](peers[-1])
        backup = await stack.enter_async_context(
            FakeMailgun(api_key="key-backup", domain="mg.example.com"))
        # Threshold 1 and a short retry_after: each provider goes down (the
        # "down" log line carries its last error) and is probed again.
        settings = make_settings(MTA + "".join(
            faulty_toml(p, threshold=1, retry_after="200ms") for p in peers)
            + backup_toml(backup))
        async with start_service(settings) as svc:
            headers = await svc.api_key("alice", operator=True)
            msgs = [await send(svc, headers, f"m{i}") for i in range(6)]
            docs = [await settled(svc, headers, m) for m in msgs]
            providers = await (await svc.client.get("/api/providers", headers=headers)).text()
            metrics = await (await svc.client.get("/metrics")).text()
            listing = await (await svc.client.get("/api/messages?folder=sent",
                                                  headers=headers)).text()
            tried = {name: sum(slot.figures.outcomes.values())
                     for name, slot in svc.runtime.container.slots.items()}

    assert all(tried[kind] for kind in SECRETS), tried  # every faulty provider had a go
    shown = {
        "logs": caplog.text + "\n".join(
            f"{r.getMessage()}\n{r.exc_text or ''}\n{r.stack_info or ''}"
            for r in caplog.records),
        "/api/providers": providers,
        "/metrics": metrics,
        "messages": json.dumps(docs, ensure_ascii=False) + listing,
    }
    for where, text in shown.items():
        for what, secret in secret_forms().items():
            assert secret not in text, f"the {what} shows in {where}"
    # The failures were seen (and redacted where a peer quoted a key back).
    errors = {p["name"]: p["last_error"] or "" for p in json.loads(providers)["providers"]}
    if scenario == BAD_CREDENTIALS:
        assert all(errors[k] for k in SECRETS), errors
        assert "***" in errors["mailgun"] and "***" in errors["mandrill"]
