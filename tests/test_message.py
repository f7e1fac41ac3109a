"""The message model: address lists, validation, and one stable MIME form."""

from __future__ import annotations

import base64
from email import policy
from email.parser import BytesParser

import pytest

from bitmail.errors import TooLarge, ValidationError
from bitmail.message import parse_addresses, parse_message


def test_semicolon_and_comma_lists_and_json_lists_are_the_same():
    want = ("a@x.com", "b@y.org", "c@z.io")
    assert parse_addresses("a@x.com; b@y.org, c@z.io", "to") == want
    assert parse_addresses(["a@x.com", "b@y.org; c@z.io"], "to") == want
    assert parse_addresses("Ann <a@x.com>;", "to") == ("a@x.com",)


@pytest.mark.parametrize("bad", ["a", "a@", "@x.com", "a@@x.com", "a b@x.com", "a@x..com",
                                 "a@-x.com"])
def test_bad_addresses_are_refused_with_the_field(bad):
    with pytest.raises(ValidationError) as err:
        parse_addresses(f"ok@x.com; {bad}", "cc")
    assert err.value.field == "cc"


def test_recipients_are_every_envelope_address_once():
    msg = parse_message({"to": "a@x.com; b@x.com", "cc": "b@x.com", "bcc": "c@x.com"},
                        sender="me@localhost", domain="localhost")
    assert msg.recipients == ("a@x.com", "b@x.com", "c@x.com")


def test_mime_carries_the_message_id_and_hides_bcc():
    msg = parse_message({
        "to": "a@x.com", "cc": "b@x.com", "bcc": "c@x.com", "subject": "Grüße ✓",
        "text": "plain", "html": "<p>rich</p>",
        "attachments": [{"filename": "r.pdf", "content_type": "application/pdf",
                         "content": base64.b64encode(b"%PDF-1").decode()}],
    }, sender="me@localhost", domain="localhost")
    first = msg.to_mime()
    again = BytesParser(policy=policy.default).parsebytes(msg.to_mime())
    assert again["Message-ID"] == msg.message_id
    parsed = BytesParser(policy=policy.default).parsebytes(first)
    assert parsed["Message-ID"] == msg.message_id and msg.message_id.endswith("@localhost>")
    assert parsed["Subject"] == "Grüße ✓"
    assert parsed["Bcc"] is None and b"c@x.com" not in first
    [att] = list(parsed.iter_attachments())
    assert att.get_filename() == "r.pdf" and att.get_payload(decode=True) == b"%PDF-1"


def test_size_limit_is_too_large():
    with pytest.raises(TooLarge):
        parse_message({"to": "a@x.com", "text": "x" * 101}, sender="m@l", domain="l",
                      max_size=100)


def test_reserved_headers_cannot_be_set():
    with pytest.raises(ValidationError) as err:
        parse_message({"to": "a@x.com", "headers": {"Bcc": "spy@x.com"}}, sender="m@l",
                      domain="l")
    assert err.value.field == "headers.Bcc"
