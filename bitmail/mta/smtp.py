"""Any SMTP relay, through aiosmtplib, with a small pool of open connections.

The transaction is driven step by step (MAIL, RCPT for each recipient, DATA)
rather than with `sendmail`, because what a failure means depends on where it
happened: a connection lost before DATA sent nothing (and a reused idle
connection the relay had closed is simply replaced), while one lost during
DATA may have delivered the mail (ambiguous). Each refused recipient is
reported on its own; the others are sent.

The content after DATA is prepared here (`data_payload`) rather than by
aiosmtplib's `data()`, which runs two regular expressions over every byte of
every message: at 100 KB that was a quarter of the relay's CPU. The rules are
the same (RFC 5321 §2.3.8 line ends, §4.5.2 dot-stuffing); a message
BitMail rendered already has CRLF everywhere, which a count shows in C.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from collections.abc import AsyncIterator

import aiosmtplib

from ..config import parse_duration
from .outcomes import (
    Outcome,
    ProviderError,
    RecipientFailure,
    SendResult,
    classify_smtp,
    classify_smtp_reply,
    connection_failure,
    enhanced_status,
)
from .provider import Job, Provider

__all__ = ["ERRORS", "SMTPProvider", "classify"]

TLS_MODES = ("starttls", "implicit", "none")
DEFAULT_PORTS = {"starttls": 587, "implicit": 465, "none": 25}
_QUEUE_ID = re.compile(r"(?:queued as|id=)\s*<?([^\s>]+)", re.IGNORECASE)
# A lone CR or LF, or a CRLF: each becomes CRLF (what aiosmtplib's data() does).
_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")


def data_payload(mime: bytes) -> bytes:
    """What follows DATA for `mime`: every line end CRLF (RFC 5321 §2.3.8),
    a dot at the start of a line doubled (§4.5.2), the last line ended, then
    the terminating ".\r\n" (§4.1.1.4). The bytes are otherwise as given."""
    # Every CR and LF is half of a CRLF exactly when there are twice as many
    # of them as CRLFs (CRLFs never overlap). Deleting both with translate is
    # one pass; counting CR and LF apart was two, each as slow.
    ends = len(mime) - len(mime.translate(None, b"\r\n"))
    if ends != 2 * mime.count(b"\r\n"):
        mime = _LINE_END.sub(b"\r\n", mime)  # rare: mail that arrived with bare line ends
    stuffed = mime.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


async def _data(smtp: aiosmtplib.SMTP, mime: bytes) -> aiosmtplib.SMTPResponse:
    """DATA and the content, with aiosmtplib's public command and protocol
    calls, each reply awaited for the connection's timeout; raises what
    `SMTP.data` raises (SMTPDataError on a refusal, SMTPServerDisconnected,
    SMTPTimeoutError), and closes the connection on the last two as it does.

    Unlike `SMTP.data`, the content and its reply are not under aiosmtplib's
    command lock: the pool hands each connection to one send at a time, so
    no other command can be waiting on it."""
    payload = data_payload(mime)
    start = await smtp.execute_command(b"DATA")
    if start.code != aiosmtplib.SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    try:
        protocol = smtp.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        # read_response arms the reply before this coroutine yields, so the
        # relay's answer cannot arrive unheard between the write and the read.
        protocol.write(payload)
        answer = await protocol.read_response(timeout=smtp.timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        smtp.close()
        raise
    if answer.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(answer.code, answer.message)
    return answer


def _announced_size(smtp: aiosmtplib.SMTP) -> int | None:
    """The largest message the relay takes, as its EHLO's SIZE keyword says
    (RFC 1870: "SIZE 0", or SIZE without a number, means no fixed limit);
    None when it announces none, a number it does not say, or SIZE is not
    offered."""
    value = smtp.esmtp_extensions.get("size", "") if smtp.supports_extension("size") else ""
    return int(value) if value.isdigit() and int(value) > 0 else None


class _Disconnected(ProviderError):
    """The relay was gone before DATA: nothing was sent, a fresh connection may work."""


# What a relay's reply text says beyond its codes. The relay is BitMail's
# provider, not the recipient's server: when it will not relay for us, will
# not take our sender, or refuses our host, login or connection, no message
# can go through it — the provider's fault, and another provider can send the
# same message. Every other refusal is the message's or the recipient's (by
# its reply code). The texts are the standard replies of Postfix (smtpd's
# restrictions and their default reject texts), Exim (its default
# configuration's ACLs), Sendmail, Exchange Online (its NDR codes) and Gmail's
# SMTP relay service.
ERRORS: tuple[tuple[re.Pattern[str], Outcome], ...] = tuple(
    (re.compile(phrase, re.IGNORECASE), outcome) for phrase, outcome in (
        # Postfix "554 5.7.1 <x>: Relay access denied" (reject_unauth_destination);
        # Exim "550 relay not permitted"; Exchange "550 5.7.1 Unable to relay",
        # "5.7.54 ... Unable to relay recipient in non-accepted domain";
        # Sendmail "550 5.7.1 <x>... Relaying denied" (also "Relaying denied.
        # Proper authentication required."); Gmail's relay "550 5.7.0 Mail
        # relay denied".
        (r"relay access denied|relay not permitted|unable to relay|relaying denied|"
         r"mail relay denied", Outcome.PROVIDER_FAULT),
        # Postfix "553 5.7.1 <a@x>: Sender address rejected: not owned by user
        # u" and "... Sender address rejected: not logged in"
        # (reject_sender_login_mismatch); Exim "550 Sender verify failed";
        # Exchange "5.7.60 Client does not have permissions to send as this
        # sender", "SendAsDenied".
        (r"sender address rejected|sender verify failed|"
         r"permissions to send as this sender|sendasdenied", Outcome.PROVIDER_FAULT),
        # The relay refuses our host, whatever we send: Postfix "554 5.7.1
        # <host[ip]>: Client host rejected: Access denied" (check_client_access,
        # or smtpd_client_restrictions ending in reject) and "450 4.7.1 Client
        # host rejected: cannot find your hostname" (reject_unknown_client_
        # hostname); Postfix "554 5.7.1 Service unavailable; Client host [ip]
        # blocked using zen.spamhaus.org" (reject_rbl_client); Exim "rejected
        # because <ip> is in a black list at <dnsbl>" (its spec's dnslists
        # example); Exchange "5.7.708 ... traffic not accepted from this IP".
        (r"client host rejected|client host \[[^\]]*\] blocked|is in a black list at|"
         r"traffic not accepted from this ip", Outcome.PROVIDER_FAULT),
        # The relay refuses our EHLO name (local_hostname, or the machine's):
        # Postfix "504 5.5.2 <x>: Helo command rejected: need fully-qualified
        # hostname", "450 4.7.1 <x>: Helo command rejected: Host not found".
        (r"helo command rejected", Outcome.PROVIDER_FAULT),
        # The relay wants a login or TLS this provider is not configured for:
        # Sendmail and Gmail "530 5.7.0 Authentication required", Postfix and
        # Sendmail "530 5.7.0 Must issue a STARTTLS command first". Reply code
        # 530 says it already (outcomes.SMTP_AUTH_CODES); the texts are here
        # for a relay that gives them under 550 or 554.
        (r"authentication required|must issue a starttls command first",
         Outcome.PROVIDER_FAULT),
    ))
# A relay that checks a recipient by asking the next server quotes that
# server's answer (Postfix reject_unverified_recipient: "450 4.1.1 <x>:
# Recipient address rejected: unverified address: host mx[ip] said: 550 5.7.1
# Client host rejected ..."): that is about the recipient, whatever it quotes.
_ABOUT_RECIPIENT = re.compile(r"recipient address rejected", re.IGNORECASE)
# Exchange Online's enhanced codes (subject 7) for the same: 5.7.54 unable to
# relay, 5.7.57 client not authenticated, 5.7.60 send-as denied, 5.7.708 the
# sending IP is refused.
ENHANCED_FAULTS = frozenset({54, 57, 60, 708})


# A size refusal without an enhanced status code: Exim "552 Message size limit
# exceeded"; RFC 5321 §4.5.3.1.9's example "552 Too much mail data".
_TOO_BIG = re.compile(r"message size limit exceeded|message size exceeds|"
                      r"too much mail data|message too (?:big|large)", re.IGNORECASE)


def classify(code: int, message: str) -> Outcome:
    """One SMTP reply from the relay → Outcome: the standard codes first
    (outcomes.classify_smtp_reply), then what this module's ERRORS say.

    Postfix's "550 5.1.2 <bob@nx.example>: Recipient address rejected: Domain
    not found" is permanent for that recipient — the recipient's domain is
    missing, not the relay's configuration.
    """
    outcome = classify_smtp_reply(code, message)
    if outcome in (Outcome.ACCEPTED, Outcome.PROVIDER_FAULT, Outcome.CANNOT_CARRY):
        return outcome
    status = enhanced_status(message)
    if code == 552 and status is None and _TOO_BIG.search(message):
        # Over this relay's limit (RFC 1870: 552 for a message over SIZE):
        # another provider may take it.
        return Outcome.CANNOT_CARRY
    if status is not None and status.subject == 7 and status.detail in ENHANCED_FAULTS:
        return Outcome.PROVIDER_FAULT
    if _ABOUT_RECIPIENT.search(message):
        return outcome
    for pattern, meaning in ERRORS:
        if pattern.search(message):
            return meaning
    return outcome


class SMTPProvider(Provider):
    """Sends through an SMTP relay.

    Options: `host` (required); `port` (default 587, 465 for implicit TLS, 25
    without TLS); `username`, `password` (AUTH when given); `tls` = "starttls"
    (default, required) | "implicit" | "none"; `tls_verify` (default true) and
    `ca_file` (a CA bundle, e.g. a test's self-signed certificate); `timeout`
    per SMTP command (default 30s); `pool_size` — connections kept open and
    the most used at once (default 32, 1.06x the relay rate of 16 at 2 KB and
    less CPU per message; Postfix opens up to 20 per destination: a
    transaction is four round trips —
    MAIL, RCPT, DATA, the content — each waiting on the relay, so a relay is
    kept busy by many connections at once; aiosmtplib reads one reply per
    command, so PIPELINING (RFC 2920) cannot shorten them);
    `local_hostname` for EHLO; `max_recipients` — RCPTs per transaction
    (default 100, what RFC 5321 §4.5.3.1.8 asks every relay to take; a
    message to more goes in several transactions).
    """

    type = "smtp"
    smtputf8 = True  # when the relay offers it (checked per message, RFC 6531 §3.4)

    def __init__(self, name: str, *, host: str, port: int | None = None,
                 username: str | None = None, password: str | None = None,
                 tls: str = "starttls", tls_verify: bool = True, ca_file: str | None = None,
                 timeout: float | str = 30.0, pool_size: int = 32,
                 local_hostname: str | None = None, max_recipients: int = 100) -> None:
        super().__init__(name)
        if not host:
            raise ValueError("an smtp provider needs host")
        if tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}, not {tls!r}")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if not isinstance(max_recipients, int) or max_recipients < 1:
            raise ValueError("max_recipients must be a whole number of at least 1")
        self.max_recipients = max_recipients
        if bool(username) != bool(password):
            raise ValueError("an smtp provider needs both username and password, or neither")
        self.host = host
        self.port = port or DEFAULT_PORTS[tls]
        self.username = username
        self.password = password
        self.tls = tls
        self.timeout = parse_duration(timeout, f"{name}.timeout")
        self.local_hostname = local_hostname
        self._tls_context = self._make_tls_context(tls_verify, ca_file) if tls != "none" else None
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: deque[aiosmtplib.SMTP] = deque()
        self._closed = False

    @staticmethod
    def _make_tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"ca_file {ca_file!r} cannot be read: {exc}") from None
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password,) if s)

    async def start(self) -> None:
        self._closed = False  # connections are opened on first use
        # The relay's SIZE (RFC 1870) as its last EHLO announced it: a larger
        # message goes to another provider without a connection being tried.
        self._size_limit: int | None = None

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            smtp = self._idle.popleft()
            try:
                async with asyncio.timeout(1.0):
                    await smtp.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                smtp.close()

    # -- one send -----------------------------------------------------------------

    def can_carry(self, job: Job) -> bool:
        """As every provider, and within the relay's SIZE when it announced
        one (RFC 1870); learnt on the first connection, so until then a
        message over it is refused by the send, as CANNOT_CARRY too."""
        return super().can_carry(job) and (self._size_limit is None
                                           or len(job.mime) <= self._size_limit)

    async def send(self, job: Job) -> SendResult:
        async with self._slots:
            smtp, reused = await self._checkout()
            try:
                try:
                    result = await self._transaction(smtp, job)
                except _Disconnected:
                    if not reused:
                        raise
                    # An idle connection the relay had closed: one fresh try.
                    smtp.close()
                    smtp = await self._connect()
                    result = await self._transaction(smtp, job)
            except BaseException:
                # Whatever went wrong, this connection's state is unknown.
                smtp.close()
                raise
            if self._closed:
                smtp.close()
            else:
                self._idle.append(smtp)
            return result

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        """An open idle connection (reused = True), or a new one."""
        while self._idle:
            smtp = self._idle.popleft()
            if smtp.is_connected:
                return smtp, True
            smtp.close()
        return await self._connect(), False

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, username=self.username, password=self.password,
            use_tls=self.tls == "implicit", start_tls=self.tls == "starttls",
            tls_context=self._tls_context, timeout=self.timeout,
            local_hostname=self.local_hostname,
        )
        try:
            await smtp.connect()  # greeting, EHLO, STARTTLS, AUTH
        except BaseException as exc:
            smtp.close()
            if isinstance(exc, Exception):
                raise self._connect_error(exc) from None
            raise
        return smtp

    def _connect_error(self, exc: Exception) -> ProviderError:
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            # 535 bad credentials → provider fault; 454 temporary failure → transient.
            return ProviderError(classify_smtp(exc.code),
                                 self.redact(f"smtp authentication failed: {exc.code} "
                                             f"{exc.message}"))
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            # A refused greeting or EHLO: a busy relay (4xx) or one that will not serve us.
            outcome = Outcome.TRANSIENT if 400 <= exc.code < 500 else Outcome.PROVIDER_FAULT
            return ProviderError(outcome, self.redact(f"smtp {exc.code} {exc.message}"))
        if isinstance(exc, ssl.SSLError):
            # A certificate that does not verify will not verify on a retry either.
            return ProviderError(Outcome.PROVIDER_FAULT, f"smtp TLS failed: {exc}")
        if isinstance(exc, (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError,
                            aiosmtplib.SMTPServerDisconnected, OSError)):
            return connection_failure(f"smtp: cannot connect to {self.host}:{self.port}: "
                                      f"{type(exc).__name__}", sent=False)
        # STARTTLS or AUTH not offered, and the like: this relay's configuration.
        return ProviderError(Outcome.PROVIDER_FAULT, self.redact(f"smtp: {exc}"))

    async def _transaction(self, smtp: aiosmtplib.SMTP, job: Job) -> SendResult:
        in_data = False
        try:
            options = []
            if job.smtputf8:
                if not smtp.supports_extension("smtputf8"):
                    # RFC 6531 §3.4: such a message must not be downgraded
                    # here; a provider that carries SMTPUTF8 can send it.
                    raise ProviderError(Outcome.CANNOT_CARRY,
                                        "smtp: the relay does not offer SMTPUTF8, which this "
                                        "message needs (RFC 6531)")
                options.append("SMTPUTF8")
            limit = self._size_limit = _announced_size(smtp)
            if limit is not None:
                if len(job.mime) > limit:
                    # RFC 1870: a message over the announced SIZE would be
                    # refused; it is not sent, and another provider may take it.
                    raise ProviderError(Outcome.CANNOT_CARRY,
                                        f"smtp: the message is {len(job.mime)} bytes, over the "
                                        f"{limit} the relay takes (SIZE, RFC 1870)")
                # RFC 1870: the size declared, so a relay can refuse at MAIL.
                options.append(f"SIZE={len(job.mime)}")
            if not job.mime.isascii() and smtp.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
            try:
                await smtp.mail(job.sender, options=options,
                                encoding="utf-8" if job.smtputf8 else "ascii")
            except aiosmtplib.SMTPSenderRefused as exc:
                await self._reset(smtp)
                raise ProviderError(classify(exc.code, exc.message),
                                    f"smtp sender refused: {exc.code} {exc.message}") from None
            refused = [f async for f in self._recipients(smtp, job)]
            if len(refused) == len(job.recipients):
                await self._reset(smtp)
                if all(f.outcome == Outcome.PROVIDER_FAULT for f in refused):
                    raise ProviderError(Outcome.PROVIDER_FAULT, refused[0].detail)
                return SendResult(refused=tuple(refused))
            in_data = True
            try:
                answer = await _data(smtp, job.mime)
            except aiosmtplib.SMTPDataError as exc:
                raise ProviderError(classify(exc.code, exc.message),
                                    f"smtp message refused: {exc.code} {exc.message}") from None
        except aiosmtplib.SMTPServerDisconnected:
            if in_data:
                # Lost during DATA: the relay may have the whole message.
                raise connection_failure("smtp connection lost during DATA", sent=True) from None
            raise _Disconnected(Outcome.TRANSIENT, "smtp connection lost before DATA") from None
        except (aiosmtplib.SMTPTimeoutError, OSError) as exc:
            where = "during DATA" if in_data else "before DATA"
            raise connection_failure(f"smtp {type(exc).__name__} {where}", sent=in_data) from None
        match = _QUEUE_ID.search(answer.message)
        return SendResult(provider_message_id=match.group(1) if match else None,
                          refused=tuple(refused))

    async def _recipients(self, smtp: aiosmtplib.SMTP,
                          job: Job) -> AsyncIterator[RecipientFailure]:
        """RCPT for each recipient; yields a RecipientFailure for each refused one."""
        for recipient in job.recipients:
            try:
                await smtp.rcpt(recipient, encoding="utf-8" if job.smtputf8 else "ascii")
            except aiosmtplib.SMTPRecipientRefused as exc:
                yield RecipientFailure(recipient, classify(exc.code, exc.message),
                                       f"smtp {exc.code} {exc.message}")

    @staticmethod
    async def _reset(smtp: aiosmtplib.SMTP) -> None:
        """End an unfinished transaction so the connection can be reused."""
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()  # _checkout will not reuse it
