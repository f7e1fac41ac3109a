"""SMTP submission (aiosmtpd) into the same accept path as the HTTP API.

Programs log in with AUTH (username and an API key, or the password). aiosmtpd
calls its authenticator synchronously, so the handler's own `auth_PLAIN` and
`auth_LOGIN` (aiosmtpd calls a handler's `auth_<MECHANISM>` in place of its
built-in one) let aiosmtpd decode the exchange, then check the credentials
awaiting the store and the password hasher. A wrong credential gets 535 at
once (RFC 4954 §6); the login limiter shared with the page may answer 454.

A message that needs SMTPUTF8 (RFC 6531) is refused when no configured
provider can carry it, as the HTTP API refuses it (mta.carries_smtputf8):
accepted, it could never be sent.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import warnings
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .accounts import User
from .errors import BitMailError, RateLimited, TooLarge
from .hosts import is_loopback
from .message import MAX_RECIPIENTS, check_envelope_address, submitted
from .message.submission import SubmissionRefused, replace_message_id
from .mta import carries_smtputf8
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
        self.smtputf8 = carries_smtputf8(runtime.settings.mta)

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
        # What SubmissionHandler._check put there: the User (aiosmtpd types
        # it as the built-in mechanisms' LoginPassword).
        user: object = session.auth_data
        if not isinstance(user, User):
            return "530 5.7.0 Authentication required"
        session.bitmail_user = user  # type: ignore[attr-defined]
        if address.strip("<>").lower() != user.address.lower():
            # RFC 6409 §6.1: the submission server decides who may send.
            return f"553 5.7.1 you may send only as {user.address}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 too many recipients (at most {MAX_RECIPIENTS} per message)"
        try:
            envelope.rcpt_tos.append(check_envelope_address(
                address, "to", own_domain=self.runtime.settings.domain))
        except BitMailError:
            return f"553 5.1.3 {address} is not a valid address"
        if not self.smtputf8 and not envelope.rcpt_tos[-1].isascii():
            envelope.rcpt_tos.pop()
            # RFC 6531 §3.5: 553 with X.6.7, "Non-ASCII addresses not
            # permitted for that sender/recipient".
            return ("553 5.6.7 Non-ASCII addresses not permitted for that recipient: "
                    "no configured provider carries SMTPUTF8")
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        user = getattr(session, "bitmail_user", None)
        if user is None:
            return "530 5.7.0 Authentication required"
        settings = self.runtime.settings
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):  # never: the server keeps data as bytes (decode_data off)
            return "554 5.6.0 the message could not be read"
        try:
            message = submitted(raw,
                                user_address=user.address,
                                recipients=list(dict.fromkeys(envelope.rcpt_tos)),
                                domain=settings.domain, max_size=settings.max_message_size)
        except BitMailError as exc:
            return _refused(exc)
        except Exception:
            # Reading the message failed in a way no check foresaw (Python's
            # header parser has raised AttributeError on `a@[b`): this
            # message cannot be read, and sending it again will not change
            # that (RFC 3463 5.6.0). aiosmtpd would answer "500 Error:
            # (AttributeError) ...": Python's internals, under a code that
            # says the command was not understood.
            log.exception("SMTP DATA from %s: the message could not be read", user.username)
            return "554 5.6.0 the message could not be read"
        if message.smtputf8 and not self.smtputf8:
            # UTF-8 header fields (RFC 6532) no configured provider can carry:
            # X.6.9, which RFC 6531 registers for a refusal after the final
            # "." of DATA (554: transaction failed, RFC 5321 §4.2.3).
            return ("554 5.6.9 UTF-8 header message cannot be transferred to one or more "
                    "recipients: no configured provider carries SMTPUTF8")
        try:
            if await self.runtime.mailbox.message_id_taken(message.message_id):
                message = replace_message_id(message, settings.domain)
            message_id = await self.runtime.mailbox.accept(message, user.username)
        except BitMailError as exc:
            return _refused(exc)
        except StorageFull:
            return "452 4.3.1 Insufficient system storage"  # RFC 3463: try later
        except StoreError:
            return "451 4.3.0 Temporary storage failure"
        return f"250 2.0.0 queued as {message_id}"

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's answer to any other exception a command raised. Its own
        is "500 Error: (TypeName) text": Python's internals, under a code
        that says the command was not understood. A fault here is a local
        error in processing (RFC 5321 §4.2.3: 451; RFC 3463: 4.3.0), which
        the client may try again."""
        log.error("SMTP session: %s", type(error).__name__, exc_info=error)
        return "451 4.3.0 Local error in processing"


def _refused(exc: BitMailError) -> str:
    """The reply refusing a message (RFC 3463 codes): too large, a sender
    the user may not use, or a message BitMail cannot take as written."""
    if isinstance(exc, TooLarge):
        return f"552 5.3.4 {exc.message}"
    if isinstance(exc, SubmissionRefused):
        return f"550 5.7.1 {exc.message}"
    return f"554 5.6.0 {exc.message} ({exc.field or 'message'})"


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
                        require_starttls=tls is not None and not loopback,
                        enable_SMTPUTF8=True)

    server = await asyncio.get_running_loop().create_server(factory, host, port)
    log.info("SMTP submission on %s:%s%s", host, port, " (STARTTLS)" if tls else "")
    return server
