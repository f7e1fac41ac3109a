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
from .store import AlreadyExists, Batch, Document, Kind, Store

BAD = (Status.FAILED, Status.BOUNCED)
SUBJECT = "Undelivered mail: {subject}"


def notice_id(message_id: str, address: str) -> str:
    return "dsn-" + hashlib.sha256(f"{message_id}\0{address.lower()}".encode()).hexdigest()[:32]


def _status_code(reason: str) -> str:
    """An RFC 3463 enhanced status code for our own reasons, else a generic one."""
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


async def notify_failures(store: Store, domain: str, sent: Document,
                          failures: Iterable[tuple[str, str]]) -> list[str]:
    """Put a notice into the sender's Inbox for each (address, reason), once
    per recipient; publish it so an open page shows it. Returns the ids of
    the notices added now."""
    owner = sent["owner"]
    added = []
    for address, reason in failures:
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
        batch = Batch()
        doc["body"] = put_body(batch, _notice_mime(domain, doc, text, now))
        doc_id = batch.add(Kind.MESSAGE, doc, id=notice_id(sent["id"], address))
        try:
            await store.commit(batch)
        except AlreadyExists:
            continue
        added.append(doc_id)
        from .mailbox import summary  # mailbox imports this module

        await store.publish(live.new_message(owner, {**summary({**doc, "id": doc_id}),
                                                    "notice": doc["notice"]}))
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


def failed_recipients(doc: Document) -> list[tuple[str, str]]:
    """(address, reason) of each recipient of a Sent copy that failed or bounced."""
    return [(r["address"], r.get("detail") or "") for r in doc.get("recipients", [])
            if r.get("status") in BAD]
