"""SMTP submission (aiosmtpd) into the same accept path as the HTTP API.

Programs log in with AUTH (username and an API key, or the password). aiosmtpd
calls its authenticator synchronously, so the handler's own `auth_PLAIN` and
`auth_LOGIN` (aiosmtpd calls a handler's `auth_<MECHANISM>` in place of its
built-in one) let aiosmtpd decode the exchange, then check the credentials
awaiting the store and the password hasher. A wrong credential gets 535 at
once (RFC 4954 §6); the login limiter shared with the page may answer 454.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import warnings
from dataclasses import replace
from email import policy
from email.parser import BytesParser
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .accounts import User
from .errors import BitMailError, RateLimited
from .hosts import is_loopback
from .message import Attachment, Message, check_address, new_message_id, parse_addresses
from .runtime import Runtime
from .store import StorageFull, StoreError

log = logging.getLogger(__name__)


def _decoded_only(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                  data: Any) -> AuthResult:
    """aiosmtpd's synchronous authenticator: only hands the decoded
    credentials back to SubmissionHandler._check, which really checks them."""
    return AuthResult(success=isinstance(data, LoginPassword), auth_data=data, handled=False)


class SubmissionHandler:
    """Turns one SMTP transaction into an accepted message."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._check(server, await server.auth_PLAIN(server, args))

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._check(server, await server.auth_LOGIN(server, args))

    async def _check(self, server: SMTP, decoded: AuthResult) -> AuthResult:
        creds = decoded.auth_data
        if not decoded.success or not isinstance(creds, LoginPassword):
            return decoded  # aiosmtpd has answered already (bad base64, '*')
        peer = server.session.peer if server.session else None
        client = peer[0] if isinstance(peer, tuple) else str(peer)
        try:
            user = await self.runtime.accounts.authenticate(
                creds.login.decode(errors="replace"), creds.password.decode(errors="replace"),
                client=client)
        except RateLimited as exc:
            return AuthResult(success=False, handled=False,
                              message=f"454 4.7.0 {exc.message}")
        except StoreError as exc:
            # The counters or the account could not be read or written: a
            # temporary failure (RFC 4954 §6), never a guess let through.
            log.error("SMTP AUTH from %s: the store failed: %s", client, exc)
            return AuthResult(success=False, handled=False,
                              message="454 4.7.0 Temporary authentication failure")
        if user is None:
            return AuthResult(success=False, handled=False,
                              message="535 5.7.8 Authentication credentials invalid")
        return AuthResult(success=True, auth_data=user)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        user = session.auth_data
        if not isinstance(user, User):
            return "530 5.7.0 Authentication required"
        session.bitmail_user = user  # type: ignore[attr-defined]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        try:
            envelope.rcpt_tos.append(check_address(address, "to"))
        except BitMailError:
            return f"553 5.1.3 {address} is not a valid address"
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        user = getattr(session, "bitmail_user", None)
        if user is None:
            return "530 5.7.0 Authentication required"
        try:
            domain = self.runtime.settings.domain
            message = from_mime(envelope.content, sender=user.address,
                                recipients=envelope.rcpt_tos, domain=domain)
            if await self.runtime.mailbox.find_by_message_id(message.message_id):
                # A Message-ID another message already has would let that
                # message's provider events be matched to this one: replaced.
                message = replace(message, message_id=new_message_id(domain))
            message_id = await self.runtime.mailbox.accept(message, user.username)
        except BitMailError as exc:
            return f"554 5.6.0 {exc.message} ({exc.field or 'message'})"
        except StorageFull:
            return "452 4.3.1 Insufficient system storage"  # RFC 3463: try later
        except StoreError:
            return "451 4.3.0 Temporary storage failure"
        return f"250 2.0.0 queued as {message_id}"


def from_mime(raw: bytes, *, sender: str, recipients: list[str], domain: str) -> Message:
    """A Message from submitted MIME: the envelope decides who receives it,
    and those not named in To or Cc are Bcc."""
    mail = BytesParser(policy=policy.default).parsebytes(raw)
    to = parse_addresses(", ".join(str(v) for v in mail.get_all("To", [])), "to")
    cc = parse_addresses(", ".join(str(v) for v in mail.get_all("Cc", [])), "cc")
    shown = {a.lower() for a in (*to, *cc)}
    bcc = tuple(r for r in recipients if r.lower() not in shown)
    to = tuple(a for a in to if a.lower() in {r.lower() for r in recipients})
    cc = tuple(a for a in cc if a.lower() in {r.lower() for r in recipients})
    text_part = mail.get_body(preferencelist=("plain",))
    html_part = mail.get_body(preferencelist=("html",))
    attachments = tuple(
        Attachment(p.get_filename() or "attachment", p.get_content_type(),
                   p.get_payload(decode=True) or b"")
        for p in mail.iter_attachments())
    return Message(
        sender=sender, to=to, cc=cc, bcc=bcc,
        subject=str(mail.get("Subject", "")).replace("\r", "").replace("\n", " "),
        text=text_part.get_content() if text_part else "",
        html=html_part.get_content() if html_part else "",
        attachments=attachments,
        message_id=str(mail.get("Message-ID") or new_message_id(domain)),
    )


# aiosmtpd logs these for every connection: the first because AUTH without
# TLS is allowed, which start_smtp does on loopback only and on purpose; the
# second because aiosmtpd itself sets its deprecated `Session.login_data`
# after every AUTH (BitMail reads `session.auth_data`).
_KNOWN_NOTICES = ("auth_required == True but auth_require_tls == False",
                  "login_data is deprecated")


def _drop_known_notices(record: logging.LogRecord) -> bool:
    return not any(notice in record.getMessage() for notice in _KNOWN_NOTICES)


async def start_smtp(runtime: Runtime, host: str, port: int,
                     tls: ssl.SSLContext | None = None) -> asyncio.Server:
    """Listen for SMTP submission; returns the asyncio server (close() to stop).

    With the web server's certificate (`tls`), STARTTLS is offered, and off
    loopback it is required before AUTH, so passwords never cross in the clear.
    """
    handler = SubmissionHandler(runtime)
    loopback = is_loopback(host)
    # aiosmtpd's log is a trace of every command of every session: only its
    # warnings belong in the service's log, and not those two about choices
    # made here (filters are added once, however often this runs).
    aiosmtpd_log = logging.getLogger("mail.log")
    aiosmtpd_log.setLevel(logging.WARNING)
    aiosmtpd_log.addFilter(_drop_known_notices)

    def factory() -> SMTP:
        with warnings.catch_warnings():
            # On loopback AUTH without TLS is the choice made above, not an
            # oversight; aiosmtpd would warn about it for every connection.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS",
                                    UserWarning)
            return SMTP(handler, data_size_limit=runtime.settings.max_message_size,
                        hostname=runtime.settings.domain, authenticator=_decoded_only,
                        auth_required=True, auth_require_tls=not loopback, tls_context=tls,
                        require_starttls=tls is not None and not loopback)

    server = await asyncio.get_running_loop().create_server(factory, host, port)
    log.info("SMTP submission on %s:%s%s", host, port, " (STARTTLS)" if tls else "")
    return server
