"""The message model: mail goes out exactly as it was written (issue 9).

Each numbered input of the issue is a test here (the SMTP ones are in
test_submission.py); property tests build messages from hypothesis strategies.
"""

from __future__ import annotations

import base64
import re
import string
from email import policy
from email.headerregistry import Address, Group
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitmail.errors import TooLarge, ValidationError
from bitmail.message import (
    envelope,
    flatten,
    parse_address_list,
    parse_message,
    read_content,
    read_summary,
    safe_filename,
)
from bitmail.message.reading import parse

DOMAIN = "localhost"


def build(**fields) -> bytes:
    fields.setdefault("to", "a@example.com")
    return parse_message(fields, sender=f"me@{DOMAIN}", domain=DOMAIN).mime


def parsed(mime: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(mime)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def shown(value, field="to") -> list[str]:
    return [str(a) for a in flatten(parse_address_list(value, field, own_domain=DOMAIN))]


# -- 1: display names with commas and semicolons are kept --------------------

@pytest.mark.parametrize("value", [
    '"Doe, John" <john@example.org>',
    ['"Doe, John" <john@example.org>'],
    [{"name": "Doe, John", "address": "john@example.org"}],
])
def test_1_a_quoted_name_with_a_comma_is_one_address_and_goes_out_with_its_name(value):
    mail = parsed(build(to=value))
    assert mail["To"] == '"Doe, John" <john@example.org>'
    [address] = mail["To"].addresses
    assert (address.display_name, address.addr_spec) == ("Doe, John", "john@example.org")


def test_1_a_semicolon_inside_quotes_does_not_separate():
    assert shown('"Smith; Jane" <jane@example.com>; b@y.org') == [
        '"Smith; Jane" <jane@example.com>', "b@y.org"]
    assert shown(['"Smith; Jane" <jane@example.com>', "b@y.org"]) == [
        '"Smith; Jane" <jane@example.com>', "b@y.org"]


def test_1_an_unquoted_name_is_kept():
    mail = parsed(build(to="Jane Roe <jane@example.org>"))
    assert mail["To"] == "Jane Roe <jane@example.org>"


def test_the_seed_list_forms_still_work():
    want = ["a@x.com", "b@y.org", "c@z.io"]
    assert shown("a@x.com; b@y.org, c@z.io") == want
    assert shown(["a@x.com", "b@y.org; c@z.io"]) == want
    assert shown("Ann <a@x.com>;") == ["Ann <a@x.com>"]


def test_groups_are_kept_in_the_header_and_their_members_receive():
    message = parse_message({"to": "Friends: a@x.com, \"B, b\" <b@y.org>;, c@z.io"},
                            sender="me@localhost", domain=DOMAIN)
    mail = parsed(message.mime)
    assert [g.display_name for g in mail["To"].groups] == ["Friends", None]
    assert message.recipients == ("a@x.com", "b@y.org", "c@z.io")


@pytest.mark.parametrize("bad", ["a", "a@", "@x.com", "a@@x.com", "a b@x.com", "a@x..com",
                                 "a@-x.com", "<a@x.com", "Name <a@x.com> trailing",
                                 "a@x.com b@y.com"])
def test_bad_addresses_are_refused_with_the_field(bad):
    with pytest.raises(ValidationError) as err:
        parse_address_list(f"ok@x.com; {bad}", "cc")
    assert err.value.field == "cc"


# -- 2: a non-ASCII name in Reply-To stays a name ---------------------------

@pytest.mark.parametrize("payload", [
    {"headers": {"Reply-To": "Jöhn Doe <john@example.com>"}},
    {"reply_to": "Jöhn Doe <john@example.com>"},
])
def test_2_reply_to_with_a_non_ascii_name_parses_back_to_name_and_address(payload):
    mime = build(**payload)
    assert b"<john@example.com>" in mime  # the address itself is never encoded
    [address] = parsed(mime)["Reply-To"].addresses
    assert (address.display_name, address.addr_spec) == ("Jöhn Doe", "john@example.com")


# -- 3: msg-ids are never encoded -------------------------------------------

LONG_ID = "<" + "x" * 80 + "@host.example>"


def test_3_long_msg_ids_are_never_encoded_and_fold_only_between_ids():
    refs = f"{LONG_ID} <b@c.example> {LONG_ID.replace('x', 'y')}"
    mime = build(headers={"In-Reply-To": LONG_ID, "References": refs})
    head = mime.split(b"\r\n\r\n")[0].decode()
    assert "=?" not in head
    assert f"In-Reply-To: {LONG_ID}\r\n" in head
    mail = parsed(mime)
    assert str(mail["References"]).split() == refs.split()
    assert str(mail["In-Reply-To"]) == LONG_ID


def test_3_a_msg_id_header_that_is_not_msg_ids_is_refused():
    with pytest.raises(ValidationError) as err:
        build(headers={"References": "not an id"})
    assert err.value.field == "headers.References"


# -- 4: HTML-only mail has no empty text part --------------------------------

def test_4_html_only_mail_is_one_text_html_part():
    mail = parsed(build(html="<p>Only <b>HTML</b></p>"))
    assert mail.get_content_type() == "text/html"
    assert not mail.is_multipart()
    assert read_summary(mail.as_bytes())["preview"] == "Only HTML"


def test_text_and_html_are_alternatives_and_neither_is_empty():
    mail = parsed(build(text="plain", html="<p>rich</p>"))
    assert mail.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    content = read_content(mail.as_bytes())
    assert (content.text, content.html) == ("plain\n", "<p>rich</p>\n")


# -- 5: an attached message is 7bit or 8bit, readable as a message -----------

INNER = (b"From: Ann <ann@example.org>\r\nTo: me@localhost\r\nSubject: the original\r\n"
         b"Message-ID: <inner@example.org>\r\n\r\nFirst line\r\nSecond line\r\n")


def test_5_a_message_rfc822_attachment_is_not_base64_and_reads_as_a_message():
    mime = build(text="see below", attachments=[
        {"filename": "original.eml", "content_type": "message/rfc822", "content": b64(INNER)}])
    mail = parsed(mime)
    [part] = mail.iter_attachments()
    assert part.get_content_type() == "message/rfc822"
    assert part["Content-Transfer-Encoding"] in ("7bit", "8bit")
    assert INNER in mime  # byte for byte
    inner = part.get_content()
    assert inner["Subject"] == "the original" and inner["Message-ID"] == "<inner@example.org>"


def test_an_attached_message_must_be_a_message():
    with pytest.raises(ValidationError) as err:
        build(attachments=[{"filename": "x.eml", "content_type": "message/rfc822",
                            "content": b64(b"\x00\x01 not mail")}])
    assert err.value.field == "attachments[0].content"


# -- 6: IDN domains and UTF-8 local parts -----------------------------------

def test_6_an_idn_domain_is_accepted_and_goes_out_as_its_a_label():
    message = parse_message({"to": "user@bücher.example"}, sender="me@localhost",
                            domain=DOMAIN)
    assert message.recipients == ("user@xn--bcher-kva.example",)
    assert parsed(message.mime)["To"].addresses[0].domain == "xn--bcher-kva.example"
    assert message.mime.isascii() and not message.smtputf8


def test_6_a_utf8_local_part_needs_smtputf8():
    message = parse_message({"to": "üser@example.com"}, sender="me@localhost", domain=DOMAIN)
    assert message.smtputf8 and message.recipients == ("üser@example.com",)
    assert "üser@example.com".encode() in message.mime  # UTF-8 headers (RFC 6532)
    with pytest.raises(ValidationError) as err:
        parse_message({"to": "a@x.com", "cc": "üser@example.com"}, sender="me@localhost",
                      domain=DOMAIN, smtputf8=False)
    assert err.value.field == "cc" and "SMTPUTF8" in err.value.message


# -- 7: an ASCII body stays readable -----------------------------------------

@pytest.mark.parametrize("text", ["Hello", "Hello\nworld\n", "x" * 200 + "\nshort"])
def test_7_an_ascii_body_is_7bit_or_quoted_printable_never_base64(text):
    mime = build(text=text)
    assert parsed(mime)["Content-Transfer-Encoding"] in ("7bit", "quoted-printable")
    assert read_content(mime).text.rstrip("\n") == text.rstrip("\n")


@pytest.mark.parametrize("separator", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e"])
def test_a_long_line_is_long_whatever_separators_sit_inside_it(separator):
    # SMTP counts octets between CRLFs (RFC 5322 §2.1.1): a form feed does not end a line.
    text = "a" * 60 + separator + "b" * 60
    mime = build(text=text)
    assert parsed(mime)["Content-Transfer-Encoding"] == "quoted-printable"
    assert max(map(len, mime.split(b"\r\n"))) <= 78
    assert read_content(mime).text == text + "\n"


def test_a_latin_body_is_quoted_printable_and_reads_back():
    mime = build(text="Grüße aus Zürich")
    assert parsed(mime)["Content-Transfer-Encoding"] == "quoted-printable"
    assert read_content(mime).text == "Grüße aus Zürich\n"


# -- 8: text that looks like an encoded-word reads back as typed -------------

@pytest.mark.parametrize("subject", ["=?utf-8?q?hi?= there", "Re: =?ISO-8859-1?B?SGk=?= ✓",
                                     "plain subject"])
def test_8_an_encoded_word_look_alike_reads_back_exactly_as_typed(subject):
    mime = build(subject=subject, headers={"X-Note": subject})
    mail = parsed(mime)
    assert str(mail["Subject"]) == subject
    assert str(mail["X-Note"]) == subject


# -- 9: content-type parameters are kept -------------------------------------

def test_9_attachment_content_type_parameters_are_kept():
    data = "a;b\nä;ö\n".encode("iso-8859-1")
    mail = parsed(build(attachments=[{"filename": "t.csv", "content": b64(data),
                                      "content_type": "text/csv; charset=iso-8859-1"}]))
    [part] = mail.iter_attachments()
    assert part.get_content_type() == "text/csv"
    assert part.get_param("charset") == "iso-8859-1"
    assert part.get_payload(decode=True) == data


@pytest.mark.parametrize("bad", ["csv", "text/", "multipart/mixed", "text/csv; =x"])
def test_a_bad_content_type_names_the_field(bad):
    with pytest.raises(ValidationError) as err:
        build(attachments=[{"filename": "t", "content_type": bad, "content": ""}])
    assert err.value.field == "attachments[0].content_type"


# -- 10: the size limit counts the message as it goes out --------------------

def test_10_the_limit_counts_encoded_bytes_not_decoded_ones():
    data = b"\x00" * 3000  # 4,000 bytes once base64-encoded
    with pytest.raises(TooLarge):
        parse_message({"to": "a@x.com", "attachments": [
            {"filename": "z", "content": b64(data)}]}, sender="me@localhost",
            domain=DOMAIN, max_size=3500)


def test_10_many_custom_headers_count_against_the_limit():
    headers = {f"X-H{i}": "v" * 900 for i in range(100)}
    with pytest.raises(TooLarge):
        parse_message({"to": "a@x.com", "headers": headers}, sender="me@localhost",
                      domain=DOMAIN, max_size=50_000)
    with pytest.raises(ValidationError) as err:
        parse_message({"to": "a@x.com", "headers": {f"X-H{i}": "v" for i in range(101)}},
                      sender="me@localhost", domain=DOMAIN)
    assert err.value.field == "headers"


def test_a_message_within_the_limit_is_accepted_whole():
    message = parse_message({"to": "a@x.com", "text": "x" * 1000}, sender="me@localhost",
                            domain=DOMAIN, max_size=2000)
    assert message.size == len(message.mime) <= 2000


# -- 16: no header line can be added through any field -----------------------

SEPARATORS = ["\r", "\n", "\x00", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85",
              "\u2028", "\u2029", "\x7f", "\x01"]


@pytest.mark.parametrize("sep", SEPARATORS)
@pytest.mark.parametrize("field", ["subject", "to-name", "header", "filename", "reply_to"])
def test_16_every_line_breaking_or_control_character_is_refused_naming_the_field(sep, field):
    evil = f"x{sep}Bcc: spy@evil.example"
    payload, want = {"to": "a@example.com"}, field
    if field == "subject":
        payload["subject"] = evil
    elif field == "to-name":
        payload["to"] = [{"name": evil, "address": "a@example.com"}]
        want = "to[0].name"
    elif field == "header":
        payload["headers"] = {"X-Tag": evil}
        want = "headers.X-Tag"
    elif field == "filename":
        payload["attachments"] = [{"filename": evil, "content": ""}]
        want = "attachments[0].filename"
    else:
        payload["reply_to"] = f"Name{sep} <a@example.com>"
    with pytest.raises(ValidationError) as err:
        parse_message(payload, sender="me@localhost", domain=DOMAIN)
    assert err.value.field == want


def test_16_tab_is_allowed_in_a_header():
    assert str(parsed(build(subject="a\tb"))["Subject"]) == "a\tb"


def folded(text: str) -> str:
    """Text as a reader sees it after folding: runs of SP and TAB are one
    space and the ends are trimmed (RFC 5322 §3.2.2)."""
    return re.sub(r"[ \t]+", " ", text).strip(" ")


# Text from every part of Unicode, controls and separators included.
header_text = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=header_text, name=header_text, value=header_text, filename=header_text)
def test_16_no_input_string_adds_a_header_line_or_a_mime_part(subject, name, value, filename):
    payload = {"to": [{"name": name, "address": "a@example.com"}], "subject": subject,
               "headers": {"X-Tag": value}, "text": "body",
               "attachments": [{"filename": filename or "f", "content": b64(b"x")}]}
    try:
        message = parse_message(payload, sender="me@localhost", domain=DOMAIN)
    except ValidationError:
        return  # refused, naming a field: nothing goes out
    mail = parsed(message.mime)
    want = {"From", "To", "Date", "Message-ID", "X-Tag", "MIME-Version", "Content-Type"}
    assert set(mail.keys()) - {"Subject"} == want and len(mail.keys()) <= len(want) + 1
    assert mail["Bcc"] is None and not mail.defects
    assert len(list(mail.iter_parts())) == 2
    assert folded(str(mail["X-Tag"])) == folded(value)
    assert folded(str(mail["Subject"] or "")) == folded(subject)
    # Python's reader also merges a Unicode space into a SP or TAB beside it
    # in a phrase (" \xa0" reads " "), which compose._reads_back allows for.
    assert " ".join(mail["To"].addresses[0].display_name.split()) == " ".join(name.split())
    [part] = mail.iter_attachments()
    # get_filename() strips every Unicode space at the ends (str.strip), NBSP too.
    assert folded(part.get_filename() or "").strip() == folded(filename or "f").strip()


# -- 17: text that is not Unicode, and NUL in bodies -------------------------

@pytest.mark.parametrize("field", ["subject", "text", "html", "to"])
def test_17_a_lone_surrogate_is_a_400_naming_the_field(field):
    payload = {"to": "a@example.com", field: "bad \ud800 text"}
    if field == "to":
        payload["to"] = "\ud800@example.com"
    with pytest.raises(ValidationError) as err:
        parse_message(payload, sender="me@localhost", domain=DOMAIN)
    assert err.value.field == field


@pytest.mark.parametrize("field", ["text", "html"])
def test_17_a_nul_in_a_body_is_a_400_naming_the_field(field):
    with pytest.raises(ValidationError) as err:
        build(**{field: "a\x00b"})
    assert err.value.field == field


# -- allow-list of client headers (issue 11, item 13) ------------------------

@pytest.mark.parametrize("name", ["Sender", "Return-Path", "DKIM-Signature",
                                  "Content-Disposition", "Bcc", "From", "Message-ID",
                                  "Received", "Date", "MIME-Version"])
def test_headers_only_the_service_sets_are_refused_naming_them(name):
    with pytest.raises(ValidationError) as err:
        build(headers={name: "x"})
    assert err.value.field == f"headers.{name}"


@pytest.mark.parametrize("name,value", [
    ("X-Campaign", "spring"), ("List-Unsubscribe", "<https://example.com/u?id=" + "9" * 90 + ">"),
    ("List-Id", "<news.example.com>"), ("Keywords", "a, b"), ("Auto-Submitted", "auto-generated"),
])
def test_allowed_headers_go_out_as_written(name, value):
    mime = build(headers={name: value})
    assert str(parsed(mime)[name]) == value
    assert b"=?" not in mime.split(b"\r\n\r\n")[0]


# -- inline parts (multipart/related) ----------------------------------------

def test_inline_images_make_a_related_part_with_their_content_id():
    png = b"\x89PNG\r\n\x1a\n fake"
    mime = build(text="t", html='<img src="cid:logo@x.example">', attachments=[
        {"filename": "logo.png", "content_type": "image/png", "content": b64(png),
         "inline": True, "content_id": "logo@x.example"},
        {"filename": "r.pdf", "content_type": "application/pdf", "content": b64(b"%PDF")}])
    mail = parsed(mime)
    assert mail.get_content_type() == "multipart/mixed"
    related = next(p for p in mail.walk() if p.get_content_type() == "multipart/related")
    [html, image] = related.iter_parts()
    assert html.get_content_type() == "text/html"
    assert image["Content-ID"] == "<logo@x.example>" and image.get_payload(decode=True) == png
    content = read_content(mime)
    assert [(p.filename, p.inline, p.content_id) for p in content.parts] == [
        ("logo.png", True, "logo@x.example"), ("r.pdf", False, "")]
    assert read_summary(mime)["has_attachments"]


def test_inline_parts_need_an_html_body_and_a_content_id():
    with pytest.raises(ValidationError) as err:
        build(text="t", attachments=[{"filename": "a.png", "content": "", "inline": True,
                                      "content_id": "a@b"}])
    assert err.value.field == "html"
    with pytest.raises(ValidationError) as err:
        build(html="<p>", attachments=[{"filename": "a.png", "content": "", "inline": True}])
    assert err.value.field == "attachments[0].content_id"


# -- the sender's name -------------------------------------------------------

def test_the_senders_display_name_goes_into_from():
    message = parse_message({"to": "a@example.com"},
                            sender=Address("Alice Example, PhD", "alice", "localhost"),
                            domain=DOMAIN)
    assert parsed(message.mime)["From"] == '"Alice Example, PhD" <alice@localhost>'
    assert message.sender == "alice@localhost"


# -- property: addresses survive the round trip -----------------------------

# Python's own reader folds a space next to another Unicode space (U+00A0 ...)
# into one, though the encoded-word on the wire holds both: names here use
# only U+0020 as space, so what is compared is what BitMail wrote.
names = st.text(st.one_of(st.just(" "), st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp", "Zs"))), max_size=30)
local_parts = st.text(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~",
                      min_size=1, max_size=20)
domains = st.sampled_from(["example.com", "bücher.example", "mail.example.org", "xn--p1ai.ru",
                           "例え.jp"])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(names, local_parts, domains), min_size=1, max_size=5))
def test_names_and_addresses_reach_the_header_as_written(people):
    payload = {"to": [{"name": n, "address": f"{lp}@{d}"} for n, lp, d in people]}
    message = parse_message(payload, sender="me@localhost", domain=DOMAIN)
    mail = parsed(message.mime)
    got = [(a.display_name, a.addr_spec) for a in mail["To"].addresses]
    first: dict[str, tuple[str, str]] = {}  # a repeated address is sent once, first name
    for n, lp, d in people:
        first.setdefault(envelope(Address(username=lp, domain=d)), (n, f"{lp}@{d}"))
    want = list(first.values())
    # Runs of white space in a phrase read as one space (RFC 5322 §3.2.2).
    assert [folded(g[0]) for g in got] == [folded(w[0]) for w in want]
    assert [g[1].lower() for g in got] == [
        envelope(Address(username=w[1].rpartition("@")[0], domain=w[1].rpartition("@")[2]))
        for w in want]
    assert message.mime.isascii()


# Every charset the standard library knows, for attached text.
CHARSETS = sorted({"utf-8", "iso-8859-1", "iso-8859-15", "windows-1252", "koi8-r", "shift_jis",
                   "euc-jp", "iso-2022-jp", "big5", "gb2312", "euc-kr", "utf-16", "us-ascii"})


@pytest.mark.parametrize("charset", CHARSETS)
def test_attached_text_in_any_charset_arrives_byte_for_byte(charset):
    text = "Hello — Grüße — Привет — 你好 — こんにちは"
    data = text.encode(charset, "replace")
    mail = parsed(build(attachments=[{"filename": "t.txt", "content": b64(data),
                                      "content_type": f"text/plain; charset={charset}"}]))
    [part] = mail.iter_attachments()
    assert part.get_param("charset") == charset
    assert part.get_payload(decode=True) == data


# -- safe file names (issue 10, item 13; issue 9, item 21) -------------------

@pytest.mark.parametrize("name,want", [
    ("\\share\\mail\\forwarded.msg", "forwarded.msg"), ("/etc/passwd", "passwd"),
    ("", "attachment-1.pdf"), ("...", "attachment-1.pdf"), ("a\x00b\x1fc.txt", "abc.txt"),
    ("résumé.pdf", "résumé.pdf"),
])
def test_safe_filename(name, want):
    assert safe_filename(name, "application/pdf", 0) == want


@pytest.mark.parametrize("payload", [
    {"to": "a@example.com", "text": "plain"},
    {"to": '"Doe, John" <j@example.org>', "cc": "G: a@x.com;", "html": "<p>Hi <b>there</b>",
     "subject": "Grüße", "headers": {"References": "<a@b> <c@d>"}},
    {"to": "a@example.com", "attachments": [{"filename": "x.pdf", "content": b64(b"%PDF")}]},
])
def test_the_summary_kept_at_accept_is_what_the_bytes_say(payload):
    message = parse_message(payload, sender="Me <me@localhost>", domain=DOMAIN)
    assert message.summary() == {**read_summary(message.mime), "bcc": []}


# The summary is taken from the fields as they were written, not read back
# from the bytes: any text a client can send must give the same summary both ways.
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people=st.lists(st.tuples(names, local_parts, domains), min_size=1, max_size=3),
       subject=header_text, tag=header_text, text=st.text(max_size=200),
       html=st.text(max_size=200), refs=st.lists(st.sampled_from([LONG_ID, "<a@b>", "<c.d@e>"]),
                                                  max_size=3),
       attach=st.booleans())
def test_the_summary_kept_at_accept_is_what_the_bytes_say_for_any_fields(
        people, subject, tag, text, html, refs, attach):
    payload = {"to": [{"name": n, "address": f"{lp}@{d}"} for n, lp, d in people[:2]],
               "cc": [{"name": n, "address": f"{lp}@{d}"} for n, lp, d in people[2:]],
               "subject": subject, "text": text, "html": html,
               "headers": {"X-Tag": tag, **({"References": " ".join(refs)} if refs else {})},
               "attachments": [{"filename": "x.pdf", "content": b64(b"%PDF")}] if attach else []}
    try:
        message = parse_message(payload, sender="Mé Moi <me@localhost>", domain=DOMAIN)
    except ValidationError:
        return
    assert message.summary() == {**read_summary(message.mime), "bcc": []}


def test_a_header_given_twice_in_another_case_is_refused_naming_it():
    with pytest.raises(ValidationError) as err:
        build(headers={"X-Tag": "a", "x-tag": "b"})
    assert err.value.field == "headers.x-tag"


# Readable text (no controls): what a reader shows must be what was typed,
# every space included; only white space before the first word may go.
typed_text = st.lists(st.one_of(
    st.sampled_from([" ", "  ", "\t", "=?", "?=", "x" * 30]),
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"))),
    min_size=1, max_size=12).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=typed_text, smtputf8=st.booleans())
def test_a_subject_and_an_x_header_read_back_exactly_as_typed(subject, smtputf8):
    to = ["a@example.com"] + (["ü@example.com"] if smtputf8 else [])
    try:
        message = parse_message({"to": to, "subject": subject, "headers": {"X-Note": subject}},
                                sender="me@localhost", domain=DOMAIN)
    except ValidationError:
        return
    assert message.smtputf8 == smtputf8
    mail = parsed(message.mime)
    want = subject.replace("\t", " ").lstrip(" ")
    assert str(mail["Subject"]).replace("\t", " ").lstrip(" ") == want
    assert str(mail["X-Note"]).replace("\t", " ").lstrip(" ") == want
    assert all(len(line) <= 998 for line in message.mime.split(b"\r\n"))


@settings(max_examples=100, deadline=None)
@given(text=st.lists(st.sampled_from(["a", "é", " ", "\n", "\r", "\r\n", ".", "x" * 90]),
                     max_size=60).map("".join),
       html=st.lists(st.sampled_from(["<p>", "b", "\n", "\r"]), max_size=20).map("".join))
def test_render_writes_the_bytes_the_standard_generator_writes(text, html):
    from email.message import EmailMessage

    from bitmail.message.compose import render, set_bodies
    from bitmail.message.headers import WIRE, WIRE_UTF8

    for wire in (WIRE, WIRE_UTF8):
        mail = EmailMessage(policy=wire)
        mail["Subject"] = "s"
        set_bodies(mail, text, html)
        assert render(mail) == mail.as_bytes()


@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.sampled_from(["a", "é", "€", " ", "\n", "\r", "\r\n", ".", "x" * 39,
                                      "\x0c", "\u2028"]), max_size=60).map("".join),
       subtype=st.sampled_from(["plain", "html"]))
def test_a_text_part_is_what_the_stdlib_writes_with_the_same_encoding(text, subtype):
    # compose.TEXT writes a 7bit part itself, in one pass; any other goes to
    # the stdlib. Both must be the stdlib's bytes for text_cte's choice.
    from email.message import EmailMessage

    from bitmail.message.compose import TEXT, text_cte
    from bitmail.message.headers import WIRE, WIRE_UTF8

    for wire in (WIRE, WIRE_UTF8):
        ours, stdlib = EmailMessage(policy=wire), EmailMessage(policy=wire)
        ours.set_content(text, subtype, content_manager=TEXT)
        stdlib.set_content(text, subtype, cte=text_cte(text))
        assert ours.as_bytes() == stdlib.as_bytes()
        assert ours.get_content() == stdlib.get_content()


@pytest.mark.parametrize("text,want", [
    ("x" * 78, "7bit"), ("x" * 79, "quoted-printable"),
    ("x" * 78 + "\n" + "x" * 78, "7bit"), ("x" * 78 + "\r" + "x" * 78, "7bit"),
    ("x" * 78 + "\r\n" + "x" * 78 + "\r\n", "7bit"),
    ("x\n" + "x" * 79 + "\r\n", "quoted-printable"),
    ("x\r" + "x" * 79, "quoted-printable"), ("x" * 40 + "\x0c" + "x" * 40, "quoted-printable"),
    ("x" * 40 + "\u2028" + "x" * 40, "quoted-printable"), ("", "7bit"), ("\n" * 5, "7bit"),
])
def test_text_cte_counts_lines_as_smtp_does_whatever_ends_them(text, want):
    from bitmail.message.compose import text_cte

    assert text_cte(text) == want


@pytest.mark.parametrize("text,want", [
    ("", ""), ("  a   b  ", "a b"), (" " * 2000 + "word", "word"),
    ("w " * 2000, ("w " * 70)[:140]), ("x" * 5000, "x" * 140),
])
def test_the_preview_is_the_first_words_however_long_the_text(text, want):
    from bitmail.message.reading import summary

    head = summary(author=("", ""), to=[], cc=[], subject="", date=0, message_id="",
                   in_reply_to=None, references=None, text=text, html="",
                   has_attachments=False)
    assert head["preview"] == want == " ".join(text.split())[:140]


# -- found by review: every way a value could still break a header line -------

def test_an_rfc2231_parameter_that_decodes_to_a_line_break_is_refused_naming_it():
    bad = "text/plain; name*=utf-8''a%0D%0ABcc%3A%20victim%40evil.example"
    with pytest.raises(ValidationError) as err:
        build(attachments=[{"filename": "a.txt", "content": b64(b"x"), "content_type": bad}])
    assert err.value.field == "attachments[0].content_type"


@pytest.mark.parametrize("value", ["text/plain; name=\"a\x1cBcc: x\"", "text/plain\r\nBcc: x"])
def test_a_mime_header_with_a_line_break_is_never_stored(value):
    from email.message import EmailMessage

    from bitmail.message.headers import WIRE

    mail = EmailMessage(policy=WIRE)
    with pytest.raises(ValueError):
        mail["Content-Type"] = value


def test_a_raw_header_value_can_break_no_line_whoever_calls():
    from bitmail.message.headers import WIRE

    with pytest.raises(ValueError):
        WIRE.wire_value("From", [Group(None, (Address("Eve\x1cBcc: x", "eve", "x.org"),))])


@pytest.mark.parametrize("payload", [
    {"to": "ü@example.com", "subject": "é" * 998},
    {"to": "ü@example.com", "headers": {"X-A": "é" * 2000}},
    {"to": "a@example.com", "subject": "é" * 998},
])
def test_no_header_line_is_longer_than_998_octets(payload):
    message = parse_message(payload, sender="me@localhost", domain=DOMAIN)
    assert max(len(line) for line in message.mime.split(b"\r\n")) <= 998
    mail = parsed(message.mime)
    for name, value in (("Subject", payload.get("subject")),
                        ("X-A", payload.get("headers", {}).get("X-A"))):
        if value:
            assert str(mail[name]) == value


@pytest.mark.parametrize("name", ["=?utf-8?q?Boss?=", 'Re: =?utf-8?b?QQ==?= "x"'])
def test_a_display_name_that_looks_like_an_encoded_word_reads_back_as_typed(name):
    message = parse_message({"to": [{"name": name, "address": "a@example.com"}]},
                            sender=Address(name, "me", "localhost"), domain=DOMAIN)
    mail = parsed(message.mime)
    assert mail["To"].addresses[0].display_name == name
    assert mail["From"].addresses[0].display_name == name
    assert message.summary() == {**read_summary(message.mime), "bcc": []}


def test_a_received_form_cannot_add_header_lines_through_its_parts():
    from bitmail.message.received import ReceivedPart, rebuild

    mime = rebuild([("Subject", "hi")], "text", "<p><img src=cid:x></p>", [
        ReceivedPart("a\r\nX-Evil: 1\r\n\r\n<script>.txt", "text/plain", b"one"),
        ReceivedPart("b.html", "text/html\r\nX-Evil: 2", b"two"),
        ReceivedPart("c.png", "image/png", b"three", content_id="x>\r\nX-Evil: 3"),
    ])
    assert b"X-Evil" not in mime.split(b"\r\n\r\n")[0]
    assert not any(line.startswith(b"X-Evil") for line in mime.split(b"\r\n"))
    mail = parsed(mime)
    contents = sorted(p.get_payload(decode=True) for p in mail.walk()
                      if (not p.is_multipart() and p.get_content_maintype() != "text")
                      or p.get_filename())
    assert contents == [b"one", b"three", b"two"]


# -- every header line within 998 octets, every text header as typed ----------------

def longest_line(mime: bytes) -> int:
    return max(len(line) for line in mime.split(b"\r\n"))


def rfc2047_phrase(mime: bytes, header: str) -> str:
    """The display name of the first mailbox of `header`, unfolded and decoded
    as RFC 2047 §6.2 says (white space between encoded-words dropped), which
    Python's address parser does not do."""
    from email.header import decode_header, make_header

    head = mime.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    value = next(line.split(":", 1)[1] for line in head.replace("\r\n ", " ").split("\r\n")
                 if line.lower().startswith(header.lower() + ":"))
    phrase = value.strip().rpartition(" <")[0]
    if phrase.startswith('"'):
        return phrase[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return str(make_header(decode_header(phrase)))


@pytest.mark.parametrize(("name", "to"), [
    ("N" * 990, "a@example.com"),  # ASCII, nowhere to fold
    ("é" * 990, "a@example.com"),  # encoded-words, no SMTPUTF8
    ("é" * 990, "ü@example.com"),  # SMTPUTF8: too long to quote on a line
    ("漢字" * 400, "a@example.com"),
    ("=?utf-8?q?x?=" * 70, "a@example.com"),  # a look-alike, encoded whole
    ("Ann Long-Name " * 60, "a@example.com"),
])
def test_a_long_display_name_fits_its_lines_and_reads_back_as_typed(name, to):
    name = name.strip()
    mime = parse_message({"to": [{"name": name, "address": to}]}, sender=f"me@{DOMAIN}",
                         domain=DOMAIN).mime
    assert longest_line(mime) <= 998
    assert rfc2047_phrase(mime, "To") == name


def test_a_group_of_many_members_is_folded_between_them():
    members = [f"user{i}@example.com" for i in range(100)]
    mime = build(to=f"Team: {', '.join(members)};")
    assert longest_line(mime) <= 998
    (group,) = parsed(mime)["To"].groups
    assert group.display_name == "Team"
    assert [a.addr_spec for a in group.addresses] == members


@pytest.mark.parametrize(("header", "value"), [
    ("List-Unsubscribe", "<https://example.com/u/" + "a" * 1500 + ">"),
    ("List-Id", "n" * 990 + " <list.example.com>"),
    ("References", "<a@x> <" + "r" * 1000 + "@example.com>"),
    ("In-Reply-To", "<" + "r" * 990 + "@x>"),
])
def test_an_item_too_long_for_any_line_is_refused_naming_its_header(header, value):
    with pytest.raises(ValidationError) as err:
        build(headers={header: value})
    assert err.value.field == f"headers.{header}"
    assert "998" in str(err.value)


@pytest.mark.parametrize("header", ["Importance", "Priority", "Sensitivity", "Auto-Submitted",
                                    "Precedence", "Feedback-ID", "Keywords", "Comments",
                                    "Organization", "X-Note"])
@pytest.mark.parametrize("value", ["=?utf-8?q?high?=", "low =?iso-8859-1?b?aGk=?= x", "hoch é"])
def test_text_that_looks_encoded_reads_back_as_typed_in_every_text_header(header, value):
    mime = build(headers={header: value})
    assert str(parsed(mime)[header]) == value
    assert mime.isascii()  # no SMTPUTF8 here: non-ASCII text goes out encoded


# -- found by review: names that fit stay one word; commas; spaces in look-alikes ----

@pytest.mark.parametrize(("name", "to"), [
    ("é" * 259, "bob@example.com"),  # one 726-octet encoded-word fits its line
    ("A" * 701, "bob@example.com"),
    ("中" * 200, "bob@example.com"),  # 812 octets encoded
    ("中" * 200, "ü@example.com"),  # SMTPUTF8 mail encodes names too (formataddr)
])
def test_a_name_that_fits_a_line_as_one_word_reads_back_exactly_in_python(name, to):
    mime = parse_message({"to": [{"name": name, "address": to}]}, sender=f"me@{DOMAIN}",
                         domain=DOMAIN).mime
    assert longest_line(mime) <= 998
    assert parsed(mime)["To"].addresses[0].display_name == name


@pytest.mark.parametrize(("header", "value"), [
    ("References", ",".join(f"<msg{i:04}.abcdefgh@example.com>" for i in range(40))),
    ("In-Reply-To", "<" + "r" * 979 + "@x.y>,"),  # 985 characters: 998 with the name
])
def test_msg_ids_separated_by_commas_are_measured_one_by_one(header, value):
    mime = build(headers={header: value})
    assert longest_line(mime) <= 998
    assert str(parsed(mime)[header]).split() == value.replace(",", " ").split()


@pytest.mark.parametrize("field", ["subject", "X-A", "Importance", "name"])
def test_a_look_alike_with_a_space_inside_reads_back_as_typed(field):
    value = "=?utf-8?q?Hello World?="
    if field == "subject":
        mime, read = build(subject=value), lambda m: str(m["Subject"])
    elif field == "name":
        mime = build(to=[{"name": value, "address": "a@example.com"}])
        read = lambda m: m["To"].addresses[0].display_name  # noqa: E731
    else:
        mime, read = build(headers={field: value}), lambda m: str(m[field])
    assert read(parsed(mime)) == value


def test_an_encoded_group_name_is_kept_apart_from_its_colon():
    mime = build(to="Tëam: a@example.com, b@example.com;")
    to = parsed(mime)["To"]
    assert not to.defects, to.defects
    (group,) = to.groups
    assert group.display_name == "Tëam"
    assert [a.addr_spec for a in group.addresses] == ["a@example.com", "b@example.com"]


# -- found by a second review: later items, decoded names, empty groups ---------------

@pytest.mark.parametrize(("header", "value"), [
    ("List-Unsubscribe", "<https://a.example/x> <https://e.example/" + "p" * 970 + ">"),
    ("In-Reply-To", "<a@example.com> <" + "i" * 986 + "@h>"),
    ("References", "<a@example.com> <" + "i" * 990 + "@h>"),
    ("References", "<" + "i" * 982 + "@h>"),  # 986 characters: 998 beside `References: `
])
def test_an_item_after_the_first_may_fill_a_line_of_its_own(header, value):
    mime = build(headers={header: value})
    assert longest_line(mime) <= 998
    assert str(parsed(mime)[header]).split() == value.split()


@pytest.mark.parametrize("to", ["=?utf-8?b?YeKAqGI=?= <a@example.com>",  # a U+2028 b
                                "Team =?utf-8?b?woU=?=: a@example.com;",  # U+0085 in a group
                                '"" =?.<" <b@example.com>'])  # the stdlib parser's AttributeError
def test_a_name_that_decodes_to_a_line_break_or_will_not_parse_is_refused_naming_it(to):
    with pytest.raises(ValidationError) as err:
        build(to=to)
    assert err.value.field == "to"


@pytest.mark.parametrize("reply_to", ["a" * 986 + ": ;", "a" * 986 + ": ; c@example.com",
                                      "é" + "b" * 968 + ": ; c@example.com"])
def test_an_empty_group_with_a_long_name_fits_its_line(reply_to):
    assert longest_line(build(reply_to=reply_to)) <= 998


@pytest.mark.parametrize("text", ["=?x y?q?abc?=", "=??q?abc?=", "=?utf-8 ?q?abc?=",
                                  "=? utf-8?q?abc?="])
def test_every_shape_python_decodes_as_an_encoded_word_reads_back_as_typed(text):
    mime = build(subject=text, headers={"X-A": text}, to=[{"name": text,
                                                         "address": "a@example.com"}])
    mail = parsed(mime)
    assert (str(mail["Subject"]), str(mail["X-A"]), mail["To"].addresses[0].display_name) \
        == (text, text, text)


def test_a_list_id_phrase_keeps_every_space_and_an_empty_group_name_stays_a_group():
    mime = build(headers={"List-Id": '"A   B" <l.example.com>'}, to='"": a@example.com;')
    mail = parsed(mime)
    assert str(mail["List-Id"]) == '"A   B" <l.example.com>'
    assert not mail["To"].defects
    assert [a.addr_spec for a in mail["To"].groups[0].addresses] == ["a@example.com"]


# -- reading: a name sent as several encoded-words reads whole (RFC 2047 §6.2) ----

@pytest.mark.parametrize(("header", "value", "names"), [
    # Outlook splits a long name into encoded-words; "_" is the name's own space.
    ("From", "=?utf-8?q?Andr=C3=A9?= =?utf-8?q?_Dupont?= <a@example.com>", ["André Dupont"]),
    # Folded between the words, base64, one character each.
    ("To", "=?utf-8?b?w6k=?=\r\n =?utf-8?b?w6k=?=\t=?utf-8?b?w6k=?= <e@example.com>", ["ééé"]),
    # Several mailboxes, only some split; a plain word keeps the space before it.
    ("Cc", '"Bob" <b@example.com>, =?utf-8?q?Jos=C3=A9?= Smith <j@example.com>, '
           "=?iso-8859-1?q?M=FCl?= =?iso-8859-1?q?ler?= <m@example.com>",
     ["Bob", "José Smith", "Müller"]),
    ("Reply-To", "=?utf-8?q?Z=C3=BC?=  =?utf-8?q?rich_Team?= <z@example.com>", ["Zürich Team"]),
])
def test_a_name_split_into_encoded_words_reads_whole(header, value, names):
    mime = f"{header}: {value}\r\nSubject: s\r\n\r\nbody\r\n".encode()
    assert [a.display_name for a in parse(mime)[header].addresses] == names
    shown = read_summary(mime)
    if header in ("To", "Cc"):
        assert [row.split(" <")[0].strip('"') for row in shown[header.lower()]] == names


def test_a_group_name_split_into_encoded_words_reads_whole():
    mime = (b"To: =?utf-8?q?=C3=89quipe?= =?utf-8?q?_Nord?=: a@example.com, b@example.com;\r\n"
            b"\r\nbody\r\n")
    (group,) = parse(mime)["To"].groups
    assert group.display_name == "Équipe Nord"
    assert [a.addr_spec for a in group.addresses] == ["a@example.com", "b@example.com"]


@pytest.mark.parametrize("name", ["é" * 990, "漢字" * 400, "=?utf-8?q?x?=" * 70,
                                  "Zoë " * 240])
def test_a_long_name_bitmail_writes_as_encoded_words_reads_back_in_bitmail(name):
    name = name.strip()
    mime = parse_message({"to": [{"name": name, "address": "a@example.com"}]},
                         sender=f"me@{DOMAIN}", domain=DOMAIN).mime
    assert mime.count(b"=?utf-8?") > 1  # the name went out as several encoded-words
    assert parse(mime)["To"].addresses[0].display_name == name


# -- a header the stdlib parser raises on is read as text, never an exception ---------

# Values on which Python 3.11's header parser raises instead of noting a
# defect: AttributeError (an unterminated domain-literal, RFC 5322 §3.4.1;
# `.:`), IndexError (`<`, `"`), TypeError (` .,`, as a folded value unfolds).
UNREADABLE = [
    ("To", "dana@localhost, bob@[example.net"),
    ("To", "x <a@[b"),
    ("Cc", ".:"),
    ("Reply-To", '"'),
    ("From", "eve@example.net, <"),
    ("To", " .,"),
    ("Message-ID", "<"),
    ("Message-ID", "<b@[ab"),
]


@pytest.mark.parametrize("registry", ["READ", "TYPED", "WIRE"])
@pytest.mark.parametrize(("name", "value"), UNREADABLE)
def test_a_header_the_parser_raises_on_is_its_text_with_a_defect(registry, name, value):
    from bitmail.message import headers

    header = getattr(headers, registry).header_factory(name, value)
    assert headers.unreadable(header) and header.defects
    assert str(header) == value and header.source == value


def header_line(name: str, value: str) -> str:
    # A value that starts with white space is written folded: unfolded, it
    # is the value itself (RFC 5322 §2.2.3).
    return f"{name}:\r\n{value}\r\n" if value.startswith(" ") else f"{name}: {value}\r\n"


@pytest.mark.parametrize(("name", "value"), UNREADABLE)
def test_a_message_with_a_header_the_parser_raises_on_is_read(name, value):
    mime = (f"Subject: still mail\r\n{header_line(name, value)}\r\nhello\r\n").encode()
    summary = read_summary(mime)
    assert summary["subject"] == "still mail" and summary["preview"] == "hello"
    assert [str(v) for v in parse(mime).values()] == ["still mail", value]


@pytest.mark.parametrize(("value", "to"), [
    ("dana@localhost, bob@[example.net", ["dana@localhost"]),
    ("Dana <dana@localhost>, .:", ["Dana <dana@localhost>"]),
    ("=?utf-8?q?Doe=2C_J?= <j@example.org>, dana@localhost, bob@[x",
     ['"Doe, J" <j@example.org>', "dana@localhost"]),
    ("Team: a@example.com, b@example.com;, dana@localhost, x <",
     ["a@example.com", "b@example.com", "dana@localhost"]),
])
def test_an_address_the_parser_raises_on_hides_only_itself(value, to):
    mime = f"From: eve@example.net\r\nTo: {value}\r\n\r\nhello\r\n".encode()
    assert read_summary(mime)["to"] == to


def test_a_from_the_parser_raises_on_shows_as_its_text():
    summary = read_summary(b"From: eve@[example.net\r\nTo: dana@localhost\r\n\r\nhi\r\n")
    assert (summary["from"], summary["from_address"]) == ("eve@[example.net", "")


@pytest.mark.parametrize("value", ["bob@[example.net", "x <a@[b", ".:", '"', " .,", "<"])
def test_an_address_the_parser_raises_on_is_a_400_naming_the_field(value):
    with pytest.raises(ValidationError) as err:
        parse_address_list(f"ok@x.com, {value}", "cc")
    assert err.value.field == "cc"


def test_a_received_form_header_the_parser_raises_on_is_kept_as_written():
    from bitmail.message.received import rebuild

    mime = rebuild([("From", "eve@example.net"), ("To", "dana@localhost, bob@[example.net"),
                    ("Message-ID", "<b@[ab"), ("Subject", "still mail")], "hello", "", [])
    assert b"To: dana@localhost, bob@[example.net\r\n" in mime
    assert b"Message-ID: <b@[ab\r\n" in mime
    summary = read_summary(mime)
    assert summary["to"] == ["dana@localhost"] and summary["subject"] == "still mail"


@pytest.mark.parametrize(("html", "preview"), [
    ("<p>Hel<b>lo</b> wor<i>ld</i></p>", "Hello world"),  # inline tags split no word
    ("<p>one</p><p>two</p>", "one two"),
    ('<a href="https://x.example/long">read</a> <script>x()</script>more', "read more"),
])
def test_the_preview_of_html_mail_keeps_words_whole(html, preview):
    mime = build(html=html)
    assert read_summary(mime)["preview"] == preview
