"""SMTP submission: programs send through the same accept path as the API."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
import pytest

from bitmail.message import read_content
from bitmail.smtpd import start_smtp

from conftest import free_port


@pytest.fixture
async def smtp(service):
    port = free_port()
    server = await start_smtp(service.runtime, "127.0.0.1", port)
    yield service, port
    server.close()
    await server.wait_closed()


def mail(to: str, cc: str = "") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "robot@localhost"
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = "over smtp"
    msg["Message-ID"] = "<fixed-id@example.com>"
    msg.set_content("hello")
    msg.add_attachment(b"data", maintype="application", subtype="octet-stream",
                       filename="d.bin")
    return msg


async def test_submission_with_an_api_key_is_accepted_with_bcc_from_the_envelope(smtp):
    service, port = smtp
    await service.api_key("robot")
    key = await service.runtime.accounts.create_api_key("robot")
    await aiosmtplib.send(mail("a@example.com", "b@example.com"), hostname="127.0.0.1",
                          port=port, username="robot", password=key,
                          recipients=["a@example.com", "b@example.com", "hidden@example.com"])
    [doc] = await service.runtime.store.get("message", {"owner": "robot", "folder": "sent"})
    assert doc["to"] == ["a@example.com"] and doc["cc"] == ["b@example.com"]
    assert doc["bcc"] == ["hidden@example.com"]
    assert doc["message_id"] == "<fixed-id@example.com>"
    [part] = read_content(await service.runtime.mailbox.mime(doc)).parts
    assert part.filename == "d.bin"


async def test_submission_with_a_wrong_password_is_refused(smtp):
    service, port = smtp
    await service.runtime.accounts.create("robot", "right-password")
    with pytest.raises(aiosmtplib.SMTPResponseException) as err:
        await aiosmtplib.send(mail("a@example.com"), hostname="127.0.0.1", port=port,
                              username="robot", password="wrong")
    assert err.value.code == 535
    assert await service.runtime.store.count("message") == 0


async def test_submission_without_auth_is_refused(smtp):
    service, port = smtp
    with pytest.raises(aiosmtplib.SMTPResponseException) as err:
        await aiosmtplib.send(mail("a@example.com"), hostname="127.0.0.1", port=port)
    assert err.value.code == 530
    assert await service.runtime.store.count("message") == 0


async def test_submission_over_starttls_with_the_web_certificate(service, tmp_path):
    from bitmail.web.tls import make_self_signed, ssl_context

    cert, key = make_self_signed(tmp_path / "tls")
    port = free_port()
    server = await start_smtp(service.runtime, "127.0.0.1", port, ssl_context(cert, key))
    try:
        await service.api_key("robot")
        key_ = await service.runtime.accounts.create_api_key("robot")
        await aiosmtplib.send(mail("a@example.com"), hostname="localhost", port=port,
                              username="robot", password=key_, start_tls=True,
                              cert_bundle=str(cert))
    finally:
        server.close()
        await server.wait_closed()
    [doc] = await service.runtime.store.get("message", {"owner": "robot", "folder": "sent"})
    assert doc["to"] == ["a@example.com"]


async def data_answer(service, port: int) -> tuple[int, str]:
    """(code, text) of the answer to DATA for a well-formed message."""
    await service.api_key("robot")
    key = await service.runtime.accounts.create_api_key("robot")
    with pytest.raises(aiosmtplib.SMTPDataError) as err:
        await aiosmtplib.send(mail("a@example.com"), hostname="127.0.0.1", port=port,
                              username="robot", password=key)
    return err.value.code, err.value.message


async def test_a_message_that_fails_to_be_read_gets_554_without_python_internals(
        smtp, monkeypatch):
    # A parser failure no check foresaw: the message cannot be read, and
    # aiosmtpd's own answer was "500 Error: (AttributeError) ...".
    def fails(*args, **kwargs):
        raise AttributeError("'InvalidHeaderDefect' object has no attribute 'all_defects'")

    monkeypatch.setattr("bitmail.smtpd.submitted", fails)
    service, port = smtp
    code, text = await data_answer(service, port)
    assert (code, text) == (554, "5.6.0 the message could not be read")
    assert await service.runtime.store.count("message") == 0


async def test_a_fault_after_reading_gets_451_without_python_internals(smtp, monkeypatch):
    async def fails(*args, **kwargs):
        raise RuntimeError("internal state /secret")

    service, port = smtp
    monkeypatch.setattr(service.runtime.mailbox, "accept", fails)
    code, text = await data_answer(service, port)
    assert (code, text) == (451, "4.3.0 Local error in processing")
    assert await service.runtime.store.count("message") == 0
