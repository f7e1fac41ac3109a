"""SMTP submission keeps the message as it was written (issue 9, items 11-15).

A submission server may change only what RFC 6409 §8 allows: add Message-ID
and Date when missing, remove Bcc; BitMail also refuses a From that is not
the user's own address. What the local provider writes is compared with what
was submitted, byte for byte.
"""

from __future__ import annotations

import base64
from email import policy
from email.parser import BytesParser
from pathlib import Path

import aiosmtplib
import pytest

from bitmail.message import MAX_RECIPIENTS, read_content, submitted
from bitmail.smtpd import start_smtp
from bitmail.testing import FakeMailgun

from conftest import free_port, provider_toml, start_service, wait_for

CRLF = b"\r\n"


@pytest.fixture
async def submission(make_settings):
    """(service, smtp port, api key of robot@localhost), max_message_size 200 kB."""
    async with start_service(make_settings("max_message_size = 200000\n")) as service:
        port = free_port()
        server = await start_smtp(service.runtime, "127.0.0.1", port)
        await service.api_key("robot")
        key = await service.runtime.accounts.create_api_key("robot")
        try:
            yield service, port, key
        finally:
            server.close()
            await server.wait_closed()


async def submit(submission, raw: bytes, recipients: list[str],
                 sender: str = "robot@localhost") -> tuple[int, str]:
    _, port, key = submission
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await client.connect()
    try:
        await client.login("robot", key)
        await client.mail(sender)
        for r in recipients:
            await client.rcpt(r)
        answer = await client.data(raw)
        return answer.code, answer.message
    finally:
        client.close()


def message(*headers: str, body: bytes = b"Hello.\r\n") -> bytes:
    return CRLF.join(h.encode() for h in headers) + CRLF + CRLF + body


async def went_out(service) -> bytes:
    """The one message the local provider wrote, without its envelope lines."""
    outgoing = Path(service.runtime.settings.data_dir) / "outgoing"
    [eml] = await wait_for(lambda: list(outgoing.glob("*.eml")))
    raw = eml.read_bytes()
    return b"".join(line for line in raw.splitlines(keepends=True)
                    if not line.startswith(b"X-BitMail-Envelope-"))


def parsed(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


async def test_11_a_quoted_name_with_a_comma_in_to_is_accepted_and_kept(submission):
    raw = message('From: "Robot, The" <robot@localhost>', 'To: "Doe, John" <john@example.org>',
                  "Subject: hi", "Date: Mon, 30 Nov 2026 10:00:00 +0100",
                  "Message-ID: <one@client.example>")
    code, _ = await submit(submission, raw, ["john@example.org"])
    assert code == 250
    assert await went_out(submission[0]) == raw


async def test_12_every_header_goes_out_as_written_and_only_bcc_is_removed(submission):
    refs = "<" + "r" * 80 + "@lists.example.org> <second@lists.example.org>"
    raw = message(
        'From: "Robot, The" <robot@localhost>',
        "To: announce@lists.example.org",  # a list address; recipients only in RCPT
        "Cc: =?utf-8?q?J=C3=B6rg?= <joerg@example.de>",
        "Bcc: secret@example.net",
        "Reply-To: Help Desk <help@example.com>",
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        "Date: Mon, 30 Nov 2026 10:00:00 +0100",
        "Message-ID: <two@client.example>",
        "In-Reply-To: <" + "r" * 80 + "@lists.example.org>",
        "References: " + refs,
        "List-Unsubscribe: <https://lists.example.org/u?id=7>, <mailto:u@lists.example.org>",
        "X-Mailer: handmade 1.0",
    )
    rcpts = ["ann@example.com", "joerg@example.de", "secret@example.net"]
    code, _ = await submit(submission, raw, rcpts)
    assert code == 250
    out = await went_out(submission[0])
    assert out == raw.replace(b"Bcc: secret@example.net\r\n", b"")
    service = submission[0]
    [doc] = await service.runtime.store.get("message", {"owner": "robot", "folder": "sent"})
    assert doc["to"] == ["announce@lists.example.org"]
    assert doc["cc"] == ["Jörg <joerg@example.de>"]
    assert doc["bcc"] == ["ann@example.com", "secret@example.net"]  # in no header
    assert {r["address"] for r in doc["recipients"]} == set(rcpts)


async def test_12_missing_message_id_and_date_are_added_and_nothing_else(submission):
    raw = message("From: robot@localhost", "To: a@example.com", "Subject: bare")
    code, _ = await submit(submission, raw, ["a@example.com"])
    assert code == 250
    out = await went_out(submission[0])
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(raw.partition(b"\r\n\r\n")[0])
    mail = parsed(out)
    assert mail["Message-ID"].endswith("@localhost>") and mail["Date"].datetime is not None
    assert body == b"Hello.\r\n"


async def test_12_a_foreign_from_is_refused_and_nothing_is_stored(submission):
    raw = message("From: ceo@example.com", "To: a@example.com", "Subject: wire money")
    with pytest.raises(aiosmtplib.SMTPDataError) as err:
        await submit(submission, raw, ["a@example.com"])
    assert err.value.code == 550 and "robot@localhost" in err.value.message
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await submit(submission, message("From: robot@localhost"), ["a@example.com"],
                     sender="ceo@example.com")
    assert refused.value.code == 553
    assert await submission[0].runtime.store.count("message") == 0


async def test_13_inline_images_in_multipart_related_are_kept_byte_for_byte(submission):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n not really a png").decode()
    raw = (b"From: robot@localhost\r\nTo: a@example.com\r\nSubject: logo\r\n"
           b"Date: Mon, 30 Nov 2026 10:00:00 +0100\r\n"
           b"Message-ID: <rel@client.example>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/related; boundary="b1"\r\n\r\n'
           b"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b'<p><img src="cid:logo@client.example"></p>\r\n'
           b"--b1\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
           b"Content-ID: <logo@client.example>\r\nContent-Disposition: inline\r\n\r\n"
           + png.encode() + b"\r\n--b1--\r\n")
    code, _ = await submit(submission, raw, ["a@example.com"])
    assert code == 250
    out = await went_out(submission[0])
    assert out == raw
    [part] = read_content(out).parts
    assert part.inline and part.content_id == "logo@client.example"


@pytest.mark.parametrize("message_id", [
    "=?utf-8?q?<x=0D=0ABcc:_spy@evil.example>?=", "<a b@c>", "no-brackets@x"])
async def test_14_a_message_id_that_is_not_a_msg_id_is_refused(submission, message_id):
    raw = message("From: robot@localhost", "To: a@example.com", f"Message-ID: {message_id}")
    with pytest.raises(aiosmtplib.SMTPDataError) as err:
        await submit(submission, raw, ["a@example.com"])
    assert err.value.code == 554 and "Message-ID" in err.value.message
    assert await submission[0].runtime.store.count("message") == 0


async def test_14_an_rfc2231_filename_with_encoded_line_breaks_adds_no_header(submission):
    raw = (b"From: robot@localhost\r\nTo: a@example.com\r\nSubject: f\r\n"
           b"Date: Mon, 30 Nov 2026 10:00:00 +0100\r\n"
           b"Message-ID: <fn@client.example>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n"
           b"--b\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Disposition: attachment;\r\n"
           b" filename*=utf-8''evil%0D%0ABcc%3A%20spy%40evil.example%0D%0AX-Injected%3A%20yes\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n")
    code, _ = await submit(submission, raw, ["a@example.com"])
    assert code == 250
    service = submission[0]
    out = await went_out(service)
    assert out == raw
    mail = parsed(out)
    assert mail["Bcc"] is None and mail["X-Injected"] is None
    [doc] = await service.runtime.store.get("message", {"owner": "robot", "folder": "sent"})
    headers = await service.api_key("robot")
    resp = await service.client.get(f"/api/messages/{doc['id']}/attachments/0",
                                    headers=headers)
    assert resp.status == 200 and await resp.read() == b"\x00\x01\x02"
    disposition = resp.headers["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    assert disposition.startswith('attachment; filename="evilBcc: spy@evil.exampleX-Injected: yes"')


@pytest.mark.parametrize("line", [b"Subject: a\x0bBcc: spy@evil.example", b"X-A: \x1cb"])
async def test_14_a_raw_header_line_with_a_control_character_is_refused(submission, line):
    raw = b"From: robot@localhost\r\nTo: a@example.com\r\n" + line + b"\r\n\r\nhi\r\n"
    with pytest.raises(aiosmtplib.SMTPDataError) as err:
        await submit(submission, raw, ["a@example.com"])
    assert err.value.code == 554


async def test_15_recipients_past_the_cap_get_452_and_the_message_goes_to_the_rest(submission):
    service, port, key = submission
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await client.connect()
    await client.login("robot", key)
    await client.mail("robot@localhost")
    for i in range(MAX_RECIPIENTS):
        await client.rcpt(f"r{i}@example.com")
    with pytest.raises(aiosmtplib.SMTPRecipientRefused) as err:
        await client.rcpt("one-too-many@example.com")
    assert err.value.code == 452 and "4.5.3" in err.value.message
    answer = await client.data(message("From: robot@localhost", "To: list@example.com"))
    client.close()
    assert answer.code == 250
    [doc] = await service.runtime.store.get("message", {"owner": "robot", "folder": "sent"})
    assert len(doc["recipients"]) == MAX_RECIPIENTS


async def test_15_an_oversize_message_gets_552(submission):
    raw = message("From: robot@localhost", "To: a@example.com", body=b"x" * 76 + b"\r\n")
    raw += (b"y" * 998 + b"\r\n") * 250  # 250 kB, over the 200 kB limit
    with pytest.raises(aiosmtplib.SMTPResponseException) as err:
        await submit(submission, raw, ["a@example.com"])
    assert err.value.code == 552
    assert await submission[0].runtime.store.count("message") == 0


async def test_a_message_id_another_message_has_is_replaced(submission):
    service = submission[0]
    raw = message("From: robot@localhost", "To: a@example.com", "Subject: first",
                  "Message-ID: <same@client.example>")
    assert (await submit(submission, raw, ["a@example.com"]))[0] == 250
    assert (await submit(submission, raw.replace(b"first", b"again"), ["a@example.com"]))[0] \
        == 250
    docs = await service.runtime.store.get("message", {"owner": "robot", "folder": "sent"})
    ids = sorted(d["message_id"] for d in docs)
    assert "<same@client.example>" in ids and len(set(ids)) == 2


async def test_a_utf8_recipient_is_accepted_with_smtputf8(submission):
    raw = "From: robot@localhost\r\nTo: üser@example.com\r\nSubject: ✓\r\n\r\nhi\r\n".encode()
    service, port, key = submission
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await client.connect()
    await client.login("robot", key)
    await client.mail("robot@localhost", options=["SMTPUTF8"])
    await client.rcpt("üser@example.com", encoding="utf-8")
    answer = await client.data(raw)
    client.close()
    assert answer.code == 250
    out = await went_out(service)
    assert out.startswith(raw.partition(b"\r\n\r\n")[0])


@pytest.fixture
async def ascii_only(make_settings):
    """Like `submission`, with only Mailgun, which carries no SMTPUTF8."""
    async with FakeMailgun(api_key="k", domain="mg.example.com") as fake, start_service(
            make_settings(provider_toml("mg", "mailgun", api_key="k", domain="mg.example.com",
                                        base_url=fake.url))) as service:
        port = free_port()
        server = await start_smtp(service.runtime, "127.0.0.1", port)
        await service.api_key("robot")
        key = await service.runtime.accounts.create_api_key("robot")
        try:
            yield service, port, key
        finally:
            server.close()
            await server.wait_closed()


async def test_utf8_headers_no_provider_carries_are_refused_at_data(ascii_only):
    # Accepted, it could never be sent (RFC 6531 X.6.9, after DATA).
    raw = "From: robot@localhost\r\nTo: bob@example.com\r\nSubject: Grüße\r\n\r\nhi\r\n"
    code, text = await refused(ascii_only, raw.encode(), ["bob@example.com"])
    assert (code, text.split()[0]) == (554, "5.6.9") and "SMTPUTF8" in text


async def test_a_utf8_recipient_no_provider_carries_is_refused_at_rcpt(ascii_only):
    _, port, key = ascii_only
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await client.connect()
    try:
        await client.login("robot", key)
        await client.mail("robot@localhost", options=["SMTPUTF8"])
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as err:
            await client.rcpt("üser@example.com", encoding="utf-8")
        await client.rcpt("bob@example.com")  # the transaction goes on for the others
    finally:
        client.close()
    assert (err.value.code, err.value.message.split()[0]) == (553, "5.6.7")


# -- the fields checked are the fields that go out ---------------------------------


async def refused(submission, raw: bytes, recipients: list[str]) -> tuple[int, str]:
    """(code, text) of the answer to DATA, which must be a refusal; nothing is stored."""
    with pytest.raises(aiosmtplib.SMTPDataError) as err:
        await submit(submission, raw, recipients)
    assert await submission[0].runtime.store.count("message") == 0
    return err.value.code, err.value.message


async def refused_as_not_the_users(submission, forged: str) -> None:
    """A message whose sender fields are `forged`: 550 5.7.1 naming the last
    field, and nothing stored."""
    raw = message(forged, "To: john@example.org", "Subject: wire the money")
    code, text = await refused(submission, raw, ["john@example.org"])
    field = forged.rpartition("\r\n")[2].split(":")[0]
    assert code == 550 and text.startswith("5.7.1 ") and f"{field} " in text, text


async def goes_out_as_written(submission, sender: str, to: str) -> dict:
    """Submit a message from `sender` (fields) to `to`: 250, and the bytes
    sent are the bytes written. Returns its Sent copy."""
    raw = message(sender, to, "Subject: hi", "Date: Mon, 30 Nov 2026 10:00:00 +0100",
                  "Message-ID: <as-written@client.example>")
    code, text = await submit(submission, raw, ["a@example.com"])
    assert code == 250 and text.startswith("2.0.0 queued as "), text
    service = submission[0]
    assert await went_out(service) == raw
    [doc] = await service.runtime.store.get("message", {"owner": "robot", "folder": "sent"})
    return doc


@pytest.mark.parametrize("forged", [
    # RFC 5322 §4.5.3 obs-from: `"From" *WSP ":"` is a From field to many
    # readers. Python's parser drops `From :` as a misplaced mbox "From "
    # line, and takes `From\t:` for the start of the body: the check saw no
    # From, and BitMail added its own below the forged one.
    "From : Bank <ceo@bank.example>",
    "From\t: ceo@bank.example",
    "From \t : ceo@bank.example",
    "FROM : ceo@bank.example",
    "Sender : ceo@bank.example",
    "Resent-From\t: ceo@bank.example",
])
async def test_a_sender_field_with_white_space_before_the_colon_is_refused(submission, forged):
    raw = message(forged, "To: john@example.org", "Subject: wire the money")
    code, text = await refused(submission, raw, ["john@example.org"])
    name = forged.split(":")[0].strip()
    assert code == 550 and f"field name {name} " in text, text


@pytest.mark.parametrize("line", [
    "Message-ID : <other-users-id@localhost>",
    "Date\t: Mon, 30 Nov 2026 10:00:00 +0100",
    "Bcc : secret@example.net",
    "To : john@example.org",
    "Subject : hi",
])
async def test_any_field_with_white_space_before_the_colon_is_refused_naming_it(submission,
                                                                               line):
    raw = message("From: robot@localhost", line, "Cc: ann@example.com")
    code, text = await refused(submission, raw, ["ann@example.com"])
    name = line.split(":")[0].strip()
    assert code == 554 and f"field name {name} " in text and f"({name})" in text, text


@pytest.mark.parametrize("name,values", [
    ("Message-ID", ["<one@client.example>", "<someone-elses@localhost>"]),
    ("Date", ["Mon, 30 Nov 2026 10:00:00 +0100", "Tue, 01 Dec 2026 10:00:00 +0100"]),
    ("From", ["robot@localhost", "robot@localhost"]),
    ("Sender", ["robot@localhost", "robot@localhost"]),
])
async def test_a_field_checked_or_added_given_twice_is_refused(submission, name, values):
    raw = message("From: robot@localhost", "To: a@example.com",
                  *(f"{name}: {v}" for v in values if name != "From"),
                  *([f"{name}: {values[1]}"] if name == "From" else []))
    code, text = await refused(submission, raw, ["a@example.com"])
    assert code == 554 and f"{name} is given 2 times" in text and f"({name})" in text, text


@pytest.mark.parametrize("forged", [
    # Python's parser reads robot@localhost and drops the rest with a
    # defect; email.utils.getaddresses and many readers see ceo@bank.example.
    "From: robot@localhost <ceo@bank.example>",
    "From: robot@localhost<ceo@bank.example>",
    "From: robot@localhost\t<ceo@bank.example>",
    "From: <robot@localhost> <ceo@bank.example>",
    "From: Robot <robot@localhost> ceo@bank.example",
    "From: robot@localhost;ceo@bank.example",
    "From: robot@localhost, <",  # the parser raises: unreadable
    "Sender: robot@localhost <ceo@bank.example>",
    "Resent-From: <robot@localhost> <ceo@bank.example>",
])
async def test_a_sender_field_with_a_mailbox_the_parser_drops_is_refused(submission, forged):
    raw = message(forged, "To: john@example.org", "Subject: wire the money",
                  "Message-ID: <junk-from@client.example>")
    code, text = await refused(submission, raw, ["john@example.org"])
    assert code == 550 and forged.split(":")[0] in text, text


@pytest.mark.parametrize("forged", [
    "Sender: ceo@bank.example",
    "Resent-Sender: Bank <ceo@bank.example>",
    "Resent-From: robot@localhost, ceo@bank.example",
])
async def test_a_foreign_sender_or_resent_sender_is_refused(submission, forged):
    raw = message("From: robot@localhost", forged, "To: john@example.org")
    code, text = await refused(submission, raw, ["john@example.org"])
    assert code == 550 and "robot@localhost" in text, text


@pytest.mark.parametrize("forged", [
    # A From with no mailbox was a From "not there": BitMail added its own
    # beside it, and a reader showed the group name or the comment.
    "From: \"ceo@bank.example\":;",
    "From: (ceo@bank.example)",
    "From: Bank: robot@localhost;",
    "Sender: Bank: robot@localhost;",
])
async def test_a_sender_field_without_mailboxes_is_refused(submission, forged):
    raw = message(forged, "To: john@example.org", "Subject: hi")
    code, text = await refused(submission, raw, ["john@example.org"])
    assert code == 550 and forged.split(":")[0] in text, text


@pytest.mark.parametrize("sender", [
    "From: John Q. Public <robot@localhost>",  # obsolete syntax (RFC 5322 §4.1), read alike
    "From: robot@localhost (Robot)",
    "From: =?utf-8?q?Zo=C3=AB?= <ROBOT@localhost>",
    'From: "robot"@localhost',
    "From: Zoë Müller <robot@localhost>",  # UTF-8 (RFC 6532), kept undecoded by the parser
    "From: Robot <robot@localhost>\r\nSender: robot@localhost",
    # A long non-ASCII name, split into encoded-words as Outlook, Thunderbird
    # and Python's own generator write it (folded, and on one line).
    "From: =?utf-8?q?=C3=85ngstr=C3=B6m_J=C3=A9r=C3=B4me-Maximilien_de_la_Fontain?=\r\n"
    " =?utf-8?b?ZS1Cw6lyZW5nw6hyZSDDlmxhZnNkw7N0dGly?= <robot@localhost>",
    "From: =?UTF-8?B?QW5kcsOp?= =?UTF-8?B?IER1cG9udA==?= <robot@localhost>",
    "From: Robot <robot@localhost>\r\n"
    "Sender: =?utf-8?q?Zo=C3=AB?= =?utf-8?q?_M?= <robot@localhost>",
    # An encoded-word inside a quoted name (old Outlook, PHP mailers).
    'From: "=?utf-8?B?QW5kcsOp?=" <robot@localhost>',
])
async def test_a_sender_field_of_the_users_own_mailbox_goes_out_as_written(submission, sender):
    raw = message(sender, "To: a@example.com", "Subject: hi",
                  "Date: Mon, 30 Nov 2026 10:00:00 +0100", "Message-ID: <own@client.example>")
    code, _ = await submit(submission, raw, ["a@example.com"])
    assert code == 250
    assert await went_out(submission[0]) == raw


@pytest.mark.parametrize("line", [
    # Python 3.11's header parser raises on each (AttributeError on an
    # unterminated domain-literal or `.:`, IndexError on `<`, TypeError on
    # a folded ` .,`); aiosmtpd answered "500 Error: (AttributeError) ...".
    "To: john@[example.org",
    "To: ann@example.com, john@[example.org",
    "Cc: <",
    "Reply-To: .:",
    "To:\r\n .,",
    "Message-ID: <b@[ab",
])
async def test_a_field_the_parser_cannot_read_gets_554_naming_it(submission, line):
    raw = message("From: robot@localhost", line, "Subject: hi")
    code, text = await refused(submission, raw, ["john@example.org"])
    name = line.split(":")[0]
    assert code == 554 and text.startswith("5.6.0") and f"({name})" in text, text
    assert "Error" not in text


# -- an empty From is a missing From ------------------------------------------------


@pytest.mark.parametrize("empty", [
    "From:", "From: ", "From:   \t", "FROM:", "From:\r\n ", "From: \r\n\t\r\n  "])
async def test_an_empty_from_is_a_missing_one_and_becomes_the_users_address(submission, empty):
    # RFC 5322 §3.6 requires a From; BitMail has always added the user's
    # address to a message without one (RFC 6409 §8), and an empty one (only
    # white space, folded or not) names nobody either. It goes, and the
    # user's address is added where a missing From's would be.
    kept = ("To: a@example.com", "Subject: hi", "Date: Mon, 30 Nov 2026 10:00:00 +0100",
            "Message-ID: <empty-from@client.example>")
    code, text = await submit(submission, message("To: a@example.com", empty, *kept[1:]),
                              ["a@example.com"])
    assert code == 250 and text.startswith("2.0.0 queued as "), text
    service = submission[0]
    out = await went_out(service)
    assert out == message(*kept, "From: robot@localhost")
    [doc] = await service.runtime.store.get("message", {"owner": "robot", "folder": "sent"})
    assert doc["from_address"] == "robot@localhost"


def test_an_empty_from_goes_out_as_a_message_without_one_does():
    headers = ("To: a@example.com", "Subject: hi", "Date: Mon, 30 Nov 2026 10:00:00 +0100",
               "Message-ID: <same@client.example>")
    given = dict(user_address="robot@localhost", recipients=["a@example.com"],
                 domain="localhost")
    missing = submitted(message(*headers), **given)
    for empty in ("From:", "From:\r\n\t"):
        assert submitted(message(empty, *headers), **given) == missing
        assert submitted(message(*headers[:2], empty, *headers[2:]), **given) == missing


@pytest.mark.parametrize("forged", [
    # The empty From is dropped; the fields left are checked as always.
    "From:\r\nSender: ceo@bank.example",
    "From: \r\nFrom: ceo@bank.example",
    "From:\r\nResent-From: Bank <ceo@bank.example>",
])
async def test_a_foreign_sender_beside_an_empty_from_is_refused(submission, forged):
    raw = message(forged, "To: john@example.org", "Subject: wire the money")
    code, text = await refused(submission, raw, ["john@example.org"])
    assert code == 550 and text.startswith("5.7.1 ") and "robot@localhost" in text, text


# -- a name's encoded-words are the name's business, never an address's ------------


@pytest.mark.parametrize("sender", [
    # A charset Python does not know: RFC 2047 §6.2 lets a reader show the
    # word as written. The name is the sender's business; the address is
    # what is checked.
    "From: =?x-unknown?Q?Bob?= <robot@localhost>",
    "From: =?x-unknown?Q?B=F6b?= <ROBOT@localhost>",
    "From: =?x-unknown?Q?Bob?=\r\n =?x-unknown?B?IFNtaXRo?= <robot@localhost>",
    'From: "=?x-unknown?Q?Bob?=" <robot@localhost>',
    "From: =??Q?Bob?= <robot@localhost>",  # no charset at all
    "From: Robot <robot@localhost>\r\nSender: =?x-unknown?Q?Bob?= <robot@localhost>",
    'From: Robot <robot@localhost>\r\nSender: "=?x-unknown?B?Qm9i?=" <robot@localhost>',
    "From: Robot <robot@localhost>\r\nResent-From: =?x-unknown?Q?Bob?= <robot@localhost>",
    # An encoded-word that is not well formed (RFC 2047 §6.3: a reader need
    # not show it, and must still show the message).
    "From: =?utf-8?B?Qm9?= <robot@localhost>",
])
async def test_a_name_in_a_charset_python_does_not_know_goes_out_as_written(submission,
                                                                             sender):
    doc = await goes_out_as_written(submission, sender, "To: =?x-unknown?Q?Ann?= <a@example.com>")
    assert doc["from_address"].lower() == "robot@localhost" and doc["bcc"] == []


@pytest.mark.parametrize("forged", [
    # Whatever the name's charset, the address is checked as strictly.
    "From: =?x-unknown?Q?Bob?= <ceo@bank.example>",
    'From: "=?x-unknown?Q?Bob?=" <ceo@bank.example>',
    "From: =?x-unknown?Q?robot@localhost?= <ceo@bank.example>",
    "From: =?x-unknown?Q?Bob?= <robot@localhost>, =?x-unknown?Q?Eve?= <ceo@bank.example>",
    "From: =?x-unknown?Q?Bob?= <robot@localhost> <ceo@bank.example>",
    "From: Robot <robot@localhost>\r\nSender: =?x-unknown?Q?Bob?= <ceo@bank.example>",
    'From: Robot <robot@localhost>\r\nSender: "=?x-unknown?Q?Bob?=" <ceo@bank.example>',
    # An encoded-word in an address (RFC 2047 §5 allows none there): the
    # stdlib decodes it, and would check robot@localhost, while the address
    # written, and read by most readers, is another.
    "From: =?x-unknown?Q?robot?=@localhost",
    "From: =?utf-8?q?robot?=@localhost",
    "From: =?utf-8?q?robot?= @localhost",
    'From: "=?utf-8?q?robot?="@localhost',
    "From: Robot <=?utf-8?q?robot?=@localhost>",
    "From: robot@=?utf-8?q?localhost?=",
    "From: Robot <robot@localhost>\r\nSender: =?utf-8?q?robot?= @localhost",
])
async def test_a_foreign_address_is_refused_whatever_the_names_charset(submission, forged):
    await refused_as_not_the_users(submission, forged)


# -- an obsolete route names relays; the mailbox is after its colon -----------------


@pytest.mark.parametrize("sender", [
    # obs-route (RFC 5322 §4.4), which a reader must accept (§4): each
    # '@domain' names a relay, not a mailbox.
    "From: Bob <@relay.example:robot@localhost>",
    "From: <@a.example,@b.example:robot@localhost>",
    "From: Bob <@a.example, (first) @b.example : ROBOT@localhost>",
    "From: Bob <@a.example,\r\n @b.example:robot@localhost>",
    "From: Bob <@[192.0.2.1]:robot@localhost>",
    "From: Robot <robot@localhost>\r\nSender: <@relay.example:robot@localhost>",
])
async def test_a_sender_with_an_obsolete_route_to_the_users_mailbox_goes_out_as_written(
        submission, sender):
    doc = await goes_out_as_written(submission, sender, "To: a@example.com")
    assert doc["from_address"].lower() == "robot@localhost"


@pytest.mark.parametrize("forged", [
    "From: Bob <@relay.example:ceo@bank.example>",
    "From: <@a.example,@b.example:ceo@bank.example>",
    "From: <@localhost:ceo@bank.example>",
    "From: <@a.example:robot@localhost>, <@b.example:ceo@bank.example>",
    "From: <@a.example:robot@localhost> <@b.example:ceo@bank.example>",
    # Not a route: an addr-spec stands where a relay's domain would.
    "From: <@ceo@bank.example:robot@localhost>",
    "From: <@a.example, ceo@bank.example:robot@localhost>",
    "From: Robot <robot@localhost>\r\nSender: <@relay.example:ceo@bank.example>",
])
async def test_a_foreign_mailbox_behind_an_obsolete_route_is_refused(submission, forged):
    await refused_as_not_the_users(submission, forged)


async def test_recipients_with_an_obsolete_route_are_read_as_their_mailboxes(submission):
    raw = message("From: robot@localhost", "To: Ann <@relay.example:ann@example.com>",
                  "Cc: <@a.example,@b.example:bob@example.com>", "Subject: hi",
                  "Date: Mon, 30 Nov 2026 10:00:00 +0100", "Message-ID: <rcpt@client.example>")
    service, port, key = submission
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await client.connect()
    try:
        await client.login("robot", key)
        await client.mail("robot@localhost")
        # A route in RCPT TO too (RFC 5321 §4.1.1.3: ignored, the mailbox kept).
        answer = await client.execute_command(b"RCPT", b"TO:<@relay.example:ann@example.com>")
        assert answer.code == 250, answer
        for r in ("bob@example.com", "hidden@example.com"):
            await client.rcpt(r)
        answer = await client.data(raw)
    finally:
        client.close()
    assert answer.code == 250 and answer.message.startswith("2.0.0 "), answer
    assert await went_out(service) == raw
    [doc] = await service.runtime.store.get("message", {"owner": "robot", "folder": "sent"})
    assert doc["to"] == ["Ann <ann@example.com>"] and doc["cc"] == ["bob@example.com"]
    assert doc["bcc"] == ["hidden@example.com"]  # the routed To and Cc are not Bcc
    assert {r["address"] for r in doc["recipients"]} == {
        "ann@example.com", "bob@example.com", "hidden@example.com"}
