"""Delivery-failure notices: what a sender finds in their Inbox when a
recipient of their mail failed or bounced.

Laid out like a delivery status notification (RFC 3464): a part for people
saying which recipient failed and why, then the machine-readable fields
(Reporting-MTA, Final-Recipient, Action, Status, Diagnostic-Code) as text.
One notice per message and recipient: its id is derived from both, so a
repeated event (or two processes seeing the same one) adds nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from . import live
from .bodies import put_body
from .events import Status
from .mta.outcomes import enhanced_status
from .store import AlreadyExists, Batch, Document, Kind, Store

BAD = (Status.FAILED, Status.BOUNCED)
SUBJECT = "Undelivered mail: {subject}"


def notice_id(message_id: str, address: str) -> str:
    return "dsn-" + hashlib.sha256(f"{message_id}\0{address.lower()}".encode()).hexdigest()[:32]


def _status_code(reason: str) -> str:
    """The notice's Status (RFC 3464 §2.3.4): the RFC 3463 enhanced status
    code the receiving side gave (a relay's "550 5.1.1 ..." says more than
    any code of ours), else one for our own reasons, else 5.0.0 (permanent,
    nothing more known). A 4.x.x code stays as given: a recipient given up
    after temporary refusals failed for that reason (as Postfix reports)."""
    given = enhanced_status(reason)
    if given is not None and given.klass in (4, 5):
        return str(given)
    reason = reason.lower()
    if "no such user" in reason:
        return "5.1.1"
    if "suppressed" in reason:
        return "5.7.1"
    return "5.0.0"


def notice_text(sent: Document, address: str, reason: str, domain: str, at: float) -> str:
    subject = sent.get("subject") or "(no subject)"
    when = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(at))
    return (
        f"Your message could not be delivered to {address}.\n\n"
        f"  Subject: {subject}\n"
        f"  Reason:  {reason or 'the receiving side refused it'}\n\n"
        "This is a permanent failure: BitMail will not try this recipient again.\n"
        "Your other recipients are not affected.\n\n"
        "--- Delivery report (RFC 3464) ---\n"
        f"Reporting-MTA: dns; {domain}\n"
        f"Arrival-Date: {when}\n\n"
        f"Final-Recipient: rfc822; {address}\n"
        "Action: failed\n"
        f"Status: {_status_code(reason)}\n"
        f"Diagnostic-Code: smtp; {reason or 'refused'}\n"
    )


def add_notice(batch: Batch, domain: str, sent: Document, address: str,
               reason: str) -> tuple[str, Document]:
    """Add to `batch` the notice that `address` failed for `reason`, in the
    Inbox of the owner of Sent copy `sent` (a document with its id), and its
    body; returns (notice id, notice document). The id is derived from the
    message and the address, so the batch fails with AlreadyExists when that
    notice exists."""
    owner = sent["owner"]
    now = time.time()
    text = notice_text(sent, address, reason, domain, now)
    doc: dict[str, Any] = {
        "owner": owner, "folder": "inbox", "unread": True, "status": str(Status.DELIVERED),
        "from": f"mailer-daemon@{domain}", "to": [f"{owner}@{domain}"], "cc": [], "bcc": [],
        "subject": SUBJECT.format(subject=sent.get("subject") or "(no subject)"),
        "date": now, "preview": " ".join(text.split())[:140], "has_attachments": False,
        "message_id": make_msgid(domain=domain),
        "notice": {"message": sent["id"], "recipient": address, "reason": reason,
                   "action": "failed", "status": _status_code(reason)},
    }
    doc["body"] = put_body(batch, _notice_mime(domain, doc, text, now))
    doc_id = batch.add(Kind.MESSAGE, doc, id=notice_id(sent["id"], address))
    return doc_id, doc


def announce_notice(owner: str, doc_id: str, doc: Document) -> dict[str, Any]:
    """The live update that shows a new notice on the owner's open pages."""
    from .mailbox import summary  # mailbox imports this module

    return live.new_message(owner, {**summary({**doc, "id": doc_id}), "notice": doc["notice"]})


async def notify_failures(store: Store, domain: str, sent: Document,
                          failures: Iterable[tuple[str, str]]) -> list[str]:
    """Put a notice into the sender's Inbox for each (address, reason), once
    per recipient, each in a commit of its own; publish it so an open page
    shows it. Returns the ids of the notices added now."""
    added = []
    for address, reason in failures:
        batch = Batch()
        doc_id, doc = add_notice(batch, domain, sent, address, reason)
        try:
            await store.commit(batch)
        except AlreadyExists:
            continue
        added.append(doc_id)
        await store.publish(announce_notice(sent["owner"], doc_id, doc))
    return added


def _notice_mime(domain: str, doc: dict[str, Any], text: str, at: float) -> bytes:
    """The notice as a message: from the mail system, marked as automatic
    (RFC 3834 Auto-Submitted), so no mail program answers it."""
    mail = EmailMessage(policy=policy.SMTP)
    mail["From"] = Address("Mail Delivery System", "mailer-daemon", domain)
    mail["To"] = doc["to"][0]
    mail["Subject"] = doc["subject"]
    mail["Date"] = formatdate(at)
    mail["Message-ID"] = doc["message_id"]
    mail["Auto-Submitted"] = "auto-replied"
    mail.set_content(text)
    return mail.as_bytes()
