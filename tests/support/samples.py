"""Provider tests: one rich message, and what must arrive of it."""

from __future__ import annotations

SAMPLE_ATTACHMENT = b"%PDF-1.4\n% a small binary attachment \x00\x01\x02\xff\n%%EOF\n"
SAMPLE_SUBJECT = "Grüße aus Zürich — ünïcødé ✓"


def sample_job(sender: str = "alice@bitmail.test", *, to: str = "to@example.com",
               cc: str = "cc@example.org", bcc: str = "bcc@example.net"):
    """A Job as the container hands it to a provider: to, cc and bcc recipients,
    a UTF-8 subject, text and html, and an attachment."""
    import base64

    from bitmail.message import parse_message
    from bitmail.outbox import Job

    message = parse_message({
        "to": to, "cc": cc, "bcc": bcc, "subject": SAMPLE_SUBJECT,
        "text": "Hallo — plain text body\n", "html": "<p>Hallo — <b>html</b> body</p>",
        "attachments": [{"filename": "report.pdf", "content_type": "application/pdf",
                         "content": base64.b64encode(SAMPLE_ATTACHMENT).decode()}],
    }, sender=sender, domain="bitmail.test")
    return Job(id="job-1", message_doc_id="msg-1", sender=sender, recipients=message.recipients,
               mime=message.mime, message_id=message.message_id)


def assert_same_mail(mime: bytes, job) -> None:
    """`mime`, as the far side received it, is the job's message: same Message-ID,
    headers, bodies and attachment; bcc only in the envelope, never in a header."""
    from email import policy
    from email.parser import BytesParser

    mail = BytesParser(policy=policy.default).parsebytes(mime)
    assert mail["Message-ID"] == job.message_id
    assert mail["Subject"] == SAMPLE_SUBJECT
    assert mail["From"] == job.sender
    assert [a.addr_spec for a in mail["To"].addresses] == ["to@example.com"]
    assert [a.addr_spec for a in mail["Cc"].addresses] == ["cc@example.org"]
    assert mail["Bcc"] is None
    assert "plain text body" in mail.get_body(("plain",)).get_content()
    assert "<b>html</b>" in mail.get_body(("html",)).get_content()
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_payload(decode=True) == SAMPLE_ATTACHMENT


async def send_expecting_error(provider, job=None):
    """Send `job` (the sample job) through `provider`; the ProviderError it
    must raise."""
    import pytest

    from bitmail.mta.outcomes import ProviderError

    with pytest.raises(ProviderError) as info:
        await provider.send(job or sample_job())
    return info.value
